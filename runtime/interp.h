/* The reference interpreter: runs one program node by node over the registry's reference
 * kernels, every value in its own buffer (no memory plan). The oracle for the planned
 * executor and the engine of the op tests. */
#ifndef AIDOMM_RUNTIME_INTERP_H
#define AIDOMM_RUNTIME_INTERP_H

#include "ir/ir.h"

typedef struct rt_interp rt_interp_t;

/* symvals: actual symbol sizes (each in 1..bound). */
ad_status_t rt_interp_create(const ir_graph_t *g, const int64_t *symvals, rt_interp_t **out);
void rt_interp_free(rt_interp_t *it);
/* Copies data for an INPUT or SCALAR node by name (bytes must match its actual size). */
ad_status_t rt_interp_set_input(rt_interp_t *it, const char *name, const void *data, size_t bytes);
/* Binds a state slot to caller-owned memory (read by state_in, written by state_out). */
ad_status_t rt_interp_bind_state(rt_interp_t *it, const char *slot, void *data, size_t bytes);
ad_status_t rt_interp_run(rt_interp_t *it, ir_parallel_t *par);
/* Value after a run (NULL for unknown ids); owned by the interpreter. */
const ir_tensor_t *rt_interp_value(const rt_interp_t *it, uint32_t value);
/* The value feeding OUTPUT node `name`, or NULL. */
const ir_tensor_t *rt_interp_output(const rt_interp_t *it, const char *name);

#endif
