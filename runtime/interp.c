/* Reference interpreter: every value gets its own zeroed buffer at its actual size, nodes run
 * in program order through the registry's reference kernels. Slow and simple on purpose: it
 * is the oracle the planned executor is checked against. */
#include "runtime/interp.h"

#include <stdlib.h>
#include <string.h>

typedef struct rt_binding {
  const char *name;
  void *data;
  size_t bytes;
} rt_binding_t;

struct rt_interp {
  const ir_graph_t *g;
  int64_t symvals[IR_MAX_SYMBOLS];
  ir_tensor_t *vals;   /* per value */
  uint8_t *input_set;  /* per node: INPUT/SCALAR given by the caller */
  rt_binding_t *state; /* per slot of the module */
};

static size_t tensor_bytes(const ir_tensor_t *t) {
  return (size_t)ir_tensor_numel(t) * ir_dtype_size(t->dtype);
}

ad_status_t rt_interp_create(const ir_graph_t *g, const int64_t *symvals, rt_interp_t **out) {
  *out = NULL;
  const ir_module_t *m = g->module;
  for (uint32_t i = 0; i < m->nsymbols; i++)
    if (symvals[i] < 1 || symvals[i] > m->symbols[i].bound)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "symbol %s = %lld is outside 1..%lld", m->symbols[i].name,
                            (long long)symvals[i], (long long)m->symbols[i].bound);
  rt_interp_t *it = calloc(1, sizeof *it);
  if (!it) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  it->g = g;
  memcpy(it->symvals, symvals, sizeof(int64_t) * m->nsymbols);
  it->vals = calloc(g->nvalues ? g->nvalues : 1, sizeof *it->vals);
  it->input_set = calloc(g->nnodes ? g->nnodes : 1, 1);
  it->state = calloc(m->nslots ? m->nslots : 1, sizeof *it->state);
  if (!it->vals || !it->input_set || !it->state) {
    rt_interp_free(it);
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  for (uint32_t v = 0; v < g->nvalues; v++) {
    ir_tensor_t *t = &it->vals[v];
    const ir_type_t *ty = &g->values[v].type;
    ir_shape_t s = ir_type_shape(ty, it->symvals);
    t->dtype = ty->dtype;
    t->rank = s.rank;
    memcpy(t->dims, s.dims, sizeof t->dims);
    t->data = calloc(1, tensor_bytes(t) ? tensor_bytes(t) : 1);
    if (!t->data) {
      rt_interp_free(it);
      return ad_status_make(AD_STATUS_RESOURCE, "out of memory for value %%%u", v);
    }
  }
  *out = it;
  return AD_OK;
}

void rt_interp_free(rt_interp_t *it) {
  if (!it) return;
  if (it->vals)
    for (uint32_t v = 0; v < it->g->nvalues; v++) free(it->vals[v].data);
  free(it->vals);
  free(it->input_set);
  free(it->state);
  free(it);
}

ad_status_t rt_interp_set_input(rt_interp_t *it, const char *name, const void *data,
                                size_t bytes) {
  const ir_graph_t *g = it->g;
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    if ((n->op != IR_OP_INPUT && n->op != IR_OP_SCALAR) || strcmp(n->name, name) != 0) continue;
    ir_tensor_t *t = &it->vals[n->output0];
    if (bytes != tensor_bytes(t))
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "input '%s' expects %zu bytes at its actual size, got %zu", name,
                            tensor_bytes(t), bytes);
    memcpy(t->data, data, bytes);
    it->input_set[i] = 1;
    return AD_OK;
  }
  return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program '%s' has no input named '%s'",
                        g->name, name);
}

ad_status_t rt_interp_bind_state(rt_interp_t *it, const char *slot, void *data, size_t bytes) {
  const ir_module_t *m = it->g->module;
  int64_t i = ir_module_find_slot(m, slot);
  if (i < 0) return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "no state slot named '%s'", slot);
  int64_t sym[IR_MAX_SYMBOLS] = {0};
  ir_shape_t s = ir_type_shape(&m->slots[i].type, sym);
  size_t need = (size_t)ir_shape_numel(&s) * ir_dtype_size(m->slots[i].type.dtype);
  if (bytes != need)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "state slot '%s' needs %zu bytes, got %zu",
                          slot, need, bytes);
  it->state[i] = (rt_binding_t){m->slots[i].name, data, bytes};
  return AD_OK;
}

static void store_scalar(ir_tensor_t *t, double v) {
  switch (t->dtype) {
    case IR_DTYPE_F32: *(float *)t->data = (float)v; break;
    case IR_DTYPE_F64: *(double *)t->data = v; break;
    case IR_DTYPE_I32: *(int32_t *)t->data = (int32_t)v; break;
    case IR_DTYPE_I64: *(int64_t *)t->data = (int64_t)v; break;
    case IR_DTYPE_U8: *(uint8_t *)t->data = (uint8_t)v; break;
    default: break;
  }
}

ad_status_t rt_interp_run(rt_interp_t *it, ir_parallel_t *par) {
  const ir_graph_t *g = it->g;
  const ir_module_t *m = g->module;
  ir_tensor_t ins[64];
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    switch (n->op) {
      case IR_OP_INPUT:
        if (!it->input_set[i])
          return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program '%s': input '%s' not set",
                                g->name, n->name);
        continue;
      case IR_OP_SCALAR:
        if (!it->input_set[i]) {
          const ir_scalar_decl_t *s = ir_module_find_scalar(m, n->name);
          store_scalar(&it->vals[n->output0], s ? s->dflt : 0.0);
        }
        continue;
      case IR_OP_STATE_IN:
      case IR_OP_STATE_OUT: {
        int64_t s = ir_module_find_slot(m, ir_node_attr_string(n, "slot", ""));
        if (s < 0 || !it->state[s].data)
          return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                                "program '%s': state slot of node '%s' is not bound", g->name,
                                n->name);
        if (n->op == IR_OP_STATE_IN)
          memcpy(it->vals[n->output0].data, it->state[s].data, it->state[s].bytes);
        else
          memcpy(it->state[s].data, it->vals[n->inputs[0]].data, it->state[s].bytes);
        continue;
      }
      case IR_OP_OUTPUT: continue;
      default: break;
    }
    const ir_op_info_t *info = ir_op_info(n->op);
    if (!info->kernel)
      return ir_node_error(g, n, "has no reference kernel");
    if (n->ninputs > 64) return ir_node_error(g, n, "too many inputs for the interpreter");
    for (uint32_t k = 0; k < n->ninputs; k++) ins[k] = it->vals[n->inputs[k]];
    ir_kernel_args_t a = {.node = n, .in = ins, .nin = n->ninputs, .out = &it->vals[n->output0],
                          .nout = n->noutputs, .par = par};
    ad_status_t st = info->kernel(&a);
    if (st) return ad_status_annotate(st, "program '%s'", g->name);
  }
  return AD_OK;
}

const ir_tensor_t *rt_interp_value(const rt_interp_t *it, uint32_t value) {
  return value < it->g->nvalues ? &it->vals[value] : NULL;
}

const ir_tensor_t *rt_interp_output(const rt_interp_t *it, const char *name) {
  const ir_graph_t *g = it->g;
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == IR_OP_OUTPUT && strcmp(g->nodes[i].name, name) == 0)
      return &it->vals[g->nodes[i].inputs[0]];
  return NULL;
}
