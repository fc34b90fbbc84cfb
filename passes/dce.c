/* Contract: replaces *g with its side-effect nodes and what they need, order and names kept. */
#include <stdlib.h>

#include "passes/pass_util.h"
#include "passes/passes.h"

ad_status_t pass_dce(ir_graph_t **gp) {
  const ir_graph_t *g = *gp;
  uint8_t *live = calloc(g->nnodes ? g->nnodes : 1, 1);
  uint32_t *map = malloc(sizeof *map * (g->nvalues ? g->nvalues : 1));
  if (!live || !map) {
    free(live);
    free(map);
    return ad_status_make(AD_STATUS_RESOURCE, "dce: out of memory");
  }
  /* One backward sweep suffices: the order is topological, so every consumer is visited before
   * its producers. */
  for (uint32_t i = g->nnodes; i-- > 0;) {
    const ir_node_t *n = &g->nodes[i];
    if (ir_op_info(n->op)->flags & IR_OP_FLAG_SIDE_EFFECT) live[i] = 1;
    if (!live[i]) continue;
    for (uint32_t j = 0; j < n->ninputs; j++) live[g->values[n->inputs[j]].node] = 1;
  }
  for (uint32_t v = 0; v < g->nvalues; v++) map[v] = IR_NONE;

  ir_graph_t *ng = pass_graph_begin(g);
  pass_ids_t ins = {0};
  ad_status_t st = AD_OK;
  for (uint32_t i = 0; i < g->nnodes && !st; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (!live[i]) continue;
    st = pass_map_inputs(g, n, map, &ins);
    if (st) break;
    uint32_t v0 = ir_clone_node(ng, g, n, ins.v);
    if (ng->error) break;
    for (uint32_t o = 0; o < n->noutputs; o++) map[n->output0 + o] = v0 + o;
  }
  pass_ids_free(&ins);
  free(live);
  free(map);
  if (st) {
    pass_graph_discard(ng);
    return ad_status_annotate(st, "pass dce");
  }
  st = pass_graph_commit(gp, ng);
  return st ? ad_status_annotate(st, "pass dce") : AD_OK;
}
