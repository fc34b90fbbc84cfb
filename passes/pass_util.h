/* Helpers shared by the graph-to-graph passes (not part of the public pass API). */
#ifndef AIDOMM_PASSES_PASS_UTIL_H
#define AIDOMM_PASSES_PASS_UTIL_H

#include "ir/ir.h"

/* A fresh, empty program in g's module that will replace g (see pass_graph_commit). */
ir_graph_t *pass_graph_begin(const ir_graph_t *g);
/* Puts ng where *gp was in the module's program list (keeping the name), frees the old graph
 * and sets *gp = ng. ng must come from pass_graph_begin. Returns ng's sticky error if any, in
 * which case ng is discarded and *gp is left untouched. */
ad_status_t pass_graph_commit(ir_graph_t **gp, ir_graph_t *ng);
/* Removes a program from its module and frees it. */
void pass_graph_discard(ir_graph_t *g);

/* Per-value consumer counts (malloc'd, g->nvalues entries; NULL on OOM). */
uint32_t *pass_use_counts(const ir_graph_t *g);

/* A growable scratch array of value ids. */
typedef struct pass_ids {
  uint32_t *v;
  uint32_t n, cap;
} pass_ids_t;
/* Ensures room for n ids; returns false on OOM. */
bool pass_ids_reserve(pass_ids_t *a, uint32_t n);
void pass_ids_free(pass_ids_t *a);

/* Maps n's inputs through map (IR_NONE entries are an internal error) into scratch. */
ad_status_t pass_map_inputs(const ir_graph_t *g, const ir_node_t *n, const uint32_t *map,
                            pass_ids_t *scratch);

/* Builds an explicitly named node (name used verbatim, regardless of the current scope). */
uint32_t pass_build_named(ir_graph_t *g, ir_op_t op, const char *name, const uint32_t *ins,
                          uint32_t nin, const ir_attr_t *attrs, uint32_t nattrs,
                          const ir_type_t *out_type);

/* A set of C strings (not owned) used to keep generated names unique. */
typedef struct pass_strset {
  const char **slots;
  uint32_t cap, count;
} pass_strset_t;
bool pass_strset_has(const pass_strset_t *s, const char *key);
bool pass_strset_add(pass_strset_t *s, const char *key); /* false on OOM */
void pass_strset_free(pass_strset_t *s);
/* Fills s with every node name of g. */
bool pass_strset_add_names(pass_strset_t *s, const ir_graph_t *g);

#endif
