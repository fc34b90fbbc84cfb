/* Tasks (MMSequenceRegression, SequenceRegression) end to end through the frontend:
 *  - goldens (tools/golden/tasks.py): the tiny configs under configs/ (dropout off, LoRA off,
 *    the fixture's adapter sizes) are built by fe_build_module and run on the reference
 *    interpreter with the peer's weights; pred and loss (BatchNorm in train mode, as the
 *    "forward" program), the fused embedding, the gradient of the loss w.r.t. every trainable
 *    parameter, and the "eval" program's pred (BatchNorm running statistics) are compared
 *    (f64 1e-10; f32 forward 1e-5, gradients 1e-4);
 *  - the full-size seed configs: the manifest's key set, shapes, total / trainable / saved
 *    counts equal the peer's (tests/golden/keys/task_*.txt), each compiles in under 10 s, and
 *    the eval program's FLOPs at B = 1 are within 1% of isoform-task.md 4.2 plus the fusion and
 *    head (counted the same way);
 *  - configuration errors at the offending node. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "frontend/fe_internal.h"
#include "passes/passes.h"
#include "runtime/interp.h"
#include "runtime/safetensors.h"
#include "support/golden.h"

static char *src_path(const char *rel) { return golden_path(rel); }

static fe_config_t *load(const char *rel, int nov, char *const *ov) {
  char *p = src_path(rel);
  fe_config_t *c = NULL;
  ad_status_t st = fe_config_load(p, nov, ov, &c);
  free(p);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  c->warn_stream = NULL;
  return c;
}

/* Builds a config; a class the build needs but this binary lacks is reported by name. */
static ir_module_t *build(const char *rel, int nov, char *const *ov, fe_job_t *job) {
  fe_config_t *c = load(rel, nov, ov);
  ir_module_t *m = NULL;
  ad_status_t st = fe_build_module(c, &m, job);
  ck_assert_msg(!st, "%s: %s", rel, ad_status_message(st));
  fe_config_free(c);
  return m;
}

/* ---- the sharded fixture --------------------------------------------------------------------- */
typedef struct shards {
  rt_st_file_t *f[16];
  int n;
} shards_t;

static void shards_open(shards_t *s, const char *cas, const char *dt) {
  memset(s, 0, sizeof *s);
  int total = 1;
  for (int k = 0; k < total; k++) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/golden/task_%s_%s_%d.safetensors", cas, dt, k);
    char *p = golden_path(rel);
    ad_status_t st = rt_st_open(p, &s->f[k]);
    free(p);
    ck_assert_msg(!st, "%s", ad_status_message(st));
    if (k == 0) {
      const char *n = rt_st_metadata(s->f[0], "shards");
      ck_assert_ptr_nonnull(n);
      total = atoi(n);
      ck_assert(total >= 1 && total <= 16);
    }
  }
  s->n = total;
}

static void shards_close(shards_t *s) {
  for (int k = 0; k < s->n; k++) rt_st_close(s->f[k]);
}

static const rt_st_tensor_t *sfind(const shards_t *s, const char *pfx, const char *name) {
  char key[512];
  snprintf(key, sizeof key, "%s%s", pfx, name);
  for (int k = 0; k < s->n; k++) {
    const rt_st_tensor_t *t = rt_st_find(s->f[k], key);
    if (t) return t;
  }
  return NULL;
}

/* A malloc'd copy of t in dtype dt (floats converted; integers copied as stored). */
static void *as_dtype(const rt_st_tensor_t *t, ir_dtype_t dt, size_t *bytes) {
  int64_t n = rt_st_numel(t);
  *bytes = (size_t)n * ir_dtype_size(dt);
  void *p = calloc(1, *bytes ? *bytes : 1);
  if (dt != IR_DTYPE_F32 && dt != IR_DTYPE_F64) {
    ck_assert_uint_eq(t->nbytes, *bytes);
    memcpy(p, t->data, *bytes);
    return p;
  }
  for (int64_t i = 0; i < n; i++) {
    double v = t->dtype == RT_ST_F32 ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
    if (dt == IR_DTYPE_F32)
      ((float *)p)[i] = (float)v;
    else
      ((double *)p)[i] = v;
  }
  return p;
}

static const ir_node_t *find_node(const ir_graph_t *g, const char *name) {
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
  return NULL;
}

/* The STATE_IN value reading a slot in g, or IR_NONE. */
static uint32_t state_in_of(const ir_graph_t *g, const char *slot) {
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == IR_OP_STATE_IN &&
        strcmp(ir_node_attr_string(&g->nodes[i], "slot", ""), slot) == 0)
      return g->nodes[i].output0;
  return IR_NONE;
}

static void check_out(const rt_interp_t *it, const char *output, const rt_st_tensor_t *want,
                      double tol, const char *label) {
  ck_assert_msg(want != NULL, "%s: the fixture lacks %s", label, output);
  const ir_tensor_t *got = rt_interp_output(it, output);
  ck_assert_msg(got != NULL, "%s: no output %s", label, output);
  ir_tensor_t w;
  ck_assert(rt_st_as_ir_tensor(want, &w));
  char l[512];
  snprintf(l, sizeof l, "%s %s", label, output);
  double e = golden_compare(l, got, &w, tol);
  ck_assert_msg(e <= tol, "%s: relative error %g > %g", l, e, tol);
}

/* Feeds every INPUT of g from the fixture (in/<name>) and sets the symbols from their sizes. */
static void feed(const ir_module_t *m, const ir_graph_t *g, const shards_t *s,
                 rt_interp_t **out_it, void ***bufs, int *nb) {
  int64_t sym[IR_MAX_SYMBOLS];
  ir_module_bounds(m, sym);
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (n->op != IR_OP_INPUT) continue;
    const rt_st_tensor_t *t = sfind(s, "in/", n->name);
    ck_assert_msg(t != NULL, "the fixture has no input %s", n->name);
    const ir_type_t *ty = &g->values[n->output0].type;
    ck_assert_int_eq(ty->rank, t->rank);
    for (int d = 0; d < ty->rank; d++)
      if (ir_dim_symbol(ty->dims[d]) >= 0) sym[ir_dim_symbol(ty->dims[d])] = t->shape[d];
  }
  ad_status_t st = rt_interp_create(g, sym, out_it);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  *bufs = calloc(g->nnodes + m->nslots, sizeof **bufs);
  *nb = 0;
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (n->op != IR_OP_INPUT) continue;
    size_t bytes;
    void *p = as_dtype(sfind(s, "in/", n->name), g->values[n->output0].type.dtype, &bytes);
    (*bufs)[(*nb)++] = p;
    st = rt_interp_set_input(*out_it, n->name, p, bytes);
    ck_assert_msg(!st, "%s: %s", n->name, ad_status_message(st));
  }
}

/* Binds every slot g reads to a fresh copy of the fixture's value (zeros for unused slots the
 * fixture leaves out, such as Enformer's output heads). */
static void bind_state(const ir_module_t *m, rt_interp_t *it, const shards_t *s, void **bufs,
                       int *nb) {
  int64_t bounds[IR_MAX_SYMBOLS];
  ir_module_bounds(m, bounds);
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *sl = &m->slots[i];
    if (sl->flags & IR_SLOT_OPTIM) continue;
    const rt_st_tensor_t *t = sfind(s, "p/", sl->name);
    size_t bytes;
    void *p;
    if (!t) {
      ck_assert_msg(sl->flags & IR_SLOT_UNUSED, "the fixture has no value for slot %s", sl->name);
      ir_shape_t sh = ir_type_shape(&sl->type, bounds);
      bytes = (size_t)ir_shape_numel(&sh) * ir_dtype_size(sl->type.dtype);
      p = calloc(1, bytes ? bytes : 1);
    } else {
      p = as_dtype(t, sl->type.dtype, &bytes);
    }
    bufs[(*nb)++] = p;
    ad_status_t st = rt_interp_bind_state(it, sl->name, p, bytes);
    ck_assert_msg(!st, "%s: %s", sl->name, ad_status_message(st));
  }
}

/* Gradients that vanish identically (Enformer's conv biases before a training-mode BatchNorm,
 * whose mean subtraction removes them) are rounding noise on both sides: compared at the
 * model's gradient scale gscale (max |g| over the fixture) instead of their own magnitude. */
static void check_grad(const rt_interp_t *it, const char *output, const rt_st_tensor_t *want,
                       double tol, double gscale, const char *label) {
  ck_assert_msg(want != NULL, "%s: the fixture lacks %s", label, output);
  const ir_tensor_t *got = rt_interp_output(it, output);
  ck_assert_msg(got != NULL, "%s: no output %s", label, output);
  ir_tensor_t w;
  ck_assert(rt_st_as_ir_tensor(want, &w));
  ck_assert_int_eq(ir_tensor_numel(got), ir_tensor_numel(&w));
  double wmax = 0, diff = 0;
  for (int64_t i = 0; i < ir_tensor_numel(&w); i++) {
    double a = got->dtype == IR_DTYPE_F64 ? ((const double *)got->data)[i]
                                          : ((const float *)got->data)[i];
    double b = w.dtype == IR_DTYPE_F64 ? ((const double *)w.data)[i] : ((const float *)w.data)[i];
    wmax = fmax(wmax, fabs(b));
    diff = fmax(diff, fabs(a - b));
  }
  if (wmax >= 0.1 * tol * gscale) {
    check_out(it, output, want, tol, label);
    return;
  }
  ck_assert_msg(diff / gscale <= tol, "%s %s (vanishing): error %g at the gradient scale %g > %g",
                label, output, diff / gscale, gscale, tol);
}

static double grad_scale(const shards_t *s) {
  double g = 0;
  for (int k = 0; k < s->n; k++)
    for (size_t i = 0; i < rt_st_count(s->f[k]); i++) {
      const rt_st_tensor_t *t = rt_st_at(s->f[k], i);
      if (strncmp(t->name, "g/", 2) != 0) continue;
      for (int64_t j = 0; j < rt_st_numel(t); j++)
        g = fmax(g, fabs(t->dtype == RT_ST_F64 ? ((const double *)t->data)[j]
                                               : ((const float *)t->data)[j]));
    }
  return g;
}

typedef struct task_case {
  const char *name;
  const char *config;
  const char *fused; /* node whose value is the fusion output, or NULL */
  char *ov[24];
  int nov;
} task_case_t;

#define MI "--model.init_args."
#define NODROP_DNA                                                                            \
  MI "backbone.init_args.config_overwrites.dropout_rate", "0", MI                            \
      "backbone.init_args.config_overwrites.attn_dropout", "0", MI                           \
      "backbone.init_args.config_overwrites.pos_dropout", "0"
#define NODROP_RNA                                                                            \
  MI "backbone1.init_args.config_overwrites.hidden_dropout_prob", "0", MI                    \
      "backbone1.init_args.config_overwrites.attention_probs_dropout_prob", "0"

/* The same overrides as tools/golden/tasks.py (dropout 0 everywhere; LoRA stays on). */
static const task_case_t k_cases[] = {
    {"attn3",
     "configs/tiny_isoform_expression_dna_rna_prot_attention.yaml",
     "adapter.fusion_module.cross_attention_layer_02.residual",
     {NODROP_DNA, NODROP_RNA, MI "adapter.init_args.adapter.init_args.dropout", "0"},
     12},
    {"concat3",
     "configs/tiny_isoform_expression_dna_rna_prot_concat.yaml",
     "adapter.fusion_module.concat",
     {NODROP_DNA, NODROP_RNA, MI "adapter.init_args.adapter.init_args.dropout", "0",
      MI "backbone1.init_args.lora_dropout", "0", MI "backbone2.init_args.lora_dropout", "0"},
     16},
    {"concat2",
     "configs/tiny_isoform_expression_dna_rna_concat.yaml",
     "adapter.fusion_module.concat",
     {NODROP_DNA, NODROP_RNA, MI "adapter.init_args.adapter.init_args.dropout", "0",
      MI "backbone1.init_args.lora_dropout", "0"},
     14},
    {"sr",
     "configs/tiny_isoform_expression_rna_only.yaml",
     NULL,
     {MI "backbone.init_args.lora_dropout", "0", MI "adapter.init_args.hidden_sizes", "[8]",
      MI "backbone.init_args.config_overwrites.hidden_dropout_prob", "0",
      MI "backbone.init_args.config_overwrites.attention_probs_dropout_prob", "0",
      MI "adapter.init_args.dropout", "0"},
     10},
};

static void run_task_golden(const task_case_t *tc, const char *dts) {
  bool f64 = strcmp(dts, "f64") == 0;
  char *ov[32];
  int nov = 0;
  for (int i = 0; i < tc->nov; i++) ov[nov++] = tc->ov[i];
  if (f64) {
    ov[nov++] = "--trainer.precision";
    ov[nov++] = "64";
  }
  fe_job_t job;
  ir_module_t *m = build(tc->config, nov, ov, &job);
  shards_t s;
  shards_open(&s, tc->name, dts);
  double tol_f = f64 ? 1e-10 : 1e-5, tol_g = f64 ? 1e-10 : 1e-4;
  char label[128];
  snprintf(label, sizeof label, "%s/%s", tc->name, dts);

  /* The slots hold exactly the peer's state (Enformer's unused output heads aside). */
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *sl = &m->slots[i];
    const rt_st_tensor_t *t = sfind(&s, "p/", sl->name);
    if (!t) {
      ck_assert_msg(strstr(sl->name, "._heads.") != NULL, "%s: slot %s is not the peer's",
                    label, sl->name);
      continue;
    }
    ck_assert_int_eq(sl->type.rank, t->rank);
    for (int d = 0; d < t->rank; d++) {
      int64_t v = -1;
      ck_assert(ir_dim_is_const(sl->type.dims[d], &v));
      ck_assert_msg(v == t->shape[d], "%s: %s dim %d %lld vs the peer's %lld", label, sl->name,
                    d, (long long)v, (long long)t->shape[d]);
    }
  }

  /* ... and every tensor of the peer's state is a slot: the key sets are equal. */
  for (int k = 0; k < s.n; k++)
    for (size_t i = 0; i < rt_st_count(s.f[k]); i++) {
      const rt_st_tensor_t *t = rt_st_at(s.f[k], i);
      if (strncmp(t->name, "p/", 2) != 0) continue;
      ck_assert_msg(ir_module_find_slot(m, t->name + 2) >= 0, "%s: the peer's %s is not a slot",
                    label, t->name + 2);
    }

  ir_graph_t *g = ir_module_find_program(m, "forward");
  ck_assert_ptr_nonnull(g);
  const ir_node_t *lo = find_node(g, "loss");
  ck_assert_ptr_nonnull(lo);
  uint32_t loss = lo->inputs[0];
  if (tc->fused) {
    const ir_node_t *fn = find_node(g, tc->fused);
    ck_assert_msg(fn != NULL, "%s: no node %s", label, tc->fused);
    uint32_t v = fn->output0;
    ir_node_desc_t d = {.op = IR_OP_OUTPUT, .name = "fused", .inputs = &v, .ninputs = 1};
    ir_build(g, &d);
  }
  uint32_t *wrt = calloc(m->nslots, sizeof *wrt), *dw = calloc(m->nslots, sizeof *dw);
  uint32_t *slot_of = calloc(m->nslots, sizeof *slot_of), nw = 0;
  for (uint32_t i = 0; i < m->nslots; i++) {
    uint32_t fl = m->slots[i].flags;
    if (!(fl & IR_SLOT_TRAINABLE) || (fl & IR_SLOT_UNUSED)) continue;
    uint32_t v = state_in_of(g, m->slots[i].name);
    ck_assert_msg(v != IR_NONE, "%s: trainable slot %s is never read", label, m->slots[i].name);
    slot_of[nw] = i;
    wrt[nw++] = v;
  }
  ad_status_t st = pass_autodiff(g, loss, wrt, nw, dw);
  ck_assert_msg(!st, "%s: %s", label, ad_status_message(st));
  for (uint32_t k = 0; k < nw; k++) {
    char name[300];
    snprintf(name, sizeof name, "grad:%s", m->slots[slot_of[k]].name);
    ck_assert_msg(dw[k] != IR_NONE, "%s: no gradient reaches %s", label, name);
    ir_node_desc_t d = {.op = IR_OP_OUTPUT, .name = name, .inputs = &dw[k], .ninputs = 1};
    ir_build(g, &d);
  }
  st = ir_graph_take_error(g);
  ck_assert_msg(!st, "%s: %s", label, ad_status_message(st));

  rt_interp_t *it;
  void **bufs;
  int nb;
  feed(m, g, &s, &it, &bufs, &nb);
  bind_state(m, it, &s, bufs, &nb);
  st = rt_interp_run(it, NULL);
  ck_assert_msg(!st, "%s: %s", label, ad_status_message(st));
  check_out(it, "pred", sfind(&s, "", "pred"), tol_f, label);
  check_out(it, "loss", sfind(&s, "", "loss"), tol_f, label);
  if (tc->fused) check_out(it, "fused", sfind(&s, "", "fused"), tol_f, label);
  double gscale = grad_scale(&s);
  for (uint32_t k = 0; k < nw; k++) {
    char name[300];
    snprintf(name, sizeof name, "grad:%s", m->slots[slot_of[k]].name);
    check_grad(it, name, sfind(&s, "g/", m->slots[slot_of[k]].name), tol_g, gscale, label);
  }
  rt_interp_free(it);
  for (int i = 0; i < nb; i++) free(bufs[i]);
  free(bufs);

  /* Eval: the lowered "eval" program (dropout off, BatchNorm on running statistics). */
  pass_train_options_t opts = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
  st = pass_lower_training(m, &opts);
  ck_assert_msg(!st, "%s: %s", label, ad_status_message(st));
  ir_graph_t *ev = ir_module_find_program(m, "eval");
  ck_assert_ptr_nonnull(ev);
  feed(m, ev, &s, &it, &bufs, &nb);
  bind_state(m, it, &s, bufs, &nb);
  st = rt_interp_run(it, NULL);
  ck_assert_msg(!st, "%s eval: %s", label, ad_status_message(st));
  check_out(it, "pred", sfind(&s, "", "eval_pred"), tol_f, label);
  rt_interp_free(it);
  for (int i = 0; i < nb; i++) free(bufs[i]);
  free(bufs);
  free(wrt);
  free(dw);
  free(slot_of);
  shards_close(&s);
  ir_module_free(m);
}

START_TEST(test_golden_f64) { run_task_golden(&k_cases[_i], "f64"); }
END_TEST
START_TEST(test_golden_f32) { run_task_golden(&k_cases[_i], "f32"); }
END_TEST

/* ---- the full-size manifests ---------------------------------------------------------------- */
typedef struct key_row {
  char *key;
  int64_t shape[8];
  int rank;
  int trainable, saved;
} key_row_t;

typedef struct key_table {
  key_row_t *rows;
  int n;
  int64_t total, trainable, saved;
} key_table_t;

static void read_keys(const char *rel, key_table_t *kt) {
  char *p = golden_path(rel);
  FILE *f = fopen(p, "r");
  ck_assert_msg(f != NULL, "cannot open %s", p);
  free(p);
  memset(kt, 0, sizeof *kt);
  kt->rows = calloc(4096, sizeof *kt->rows);
  char line[1024];
  bool header = false;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') {
      long long a, b, c, d;
      if (sscanf(line, "# keys %lld total %lld trainable %lld saved %lld", &a, &b, &c, &d) == 4) {
        kt->total = b;
        kt->trainable = c;
        kt->saved = d;
        header = true;
      }
      continue;
    }
    ck_assert_int_lt(kt->n, 4096);
    key_row_t *r = &kt->rows[kt->n++];
    char *tab = strchr(line, '\t');
    ck_assert_ptr_nonnull(tab);
    *tab = 0;
    r->key = strdup(line);
    char *rest = tab + 1, *t2 = strchr(rest, '\t');
    ck_assert_ptr_nonnull(t2);
    *t2 = 0;
    for (char *q = rest; *q;) {
      r->shape[r->rank++] = strtoll(q, &q, 10);
      if (*q == ',') q++;
    }
    ck_assert_int_eq(sscanf(t2 + 1, "%d\t%d", &r->trainable, &r->saved), 2);
  }
  fclose(f);
  ck_assert_msg(header, "%s has no totals line", rel);
}

static int64_t slot_numel(const ir_state_slot_t *s) {
  int64_t n = 1;
  for (int d = 0; d < s->type.rank; d++) {
    int64_t v = 0;
    ck_assert(ir_dim_is_const(s->type.dims[d], &v));
    n *= v;
  }
  return n;
}

/* The four seed configs, then the two SequenceRegression baselines. */
static const char *const k_seed[6] = {
    "isoform_expression_dna_rna_attention",      "isoform_expression_dna_rna_concat",
    "isoform_expression_dna_rna_prot_attention", "isoform_expression_dna_rna_prot_concat",
    "isoform_expression_dna_only",               "isoform_expression_rna_only"};

/* isoform-task.md 4.2 (forward FLOPs per sample at maximum lengths, method 4.1) */
#define FLOPS_ENFORMER 3.26e12
#define FLOPS_ESM2_150M 3.83e11
#define FLOPS_RNA_650M 1.50e12
#define FLOPS_RNA_1B6 3.57e12

/* The fusion and head by the same method (2 x MACs of the dense matmuls), B = 1. */
static double fusion_head_flops(int cfg) {
  if (cfg == 4) return 2.0 * 3072 * 30; /* MLPPoolAdapter([]) over Enformer */
  if (cfg == 5) return 2.0 * 2048 * 30; /* over AIDO.RNA-1.6B */
  const double lq = 896, hq = 3072, lr = 1024, lp = 1024;
  bool attn = cfg == 0 || cfg == 2, prot = cfg >= 2;
  double h1 = cfg == 0 || cfg == 2 ? 1280 : 2048, f = 0;
  if (attn) {
    double ctx[2][2] = {{lr, h1}, {lp, 640}};
    for (int i = 0; i < (prot ? 2 : 1); i++) {
      double lc = ctx[i][0], hc = ctx[i][1];
      f += 2 * lq * hq * hq * 2;      /* query, dense */
      f += 2 * lc * hc * hq * 2;      /* key, value */
      f += 2 * lq * lc * hq * 2;      /* scores and P V over all heads */
    }
    f += 2 * (hq * 128 + 128 * 30); /* MLPPoolAdapter */
  } else {
    f += 2 * 1024 * (3072 + h1 + (prot ? 640 : 0));
    f += 2 * ((prot ? 3072 : 2048) * 1024 + 1024 * 30);
  }
  return f;
}

START_TEST(test_full_size_manifest) {
  const char *name = k_seed[_i];
  char rel[256];
  snprintf(rel, sizeof rel, "configs/%s.yaml", name);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  fe_job_t job;
  ir_module_t *m = build(rel, 0, NULL, &job);
  /* The compile: the build above plus the training lowering (forward + backward + AdamW,
   * and the eval program the FLOPs are counted on). */
  pass_train_options_t opts = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
  ad_status_t st = pass_lower_training(m, &opts);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  ck_assert_msg(secs < 10.0, "%s: building and lowering took %.2f s", name, secs);

  key_table_t kt;
  snprintf(rel, sizeof rel, "tests/golden/keys/task_%s.txt", name);
  read_keys(rel, &kt);
  int64_t total = 0, trainable = 0, saved = 0;
  uint32_t nstate = 0;
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *s = &m->slots[i];
    if (!(s->flags & (IR_SLOT_PARAM | IR_SLOT_BUFFER))) continue;
    nstate++;
    int64_t n = slot_numel(s);
    total += n;
    if (s->flags & IR_SLOT_TRAINABLE) trainable += n;
    if (!(s->flags & IR_SLOT_NOSAVE)) saved += n;
  }
  int missing = 0;
  for (int r = 0; r < kt.n; r++) {
    int64_t s = ir_module_find_slot(m, kt.rows[r].key);
    if (s < 0) {
      if (missing++ < 5) fprintf(stderr, "%s: no slot for the peer's %s\n", name, kt.rows[r].key);
      continue;
    }
    const ir_state_slot_t *sl = &m->slots[s];
    ck_assert_msg(sl->type.rank == kt.rows[r].rank, "%s: %s rank", name, kt.rows[r].key);
    for (int d = 0; d < sl->type.rank; d++) {
      int64_t v = -1;
      ck_assert(ir_dim_is_const(sl->type.dims[d], &v));
      ck_assert_msg(v == kt.rows[r].shape[d], "%s: %s dim %d", name, kt.rows[r].key, d);
    }
    ck_assert_msg(((sl->flags & IR_SLOT_TRAINABLE) != 0) == kt.rows[r].trainable,
                  "%s: %s trainable %d in the peer", name, kt.rows[r].key, kt.rows[r].trainable);
    ck_assert_msg(((sl->flags & IR_SLOT_NOSAVE) == 0) == kt.rows[r].saved,
                  "%s: %s saved %d in the peer", name, kt.rows[r].key, kt.rows[r].saved);
  }
  ck_assert_msg(missing == 0, "%s: %d of the peer's keys have no slot", name, missing);
  ck_assert_msg(nstate == (uint32_t)kt.n, "%s: %u model slots, the peer has %d keys", name,
                nstate, kt.n);
  ck_assert_msg(total == kt.total, "%s: total %lld, peer %lld", name, (long long)total,
                (long long)kt.total);
  ck_assert_msg(trainable == kt.trainable, "%s: trainable %lld, peer %lld", name,
                (long long)trainable, (long long)kt.trainable);
  ck_assert_msg(saved == kt.saved, "%s: saved %lld, peer %lld", name, (long long)saved,
                (long long)kt.saved);
  for (int r = 0; r < kt.n; r++) free(kt.rows[r].key);
  free(kt.rows);

  /* Forward FLOPs per sample: the eval program at B = 1, lengths at their bounds. */
  const ir_graph_t *ev = ir_module_find_program(m, "eval");
  ck_assert_ptr_nonnull(ev);
  int64_t sym[IR_MAX_SYMBOLS];
  ir_module_bounds(m, sym);
  sym[ir_module_find_symbol(m, "B")] = 1;
  double flops = 0;
  for (uint32_t i = 0; i < ev->nnodes; i++)
    flops += (double)ir_node_cost(ev, &ev->nodes[i], sym).flops;
  double want = _i == 4   ? FLOPS_ENFORMER
                : _i == 5 ? FLOPS_RNA_1B6
                          : FLOPS_ENFORMER + (_i == 0 || _i == 2 ? FLOPS_RNA_650M : FLOPS_RNA_1B6) +
                                (_i >= 2 && _i < 4 ? FLOPS_ESM2_150M : 0);
  want += fusion_head_flops(_i);
  fprintf(stderr, "%s: built in %.2f s, eval FLOPs %.4g, reference %.4g (%+.2f%%)\n", name, secs,
          flops, want, 100 * (flops - want) / want);
  ck_assert_msg(fabs(flops - want) <= 0.01 * want, "%s: FLOPs %.4g vs %.4g", name, flops, want);
  ir_module_free(m);
}
END_TEST

/* ---- configuration errors ------------------------------------------------------------------- */
static void expect_error(const char *rel, int nov, char *const *ov, const char *needle) {
  fe_config_t *c = load(rel, nov, ov);
  ir_module_t *m = NULL;
  ad_status_t st = fe_build_module(c, &m, NULL);
  ck_assert_msg(st != NULL, "%s: expected an error containing '%s'", rel, needle);
  const char *msg = ad_status_message(st);
  ck_assert_msg(strstr(msg, needle) != NULL, "'%s' lacks '%s'", msg, needle);
  ck_assert_msg(strstr(msg, "<command line>:") == msg || strstr(msg, ".yaml:") != NULL,
                "'%s' has no place", msg);
  ck_assert_int_eq(ad_status_exit_code(st), 2);
  ad_status_free(st);
  ck_assert_ptr_null(m);
  fe_config_free(c);
}

START_TEST(test_errors) {
  const char *two = "configs/tiny_isoform_expression_dna_rna_attention.yaml";
  const char *three = "configs/tiny_isoform_expression_dna_rna_prot_attention.yaml";
  /* A 3-entry order without backbone2, at the backbone_order node. */
  char *a[] = {MI "backbone_order", "[dna_seq, rna_seq, protein_seq]"};
  expect_error(two, 2, a, "backbone_order names 3 modalities but 2 backbones are given");
  /* backbone2 with a 2-entry order. */
  char *b[] = {MI "backbone_order", "[dna_seq, rna_seq]"};
  expect_error(three, 2, b, "backbone_order names 2 modalities but 3 backbones are given");
  char *c[] = {MI "backbone_order", "[dna_seq, dna_seq, protein_seq]"};
  expect_error(three, 2, c, "'dna_seq' is listed twice");
  /* A loss other than MSE. */
  char *d[] = {MI "loss_func", "torch.nn.L1Loss"};
  expect_error(two, 2, d, "only torch.nn.MSELoss is supported");
  /* The cross-attention heads must divide the query width (96 in the tiny configs). */
  char *e[] = {MI "adapter.init_args.fusion.init_args.num_attention_heads", "5"};
  expect_error(two, 2, e, "not divisible by 5 heads");
  /* A plain head where a fusion adapter is needed. */
  char *f[] = {MI "adapter", "modelgenerator.adapters.LinearCLSAdapter"};
  expect_error(two, 2, f, "is not a fusion adapter");
}
END_TEST

START_TEST(test_missing_backbone1) {
  /* The tiny config with its backbone1 block deleted: the required-key error, placed. */
  char *src = golden_path("configs/tiny_isoform_expression_dna_rna_attention.yaml");
  FILE *in = fopen(src, "r");
  ck_assert_ptr_nonnull(in);
  free(src);
  char path[] = "/tmp/aidomm_test_tasks_XXXXXX.yaml";
  int fd = mkstemps(path, 5);
  ck_assert_int_ge(fd, 0);
  FILE *out = fdopen(fd, "w");
  char line[1024];
  bool skip = false;
  while (fgets(line, sizeof line, in)) {
    if (strncmp(line, "    backbone1:", 14) == 0) skip = true;
    else if (skip && strncmp(line, "    ", 4) == 0 && line[4] != ' ') skip = false;
    if (!skip) fputs(line, out);
  }
  fclose(in);
  fclose(out);
  fe_config_t *c = NULL;
  ad_status_t st = fe_config_load(path, 0, NULL, &c);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  c->warn_stream = NULL;
  ir_module_t *m = NULL;
  st = fe_build_module(c, &m, NULL);
  ck_assert_ptr_nonnull(st);
  const char *msg = ad_status_message(st);
  ck_assert_msg(strstr(msg, "missing required key 'backbone1'") != NULL, "%s", msg);
  ck_assert_msg(strncmp(msg, path, strlen(path)) == 0 && msg[strlen(path)] == ':', "%s", msg);
  ck_assert_int_eq(ad_status_exit_code(st), 2);
  ad_status_free(st);
  fe_config_free(c);
  unlink(path);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("tasks");
  TCase *tg = tcase_create("golden");
  tcase_set_timeout(tg, 120);
  int nc = (int)(sizeof k_cases / sizeof k_cases[0]);
  tcase_add_loop_test(tg, test_golden_f64, 0, nc);
  tcase_add_loop_test(tg, test_golden_f32, 0, nc);
  suite_add_tcase(s, tg);
  TCase *tm = tcase_create("manifest");
  tcase_set_timeout(tm, 120);
  tcase_add_loop_test(tm, test_full_size_manifest, 0, 6);
  suite_add_tcase(s, tm);
  TCase *te = tcase_create("errors");
  tcase_add_test(te, test_errors);
  tcase_add_test(te, test_missing_backbone1);
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
