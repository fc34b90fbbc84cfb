/* Contract: shared plumbing of the graph-to-graph passes (program swap, use counts, names). */
#include "passes/pass_util.h"

#include <stdlib.h>
#include <string.h>

ir_graph_t *pass_graph_begin(const ir_graph_t *g) {
  /* A temporary name: the module may hold only one program per name while both exist. */
  ir_module_t *m = g->module;
  const char *tmp = ad_arena_printf(&m->arena, "%s.pass-tmp", g->name);
  return ir_module_add_program(m, tmp);
}

static int64_t program_index(const ir_module_t *m, const ir_graph_t *g) {
  for (uint32_t i = 0; i < m->nprograms; i++)
    if (m->programs[i] == g) return i;
  return -1;
}

void pass_graph_discard(ir_graph_t *g) { ir_module_remove_program(g->module, g); }

ad_status_t pass_graph_commit(ir_graph_t **gp, ir_graph_t *ng) {
  ir_graph_t *old = *gp;
  ad_status_t st = ir_graph_take_error(ng);
  if (st) {
    pass_graph_discard(ng);
    return st;
  }
  ir_module_t *m = old->module;
  int64_t io = program_index(m, old), in = program_index(m, ng);
  if (io < 0 || in < 0) {
    pass_graph_discard(ng);
    return ad_status_make(AD_STATUS_INTERNAL, "program '%s' is not in its module", old->name);
  }
  ng->name = old->name;
  /* ng was appended last: drop that entry and take the old graph's place. */
  memmove(&m->programs[in], &m->programs[in + 1],
          sizeof *m->programs * (size_t)(m->nprograms - (uint32_t)in - 1));
  m->nprograms--;
  m->programs[io < in ? io : io - 1] = ng;
  pass_graph_discard(old); /* no longer listed: only freed */
  *gp = ng;
  return AD_OK;
}

uint32_t *pass_use_counts(const ir_graph_t *g) {
  uint32_t *uses = calloc(g->nvalues ? g->nvalues : 1, sizeof *uses);
  if (!uses) return NULL;
  for (uint32_t i = 0; i < g->nnodes; i++)
    for (uint32_t j = 0; j < g->nodes[i].ninputs; j++) uses[g->nodes[i].inputs[j]]++;
  return uses;
}

bool pass_ids_reserve(pass_ids_t *a, uint32_t n) {
  if (n <= a->cap) return true;
  uint32_t cap = a->cap ? a->cap : 16;
  while (cap < n) cap *= 2;
  uint32_t *v = realloc(a->v, sizeof *v * cap);
  if (!v) return false;
  a->v = v;
  a->cap = cap;
  return true;
}

void pass_ids_free(pass_ids_t *a) {
  free(a->v);
  a->v = NULL;
  a->n = a->cap = 0;
}

ad_status_t pass_map_inputs(const ir_graph_t *g, const ir_node_t *n, const uint32_t *map,
                            pass_ids_t *scratch) {
  if (!pass_ids_reserve(scratch, n->ninputs ? n->ninputs : 1))
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  for (uint32_t j = 0; j < n->ninputs; j++) {
    uint32_t v = map[n->inputs[j]];
    if (v == IR_NONE)
      return ad_status_make(AD_STATUS_INTERNAL,
                            "program '%s', node '%s': input %u was dropped by the pass", g->name,
                            n->name, j);
    scratch->v[j] = v;
  }
  scratch->n = n->ninputs;
  return AD_OK;
}

uint32_t pass_build_named(ir_graph_t *g, ir_op_t op, const char *name, const uint32_t *ins,
                          uint32_t nin, const ir_attr_t *attrs, uint32_t nattrs,
                          const ir_type_t *out_type) {
  ir_node_desc_t d = {.op = op,
                      .name = name,
                      .inputs = ins,
                      .ninputs = nin,
                      .attrs = attrs,
                      .nattrs = nattrs,
                      .out_types = out_type,
                      .nout_types = out_type ? 1 : 0};
  return ir_build(g, &d);
}

/* ---- string set: open addressing, FNV-1a -------------------------------------------------- */
static uint64_t str_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

bool pass_strset_has(const pass_strset_t *s, const char *key) {
  if (!s->cap) return false;
  for (uint32_t i = (uint32_t)str_hash(key) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    if (!s->slots[i]) return false;
    if (strcmp(s->slots[i], key) == 0) return true;
  }
}

bool pass_strset_add(pass_strset_t *s, const char *key) {
  if (pass_strset_has(s, key)) return true;
  if ((s->count + 1) * 2 > s->cap) {
    uint32_t cap = s->cap ? s->cap * 2 : 64;
    const char **slots = calloc(cap, sizeof *slots);
    if (!slots) return false;
    for (uint32_t i = 0; i < s->cap; i++) {
      if (!s->slots[i]) continue;
      uint32_t j = (uint32_t)str_hash(s->slots[i]) & (cap - 1);
      while (slots[j]) j = (j + 1) & (cap - 1);
      slots[j] = s->slots[i];
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
  }
  uint32_t i = (uint32_t)str_hash(key) & (s->cap - 1);
  while (s->slots[i]) i = (i + 1) & (s->cap - 1);
  s->slots[i] = key;
  s->count++;
  return true;
}

void pass_strset_free(pass_strset_t *s) {
  free(s->slots);
  s->slots = NULL;
  s->cap = s->count = 0;
}

bool pass_strset_add_names(pass_strset_t *s, const ir_graph_t *g) {
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (!pass_strset_add(s, g->nodes[i].name)) return false;
  return true;
}
