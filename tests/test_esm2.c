/* ESM2 backbones (frontend/esm2.c) against the peer: slot names, shapes, flags and parameter
 * counts against the key tables tools/golden/esm2.py dumps from transformers' EsmModel (and
 * peft), and the built graph's forward and gradients against the peer's EsmModel at the tiny
 * size (tests/golden/esm2_tiny_{f32,f64}.safetensors, esm2_tiny_lora_f64.safetensors). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/fe_check.h"
#include "passes/passes.h"
#include "runtime/interp.h"
#include "runtime/safetensors.h"
#include "support/golden.h"

#define TINY "config_overwrites: {num_hidden_layers: 2, hidden_size: 16, num_attention_heads: 2, " \
             "intermediate_size: 32}"
#define PEFT_TINY "use_peft: true, lora_r: 2, lora_alpha: 4, lora_target_modules: [query, value]"
#define PEFT_FULL "use_peft: true, lora_r: 32, lora_alpha: 64, lora_target_modules: [query, value]"

typedef struct built {
  fe_config_t cfg;
  fe_checker_t k;
  fe_resolved_t r;
  ir_module_t *m;
  ir_graph_t *g;
  fe_seq_t out;
  int sb;
} built_t;

/* Resolves "{class_path: modelgenerator.backbones.<cls>, init_args: {<init>}}" as the peer's
 * config would give it and builds it as backbone "backbone" for the omic "protein_seq". */
static ad_status_t try_build(built_t *b, const char *cls, const char *init, ir_dtype_t dt) {
  memset(b, 0, sizeof *b);
  ad_arena_init(&b->cfg.arena, 4096);
  fe_checker_init(&b->k, &b->cfg);
  char *text = ad_arena_printf(&b->cfg.arena,
                               "{class_path: modelgenerator.backbones.%s, init_args: {%s}}", cls,
                               init);
  fe_node_t *sec = fe_node_parse_text(&b->cfg.arena, text);
  ck_assert_msg(sec != NULL, "does not parse: %s", text);
  ad_status_t st = fe_resolve_class(&b->k, FE_CLASS_BACKBONE, "model.init_args.backbone", sec,
                                    NULL, NULL, &b->r);
  if (st) return st;
  b->m = ir_module_create();
  st = ir_module_add_symbol(b->m, "B", 4, &b->sb);
  if (st) return st;
  b->g = ir_module_add_program(b->m, "forward");
  fe_build_ctx_t ctx = {.config = &b->cfg, .module = b->m, .forward = b->g, .dtype = dt,
                        .sym_batch = b->sb, .sym_len = -1, .cls = b->r.cls, .args = b->r.args,
                        .section = sec};
  fe_component_ctx_t cc = {.b = &ctx, .prefix = "backbone", .cls = b->r.cls, .args = b->r.args};
  ck_assert_int_eq(b->r.cls->kind, FE_CLASS_BACKBONE);
  st = b->r.cls->backbone->build(&cc, "protein_seq", &b->out);
  if (st) return st;
  return ir_graph_take_error(b->g);
}

static void build(built_t *b, const char *cls, const char *init, ir_dtype_t dt) {
  ad_status_t st = try_build(b, cls, init, dt);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  /* The builder leaves the graph's name scope as it found it (the task builds more after). */
  ck_assert_str_eq(b->g->scope, "");
}

static void built_free(built_t *b) {
  fe_checker_flush(&b->k);
  ir_module_free(b->m);
  ad_arena_free(&b->cfg.arena);
}

/* ---- key tables ---------------------------------------------------------------------------- */
static char *read_text(const char *rel) {
  char *path = golden_path(rel);
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  free(path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = 0;
  fclose(f);
  return s;
}

static void shape_text(const ir_type_t *t, char *buf, size_t cap) {
  size_t o = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < t->rank && o < cap; i++)
    o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? "," : "", (long long)t->dims[i].cst);
  snprintf(buf + o, cap - o > 0 ? cap - o : 0, "]");
}

/* Every line of the table is a slot "backbone.encoder.<key>" with that shape and flags, and
 * there are no other slots; the header's totals equal the module's. */
static void check_keys(const built_t *b, const char *table) {
  char rel[128];
  snprintf(rel, sizeof rel, "tests/golden/keys/%s.txt", table);
  char *text = read_text(rel);
  long long want_total = -1, want_train = -1;
  uint32_t nlines = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (line[0] == '#') {
      const char *p = strstr(line, "params_total ");
      if (p) ck_assert_int_eq(sscanf(p, "params_total %lld params_trainable %lld", &want_total,
                                     &want_train), 2);
      continue;
    }
    char key[256], shape[64], extra[16] = "";
    int train = -1, kept = -1;
    int nf = sscanf(line, "%255s %63s %d %d %15s", key, shape, &train, &kept, extra);
    ck_assert_msg(nf >= 4, "%s: bad line '%s'", table, line);
    char name[300];
    snprintf(name, sizeof name, "backbone.encoder.%s", key);
    int64_t s = ir_module_find_slot(b->m, name);
    ck_assert_msg(s >= 0, "%s: no slot %s", table, name);
    const ir_state_slot_t *sl = &b->m->slots[s];
    char got[64];
    shape_text(&sl->type, got, sizeof got);
    ck_assert_msg(strcmp(got, shape) == 0, "%s: %s has shape %s, the peer %s", table, name, got,
                  shape);
    bool buffer = strcmp(extra, "buffer") == 0;
    ck_assert_msg(!!(sl->flags & IR_SLOT_BUFFER) == buffer, "%s: %s buffer flag", table, name);
    ck_assert_msg(!!(sl->flags & IR_SLOT_PARAM) == !buffer, "%s: %s param flag", table, name);
    ck_assert_msg(!!(sl->flags & IR_SLOT_TRAINABLE) == (train == 1),
                  "%s: %s trainable %d, the peer %d", table, name,
                  !!(sl->flags & IR_SLOT_TRAINABLE), train);
    ck_assert_int_eq(sl->type.dtype, IR_DTYPE_F32);
    ck_assert_msg(!(sl->flags & IR_SLOT_NOSAVE) == (kept == 1),
                  "%s: %s kept by save_peft_only %d, the peer %d", table, name,
                  !(sl->flags & IR_SLOT_NOSAVE), kept);
    nlines++;
  }
  free(text);
  ck_assert_msg(nlines == b->m->nslots, "%s: %u keys, the module has %u slots", table, nlines,
                b->m->nslots);
  long long total = 0, train = 0;
  for (uint32_t i = 0; i < b->m->nslots; i++) {
    const ir_state_slot_t *sl = &b->m->slots[i];
    if (!(sl->flags & IR_SLOT_PARAM)) continue;
    long long n = 1;
    for (int d = 0; d < sl->type.rank; d++) n *= sl->type.dims[d].cst;
    total += n;
    if (sl->flags & IR_SLOT_TRAINABLE) train += n;
  }
  ck_assert_int_eq(total, want_total);
  ck_assert_int_eq(train, want_train);
}

static const char *const k_sizes[] = {"esm2_8m", "esm2_35m", "esm2_150m", "esm2_650m"};

START_TEST(test_keys_plain) {
  built_t b;
  build(&b, k_sizes[_i], "max_length: 1024", IR_DTYPE_F32);
  check_keys(&b, k_sizes[_i]);
  built_free(&b);
}
END_TEST

START_TEST(test_keys_peft) {
  built_t b;
  build(&b, k_sizes[_i], "max_length: 1024, " PEFT_FULL, IR_DTYPE_F32);
  char t[64];
  snprintf(t, sizeof t, "%s_peft", k_sizes[_i]);
  check_keys(&b, t);
  built_free(&b);
}
END_TEST

START_TEST(test_keys_frozen) {
  built_t b;
  build(&b, k_sizes[_i], "frozen: true", IR_DTYPE_F32);
  char t[64];
  snprintf(t, sizeof t, "%s_frozen", k_sizes[_i]);
  check_keys(&b, t);
  built_free(&b);
}
END_TEST

START_TEST(test_keys_tiny) {
  built_t b;
  build(&b, "esm2_8m", TINY, IR_DTYPE_F32);
  check_keys(&b, "esm2_tiny");
  ck_assert(b.m->slots[ir_module_find_slot(b.m, "backbone.encoder.pooler.dense.weight")].flags &
            IR_SLOT_UNUSED);
  ck_assert(!(b.m->slots[ir_module_find_slot(b.m, "backbone.encoder.encoder.layer.0.attention."
                                                  "self.query.weight")]
                  .flags &
              IR_SLOT_UNUSED));
  built_free(&b);
  build(&b, "esm2_8m", TINY ", " PEFT_TINY, IR_DTYPE_F32);
  check_keys(&b, "esm2_tiny_peft");
  built_free(&b);
  build(&b, "esm2_8m", TINY ", frozen: true", IR_DTYPE_F32);
  check_keys(&b, "esm2_tiny_frozen");
  built_free(&b);
  /* use_peft wins over frozen for training (ESM.setup) but not for saving */
  build(&b, "esm2_8m", TINY ", frozen: true, " PEFT_TINY, IR_DTYPE_F32);
  check_keys(&b, "esm2_tiny_peft_frozen");
  built_free(&b);
  /* save_peft_only false keeps every key */
  static const char *const keep_all[] = {TINY ", save_peft_only: false, " PEFT_TINY,
                                         TINY ", save_peft_only: false, frozen: true", TINY};
  for (int i = 0; i < 3; i++) {
    build(&b, "esm2_8m", keep_all[i], IR_DTYPE_F32);
    for (uint32_t j = 0; j < b.m->nslots; j++)
      ck_assert_msg(!(b.m->slots[j].flags & IR_SLOT_NOSAVE), "%s", b.m->slots[j].name);
    built_free(&b);
  }
}
END_TEST

START_TEST(test_shapes_and_bound) {
  built_t b;
  build(&b, "esm2_150m", "max_length: 100", IR_DTYPE_F32);
  int sl = ir_module_find_symbol(b.m, "L_protein_seq");
  ck_assert_int_ge(sl, 0);
  ck_assert_int_eq(b.m->symbols[sl].bound, 100);
  ck_assert_int_eq(b.out.size, 640);
  ck_assert_int_eq(b.out.len_sym, sl);
  const ir_type_t *t = ir_value_type(b.g, b.out.hidden);
  ck_assert_int_eq(t->rank, 3);
  ck_assert_int_eq(t->dtype, IR_DTYPE_F32);
  ck_assert(ir_dim_equal(t->dims[1], ir_dim_sym(sl)));
  ck_assert(ir_dim_equal(t->dims[2], ir_dim_const(640)));
  int64_t e = 0;
  ad_status_t st = b.r.cls->backbone->embedding_size(b.r.cls, b.r.args, &e);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ck_assert_int_eq(e, 640);
  built_free(&b);
  build(&b, "esm2_650m", "config_overwrites: {hidden_size: 40, num_attention_heads: 4}",
        IR_DTYPE_F64);
  ck_assert_int_eq(b.out.size, 40);
  /* no max_length: bounded by max_position_embeddings */
  ck_assert_int_eq(b.m->symbols[ir_module_find_symbol(b.m, "L_protein_seq")].bound, 1026);
  ck_assert_int_eq(ir_value_type(b.g, b.out.hidden)->dtype, IR_DTYPE_F64);
  built_free(&b);
}
END_TEST

/* hidden_dropout_prob > 0: nn.Dropout where EsmEmbeddings, EsmSelfOutput and EsmOutput apply
 * it, keyed by the module path; none at p = 0 (the identity in torch). */
START_TEST(test_dropout_placement) {
  built_t b;
  build(&b, "esm2_8m", TINY, IR_DTYPE_F32);
  for (uint32_t i = 0; i < b.g->nnodes; i++) ck_assert(b.g->nodes[i].op != IR_OP_DROPOUT);
  built_free(&b);
  build(&b, "esm2_8m",
        "config_overwrites: {num_hidden_layers: 2, hidden_size: 16, num_attention_heads: 2, "
        "intermediate_size: 32, hidden_dropout_prob: 0.1}",
        IR_DTYPE_F32);
  static const char *const keys[] = {
      "backbone.encoder.embeddings.dropout",
      "backbone.encoder.encoder.layer.0.attention.output.dropout",
      "backbone.encoder.encoder.layer.0.output.dropout",
      "backbone.encoder.encoder.layer.1.attention.output.dropout",
      "backbone.encoder.encoder.layer.1.output.dropout"};
  uint32_t n = 0;
  for (uint32_t i = 0; i < b.g->nnodes; i++) {
    const ir_node_t *nd = &b.g->nodes[i];
    if (nd->op != IR_OP_DROPOUT) continue;
    ck_assert_uint_lt(n, 5);
    ck_assert_str_eq(ir_node_attr(nd, "key")->s, keys[n]);
    ck_assert_double_eq(ir_node_attr_float(nd, "p", 0), 0.1);
    n++;
  }
  ck_assert_uint_eq(n, 5);
  ck_assert_ptr_nonnull(ir_module_find_scalar(b.m, "seed"));
  built_free(&b);
}
END_TEST

/* ---- errors -------------------------------------------------------------------------------- */
static void expect_error(const char *cls, const char *init, const char *needle) {
  built_t b;
  ad_status_t st = try_build(&b, cls, init, IR_DTYPE_F32);
  ck_assert_msg(st != NULL, "%s {%s}: no error", cls, init);
  const char *msg = ad_status_message(st);
  ck_assert_msg(strstr(msg, needle) != NULL, "%s {%s}: '%s' lacks '%s'", cls, init, msg, needle);
  ad_status_free(st);
  built_free(&b);
}

START_TEST(test_errors) {
  expect_error("esm2_8m", "config_overwrites: {hidden_size: 30, num_attention_heads: 4}",
               "hidden size 30 is not divisible by 4 heads");
  expect_error("esm2_8m", "config_overwrites: {hidden_size: 12, num_attention_heads: 4}",
               "must be even for rotary");
  expect_error("esm2_150m", "use_peft: true", "lora_target_modules");
  expect_error("esm2_150m", "config_overwrites: {hiden_size: 64}", "did you mean 'hidden_size'");
  expect_error("esm2_150m", "config_overwrites: {emb_layer_norm_before: true}",
               "emb_layer_norm_before");
  expect_error("esm2_150m", "config_overwrites: {attention_probs_dropout_prob: 0.1}",
               "attention_probs_dropout_prob");
  expect_error("esm2_150m", "config_overwrites: {hidden_act: relu}", "hidden_act");
  expect_error("esm2_150m", "config_overwrites: {position_embedding_type: absolute}",
               "rotary");
  expect_error("esm2_150m", "max_length: -3", "max_length");
  expect_error("esm2_150m", "lora_dropout: 1.5", "lora_dropout");
  /* The peer's ESM has no from_scratch (an unexpected keyword argument there). */
  expect_error("esm2_150m", "from_scratch: true", "from_scratch");
  expect_error("esm2_150m", "use_peft: true, lora_target_modules: [query], lora_use_rslora: true",
               "lora_use_rslora");
  expect_error("esm2_8m", TINY ", use_peft: true, lora_target_modules: [attn]", "attn");
}
END_TEST

/* ---- goldens ------------------------------------------------------------------------------- */
static const rt_st_tensor_t *st_get(const rt_st_file_t *f, const char *prefix, const char *name) {
  char key[300];
  snprintf(key, sizeof key, "%s%s", prefix, name);
  const rt_st_tensor_t *t = rt_st_find(f, key);
  ck_assert_msg(t != NULL, "fixture lacks %s", key);
  return t;
}

/* The STATE_IN value reading slot `name`, or IR_NONE. */
static uint32_t slot_value(const ir_graph_t *g, const char *name) {
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (n->op != IR_OP_STATE_IN) continue;
    const ir_attr_t *a = ir_node_attr(n, "slot");
    if (a && strcmp(a->s, name) == 0) return n->output0;
  }
  return IR_NONE;
}

static const char *key_of(const char *slot) {
  static const char pre[] = "backbone.encoder.";
  ck_assert(strncmp(slot, pre, sizeof pre - 1) == 0);
  return slot + sizeof pre - 1;
}

typedef struct golden {
  built_t b;
  rt_st_file_t *f;
  uint32_t *grad; /* per slot: the gradient value, or IR_NONE */
} golden_t;

/* Builds the tiny model, appends "last_hidden_state" and, for every trainable slot, an output
 * "grad:<slot>" of d sum(last_hidden_state * cot) / d slot. */
static void golden_build(golden_t *gd, const char *fixture, const char *init, ir_dtype_t dt) {
  char *path = golden_path(fixture);
  ad_status_t st = rt_st_open(path, &gd->f);
  free(path);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  char args[512];
  snprintf(args, sizeof args, "max_length: 12, %s", init);
  build(&gd->b, "esm2_8m", args, dt);
  built_t *b = &gd->b;
  ir_node_desc_t od = {.op = IR_OP_OUTPUT, .name = "last_hidden_state", .inputs = &b->out.hidden,
                       .ninputs = 1};
  ir_build(b->g, &od);
  ir_type_t ct = *ir_value_type(b->g, b->out.hidden);
  ir_node_desc_t cd = {.op = IR_OP_INPUT, .name = "cot", .out_types = &ct, .nout_types = 1};
  uint32_t cot = ir_build(b->g, &cd);
  uint32_t mi[2] = {b->out.hidden, cot};
  ir_node_desc_t md = {.op = IR_OP_MUL, .name = "loss.mul", .inputs = mi, .ninputs = 2};
  uint32_t prod = ir_build(b->g, &md);
  const int64_t axes[3] = {0, 1, 2};
  ir_attr_t ra[2] = {IR_ATTR_INTS("axes", axes, 3), IR_ATTR_I("keepdim", 0)};
  ir_node_desc_t rd = {.op = IR_OP_REDUCE_SUM, .name = "loss", .inputs = &prod, .ninputs = 1,
                       .attrs = ra, .nattrs = 2};
  uint32_t loss = ir_build(b->g, &rd);
  st = ir_graph_take_error(b->g);
  ck_assert_msg(!st, "%s", ad_status_message(st));

  uint32_t n = b->m->nslots;
  uint32_t *wrt = calloc(n, sizeof *wrt);
  gd->grad = calloc(n, sizeof *gd->grad);
  uint32_t nw = 0, idx[256];
  for (uint32_t i = 0; i < n; i++) {
    gd->grad[i] = IR_NONE;
    if (!(b->m->slots[i].flags & IR_SLOT_TRAINABLE)) continue;
    uint32_t v = slot_value(b->g, b->m->slots[i].name);
    /* Exactly the parameters the forward never reads have no STATE_IN (and are flagged). */
    ck_assert_msg((v == IR_NONE) == !!(b->m->slots[i].flags & IR_SLOT_UNUSED), "%s",
                  b->m->slots[i].name);
    if (v == IR_NONE) continue;
    idx[nw] = i;
    wrt[nw++] = v;
  }
  uint32_t *dw = calloc(nw, sizeof *dw);
  st = pass_autodiff(b->g, loss, wrt, nw, dw);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  for (uint32_t j = 0; j < nw; j++) {
    const char *name = b->m->slots[idx[j]].name;
    ck_assert_msg(dw[j] != IR_NONE, "no gradient for %s", name);
    gd->grad[idx[j]] = dw[j];
    char on[320];
    snprintf(on, sizeof on, "grad:%s", name);
    ir_node_desc_t gdsc = {.op = IR_OP_OUTPUT, .name = on, .inputs = &dw[j], .ninputs = 1};
    ir_build(b->g, &gdsc);
  }
  st = ir_graph_take_error(b->g);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  free(wrt);
  free(dw);
}

static void golden_free(golden_t *gd) {
  free(gd->grad);
  built_free(&gd->b);
  rt_st_close(gd->f);
}

/* Runs batch `batch` ("a", "b") of the fixture; the caller frees the interpreter. */
static rt_interp_t *golden_run(golden_t *gd, const char *batch) {
  built_t *b = &gd->b;
  char pre[16];
  snprintf(pre, sizeof pre, "%s/", batch);
  const rt_st_tensor_t *ids = st_get(gd->f, pre, "input_ids");
  int64_t sym[IR_MAX_SYMBOLS] = {0};
  sym[b->sb] = ids->shape[0];
  sym[ir_module_find_symbol(b->m, "L_protein_seq")] = ids->shape[1];
  rt_interp_t *it = NULL;
  ad_status_t st = rt_interp_create(b->g, sym, &it);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  const char *ins[3][2] = {{"protein_seq_input_ids", "input_ids"},
                           {"protein_seq_attention_mask", "attention_mask"},
                           {"cot", "cot"}};
  for (int i = 0; i < 3; i++) {
    const rt_st_tensor_t *t = st_get(gd->f, pre, ins[i][1]);
    st = rt_interp_set_input(it, ins[i][0], t->data, t->nbytes);
    ck_assert_msg(!st, "%s: %s", ins[i][0], ad_status_message(st));
  }
  for (uint32_t i = 0; i < b->m->nslots; i++) {
    const ir_state_slot_t *sl = &b->m->slots[i];
    const char *key = key_of(sl->name);
    char fk[300];
    snprintf(fk, sizeof fk, "%s%s", sl->flags & IR_SLOT_BUFFER ? "buffers/" : "params/", key);
    const rt_st_tensor_t *t = rt_st_find(gd->f, fk);
    if (!t) {
      ck_assert_msg(sl->flags & IR_SLOT_BUFFER, "fixture lacks %s", fk);
      continue;
    }
    st = rt_interp_bind_state(it, sl->name, (void *)t->data, t->nbytes);
    ck_assert_msg(!st, "%s: %s", sl->name, ad_status_message(st));
  }
  st = rt_interp_run(it, NULL);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  return it;
}

static void compare(const rt_interp_t *it, const char *output, const rt_st_tensor_t *want,
                    double tol) {
  const ir_tensor_t *got = rt_interp_output(it, output);
  ck_assert_msg(got != NULL, "no output %s", output);
  ir_tensor_t w;
  ck_assert(rt_st_as_ir_tensor(want, &w));
  double e = golden_compare(output, got, &w, tol);
  ck_assert_msg(e <= tol, "%s: relative error %g > %g", output, e, tol);
}

/* Forward and every gradient of both batches; returns the worst errors seen. */
static void golden_check(golden_t *gd, const char *batch, double tol_fwd, double tol_grad,
                         double *worst_fwd, double *worst_grad) {
  built_t *b = &gd->b;
  rt_interp_t *it = golden_run(gd, batch);
  char pre[16];
  snprintf(pre, sizeof pre, "%s/", batch);
  const rt_st_tensor_t *want = st_get(gd->f, pre, "last_hidden_state");
  compare(it, "last_hidden_state", want, tol_fwd);
  ir_tensor_t w;
  ck_assert(rt_st_as_ir_tensor(want, &w));
  double e = golden_rel_error(rt_interp_output(it, "last_hidden_state"), &w);
  if (e > *worst_fwd) *worst_fwd = e;
  uint32_t ngrads = 0;
  for (uint32_t i = 0; i < b->m->nslots; i++) {
    if (gd->grad[i] == IR_NONE) continue;
    char gp[32], on[320];
    snprintf(gp, sizeof gp, "%s/grads/", batch);
    snprintf(on, sizeof on, "grad:%s", b->m->slots[i].name);
    const rt_st_tensor_t *wg = st_get(gd->f, gp, key_of(b->m->slots[i].name));
    compare(it, on, wg, tol_grad);
    ck_assert(rt_st_as_ir_tensor(wg, &w));
    e = golden_rel_error(rt_interp_output(it, on), &w);
    if (e > *worst_grad) *worst_grad = e;
    ngrads++;
  }
  /* The peer's autograd gives a gradient to exactly these (count the fixture's). */
  uint32_t nfix = 0;
  char gp[32];
  snprintf(gp, sizeof gp, "%s/grads/", batch);
  for (size_t i = 0; i < rt_st_count(gd->f); i++)
    nfix += strncmp(rt_st_at(gd->f, i)->name, gp, strlen(gp)) == 0;
  ck_assert_uint_eq(ngrads, nfix);
  rt_interp_free(it);
}

START_TEST(test_golden_f64) {
  golden_t gd;
  golden_build(&gd, "tests/golden/esm2_tiny_f64.safetensors", TINY, IR_DTYPE_F64);
  double wf = 0, wg = 0;
  golden_check(&gd, "a", 1e-10, 1e-10, &wf, &wg);
  golden_check(&gd, "b", 1e-10, 1e-10, &wf, &wg);
  printf("esm2 tiny f64: forward %.3g, gradients %.3g (max relative error)\n", wf, wg);
  golden_free(&gd);
}
END_TEST

START_TEST(test_golden_f32) {
  golden_t gd;
  golden_build(&gd, "tests/golden/esm2_tiny_f32.safetensors", TINY, IR_DTYPE_F32);
  double wf = 0, wg = 0;
  golden_check(&gd, "a", 1e-5, 1e-4, &wf, &wg);
  golden_check(&gd, "b", 1e-5, 1e-4, &wf, &wg);
  printf("esm2 tiny f32: forward %.3g, gradients %.3g (max relative error)\n", wf, wg);
  golden_free(&gd);
}
END_TEST

/* "MKV" alone (batch a row 1, L = 5) and padded to 11 (batch b row 0): same valid outputs. */
START_TEST(test_padding_invariance) {
  golden_t gd;
  golden_build(&gd, "tests/golden/esm2_tiny_f64.safetensors", TINY, IR_DTYPE_F64);
  rt_interp_t *ia = golden_run(&gd, "a"), *ib = golden_run(&gd, "b");
  const ir_tensor_t *ya = rt_interp_output(ia, "last_hidden_state"); /* [2, 5, 16] */
  const ir_tensor_t *yb = rt_interp_output(ib, "last_hidden_state"); /* [3, 11, 16] */
  const double *pa = ya->data, *pb = yb->data;
  double worst = 0, scale = 0;
  for (int t = 0; t < 5; t++)
    for (int h = 0; h < 16; h++) {
      double x = pa[(1 * 5 + t) * 16 + h], y = pb[(0 * 11 + t) * 16 + h];
      worst = fmax(worst, fabs(x - y));
      scale = fmax(scale, fabs(x));
    }
  ck_assert_msg(worst <= 1e-12 * scale, "padding changed valid outputs by %g", worst);
  rt_interp_free(ia);
  rt_interp_free(ib);
  golden_free(&gd);
}
END_TEST

START_TEST(test_golden_lora) {
  golden_t gd;
  golden_build(&gd, "tests/golden/esm2_tiny_lora_f64.safetensors", TINY ", " PEFT_TINY
               ", lora_dropout: 0.0", IR_DTYPE_F64);
  uint32_t ntrain = 0;
  for (uint32_t i = 0; i < gd.b.m->nslots; i++) {
    bool lora = strstr(gd.b.m->slots[i].name, ".lora_") != NULL;
    ck_assert_msg(!!(gd.b.m->slots[i].flags & IR_SLOT_TRAINABLE) == lora, "%s",
                  gd.b.m->slots[i].name);
    ntrain += lora;
  }
  ck_assert_uint_eq(ntrain, 8);
  double wf = 0, wg = 0;
  golden_check(&gd, "a", 1e-10, 1e-10, &wf, &wg);
  printf("esm2 tiny LoRA f64: forward %.3g, gradients %.3g (max relative error)\n", wf, wg);
  golden_free(&gd);
}
END_TEST

static Suite *esm2_suite(void) {
  Suite *s = suite_create("esm2");
  TCase *tk = tcase_create("keys");
  tcase_set_timeout(tk, 60);
  tcase_add_loop_test(tk, test_keys_plain, 0, 4);
  tcase_add_loop_test(tk, test_keys_peft, 0, 4);
  tcase_add_loop_test(tk, test_keys_frozen, 0, 4);
  tcase_add_test(tk, test_keys_tiny);
  tcase_add_test(tk, test_shapes_and_bound);
  tcase_add_test(tk, test_errors);
  tcase_add_test(tk, test_dropout_placement);
  suite_add_tcase(s, tk);
  TCase *tg = tcase_create("golden");
  tcase_set_timeout(tg, 60);
  tcase_add_test(tg, test_golden_f64);
  tcase_add_test(tg, test_golden_f32);
  tcase_add_test(tg, test_padding_invariance);
  tcase_add_test(tg, test_golden_lora);
  suite_add_tcase(s, tg);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(esm2_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
