/* Sources and sinks: data inputs, runtime scalars, constants, state reads/writes, outputs.
 * The executors handle INPUT/SCALAR/STATE_IN/STATE_OUT/OUTPUT themselves (they move data
 * between the program and the outside); only CONST has a kernel. */
#include <string.h>

#include "ir/ops/ops_internal.h"

static bool type_is_static(const ir_type_t *t) {
  for (int i = 0; i < t->rank; i++)
    if (!ir_dim_is_const(t->dims[i], NULL)) return false;
  return true;
}

static ad_status_t infer_input(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  (void)g;
  (void)n;
  (void)out;
  return AD_OK; /* explicit type */
}

static ad_status_t infer_scalar(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_scalar_decl_t *s = ir_module_find_scalar(g->module, n->name);
  if (!s) return ir_node_error(g, n, "runtime scalar '%s' is not declared in the module", n->name);
  memset(&out[0], 0, sizeof out[0]);
  out[0].dtype = s->dtype;
  out[0].rank = 0;
  return AD_OK;
}

static ad_status_t infer_const(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_attr_t *v = ir_node_attr(n, "value");
  if (!v || v->kind != IR_ATTR_FLOATS || v->n == 0)
    return ir_node_error(g, n, "needs a non-empty float list attribute 'value'");
  if (v->n != 1) {
    if (!type_is_static(&out[0]))
      return ir_node_error(g, n, "a non-splat constant needs a static shape");
    int64_t sym[IR_MAX_SYMBOLS] = {0};
    ir_shape_t s = ir_type_shape(&out[0], sym);
    if (ir_shape_numel(&s) != (int64_t)v->n)
      return ir_node_error(g, n, "has %u values for %lld elements", v->n,
                           (long long)ir_shape_numel(&s));
  }
  return AD_OK;
}

static ad_status_t slot_of(const ir_graph_t *g, const ir_node_t *n, const ir_state_slot_t **slot) {
  const char *name = ir_node_attr_string(n, "slot", NULL);
  if (!name) return ir_node_error(g, n, "needs a string attribute 'slot'");
  int64_t i = ir_module_find_slot(g->module, name);
  if (i < 0) return ir_node_error(g, n, "state slot '%s' is not declared in the module", name);
  *slot = &g->module->slots[i];
  return AD_OK;
}

static ad_status_t infer_state_in(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_state_slot_t *slot = NULL;
  AD_RETURN_IF_ERROR(slot_of(g, n, &slot));
  out[0] = slot->type;
  return AD_OK;
}

static ad_status_t infer_state_out(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  (void)out;
  const ir_state_slot_t *slot = NULL;
  AD_RETURN_IF_ERROR(slot_of(g, n, &slot));
  if (!ir_type_equal(ir_in_type(g, n, 0), &slot->type))
    return ir_node_error(g, n, "writes a value whose type differs from slot '%s'", slot->name);
  return AD_OK;
}

static ad_status_t infer_output(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  (void)g;
  (void)n;
  (void)out;
  return AD_OK;
}

static ad_status_t kernel_const(const ir_kernel_args_t *a) {
  const ir_attr_t *v = ir_node_attr(a->node, "value");
  ir_tensor_t *o = &a->out[0];
  int64_t n = ir_tensor_numel(o);
  for (int64_t i = 0; i < n; i++) {
    double x = v->floats[v->n == 1 ? 0 : i];
    switch (o->dtype) {
      case IR_DTYPE_F32: ((float *)o->data)[i] = (float)x; break;
      case IR_DTYPE_F64: ((double *)o->data)[i] = x; break;
      case IR_DTYPE_I32: ((int32_t *)o->data)[i] = (int32_t)x; break;
      case IR_DTYPE_I64: ((int64_t *)o->data)[i] = (int64_t)x; break;
      case IR_DTYPE_U8: ((uint8_t *)o->data)[i] = (uint8_t)x; break;
      default:
        return ir_node_error(NULL, a->node, "constants of dtype %s are not supported",
                             ir_dtype_name(o->dtype));
    }
  }
  return AD_OK;
}

static ad_status_t vjp_none(ir_vjp_ctx_t *c) {
  (void)c;
  return AD_OK;
}

void ir_ops_register_source(ir_op_info_t *t) {
  t[IR_OP_INPUT] = (ir_op_info_t){.fusion = IR_FUSION_NONE, .min_inputs = 0, .max_inputs = 0,
                                  .noutputs = 1,
                                  .flags = IR_OP_FLAG_EXPLICIT_TYPE | IR_OP_FLAG_NO_FOLD,
                                  .infer = infer_input};
  t[IR_OP_SCALAR] = (ir_op_info_t){.fusion = IR_FUSION_NONE, .min_inputs = 0, .max_inputs = 0,
                                   .noutputs = 1, .flags = IR_OP_FLAG_NO_FOLD,
                                   .infer = infer_scalar};
  t[IR_OP_CONST] = (ir_op_info_t){.fusion = IR_FUSION_NONE, .min_inputs = 0, .max_inputs = 0,
                                  .noutputs = 1, .flags = IR_OP_FLAG_EXPLICIT_TYPE,
                                  .infer = infer_const, .kernel = kernel_const, .vjp = vjp_none};
  t[IR_OP_STATE_IN] = (ir_op_info_t){.fusion = IR_FUSION_NONE, .min_inputs = 0, .max_inputs = 0,
                                     .noutputs = 1,
                                     .flags = IR_OP_FLAG_STATEFUL | IR_OP_FLAG_NO_FOLD,
                                     .infer = infer_state_in};
  t[IR_OP_STATE_OUT] = (ir_op_info_t){
      .fusion = IR_FUSION_NONE, .min_inputs = 1, .max_inputs = 1, .noutputs = 0,
      .flags = IR_OP_FLAG_STATEFUL | IR_OP_FLAG_SIDE_EFFECT | IR_OP_FLAG_NO_FOLD,
      .infer = infer_state_out};
  t[IR_OP_OUTPUT] = (ir_op_info_t){.fusion = IR_FUSION_NONE, .min_inputs = 1, .max_inputs = 1,
                                   .noutputs = 0,
                                   .flags = IR_OP_FLAG_SIDE_EFFECT | IR_OP_FLAG_NO_FOLD,
                                   .infer = infer_output};
}
