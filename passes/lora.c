/* Contract: pass_lora rewrites the targeted LINEARs of one backbone into PEFT's LoRA form
 * (base_layer + (alpha/r) * lora_B(lora_A(dropout(x)))), renames their slots as PEFT does and
 * freezes the rest of that backbone. Order: builder -> lora -> freeze -> autodiff.
 *
 * PEFT 0.13.2 (LoraConfig(task_type=FEATURE_EXTRACTION, target_modules=[...]) + get_peft_model),
 * which ModelGenerator's GenBioBERT and ESM wrappers use:
 *   - the wrapped model's parameters gain "base_model.model." (the builder already names every
 *     slot "<prefix>.encoder.base_model.model.<HF path>" when use_peft, so only the targeted
 *     layers change name here);
 *   - a module is targeted when its name equals a target or ends with "." + target;
 *   - the targeted nn.Linear keeps its weight and bias as "<module>.base_layer.weight/bias" and
 *     gains lora_A.default [r, in] (kaiming_uniform(a=sqrt(5)): uniform(+-1/sqrt(in))) and
 *     lora_B.default [out, r] (zeros);
 *   - forward: result = base_layer(x); result = result + lora_B(lora_A(dropout(x))) * scaling
 *     with scaling = lora_alpha / r, the dropout (lora_dropout.default) on the LoRA input only;
 *   - mark_only_lora_as_trainable: every other parameter of the wrapped model is frozen.
 * The rewrite happens in place so that a task builder holding this program (and value ids of
 * other components built before) can go on emitting after a backbone applied its LoRA. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"
#include "passes/passes.h"

/* Slot name read by the STATE_IN producing value v, or NULL. */
static const char *state_slot(const ir_graph_t *g, uint32_t v) {
  const ir_node_t *p = ir_value_producer(g, v);
  if (!p || p->op != IR_OP_STATE_IN) return NULL;
  return ir_node_attr_string(p, "slot", NULL);
}

/* PEFT's check_target_module_exists for a list of names. */
static bool targeted(const char *module, const pass_lora_options_t *o) {
  size_t lm = strlen(module);
  for (uint32_t i = 0; i < o->ntargets; i++) {
    const char *t = o->targets[i];
    size_t lt = strlen(t);
    if (strcmp(module, t) == 0) return true;
    if (lm > lt && module[lm - lt - 1] == '.' && strcmp(module + lm - lt, t) == 0) return true;
  }
  return false;
}

static bool has_suffix(const char *s, const char *suf) {
  size_t ls = strlen(s), lf = strlen(suf);
  return ls >= lf && strcmp(s + ls - lf, suf) == 0;
}

typedef struct lora_state {
  ir_module_t *m;
  ir_graph_t *ng;
  const pass_lora_options_t *o;
  uint32_t seed, step; /* SCALAR values in ng, IR_NONE until needed */
  uint32_t first_new_slot;
} lora_state_t;

static ad_status_t ensure_scalars(lora_state_t *s) {
  static const char *const names[2] = {"seed", "step"};
  uint32_t *vals[2] = {&s->seed, &s->step};
  for (int i = 0; i < 2; i++) {
    if (*vals[i] != IR_NONE) continue;
    if (!ir_module_find_scalar(s->m, names[i]))
      AD_RETURN_IF_ERROR(ir_module_add_scalar(s->m, names[i], IR_DTYPE_I64, 0.0));
    *vals[i] = pass_build_named(s->ng, IR_OP_SCALAR, names[i], NULL, 0, NULL, 0, NULL);
  }
  return AD_OK;
}

/* A new trainable LoRA slot and its STATE_IN value. */
static uint32_t lora_param(lora_state_t *s, const char *name, ir_dtype_t dt, int64_t d0,
                           int64_t d1, const char *init, ad_status_t *err) {
  ir_type_t ty;
  memset(&ty, 0, sizeof ty);
  ty.dtype = dt;
  ty.rank = 2;
  ty.dims[0] = ir_dim_const(d0);
  ty.dims[1] = ir_dim_const(d1);
  *err = ir_module_add_slot(s->m, name, &ty, IR_SLOT_PARAM | IR_SLOT_TRAINABLE, init, NULL);
  if (*err) return IR_NONE;
  ir_attr_t a = IR_ATTR_S("slot", name);
  return pass_build_named(s->ng, IR_OP_STATE_IN, name, NULL, 0, &a, 1, &ty);
}

/* Emits the LoRA form of LINEAR n (inputs already mapped); returns the value replacing its
 * output. module: the full module path of the targeted layer ("<...>.self.query"). */
static uint32_t emit_lora(lora_state_t *s, const ir_graph_t *g, const ir_node_t *n,
                          const uint32_t *ins, const char *module, ad_status_t *err) {
  ad_arena_t *ar = &s->m->arena;
  const ir_type_t *wt = ir_value_type(g, n->inputs[1]); /* [out, in], static */
  int64_t out = 0, in = 0;
  if (wt->rank != 2 || !ir_dim_is_const(wt->dims[0], &out) || !ir_dim_is_const(wt->dims[1], &in)) {
    *err = ir_node_error(g, n, "pass lora: the weight must be a static [out, in] matrix");
    return IR_NONE;
  }
  const char *name = n->name;
  uint32_t y = pass_build_named(s->ng, IR_OP_LINEAR, ad_arena_printf(ar, "%s.base_layer", name),
                                ins, n->ninputs, n->attrs, n->nattrs, NULL);
  uint32_t x = ins[0];
  if (s->o->dropout > 0.0) {
    if ((*err = ensure_scalars(s))) return IR_NONE;
    const char *dn = ad_arena_printf(ar, "%s.lora_dropout.default", name);
    ir_attr_t da[2] = {IR_ATTR_F("p", s->o->dropout), IR_ATTR_S("key", dn)};
    uint32_t din[3] = {x, s->seed, s->step};
    x = pass_build_named(s->ng, IR_OP_DROPOUT, dn, din, 3, da, 2, NULL);
  }
  double bound = 1.0 / sqrt((double)in); /* kaiming_uniform(a=sqrt(5)) on [r, in] */
  const char *ainit = ad_arena_printf(ar, "uniform(%.17g,%.17g)", -bound, bound);
  uint32_t wa = lora_param(s, ad_arena_printf(ar, "%s.lora_A.default.weight", module), wt->dtype,
                           s->o->r, in, ainit, err);
  if (*err) return IR_NONE;
  uint32_t wb = lora_param(s, ad_arena_printf(ar, "%s.lora_B.default.weight", module), wt->dtype,
                           out, s->o->r, "zeros", err);
  if (*err) return IR_NONE;
  uint32_t ain[2] = {x, wa};
  uint32_t a = pass_build_named(s->ng, IR_OP_LINEAR, ad_arena_printf(ar, "%s.lora_A.default", name),
                                ain, 2, NULL, 0, NULL); /* [..., r] */
  uint32_t bin[2] = {a, wb};
  uint32_t b = pass_build_named(s->ng, IR_OP_LINEAR, ad_arena_printf(ar, "%s.lora_B.default", name),
                                bin, 2, NULL, 0, NULL); /* [..., out] */
  ir_attr_t sc[2] = {IR_ATTR_F("alpha", s->o->alpha / (double)s->o->r), IR_ATTR_F("beta", 0.0)};
  uint32_t scaled = pass_build_named(s->ng, IR_OP_SCALE,
                                     ad_arena_printf(ar, "%s.lora_scaling", name), &b, 1, sc, 2,
                                     NULL);
  uint32_t sum[2] = {y, scaled};
  return pass_build_named(s->ng, IR_OP_ADD, name, sum, 2, NULL, 0, NULL);
}

/* Moves ng's contents into *g (so every holder of g sees the rewritten program), keeping g's
 * name and scope, and frees the old contents. */
static void swap_into(ir_graph_t *g, ir_graph_t *ng) {
  ir_graph_t tmp = *g;
  *g = *ng;
  *ng = tmp;
  const char *name = g->name, *scope = g->scope;
  g->name = ng->name;
  g->scope = ng->scope;
  ng->name = name;
  ng->scope = scope;
  pass_graph_discard(ng);
}

ad_status_t pass_lora(ir_module_t *m, ir_graph_t *g, const pass_lora_options_t *o,
                      uint32_t *values, uint32_t nvalues, uint32_t *nreplaced) {
  if (o->r <= 0 || !(o->alpha == o->alpha) || !isfinite(o->alpha) || !(o->dropout >= 0.0) ||
      !(o->dropout < 1.0) || o->ntargets == 0)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "pass lora: needs r > 0, a finite alpha, 0 <= dropout < 1 and at least "
                          "one target");
  const char *base = ad_arena_printf(&m->arena, "%s.encoder.base_model.model.", o->prefix);
  size_t lb = strlen(base);
  uint8_t *hit = calloc(g->nnodes ? g->nnodes : 1, 1);
  const char **rename = calloc(m->nslots ? m->nslots : 1, sizeof *rename);
  const char **module = calloc(g->nnodes ? g->nnodes : 1, sizeof *module);
  uint32_t *map = malloc(sizeof *map * (g->nvalues ? g->nvalues : 1));
  if (!hit || !rename || !module || !map) {
    free(hit);
    free(rename);
    free(module);
    free(map);
    return ad_status_make(AD_STATUS_RESOURCE, "pass lora: out of memory");
  }
  ad_status_t st = AD_OK;
  uint32_t nhit = 0;
  /* Pass 1: the targeted layers and the slots PEFT renames. */
  for (uint32_t i = 0; i < g->nnodes && !st; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (n->op != IR_OP_LINEAR) continue;
    const char *w = state_slot(g, n->inputs[1]);
    if (!w || strncmp(w, base, lb) != 0 || !has_suffix(w, ".weight")) continue;
    size_t lw = strlen(w);
    const char *mod = ad_arena_strndup(&m->arena, w + lb, lw - lb - strlen(".weight"));
    if (!targeted(mod, o)) continue;
    const char *full = ad_arena_strndup(&m->arena, w, lw - strlen(".weight"));
    int64_t wi = ir_module_find_slot(m, w);
    if (wi < 0 || rename[wi]) {
      st = ir_node_error(g, n, "pass lora: weight slot '%s' is %s", w,
                         wi < 0 ? "not declared" : "shared by several linear layers");
      break;
    }
    rename[wi] = ad_arena_printf(&m->arena, "%s.base_layer.weight", full);
    if (n->ninputs == 3) {
      const char *b = state_slot(g, n->inputs[2]);
      int64_t bi = b ? ir_module_find_slot(m, b) : -1;
      if (bi >= 0 && strcmp(b, ad_arena_printf(&m->arena, "%s.bias", full)) == 0)
        rename[bi] = ad_arena_printf(&m->arena, "%s.base_layer.bias", full);
    }
    hit[i] = 1;
    module[i] = full;
    nhit++;
  }
  if (!st && nhit == 0) {
    char list[256] = "";
    for (uint32_t i = 0; i < o->ntargets; i++) {
      size_t used = strlen(list);
      snprintf(list + used, sizeof list - used, "%s'%s'", i ? ", " : "", o->targets[i]);
    }
    st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                        "target modules [%s] not found in the base model '%s*'", list, base);
  }
  /* The STATE_IN nodes of the new program name the new slots, so rename first (undone on
   * failure); old_names keeps the lookup of the old program's slot attributes. */
  const char **old_names = st ? NULL : malloc(sizeof *old_names * (m->nslots ? m->nslots : 1));
  if (!st && !old_names) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  if (!st)
    for (uint32_t i = 0; i < m->nslots; i++) {
      old_names[i] = m->slots[i].name;
      if (rename[i]) m->slots[i].name = rename[i];
    }
  lora_state_t s = {.m = m, .o = o, .seed = IR_NONE, .step = IR_NONE,
                    .first_new_slot = m->nslots};
  ir_graph_t *ng = NULL;
  pass_ids_t ins = {0};
  if (!st) {
    ng = pass_graph_begin(g);
    s.ng = ng;
    for (uint32_t v = 0; v < g->nvalues; v++) map[v] = IR_NONE;
  }
  /* Pass 2: the rewritten program, node order and names kept. */
  for (uint32_t i = 0; ng && i < g->nnodes && !st; i++) {
    const ir_node_t *n = &g->nodes[i];
    st = pass_map_inputs(g, n, map, &ins);
    if (st) break;
    uint32_t v0;
    if (n->op == IR_OP_SCALAR && (strcmp(n->name, "seed") == 0 || strcmp(n->name, "step") == 0)) {
      v0 = ir_clone_node(ng, g, n, ins.v);
      *(n->name[1] == 'e' ? &s.seed : &s.step) = v0;
    } else if (n->op == IR_OP_STATE_IN) {
      const char *slot = ir_node_attr_string(n, "slot", "");
      int64_t si = -1;
      for (uint32_t k = 0; k < s.first_new_slot && si < 0; k++)
        if (strcmp(old_names[k], slot) == 0) si = k;
      if (si >= 0 && rename[si]) {
        ir_attr_t a = IR_ATTR_S("slot", rename[si]);
        v0 = pass_build_named(ng, IR_OP_STATE_IN, rename[si], NULL, 0, &a, 1,
                              &g->values[n->output0].type);
      } else {
        v0 = ir_clone_node(ng, g, n, ins.v);
      }
    } else if (hit[i]) {
      v0 = emit_lora(&s, g, n, ins.v, module[i], &st);
    } else {
      v0 = ir_clone_node(ng, g, n, ins.v);
    }
    if (st || ng->error) break;
    for (uint32_t k = 0; k < n->noutputs; k++) map[n->output0 + k] = v0 + k;
  }
  pass_ids_free(&ins);
  if (!st && ng) {
    st = ir_graph_take_error(ng);
    for (uint32_t j = 0; !st && j < nvalues; j++)
      if (values[j] >= g->nvalues || map[values[j]] == IR_NONE)
        st = ad_status_make(AD_STATUS_INTERNAL, "held value %u is not in the program", values[j]);
    for (uint32_t j = 0; !st && j < nvalues; j++) values[j] = map[values[j]];
  }
  if (st) {
    if (ng) pass_graph_discard(ng);
    /* Undo the slot changes: the module must stay as it was on failure. */
    m->nslots = s.first_new_slot;
    for (uint32_t i = 0; old_names && i < m->nslots; i++) m->slots[i].name = old_names[i];
  } else {
    /* mark_only_lora_as_trainable: the wrapped model's own parameters are frozen. */
    const char *enc = ad_arena_printf(&m->arena, "%s.encoder.", o->prefix);
    for (uint32_t i = 0; i < s.first_new_slot; i++)
      if (strncmp(m->slots[i].name, enc, strlen(enc)) == 0)
        m->slots[i].flags &= ~(uint32_t)IR_SLOT_TRAINABLE;
    swap_into(g, ng);
    if (nreplaced) *nreplaced = nhit;
  }
  free(hit);
  free(rename);
  free(module);
  free(map);
  free(old_names);
  return st ? ad_status_annotate(st, "pass lora") : AD_OK;
}
