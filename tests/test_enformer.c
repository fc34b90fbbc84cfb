/* The Enformer backbone (frontend/enformer.c) against the peer: key tables and parameter counts
 * (tests/golden/keys/enformer_*.txt), forward FLOPs at full size against the analytic count of
 * ../shared/reference/isoform-task.md §4, and module goldens (tools/golden/enformer.py) in f64
 * and f32: eval-mode forward with per-layer slices and input gradient, train-mode forward with
 * BatchNorm batch statistics, every parameter gradient and the running stats after the step,
 * and an odd input length that takes AttentionPool's padding branch. */
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

#define PREFIX "backbone.encoder."
#define TINY_OW                                                                                 \
  "{dim: 48, depth: 2, heads: 2, attn_dim_key: 8, num_downsamples: 3, dim_divisible_by: 8, " \
  "target_length: 16"
#define NODROP ", dropout_rate: 0, attn_dropout: 0, pos_dropout: 0"

/* ---- building the backbone from a YAML init_args map -------------------------------------- */
typedef struct enf_build {
  fe_config_t *cfg;
  ir_module_t *m;
  ir_graph_t *g;
  fe_seq_t seq;
  fe_arg_value_t args[FE_MAX_ARGS];
  int sb;
} enf_build_t;

static fe_config_t *load_yaml(const char *text) {
  char path[] = "/tmp/test_enformer_XXXXXX";
  int fd = mkstemp(path);
  ck_assert(fd >= 0);
  FILE *f = fdopen(fd, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
  fe_config_t *c = NULL;
  ad_status_t st = fe_config_load(path, 0, NULL, &c);
  unlink(path);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  c->warn_stream = NULL;
  return c;
}

/* Types init_args against the class's argument specs (what classes.c does for a config). */
static void type_args(const fe_class_t *cls, const fe_node_t *init, fe_arg_value_t *out) {
  for (uint32_t i = 0; i < cls->nargs; i++) {
    const fe_arg_spec_t *s = &cls->args[i];
    fe_arg_value_t *v = &out[i];
    memset(v, 0, sizeof *v);
    int64_t at = init ? fe_map_find(init, s->name) : -1;
    const fe_node_t *n = at >= 0 ? init->items[at] : NULL;
    v->node = n;
    if (s->type == FE_ARG_MAP) {
      v->is_null = !n || fe_scalar_is_null(n);
      v->list = v->is_null ? NULL : n;
      continue;
    }
    if (n && fe_scalar_is_null(n)) {
      v->is_null = true;
      continue;
    }
    const char *text = n ? n->scalar : s->dflt;
    if (s->type == FE_ARG_INT) v->i = strtoll(text, NULL, 10);
    if (s->type == FE_ARG_BOOL) v->b = strcmp(text, "true") == 0;
  }
}

/* Builds "modelgenerator.backbones.enformer" with init_args `yaml` (a flow map) into a fresh
 * module; returns the builder's status (check + build). */
static ad_status_t enf_build(enf_build_t *b, ir_dtype_t dt, const char *yaml) {
  memset(b, 0, sizeof *b);
  char *doc = malloc(strlen(yaml) + 32);
  sprintf(doc, "init_args: %s\n", yaml);
  b->cfg = load_yaml(doc);
  free(doc);
  const fe_class_t *cls = fe_find_class("modelgenerator.backbones.enformer");
  ck_assert_ptr_nonnull(cls);
  ck_assert_int_eq(cls->kind, FE_CLASS_BACKBONE);
  const fe_node_t *init = fe_config_get(b->cfg, "init_args");
  type_args(cls, init, b->args);
  b->m = ir_module_create();
  ck_assert(!ir_module_add_symbol(b->m, "B", 4, &b->sb));
  b->g = ir_module_add_program(b->m, "forward");
  ad_status_t st = cls->check(cls, "model.init_args.backbone", b->args, init);
  if (st) return st;
  fe_build_ctx_t bc = {.config = b->cfg,
                       .module = b->m,
                       .forward = b->g,
                       .dtype = dt,
                       .sym_batch = b->sb,
                       .sym_len = -1,
                       .section = init};
  fe_component_ctx_t cc = {.b = &bc, .prefix = "backbone", .cls = cls, .args = b->args};
  int64_t size = 0;
  st = cls->backbone->embedding_size(cls, b->args, &size);
  if (st) return st;
  st = cls->backbone->build(&cc, "dna_seq", &b->seq);
  if (!st) ck_assert_int_eq(b->seq.size, size);
  return st;
}

static void enf_build_ok(enf_build_t *b, ir_dtype_t dt, const char *yaml) {
  ad_status_t st = enf_build(b, dt, yaml);
  ck_assert_msg(!st, "%s", ad_status_message(st));
}

static void enf_free(enf_build_t *b) {
  ir_module_free(b->m);
  fe_config_free(b->cfg);
}

static const ir_node_t *find_node(const ir_graph_t *g, const char *name) {
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
  return NULL;
}

static int64_t slot_numel(const ir_state_slot_t *s) {
  int64_t n = 1;
  for (int i = 0; i < s->type.rank; i++) n *= s->type.dims[i].cst;
  return n;
}

/* ---- key tables ---------------------------------------------------------------------------- */
typedef struct key_table {
  uint32_t nkeys, naliases;
  char (*name)[160];
  char (*dtype)[160];
  char (*shape)[160];
  char (*kind)[160];
  char (*alias)[160];
  char (*alias_of)[160];
  int64_t params, trunk_params, state_dict;
} key_table_t;

static void read_keys(const char *rel, key_table_t *t) {
  memset(t, 0, sizeof *t);
  char *path = golden_path(rel);
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  free(path);
  uint32_t cap = 1024;
  t->name = calloc(cap, sizeof *t->name);
  t->dtype = calloc(cap, sizeof *t->dtype);
  t->shape = calloc(cap, sizeof *t->shape);
  t->kind = calloc(cap, sizeof *t->kind);
  t->alias = calloc(cap, sizeof *t->alias);
  t->alias_of = calloc(cap, sizeof *t->alias_of);
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#' || line[0] == '\n') continue;
    char w[4][160];
    long long v;
    if (sscanf(line, "key %159s %159s %159s %159s", w[0], w[1], w[2], w[3]) == 4) {
      ck_assert_uint_lt(t->nkeys, cap);
      snprintf(t->name[t->nkeys], 160, "%s", w[0]);
      snprintf(t->dtype[t->nkeys], 160, "%s", w[1]);
      snprintf(t->shape[t->nkeys], 160, "%s", w[2]);
      snprintf(t->kind[t->nkeys], 160, "%s", w[3]);
      t->nkeys++;
    } else if (sscanf(line, "alias %159s %159s", w[0], w[1]) == 2) {
      ck_assert_uint_lt(t->naliases, cap);
      snprintf(t->alias[t->naliases], 160, "%s", w[0]);
      snprintf(t->alias_of[t->naliases], 160, "%s", w[1]);
      t->naliases++;
    } else if (sscanf(line, "count params %lld", &v) == 1) {
      t->params = v;
    } else if (sscanf(line, "count trunk_params %lld", &v) == 1) {
      t->trunk_params = v;
    } else if (sscanf(line, "count state_dict %lld", &v) == 1) {
      t->state_dict = v;
    } else {
      ck_abort_msg("%s: unparsed line %s", rel, line);
    }
  }
  fclose(f);
}

static void free_keys(key_table_t *t) {
  free(t->name);
  free(t->dtype);
  free(t->shape);
  free(t->kind);
  free(t->alias);
  free(t->alias_of);
}

/* The backbone's slots (those under "backbone.encoder.", in declaration order) equal the peer's
 * state_dict: same names in the same order, shapes, dtypes and kinds; the _trunk aliases name
 * slots that exist; the counts add up. */
static void check_keys(const ir_module_t *m, const key_table_t *t) {
  const ir_state_slot_t **mine = calloc(m->nslots + 1, sizeof *mine);
  uint32_t n = 0;
  for (uint32_t i = 0; i < m->nslots; i++)
    if (strncmp(m->slots[i].name, PREFIX, strlen(PREFIX)) == 0 &&
        !(m->slots[i].flags & IR_SLOT_OPTIM))
      mine[n++] = &m->slots[i];
  ck_assert_uint_eq(n, t->nkeys);
  int64_t params = 0, trunk = 0;
  for (uint32_t i = 0; i < t->nkeys; i++) {
    const ir_state_slot_t *s = mine[i];
    ck_assert_msg(strcmp(s->name, t->name[i]) == 0, "slot %u is %s, the peer has %s", i, s->name,
                  t->name[i]);
    char shape[64] = "scalar";
    size_t len = 0;
    for (int d = 0; d < s->type.rank; d++)
      len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%lld", d ? "," : "",
                              (long long)s->type.dims[d].cst);
    ck_assert_msg(strcmp(shape, t->shape[i]) == 0, "%s: shape %s, the peer has %s", s->name,
                  shape, t->shape[i]);
    const char *dt = s->type.dtype == IR_DTYPE_I64 ? "i64" : "f32";
    ck_assert_msg(strcmp(dt, t->dtype[i]) == 0, "%s: dtype", s->name);
    uint32_t want = strcmp(t->kind[i], "param") == 0    ? IR_SLOT_PARAM | IR_SLOT_TRAINABLE
                    : strcmp(t->kind[i], "buffer") == 0 ? IR_SLOT_BUFFER
                                                        : IR_SLOT_PARAM | IR_SLOT_TRAINABLE |
                                                              IR_SLOT_UNUSED;
    ck_assert_msg(s->flags == want, "%s: flags %#x, want %#x (%s)", s->name, s->flags, want,
                  t->kind[i]);
    if (s->flags & IR_SLOT_PARAM) {
      params += slot_numel(s);
      if (!(s->flags & IR_SLOT_UNUSED)) trunk += slot_numel(s);
    }
  }
  for (uint32_t i = 0; i < t->naliases; i++) {
    ck_assert(strstr(t->alias[i], PREFIX "_trunk.") == t->alias[i]);
    ck_assert_msg(ir_module_find_slot(m, t->alias_of[i]) >= 0, "alias %s of a missing %s",
                  t->alias[i], t->alias_of[i]);
    ck_assert(ir_module_find_slot(m, t->alias[i]) < 0);
  }
  ck_assert_int_eq(t->nkeys + t->naliases, t->state_dict);
  ck_assert_int_eq(params, t->params);
  ck_assert_int_eq(trunk, t->trunk_params);
  free(mine);
}

START_TEST(test_keys_tiny) {
  enf_build_t b;
  enf_build_ok(&b, IR_DTYPE_F32, "{max_length: 256, config_overwrites: " TINY_OW "}}");
  key_table_t t;
  read_keys("tests/golden/keys/enformer_tiny.txt", &t);
  check_keys(b.m, &t);
  free_keys(&t);
  const ir_type_t *ht = ir_value_type(b.g, b.seq.hidden);
  ck_assert_int_eq(ht->rank, 3);
  ck_assert(ht->dims[0].nterms == 1);
  ck_assert_int_eq(ht->dims[1].cst, 16);
  ck_assert_int_eq(ht->dims[2].cst, 96);
  ck_assert_int_eq(b.seq.size, 96);
  const ir_type_t *mt = ir_value_type(b.g, b.seq.mask);
  ck_assert_int_eq(mt->rank, 2);
  ck_assert_int_eq(mt->dims[1].cst, 16);
  ck_assert_ptr_nonnull(find_node(b.g, "dna_seq_one_hot"));
  enf_free(&b);
}
END_TEST

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Forward FLOPs per sample by the method of isoform-task.md §4.1 (matmuls and convolutions
 * only, 2 per MAC; the pool logits at the pre-pool length; attention with q/k/v/out, rel_k
 * over 2n-1 offsets once, content and relative logits, attn V). */
static double analytic_flops(void) {
  const double L = 196608, dim = 1536, h = 8, dk = 64, dv = dim / h, F = dim / h, T = 896;
  const double filters[7] = {768, 768, 896, 1024, 1152, 1280, 1536};
  double stem = 2 * 4 * filters[0] * 15 * L + 2 * 2 * filters[0] * filters[0] * L;
  double tower = 0, len = L / 2;
  for (int i = 1; i < 7; i++) {
    double cin = filters[i - 1], cout = filters[i];
    tower += 2 * cin * cout * 5 * len + 2 * 2 * cout * cout * len;
    len /= 2;
  }
  double n = len; /* 1536 */
  double layer = 2 * n * dim * (2 * h * dk + 2 * h * dv) /* q, k, v, out */
                 + 2 * (2 * n - 1) * F * h * dk           /* rel_k */
                 + 2 * h * n * n * dk + 2 * h * n * (2 * n - 1) * dk /* content, relative */
                 + 2 * h * n * n * dv                     /* attn V */
                 + 2 * 2 * n * dim * 2 * dim;             /* FFN */
  double pointwise = 2 * dim * 2 * dim * T;
  return stem + tower + 11 * layer + pointwise;
}

START_TEST(test_full_size) {
  double t0 = now_s();
  enf_build_t b;
  enf_build_ok(&b, IR_DTYPE_F32, "{}");
  double built = now_s() - t0;
  printf("enformer full size: graph built in %.3f s, %u nodes\n", built, b.g->nnodes);
  ck_assert_msg(built < 5.0, "building the full-size graph took %.2f s", built);
  key_table_t t;
  read_keys("tests/golden/keys/enformer_full.txt", &t);
  check_keys(b.m, &t);
  ck_assert_int_eq(t.params, 251221292); /* + both heads: isoform-task.md 251.22M */
  ck_assert_int_eq(t.trunk_params, 229845504);
  free_keys(&t);
  const ir_type_t *ht = ir_value_type(b.g, b.seq.hidden);
  ck_assert_int_eq(ht->dims[1].cst, 896);
  ck_assert_int_eq(ht->dims[2].cst, 3072);

  /* FLOPs per sample (B = 1), the whole graph and its contractions alone. */
  int64_t sym[IR_MAX_SYMBOLS] = {1};
  double all = 0, contractions = 0;
  for (uint32_t i = 0; i < b.g->nnodes; i++) {
    const ir_node_t *n = &b.g->nodes[i];
    double f = (double)ir_node_cost(b.g, n, sym).flops;
    all += f;
    if (n->op == IR_OP_MATMUL || n->op == IR_OP_LINEAR || n->op == IR_OP_CONV1D)
      contractions += f;
  }
  double want = analytic_flops();
  printf("enformer full size: forward FLOPs/sample %.6e (contractions %.6e), analytic %.6e\n",
         all, contractions, want);
  ck_assert_msg(fabs(want - 3.26e12) / 3.26e12 < 0.005, "analytic %g vs the table's 3.26e12",
                want);
  /* The contractions are the analytic count plus LINEAR's bias adds (1e-4 of the whole). */
  ck_assert_msg(fabs(contractions - want) / want < 1e-4, "contractions %g vs %g", contractions,
                want);
  ck_assert_msg(fabs(all - want) / want < 0.01, "FLOPs %g vs analytic %g", all, want);
  enf_free(&b);
}
END_TEST

/* ---- goldens ------------------------------------------------------------------------------- */
typedef struct golden_files {
  rt_st_file_t *w, *f, *g;
} golden_files_t;

static rt_st_file_t *open_st(const char *rel) {
  char *path = golden_path(rel);
  rt_st_file_t *f = NULL;
  ad_status_t st = rt_st_open(path, &f);
  free(path);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  return f;
}

static const rt_st_tensor_t *st_get(const rt_st_file_t *f, const char *prefix, const char *name) {
  char key[256];
  snprintf(key, sizeof key, "%s%s", prefix, name);
  const rt_st_tensor_t *t = rt_st_find(f, key);
  ck_assert_msg(t != NULL, "fixture lacks %s", key);
  return t;
}

/* Appends INPUT "cot", loss = sum(hidden * cot), OUTPUTs "pred" and "loss". */
static void add_loss(enf_build_t *b) {
  ir_type_t ct = *ir_value_type(b->g, b->seq.hidden);
  ir_node_desc_t d = {.op = IR_OP_INPUT, .name = "cot", .out_types = &ct, .nout_types = 1};
  uint32_t cot = ir_build(b->g, &d);
  uint32_t ins[2] = {b->seq.hidden, cot};
  d = (ir_node_desc_t){.op = IR_OP_MUL, .name = "loss.prod", .inputs = ins, .ninputs = 2};
  uint32_t prod = ir_build(b->g, &d);
  const int64_t axes[3] = {0, 1, 2};
  ir_attr_t a[2] = {IR_ATTR_INTS("axes", axes, 3), IR_ATTR_I("keepdim", 0)};
  d = (ir_node_desc_t){
      .op = IR_OP_REDUCE_SUM, .name = "loss.sum", .inputs = &prod, .ninputs = 1, .attrs = a,
      .nattrs = 2};
  uint32_t loss = ir_build(b->g, &d);
  d = (ir_node_desc_t){.op = IR_OP_OUTPUT, .name = "pred", .inputs = &b->seq.hidden, .ninputs = 1};
  ir_build(b->g, &d);
  d = (ir_node_desc_t){.op = IR_OP_OUTPUT, .name = "loss", .inputs = &loss, .ninputs = 1};
  ir_build(b->g, &d);
  ad_status_t st = ir_graph_take_error(b->g);
  ck_assert_msg(!st, "%s", ad_status_message(st));
}

/* Appends "grad:<slot>" outputs for every trainable slot read by g (when params) and "grad:x"
 * for the one-hot input. */
static void add_grads(ir_graph_t *g, const ir_module_t *m, bool params) {
  uint32_t cap = m->nslots + 1, n = 0;
  uint32_t *wrt = calloc(cap, sizeof *wrt), *dw = calloc(cap, sizeof *dw);
  const char **names = calloc(cap, sizeof *names);
  for (uint32_t i = 0; params && i < m->nslots; i++) {
    if (!(m->slots[i].flags & IR_SLOT_TRAINABLE) || (m->slots[i].flags & IR_SLOT_UNUSED))
      continue;
    const ir_node_t *nd = find_node(g, m->slots[i].name);
    ck_assert_msg(nd != NULL, "no read of %s", m->slots[i].name);
    wrt[n] = nd->output0;
    names[n++] = m->slots[i].name;
  }
  wrt[n] = find_node(g, "dna_seq_one_hot")->output0;
  names[n++] = "x";
  const ir_node_t *lo = find_node(g, "loss");
  ck_assert_ptr_nonnull(lo);
  ad_status_t st = pass_autodiff(g, lo->inputs[0], wrt, n, dw);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  for (uint32_t i = 0; i < n; i++) {
    ck_assert_msg(dw[i] != IR_NONE, "no gradient for %s", names[i]);
    char name[256];
    snprintf(name, sizeof name, "grad:%s", names[i]);
    ir_node_desc_t d = {.op = IR_OP_OUTPUT, .name = name, .inputs = &dw[i], .ninputs = 1};
    ir_build(g, &d);
  }
  st = ir_graph_take_error(g);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  free(wrt);
  free(dw);
  free(names);
}

/* State buffers for every slot the fixture has, converted to the model dtype. */
typedef struct state_bufs {
  uint32_t n;
  void **data;
  size_t *bytes;
} state_bufs_t;

static void load_state(const ir_module_t *m, const rt_st_file_t *w, state_bufs_t *s) {
  s->n = m->nslots;
  s->data = calloc(m->nslots, sizeof *s->data);
  s->bytes = calloc(m->nslots, sizeof *s->bytes);
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *sl = &m->slots[i];
    if (sl->flags & IR_SLOT_OPTIM) { /* AdamW moments and counters start at zero */
      s->bytes[i] = (size_t)slot_numel(sl) * ir_dtype_size(sl->type.dtype);
      s->data[i] = calloc(1, s->bytes[i] ? s->bytes[i] : 1);
      continue;
    }
    if (sl->flags & IR_SLOT_UNUSED) continue;
    ck_assert(strncmp(sl->name, PREFIX, strlen(PREFIX)) == 0);
    const rt_st_tensor_t *t = st_get(w, "w/", sl->name + strlen(PREFIX));
    int64_t n = rt_st_numel(t);
    ck_assert_int_eq(n, slot_numel(sl));
    if (sl->type.dtype == IR_DTYPE_I64) {
      ck_assert_int_eq(t->dtype, RT_ST_I64);
      s->bytes[i] = (size_t)n * 8;
      s->data[i] = malloc(s->bytes[i]);
      memcpy(s->data[i], t->data, s->bytes[i]);
      continue;
    }
    ck_assert_int_eq(t->dtype, RT_ST_F64);
    const double *src = t->data;
    if (sl->type.dtype == IR_DTYPE_F64) {
      s->bytes[i] = (size_t)n * 8;
      s->data[i] = malloc(s->bytes[i]);
      memcpy(s->data[i], src, s->bytes[i]);
    } else {
      s->bytes[i] = (size_t)n * 4;
      float *dst = malloc(s->bytes[i]);
      for (int64_t k = 0; k < n; k++) dst[k] = (float)src[k]; /* torch .float(): RNE */
      s->data[i] = dst;
    }
  }
}

static void free_state(state_bufs_t *s) {
  for (uint32_t i = 0; i < s->n; i++) free(s->data[i]);
  free(s->data);
  free(s->bytes);
}

static rt_interp_t *run_program(const ir_graph_t *g, const ir_module_t *m, state_bufs_t *s,
                                const rt_st_file_t *f, const char *xname) {
  int64_t sym[IR_MAX_SYMBOLS] = {2};
  rt_interp_t *it = NULL;
  ad_status_t st = rt_interp_create(g, sym, &it);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  const rt_st_tensor_t *x = st_get(f, "", xname), *cot = st_get(f, "", "cot");
  st = rt_interp_set_input(it, "dna_seq_one_hot", x->data, x->nbytes);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  st = rt_interp_set_input(it, "cot", cot->data, cot->nbytes);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  for (uint32_t i = 0; i < m->nslots; i++) {
    if (!s->data[i]) continue;
    st = rt_interp_bind_state(it, m->slots[i].name, s->data[i], s->bytes[i]);
    ck_assert_msg(!st, "%s", ad_status_message(st));
  }
  st = rt_interp_run(it, NULL);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  return it;
}

static double check_tensor(const char *what, const ir_tensor_t *got, const rt_st_tensor_t *want,
                           double tol) {
  ck_assert_msg(got != NULL, "no value for %s", what);
  ir_tensor_t w;
  ck_assert(rt_st_as_ir_tensor(want, &w));
  double e = golden_compare(what, got, &w, tol);
  ck_assert_msg(e <= tol, "%s: relative error %g > %g", what, e, tol);
  return e;
}

static double check_output(const rt_interp_t *it, const char *out, const rt_st_file_t *f,
                           const char *key, double tol) {
  return check_tensor(key, rt_interp_output(it, out), st_get(f, "", key), tol);
}

static double check_node(const rt_interp_t *it, const ir_graph_t *g, const char *node,
                         const rt_st_file_t *f, const char *key, double tol) {
  const ir_node_t *n = find_node(g, node);
  ck_assert_msg(n != NULL, "no node %s", node);
  return check_tensor(key, rt_interp_value(it, n->output0), st_get(f, "", key), tol);
}

/* Gradients that vanish identically (a conv bias feeding a training-mode BatchNorm, whose mean
 * subtraction removes it) are pure rounding noise in the peer as here: those are compared
 * against the model's gradient scale `gscale` instead of their own magnitude. */
static double check_grad(const char *what, const ir_tensor_t *got, const rt_st_tensor_t *want,
                         double tol, double gscale) {
  ck_assert_msg(got != NULL, "no value for %s", what);
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
  /* below a tenth of the tolerance at the gradient scale: vanishing */
  if (wmax >= 0.1 * tol * gscale) return check_tensor(what, got, want, tol);
  double e = diff / gscale;
  ck_assert_msg(e <= tol, "%s (vanishing): error %g relative to the gradient scale %g > %g", what,
                e, gscale, tol);
  return e;
}

/* max |g| over every parameter gradient of the fixture */
static double grad_scale(const rt_st_file_t *g) {
  double s = 0;
  for (size_t i = 0; i < rt_st_count(g); i++) {
    const rt_st_tensor_t *t = rt_st_at(g, i);
    for (int64_t k = 0; k < rt_st_numel(t); k++)
      s = fmax(s, fabs(t->dtype == RT_ST_F64 ? ((const double *)t->data)[k]
                                             : ((const float *)t->data)[k]));
  }
  return s;
}

/* Layer slices: after the stem, after the conv tower, after the transformer. */
static const char *const k_slice_node[3] = {PREFIX "stem.2.sum", PREFIX "conv_tower.1.2.sum",
                                            PREFIX "transformer.1.1.residual"};
static const char *const k_slice_key[3] = {"stem", "tower", "transformer"};

static void golden_main(ir_dtype_t dt) {
  bool f64 = dt == IR_DTYPE_F64;
  double tol_fwd = f64 ? 1e-10 : 1e-5, tol_grad = f64 ? 1e-10 : 1e-4;
  golden_files_t gf = {open_st("tests/golden/enformer_weights.safetensors"),
                       open_st(f64 ? "tests/golden/enformer_f64.safetensors"
                                   : "tests/golden/enformer_f32.safetensors"),
                       open_st(f64 ? "tests/golden/enformer_f64_grad.safetensors"
                                   : "tests/golden/enformer_f32_grad.safetensors")};
  enf_build_t b;
  enf_build_ok(&b, dt, "{max_length: 256, config_overwrites: " TINY_OW NODROP "}}");
  add_loss(&b);
  pass_train_options_t o = {
      .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01, .emit_grad_outputs = 1};
  ad_status_t st = pass_lower_training(b.m, &o);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ir_graph_t *fwd = ir_module_find_program(b.m, "forward");
  ir_graph_t *ev = ir_module_find_program(b.m, "eval");
  add_grads(fwd, b.m, true);
  add_grads(ev, b.m, false);

  /* train mode: batch statistics, running stats written back */
  state_bufs_t s;
  load_state(b.m, gf.w, &s);
  rt_interp_t *it = run_program(fwd, b.m, &s, gf.f, "x");
  double worst_fwd = 0, worst_grad = 0, gscale = grad_scale(gf.g);
  for (int i = 0; i < 3; i++) { /* first, so that a failure points at a layer */
    char key[64];
    snprintf(key, sizeof key, "train/%s", k_slice_key[i]);
    worst_fwd = fmax(worst_fwd, check_node(it, fwd, k_slice_node[i], gf.f, key, tol_fwd));
  }
  worst_fwd = fmax(worst_fwd, check_output(it, "pred", gf.f, "train/out", tol_fwd));
  worst_grad = check_output(it, "grad:x", gf.f, "train/dx", tol_grad);
  uint32_t ngrads = 0, nstats = 0;
  for (uint32_t i = 0; i < b.m->nslots; i++) {
    const ir_state_slot_t *sl = &b.m->slots[i];
    const char *local = sl->name + strlen(PREFIX);
    char out[256], key[256];
    if ((sl->flags & IR_SLOT_TRAINABLE) && !(sl->flags & IR_SLOT_UNUSED)) {
      snprintf(out, sizeof out, "grad:%s", sl->name);
      snprintf(key, sizeof key, "grad/%s", local);
      worst_grad = fmax(worst_grad, check_grad(key, rt_interp_output(it, out),
                                               st_get(gf.g, "", key), tol_grad, gscale));
      ngrads++;
    }
    if (sl->flags & IR_SLOT_BUFFER) {
      snprintf(key, sizeof key, "state/%s", local);
      ir_tensor_t got = {.data = s.data[i], .dtype = sl->type.dtype, .rank = sl->type.rank};
      for (int d = 0; d < sl->type.rank; d++) got.dims[d] = sl->type.dims[d].cst;
      worst_fwd = fmax(worst_fwd, check_tensor(key, &got, st_get(gf.f, "", key), tol_fwd));
      nstats++;
    }
  }
  ck_assert_uint_eq(ngrads, 61); /* every trunk parameter of the tiny model */
  ck_assert_uint_eq(nstats, 18); /* 6 BatchNorms x (mean, var, num_batches_tracked) */
  rt_interp_free(it);
  free_state(&s);

  /* the lowered train_step: the same gradients (its "grad:<slot>" outputs) and running stats,
   * alongside the AdamW writes */
  const ir_graph_t *ts = ir_module_find_program(b.m, "train_step");
  load_state(b.m, gf.w, &s);
  it = run_program(ts, b.m, &s, gf.f, "x");
  for (uint32_t i = 0; i < b.m->nslots; i++) {
    const ir_state_slot_t *sl = &b.m->slots[i];
    char out[256], key[256];
    if ((sl->flags & IR_SLOT_TRAINABLE) && !(sl->flags & IR_SLOT_UNUSED)) {
      snprintf(out, sizeof out, "grad:%s", sl->name);
      snprintf(key, sizeof key, "grad/%s", sl->name + strlen(PREFIX));
      check_grad(key, rt_interp_output(it, out), st_get(gf.g, "", key), tol_grad, gscale);
    }
    if (sl->flags & IR_SLOT_BUFFER) {
      snprintf(key, sizeof key, "state/%s", sl->name + strlen(PREFIX));
      ir_tensor_t got = {.data = s.data[i], .dtype = sl->type.dtype, .rank = sl->type.rank};
      for (int d = 0; d < sl->type.rank; d++) got.dims[d] = sl->type.dims[d].cst;
      check_tensor(key, &got, st_get(gf.f, "", key), tol_fwd);
    }
  }
  rt_interp_free(it);
  free_state(&s);

  /* eval mode: running statistics, nothing written */
  load_state(b.m, gf.w, &s);
  it = run_program(ev, b.m, &s, gf.f, "x");
  for (int i = 0; i < 3; i++) {
    char key[64];
    snprintf(key, sizeof key, "eval/%s", k_slice_key[i]);
    worst_fwd = fmax(worst_fwd, check_node(it, ev, k_slice_node[i], gf.f, key, tol_fwd));
  }
  worst_fwd = fmax(worst_fwd, check_output(it, "pred", gf.f, "eval/out", tol_fwd));
  worst_grad = fmax(worst_grad, check_output(it, "grad:x", gf.f, "eval/dx", tol_grad));
  for (uint32_t i = 0; i < b.m->nslots; i++) {
    const ir_state_slot_t *sl = &b.m->slots[i];
    if (!(sl->flags & IR_SLOT_BUFFER)) continue;
    const rt_st_tensor_t *w0 = st_get(gf.w, "w/", sl->name + strlen(PREFIX));
    if (sl->type.dtype == IR_DTYPE_I64)
      ck_assert_int_eq(*(const int64_t *)s.data[i], *(const int64_t *)w0->data);
    else if (f64)
      ck_assert_msg(memcmp(s.data[i], w0->data, s.bytes[i]) == 0, "eval wrote %s", sl->name);
  }
  rt_interp_free(it);
  free_state(&s);
  printf("enformer %s golden: worst forward error %.3g, worst gradient error %.3g\n",
         f64 ? "f64" : "f32", worst_fwd, worst_grad);
  enf_free(&b);

  /* odd length 251: AttentionPool pads the stem (251) and the last tower block (63) */
  enf_build_ok(&b, dt, "{max_length: 251, config_overwrites: " TINY_OW NODROP "}}");
  ck_assert_ptr_nonnull(find_node(b.g, PREFIX "stem.2.padded_pair"));
  ck_assert_ptr_nonnull(find_node(b.g, PREFIX "conv_tower.1.2.padded_pair"));
  ck_assert_ptr_null(find_node(b.g, PREFIX "conv_tower.0.2.padded_pair"));
  add_loss(&b);
  st = pass_lower_training(b.m, &o);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ev = ir_module_find_program(b.m, "eval");
  add_grads(ev, b.m, false);
  load_state(b.m, gf.w, &s);
  it = run_program(ev, b.m, &s, gf.f, "x_odd");
  check_output(it, "pred", gf.f, "eval_odd/out", tol_fwd);
  check_output(it, "grad:x", gf.f, "eval_odd/dx", tol_grad);
  rt_interp_free(it);
  free_state(&s);
  enf_free(&b);
  rt_st_close(gf.w);
  rt_st_close(gf.f);
  rt_st_close(gf.g);
}

START_TEST(test_golden_f64) { golden_main(IR_DTYPE_F64); }
END_TEST

START_TEST(test_golden_f32) { golden_main(IR_DTYPE_F32); }
END_TEST

/* ---- structure: dropout placement, eval lowering, arguments --------------------------------- */
static uint32_t count_op(const ir_graph_t *g, ir_op_t op) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < g->nnodes; i++) n += g->nodes[i].op == op;
  return n;
}

START_TEST(test_dropout_and_eval) {
  enf_build_t b;
  enf_build_ok(&b, IR_DTYPE_F32, "{max_length: 256, config_overwrites: " TINY_OW "}}");
  /* The peer's nn.Dropout modules with the EnformerConfig rates. */
  static const struct {
    const char *name;
    double p;
  } drops[] = {
      {PREFIX "transformer.0.0.fn.1.pos_dropout", 0.01},
      {PREFIX "transformer.0.0.fn.1.attn_dropout", 0.05},
      {PREFIX "transformer.0.0.fn.2", 0.4},
      {PREFIX "transformer.0.1.fn.2", 0.4},
      {PREFIX "transformer.0.1.fn.5", 0.4},
      {PREFIX "transformer.1.1.fn.5", 0.4},
      {PREFIX "final_pointwise.3", 0.05},
  };
  for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++) {
    const ir_node_t *n = find_node(b.g, drops[i].name);
    ck_assert_msg(n && n->op == IR_OP_DROPOUT, "no dropout %s", drops[i].name);
    ck_assert_double_eq_tol(ir_node_attr_float(n, "p", -1), drops[i].p, 1e-15);
    ck_assert_str_eq(ir_node_attr_string(n, "key", ""), drops[i].name);
  }
  ck_assert_uint_eq(count_op(b.g, IR_OP_DROPOUT), 5 * 2 + 1);
  ck_assert_uint_eq(count_op(b.g, IR_OP_BATCHNORM), 6);
  ck_assert_uint_eq(count_op(b.g, IR_OP_STATE_OUT), 18);
  ck_assert_ptr_nonnull(ir_module_find_scalar(b.m, "seed"));
  add_loss(&b);
  pass_train_options_t o = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
  ad_status_t st = pass_lower_training(b.m, &o);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  const ir_graph_t *ev = ir_module_find_program(b.m, "eval");
  const ir_graph_t *ts = ir_module_find_program(b.m, "train_step");
  ck_assert_uint_eq(count_op(ev, IR_OP_DROPOUT), 0);
  ck_assert_uint_eq(count_op(ev, IR_OP_STATE_OUT), 0);
  ck_assert_uint_eq(count_op(ev, IR_OP_BATCHNORM), 6);
  for (uint32_t i = 0; i < ev->nnodes; i++)
    if (ev->nodes[i].op == IR_OP_BATCHNORM)
      ck_assert_int_eq(ir_node_attr_int(&ev->nodes[i], "training", 1), 0);
  /* train_step: batch statistics and 18 running-stat writes besides the optimizer's */
  for (uint32_t i = 0; i < ts->nnodes; i++)
    if (ts->nodes[i].op == IR_OP_BATCHNORM)
      ck_assert_int_eq(ir_node_attr_int(&ts->nodes[i], "training", 0), 1);
  ck_assert_ptr_nonnull(find_node(ts, PREFIX "stem.1.fn.0.num_batches_tracked.update"));
  enf_free(&b);

  /* delete_crop_layer keeps all 32 bins; frozen leaves nothing trainable */
  enf_build_ok(&b, IR_DTYPE_F32,
               "{max_length: 256, delete_crop_layer: true, frozen: true, config_overwrites: " TINY_OW
               "}}");
  ck_assert_int_eq(ir_value_type(b.g, b.seq.hidden)->dims[1].cst, 32);
  ck_assert_int_eq(ir_value_type(b.g, b.seq.mask)->dims[1].cst, 32);
  for (uint32_t i = 0; i < b.m->nslots; i++)
    ck_assert(!(b.m->slots[i].flags & IR_SLOT_TRAINABLE));
  enf_free(&b);

  /* exponential_linspace_int rounds like Python (half to even): the peer's
   * exponential_linspace_int(60, 120, 2, 24) is [48, 120] (60/24 = 2.5 -> 2), not [72, 120] */
  enf_build_ok(&b, IR_DTYPE_F32,
               "{max_length: 256, config_overwrites: {dim: 120, depth: 1, heads: 5, "
               "num_downsamples: 3, dim_divisible_by: 24, target_length: 16}}");
  int64_t w0 = ir_module_find_slot(b.m, PREFIX "conv_tower.0.0.2.weight");
  ck_assert_int_ge(w0, 0);
  ck_assert_int_eq(b.m->slots[w0].type.dims[0].cst, 48);
  ck_assert_int_eq(b.m->slots[w0].type.dims[1].cst, 60);
  enf_free(&b);

  /* target_length -1: no crop; an odd surplus crops one more bin, as x[:, -trim:trim] does */
  enf_build_ok(&b, IR_DTYPE_F32,
               "{max_length: 256, config_overwrites: {dim: 48, depth: 1, heads: 2, attn_dim_key: 8, "
               "num_downsamples: 3, dim_divisible_by: 8, target_length: -1}}");
  ck_assert_int_eq(ir_value_type(b.g, b.seq.hidden)->dims[1].cst, 32);
  enf_free(&b);
  enf_build_ok(&b, IR_DTYPE_F32,
               "{max_length: 256, config_overwrites: {dim: 48, depth: 1, heads: 2, attn_dim_key: 8, "
               "num_downsamples: 3, dim_divisible_by: 8, target_length: 15}}");
  ck_assert_int_eq(ir_value_type(b.g, b.seq.hidden)->dims[1].cst, 14);
  const ir_node_t *crop = find_node(b.g, PREFIX "crop_final");
  ck_assert_ptr_nonnull(crop);
  ck_assert_int_eq(ir_node_attr_int(crop, "start", -1), 9);
  enf_free(&b);
}
END_TEST

/* Each bad argument gives one error at its place, naming the problem. */
START_TEST(test_errors) {
  /* at: the text the error must point at (its first occurrence in yaml) */
  static const struct {
    const char *yaml, *at, *msg;
  } cases[] = {
      {"{max_length: 256, use_peft: true}", "true", "use_peft is not supported for enformer"},
      {"{config_overwrites: {dimm: 48}}", "dimm", "did you mean 'dim'"},
      {"{config_overwrites: {dim: 48, heads: 5}}", "5}", "divisible by 6"},
      {"{config_overwrites: {dim: 48, dim_divisible_by: 32}}", "32",
       "the conv tower ends at 64 channels"},
      {"{config_overwrites: {num_downsamples: 2}}", "2}", "at least 3"},
      {"{config_overwrites: {dropout_rate: 1.5}}", "1.5", "in [0, 1)"},
      {"{config_overwrites: {use_tf_gamma: true}}", "true", "use_tf_gamma is not supported"},
      {"{config_overwrites: {depth: two}}", "two", "must be an integer"},
      {"{config_overwrites: {output_heads: 5}}", "5}", "must be a map"},
      {"{model_init_args: {foo: 1}}", "foo", "takes no other arguments"},
      {"{max_length: 256, config_overwrites: {dim: 48, heads: 2, attn_dim_key: 8, "
       "num_downsamples: 3, dim_divisible_by: 8, target_length: 64}}",
       "256", "fewer than target_length 64"},
      {"{max_length: null}", "null", "needs a fixed DNA length"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    enf_build_t b;
    ad_status_t st = enf_build(&b, IR_DTYPE_F32, cases[i].yaml);
    ck_assert_msg(st != NULL, "case %zu built", i);
    const char *msg = ad_status_message(st);
    char place[32];
    /* the document is "init_args: <yaml>" on line 1 */
    int col = (int)strlen("init_args: ") + (int)(strstr(cases[i].yaml, cases[i].at) -
                                                 cases[i].yaml) + 1;
    snprintf(place, sizeof place, ":1:%d: error: ", col);
    ck_assert_msg(strstr(msg, place) && strstr(msg, cases[i].msg), "case %zu: %s (want %s %s)",
                  i, msg, place, cases[i].msg);
    ad_status_free(st);
    enf_free(&b);
  }
}
END_TEST

/* ---- through the config: the seed configs' DNA-only task -------------------------------- */
static ad_status_t build_config(const char *rel, int nov, char *const *ov, ir_module_t **m) {
  char *path = golden_path(rel);
  fe_config_t *c = NULL;
  ad_status_t st = fe_config_load(path, nov, ov, &c);
  free(path);
  if (st) return st;
  c->warn_stream = NULL;
  fe_job_t job;
  st = fe_build_module(c, m, &job);
  fe_config_free(c);
  return st;
}

static uint32_t count_prefix(const ir_module_t *m, const char *prefix) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < m->nslots; i++)
    n += strncmp(m->slots[i].name, prefix, strlen(prefix)) == 0;
  return n;
}

START_TEST(test_config_tiny) {
  ir_module_t *m = NULL;
  ad_status_t st = build_config("configs/tiny_isoform_expression_dna_only.yaml", 0, NULL, &m);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  key_table_t t;
  read_keys("tests/golden/keys/enformer_tiny.txt", &t);
  check_keys(m, &t);
  free_keys(&t);
  ir_graph_t *g = ir_module_find_program(m, "forward");
  const ir_node_t *in = NULL;
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == IR_OP_INPUT && strstr(g->nodes[i].name, "_one_hot")) in = &g->nodes[i];
  ck_assert_ptr_nonnull(in);
  const ir_type_t *ty = ir_value_type(g, in->output0);
  ck_assert_int_eq(ty->rank, 3);
  ck_assert_int_eq(ty->dims[2].cst, 4);
  ir_module_free(m);

  /* an override of config_overwrites takes effect: one transformer layer fewer */
  char *ov[] = {"--model.init_args.backbone.init_args.config_overwrites.depth", "1"};
  st = build_config("configs/tiny_isoform_expression_dna_only.yaml", 2, ov, &m);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ck_assert_uint_eq(count_prefix(m, PREFIX "transformer.1."), 0);
  ck_assert_uint_eq(count_prefix(m, PREFIX "transformer.0."), 16);
  ir_module_free(m);

  /* LoRA on Enformer is refused at the override */
  char *peft[] = {"--model.init_args.backbone.init_args.use_peft", "true"};
  st = build_config("configs/tiny_isoform_expression_dna_only.yaml", 2, peft, &m);
  ck_assert_ptr_nonnull(st);
  ck_assert_msg(strstr(ad_status_message(st), "<command line>:1:") &&
                    strstr(ad_status_message(st), "use_peft is not supported for enformer"),
                "%s", ad_status_message(st));
  ad_status_free(st);
}
END_TEST

/* The full-size seed config compiles fast, with the peer's keys, and its Enformer part costs
 * the analytic FLOPs (sum of ir_node_cost over the "backbone." nodes at B = 1). */
START_TEST(test_config_full) {
  ir_module_t *m = NULL;
  double t0 = now_s();
  ad_status_t st = build_config("configs/isoform_expression_dna_only.yaml", 0, NULL, &m);
  double took = now_s() - t0;
  ck_assert_msg(!st, "%s", ad_status_message(st));
  printf("isoform_expression_dna_only.yaml: module built in %.3f s\n", took);
  ck_assert_msg(took < 5.0, "took %.2f s", took);
  key_table_t t;
  read_keys("tests/golden/keys/enformer_full.txt", &t);
  check_keys(m, &t);
  free_keys(&t);
  ir_graph_t *g = ir_module_find_program(m, "forward");
  int64_t sym[IR_MAX_SYMBOLS];
  ir_module_bounds(m, sym);
  int bsym = ir_module_find_symbol(m, "B");
  ck_assert_int_ge(bsym, 0);
  sym[bsym] = 1;
  double flops = 0;
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (strncmp(g->nodes[i].name, "backbone.", 9) == 0)
      flops += (double)ir_node_cost(g, &g->nodes[i], sym).flops;
  double want = analytic_flops();
  printf("isoform_expression_dna_only.yaml: Enformer FLOPs/sample %.6e, analytic %.6e\n", flops,
         want);
  ck_assert_msg(fabs(flops - want) / want < 0.01, "%g vs %g", flops, want);
  ir_module_free(m);
}
END_TEST

static Suite *enformer_suite(void) {
  Suite *s = suite_create("enformer");
  TCase *tc = tcase_create("enformer");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_keys_tiny);
  tcase_add_test(tc, test_full_size);
  tcase_add_test(tc, test_golden_f64);
  tcase_add_test(tc, test_golden_f32);
  tcase_add_test(tc, test_dropout_and_eval);
  tcase_add_test(tc, test_errors);
  tcase_add_test(tc, test_config_tiny);
  tcase_add_test(tc, test_config_full);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(enformer_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
