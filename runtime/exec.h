/* The planned executor: runs one program with every intermediate value placed in a single
 * arena by the memory plan (passes/memplan.c). State slots are separate, pinned buffers:
 * STATE_IN values alias them (no copy) and STATE_OUT copies into them. */
#ifndef AIDOMM_RUNTIME_EXEC_H
#define AIDOMM_RUNTIME_EXEC_H

#include "ir/ir.h"
#include "passes/passes.h"

/* Buffers for every state slot of a module (owned). */
typedef struct rt_state {
  const ir_module_t *module;
  void **data;   /* per slot, 64-byte aligned */
  size_t *bytes; /* per slot */
} rt_state_t;

ad_status_t rt_state_create(const ir_module_t *m, rt_state_t **out);
void rt_state_free(rt_state_t *s);
/* Fills every slot from its init rule as a pure function of (seed, slot name). */
ad_status_t rt_state_init(rt_state_t *s, uint64_t seed);
int64_t rt_state_find(const rt_state_t *s, const char *slot);

typedef struct rt_exec rt_exec_t;

/* The plan is borrowed and must outlive the executor. */
ad_status_t rt_exec_create(const ir_graph_t *g, const pass_memplan_t *plan, rt_exec_t **out);
void rt_exec_free(rt_exec_t *e);

typedef struct rt_feed {
  const char *name; /* INPUT or SCALAR node name */
  const void *data;
  size_t bytes;     /* must equal the value's size at the actual symbol values */
} rt_feed_t;

/* Runs the program. SCALARs not fed take their module defaults. */
ad_status_t rt_exec_run(rt_exec_t *e, rt_state_t *state, const int64_t *symvals,
                        const rt_feed_t *feeds, uint32_t nfeeds, ir_parallel_t *par);
/* TEST ONLY (tests/test_trajectory.c feeds the peer's realized dropout masks): while a table is
 * set, every DROPOUT node of the program uses the caller's keep-mask instead of Philox, found by
 * the node's "key" attribute (the stable site name, e.g.
 * "backbone1.encoder.base_model.model.encoder.layer.0.attention.self.query.lora_dropout.default";
 * a forward node and its VJP share the key, hence the mask). keep[i] != 0 keeps logical element
 * i, which is then multiplied by the kernel's scale (T)1 / (T)(1 - p). A DROPOUT whose key is not
 * in the table, or whose element count is not numel, fails the run. n = 0 restores Philox. The
 * table and masks are borrowed until reset. */
typedef struct rt_dropout_mask {
  const char *key;
  const uint8_t *keep; /* [numel] */
  int64_t numel;
} rt_dropout_mask_t;
void rt_exec_set_dropout_masks(rt_exec_t *e, const rt_dropout_mask_t *masks, uint32_t n);

/* The tensor feeding OUTPUT `name` after a run (valid until the next run), or NULL. */
const ir_tensor_t *rt_exec_output(const rt_exec_t *e, const char *name);
int64_t rt_exec_arena_bytes(const rt_exec_t *e);

#endif
