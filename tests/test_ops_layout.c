/* The layout group (reshape, permute, slice, concat, pad, embedding, embedding_bwd): golden
 * cases against torch through the op harness (forward, VJP vs autograd, f64 finite
 * differences), plus what goldens cannot show: an out-of-range id is an error status naming
 * the node and the id; reshape (explicit output type, so no golden) runs and differentiates,
 * and its inference rejects element-count mismatches, also those that agree only at the
 * bounds; embedding_bwd is bit-identical on 1 and 2 threads and adds in id order; VJPs that
 * need symbolic pad/slice bounds fail with a clear error; a slice that fits the bound but not
 * the actual size is a kernel error; the copy kernels serve integer dtypes. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "runtime/interp.h"
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

static uint64_t g_rng = 0x13198a2e03707344ull;

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

static ad_status_t try_kernel(ir_op_t op, const ir_attr_t *attrs, uint32_t nattrs,
                              const ir_tensor_t *in, uint32_t nin, ir_tensor_t *out,
                              ir_parallel_t *par) {
  ir_node_t node;
  memset(&node, 0, sizeof node);
  node.op = op;
  node.name = "enc.embed";
  node.ninputs = nin;
  node.noutputs = 1;
  node.attrs = attrs;
  node.nattrs = nattrs;
  ir_kernel_args_t a = {.node = &node, .in = in, .nin = nin, .out = out, .nout = 1, .par = par};
  return ir_op_info(op)->kernel(&a);
}

static void run_kernel(ir_op_t op, const ir_attr_t *attrs, uint32_t nattrs, const ir_tensor_t *in,
                       uint32_t nin, ir_tensor_t *out, ir_parallel_t *par) {
  ad_status_t st = try_kernel(op, attrs, nattrs, in, nin, out, par);
  if (st) ck_abort_msg("%s kernel failed: %s", ir_op_name(op), ad_status_message(st));
}

static void expect_msg(ad_status_t st, const char *n1, const char *n2) {
  ck_assert_ptr_nonnull(st);
  const char *msg = ad_status_message(st);
  ck_assert_msg(strstr(msg, n1) && (!n2 || strstr(msg, n2)), "message '%s' lacks '%s'/'%s'", msg,
                n1, n2 ? n2 : "");
  ad_status_free(st);
}

/* ---- golden cases ------------------------------------------------------------------------ */

START_TEST(test_golden) {
  op_harness_tol_t tol = op_harness_default_tol();
  ck_assert_int_eq(op_harness_run_file("tests/golden/ops_layout.safetensors", &tol), 0);
}
END_TEST

/* ---- out-of-range ids ---------------------------------------------------------------------- */

START_TEST(test_embedding_bad_id) {
  static const int64_t bad[2] = {11, -1};
  for (int k = 0; k < 2; k++) {
    ir_tensor_t table = tensor(IR_DTYPE_F32, 2, (int64_t[]){11, 4});
    ir_tensor_t ids = tensor(IR_DTYPE_I32, 2, (int64_t[]){2, 3});
    for (int i = 0; i < 6; i++) ((int32_t *)ids.data)[i] = i;
    ((int32_t *)ids.data)[4] = (int32_t)bad[k];
    ir_tensor_t y = tensor(IR_DTYPE_F32, 3, (int64_t[]){2, 3, 4});
    ir_tensor_t in[2] = {table, ids};
    char want[64];
    snprintf(want, sizeof want, "id %lld at position 4", (long long)bad[k]);
    expect_msg(try_kernel(IR_OP_EMBEDDING, NULL, 0, in, 2, &y, NULL), "enc.embed", want);
    /* the backward validates the same way: a bad id never becomes a wild write */
    ir_tensor_t dy = tensor(IR_DTYPE_F32, 3, (int64_t[]){2, 3, 4});
    ir_tensor_t bin[3] = {ids, dy, table};
    ir_tensor_t dt = tensor(IR_DTYPE_F32, 2, (int64_t[]){11, 4});
    expect_msg(try_kernel(IR_OP_EMBEDDING_BWD, NULL, 0, bin, 3, &dt, NULL), "enc.embed", want);
    free(table.data);
    free(ids.data);
    free(y.data);
    free(dy.data);
    free(dt.data);
  }
}
END_TEST

/* ---- embedding_bwd: thread-count independent, id-order accumulation ------------------------- */

START_TEST(test_embedding_bwd_threads) {
  enum { V = 9, H = 200, N = 120 }; /* 7 column blocks */
  static const ir_dtype_t dts[2] = {IR_DTYPE_F32, IR_DTYPE_F64};
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = dts[di];
    ir_tensor_t ids = tensor(IR_DTYPE_I64, 2, (int64_t[]){3, N / 3});
    for (int i = 0; i < N; i++) ((int64_t *)ids.data)[i] = (i * i + 3 * i) % V; /* repeats */
    ir_tensor_t dy = tensor(dt, 3, (int64_t[]){3, N / 3, H});
    /* magnitudes over 7 decades make any change of summation order visible */
    for (int64_t i = 0; i < (int64_t)N * H; i++)
      set(&dy, i, urand() * pow(10.0, (double)(i % 7) - 3));
    ir_tensor_t like = tensor(dt, 2, (int64_t[]){V, H});
    ir_tensor_t in[3] = {ids, dy, like};
    ir_tensor_t d1 = tensor(dt, 2, (int64_t[]){V, H}), d2 = tensor(dt, 2, (int64_t[]){V, H});
    for (int64_t i = 0; i < V * H; i++) set(&d2, i, 12345.0); /* every element is written */
    two_threads_t two = {{two_run}, 0};
    run_kernel(IR_OP_EMBEDDING_BWD, NULL, 0, in, 3, &d1, NULL);
    run_kernel(IR_OP_EMBEDDING_BWD, NULL, 0, in, 3, &d2, &two.base);
    ck_assert_int_gt(two.splits, 0);
    ck_assert(memcmp(d1.data, d2.data, (size_t)V * H * ir_dtype_size(dt)) == 0);
    /* The documented order: positions in order, in double, rounded once. */
    for (int v = 0; v < V; v++)
      for (int h = 0; h < H; h++) {
        double acc = 0.0;
        for (int i = 0; i < N; i++)
          if (((int64_t *)ids.data)[i] == v) acc += get(&dy, (int64_t)i * H + h);
        double want = dt == IR_DTYPE_F32 ? (double)(float)acc : acc;
        ck_assert_msg(get(&d1, v * H + h) == want, "dtable[%d,%d] = %.17g, want %.17g", v, h,
                      get(&d1, v * H + h), want);
      }
    /* padding_idx: that row gets nothing, others are unchanged */
    ir_attr_t pad = IR_ATTR_I("padding_idx", 2);
    run_kernel(IR_OP_EMBEDDING_BWD, &pad, 1, in, 3, &d2, &two.base);
    for (int v = 0; v < V; v++)
      for (int h = 0; h < H; h++)
        ck_assert(get(&d2, v * H + h) == (v == 2 ? 0.0 : get(&d1, v * H + h)));
    free(ids.data);
    free(dy.data);
    free(like.data);
    free(d1.data);
    free(d2.data);
  }
}
END_TEST

/* ---- integer dtypes through the copy kernels -------------------------------------------- */

START_TEST(test_integer_copies) {
  ir_tensor_t x = tensor(IR_DTYPE_I64, 2, (int64_t[]){2, 3});
  for (int i = 0; i < 6; i++) ((int64_t *)x.data)[i] = 10 + i;
  ir_attr_t pad[4] = {IR_ATTR_I("after", 1), IR_ATTR_I("axis", 1), IR_ATTR_I("before", 2),
                      IR_ATTR_F("value", 7.0)};
  ir_tensor_t y = tensor(IR_DTYPE_I64, 2, (int64_t[]){2, 6});
  run_kernel(IR_OP_PAD, pad, 4, &x, 1, &y, NULL);
  static const int64_t want[12] = {7, 7, 10, 11, 12, 7, 7, 7, 13, 14, 15, 7};
  ck_assert(memcmp(y.data, want, sizeof want) == 0);

  int64_t perm[2] = {1, 0};
  ir_attr_t pa = IR_ATTR_INTS("perm", perm, 2);
  ir_tensor_t t = tensor(IR_DTYPE_I64, 2, (int64_t[]){3, 2});
  run_kernel(IR_OP_PERMUTE, &pa, 1, &x, 1, &t, NULL);
  static const int64_t want_t[6] = {10, 13, 11, 14, 12, 15};
  ck_assert(memcmp(t.data, want_t, sizeof want_t) == 0);

  ir_attr_t ax = IR_ATTR_I("axis", 0);
  ir_tensor_t parts[2] = {x, x};
  ir_tensor_t c = tensor(IR_DTYPE_I64, 2, (int64_t[]){4, 3});
  run_kernel(IR_OP_CONCAT, &ax, 1, parts, 2, &c, NULL);
  for (int i = 0; i < 12; i++) ck_assert(((int64_t *)c.data)[i] == 10 + i % 6);
  free(x.data);
  free(y.data);
  free(t.data);
  free(c.data);
}
END_TEST

/* ---- graph-level checks ------------------------------------------------------------------- */

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
                      uint32_t nin, const ir_attr_t *attrs, uint32_t nattrs, const char *out) {
  ir_type_t t;
  if (out) t = ty(f, out);
  ir_node_desc_t d = {.op = op, .name = name, .inputs = ins, .ninputs = nin, .attrs = attrs,
                      .nattrs = nattrs, .out_types = out ? &t : NULL, .nout_types = out ? 1 : 0};
  return ir_build(f->g, &d);
}

static void expect_build_error(const fixture_t *f, uint32_t v, const char *n1, const char *n2) {
  ck_assert_uint_eq(v, IR_NONE);
  expect_msg(ir_graph_take_error(f->g), n1, n2);
}

/* Applies the node's VJP with cotangent dy; returns its status, grads in in_grads. */
static ad_status_t apply_vjp(const fixture_t *f, uint32_t out, uint32_t dy, uint32_t *in_grads) {
  const ir_node_t *n = ir_value_producer(f->g, out);
  ir_vjp_ctx_t c = {.g = f->g, .node = *n, .out_grads = &dy, .in_grads = in_grads};
  for (uint32_t i = 0; i < n->ninputs; i++) in_grads[i] = IR_NONE;
  return ir_op_info(n->op)->vjp(&c);
}

START_TEST(test_reshape_infer) {
  fixture_t f = make_graph();
  uint32_t x = input(&f, "x", "f32[B,L,6]");
  uint32_t y = build(&f, IR_OP_RESHAPE, "enc.merge", &x, 1, NULL, 0, "f32[B*L,6]");
  ck_assert_uint_ne(y, IR_NONE);
  expect_build_error(&f, build(&f, IR_OP_RESHAPE, "enc.bad", &x, 1, NULL, 0, "f32[B,L,5]"),
                     "enc.bad", "element count");
  /* agrees at the bounds (4*8*6 == 192*1) but not at B = L = 1 */
  expect_build_error(&f, build(&f, IR_OP_RESHAPE, "enc.bad2", &x, 1, NULL, 0, "f32[192]"),
                     "enc.bad2", "element count");
  expect_build_error(&f, build(&f, IR_OP_RESHAPE, "enc.bad3", &x, 1, NULL, 0, "f64[B*L,6]"),
                     "enc.bad3", "dtype");
  ir_module_free(f.m);
}
END_TEST

/* Reshape has an explicit output type, which golden cases cannot carry: forward and VJP are
 * checked here, at actual sizes below the bounds. */
START_TEST(test_reshape_run) {
  fixture_t f = make_graph();
  uint32_t x = input(&f, "x", "f64[B,L,6]");
  uint32_t y = build(&f, IR_OP_RESHAPE, "enc.heads", &x, 1, NULL, 0, "f64[B*L,2,3]");
  ck_assert_uint_ne(y, IR_NONE);
  uint32_t dy = input(&f, "dy", "f64[B*L,2,3]");
  uint32_t grads[1];
  ck_assert_ptr_null(apply_vjp(&f, y, dy, grads));
  ck_assert(ir_type_equal(ir_value_type(f.g, grads[0]), ir_value_type(f.g, x)));
  ck_assert_int_eq(ir_value_producer(f.g, grads[0])->op, IR_OP_RESHAPE);
  build(&f, IR_OP_OUTPUT, "y", &y, 1, NULL, 0, NULL);
  build(&f, IR_OP_OUTPUT, "dx", &grads[0], 1, NULL, 0, NULL);
  ck_assert_ptr_null(f.g->error);
  int64_t sym[2] = {3, 5};
  rt_interp_t *it;
  ck_assert_ptr_null(rt_interp_create(f.g, sym, &it));
  double xs[90], dys[90];
  for (int i = 0; i < 90; i++) {
    xs[i] = urand();
    dys[i] = urand();
  }
  ck_assert_ptr_null(rt_interp_set_input(it, "x", xs, sizeof xs));
  ck_assert_ptr_null(rt_interp_set_input(it, "dy", dys, sizeof dys));
  ck_assert_ptr_null(rt_interp_run(it, NULL));
  const ir_tensor_t *yt = rt_interp_output(it, "y"), *dxt = rt_interp_output(it, "dx");
  ck_assert(yt->rank == 3 && yt->dims[0] == 15 && yt->dims[1] == 2 && yt->dims[2] == 3);
  ck_assert(memcmp(yt->data, xs, sizeof xs) == 0);
  ck_assert(dxt->rank == 3 && dxt->dims[0] == 3 && dxt->dims[1] == 5 && dxt->dims[2] == 6);
  ck_assert(memcmp(dxt->data, dys, sizeof dys) == 0);
  rt_interp_free(it);
  ir_module_free(f.m);
}
END_TEST

START_TEST(test_infer_errors) {
  fixture_t f = make_graph();
  uint32_t x = input(&f, "x", "f32[B,L,6]");
  uint32_t z = input(&f, "z", "f32[B,3,5]");
  uint32_t ids = input(&f, "ids", "f32[B,L]");
  uint32_t table = input(&f, "table", "f32[11,6]");
  int64_t bad_perm[3] = {0, 0, 2};
  ir_attr_t pa = IR_ATTR_INTS("perm", bad_perm, 3);
  expect_build_error(&f, build(&f, IR_OP_PERMUTE, "p", &x, 1, &pa, 1, NULL), "'p'", "perm");
  ir_attr_t ax1 = IR_ATTR_I("axis", 1);
  expect_build_error(&f, build(&f, IR_OP_CONCAT, "c", (uint32_t[]){x, z}, 2, &ax1, 1, NULL),
                     "'c'", "dim 2");
  ir_attr_t sl[3] = {IR_ATTR_I("axis", 2), IR_ATTR_I("end", 9), IR_ATTR_I("start", 1)};
  expect_build_error(&f, build(&f, IR_OP_SLICE, "s", &x, 1, sl, 3, NULL), "'s'", "outside");
  ir_attr_t pd[3] = {IR_ATTR_I("after", -1), IR_ATTR_I("axis", 0), IR_ATTR_I("before", 0)};
  expect_build_error(&f, build(&f, IR_OP_PAD, "pd", &x, 1, pd, 3, NULL), "'pd'", ">= 0");
  expect_build_error(&f, build(&f, IR_OP_EMBEDDING, "e", (uint32_t[]){table, ids}, 2, NULL, 0,
                               NULL), "'e'", "i32 or i64");
  /* a slice of the symbolic axis from the back keeps a static size */
  ir_attr_t last2[3] = {IR_ATTR_I("axis", 1), IR_ATTR_I("end", 0), IR_ATTR_I("start", -2)};
  uint32_t s2 = build(&f, IR_OP_SLICE, "s2", &x, 1, last2, 3, NULL);
  ck_assert_uint_ne(s2, IR_NONE);
  ir_type_t want = ty(&f, "f32[B,2,6]");
  ck_assert(ir_type_equal(ir_value_type(f.g, s2), &want));
  ck_assert_uint_eq(ir_op_info(IR_OP_EMBEDDING)->nondiff_inputs, 1u << 1);
  ck_assert_uint_eq(ir_op_info(IR_OP_EMBEDDING_BWD)->nondiff_inputs, (1u << 0) | (1u << 2));
  ir_module_free(f.m);
}
END_TEST

START_TEST(test_vjp_symbolic_bounds) {
  fixture_t f = make_graph();
  uint32_t x = input(&f, "x", "f32[B,L,6]");
  uint32_t grads[3];
  /* the first 2 of a symbolic axis: the gradient pad after it would be L-2, not static */
  ir_attr_t head[3] = {IR_ATTR_I("axis", 1), IR_ATTR_I("end", 2), IR_ATTR_I("start", 0)};
  uint32_t s = build(&f, IR_OP_SLICE, "enc.head", &x, 1, head, 3, NULL);
  ck_assert_uint_ne(s, IR_NONE);
  uint32_t dy = input(&f, "dy", "f32[B,2,6]");
  expect_msg(apply_vjp(&f, s, dy, grads), "enc.head", "symbolic");
  ck_assert_uint_eq(grads[0], IR_NONE);
  /* trimming both ends of it is fine: pad 1 and 1 restores x's type */
  ir_attr_t trim[3] = {IR_ATTR_I("axis", 1), IR_ATTR_I("end", -1), IR_ATTR_I("start", 1)};
  uint32_t t = build(&f, IR_OP_SLICE, "enc.trim", &x, 1, trim, 3, NULL);
  uint32_t dyt = input(&f, "dyt", "f32[B,L-2,6]");
  ck_assert_ptr_null(apply_vjp(&f, t, dyt, grads));
  ck_assert_uint_ne(grads[0], IR_NONE);
  ck_assert(ir_type_equal(ir_value_type(f.g, grads[0]), ir_value_type(f.g, x)));
  ck_assert_int_eq(ir_value_producer(f.g, grads[0])->op, IR_OP_PAD);
  /* a symbolic input with a symbolic one after it and a static one before: its gradient
   * slice starts at 2 but cannot end at a static bound */
  ir_attr_t ax = IR_ATTR_I("axis", 1);
  uint32_t mid = input(&f, "mid", "f32[B,2,6]");
  uint32_t c = build(&f, IR_OP_CONCAT, "enc.cat", (uint32_t[]){mid, x, x}, 3, &ax, 1, NULL);
  ck_assert_uint_ne(c, IR_NONE);
  uint32_t dyc = input(&f, "dyc", "f32[B,2*L+2,6]");
  expect_msg(apply_vjp(&f, c, dyc, grads), "enc.cat", "input 1");
  ck_assert_ptr_null(ir_graph_take_error(f.g));
  ir_module_free(f.m);
}
END_TEST

/* A slice that fits the bound but not the actual size fails at run time, naming the node. */
START_TEST(test_slice_runtime_bounds) {
  fixture_t f = make_graph();
  uint32_t x = input(&f, "x", "f32[B,L]");
  ir_attr_t head[3] = {IR_ATTR_I("axis", 1), IR_ATTR_I("end", 4), IR_ATTR_I("start", 0)};
  uint32_t s = build(&f, IR_OP_SLICE, "enc.head4", &x, 1, head, 3, NULL);
  ck_assert_uint_ne(s, IR_NONE);
  build(&f, IR_OP_OUTPUT, "y", &s, 1, NULL, 0, NULL);
  ck_assert_ptr_null(f.g->error);
  int64_t sym[2] = {2, 3}; /* L = 3 < 4 */
  rt_interp_t *it;
  ck_assert_ptr_null(rt_interp_create(f.g, sym, &it));
  float xs[6] = {0};
  ck_assert_ptr_null(rt_interp_set_input(it, "x", xs, sizeof xs));
  expect_msg(rt_interp_run(it, NULL), "enc.head4", "actual size 3");
  rt_interp_free(it);
  ir_module_free(f.m);
}
END_TEST

static Suite *layout_suite(void) {
  Suite *s = suite_create("ops_layout");
  TCase *tc = tcase_create("layout");
  tcase_add_test(tc, test_golden);
  tcase_add_test(tc, test_embedding_bad_id);
  tcase_add_test(tc, test_embedding_bwd_threads);
  tcase_add_test(tc, test_integer_copies);
  tcase_add_test(tc, test_reshape_infer);
  tcase_add_test(tc, test_reshape_run);
  tcase_add_test(tc, test_infer_errors);
  tcase_add_test(tc, test_vjp_symbolic_bounds);
  tcase_add_test(tc, test_slice_runtime_bounds);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(layout_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
