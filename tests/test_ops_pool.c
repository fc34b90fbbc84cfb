/* The pool group (masked_mean_pool, cls_pool and their backwards): golden cases against
 * ModelGenerator's pooling in torch (forward, VJP vs autograd, f64 finite differences) through
 * the op harness, plus: a row with no valid token pools to exact zeros and gets zero gradient,
 * padding a sample never changes its pooled bits, results do not depend on the thread count,
 * cls pooling copies any dtype, and inference rejects malformed nodes. */
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
  int64_t mid = n / 3 > 0 ? n / 3 : 1;
  half_job_t job = {fn, ctx, mid, n};
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, run_half, &job), 0);
  fn(ctx, 0, mid);
  ck_assert_int_eq(pthread_join(th, NULL), 0);
  t->splits++;
}

/* ---- tensors and kernels -------------------------------------------------------------- */

static uint64_t g_rng = 0x243f6a8885a308d3ull;

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

static void fill_random(ir_tensor_t *t, double scale) {
  for (int64_t i = 0; i < ir_tensor_numel(t); i++) set(t, i, scale * urand());
}

static void run_kernel(ir_op_t op, const ir_tensor_t *in, uint32_t nin, ir_tensor_t *out,
                       ir_parallel_t *par) {
  ir_node_t node;
  memset(&node, 0, sizeof node);
  node.op = op;
  node.name = "test.node";
  node.ninputs = nin;
  ir_kernel_args_t a = {.node = &node, .in = in, .nin = nin, .out = out, .nout = 1, .par = par};
  ad_status_t st = ir_op_info(op)->kernel(&a);
  if (st) ck_abort_msg("%s kernel failed: %s", ir_op_name(op), ad_status_message(st));
}

static bool same_bits(const ir_tensor_t *a, const ir_tensor_t *b) {
  return ir_tensor_numel(a) == ir_tensor_numel(b) &&
         memcmp(a->data, b->data, (size_t)ir_tensor_numel(a) * ir_dtype_size(a->dtype)) == 0;
}

static const ir_dtype_t k_dtypes[2] = {IR_DTYPE_F32, IR_DTYPE_F64};

/* ---- golden cases ----------------------------------------------------------------------- */

START_TEST(test_golden) {
  op_harness_tol_t tol = op_harness_default_tol();
  ck_assert_int_eq(op_harness_run_file("tests/golden/ops_pool.safetensors", &tol), 0);
}
END_TEST

/* ---- a row with no valid token: exact zeros both ways ------------------------------------- */

START_TEST(test_empty_row) {
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = k_dtypes[di];
    ir_tensor_t in[2] = {tensor(dt, 3, (int64_t[]){2, 4, 3}), tensor(dt, 2, (int64_t[]){2, 4})};
    fill_random(&in[0], 5.0);
    for (int t = 0; t < 4; t++) set(&in[1], t, 1.0); /* row 0 full, row 1 empty */
    ir_tensor_t y = tensor(dt, 2, (int64_t[]){2, 3});
    run_kernel(IR_OP_MASKED_MEAN_POOL, in, 2, &y, NULL);
    for (int e = 0; e < 3; e++) {
      double mean = 0;
      for (int t = 0; t < 4; t++) mean += get(&in[0], t * 3 + e);
      ck_assert_double_le(fabs(get(&y, e) - mean / 4), dt == IR_DTYPE_F64 ? 1e-15 : 1e-6);
      ck_assert(get(&y, 3 + e) == 0.0);
    }
    ir_tensor_t bin[3] = {in[1], tensor(dt, 2, (int64_t[]){2, 3}), in[0]}; /* mask, dy, like_h */
    fill_random(&bin[1], 1.0);
    ir_tensor_t dh = tensor(dt, 3, (int64_t[]){2, 4, 3});
    fill_random(&dh, 1.0); /* the kernel must overwrite every element */
    run_kernel(IR_OP_MASKED_MEAN_POOL_BWD, bin, 3, &dh, NULL);
    for (int t = 0; t < 4; t++)
      for (int e = 0; e < 3; e++) {
        ck_assert(get(&dh, (4 + t) * 3 + e) == 0.0);
        ck_assert_double_le(fabs(get(&dh, t * 3 + e) - get(&bin[1], e) / 4),
                            dt == IR_DTYPE_F64 ? 1e-16 : 1e-7);
      }
    free(in[0].data);
    free(in[1].data);
    free(bin[1].data);
    free(y.data);
    free(dh.data);
  }
}
END_TEST

/* ---- padding never changes the pooled bits; threads never change anything ---------------- */

/* Pools one sample of `valid` tokens stored at length L (garbage beyond, mask 0 there) as
 * row 1 of a batch of 3, on `par`; returns its pooled [H] row in y (row 1). */
static ir_tensor_t pool_padded(ir_dtype_t dt, const ir_tensor_t *ref, int64_t valid, int64_t L,
                               ir_parallel_t *par) {
  enum { H = 7 };
  ir_tensor_t in[2] = {tensor(dt, 3, (int64_t[]){3, L, H}), tensor(dt, 2, (int64_t[]){3, L})};
  fill_random(&in[0], 1e4);
  for (int64_t i = 0; i < 3 * L; i++) set(&in[1], i, (i % 5) != 0); /* other rows: some mask */
  for (int64_t t = 0; t < L; t++) {
    set(&in[1], L + t, t < valid ? 1.0 : 0.0);
    if (t < valid)
      for (int e = 0; e < H; e++) set(&in[0], (L + t) * H + e, get(ref, t * H + e));
  }
  ir_tensor_t y = tensor(dt, 2, (int64_t[]){3, H});
  run_kernel(IR_OP_MASKED_MEAN_POOL, in, 2, &y, par);
  free(in[0].data);
  free(in[1].data);
  return y;
}

START_TEST(test_padding_and_threads) {
  static const int64_t cases[][2] = {{5, 8}, {11, 24}, {17, 40}};
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = k_dtypes[di];
    size_t row = 7 * ir_dtype_size(dt);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
      int64_t valid = cases[c][0], L = cases[c][1];
      ir_tensor_t ref = tensor(dt, 2, (int64_t[]){valid, 7});
      fill_random(&ref, 3.0);
      two_threads_t two = {{two_run}, 0};
      ir_tensor_t a = pool_padded(dt, &ref, valid, valid, NULL);
      ir_tensor_t b = pool_padded(dt, &ref, valid, L, NULL);
      ir_tensor_t b2 = pool_padded(dt, &ref, valid, L, &two.base);
      ck_assert_msg(memcmp((char *)a.data + row, (char *)b.data + row, row) == 0,
                    "pooled row differs at L=%lld (valid %lld, %s)", (long long)L, (long long)valid,
                    ir_dtype_name(dt));
      ck_assert_int_gt(two.splits, 0);
      /* b and b2 pooled different garbage; their row 1 must agree bit for bit */
      ck_assert(memcmp((char *)b.data + row, (char *)b2.data + row, row) == 0);
      free(ref.data);
      free(a.data);
      free(b.data);
      free(b2.data);
    }
    /* the backward on 1 vs 2 threads */
    ir_tensor_t bin[3] = {tensor(dt, 2, (int64_t[]){5, 9}), tensor(dt, 2, (int64_t[]){5, 4}),
                          tensor(dt, 3, (int64_t[]){5, 9, 4})};
    for (int64_t i = 0; i < 45; i++) set(&bin[0], i, (double)((i * 7) % 3) * 0.5);
    fill_random(&bin[1], 1.0);
    ir_tensor_t d1 = tensor(dt, 3, (int64_t[]){5, 9, 4}), d2 = tensor(dt, 3, (int64_t[]){5, 9, 4});
    two_threads_t two = {{two_run}, 0};
    run_kernel(IR_OP_MASKED_MEAN_POOL_BWD, bin, 3, &d1, NULL);
    run_kernel(IR_OP_MASKED_MEAN_POOL_BWD, bin, 3, &d2, &two.base);
    ck_assert_int_gt(two.splits, 0);
    ck_assert(same_bits(&d1, &d2));
    for (int i = 0; i < 3; i++) free(bin[i].data);
    free(d1.data);
    free(d2.data);
  }
}
END_TEST

/* ---- cls pooling: any dtype, the backward is zero except position 0 ----------------------- */

START_TEST(test_cls_pool) {
  ir_tensor_t h = tensor(IR_DTYPE_I64, 3, (int64_t[]){2, 3, 2});
  for (int64_t i = 0; i < 12; i++) ((int64_t *)h.data)[i] = 100 + i;
  ir_tensor_t y = tensor(IR_DTYPE_I64, 2, (int64_t[]){2, 2});
  run_kernel(IR_OP_CLS_POOL, &h, 1, &y, NULL);
  int64_t *yv = y.data;
  ck_assert(yv[0] == 100 && yv[1] == 101 && yv[2] == 106 && yv[3] == 107);

  ir_tensor_t in[2] = {tensor(IR_DTYPE_F32, 2, (int64_t[]){2, 2}),
                       tensor(IR_DTYPE_F32, 3, (int64_t[]){2, 3, 2})}; /* dy, like_h */
  fill_random(&in[0], 1.0);
  fill_random(&in[1], 1.0);
  ir_tensor_t dh = tensor(IR_DTYPE_F32, 3, (int64_t[]){2, 3, 2});
  fill_random(&dh, 1.0);
  run_kernel(IR_OP_CLS_POOL_BWD, in, 2, &dh, NULL);
  for (int b = 0; b < 2; b++)
    for (int t = 0; t < 3; t++)
      for (int e = 0; e < 2; e++)
        ck_assert(get(&dh, (b * 3 + t) * 2 + e) == (t == 0 ? get(&in[0], b * 2 + e) : 0.0));
  free(h.data);
  free(y.data);
  free(in[0].data);
  free(in[1].data);
  free(dh.data);
}
END_TEST

static uint32_t emit(ir_graph_t *g, ir_op_t op, const uint32_t *ins, uint32_t nin,
                     const ir_attr_t *attrs, uint32_t nattrs) {
  ir_node_desc_t d = {.op = op, .inputs = ins, .ninputs = nin, .attrs = attrs, .nattrs = nattrs};
  return ir_build(g, &d);
}

/* ---- inference --------------------------------------------------------------------------- */

static uint32_t input(ir_graph_t *g, const char *name, ir_dtype_t dt, int rank,
                      const ir_dim_t *dims) {
  ir_type_t t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  ir_node_desc_t d = {.op = IR_OP_INPUT, .name = name, .out_types = &t, .nout_types = 1};
  uint32_t v = ir_build(g, &d);
  ck_assert_uint_ne(v, IR_NONE);
  return v;
}

static void expect_error(ir_graph_t *g, ir_op_t op, const uint32_t *ins, uint32_t nin,
                         const char *needle) {
  ck_assert_uint_eq(emit(g, op, ins, nin, NULL, 0), IR_NONE);
  ad_status_t st = ir_graph_take_error(g);
  ck_assert_ptr_nonnull(st);
  ck_assert_msg(strstr(ad_status_message(st), needle), "message '%s' lacks '%s'",
                ad_status_message(st), needle);
  ad_status_free(st);
}

START_TEST(test_infer) {
  ir_module_t *m = ir_module_create();
  int B, L;
  ck_assert_ptr_null(ir_module_add_symbol(m, "B", 4, &B));
  ck_assert_ptr_null(ir_module_add_symbol(m, "L", 8, &L));
  ir_graph_t *g = ir_module_add_program(m, "main");
  ir_dim_t b = ir_dim_sym(B), l = ir_dim_sym(L), six = ir_dim_const(6);
  uint32_t h = input(g, "h", IR_DTYPE_F32, 3, (ir_dim_t[]){b, l, six});
  uint32_t mask = input(g, "mask", IR_DTYPE_F32, 2, (ir_dim_t[]){b, l});
  uint32_t badmask = input(g, "badmask", IR_DTYPE_F32, 2, (ir_dim_t[]){b, six});
  uint32_t ids = input(g, "ids", IR_DTYPE_I64, 1, (ir_dim_t[]){b});

  uint32_t y = emit(g, IR_OP_MASKED_MEAN_POOL, (uint32_t[]){h, mask}, 2, NULL, 0);
  ck_assert_uint_ne(y, IR_NONE);
  const ir_type_t *ty = ir_value_type(g, y);
  ck_assert_int_eq(ty->rank, 2);
  ck_assert(ir_dim_equal(ty->dims[0], b) && ir_dim_equal(ty->dims[1], six));
  uint32_t c = emit(g, IR_OP_CLS_POOL, &h, 1, NULL, 0);
  ck_assert(ir_type_equal(ir_value_type(g, c), ty));
  uint32_t dh = emit(g, IR_OP_MASKED_MEAN_POOL_BWD, (uint32_t[]){mask, y, h}, 3, NULL, 0);
  ck_assert(ir_type_equal(ir_value_type(g, dh), ir_value_type(g, h)));
  uint32_t ch = emit(g, IR_OP_CLS_POOL_BWD, (uint32_t[]){c, h}, 2, NULL, 0);
  ck_assert(ir_type_equal(ir_value_type(g, ch), ir_value_type(g, h)));

  expect_error(g, IR_OP_MASKED_MEAN_POOL, (uint32_t[]){h, badmask}, 2, "mask");
  expect_error(g, IR_OP_CLS_POOL, &ids, 1, "rank");
  expect_error(g, IR_OP_CLS_POOL_BWD, (uint32_t[]){h, dh}, 2, "dy");
  ck_assert_uint_eq(ir_op_info(IR_OP_MASKED_MEAN_POOL)->nondiff_inputs, 1u << 1);
  ir_module_free(m);
}
END_TEST

static Suite *pool_suite(void) {
  Suite *s = suite_create("ops_pool");
  TCase *tc = tcase_create("pool");
  tcase_add_test(tc, test_golden);
  tcase_add_test(tc, test_empty_row);
  tcase_add_test(tc, test_padding_and_threads);
  tcase_add_test(tc, test_cls_pool);
  tcase_add_test(tc, test_infer);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(pool_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
