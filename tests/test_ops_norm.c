/* The norm group (softmax, layernorm, rmsnorm and their backwards): golden cases against
 * torch through the op harness (forward, VJP vs autograd, f64 finite differences), plus what
 * goldens cannot show: long f32 rows still sum to 1 (double accumulation), every kernel is
 * bit-identical on 1 and 2 threads (row and column splits), the backward ops' output counts
 * follow the presence of w, the VJPs wire the right values and ignore mean/rstd cotangents,
 * inference names the node on malformed inputs, and non-f32/f64 kernels refuse cleanly. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/op_harness.h"

/* ---- a 2-thread ir_parallel_t: the tail of every range on a fresh thread ---------------- */

typedef struct two_threads {
  ir_parallel_t base;
  int splits;
} two_threads_t;

typedef struct half_job {
  ir_range_fn fn;
  void *ctx;
  int64_t begin, end;
} half_job_t;

static void *run_half(void *p) {
  half_job_t *j = p;
  j->fn(j->ctx, j->begin, j->end);
  return NULL;
}

static void two_run(ir_parallel_t *self, int64_t n, int64_t grain, ir_range_fn fn, void *ctx) {
  (void)grain;
  two_threads_t *t = (two_threads_t *)self;
  if (n < 2) {
    fn(ctx, 0, n);
    return;
  }
  int64_t mid = n / 3 > 0 ? n / 3 : 1; /* uneven on purpose */
  half_job_t job = {fn, ctx, mid, n};
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, run_half, &job), 0);
  fn(ctx, 0, mid);
  ck_assert_int_eq(pthread_join(th, NULL), 0);
  t->splits++;
}

/* ---- tensors and kernels ---------------------------------------------------------------- */

static uint64_t g_rng = 0xa4093822299f31d0ull;

static double urand(void) { /* uniform in [-1, 1) */
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static ir_tensor_t tensor(ir_dtype_t dt, int rank, const int64_t *dims) {
  ir_tensor_t t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  int64_t n = ir_tensor_numel(&t);
  t.data = calloc((size_t)(n > 0 ? n : 1), ir_dtype_size(dt));
  ck_assert_ptr_nonnull(t.data);
  return t;
}

static double get(const ir_tensor_t *t, int64_t i) {
  return t->dtype == IR_DTYPE_F64 ? ((double *)t->data)[i] : ((float *)t->data)[i];
}

static void set(ir_tensor_t *t, int64_t i, double v) {
  if (t->dtype == IR_DTYPE_F64)
    ((double *)t->data)[i] = v;
  else
    ((float *)t->data)[i] = (float)v;
}

static void fill_random(ir_tensor_t *t, double scale, double offset) {
  for (int64_t i = 0; i < ir_tensor_numel(t); i++) set(t, i, offset + scale * urand());
}

static ad_status_t try_kernel(ir_op_t op, const ir_attr_t *attrs, uint32_t nattrs,
                              const ir_tensor_t *in, uint32_t nin, ir_tensor_t *out, uint32_t nout,
                              ir_parallel_t *par) {
  ir_node_t node;
  memset(&node, 0, sizeof node);
  node.op = op;
  node.name = "enc.norm";
  node.ninputs = nin;
  node.noutputs = nout;
  node.attrs = attrs;
  node.nattrs = nattrs;
  ir_kernel_args_t a = {.node = &node, .in = in, .nin = nin, .out = out, .nout = nout, .par = par};
  return ir_op_info(op)->kernel(&a);
}

static void run_kernel(ir_op_t op, const ir_attr_t *attrs, uint32_t nattrs, const ir_tensor_t *in,
                       uint32_t nin, ir_tensor_t *out, uint32_t nout, ir_parallel_t *par) {
  ad_status_t st = try_kernel(op, attrs, nattrs, in, nin, out, nout, par);
  if (st) ck_abort_msg("%s kernel failed: %s", ir_op_name(op), ad_status_message(st));
}

static bool same_bits(const ir_tensor_t *a, const ir_tensor_t *b) {
  return a->dtype == b->dtype && ir_tensor_numel(a) == ir_tensor_numel(b) &&
         memcmp(a->data, b->data, (size_t)ir_tensor_numel(a) * ir_dtype_size(a->dtype)) == 0;
}

static void free_all(ir_tensor_t *t, int n) {
  for (int i = 0; i < n; i++) free(t[i].data);
}

static const ir_dtype_t k_dtypes[2] = {IR_DTYPE_F32, IR_DTYPE_F64};

/* ---- golden cases ------------------------------------------------------------------------ */

START_TEST(test_golden) {
  op_harness_tol_t tol = op_harness_default_tol();
  ck_assert_int_eq(op_harness_run_file("tests/golden/ops_norm.safetensors", &tol), 0);
}
END_TEST

/* ---- long rows: the f32 sums are carried in double ------------------------------------------ */

START_TEST(test_long_rows) {
  enum { H = 100003 };
  ir_tensor_t x = tensor(IR_DTYPE_F32, 2, (int64_t[]){2, H});
  fill_random(&x, 4.0, 0.0);
  for (int64_t i = H; i < 2 * H; i++) set(&x, i, 3.0); /* row 1 constant: exactly uniform */
  ir_tensor_t y = tensor(IR_DTYPE_F32, 2, (int64_t[]){2, H});
  run_kernel(IR_OP_SOFTMAX, NULL, 0, &x, 1, &y, 1, NULL);
  double sum = 0.0;
  for (int64_t i = 0; i < H; i++) sum += get(&y, i);
  ck_assert_double_le(fabs(sum - 1.0), 1e-6);
  for (int64_t i = H; i < 2 * H; i++) ck_assert(get(&y, i) == (double)(float)(1.0 / H));

  /* layernorm of a row with a large offset: mean exact, output standardised */
  for (int64_t i = 0; i < H; i++) set(&x, i, 1000.0 + (i % 2 ? 1.0 : -1.0));
  ir_attr_t eps = IR_ATTR_F("eps", 0.0);
  ir_tensor_t out[3] = {tensor(IR_DTYPE_F32, 2, (int64_t[]){2, H}),
                        tensor(IR_DTYPE_F32, 1, (int64_t[]){2}),
                        tensor(IR_DTYPE_F32, 1, (int64_t[]){2})};
  run_kernel(IR_OP_LAYERNORM, &eps, 1, &x, 1, out, 3, NULL);
  /* H is odd: one more -1 than +1 */
  double mean = 1000.0 - 1.0 / H, var = 1.0 - 1.0 / ((double)H * H);
  ck_assert_double_le(fabs(get(&out[1], 0) - mean), 1e-4);
  ck_assert_double_le(fabs(get(&out[2], 0) - 1.0 / sqrt(var)), 1e-6);
  ck_assert_double_le(fabs(get(&out[0], 0) - (999.0 - mean) / sqrt(var)), 1e-6);
  ck_assert_double_le(fabs(get(&out[0], 1) - (1001.0 - mean) / sqrt(var)), 1e-6);
  free(x.data);
  free(y.data);
  free_all(out, 3);
}
END_TEST

/* ---- thread-count independence ------------------------------------------------------------- */

START_TEST(test_threads) {
  enum { N = 700, H = 53 }; /* above the row grain, so both threads get rows */
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = k_dtypes[di];
    int64_t xd[2] = {N, H}, wd[1] = {H}, rd[1] = {N};
    ir_tensor_t x = tensor(dt, 2, xd), w = tensor(dt, 1, wd), b = tensor(dt, 1, wd);
    ir_tensor_t dy = tensor(dt, 2, xd);
    fill_random(&x, 3.0, 1.0);
    fill_random(&w, 1.0, 1.0);
    fill_random(&b, 1.0, 0.0);
    fill_random(&dy, 1.0, 0.0);
    ir_attr_t eps = IR_ATTR_F("eps", 1e-5);
    for (int rep = 0; rep < 2; rep++) {
      bool rms = rep == 1;
      ir_op_t fwd = rms ? IR_OP_RMSNORM : IR_OP_LAYERNORM, bwd = rms ? IR_OP_RMSNORM_BWD
                                                                      : IR_OP_LAYERNORM_BWD;
      int nf = rms ? 2 : 3;
      ir_tensor_t o1[3], o2[3];
      for (int k = 0; k < nf; k++) {
        o1[k] = k == 0 ? tensor(dt, 2, xd) : tensor(dt, 1, rd);
        o2[k] = k == 0 ? tensor(dt, 2, xd) : tensor(dt, 1, rd);
      }
      ir_tensor_t fin[3] = {x, w, b};
      two_threads_t two = {{two_run}, 0};
      run_kernel(fwd, &eps, 1, fin, rms ? 2 : 3, o1, (uint32_t)nf, NULL);
      run_kernel(fwd, &eps, 1, fin, rms ? 2 : 3, o2, (uint32_t)nf, &two.base);
      for (int k = 0; k < nf; k++) ck_assert(same_bits(&o1[k], &o2[k]));
      /* backward with w: dx rows and dw/db columns */
      ir_tensor_t bin[5];
      uint32_t nb = 0;
      bin[nb++] = x;
      bin[nb++] = w;
      if (!rms) bin[nb++] = o1[1];
      bin[nb++] = o1[nf - 1];
      bin[nb++] = dy;
      int ng = rms ? 2 : 3;
      ir_tensor_t g1[3], g2[3];
      for (int k = 0; k < ng; k++) {
        g1[k] = k == 0 ? tensor(dt, 2, xd) : tensor(dt, 1, wd);
        g2[k] = k == 0 ? tensor(dt, 2, xd) : tensor(dt, 1, wd);
        fill_random(&g2[k], 9.0, 0.0); /* every element is written */
      }
      run_kernel(bwd, NULL, 0, bin, nb, g1, (uint32_t)ng, NULL);
      run_kernel(bwd, NULL, 0, bin, nb, g2, (uint32_t)ng, &two.base);
      ck_assert_int_ge(two.splits, 3);
      for (int k = 0; k < ng; k++) ck_assert_msg(same_bits(&g1[k], &g2[k]), "grad %d differs", k);
      /* db is the column sum of dy; dw the column sum of dy * xhat */
      for (int64_t j = 0; j < H; j++) {
        double db = 0.0, dw = 0.0;
        for (int64_t r = 0; r < N; r++) {
          double mean = rms ? 0.0 : get(&o1[1], r), rstd = get(&o1[nf - 1], r);
          db += get(&dy, r * H + j);
          dw += get(&dy, r * H + j) * (get(&x, r * H + j) - mean) * rstd;
        }
        double tol = dt == IR_DTYPE_F64 ? 1e-12 : 1e-5;
        ck_assert_double_le(fabs(get(&g1[1], j) - dw), tol * (1.0 + fabs(dw)));
        if (!rms) ck_assert_double_le(fabs(get(&g1[2], j) - db), tol * (1.0 + fabs(db)));
      }
      free_all(o1, nf);
      free_all(o2, nf);
      free_all(g1, ng);
      free_all(g2, ng);
    }
    /* softmax and its backward */
    ir_tensor_t y1 = tensor(dt, 2, xd), y2 = tensor(dt, 2, xd);
    two_threads_t two = {{two_run}, 0};
    run_kernel(IR_OP_SOFTMAX, NULL, 0, &x, 1, &y1, 1, NULL);
    run_kernel(IR_OP_SOFTMAX, NULL, 0, &x, 1, &y2, 1, &two.base);
    ck_assert(same_bits(&y1, &y2));
    ir_tensor_t sin[2] = {y1, dy}, d1 = tensor(dt, 2, xd), d2 = tensor(dt, 2, xd);
    run_kernel(IR_OP_SOFTMAX_BWD, NULL, 0, sin, 2, &d1, 1, NULL);
    run_kernel(IR_OP_SOFTMAX_BWD, NULL, 0, sin, 2, &d2, 1, &two.base);
    ck_assert(same_bits(&d1, &d2));
    ck_assert_int_ge(two.splits, 2);
    ir_tensor_t all[8] = {x, w, b, dy, y1, y2, d1, d2};
    free_all(all, 8);
  }
}
END_TEST

/* ---- in place: the flag promises output 0 may share input 0's buffer ------------------------ */

START_TEST(test_in_place) {
  static const ir_op_t ops[3] = {IR_OP_SOFTMAX, IR_OP_LAYERNORM, IR_OP_RMSNORM};
  int64_t xd[2] = {5, 9}, rd[1] = {5};
  for (int k = 0; k < 3; k++) {
    ck_assert(ir_op_info(ops[k])->flags & IR_OP_FLAG_INPLACE);
    ir_tensor_t x = tensor(IR_DTYPE_F64, 2, xd);
    fill_random(&x, 2.0, 0.5);
    ir_tensor_t sep[3] = {tensor(IR_DTYPE_F64, 2, xd), tensor(IR_DTYPE_F64, 1, rd),
                          tensor(IR_DTYPE_F64, 1, rd)};
    ir_tensor_t alias[3] = {x, tensor(IR_DTYPE_F64, 1, rd), tensor(IR_DTYPE_F64, 1, rd)};
    uint32_t nout = ops[k] == IR_OP_SOFTMAX ? 1 : ops[k] == IR_OP_RMSNORM ? 2 : 3;
    run_kernel(ops[k], NULL, 0, &x, 1, sep, nout, NULL);
    run_kernel(ops[k], NULL, 0, &x, 1, alias, nout, NULL); /* overwrites x */
    ck_assert(memcmp(sep[0].data, x.data, sizeof(double) * 45) == 0);
    free_all(sep, 3);
    free_all(alias, 3);
  }
}
END_TEST

/* ---- inference, output counts and VJP wiring --------------------------------------------- */

typedef struct fixture {
  ir_module_t *m;
  ir_graph_t *g;
} fixture_t;

static fixture_t make_graph(void) {
  fixture_t f;
  f.m = ir_module_create();
  ck_assert_ptr_null(ir_module_add_symbol(f.m, "B", 4, NULL));
  ck_assert_ptr_null(ir_module_add_symbol(f.m, "L", 8, NULL));
  f.g = ir_module_add_program(f.m, "main");
  return f;
}

static ir_type_t ty(const fixture_t *f, const char *s) {
  ir_type_t t;
  ad_status_t st = ir_parse_type(f->m, s, &t);
  if (st) ck_abort_msg("bad type '%s': %s", s, ad_status_message(st));
  return t;
}

static uint32_t input(const fixture_t *f, const char *name, const char *type) {
  ir_type_t t = ty(f, type);
  ir_node_desc_t d = {.op = IR_OP_INPUT, .name = name, .out_types = &t, .nout_types = 1};
  uint32_t v = ir_build(f->g, &d);
  ck_assert_uint_ne(v, IR_NONE);
  return v;
}

static uint32_t build(const fixture_t *f, ir_op_t op, const char *name, const uint32_t *ins,
                      uint32_t nin, const ir_attr_t *attrs, uint32_t nattrs) {
  ir_node_desc_t d = {.op = op, .name = name, .inputs = ins, .ninputs = nin, .attrs = attrs,
                      .nattrs = nattrs};
  return ir_build(f->g, &d);
}

static void expect_build_error(const fixture_t *f, uint32_t v, const char *n1, const char *n2) {
  ck_assert_uint_eq(v, IR_NONE);
  ad_status_t st = ir_graph_take_error(f->g);
  ck_assert_ptr_nonnull(st);
  const char *msg = ad_status_message(st);
  ck_assert_msg(strstr(msg, n1) && strstr(msg, n2), "message '%s' lacks '%s'/'%s'", msg, n1, n2);
  ad_status_free(st);
}

static void expect_type(const fixture_t *f, uint32_t v, const char *type) {
  ir_type_t want = ty(f, type);
  ck_assert_msg(ir_type_equal(ir_value_type(f->g, v), &want), "value %%%u is not %s", v, type);
}

START_TEST(test_infer) {
  fixture_t f = make_graph();
  uint32_t x = input(&f, "x", "f32[B,L,8]"), w = input(&f, "w", "f32[8]");
  uint32_t b = input(&f, "b", "f32[8]"), w7 = input(&f, "w7", "f32[7]");
  uint32_t xi = input(&f, "xi", "i32[B,L,8]"), xd = input(&f, "xd", "f64[B,L,8]");
  ir_attr_t eps = IR_ATTR_F("eps", 1e-12);
  uint32_t ln = build(&f, IR_OP_LAYERNORM, "ln", (uint32_t[]){x, w, b}, 3, &eps, 1);
  ck_assert_uint_ne(ln, IR_NONE);
  ck_assert_uint_eq(ir_value_producer(f.g, ln)->noutputs, 3);
  expect_type(&f, ln, "f32[B,L,8]");
  expect_type(&f, ln + 1, "f32[B,L]");
  expect_type(&f, ln + 2, "f32[B,L]");
  uint32_t lb = build(&f, IR_OP_LAYERNORM_BWD, "lb", (uint32_t[]){x, w, ln + 1, ln + 2, x}, 5,
                      NULL, 0);
  ck_assert_uint_eq(ir_value_producer(f.g, lb)->noutputs, 3);
  expect_type(&f, lb + 2, "f32[8]");
  uint32_t lb1 = build(&f, IR_OP_LAYERNORM_BWD, "lb1", (uint32_t[]){x, ln + 1, ln + 2, x}, 4,
                       NULL, 0);
  ck_assert_uint_eq(ir_value_producer(f.g, lb1)->noutputs, 1);
  uint32_t rn = build(&f, IR_OP_RMSNORM, "rn", (uint32_t[]){x, w}, 2, &eps, 1);
  ck_assert_uint_eq(ir_value_producer(f.g, rn)->noutputs, 2);
  expect_type(&f, rn + 1, "f32[B,L]");
  uint32_t rb = build(&f, IR_OP_RMSNORM_BWD, "rb", (uint32_t[]){x, w, rn + 1, x}, 4, NULL, 0);
  ck_assert_uint_eq(ir_value_producer(f.g, rb)->noutputs, 2);
  uint32_t rb1 = build(&f, IR_OP_RMSNORM_BWD, "rb1", (uint32_t[]){x, rn + 1, x}, 3, NULL, 0);
  ck_assert_uint_eq(ir_value_producer(f.g, rb1)->noutputs, 1);
  uint32_t v = input(&f, "v", "f64[5]");
  uint32_t lv = build(&f, IR_OP_LAYERNORM, "lv", &v, 1, NULL, 0);
  expect_type(&f, lv + 1, "f64[]");

  expect_build_error(&f, build(&f, IR_OP_LAYERNORM, "enc.ln_w7", (uint32_t[]){x, w7}, 2, NULL, 0),
                     "enc.ln_w7", "weight");
  ir_attr_t neg = IR_ATTR_F("eps", -1.0);
  expect_build_error(&f, build(&f, IR_OP_RMSNORM, "enc.rms_neg", &x, 1, &neg, 1), "enc.rms_neg",
                     "eps");
  expect_build_error(&f, build(&f, IR_OP_SOFTMAX, "enc.sm_int", &xi, 1, NULL, 0), "enc.sm_int",
                     "float");
  expect_build_error(&f, build(&f, IR_OP_SOFTMAX_BWD, "enc.smb", (uint32_t[]){x, xd}, 2, NULL, 0),
                     "enc.smb", "dy");
  expect_build_error(&f, build(&f, IR_OP_LAYERNORM_BWD, "enc.lbm",
                               (uint32_t[]){x, w, x, ln + 2, x}, 5, NULL, 0),
                     "enc.lbm", "mean");
  ir_module_free(f.m);
}
END_TEST

START_TEST(test_vjp_wiring) {
  fixture_t f = make_graph();
  uint32_t x = input(&f, "x", "f64[B,L,8]"), w = input(&f, "w", "f64[8]");
  uint32_t b = input(&f, "b", "f64[8]"), dy = input(&f, "dy", "f64[B,L,8]");
  uint32_t dm = input(&f, "dm", "f64[B,L]");
  uint32_t ln = build(&f, IR_OP_LAYERNORM, "enc.ln", (uint32_t[]){x, w, b}, 3, NULL, 0);
  ir_vjp_ctx_t c = {.g = f.g, .node = *ir_value_producer(f.g, ln)};
  uint32_t og[3] = {dy, dm, dm}, ig[3] = {IR_NONE, IR_NONE, IR_NONE};
  c.out_grads = og;
  c.in_grads = ig;
  ck_assert_ptr_null(ir_op_info(IR_OP_LAYERNORM)->vjp(&c));
  const ir_node_t *bw = ir_value_producer(f.g, ig[0]);
  ck_assert_int_eq(bw->op, IR_OP_LAYERNORM_BWD);
  ck_assert_uint_eq(bw->ninputs, 5);
  /* x, w, mean, rstd, dy: the cotangents of mean and rstd are not used */
  const uint32_t want[5] = {x, w, ln + 1, ln + 2, dy};
  for (int i = 0; i < 5; i++) ck_assert_uint_eq(bw->inputs[i], want[i]);
  ck_assert_uint_eq(ig[1], ig[0] + 1);
  ck_assert_uint_eq(ig[2], ig[0] + 2);
  /* no cotangent for y: nothing to do */
  uint32_t none[3] = {IR_NONE, dm, dm}, ig2[3] = {IR_NONE, IR_NONE, IR_NONE};
  c.out_grads = none;
  c.in_grads = ig2;
  uint32_t before = f.g->nnodes;
  ck_assert_ptr_null(ir_op_info(IR_OP_LAYERNORM)->vjp(&c));
  ck_assert_uint_eq(f.g->nnodes, before);
  ck_assert_uint_eq(ig2[0], IR_NONE);
  /* rmsnorm without weight: one gradient */
  uint32_t rn = build(&f, IR_OP_RMSNORM, "enc.rn", &x, 1, NULL, 0);
  ir_vjp_ctx_t r = {.g = f.g, .node = *ir_value_producer(f.g, rn)};
  uint32_t rog[2] = {dy, IR_NONE}, rig[1] = {IR_NONE};
  r.out_grads = rog;
  r.in_grads = rig;
  ck_assert_ptr_null(ir_op_info(IR_OP_RMSNORM)->vjp(&r));
  const ir_node_t *rbw = ir_value_producer(f.g, rig[0]);
  ck_assert_int_eq(rbw->op, IR_OP_RMSNORM_BWD);
  ck_assert_uint_eq(rbw->ninputs, 3);
  ck_assert_uint_eq(rbw->noutputs, 1);
  /* no second derivatives of the norm backwards */
  ck_assert_ptr_null(ir_op_info(IR_OP_LAYERNORM_BWD)->vjp);
  ck_assert_ptr_null(ir_op_info(IR_OP_RMSNORM_BWD)->vjp);
  ck_assert_ptr_null(f.g->error);
  ir_module_free(f.m);
}
END_TEST

START_TEST(test_unsupported_dtype) {
  int64_t d[2] = {2, 4};
  ir_tensor_t x = tensor(IR_DTYPE_BF16, 2, d), y = tensor(IR_DTYPE_BF16, 2, d);
  ad_status_t st = try_kernel(IR_OP_SOFTMAX, NULL, 0, &x, 1, &y, 1, NULL);
  ck_assert_ptr_nonnull(st);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_UNIMPLEMENTED);
  ck_assert(strstr(ad_status_message(st), "enc.norm") && strstr(ad_status_message(st), "bf16"));
  ad_status_free(st);
  free(x.data);
  free(y.data);
}
END_TEST

static Suite *norm_suite(void) {
  Suite *s = suite_create("ops_norm");
  TCase *tc = tcase_create("norm");
  tcase_add_test(tc, test_golden);
  tcase_add_test(tc, test_long_rows);
  tcase_add_test(tc, test_threads);
  tcase_add_test(tc, test_in_place);
  tcase_add_test(tc, test_infer);
  tcase_add_test(tc, test_vjp_wiring);
  tcase_add_test(tc, test_unsupported_dtype);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(norm_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
