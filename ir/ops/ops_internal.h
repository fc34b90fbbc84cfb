/* Shared by the op files in ir/ops/: registration hooks and helpers for inference/kernels. */
#ifndef AIDOMM_IR_OPS_INTERNAL_H
#define AIDOMM_IR_OPS_INTERNAL_H

#include <math.h>

#include "ir/ir.h"

/* Each group file fills its ops' entries of the table (indexed by ir_op_t). */
void ir_ops_register_source(ir_op_info_t *table);      /* ir/ops/source.c */
void ir_ops_register_elementwise(ir_op_info_t *table); /* ir/ops/elementwise.c */
void ir_ops_register_reduce(ir_op_info_t *table);      /* ir/ops/reduce.c */
void ir_ops_register_matmul(ir_op_info_t *table);      /* ir/ops/matmul.c */
void ir_ops_register_norm(ir_op_info_t *table);        /* ir/ops/norm.c */
void ir_ops_register_layout(ir_op_info_t *table);      /* ir/ops/layout.c */
void ir_ops_register_attention(ir_op_info_t *table);   /* ir/ops/attention.c */
void ir_ops_register_pool(ir_op_info_t *table);        /* ir/ops/pool.c */
void ir_ops_register_train(ir_op_info_t *table);       /* ir/ops/train.c */
void ir_ops_register_conv(ir_op_info_t *table);        /* ir/ops/conv.c: conv1d, batchnorm */
void ir_ops_register_model(ir_op_info_t *table);       /* ir/ops/model.c: rel_shift, one_hot, ... */

/* Normalises a possibly negative axis; -1 when out of range. */
int ir_norm_axis(int64_t axis, int rank);
/* Numpy broadcasting of two types (dims equal, or one is the constant 1). */
bool ir_broadcast_types(const ir_type_t *a, const ir_type_t *b, ir_type_t *out);
/* Element strides of `in` laid over `out`'s rank for broadcasting (0 on broadcast dims). */
void ir_broadcast_strides(const ir_tensor_t *in, const ir_tensor_t *out, int64_t *strides);
/* Input type helper. */
static inline const ir_type_t *ir_in_type(const ir_graph_t *g, const ir_node_t *n, uint32_t i) {
  return &g->values[n->inputs[i]].type;
}

/* Building helpers for VJP rules (errors are sticky in g). */
uint32_t ir_emit(ir_graph_t *g, ir_op_t op, const uint32_t *ins, uint32_t nin,
                 const ir_attr_t *attrs, uint32_t nattrs);
uint32_t ir_emit1(ir_graph_t *g, ir_op_t op, uint32_t a);
uint32_t ir_emit2(ir_graph_t *g, ir_op_t op, uint32_t a, uint32_t b);
/* Reshape to an explicit type. */
uint32_t ir_emit_reshape(ir_graph_t *g, uint32_t x, const ir_type_t *to);

#endif
