#include "runtime/exec.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/init.h"

#define RT_ALIGN 64

static void *aligned_zalloc(size_t n) {
  size_t sz = (n + RT_ALIGN - 1) / RT_ALIGN * RT_ALIGN;
  void *p = aligned_alloc(RT_ALIGN, sz ? sz : RT_ALIGN);
  if (p) memset(p, 0, sz ? sz : RT_ALIGN);
  return p;
}

ad_status_t rt_state_create(const ir_module_t *m, rt_state_t **out) {
  *out = NULL;
  rt_state_t *s = calloc(1, sizeof *s);
  if (!s) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  s->module = m;
  s->data = calloc(m->nslots ? m->nslots : 1, sizeof *s->data);
  s->bytes = calloc(m->nslots ? m->nslots : 1, sizeof *s->bytes);
  if (!s->data || !s->bytes) {
    rt_state_free(s);
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  int64_t zeros[IR_MAX_SYMBOLS] = {0};
  for (uint32_t i = 0; i < m->nslots; i++) {
    ir_shape_t sh = ir_type_shape(&m->slots[i].type, zeros);
    s->bytes[i] = (size_t)ir_shape_numel(&sh) * ir_dtype_size(m->slots[i].type.dtype);
    s->data[i] = aligned_zalloc(s->bytes[i]);
    if (!s->data[i]) {
      rt_state_free(s);
      return ad_status_make(AD_STATUS_RESOURCE, "out of memory for state slot '%s'",
                            m->slots[i].name);
    }
  }
  *out = s;
  return AD_OK;
}

void rt_state_free(rt_state_t *s) {
  if (!s) return;
  if (s->data)
    for (uint32_t i = 0; i < s->module->nslots; i++) free(s->data[i]);
  free(s->data);
  free(s->bytes);
  free(s);
}

int64_t rt_state_find(const rt_state_t *s, const char *slot) {
  return ir_module_find_slot(s->module, slot);
}

ad_status_t rt_state_init(rt_state_t *s, uint64_t seed) {
  for (uint32_t i = 0; i < s->module->nslots; i++)
    AD_RETURN_IF_ERROR(rt_init_slot(&s->module->slots[i], seed, s->data[i]));
  return AD_OK;
}

struct rt_exec {
  const ir_graph_t *g;
  const pass_memplan_t *plan;
  uint8_t *arena;
  ir_tensor_t *vals; /* per value: dtype/rank fixed, data and dims set per run */
  int64_t *slot_of;  /* per node: slot index for STATE_IN/STATE_OUT, else -1 */
  const rt_dropout_mask_t *masks; /* test-only dropout masks (rt_exec_set_dropout_masks) */
  uint32_t nmasks;
};

void rt_exec_set_dropout_masks(rt_exec_t *e, const rt_dropout_mask_t *masks, uint32_t n) {
  e->masks = n ? masks : NULL;
  e->nmasks = n;
}

/* A DROPOUT node on a test-given keep-mask: y = x * (keep ? scale : 0), scale as the kernel's. */
static ad_status_t injected_dropout(const rt_exec_t *e, const ir_node_t *n, const ir_tensor_t *x,
                                    ir_tensor_t *y) {
  const char *key = ir_node_attr_string(n, "key", "");
  const rt_dropout_mask_t *mk = NULL;
  for (uint32_t i = 0; i < e->nmasks && !mk; i++)
    if (strcmp(e->masks[i].key, key) == 0) mk = &e->masks[i];
  int64_t numel = ir_tensor_numel(x);
  if (!mk) return ir_node_error(e->g, n, "no injected dropout mask for key '%s'", key);
  if (mk->numel != numel)
    return ir_node_error(e->g, n, "injected dropout mask '%s' has %lld elements, the input %lld",
                         key, (long long)mk->numel, (long long)numel);
  double p = ir_node_attr_float(n, "p", 0.0);
  if (x->dtype == IR_DTYPE_F64) {
    double s = 1.0 / (1.0 - p);
    for (int64_t i = 0; i < numel; i++)
      ((double *)y->data)[i] = ((const double *)x->data)[i] * (mk->keep[i] ? s : 0.0);
  } else if (x->dtype == IR_DTYPE_F32) {
    float s = 1.0f / (float)(1.0 - p);
    for (int64_t i = 0; i < numel; i++)
      ((float *)y->data)[i] = ((const float *)x->data)[i] * (mk->keep[i] ? s : 0.0f);
  } else {
    return ir_node_error(e->g, n, "injected dropout mask on a %s tensor",
                         ir_dtype_name(x->dtype));
  }
  return AD_OK;
}

ad_status_t rt_exec_create(const ir_graph_t *g, const pass_memplan_t *plan, rt_exec_t **out) {
  *out = NULL;
  if (plan->nvalues != g->nvalues)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "memory plan of program '%s' covers %u values, the program has %u",
                          g->name, plan->nvalues, g->nvalues);
  for (uint32_t v = 0; v < g->nvalues; v++) {
    const ir_node_t *n = &g->nodes[g->values[v].node];
    if (plan->offset[v] < 0 && n->op != IR_OP_STATE_IN)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "memory plan of program '%s' gives value %%%u no storage", g->name, v);
    if (plan->offset[v] >= 0 && plan->offset[v] + plan->size[v] > plan->peak_bytes)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "memory plan of program '%s' places value %%%u past the arena",
                            g->name, v);
  }
  rt_exec_t *e = calloc(1, sizeof *e);
  if (!e) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  e->g = g;
  e->plan = plan;
  e->arena = aligned_zalloc((size_t)plan->peak_bytes);
  e->vals = calloc(g->nvalues ? g->nvalues : 1, sizeof *e->vals);
  e->slot_of = calloc(g->nnodes ? g->nnodes : 1, sizeof *e->slot_of);
  if (!e->arena || !e->vals || !e->slot_of) {
    rt_exec_free(e);
    return ad_status_make(AD_STATUS_RESOURCE, "cannot allocate a %lld-byte arena for '%s'",
                          (long long)plan->peak_bytes, g->name);
  }
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    e->slot_of[i] = -1;
    if (n->op == IR_OP_STATE_IN || n->op == IR_OP_STATE_OUT) {
      e->slot_of[i] = ir_module_find_slot(g->module, ir_node_attr_string(n, "slot", ""));
      if (e->slot_of[i] < 0) {
        rt_exec_free(e);
        return ir_node_error(g, n, "refers to an unknown state slot");
      }
    }
  }
  *out = e;
  return AD_OK;
}

void rt_exec_free(rt_exec_t *e) {
  if (!e) return;
  free(e->arena);
  free(e->vals);
  free(e->slot_of);
  free(e);
}

int64_t rt_exec_arena_bytes(const rt_exec_t *e) { return e->plan->peak_bytes; }

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

static const rt_feed_t *find_feed(const rt_feed_t *f, uint32_t n, const char *name) {
  for (uint32_t i = 0; i < n; i++)
    if (strcmp(f[i].name, name) == 0) return &f[i];
  return NULL;
}

ad_status_t rt_exec_run(rt_exec_t *e, rt_state_t *state, const int64_t *symvals,
                        const rt_feed_t *feeds, uint32_t nfeeds, ir_parallel_t *par) {
  const ir_graph_t *g = e->g;
  const ir_module_t *m = g->module;
  if (state->module != m)
    return ad_status_make(AD_STATUS_INTERNAL, "state belongs to another module");
  for (uint32_t i = 0; i < m->nsymbols; i++)
    if (symvals[i] < 1 || symvals[i] > m->symbols[i].bound)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "symbol %s = %lld is outside 1..%lld",
                            m->symbols[i].name, (long long)symvals[i],
                            (long long)m->symbols[i].bound);
  /* Actual shapes of this run; data pointers from the plan (or the slot for state reads). */
  for (uint32_t v = 0; v < g->nvalues; v++) {
    ir_tensor_t *t = &e->vals[v];
    ir_shape_t s = ir_type_shape(&g->values[v].type, symvals);
    t->dtype = g->values[v].type.dtype;
    t->rank = s.rank;
    memcpy(t->dims, s.dims, sizeof t->dims);
    t->data = e->plan->offset[v] >= 0 ? e->arena + e->plan->offset[v] : NULL;
  }
  ir_tensor_t ins[64];
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    ir_tensor_t *o = n->noutputs ? &e->vals[n->output0] : NULL;
    switch (n->op) {
      case IR_OP_INPUT:
      case IR_OP_SCALAR: {
        const rt_feed_t *f = find_feed(feeds, nfeeds, n->name);
        size_t need = (size_t)ir_tensor_numel(o) * ir_dtype_size(o->dtype);
        if (!f && n->op == IR_OP_SCALAR) {
          const ir_scalar_decl_t *d = ir_module_find_scalar(m, n->name);
          store_scalar(o, d ? d->dflt : 0.0);
          continue;
        }
        if (!f)
          return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program '%s': input '%s' not given",
                                g->name, n->name);
        if (f->bytes != need)
          return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                                "program '%s': input '%s' has %zu bytes, expected %zu", g->name,
                                n->name, f->bytes, need);
        memcpy(o->data, f->data, need);
        continue;
      }
      case IR_OP_STATE_IN:
        o->data = state->data[e->slot_of[i]];
        continue;
      case IR_OP_STATE_OUT: {
        const ir_tensor_t *src = &e->vals[n->inputs[0]];
        if (src->data != state->data[e->slot_of[i]])
          memcpy(state->data[e->slot_of[i]], src->data, state->bytes[e->slot_of[i]]);
        continue;
      }
      case IR_OP_OUTPUT: continue;
      default: break;
    }
    const ir_op_info_t *info = ir_op_info(n->op);
    if (!info->kernel) return ir_node_error(g, n, "has no kernel");
    if (n->ninputs > 64) return ir_node_error(g, n, "too many inputs");
    for (uint32_t k = 0; k < n->ninputs; k++) ins[k] = e->vals[n->inputs[k]];
    if (n->op == IR_OP_DROPOUT && e->masks) {
      ad_status_t st = injected_dropout(e, n, &ins[0], o);
      if (st) return ad_status_annotate(st, "program '%s'", g->name);
      continue;
    }
    ir_kernel_args_t a = {.node = n, .in = ins, .nin = n->ninputs, .out = o,
                          .nout = n->noutputs, .par = par};
    ad_status_t st = info->kernel(&a);
    if (st) return ad_status_annotate(st, "program '%s'", g->name);
  }
  return AD_OK;
}

const ir_tensor_t *rt_exec_output(const rt_exec_t *e, const char *name) {
  const ir_graph_t *g = e->g;
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == IR_OP_OUTPUT && strcmp(g->nodes[i].name, name) == 0)
      return &e->vals[g->nodes[i].inputs[0]];
  return NULL;
}
