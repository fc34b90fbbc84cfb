/* The op registry: one table built once from the group files. */
#include <pthread.h>
#include <string.h>

#include "ir/ops/ops_internal.h"

static ir_op_info_t g_table[IR_OP_COUNT];
static const char *const g_names[IR_OP_COUNT] = {
#define IR_OP(e, s) [IR_OP_##e] = s,
#include "ir/ops.def"
#undef IR_OP
};
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
  for (int i = 0; i < IR_OP_COUNT; i++) g_table[i].name = g_names[i];
  ir_ops_register_source(g_table);
  ir_ops_register_elementwise(g_table);
  ir_ops_register_reduce(g_table);
  ir_ops_register_matmul(g_table);
  ir_ops_register_norm(g_table);
  ir_ops_register_layout(g_table);
  ir_ops_register_attention(g_table);
  ir_ops_register_pool(g_table);
  ir_ops_register_train(g_table);
  ir_ops_register_conv(g_table);
  ir_ops_register_model(g_table);
  /* Registration may not rename ops: the text form depends on ops.def names. */
  for (int i = 0; i < IR_OP_COUNT; i++) g_table[i].name = g_names[i];
}

const ir_op_info_t *ir_op_info(ir_op_t op) {
  if ((unsigned)op >= IR_OP_COUNT) return NULL;
  pthread_once(&g_once, build_table);
  return &g_table[op];
}

const char *ir_op_name(ir_op_t op) {
  return (unsigned)op < IR_OP_COUNT ? g_names[op] : "<bad-op>";
}

bool ir_op_from_name(const char *s, ir_op_t *out) {
  for (int i = 0; i < IR_OP_COUNT; i++)
    if (strcmp(g_names[i], s) == 0) {
      *out = (ir_op_t)i;
      return true;
    }
  return false;
}
