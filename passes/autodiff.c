/* Contract: appends reverse-mode nodes for d(loss)/d(wrt) via the ops' VJPs (explicit ADDs). */
/* Contributions to one value accumulate through explicit ADD nodes. Values off every
 * wrt -> loss path, integer values and inputs the registry marks nondiff get no gradient;
 * the loss must be a rank-0 float and its seed gradient is a CONST 1. */
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"
#include "passes/passes.h"

/* Naming. Backward nodes are built under the scope "grad.<forward node name>", so a VJP's
 * nodes are named like "grad.layers.0.attn.softmax.softmax_bwd": stable across runs, unique
 * (forward names are), and traceable to the forward node. Accumulations are named
 * "grad.<producer>.acc<k>" (output 0) or "grad.<producer>.out<i>.acc<k>", the seed
 * "grad.<loss producer>.seed". */

typedef struct ad_state {
  ir_graph_t *g;
  uint32_t nv;          /* values of the forward part (ids below this existed on entry) */
  uint32_t *grad;       /* per forward value: gradient value id or IR_NONE */
  uint32_t *nacc;       /* per forward value: accumulations so far */
  uint8_t *need;        /* per forward value: on a path wrt -> loss, float */
  pass_strset_t names;  /* every node name of g, to keep generated names unique */
} ad_state_t;

static const char *fresh_name(ad_state_t *s, const char *base) {
  const char *name = base;
  for (int k = 1; pass_strset_has(&s->names, name); k++)
    name = ad_arena_printf(&s->g->module->arena, "%s#%d", base, k);
  return name;
}

static const char *value_base(ad_state_t *s, uint32_t v) {
  const ir_value_t *val = &s->g->values[v];
  const char *node = s->g->nodes[val->node].name;
  return val->index == 0 ? ad_arena_printf(&s->g->module->arena, "grad.%s", node)
                         : ad_arena_printf(&s->g->module->arena, "grad.%s.out%u", node,
                                           val->index);
}

/* Adds contribution c to value v's gradient. */
static ad_status_t accumulate(ad_state_t *s, uint32_t v, uint32_t c, const ir_node_t *from) {
  ir_graph_t *g = s->g;
  if (c >= g->nvalues)
    return ad_status_make(AD_STATUS_INTERNAL,
                          "autodiff: the VJP of node '%s' (%s) returned an undefined value",
                          from->name, ir_op_name(from->op));
  if (!ir_type_equal(&g->values[c].type, &g->values[v].type)) {
    ad_buf_t want = {0}, got = {0};
    ir_print_type(g->module, &g->values[v].type, &want);
    ir_print_type(g->module, &g->values[c].type, &got);
    ad_status_t st = ad_status_make(
        AD_STATUS_INTERNAL,
        "autodiff: the VJP of node '%s' (%s) returned a gradient of type %.*s for a value of "
        "type %.*s",
        from->name, ir_op_name(from->op), (int)got.len, (const char *)got.data, (int)want.len,
        (const char *)want.data);
    ad_buf_free(&want);
    ad_buf_free(&got);
    return st;
  }
  if (s->grad[v] == IR_NONE) {
    s->grad[v] = c;
    return AD_OK;
  }
  uint32_t k = ++s->nacc[v];
  const char *name =
      fresh_name(s, ad_arena_printf(&g->module->arena, "%s.acc%u", value_base(s, v), k));
  uint32_t ins[2] = {s->grad[v], c};
  uint32_t sum = pass_build_named(g, IR_OP_ADD, name, ins, 2, NULL, 0, NULL);
  if (g->error) return ir_graph_take_error(g);
  pass_strset_add(&s->names, g->nodes[g->nnodes - 1].name);
  s->grad[v] = sum;
  return AD_OK;
}

static bool is_float_value(const ir_graph_t *g, uint32_t v) {
  return ir_dtype_is_float(g->values[v].type.dtype);
}

/* need[v] = v is float, depends on some wrt through differentiable inputs, and the loss
 * depends on it. Only nodes with a needed output run their VJP, so nothing is emitted for
 * frozen or data-only subgraphs. */
static bool mark_needed(ad_state_t *s, uint32_t loss, const uint32_t *wrt, uint32_t nwrt) {
  const ir_graph_t *g = s->g;
  uint32_t loss_node = g->values[loss].node;
  uint8_t *active = calloc(s->nv, 1), *reach = calloc(s->nv, 1);
  if (!active || !reach) {
    free(active);
    free(reach);
    return false;
  }
  for (uint32_t i = 0; i < nwrt; i++)
    if (is_float_value(g, wrt[i])) active[wrt[i]] = 1;
  for (uint32_t i = 0; i <= loss_node; i++) {
    const ir_node_t *n = &g->nodes[i];
    uint32_t nondiff = ir_op_info(n->op)->nondiff_inputs;
    bool any = false;
    for (uint32_t j = 0; j < n->ninputs && !any; j++)
      any = !(j < 32 && (nondiff >> j) & 1u) && active[n->inputs[j]];
    if (!any) continue;
    for (uint32_t o = 0; o < n->noutputs; o++)
      if (is_float_value(g, n->output0 + o)) active[n->output0 + o] = 1;
  }
  reach[loss] = 1;
  for (uint32_t i = loss_node + 1; i-- > 0;) {
    const ir_node_t *n = &g->nodes[i];
    bool any = false;
    for (uint32_t o = 0; o < n->noutputs && !any; o++) any = reach[n->output0 + o];
    if (!any) continue;
    for (uint32_t j = 0; j < n->ninputs; j++) reach[n->inputs[j]] = 1;
  }
  for (uint32_t v = 0; v < s->nv; v++) s->need[v] = active[v] && reach[v];
  free(active);
  free(reach);
  return true;
}

static ad_status_t run_vjp(ad_state_t *s, uint32_t i, uint32_t *outg, uint32_t *ing) {
  ir_graph_t *g = s->g;
  const ir_node_t node = g->nodes[i]; /* copy: the VJP may move g->nodes */
  const ir_op_info_t *info = ir_op_info(node.op);
  bool any_in = false;
  for (uint32_t j = 0; j < node.ninputs && !any_in; j++)
    any_in = !(j < 32 && (info->nondiff_inputs >> j) & 1u) && s->need[node.inputs[j]];
  /* No input needs a gradient (e.g. the node produces a wrt value from data alone). */
  if (!any_in) return AD_OK;
  if (!info->vjp)
    return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                          "autodiff: node '%s' (%s) lies between a parameter and the loss, but "
                          "the op is not differentiable",
                          node.name, ir_op_name(node.op));
  for (uint32_t o = 0; o < node.noutputs; o++) outg[o] = s->grad[node.output0 + o];
  for (uint32_t j = 0; j < node.ninputs; j++) ing[j] = IR_NONE;
  ir_vjp_ctx_t c = {.g = g, .node = node, .out_grads = outg, .in_grads = ing};
  const char *saved_scope = g->scope;
  g->scope = "";
  ir_push_scope(g, "grad");
  ir_push_scope(g, node.name);
  uint32_t first_new = g->nnodes;
  ad_status_t st = info->vjp(&c);
  g->scope = saved_scope;
  if (!st) st = ir_graph_take_error(g);
  if (st)
    return ad_status_annotate(st, "autodiff: VJP of node '%s' (%s)", node.name,
                              ir_op_name(node.op));
  for (uint32_t k = first_new; k < g->nnodes; k++) pass_strset_add(&s->names, g->nodes[k].name);
  for (uint32_t j = 0; j < node.ninputs; j++) {
    uint32_t v = node.inputs[j];
    if (ing[j] == IR_NONE || !s->need[v] || (j < 32 && (info->nondiff_inputs >> j) & 1u))
      continue;
    AD_RETURN_IF_ERROR(accumulate(s, v, ing[j], &node));
  }
  return AD_OK;
}

ad_status_t pass_autodiff(ir_graph_t *g, uint32_t loss, const uint32_t *wrt, uint32_t nwrt,
                          uint32_t *out_grads) {
  for (uint32_t i = 0; i < nwrt; i++) out_grads[i] = IR_NONE;
  if (g->error)
    return ad_status_make(AD_STATUS_INTERNAL, "autodiff: program '%s' has a pending error: %s",
                          g->name, ad_status_message(g->error));
  if (loss >= g->nvalues)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "autodiff: loss %%%u is not a value of '%s'",
                          loss, g->name);
  const ir_type_t *lt = &g->values[loss].type;
  if (lt->rank != 0 || !ir_dtype_is_float(lt->dtype))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "autodiff: the loss (node '%s') must be a rank-0 float, got rank %d %s",
                          g->nodes[g->values[loss].node].name, (int)lt->rank,
                          ir_dtype_name(lt->dtype));
  for (uint32_t i = 0; i < nwrt; i++)
    if (wrt[i] >= g->nvalues)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "autodiff: wrt[%u] = %%%u is not a value of '%s'", i, wrt[i], g->name);

  ad_state_t s = {.g = g, .nv = g->nvalues};
  s.grad = malloc(sizeof *s.grad * s.nv);
  s.nacc = calloc(s.nv, sizeof *s.nacc);
  s.need = calloc(s.nv, 1);
  uint32_t maxin = 1, maxout = 1;
  for (uint32_t i = 0; i < g->nnodes; i++) {
    if (g->nodes[i].ninputs > maxin) maxin = g->nodes[i].ninputs;
    if (g->nodes[i].noutputs > maxout) maxout = g->nodes[i].noutputs;
  }
  uint32_t *ing = malloc(sizeof *ing * maxin), *outg = malloc(sizeof *outg * maxout);
  ad_status_t st = AD_OK;
  if (!s.grad || !s.nacc || !s.need || !ing || !outg || !pass_strset_add_names(&s.names, g)) {
    st = ad_status_make(AD_STATUS_RESOURCE, "autodiff: out of memory");
    goto done;
  }
  for (uint32_t v = 0; v < s.nv; v++) s.grad[v] = IR_NONE;
  if (!mark_needed(&s, loss, wrt, nwrt)) {
    st = ad_status_make(AD_STATUS_RESOURCE, "autodiff: out of memory");
    goto done;
  }

  if (s.need[loss]) {
    double one = 1.0;
    ir_attr_t a = IR_ATTR_FLOATS("value", &one, 1);
    const char *name = fresh_name(&s, ad_arena_printf(&g->module->arena, "%s.seed",
                                                      value_base(&s, loss)));
    ir_type_t t = *lt;
    s.grad[loss] = pass_build_named(g, IR_OP_CONST, name, NULL, 0, &a, 1, &t);
    st = ir_graph_take_error(g);
    if (st) goto done;
    pass_strset_add(&s.names, name);
    /* Reverse program order visits every consumer before its producer, so a value's
     * gradient is complete when its producer's VJP runs. */
    for (uint32_t i = g->values[loss].node + 1; i-- > 0;) {
      const ir_node_t *n = &g->nodes[i];
      bool any = false;
      for (uint32_t o = 0; o < n->noutputs && !any; o++)
        any = s.grad[n->output0 + o] != IR_NONE;
      if (!any) continue;
      st = run_vjp(&s, i, outg, ing);
      if (st) goto done;
    }
  }
  for (uint32_t i = 0; i < nwrt; i++) out_grads[i] = s.need[wrt[i]] ? s.grad[wrt[i]] : IR_NONE;
done:
  free(s.grad);
  free(s.nacc);
  free(s.need);
  free(ing);
  free(outg);
  pass_strset_free(&s.names);
  return st;
}
