/* IR emission helpers shared by the class builders (see emit.h). */
#include "frontend/emit.h"

#include <math.h>
#include <string.h>

const char *fe_emit_scoped(fe_emit_t *e, const char *part) {
  if (!e->g->scope[0]) return part;
  return ad_arena_printf(&e->m->arena, "%s.%s", e->g->scope, part);
}

ir_type_t fe_emit_type(ir_dtype_t dt, int rank, const int64_t *cst, const int *sym) {
  ir_type_t ty;
  memset(&ty, 0, sizeof ty);
  ty.dtype = dt;
  ty.rank = rank;
  for (int i = 0; i < rank; i++)
    ty.dims[i] = sym && sym[i] >= 0 ? ir_dim_sym(sym[i]) : ir_dim_const(cst[i]);
  return ty;
}

uint32_t fe_emit_node(fe_emit_t *e, ir_op_t op, const char *name, const uint32_t *ins,
                      uint32_t nin, const ir_attr_t *attrs, uint32_t nattrs,
                      const ir_type_t *type) {
  if (e->err) return IR_NONE;
  for (uint32_t i = 0; i < nin; i++)
    if (ins[i] == IR_NONE) return IR_NONE; /* an earlier failure is already recorded */
  ir_node_desc_t d = {.op = op,
                      .name = name ? fe_emit_scoped(e, name) : NULL,
                      .inputs = ins,
                      .ninputs = nin,
                      .attrs = attrs,
                      .nattrs = nattrs,
                      .out_types = type,
                      .nout_types = type ? 1 : 0};
  return ir_build(e->g, &d);
}

uint32_t fe_emit_slot(fe_emit_t *e, const char *local, const ir_type_t *ty, uint32_t flags,
                      const char *init) {
  if (e->err) return IR_NONE;
  const char *name = fe_emit_scoped(e, local);
  e->err = ir_module_add_slot(e->m, name, ty, flags, init, NULL);
  if (e->err) return IR_NONE;
  ir_attr_t a = IR_ATTR_S("slot", name);
  return fe_emit_node(e, IR_OP_STATE_IN, local, NULL, 0, &a, 1, ty);
}

uint32_t fe_emit_param(fe_emit_t *e, const char *local, int rank, int64_t d0, int64_t d1,
                       const char *init) {
  const int64_t dims[2] = {d0, d1};
  ir_type_t ty = fe_emit_type(e->dt, rank, dims, NULL);
  return fe_emit_slot(e, local, &ty, IR_SLOT_PARAM | IR_SLOT_TRAINABLE, init);
}

const char *fe_emit_uniform_init(fe_emit_t *e, int64_t fan_in) {
  double b = 1.0 / sqrt((double)fan_in);
  return ad_arena_printf(&e->m->arena, "uniform(%.17g,%.17g)", -b, b);
}

uint32_t fe_emit_linear(fe_emit_t *e, const char *name, uint32_t x, int64_t in, int64_t out,
                        bool bias) {
  const char *init = fe_emit_uniform_init(e, in);
  ir_push_scope(e->g, name);
  uint32_t w = fe_emit_param(e, "weight", 2, out, in, init);
  uint32_t b = bias ? fe_emit_param(e, "bias", 1, out, 0, init) : IR_NONE;
  ir_pop_scope(e->g);
  uint32_t ins[3] = {x, w, b};
  return fe_emit_node(e, IR_OP_LINEAR, name, ins, bias ? 3 : 2, NULL, 0, NULL);
}

uint32_t fe_emit_layernorm(fe_emit_t *e, const char *name, uint32_t x, int64_t h, double eps) {
  ir_push_scope(e->g, name);
  uint32_t w = fe_emit_param(e, "weight", 1, h, 0, "ones");
  uint32_t b = fe_emit_param(e, "bias", 1, h, 0, "zeros");
  ir_pop_scope(e->g);
  uint32_t ins[3] = {x, w, b};
  ir_attr_t a = IR_ATTR_F("eps", eps);
  return fe_emit_node(e, IR_OP_LAYERNORM, name, ins, 3, &a, 1, NULL);
}

uint32_t fe_emit_runtime_scalar(fe_emit_t *e, const char *name) {
  if (e->err) return IR_NONE;
  for (uint32_t i = 0; i < e->g->nnodes; i++)
    if (e->g->nodes[i].op == IR_OP_SCALAR && strcmp(e->g->nodes[i].name, name) == 0)
      return e->g->nodes[i].output0;
  if (!ir_module_find_scalar(e->m, name)) {
    e->err = ir_module_add_scalar(e->m, name, IR_DTYPE_I64, 0.0);
    if (e->err) return IR_NONE;
  }
  const char *saved = e->g->scope; /* runtime scalars live at the top scope */
  e->g->scope = "";
  uint32_t v = fe_emit_node(e, IR_OP_SCALAR, name, NULL, 0, NULL, 0, NULL);
  e->g->scope = saved;
  return v;
}

uint32_t fe_emit_dropout(fe_emit_t *e, const char *name, uint32_t x, double p) {
  if (p == 0.0 || x == IR_NONE) return x;
  uint32_t seed = fe_emit_runtime_scalar(e, "seed"), step = fe_emit_runtime_scalar(e, "step");
  ir_attr_t a[2] = {IR_ATTR_F("p", p), IR_ATTR_S("key", fe_emit_scoped(e, name))};
  uint32_t ins[3] = {x, seed, step};
  return fe_emit_node(e, IR_OP_DROPOUT, name, ins, 3, a, 2, NULL);
}
