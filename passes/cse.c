/* Contract: replaces *g; equal (op, inputs, attrs, types) nodes merge into the first one. */
/* The survivor keeps the first node's name. Sources other than CONST (parameters, data inputs,
 * runtime scalars), state effects, random ops and side effects are never merged. */
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"
#include "passes/passes.h"

/* Whether a node may be merged with an identical one. Parameters, data inputs and runtime
 * scalars are sources with an identity of their own (their names are checkpoint keys and
 * runtime bindings) even when they look alike; dropout must draw independent masks. */
static bool cse_candidate(const ir_node_t *n) {
  switch (n->op) {
    case IR_OP_INPUT:
    case IR_OP_SCALAR:
    case IR_OP_STATE_IN:
    case IR_OP_STATE_OUT:
    case IR_OP_OUTPUT:
      return false;
    default:
      break;
  }
  uint32_t flags = ir_op_info(n->op)->flags;
  if (flags & (IR_OP_FLAG_STATEFUL | IR_OP_FLAG_RANDOM | IR_OP_FLAG_SIDE_EFFECT)) return false;
  return n->noutputs > 0;
}

static uint64_t mix(uint64_t h, uint64_t x) { return (h ^ x) * 1099511628211ull; }

static uint64_t mix_bytes(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) h = mix(h, b[i]);
  return h;
}

static uint64_t mix_str(uint64_t h, const char *s) { return mix_bytes(h, s, strlen(s) + 1); }

/* Hash over the op, the already-mapped inputs and the attributes; equality is checked fully. */
static uint64_t node_hash(const ir_node_t *n, const uint32_t *ins) {
  uint64_t h = mix(1469598103934665603ull, (uint64_t)n->op);
  h = mix(h, n->ninputs);
  for (uint32_t j = 0; j < n->ninputs; j++) h = mix(h, ins[j]);
  for (uint32_t a = 0; a < n->nattrs; a++) {
    const ir_attr_t *at = &n->attrs[a];
    h = mix_str(h, at->key);
    h = mix(h, (uint64_t)at->kind);
    switch (at->kind) {
      case IR_ATTR_INT: h = mix(h, (uint64_t)at->i); break;
      case IR_ATTR_FLOAT: h = mix_bytes(h, &at->f, sizeof at->f); break;
      case IR_ATTR_STRING: h = mix_str(h, at->s ? at->s : ""); break;
      case IR_ATTR_INTS: h = mix_bytes(h, at->ints, sizeof(int64_t) * at->n); break;
      case IR_ATTR_FLOATS: h = mix_bytes(h, at->floats, sizeof(double) * at->n); break;
    }
  }
  return h;
}

/* Floats compare bitwise: -0.0 and 0.0 (or two NaN payloads) are different constants. */
static bool attr_equal(const ir_attr_t *a, const ir_attr_t *b) {
  if (strcmp(a->key, b->key) != 0 || a->kind != b->kind) return false;
  switch (a->kind) {
    case IR_ATTR_INT: return a->i == b->i;
    case IR_ATTR_FLOAT: return memcmp(&a->f, &b->f, sizeof a->f) == 0;
    case IR_ATTR_STRING: return strcmp(a->s ? a->s : "", b->s ? b->s : "") == 0;
    case IR_ATTR_INTS:
      return a->n == b->n && (a->n == 0 || memcmp(a->ints, b->ints, sizeof(int64_t) * a->n) == 0);
    case IR_ATTR_FLOATS:
      return a->n == b->n &&
             (a->n == 0 || memcmp(a->floats, b->floats, sizeof(double) * a->n) == 0);
  }
  return false;
}

typedef struct cse_entry {
  uint64_t hash;
  uint32_t node; /* source node index of the survivor; IR_NONE: empty */
} cse_entry_t;

typedef struct cse_ctx {
  const ir_graph_t *g;
  const uint32_t *map; /* source value -> new value */
  cse_entry_t *tab;
  uint32_t cap, count;
} cse_ctx_t;

static bool same_node(const cse_ctx_t *c, const ir_node_t *a, const ir_node_t *b,
                      const uint32_t *b_ins) {
  if (a->op != b->op || a->ninputs != b->ninputs || a->nattrs != b->nattrs ||
      a->noutputs != b->noutputs)
    return false;
  for (uint32_t j = 0; j < a->ninputs; j++)
    if (c->map[a->inputs[j]] != b_ins[j]) return false;
  for (uint32_t k = 0; k < a->nattrs; k++)
    if (!attr_equal(&a->attrs[k], &b->attrs[k])) return false;
  /* Explicitly typed ops (reshape, const) differ by their types alone. */
  for (uint32_t o = 0; o < a->noutputs; o++)
    if (!ir_type_equal(&c->g->values[a->output0 + o].type, &c->g->values[b->output0 + o].type))
      return false;
  return true;
}

static bool table_grow(cse_ctx_t *c) {
  uint32_t cap = c->cap ? c->cap * 2 : 256;
  cse_entry_t *t = malloc(sizeof *t * cap);
  if (!t) return false;
  for (uint32_t i = 0; i < cap; i++) t[i].node = IR_NONE;
  for (uint32_t i = 0; i < c->cap; i++) {
    if (c->tab[i].node == IR_NONE) continue;
    uint32_t j = (uint32_t)c->tab[i].hash & (cap - 1);
    while (t[j].node != IR_NONE) j = (j + 1) & (cap - 1);
    t[j] = c->tab[i];
  }
  free(c->tab);
  c->tab = t;
  c->cap = cap;
  return true;
}

/* Returns the survivor's source node index, or inserts node i and returns IR_NONE.
 * *oom is set when the table cannot grow. */
static uint32_t lookup_or_insert(cse_ctx_t *c, uint32_t i, const uint32_t *ins, bool *oom) {
  const ir_node_t *n = &c->g->nodes[i];
  uint64_t h = node_hash(n, ins);
  if ((c->count + 1) * 2 > c->cap && !table_grow(c)) {
    *oom = true;
    return IR_NONE;
  }
  uint32_t j = (uint32_t)h & (c->cap - 1);
  for (; c->tab[j].node != IR_NONE; j = (j + 1) & (c->cap - 1))
    if (c->tab[j].hash == h && same_node(c, &c->g->nodes[c->tab[j].node], n, ins))
      return c->tab[j].node;
  c->tab[j] = (cse_entry_t){h, i};
  c->count++;
  return IR_NONE;
}

ad_status_t pass_cse(ir_graph_t **gp) {
  const ir_graph_t *g = *gp;
  uint32_t *map = malloc(sizeof *map * (g->nvalues ? g->nvalues : 1));
  if (!map) return ad_status_make(AD_STATUS_RESOURCE, "pass cse: out of memory");
  for (uint32_t v = 0; v < g->nvalues; v++) map[v] = IR_NONE;
  cse_ctx_t c = {.g = g, .map = map};
  ir_graph_t *ng = pass_graph_begin(g);
  pass_ids_t ins = {0};
  ad_status_t st = AD_OK;
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    st = pass_map_inputs(g, n, map, &ins);
    if (st) break;
    if (cse_candidate(n)) {
      bool oom = false;
      uint32_t s = lookup_or_insert(&c, i, ins.v, &oom);
      if (oom) {
        st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
        break;
      }
      if (s != IR_NONE) {
        const ir_node_t *sn = &g->nodes[s];
        for (uint32_t o = 0; o < n->noutputs; o++) map[n->output0 + o] = map[sn->output0 + o];
        continue;
      }
    }
    uint32_t v0 = ir_clone_node(ng, g, n, ins.v);
    if (ng->error) break;
    for (uint32_t o = 0; o < n->noutputs; o++) map[n->output0 + o] = v0 + o;
  }
  pass_ids_free(&ins);
  free(c.tab);
  free(map);
  if (st) {
    pass_graph_discard(ng);
    return ad_status_annotate(st, "pass cse");
  }
  st = pass_graph_commit(gp, ng);
  return st ? ad_status_annotate(st, "pass cse") : AD_OK;
}
