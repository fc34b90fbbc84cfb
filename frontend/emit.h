/* IR emission helpers shared by the class builders (backbones, fusions, adapters, tasks). A
 * builder keeps one fe_emit_t per program it extends; every helper is a no-op returning IR_NONE
 * once an input is IR_NONE or a declaration failed, so a builder emits straight-line code and
 * checks once at the end: the first failure outside ir_build is in err, ir_build's own in the
 * graph. Names are local to the graph's current scope ("<scope>.<name>"), as the peer's module
 * paths are. */
#ifndef AIDOMM_FRONTEND_EMIT_H
#define AIDOMM_FRONTEND_EMIT_H

#include "frontend/fe_internal.h"

typedef struct fe_emit {
  ir_module_t *m;  /* slots, scalars and the arena of scoped names */
  ir_graph_t *g;   /* the program being extended */
  ir_dtype_t dt;   /* dtype of parameters */
  ad_status_t err; /* first failure outside ir_build (slot and scalar declarations) */
} fe_emit_t;

/* "<scope>.<part>", or part itself at the top scope. */
const char *fe_emit_scoped(fe_emit_t *e, const char *part);

/* A tensor type of dt: dims[i] is the symbol sym[i] when sym is given and sym[i] >= 0, else
 * the constant cst[i]. */
ir_type_t fe_emit_type(ir_dtype_t dt, int rank, const int64_t *cst, const int *sym);

/* ir_build of one node named "<scope>.<name>" (unnamed when name is NULL); type, when given,
 * is its single output's type. */
uint32_t fe_emit_node(fe_emit_t *e, ir_op_t op, const char *name, const uint32_t *ins,
                      uint32_t nin, const ir_attr_t *attrs, uint32_t nattrs, const ir_type_t *type);

/* A state slot "<scope>.<local>" of type ty and its STATE_IN node of the same name. */
uint32_t fe_emit_slot(fe_emit_t *e, const char *local, const ir_type_t *ty, uint32_t flags,
                      const char *init);

/* A trainable parameter [d0] (rank 1) or [d0, d1] (rank 2) in e->dt: the slot
 * "<scope>.<local>" and its STATE_IN node of the same name. */
uint32_t fe_emit_param(fe_emit_t *e, const char *local, int rank, int64_t d0, int64_t d1,
                       const char *init);

/* torch's default Linear/Conv init U(+-1/sqrt(fan_in)) as a slot init string. */
const char *fe_emit_uniform_init(fe_emit_t *e, int64_t fan_in);

/* torch.nn.Linear(in, out, bias) under the scope name, x [..., in] -> [..., out], with torch's
 * default init: U(+-1/sqrt(in)) for weight and bias. */
uint32_t fe_emit_linear(fe_emit_t *e, const char *name, uint32_t x, int64_t in, int64_t out,
                        bool bias);

/* torch.nn.LayerNorm(h, eps) under the scope name (weight ones, bias zeros): x [..., h]. */
uint32_t fe_emit_layernorm(fe_emit_t *e, const char *name, uint32_t x, int64_t h, double eps);

/* The program's SCALAR node for the i64 runtime scalar `name` (at the top scope), declaring it
 * in the module when absent. */
uint32_t fe_emit_runtime_scalar(fe_emit_t *e, const char *name);

/* nn.Dropout(p) keyed by its scoped name; the identity (no node) when p == 0, as in torch. */
uint32_t fe_emit_dropout(fe_emit_t *e, const char *name, uint32_t x, double p);

#endif
