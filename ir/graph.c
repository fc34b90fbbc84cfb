/* Modules, programs and the graph builder. Every node goes through ir_build, so shape
 * inference runs once at construction and the graph is always well-typed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ops/ops_internal.h"

/* ---- node-name set: open addressing over arena strings ------------------------------- */
struct ir_suffix_entry;
struct ir_name_set {
  const char **slots;
  uint32_t cap, count;
  struct ir_suffix_entry *suffix; /* base name -> next "#k" to try */
  uint32_t cap_suffix, nsuffix;
};

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

static bool names_contains(const struct ir_name_set *ns, const char *s) {
  if (!ns->cap) return false;
  for (uint32_t i = (uint32_t)hash_str(s) & (ns->cap - 1);; i = (i + 1) & (ns->cap - 1)) {
    if (!ns->slots[i]) return false;
    if (strcmp(ns->slots[i], s) == 0) return true;
  }
}

static void names_insert(struct ir_name_set *ns, const char *s) {
  if ((ns->count + 1) * 2 > ns->cap) {
    uint32_t ncap = ns->cap ? ns->cap * 2 : 64;
    const char **nslots = calloc(ncap, sizeof *nslots);
    if (!nslots) abort();
    for (uint32_t i = 0; i < ns->cap; i++) {
      if (!ns->slots[i]) continue;
      uint32_t j = (uint32_t)hash_str(ns->slots[i]) & (ncap - 1);
      while (nslots[j]) j = (j + 1) & (ncap - 1);
      nslots[j] = ns->slots[i];
    }
    free(ns->slots);
    ns->slots = nslots;
    ns->cap = ncap;
  }
  uint32_t i = (uint32_t)hash_str(s) & (ns->cap - 1);
  while (ns->slots[i]) i = (i + 1) & (ns->cap - 1);
  ns->slots[i] = s;
  ns->count++;
}

/* ---- module ----------------------------------------------------------------------------- */
static void *grow(void *p, uint32_t *cap, uint32_t need, size_t elem) {
  if (need <= *cap) return p;
  uint32_t ncap = *cap ? *cap : 16;
  while (ncap < need) ncap *= 2;
  void *q = realloc(p, (size_t)ncap * elem);
  if (!q) abort();
  *cap = ncap;
  return q;
}

ir_module_t *ir_module_create(void) {
  ir_module_t *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  ad_arena_init(&m->arena, 256 * 1024);
  return m;
}

static void graph_free(ir_graph_t *g) {
  free(g->nodes);
  free(g->values);
  if (g->names) {
    free(g->names->slots);
    free(g->names->suffix);
    free(g->names);
  }
  ad_status_free(g->error);
  free(g);
}

void ir_module_free(ir_module_t *m) {
  if (!m) return;
  for (uint32_t i = 0; i < m->nprograms; i++) graph_free(m->programs[i]);
  free(m->programs);
  free(m->slots);
  free(m->scalars);
  ad_arena_free(&m->arena);
  free(m);
}

ad_status_t ir_module_add_symbol(ir_module_t *m, const char *name, int64_t bound, int *out_index) {
  if (ir_module_find_symbol(m, name) >= 0)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "symbol '%s' declared twice", name);
  if (m->nsymbols >= IR_MAX_SYMBOLS)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "more than %d size symbols", IR_MAX_SYMBOLS);
  if (bound < 1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "symbol '%s' has bound %lld; must be >= 1",
                          name, (long long)bound);
  m->symbols[m->nsymbols].name = ad_arena_strdup(&m->arena, name);
  m->symbols[m->nsymbols].bound = bound;
  if (out_index) *out_index = (int)m->nsymbols;
  m->nsymbols++;
  return AD_OK;
}

int ir_module_find_symbol(const ir_module_t *m, const char *name) {
  for (uint32_t i = 0; i < m->nsymbols; i++)
    if (strcmp(m->symbols[i].name, name) == 0) return (int)i;
  return -1;
}

void ir_module_bounds(const ir_module_t *m, int64_t *symvals) {
  for (uint32_t i = 0; i < m->nsymbols; i++) symvals[i] = m->symbols[i].bound;
}

ad_status_t ir_module_add_scalar(ir_module_t *m, const char *name, ir_dtype_t dtype, double dflt) {
  if (ir_module_find_scalar(m, name))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "runtime scalar '%s' declared twice", name);
  m->scalars = grow(m->scalars, &m->cap_scalars, m->nscalars + 1, sizeof *m->scalars);
  m->scalars[m->nscalars++] = (ir_scalar_decl_t){ad_arena_strdup(&m->arena, name), dtype, dflt};
  return AD_OK;
}

const ir_scalar_decl_t *ir_module_find_scalar(const ir_module_t *m, const char *name) {
  for (uint32_t i = 0; i < m->nscalars; i++)
    if (strcmp(m->scalars[i].name, name) == 0) return &m->scalars[i];
  return NULL;
}

ad_status_t ir_module_add_slot(ir_module_t *m, const char *name, const ir_type_t *type,
                               uint32_t flags, const char *init, uint32_t *out_index) {
  if (ir_module_find_slot(m, name) >= 0)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "state slot '%s' declared twice", name);
  for (int i = 0; i < type->rank; i++)
    if (!ir_dim_is_const(type->dims[i], NULL))
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "state slot '%s' must have a static shape", name);
  m->slots = grow(m->slots, &m->cap_slots, m->nslots + 1, sizeof *m->slots);
  m->slots[m->nslots] = (ir_state_slot_t){ad_arena_strdup(&m->arena, name), *type, flags,
                                          ad_arena_strdup(&m->arena, init ? init : "zeros")};
  if (out_index) *out_index = m->nslots;
  m->nslots++;
  return AD_OK;
}

int64_t ir_module_find_slot(const ir_module_t *m, const char *name) {
  for (uint32_t i = 0; i < m->nslots; i++)
    if (strcmp(m->slots[i].name, name) == 0) return i;
  return -1;
}

ir_graph_t *ir_module_add_program(ir_module_t *m, const char *name) {
  ir_graph_t *g = calloc(1, sizeof *g);
  if (!g) abort();
  g->module = m;
  g->name = ad_arena_strdup(&m->arena, name);
  g->scope = "";
  g->names = calloc(1, sizeof *g->names);
  if (!g->names) abort();
  m->programs = grow(m->programs, &m->cap_programs, m->nprograms + 1, sizeof *m->programs);
  m->programs[m->nprograms++] = g;
  return g;
}

void ir_module_remove_program(ir_module_t *m, ir_graph_t *g) {
  for (uint32_t i = 0; i < m->nprograms; i++)
    if (m->programs[i] == g) {
      memmove(&m->programs[i], &m->programs[i + 1],
              sizeof *m->programs * (size_t)(m->nprograms - i - 1));
      m->nprograms--;
      break;
    }
  graph_free(g);
}

ir_graph_t *ir_module_find_program(const ir_module_t *m, const char *name) {
  for (uint32_t i = 0; i < m->nprograms; i++)
    if (strcmp(m->programs[i]->name, name) == 0) return m->programs[i];
  return NULL;
}

/* ---- graph queries -------------------------------------------------------------------- */
const ir_type_t *ir_value_type(const ir_graph_t *g, uint32_t v) {
  return v < g->nvalues ? &g->values[v].type : NULL;
}

const ir_node_t *ir_value_producer(const ir_graph_t *g, uint32_t v) {
  return v < g->nvalues ? &g->nodes[g->values[v].node] : NULL;
}

const ir_attr_t *ir_node_attr(const ir_node_t *n, const char *key) {
  for (uint32_t i = 0; i < n->nattrs; i++)
    if (strcmp(n->attrs[i].key, key) == 0) return &n->attrs[i];
  return NULL;
}

int64_t ir_node_attr_int(const ir_node_t *n, const char *key, int64_t dflt) {
  const ir_attr_t *a = ir_node_attr(n, key);
  if (!a) return dflt;
  if (a->kind == IR_ATTR_INT) return a->i;
  if (a->kind == IR_ATTR_FLOAT) return (int64_t)a->f;
  return dflt;
}

double ir_node_attr_float(const ir_node_t *n, const char *key, double dflt) {
  const ir_attr_t *a = ir_node_attr(n, key);
  if (!a) return dflt;
  if (a->kind == IR_ATTR_FLOAT) return a->f;
  if (a->kind == IR_ATTR_INT) return (double)a->i;
  return dflt;
}

const char *ir_node_attr_string(const ir_node_t *n, const char *key, const char *dflt) {
  const ir_attr_t *a = ir_node_attr(n, key);
  return a && a->kind == IR_ATTR_STRING ? a->s : dflt;
}

ad_status_t ir_graph_take_error(ir_graph_t *g) {
  ad_status_t st = g->error;
  g->error = NULL;
  return st;
}

ad_status_t ir_node_error(const ir_graph_t *g, const ir_node_t *n, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program '%s', node '%s' (%s): %s",
                        g && g->name ? g->name : "?", n->name ? n->name : "?", ir_op_name(n->op),
                        msg);
}

/* ---- scopes and names ------------------------------------------------------------------ */
void ir_push_scope(ir_graph_t *g, const char *part) {
  ir_module_t *m = g->module;
  g->scope = g->scope[0] ? ad_arena_printf(&m->arena, "%s.%s", g->scope, part)
                         : ad_arena_strdup(&m->arena, part);
}

void ir_pop_scope(ir_graph_t *g) {
  const char *dot = strrchr(g->scope, '.');
  g->scope = dot ? ad_arena_strndup(&g->module->arena, g->scope, (size_t)(dot - g->scope)) : "";
}

/* Next free "#k" suffix per base name, so naming n nodes of one op costs O(n), not O(n^2). */
typedef struct ir_suffix_entry {
  const char *base;
  int next;
} ir_suffix_entry_t;

static int *suffix_slot(struct ir_name_set *ns, const char *base) {
  if ((ns->nsuffix + 1) * 2 > ns->cap_suffix) {
    uint32_t ncap = ns->cap_suffix ? ns->cap_suffix * 2 : 64;
    ir_suffix_entry_t *t = calloc(ncap, sizeof *t);
    if (!t) abort();
    for (uint32_t i = 0; i < ns->cap_suffix; i++) {
      if (!ns->suffix[i].base) continue;
      uint32_t j = (uint32_t)hash_str(ns->suffix[i].base) & (ncap - 1);
      while (t[j].base) j = (j + 1) & (ncap - 1);
      t[j] = ns->suffix[i];
    }
    free(ns->suffix);
    ns->suffix = t;
    ns->cap_suffix = ncap;
  }
  uint32_t i = (uint32_t)hash_str(base) & (ns->cap_suffix - 1);
  while (ns->suffix[i].base && strcmp(ns->suffix[i].base, base) != 0)
    i = (i + 1) & (ns->cap_suffix - 1);
  if (!ns->suffix[i].base) {
    ns->suffix[i] = (ir_suffix_entry_t){base, 1};
    ns->nsuffix++;
  }
  return &ns->suffix[i].next;
}

static const char *unique_name(ir_graph_t *g, const char *base) {
  ir_module_t *m = g->module;
  if (!names_contains(g->names, base)) return ad_arena_strdup(&m->arena, base);
  const char *key = ad_arena_strdup(&m->arena, base);
  int *next = suffix_slot(g->names, key);
  for (;; (*next)++) {
    char *s = ad_arena_printf(&m->arena, "%s#%d", base, *next);
    if (!names_contains(g->names, s)) {
      (*next)++;
      return s;
    }
  }
}

/* ---- building ----------------------------------------------------------------------- */
static int attr_key_cmp(const void *a, const void *b) {
  return strcmp(((const ir_attr_t *)a)->key, ((const ir_attr_t *)b)->key);
}

static ir_attr_t *copy_attrs(ad_arena_t *a, const ir_attr_t *src, uint32_t n) {
  if (!n) return NULL;
  ir_attr_t *d = ad_arena_alloc(a, sizeof *d * n);
  for (uint32_t i = 0; i < n; i++) {
    d[i] = src[i];
    d[i].key = ad_arena_strdup(a, src[i].key);
    if (src[i].kind == IR_ATTR_STRING) d[i].s = ad_arena_strdup(a, src[i].s ? src[i].s : "");
    if (src[i].kind == IR_ATTR_INTS)
      d[i].ints = ad_arena_memdup(a, src[i].ints, sizeof(int64_t) * src[i].n);
    if (src[i].kind == IR_ATTR_FLOATS)
      d[i].floats = ad_arena_memdup(a, src[i].floats, sizeof(double) * src[i].n);
  }
  qsort(d, n, sizeof *d, attr_key_cmp);
  return d;
}

static void set_error(ir_graph_t *g, ad_status_t st) {
  if (!g->error)
    g->error = st;
  else
    ad_status_free(st);
}

uint32_t ir_build(ir_graph_t *g, const ir_node_desc_t *d) {
  if (g->error) return IR_NONE;
  ir_module_t *m = g->module;
  const ir_op_info_t *info = ir_op_info(d->op);
  if (!info) {
    set_error(g, ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program '%s': unknown op id %d",
                                g->name, (int)d->op));
    return IR_NONE;
  }
  ir_node_t n;
  memset(&n, 0, sizeof n);
  n.op = d->op;
  /* The name goes first so errors below can name the node. */
  if (d->name) {
    if (names_contains(g->names, d->name)) {
      set_error(g, ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                                  "program '%s': duplicate node name '%s'", g->name, d->name));
      return IR_NONE;
    }
    n.name = ad_arena_strdup(&m->arena, d->name);
  } else {
    const char *base = g->scope[0] ? ad_arena_printf(&m->arena, "%s.%s", g->scope, info->name)
                                   : info->name;
    n.name = unique_name(g, base);
  }
  if ((int32_t)d->ninputs < info->min_inputs ||
      (info->max_inputs >= 0 && (int32_t)d->ninputs > info->max_inputs)) {
    set_error(g, ir_node_error(g, &n, "takes %d..%d inputs, got %u", info->min_inputs,
                               info->max_inputs, d->ninputs));
    return IR_NONE;
  }
  for (uint32_t i = 0; i < d->ninputs; i++)
    if (d->inputs[i] >= g->nvalues) {
      set_error(g, ir_node_error(g, &n, "input %u refers to undefined value %%%u", i,
                                 d->inputs[i]));
      return IR_NONE;
    }
  n.ninputs = d->ninputs;
  n.inputs = d->ninputs ? ad_arena_memdup(&m->arena, d->inputs, sizeof(uint32_t) * d->ninputs)
                        : NULL;
  n.nattrs = d->nattrs;
  n.attrs = copy_attrs(&m->arena, d->attrs, d->nattrs);
  for (uint32_t i = 1; i < n.nattrs; i++)
    if (strcmp(n.attrs[i - 1].key, n.attrs[i].key) == 0) {
      set_error(g, ir_node_error(g, &n, "attribute '%s' given twice", n.attrs[i].key));
      return IR_NONE;
    }

  ir_type_t outs[IR_MAX_OUTPUTS];
  memset(outs, 0, sizeof outs);
  for (int i = 0; i < IR_MAX_OUTPUTS; i++) outs[i].dtype = IR_DTYPE_COUNT;
  int nout = info->noutputs;
  if (info->flags & IR_OP_FLAG_EXPLICIT_TYPE) {
    if (d->nout_types < 1 || (nout >= 0 && d->nout_types != (uint32_t)nout)) {
      set_error(g, ir_node_error(g, &n, "needs %d explicit output type(s)", nout));
      return IR_NONE;
    }
    for (uint32_t i = 0; i < d->nout_types && i < IR_MAX_OUTPUTS; i++) outs[i] = d->out_types[i];
  }
  if (info->infer) {
    ad_status_t st = info->infer(g, &n, outs);
    if (st) {
      set_error(g, st);
      return IR_NONE;
    }
  } else if (!(info->flags & IR_OP_FLAG_EXPLICIT_TYPE) && nout != 0) {
    set_error(g, ir_node_error(g, &n, "op has no shape inference registered"));
    return IR_NONE;
  }
  if (nout < 0) {
    nout = 0;
    while (nout < IR_MAX_OUTPUTS && outs[nout].dtype != IR_DTYPE_COUNT) nout++;
  }
  /* Types handed in for inferred ops (the parser does that) must agree with inference. */
  if (!(info->flags & IR_OP_FLAG_EXPLICIT_TYPE) && d->nout_types) {
    if (d->nout_types != (uint32_t)nout) {
      set_error(g, ir_node_error(g, &n, "given %u output types, op has %d", d->nout_types, nout));
      return IR_NONE;
    }
    for (int i = 0; i < nout; i++)
      if (!ir_type_equal(&outs[i], &d->out_types[i])) {
        set_error(g, ir_node_error(g, &n, "given output type %d differs from the inferred one", i));
        return IR_NONE;
      }
  }
  for (int i = 0; i < nout; i++)
    if ((unsigned)outs[i].dtype >= IR_DTYPE_COUNT || outs[i].rank < 0 ||
        outs[i].rank > IR_MAX_RANK) {
      set_error(g, ir_node_error(g, &n, "inference produced an invalid type for output %d", i));
      return IR_NONE;
    }

  g->nodes = grow(g->nodes, &g->cap_nodes, g->nnodes + 1, sizeof *g->nodes);
  g->values = grow(g->values, &g->cap_values, g->nvalues + (uint32_t)nout, sizeof *g->values);
  n.noutputs = (uint32_t)nout;
  n.output0 = g->nvalues;
  for (int i = 0; i < nout; i++)
    g->values[g->nvalues + (uint32_t)i] = (ir_value_t){g->nnodes, (uint32_t)i, outs[i]};
  g->nvalues += (uint32_t)nout;
  g->nodes[g->nnodes++] = n;
  names_insert(g->names, n.name);
  return nout ? n.output0 : IR_NONE;
}

uint32_t ir_clone_node(ir_graph_t *g, const ir_graph_t *src, const ir_node_t *n,
                       const uint32_t *mapped_inputs) {
  ir_type_t types[IR_MAX_OUTPUTS];
  uint32_t nt = 0;
  if (ir_op_info(n->op)->flags & IR_OP_FLAG_EXPLICIT_TYPE)
    for (; nt < n->noutputs && nt < IR_MAX_OUTPUTS; nt++) types[nt] = src->values[n->output0 + nt].type;
  ir_node_desc_t d = {.op = n->op,
                      .name = n->name,
                      .inputs = mapped_inputs,
                      .ninputs = n->ninputs,
                      .attrs = n->attrs,
                      .nattrs = n->nattrs,
                      .out_types = nt ? types : NULL,
                      .nout_types = nt};
  return ir_build(g, &d);
}

ir_cost_t ir_node_cost(const ir_graph_t *g, const ir_node_t *n, const int64_t *symvals) {
  ir_cost_t c = {0, 0};
  ir_shape_t in[16], out[IR_MAX_OUTPUTS];
  ir_dtype_t dt[16];
  uint32_t nin = n->ninputs < 16 ? n->ninputs : 16;
  for (uint32_t i = 0; i < nin; i++) {
    const ir_type_t *t = &g->values[n->inputs[i]].type;
    in[i] = ir_type_shape(t, symvals);
    dt[i] = t->dtype;
    c.bytes += (uint64_t)ir_shape_numel(&in[i]) * ir_dtype_size(t->dtype);
  }
  for (uint32_t i = 0; i < n->noutputs && i < IR_MAX_OUTPUTS; i++) {
    const ir_type_t *t = &g->values[n->output0 + i].type;
    out[i] = ir_type_shape(t, symvals);
    c.bytes += (uint64_t)ir_shape_numel(&out[i]) * ir_dtype_size(t->dtype);
  }
  const ir_op_info_t *info = ir_op_info(n->op);
  if (info->cost) info->cost(n, in, dt, out, &c);
  return c;
}

/* ---- helpers for op files ---------------------------------------------------------------- */
int ir_norm_axis(int64_t axis, int rank) {
  if (axis < 0) axis += rank;
  return axis >= 0 && axis < rank ? (int)axis : -1;
}

bool ir_broadcast_types(const ir_type_t *a, const ir_type_t *b, ir_type_t *out) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  ir_type_t t;
  memset(&t, 0, sizeof t);
  t.dtype = a->dtype;
  t.rank = r;
  for (int i = 0; i < r; i++) {
    int ia = a->rank - r + i, ib = b->rank - r + i;
    ir_dim_t one = ir_dim_const(1);
    ir_dim_t da = ia >= 0 ? a->dims[ia] : one, db = ib >= 0 ? b->dims[ib] : one;
    if (ir_dim_equal(da, db))
      t.dims[i] = da;
    else if (ir_dim_equal(da, one))
      t.dims[i] = db;
    else if (ir_dim_equal(db, one))
      t.dims[i] = da;
    else
      return false;
  }
  *out = t;
  return true;
}

void ir_broadcast_strides(const ir_tensor_t *in, const ir_tensor_t *out, int64_t *strides) {
  int64_t s = 1;
  for (int i = out->rank - 1; i >= 0; i--) {
    int j = in->rank - out->rank + i;
    if (j < 0) {
      strides[i] = 0;
      continue;
    }
    strides[i] = (in->dims[j] == 1 && out->dims[i] != 1) ? 0 : s;
    s *= in->dims[j];
  }
}

uint32_t ir_emit(ir_graph_t *g, ir_op_t op, const uint32_t *ins, uint32_t nin,
                 const ir_attr_t *attrs, uint32_t nattrs) {
  ir_node_desc_t d = {.op = op, .inputs = ins, .ninputs = nin, .attrs = attrs, .nattrs = nattrs};
  return ir_build(g, &d);
}

uint32_t ir_emit1(ir_graph_t *g, ir_op_t op, uint32_t a) { return ir_emit(g, op, &a, 1, NULL, 0); }

uint32_t ir_emit2(ir_graph_t *g, ir_op_t op, uint32_t a, uint32_t b) {
  uint32_t ins[2] = {a, b};
  return ir_emit(g, op, ins, 2, NULL, 0);
}

uint32_t ir_emit_reshape(ir_graph_t *g, uint32_t x, const ir_type_t *to) {
  ir_node_desc_t d = {.op = IR_OP_RESHAPE, .inputs = &x, .ninputs = 1, .out_types = to,
                      .nout_types = 1};
  return ir_build(g, &d);
}
