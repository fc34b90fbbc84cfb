/* AIDO.RNA backbones (frontend/rnabert.c) against the peer: the manifest against the key tables
 * dumped from the peer's state_dict (tests/golden/keys/aido_rna_*.txt: tiny and full sizes, with
 * and without PEFT, save_peft_only pruning, parameter totals), and the built forward and its
 * gradients against tests/golden/rnabert*.safetensors (tools/golden/rnabert.py), f32 and f64,
 * on padded batches, odd lengths and one sample padded two ways: LayerNorm (the checkpoints),
 * RMSNorm (from_scratch), LoRA, and the spelled-out attention used with attention dropout; then
 * the class driven through a SequenceRegression config and its overrides. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/fe_internal.h"
#include "passes/passes.h"
#include "runtime/interp.h"
#include "runtime/safetensors.h"
#include "support/golden.h"

enum {
  A_FROM_SCRATCH,
  A_MAX_LENGTH,
  A_USE_PEFT,
  A_FROZEN,
  A_SAVE_PEFT_ONLY,
  A_LORA_R,
  A_LORA_ALPHA,
  A_LORA_DROPOUT,
  A_LORA_TARGETS,
  A_CONFIG_OVERWRITES,
  A_MODEL_INIT_ARGS,
  A_COUNT
};

/* ---- hand-made config nodes ----------------------------------------------------------------- */
typedef struct ow {
  const char *keys[16];
  fe_node_t vals[16];
  fe_node_t *items[16];
  int key_line[16], key_col[16];
  fe_node_t map;
} ow_t;

static void ow_init(ow_t *o) {
  memset(o, 0, sizeof *o);
  o->map.kind = FE_NODE_MAP;
  o->map.file = "test.yaml";
  o->map.line = 1;
  o->map.col = 1;
  o->map.keys = o->keys;
  o->map.items = o->items;
  o->map.key_line = o->key_line;
  o->map.key_col = o->key_col;
}

static void ow_add(ow_t *o, const char *key, const char *val) {
  uint32_t i = o->map.n++;
  o->keys[i] = key;
  o->vals[i] = (fe_node_t){.kind = FE_NODE_SCALAR, .file = "test.yaml", .line = 10 + (int)i,
                           .col = 7, .scalar = val};
  o->items[i] = &o->vals[i];
  o->key_line[i] = 10 + (int)i;
  o->key_col[i] = 3;
}

/* The tiny config of modelgenerator.md §11.3 as config_overwrites. */
static void ow_tiny(ow_t *o) {
  ow_init(o);
  ow_add(o, "hidden_size", "32");
  ow_add(o, "num_attention_heads", "4");
  ow_add(o, "num_hidden_layers", "2");
  ow_add(o, "intermediate_size", "48");
  ow_add(o, "normalization_type", "LayerNorm");
  ow_add(o, "hidden_dropout_prob", "0.0");
  ow_add(o, "attention_probs_dropout_prob", "0.0");
}

typedef struct opts {
  const fe_class_t *cls;
  ir_dtype_t dtype;
  bool tiny, peft, frozen, save_peft_only;
  int64_t r, alpha, max_length;
  double lora_dropout;
  ow_t *ow; /* overrides ow_tiny when set */
} opts_t;

static void default_args(fe_arg_value_t *a) {
  memset(a, 0, sizeof(fe_arg_value_t) * FE_MAX_ARGS);
  a[A_SAVE_PEFT_ONLY].b = true;
  a[A_LORA_R].i = 16;
  a[A_LORA_ALPHA].i = 32;
  a[A_LORA_DROPOUT].f = 0.1;
  a[A_MAX_LENGTH].is_null = true;
  a[A_LORA_TARGETS].is_null = true;
  a[A_CONFIG_OVERWRITES].is_null = true;
  a[A_MODEL_INIT_ARGS].is_null = true;
}

typedef struct built {
  ir_module_t *m;
  ir_graph_t *g;
  fe_seq_t out;
} built_t;

static ad_status_t build(const opts_t *o, built_t *b) {
  fe_arg_value_t a[FE_MAX_ARGS];
  default_args(a);
  ow_t tiny;
  if (o->tiny) ow_tiny(&tiny);
  ow_t *ow = o->ow ? o->ow : o->tiny ? &tiny : NULL;
  if (ow) {
    a[A_CONFIG_OVERWRITES].is_null = false;
    a[A_CONFIG_OVERWRITES].list = &ow->map;
  }
  a[A_USE_PEFT].b = o->peft;
  a[A_FROZEN].b = o->frozen;
  a[A_SAVE_PEFT_ONLY].b = o->save_peft_only;
  if (o->r) a[A_LORA_R].i = o->r;
  if (o->alpha) a[A_LORA_ALPHA].i = o->alpha;
  a[A_LORA_DROPOUT].f = o->lora_dropout;
  if (o->max_length) {
    a[A_MAX_LENGTH].is_null = false;
    a[A_MAX_LENGTH].i = o->max_length;
  }
  ck_assert_int_ge(o->cls->nargs, A_COUNT);
  ad_status_t st = o->cls->check ? o->cls->check(o->cls, "model.init_args.backbone1", a, NULL)
                                 : AD_OK;
  if (st) return st;
  b->m = ir_module_create();
  int sb;
  ck_assert(!ir_module_add_symbol(b->m, "B", 4, &sb));
  ck_assert(!ir_module_add_scalar(b->m, "seed", IR_DTYPE_I64, 7.0));
  ck_assert(!ir_module_add_scalar(b->m, "step", IR_DTYPE_I64, 0.0));
  b->g = ir_module_add_program(b->m, "forward");
  fe_build_ctx_t bc = {.module = b->m, .forward = b->g, .dtype = o->dtype, .sym_batch = sb,
                       .sym_len = -1};
  fe_component_ctx_t cc = {.b = &bc, .prefix = "backbone", .cls = o->cls, .args = a};
  st = o->cls->backbone->build(&cc, "rna_seq", &b->out);
  if (st) {
    ir_module_free(b->m);
    b->m = NULL;
  }
  return st;
}

static void build_ok(const opts_t *o, built_t *b) {
  ad_status_t st = build(o, b);
  ck_assert_msg(!st, "%s", st ? ad_status_message(st) : "");
}

/* ---- key tables ------------------------------------------------------------------------ */
static int64_t slot_numel(const ir_state_slot_t *s) {
  int64_t n = 1;
  for (int i = 0; i < s->type.rank; i++) {
    int64_t d = 0;
    ck_assert(ir_dim_is_const(s->type.dims[i], &d));
    n *= d;
  }
  return n;
}

/* Compares the manifest with a key table: every key present with its shape, trainable and
 * saved flags; nothing else; totals as the header says. */
static void check_keys(const ir_module_t *m, const char *file, bool ordered) {
  char *path = golden_path(file);
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  free(path);
  char line[1024];
  long long want_keys = -1, want_total = -1, want_tr = -1, want_saved = -1;
  uint32_t nkeys = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') {
      sscanf(line, "# keys %lld total %lld trainable %lld saved %lld", &want_keys, &want_total,
             &want_tr, &want_saved);
      continue;
    }
    char key[512], shape[64];
    int tr, sv;
    ck_assert_int_eq(sscanf(line, "%511s %63s %d %d", key, shape, &tr, &sv), 4);
    char slot[600];
    snprintf(slot, sizeof slot, "backbone.%s", key);
    int64_t i = ir_module_find_slot(m, slot);
    ck_assert_msg(i >= 0, "%s: the manifest lacks %s", file, slot);
    if (ordered) ck_assert_msg(i == (int64_t)nkeys, "%s: %s at %lld, peer %u", file, slot,
                               (long long)i, nkeys);
    const ir_state_slot_t *s = &m->slots[i];
    char got[64] = "";
    for (int d = 0; d < s->type.rank; d++) {
      int64_t v = 0;
      ir_dim_is_const(s->type.dims[d], &v);
      size_t u = strlen(got);
      snprintf(got + u, sizeof got - u, "%s%lld", d ? "," : "", (long long)v);
    }
    ck_assert_msg(strcmp(got, shape) == 0, "%s: %s shape %s, peer %s", file, slot, got, shape);
    ck_assert_msg(!!(s->flags & IR_SLOT_TRAINABLE) == tr, "%s: %s trainable %d, peer %d", file,
                  slot, !!(s->flags & IR_SLOT_TRAINABLE), tr);
    ck_assert_msg((!(s->flags & IR_SLOT_NOSAVE)) == sv, "%s: %s saved %d, peer %d", file, slot,
                  !(s->flags & IR_SLOT_NOSAVE), sv);
    nkeys++;
  }
  fclose(f);
  ck_assert_uint_eq(nkeys, m->nslots);
  ck_assert_int_eq(want_keys, (long long)nkeys);
  long long total = 0, trn = 0, saved = 0;
  for (uint32_t i = 0; i < m->nslots; i++) {
    int64_t n = slot_numel(&m->slots[i]);
    total += n;
    trn += (m->slots[i].flags & IR_SLOT_TRAINABLE) ? n : 0;
    saved += (m->slots[i].flags & IR_SLOT_NOSAVE) ? 0 : n;
  }
  ck_assert_int_eq(total, want_total);
  ck_assert_int_eq(trn, want_tr);
  ck_assert_int_eq(saved, want_saved);
}

static long long count(const ir_module_t *m, bool trainable_only) {
  long long n = 0;
  for (uint32_t i = 0; i < m->nslots; i++)
    if (!trainable_only || (m->slots[i].flags & IR_SLOT_TRAINABLE)) n += slot_numel(&m->slots[i]);
  return n;
}

START_TEST(test_keys_tiny) {
  built_t b;
  opts_t o = {.cls = &fe_class_aido_rna_650m, .dtype = IR_DTYPE_F32, .tiny = true,
              .save_peft_only = true, .max_length = 16};
  build_ok(&o, &b);
  check_keys(b.m, "tests/golden/keys/aido_rna_tiny.txt", true);
  ir_module_free(b.m);
  o.peft = true;
  o.r = 2;
  o.alpha = 4;
  o.lora_dropout = 0.1;
  build_ok(&o, &b);
  check_keys(b.m, "tests/golden/keys/aido_rna_tiny_peft.txt", false);
  ir_module_free(b.m);
  o.peft = false;
  o.frozen = true;
  build_ok(&o, &b);
  check_keys(b.m, "tests/golden/keys/aido_rna_tiny_frozen.txt", true);
  /* IR_SLOT_NOSAVE survives the text and binary forms. */
  ad_buf_t t1 = {0}, t2 = {0}, b1 = {0};
  ir_print_module(b.m, &t1);
  ir_module_t *m2 = NULL;
  ad_status_t st = ir_parse_module((const char *)t1.data, t1.len, "frozen.ir", &m2);
  ck_assert_msg(!st, "%s", st ? ad_status_message(st) : "");
  ir_print_module(m2, &t2);
  ck_assert(t1.len == t2.len && memcmp(t1.data, t2.data, t1.len) == 0);
  ck_assert(m2->slots[0].flags & IR_SLOT_NOSAVE);
  ir_module_free(m2);
  ir_serialize_module(b.m, &b1);
  ck_assert(!ir_deserialize_module(b1.data, b1.len, &m2));
  ck_assert_uint_eq(m2->slots[3].flags, b.m->slots[3].flags);
  ck_assert(m2->slots[3].flags & IR_SLOT_NOSAVE);
  ir_module_free(m2);
  ad_buf_free(&t1);
  ad_buf_free(&t2);
  ad_buf_free(&b1);
  ir_module_free(b.m);
}
END_TEST

static void full_size(const fe_class_t *cls, const char *name, long long total,
                      long long lora_trainable) {
  char file[256];
  built_t b;
  opts_t o = {.cls = cls, .dtype = IR_DTYPE_F32, .save_peft_only = true, .max_length = 1024};
  build_ok(&o, &b);
  snprintf(file, sizeof file, "tests/golden/keys/%s.txt", name);
  check_keys(b.m, file, true);
  ck_assert_int_eq(count(b.m, false), total);
  ck_assert_int_eq(count(b.m, true), total);
  ir_module_free(b.m);
  /* The seed configs' LoRA: r 32, alpha 64, dropout 0.1 on query and value. */
  o.peft = true;
  o.r = 32;
  o.alpha = 64;
  o.lora_dropout = 0.1;
  build_ok(&o, &b);
  snprintf(file, sizeof file, "tests/golden/keys/%s_peft.txt", name);
  check_keys(b.m, file, false);
  ck_assert_int_eq(count(b.m, true), lora_trainable);
  ck_assert_int_eq(count(b.m, false), total + lora_trainable);
  ir_module_free(b.m);
  o.peft = false;
  o.frozen = true;
  build_ok(&o, &b);
  snprintf(file, sizeof file, "tests/golden/keys/%s_frozen.txt", name);
  check_keys(b.m, file, true);
  ck_assert_int_eq(count(b.m, true), 0);
  ir_module_free(b.m);
}

START_TEST(test_keys_full) {
  /* modelgenerator.md §5.3: 650M LoRA 33*2*(2*32*1280), 1.6B LoRA 32*2*(2*32*2048). */
  full_size(&fe_class_aido_rna_650m, "aido_rna_650m", 646730112LL, 5406720LL);
  full_size(&fe_class_aido_rna_1b600m, "aido_rna_1b600m", 1607393280LL, 8388608LL);
  full_size(&fe_class_aido_rna_1b600m_cds, "aido_rna_1b600m_cds", 1607393280LL, 8388608LL);
  ck_assert_ptr_eq(fe_find_class("modelgenerator.backbones.aido_rna_650m"),
                   &fe_class_aido_rna_650m);
  ck_assert_ptr_eq(fe_find_class("modelgenerator.backbones.aido_rna_1b600m_cds"),
                   &fe_class_aido_rna_1b600m_cds);
  int64_t h = 0;
  fe_arg_value_t a[FE_MAX_ARGS];
  default_args(a);
  ck_assert(!fe_class_aido_rna_1b600m.backbone->embedding_size(&fe_class_aido_rna_1b600m, a, &h));
  ck_assert_int_eq(h, 2048);
  ck_assert(!fe_class_aido_rna_650m.backbone->embedding_size(&fe_class_aido_rna_650m, a, &h));
  ck_assert_int_eq(h, 1280);
}
END_TEST

/* ---- goldens ------------------------------------------------------------------------------- */
static const ir_node_t *find_node(const ir_graph_t *g, const char *name) {
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
  return NULL;
}

static const rt_st_tensor_t *st_get(const rt_st_file_t *f, const char *a, const char *b) {
  char key[600];
  snprintf(key, sizeof key, "%s%s", a, b);
  const rt_st_tensor_t *t = rt_st_find(f, key);
  ck_assert_msg(t != NULL, "fixture lacks %s", key);
  return t;
}

/* Appends loss = sum(hidden * cot) and "grad:<slot>" outputs for the trainable slots. */
static void add_loss_and_grads(built_t *b) {
  ir_graph_t *g = b->g;
  ir_type_t ct = *ir_value_type(g, b->out.hidden);
  ir_node_desc_t d = {.op = IR_OP_INPUT, .name = "cot", .out_types = &ct, .nout_types = 1};
  uint32_t cot = ir_build(g, &d);
  ir_node_desc_t o = {.op = IR_OP_OUTPUT, .name = "hidden", .inputs = &b->out.hidden, .ninputs = 1};
  ir_build(g, &o);
  uint32_t ins[2] = {b->out.hidden, cot};
  ir_node_desc_t mul = {.op = IR_OP_MUL, .name = "loss.mul", .inputs = ins, .ninputs = 2};
  uint32_t p = ir_build(g, &mul);
  const int64_t axes[3] = {0, 1, 2};
  ir_attr_t at[2] = {IR_ATTR_INTS("axes", axes, 3), IR_ATTR_I("keepdim", 0)};
  ir_node_desc_t red = {.op = IR_OP_REDUCE_SUM, .name = "loss", .inputs = &p, .ninputs = 1,
                        .attrs = at, .nattrs = 2};
  uint32_t loss = ir_build(g, &red);
  ad_status_t st = ir_graph_take_error(g);
  ck_assert_msg(!st, "%s", st ? ad_status_message(st) : "");
  uint32_t wrt[64], dw[64], idx[64], n = 0;
  for (uint32_t i = 0; i < b->m->nslots; i++) {
    if (!(b->m->slots[i].flags & IR_SLOT_TRAINABLE)) continue;
    const ir_node_t *sn = find_node(g, b->m->slots[i].name);
    ck_assert_msg(sn != NULL, "no state_in for %s", b->m->slots[i].name);
    ck_assert_uint_lt(n, 64);
    idx[n] = i;
    wrt[n++] = sn->output0;
  }
  st = pass_autodiff(g, loss, wrt, n, dw);
  ck_assert_msg(!st, "%s", st ? ad_status_message(st) : "");
  for (uint32_t k = 0; k < n; k++) {
    ck_assert_msg(dw[k] != IR_NONE, "no gradient for %s", b->m->slots[idx[k]].name);
    char name[600];
    snprintf(name, sizeof name, "grad:%s", b->m->slots[idx[k]].name);
    ir_node_desc_t go = {.op = IR_OP_OUTPUT, .name = name, .inputs = &dw[k], .ninputs = 1};
    ir_build(g, &go);
  }
  st = ir_graph_take_error(g);
  ck_assert_msg(!st, "%s", st ? ad_status_message(st) : "");
}

static rt_interp_t *run_case(built_t *b, const rt_st_file_t *f, const char *c) {
  const rt_st_tensor_t *ids = st_get(f, c, "/input_ids");
  int64_t sym[IR_MAX_SYMBOLS] = {0};
  sym[0] = ids->shape[0];
  sym[b->out.len_sym] = ids->shape[1];
  rt_interp_t *it = NULL;
  ad_status_t st = rt_interp_create(b->g, sym, &it);
  ck_assert_msg(!st, "%s", st ? ad_status_message(st) : "");
  const rt_st_tensor_t *mask = st_get(f, c, "/attention_mask"), *cot = st_get(f, c, "/cot");
  ck_assert(!rt_interp_set_input(it, "rna_seq_input_ids", ids->data, ids->nbytes));
  ck_assert(!rt_interp_set_input(it, "rna_seq_attention_mask", mask->data, mask->nbytes));
  ck_assert(!rt_interp_set_input(it, "cot", cot->data, cot->nbytes));
  for (uint32_t i = 0; i < b->m->nslots; i++) {
    const char *slot = b->m->slots[i].name;
    ck_assert(strncmp(slot, "backbone.", 9) == 0);
    const rt_st_tensor_t *t = st_get(f, "params/", slot + 9);
    st = rt_interp_bind_state(it, slot, (void *)t->data, t->nbytes);
    ck_assert_msg(!st, "%s", st ? ad_status_message(st) : "");
  }
  st = rt_interp_run(it, NULL);
  ck_assert_msg(!st, "%s", st ? ad_status_message(st) : "");
  return it;
}

static double g_worst; /* the largest relative error compare() saw since the last reset */

static void compare(const rt_interp_t *it, const char *output, const rt_st_tensor_t *want,
                    double tol) {
  const ir_tensor_t *got = rt_interp_output(it, output);
  ck_assert_msg(got != NULL, "no output %s", output);
  ir_tensor_t w;
  ck_assert(rt_st_as_ir_tensor(want, &w));
  double e = golden_compare(output, got, &w, tol);
  ck_assert_msg(e <= tol, "%s: relative error %g > %g", output, e, tol);
  g_worst = fmax(g_worst, e);
}

/* Replaces b->g by a copy without its DROPOUT nodes (each maps to its input): the forward the
 * peer runs in eval mode, for graphs built with dropout probabilities > 0. */
static void strip_dropout(built_t *b) {
  ir_graph_t *g = b->g, *ng = ir_module_add_program(b->m, "forward.eval");
  uint32_t *map = malloc(sizeof *map * g->nvalues);
  ck_assert_ptr_nonnull(map);
  uint32_t ins[16];
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    ck_assert_uint_le(n->ninputs, 16);
    for (uint32_t k = 0; k < n->ninputs; k++) ins[k] = map[n->inputs[k]];
    if (n->op == IR_OP_DROPOUT) {
      map[n->output0] = ins[0];
      continue;
    }
    uint32_t v0 = ir_clone_node(ng, g, n, ins);
    for (uint32_t k = 0; k < n->noutputs; k++) map[n->output0 + k] = v0 + k;
  }
  ck_assert(!ir_graph_take_error(ng));
  b->out.hidden = map[b->out.hidden];
  b->out.mask = map[b->out.mask];
  free(map);
  ir_module_remove_program(b->m, g);
  b->g = ng;
}

static void golden(ir_dtype_t dt, bool peft, bool dropout_graph, bool rms) {
  char file[128];
  snprintf(file, sizeof file, "tests/golden/rnabert%s%s_%s.safetensors", peft ? "_lora" : "",
           rms ? "_rms" : "", dt == IR_DTYPE_F64 ? "f64" : "f32");
  char *path = golden_path(file);
  rt_st_file_t *f = NULL;
  ad_status_t st = rt_st_open(path, &f);
  free(path);
  ck_assert_msg(!st, "%s", st ? ad_status_message(st) : "");
  /* lora_dropout is active only in train mode; the peer ran in eval mode. */
  opts_t o = {.cls = &fe_class_aido_rna_650m, .dtype = dt, .tiny = true, .peft = peft,
              .save_peft_only = true, .max_length = 16, .r = 2, .alpha = 4};
  ow_t ow;
  if (rms) {
    ow_tiny(&ow);
    ow.vals[4].scalar = "RMSNorm";
    o.ow = &ow;
  }
  if (dropout_graph) {
    /* attention_probs_dropout_prob > 0 spells the attention out (matmul, pair mask, softmax,
     * zeroing, dropout, matmul); without its dropout it must be the peer's eval forward too. */
    ow_tiny(&ow);
    ow.vals[5].scalar = "0.1";
    ow.vals[6].scalar = "0.1";
    o.ow = &ow;
    o.lora_dropout = 0.1;
  }
  built_t b;
  build_ok(&o, &b);
  if (dropout_graph) {
    uint32_t nd = 0;
    for (uint32_t i = 0; i < b.g->nnodes; i++) nd += b.g->nodes[i].op == IR_OP_DROPOUT;
    ck_assert_uint_eq(nd, 1 + 2 * 3 + (peft ? 4 : 0));
    strip_dropout(&b);
  }
  add_loss_and_grads(&b);
  double tf = dt == IR_DTYPE_F64 ? 1e-10 : 1e-5, tg = dt == IR_DTYPE_F64 ? 1e-10 : 1e-4;
  const char *tag = dropout_graph ? " (spelled-out attention, dropout removed)" : "";
  const ir_tensor_t *pad_out = NULL;
  rt_interp_t *pad_it = NULL;
  /* "pad" first (row 0 is "alone" padded); "odd" is in the LayerNorm fixtures only. */
  const char *const all[3] = {"pad", "odd", "alone"}, *const rms_cases[2] = {"pad", "alone"};
  const char *const *cases = rms ? rms_cases : all;
  int ncases = rms ? 2 : 3;
  for (int c = 0; c < ncases; c++) {
    bool grads = strcmp(cases[c], "alone") != 0;
    rt_interp_t *it = run_case(&b, f, cases[c]);
    g_worst = 0;
    compare(it, "hidden", st_get(f, cases[c], "/out"), tf);
    double fwd = g_worst;
    g_worst = 0;
    uint32_t ngrad = 0;
    for (uint32_t i = 0; grads && i < b.m->nslots; i++) {
      const char *slot = b.m->slots[i].name;
      char key[600];
      snprintf(key, sizeof key, "%s/grads/%s", cases[c], slot + 9);
      const rt_st_tensor_t *w = rt_st_find(f, key);
      bool tr = b.m->slots[i].flags & IR_SLOT_TRAINABLE;
      /* The peer's frozen parameters have no .grad; ours are exactly the non-trainable. */
      ck_assert_msg(tr == (w != NULL), "%s: trainable %d but peer grad %s", slot, tr,
                    w ? "present" : "absent");
      if (!tr) continue;
      char out[620];
      snprintf(out, sizeof out, "grad:%s", slot);
      compare(it, out, w, tg);
      ngrad++;
    }
    if (grads) ck_assert_uint_eq(ngrad, peft ? 8 : rms ? 34 : 39);
    if (grads)
      printf("%s%s case %s: worst relative error forward %.3g, gradients %.3g\n", file, tag,
             cases[c], fwd, g_worst);
    else
      printf("%s%s case %s: worst relative error forward %.3g\n", file, tag, cases[c], fwd);
    if (c == 0) {
      pad_it = it;
      pad_out = rt_interp_output(it, "hidden");
    } else if (!grads) {
      /* "ACGTA" alone (L 7) and as row 0 of "pad" (L 10): the same valid outputs. */
      const ir_tensor_t *alone = rt_interp_output(it, "hidden");
      int64_t L = alone->dims[1], H = alone->dims[2], Lp = pad_out->dims[1];
      double worst = 0;
      for (int64_t l = 0; l < L; l++)
        for (int64_t h = 0; h < H; h++) {
          double x, y;
          if (dt == IR_DTYPE_F64) {
            x = ((const double *)alone->data)[l * H + h];
            y = ((const double *)pad_out->data)[l * H + h];
          } else {
            x = ((const float *)alone->data)[l * H + h];
            y = ((const float *)pad_out->data)[l * H + h];
          }
          worst = fmax(worst, fabs(x - y));
        }
      ck_assert_int_eq(Lp, 10);
      ck_assert_msg(worst <= (dt == IR_DTYPE_F64 ? 1e-12 : 1e-5), "padded two ways: %g", worst);
      rt_interp_free(it);
    } else {
      rt_interp_free(it);
    }
  }
  rt_interp_free(pad_it);
  ir_module_free(b.m);
  rt_st_close(f);
}

START_TEST(test_golden_f64) { golden(IR_DTYPE_F64, false, false, false); }
END_TEST
START_TEST(test_golden_f32) { golden(IR_DTYPE_F32, false, false, false); }
END_TEST
START_TEST(test_golden_lora_f64) { golden(IR_DTYPE_F64, true, false, false); }
END_TEST
START_TEST(test_golden_lora_f32) { golden(IR_DTYPE_F32, true, false, false); }
END_TEST
START_TEST(test_golden_dropout_graph_f64) { golden(IR_DTYPE_F64, false, true, false); }
END_TEST
START_TEST(test_golden_dropout_graph_lora_f32) { golden(IR_DTYPE_F32, true, true, false); }
END_TEST
START_TEST(test_golden_rms_f64) { golden(IR_DTYPE_F64, false, false, true); }
END_TEST
START_TEST(test_golden_rms_f32) { golden(IR_DTYPE_F32, false, false, true); }
END_TEST

/* ---- structure and errors ------------------------------------------------------------------ */
START_TEST(test_dropout_nodes) {
  ow_t ow;
  ow_tiny(&ow);
  ow.vals[5].scalar = "0.1"; /* hidden_dropout_prob */
  ow.vals[6].scalar = "0.1"; /* attention_probs_dropout_prob */
  opts_t o = {.cls = &fe_class_aido_rna_650m, .dtype = IR_DTYPE_F32, .ow = &ow, .peft = true,
              .save_peft_only = true, .max_length = 16, .r = 2, .alpha = 4, .lora_dropout = 0.1};
  built_t b;
  build_ok(&o, &b);
  static const char *const want[] = {
      "backbone.encoder.base_model.model.embeddings.dropout",
      "backbone.encoder.base_model.model.encoder.layer.0.attention.self.dropout",
      "backbone.encoder.base_model.model.encoder.layer.0.attention.output.dropout",
      "backbone.encoder.base_model.model.encoder.layer.1.output.dropout",
      "backbone.encoder.base_model.model.encoder.layer.1.attention.self.query.lora_dropout.default",
      "backbone.encoder.base_model.model.encoder.layer.1.attention.self.value.lora_dropout.default",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const ir_node_t *n = find_node(b.g, want[i]);
    ck_assert_msg(n && n->op == IR_OP_DROPOUT, "no dropout %s", want[i]);
    ck_assert_str_eq(ir_node_attr_string(n, "key", ""), want[i]);
    ck_assert(fabs(ir_node_attr_float(n, "p", 0) - 0.1) < 1e-15);
  }
  uint32_t nd = 0;
  for (uint32_t i = 0; i < b.g->nnodes; i++) nd += b.g->nodes[i].op == IR_OP_DROPOUT;
  ck_assert_uint_eq(nd, 1 + 2 * 3 + 2 * 2);
  /* The query LoRA: base_layer + 2 * B(A(dropout(x))). */
  const ir_node_t *q =
      find_node(b.g, "backbone.encoder.base_model.model.encoder.layer.0.attention.self.query");
  ck_assert(q && q->op == IR_OP_ADD);
  const ir_node_t *s = find_node(
      b.g, "backbone.encoder.base_model.model.encoder.layer.0.attention.self.query.lora_scaling");
  ck_assert(s && fabs(ir_node_attr_float(s, "alpha", 0) - 2.0) < 1e-15);
  ck_assert(!ir_verify_module(b.m));
  ir_module_free(b.m);
}
END_TEST

static void expect_error(const opts_t *o, const char *substr) {
  built_t b;
  ad_status_t st = build(o, &b);
  ck_assert_msg(st != NULL, "expected an error containing '%s'", substr);
  ck_assert_msg(strstr(ad_status_message(st), substr), "got '%s', want '%s'",
                ad_status_message(st), substr);
  ad_status_free(st);
}

START_TEST(test_errors) {
  ow_t ow;
  ow_tiny(&ow);
  ow.vals[0].scalar = "30"; /* hidden_size 30, 4 heads */
  opts_t o = {.cls = &fe_class_aido_rna_650m, .dtype = IR_DTYPE_F32, .ow = &ow,
              .save_peft_only = true, .max_length = 16};
  expect_error(&o, "test.yaml:11:7: error: hidden size 30 is not divisible by 4 heads");
  ow_tiny(&ow);
  ow_add(&ow, "hiden_dropout_prob", "0.1");
  expect_error(&o, "unknown key 'hiden_dropout_prob'; did you mean 'hidden_dropout_prob'?");
  ow_tiny(&ow);
  ow.vals[4].scalar = "BatchNorm";
  expect_error(&o, "normalization_type must be 'RMSNorm' or 'LayerNorm'");
  ow_tiny(&ow);
  ow_add(&ow, "hidden_act", "gelu");
  expect_error(&o, "only 'swiglu'");
  /* LoRA targets that name no linear layer (PEFT raises the same). */
  ow_tiny(&ow);
  fe_arg_value_t a[FE_MAX_ARGS];
  default_args(a);
  fe_node_t tgt = {.kind = FE_NODE_SCALAR, .file = "test.yaml", .line = 30, .col = 5,
                   .scalar = "qkv"};
  fe_node_t *items[1] = {&tgt};
  fe_node_t list = {.kind = FE_NODE_SEQ, .file = "test.yaml", .line = 30, .col = 3, .n = 1,
                    .items = items};
  a[A_USE_PEFT].b = true;
  a[A_LORA_TARGETS].is_null = false;
  a[A_LORA_TARGETS].list = &list;
  a[A_CONFIG_OVERWRITES].is_null = false;
  a[A_CONFIG_OVERWRITES].list = &ow.map;
  ir_module_t *m = ir_module_create();
  int sb;
  ck_assert(!ir_module_add_symbol(m, "B", 2, &sb));
  fe_build_ctx_t bc = {.module = m, .forward = ir_module_add_program(m, "forward"),
                       .dtype = IR_DTYPE_F32, .sym_batch = sb, .sym_len = -1};
  fe_component_ctx_t cc = {.b = &bc, .prefix = "backbone1", .cls = &fe_class_aido_rna_650m,
                           .args = a};
  fe_seq_t out;
  ad_status_t st = fe_class_aido_rna_650m.backbone->build(&cc, "rna_seq", &out);
  ck_assert(st != NULL);
  ck_assert_msg(strstr(ad_status_message(st), "test.yaml:30:3: error:") &&
                    strstr(ad_status_message(st), "target modules ['qkv'] not found"),
                "%s", ad_status_message(st));
  ad_status_free(st);
  ir_module_free(m);
}
END_TEST

/* RMSNorm variant and from_scratch defaults: the norms lose their bias (RnaRMSNorm). */
START_TEST(test_rmsnorm_and_scratch) {
  ow_t ow;
  ow_tiny(&ow);
  ow.vals[4].scalar = "RMSNorm";
  opts_t o = {.cls = &fe_class_aido_rna_650m, .dtype = IR_DTYPE_F32, .ow = &ow,
              .save_peft_only = true, .max_length = 16};
  built_t b;
  build_ok(&o, &b);
  ck_assert_int_ge(ir_module_find_slot(b.m, "backbone.encoder.encoder.ln.weight"), 0);
  ck_assert_int_lt(ir_module_find_slot(b.m, "backbone.encoder.encoder.ln.bias"), 0);
  ck_assert_uint_eq(b.m->nslots, 39 - 5);
  ir_module_free(b.m);
  /* from_scratch: RNABertConfig() (24 layers, hidden 1024, RMSNorm, 512 positions). */
  fe_arg_value_t a[FE_MAX_ARGS];
  default_args(a);
  a[A_FROM_SCRATCH].b = true;
  int64_t h = 0;
  ck_assert(!fe_class_aido_rna_650m.backbone->embedding_size(&fe_class_aido_rna_650m, a, &h));
  ck_assert_int_eq(h, 1024);
}
END_TEST

/* ---- through the config: SequenceRegression with an AIDO.RNA backbone ---------------------- */
static const char k_yaml[] =
    "trainer:\n"
    "  precision: 32\n"
    "model:\n"
    "  class_path: modelgenerator.tasks.SequenceRegression\n"
    "  init_args:\n"
    "    backbone:\n"
    "      class_path: modelgenerator.backbones.aido_rna_650m\n"
    "      init_args:\n"
    "        max_length: 16\n"
    "        use_peft: true\n"
    "        lora_r: 2\n"
    "        lora_alpha: 4\n"
    "        config_overwrites:\n"
    "          hidden_size: 32\n"
    "          num_attention_heads: 4\n"
    "          intermediate_size: 48\n"
    "          num_hidden_layers: 2\n"
    "          normalization_type: LayerNorm\n"
    "          hidden_dropout_prob: 0\n"
    "          attention_probs_dropout_prob: 0\n"
    "    adapter:\n"
    "      class_path: modelgenerator.adapters.LinearCLSAdapter\n"
    "    num_outputs: 3\n"
    "data:\n"
    "  class_path: aidomm.testing.SyntheticData\n"
    "  init_args:\n"
    "    batch_size: 2\n"
    "    max_length: 12\n";

static char g_yaml_path[64];

static void write_yaml(void) {
  if (g_yaml_path[0]) return;
  snprintf(g_yaml_path, sizeof g_yaml_path, "/tmp/aidomm_rnabert_XXXXXX");
  int fd = mkstemp(g_yaml_path);
  ck_assert_int_ge(fd, 0);
  FILE *f = fdopen(fd, "w");
  ck_assert_ptr_nonnull(f);
  fputs(k_yaml, f);
  fclose(f);
}

/* Compiles the config with overrides; NULL module (and *err set) on failure. */
static ir_module_t *compile(int n, char **ov, ad_status_t *err) {
  write_yaml();
  fe_config_t *c = NULL;
  ad_status_t st = fe_config_load(g_yaml_path, n, ov, &c);
  ck_assert_msg(!st, "%s", st ? ad_status_message(st) : "");
  c->warn_stream = NULL;
  ir_module_t *m = NULL;
  fe_job_t job;
  *err = fe_build_module(c, &m, &job);
  fe_config_free(c);
  return *err ? NULL : m;
}

static long long under(const ir_module_t *m, const char *prefix, uint32_t flag) {
  long long n = 0;
  for (uint32_t i = 0; i < m->nslots; i++)
    if (strncmp(m->slots[i].name, prefix, strlen(prefix)) == 0 &&
        (!flag || (m->slots[i].flags & flag)))
      n += slot_numel(&m->slots[i]);
  return n;
}

START_TEST(test_config_overrides) {
  ad_status_t st;
  ir_module_t *m = compile(0, NULL, &st);
  ck_assert_msg(m, "%s", st ? ad_status_message(st) : "");
  ck_assert_int_eq(under(m, "backbone.encoder.", IR_SLOT_TRAINABLE), 512);
  ck_assert_int_eq(under(m, "backbone.encoder.", 0), 19264);
  int s = ir_module_find_symbol(m, "L_sequences");
  ck_assert_int_ge(s, 0);
  ck_assert_int_eq(m->symbols[s].bound, 16);
  ck_assert(ir_module_find_slot(m, "backbone.encoder.base_model.model.encoder.layer.1.attention."
                                   "self.value.lora_B.default.weight") >= 0);
  ir_module_free(m);

  static const struct {
    const char *key, *val;
    const char *slot;     /* must exist afterwards (NULL: no check) */
    long long trainable;  /* backbone trainable parameters, -1: not checked */
  } cases[] = {
      {"--model.init_args.backbone.init_args.use_peft", "false",
       "backbone.encoder.encoder.layer.0.attention.self.query.weight", 18752},
      {"--model.init_args.backbone.init_args.frozen", "true",
       "backbone.encoder.base_model.model.encoder.layer.0.attention.self.query.lora_A.default."
       "weight", 512}, /* frozen is ignored with use_peft */
      {"--model.init_args.backbone.init_args.lora_r", "4", NULL, 1024},
      {"--model.init_args.backbone.init_args.lora_target_modules", "[dense]",
       "backbone.encoder.base_model.model.encoder.layer.0.attention.output.dense.lora_A.default."
       "weight", 256},
      {"--model.init_args.backbone.init_args.config_overwrites.num_hidden_layers", "1", NULL, 256},
      {"--model.init_args.backbone.init_args.config_overwrites.normalization_type", "RMSNorm",
       "backbone.encoder.base_model.model.encoder.ln.weight", 512},
      {"--model.init_args.backbone.init_args.max_length", "24", NULL, 512},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *ov[2] = {(char *)cases[i].key, (char *)cases[i].val};
    m = compile(2, ov, &st);
    ck_assert_msg(m, "%s: %s", cases[i].key, st ? ad_status_message(st) : "");
    if (cases[i].slot)
      ck_assert_msg(ir_module_find_slot(m, cases[i].slot) >= 0, "%s: no %s", cases[i].key,
                    cases[i].slot);
    ck_assert_int_eq(under(m, "backbone.encoder.", IR_SLOT_TRAINABLE), cases[i].trainable);
    if (strstr(cases[i].key, "RMSNorm") || strcmp(cases[i].val, "RMSNorm") == 0)
      ck_assert_int_lt(ir_module_find_slot(m, "backbone.encoder.base_model.model.encoder.ln.bias"),
                       0);
    if (strcmp(cases[i].val, "24") == 0)
      ck_assert_int_eq(m->symbols[ir_module_find_symbol(m, "L_sequences")].bound, 24);
    ir_module_free(m);
  }
  /* save_peft_only false keeps every key; frozen without PEFT freezes and prunes all. */
  char *ov2[4] = {"--model.init_args.backbone.init_args.save_peft_only", "false", NULL, NULL};
  m = compile(2, ov2, &st);
  ck_assert_msg(m, "%s", st ? ad_status_message(st) : "");
  ck_assert_int_eq(under(m, "backbone.encoder.", IR_SLOT_NOSAVE), 0);
  ir_module_free(m);
  char *ov3[4] = {"--model.init_args.backbone.init_args.use_peft", "false",
                  "--model.init_args.backbone.init_args.frozen", "true"};
  m = compile(4, ov3, &st);
  ck_assert_msg(m, "%s", st ? ad_status_message(st) : "");
  ck_assert_int_eq(under(m, "backbone.encoder.", IR_SLOT_TRAINABLE), 0);
  ck_assert_int_eq(under(m, "backbone.encoder.", IR_SLOT_NOSAVE), 18752);
  ck_assert_int_eq(under(m, "adapter.", IR_SLOT_TRAINABLE), 32 * 3 + 3);
  ir_module_free(m);
  /* An error in an override points at it. */
  char *ov4[2] = {"--model.init_args.backbone.init_args.config_overwrites.hidden_size", "30"};
  m = compile(2, ov4, &st);
  ck_assert(m == NULL && st != NULL);
  ck_assert_msg(strstr(ad_status_message(st), "<command line>:1:1: error: hidden size 30 is not "
                                              "divisible by 4 heads"),
                "%s", ad_status_message(st));
  ad_status_free(st);
  remove(g_yaml_path);
  g_yaml_path[0] = 0;
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("rnabert");
  TCase *tk = tcase_create("keys");
  tcase_set_timeout(tk, 60);
  tcase_add_test(tk, test_keys_tiny);
  tcase_add_test(tk, test_keys_full);
  suite_add_tcase(s, tk);
  TCase *tg = tcase_create("golden");
  tcase_set_timeout(tg, 60);
  tcase_add_test(tg, test_golden_f64);
  tcase_add_test(tg, test_golden_f32);
  tcase_add_test(tg, test_golden_lora_f64);
  tcase_add_test(tg, test_golden_lora_f32);
  tcase_add_test(tg, test_golden_dropout_graph_f64);
  tcase_add_test(tg, test_golden_dropout_graph_lora_f32);
  tcase_add_test(tg, test_golden_rms_f64);
  tcase_add_test(tg, test_golden_rms_f32);
  suite_add_tcase(s, tg);
  TCase *te = tcase_create("structure");
  tcase_add_test(te, test_dropout_nodes);
  tcase_add_test(te, test_errors);
  tcase_add_test(te, test_rmsnorm_and_scratch);
  tcase_add_test(te, test_config_overrides);
  suite_add_tcase(s, te);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
