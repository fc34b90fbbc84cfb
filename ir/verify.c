/* The IR verifier: checks every invariant the builder establishes, so a pass that edits graphs
 * by hand (or a file from disk) cannot slip a broken graph past later stages.
 *
 * Per program: value table consistency (a node's outputs are its own consecutive values),
 * topological order (every input is defined by an earlier node), arity against the registry,
 * well-formed types and attributes (keys sorted and unique), inference re-run and compared,
 * unique node names (so OUTPUT names are unique too), SCALAR nodes name declared scalars,
 * STATE_IN/STATE_OUT name existing slots with matching types, at most one STATE_OUT per slot,
 * and that STATE_OUT comes after every direct reader of that slot's STATE_IN values (the
 * write aliases the slot's buffer, so a later reader would see the new value).
 * Per module: unique symbol, scalar, slot and program names, valid bounds and static slot
 * types. Every error names the program and the node. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

/* ---- a string -> index map (open addressing; keys are borrowed) ----------------------- */
typedef struct strmap {
  const char **keys;
  uint32_t *vals;
  uint32_t cap, n;
} strmap_t;

static uint64_t str_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

static void strmap_free(strmap_t *sm) {
  free(sm->keys);
  free(sm->vals);
  memset(sm, 0, sizeof *sm);
}

static uint32_t strmap_get(const strmap_t *sm, const char *k) {
  if (!sm->cap) return IR_NONE;
  for (uint32_t h = (uint32_t)str_hash(k) & (sm->cap - 1);; h = (h + 1) & (sm->cap - 1)) {
    if (!sm->keys[h]) return IR_NONE;
    if (strcmp(sm->keys[h], k) == 0) return sm->vals[h];
  }
}

/* Returns false on allocation failure. The key must not be present. */
static bool strmap_put(strmap_t *sm, const char *k, uint32_t v) {
  if ((sm->n + 1) * 2 > sm->cap) {
    uint32_t nc = sm->cap ? sm->cap * 2 : 64;
    const char **nk = calloc(nc, sizeof *nk);
    uint32_t *nv = calloc(nc, sizeof *nv);
    if (!nk || !nv) {
      free(nk);
      free(nv);
      return false;
    }
    for (uint32_t i = 0; i < sm->cap; i++)
      if (sm->keys[i]) {
        uint32_t h = (uint32_t)str_hash(sm->keys[i]) & (nc - 1);
        while (nk[h]) h = (h + 1) & (nc - 1);
        nk[h] = sm->keys[i];
        nv[h] = sm->vals[i];
      }
    free(sm->keys);
    free(sm->vals);
    sm->keys = nk;
    sm->vals = nv;
    sm->cap = nc;
  }
  uint32_t h = (uint32_t)str_hash(k) & (sm->cap - 1);
  while (sm->keys[h]) h = (h + 1) & (sm->cap - 1);
  sm->keys[h] = k;
  sm->vals[h] = v;
  sm->n++;
  return true;
}

static ad_status_t oom(void) {
  return ad_status_make(AD_STATUS_RESOURCE, "out of memory while verifying IR");
}

/* ---- messages ----------------------------------------------------------------------- */
static ad_status_t node_err(const ir_graph_t *g, uint32_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static ad_status_t node_err(const ir_graph_t *g, uint32_t i, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ad_status_t st = ad_status_makev(AD_STATUS_INVALID_ARGUMENT, fmt, ap);
  va_end(ap);
  const ir_node_t *n = &g->nodes[i];
  return ad_status_annotate(st, "program '%s', node #%u '%s' (%s)", g->name ? g->name : "?", i,
                            n->name ? n->name : "?", ir_op_name(n->op));
}

static char *type_str(const ir_module_t *m, const ir_type_t *t) {
  ad_buf_t b = {0};
  ir_print_type(m, t, &b);
  ad_buf_put_u8(&b, 0);
  return (char *)b.data;
}

static ad_status_t type_mismatch(const ir_graph_t *g, uint32_t i, const char *what,
                                 const ir_type_t *have, const ir_type_t *want) {
  char *a = type_str(g->module, have), *b = type_str(g->module, want);
  ad_status_t st = node_err(g, i, "%s has type %s, expected %s", what, a, b);
  free(a);
  free(b);
  return st;
}

/* ---- structural checks ---------------------------------------------------------------- */

/* A type the printer, shape code and kernels can rely on; msg names the defect. */
static bool type_ok(const ir_module_t *m, const ir_type_t *t, const char **msg) {
  if ((unsigned)t->dtype >= IR_DTYPE_COUNT) return *msg = "an invalid dtype", false;
  if (t->rank < 0 || t->rank > IR_MAX_RANK) return *msg = "an invalid rank", false;
  for (int d = 0; d < t->rank; d++) {
    const ir_dim_t *dim = &t->dims[d];
    if (dim->div < 1) return *msg = "a dimension with a non-positive divisor", false;
    if (dim->nterms < 0 || dim->nterms > IR_DIM_MAX_TERMS)
      return *msg = "a dimension with an invalid term count", false;
    for (int k = 0; k < dim->nterms; k++) {
      const ir_dim_term_t *tm = &dim->terms[k];
      if (tm->coef <= 0) return *msg = "a dimension term with a non-positive coefficient", false;
      if (tm->sym_a < 0 || (uint32_t)tm->sym_a >= m->nsymbols ||
          (tm->sym_b >= 0 && (uint32_t)tm->sym_b >= m->nsymbols) || tm->sym_b < -1)
        return *msg = "a dimension over an undeclared symbol", false;
    }
  }
  return true;
}

static bool is_static(const ir_type_t *t) {
  for (int d = 0; d < t->rank; d++)
    if (!ir_dim_is_const(t->dims[d], NULL)) return false;
  return true;
}

static ad_status_t check_attrs(const ir_graph_t *g, uint32_t i) {
  const ir_node_t *n = &g->nodes[i];
  if (n->nattrs && !n->attrs) return node_err(g, i, "has %u attributes but no array", n->nattrs);
  for (uint32_t k = 0; k < n->nattrs; k++) {
    const ir_attr_t *a = &n->attrs[k];
    if (!a->key) return node_err(g, i, "attribute %u has no key", k);
    if (k && strcmp(n->attrs[k - 1].key, a->key) >= 0)
      return node_err(g, i, "attributes are not sorted by key with unique keys ('%s' then '%s')",
                      n->attrs[k - 1].key, a->key);
    switch (a->kind) {
      case IR_ATTR_INT:
      case IR_ATTR_FLOAT: break;
      case IR_ATTR_STRING:
        if (!a->s) return node_err(g, i, "string attribute '%s' has no string", a->key);
        break;
      case IR_ATTR_INTS:
        if (a->n && !a->ints) return node_err(g, i, "int list attribute '%s' has no array", a->key);
        break;
      case IR_ATTR_FLOATS:
        if (a->n && !a->floats)
          return node_err(g, i, "float list attribute '%s' has no array", a->key);
        break;
      default: return node_err(g, i, "attribute '%s' has an invalid kind %d", a->key, (int)a->kind);
    }
  }
  return AD_OK;
}

/* The slot a STATE_IN/STATE_OUT node names, via the module's slot-name map. */
static ad_status_t node_slot(const ir_graph_t *g, uint32_t i, const strmap_t *slots,
                             uint32_t *slot) {
  const ir_attr_t *a = ir_node_attr(&g->nodes[i], "slot");
  if (!a || a->kind != IR_ATTR_STRING) return node_err(g, i, "needs a string attribute 'slot'");
  *slot = strmap_get(slots, a->s);
  if (*slot == IR_NONE) return node_err(g, i, "names state slot '%s', which is not declared", a->s);
  return AD_OK;
}

static ad_status_t check_inference(const ir_graph_t *g, uint32_t i, const ir_op_info_t *info) {
  const ir_node_t *n = &g->nodes[i];
  ir_type_t out[IR_MAX_OUTPUTS];
  memset(out, 0, sizeof out);
  for (int k = 0; k < IR_MAX_OUTPUTS; k++) out[k].dtype = IR_DTYPE_COUNT;
  if (info->flags & IR_OP_FLAG_EXPLICIT_TYPE)
    for (uint32_t k = 0; k < n->noutputs; k++) out[k] = g->values[n->output0 + k].type;
  if (!info->infer) {
    if (!(info->flags & IR_OP_FLAG_EXPLICIT_TYPE) && n->noutputs)
      return node_err(g, i, "op has no shape inference registered");
    return AD_OK;
  }
  ad_status_t st = info->infer(g, n, out);
  if (st) return ad_status_annotate(st, "verifying program '%s'", g->name ? g->name : "?");
  for (uint32_t k = 0; k < n->noutputs; k++) {
    const ir_type_t *have = &g->values[n->output0 + k].type;
    if (!ir_type_equal(have, &out[k])) {
      char what[48];
      snprintf(what, sizeof what, "output %u", k);
      if ((unsigned)out[k].dtype >= IR_DTYPE_COUNT || out[k].rank < 0 || out[k].rank > IR_MAX_RANK)
        return node_err(g, i, "output %u exists but inference gives no type for it", k);
      return type_mismatch(g, i, what, have, &out[k]);
    }
  }
  if (info->noutputs < 0 && n->noutputs < IR_MAX_OUTPUTS && out[n->noutputs].dtype != IR_DTYPE_COUNT)
    return node_err(g, i, "has %u outputs but inference gives more", n->noutputs);
  return AD_OK;
}

/* Everything about node i that does not need the other nodes' names or state. */
static ad_status_t check_node(const ir_graph_t *g, uint32_t i, uint64_t *nvalues_seen) {
  const ir_node_t *n = &g->nodes[i];
  const ir_module_t *m = g->module;
  if ((unsigned)n->op >= IR_OP_COUNT) return node_err(g, i, "has an invalid op id %d", (int)n->op);
  const ir_op_info_t *info = ir_op_info(n->op);
  if (!n->name) return node_err(g, i, "has no name");
  if ((int64_t)n->ninputs < info->min_inputs ||
      (info->max_inputs >= 0 && (int64_t)n->ninputs > info->max_inputs)) {
    if (info->max_inputs < 0)
      return node_err(g, i, "takes at least %d inputs, has %u", info->min_inputs, n->ninputs);
    return node_err(g, i, "takes %d..%d inputs, has %u", info->min_inputs, info->max_inputs,
                    n->ninputs);
  }
  if (info->noutputs >= 0 ? n->noutputs != (uint32_t)info->noutputs : n->noutputs > IR_MAX_OUTPUTS)
    return node_err(g, i, "has %u outputs; the op has %d", n->noutputs, info->noutputs);
  if (n->ninputs && !n->inputs) return node_err(g, i, "has %u inputs but no array", n->ninputs);
  for (uint32_t k = 0; k < n->ninputs; k++) {
    uint32_t v = n->inputs[k];
    if (v >= g->nvalues)
      return node_err(g, i, "input %u refers to value %%%u, beyond the %u values", k, v,
                      g->nvalues);
    if (g->values[v].node >= i)
      return node_err(g, i, "input %u uses value %%%u before it is defined (by node #%u)", k, v,
                      g->values[v].node);
  }
  if ((uint64_t)n->output0 + n->noutputs > g->nvalues)
    return node_err(g, i, "outputs %%%u..+%u lie beyond the %u values", n->output0, n->noutputs,
                    g->nvalues);
  for (uint32_t k = 0; k < n->noutputs; k++) {
    const ir_value_t *v = &g->values[n->output0 + k];
    if (v->node != i || v->index != k)
      return node_err(g, i, "value %%%u is recorded as output %u of node #%u, not output %u",
                      n->output0 + k, v->index, v->node, k);
    const char *msg;
    if (!type_ok(m, &v->type, &msg)) return node_err(g, i, "output %u has %s", k, msg);
  }
  *nvalues_seen += n->noutputs;
  AD_RETURN_IF_ERROR(check_attrs(g, i));
  return check_inference(g, i, info);
}

static ad_status_t build_slot_map(const ir_module_t *m, strmap_t *slots) {
  for (uint32_t s = 0; s < m->nslots; s++) {
    if (!m->slots[s].name) return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "slot %u has no name", s);
    if (strmap_get(slots, m->slots[s].name) != IR_NONE)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "state slot '%s' is declared twice",
                            m->slots[s].name);
    if (!strmap_put(slots, m->slots[s].name, s)) return oom();
  }
  return AD_OK;
}

/* The checks across nodes: names, scalars, state slots. */
static ad_status_t check_program_rules(const ir_graph_t *g, const strmap_t *slots) {
  const ir_module_t *m = g->module;
  strmap_t names = {0};
  uint32_t *writer = NULL; /* per slot: the STATE_OUT node, IR_NONE before it */
  uint32_t *node_slot_of = NULL; /* per STATE_IN node: its slot */
  ad_status_t st = AD_OK;
  writer = malloc(sizeof *writer * (m->nslots ? m->nslots : 1));
  node_slot_of = malloc(sizeof *node_slot_of * (g->nnodes ? g->nnodes : 1));
  if (!writer || !node_slot_of) {
    st = oom();
    goto done;
  }
  for (uint32_t s = 0; s < m->nslots; s++) writer[s] = IR_NONE;
  for (uint32_t i = 0; i < g->nnodes && !st; i++) {
    const ir_node_t *n = &g->nodes[i];
    node_slot_of[i] = IR_NONE;
    uint32_t prev = strmap_get(&names, n->name);
    if (prev != IR_NONE) {
      st = node_err(g, i, "duplicate %s name (also node #%u)",
                    n->op == IR_OP_OUTPUT && g->nodes[prev].op == IR_OP_OUTPUT ? "output" : "node",
                    prev);
      break;
    }
    if (!strmap_put(&names, n->name, i)) {
      st = oom();
      break;
    }
    /* A reader of a slot's state_in after that slot's state_out would read the new value. */
    for (uint32_t k = 0; k < n->ninputs && !st; k++) {
      uint32_t p = g->values[n->inputs[k]].node;
      uint32_t s = node_slot_of[p];
      if (s != IR_NONE && writer[s] != IR_NONE)
        st = node_err(g, i, "reads state slot '%s' (through node '%s') after its state_out '%s'",
                      m->slots[s].name, g->nodes[p].name, g->nodes[writer[s]].name);
    }
    if (st) break;
    if (n->op == IR_OP_SCALAR) {
      const ir_scalar_decl_t *sc = ir_module_find_scalar(m, n->name);
      if (!sc) {
        st = node_err(g, i, "runtime scalar '%s' is not declared in the module", n->name);
      } else {
        ir_type_t want;
        memset(&want, 0, sizeof want);
        want.dtype = sc->dtype;
        if (!ir_type_equal(&g->values[n->output0].type, &want))
          st = type_mismatch(g, i, "the scalar", &g->values[n->output0].type, &want);
      }
    } else if (n->op == IR_OP_STATE_IN || n->op == IR_OP_STATE_OUT) {
      uint32_t s;
      st = node_slot(g, i, slots, &s);
      if (st) break;
      const ir_type_t *t = n->op == IR_OP_STATE_IN ? &g->values[n->output0].type
                                                   : &g->values[n->inputs[0]].type;
      if (!ir_type_equal(t, &m->slots[s].type)) {
        st = type_mismatch(g, i, n->op == IR_OP_STATE_IN ? "the value read" : "the value written",
                           t, &m->slots[s].type);
      } else if (n->op == IR_OP_STATE_IN) {
        node_slot_of[i] = s;
      } else if (writer[s] != IR_NONE) {
        st = node_err(g, i, "is a second state_out for slot '%s' (the first is '%s')",
                      m->slots[s].name, g->nodes[writer[s]].name);
      } else {
        writer[s] = i;
      }
    }
  }
done:
  strmap_free(&names);
  free(writer);
  free(node_slot_of);
  return st;
}

static ad_status_t verify_graph(const ir_graph_t *g, const strmap_t *slots) {
  if (!g->module) return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program has no module");
  const char *pname = g->name ? g->name : "?";
  if (g->error)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program '%s' holds a builder error: %s",
                          pname, ad_status_message(g->error));
  if ((g->nnodes && !g->nodes) || (g->nvalues && !g->values))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program '%s' has counts without arrays",
                          pname);
  uint64_t seen = 0;
  for (uint32_t i = 0; i < g->nnodes; i++) AD_RETURN_IF_ERROR(check_node(g, i, &seen));
  if (seen != g->nvalues)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "program '%s' has %u values but its nodes produce %llu", pname,
                          g->nvalues, (unsigned long long)seen);
  return check_program_rules(g, slots);
}

ad_status_t ir_verify_graph(const ir_graph_t *g) {
  if (!g || !g->module) return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program has no module");
  strmap_t slots = {0};
  ad_status_t st = build_slot_map(g->module, &slots);
  if (!st) st = verify_graph(g, &slots);
  strmap_free(&slots);
  return st;
}

static ad_status_t verify_decls(const ir_module_t *m) {
  for (uint32_t i = 0; i < m->nsymbols; i++) {
    const ir_symbol_t *s = &m->symbols[i];
    if (!s->name) return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "symbol %u has no name", i);
    if (s->bound < 1)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "symbol '%s' has bound %lld; must be >= 1",
                            s->name, (long long)s->bound);
    for (uint32_t j = 0; j < i; j++)
      if (strcmp(m->symbols[j].name, s->name) == 0)
        return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "symbol '%s' is declared twice", s->name);
  }
  strmap_t names = {0};
  ad_status_t st = AD_OK;
  for (uint32_t i = 0; i < m->nscalars && !st; i++) {
    const ir_scalar_decl_t *s = &m->scalars[i];
    if (!s->name)
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "runtime scalar %u has no name", i);
    else if ((unsigned)s->dtype >= IR_DTYPE_COUNT)
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "runtime scalar '%s' has an invalid dtype",
                          s->name);
    else if (strmap_get(&names, s->name) != IR_NONE)
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "runtime scalar '%s' is declared twice",
                          s->name);
    else if (!strmap_put(&names, s->name, i))
      st = oom();
  }
  strmap_free(&names);
  for (uint32_t i = 0; i < m->nslots && !st; i++) {
    const ir_state_slot_t *s = &m->slots[i];
    const char *msg;
    if (!type_ok(m, &s->type, &msg))
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "state slot '%s' has %s", s->name, msg);
    else if (!is_static(&s->type))
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "state slot '%s' must have a static shape",
                          s->name);
    else if (!s->init)
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "state slot '%s' has no init rule", s->name);
  }
  for (uint32_t i = 0; i < m->nprograms && !st; i++) {
    const ir_graph_t *g = m->programs[i];
    if (!g || !g->name)
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program %u has no name", i);
    else if (g->module != m)
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program '%s' belongs to another module",
                          g->name);
    for (uint32_t j = 0; j < i && !st; j++)
      if (strcmp(m->programs[j]->name, g->name) == 0)
        st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program '%s' is defined twice", g->name);
  }
  return st;
}

ad_status_t ir_verify_module(const ir_module_t *m) {
  if (!m) return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "no module");
  AD_RETURN_IF_ERROR(verify_decls(m));
  strmap_t slots = {0};
  ad_status_t st = build_slot_map(m, &slots);
  for (uint32_t i = 0; i < m->nprograms && !st; i++) st = verify_graph(m->programs[i], &slots);
  strmap_free(&slots);
  return st;
}
