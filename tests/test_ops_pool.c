/* The pool group (masked_mean_pool, cls_pool and their backwards): golden cases against
 * ModelGenerator's pooling in torch (forward, VJP vs autograd, f64 finite differences) through
 * the op harness, plus: a row with no valid token pools to exact zeros and gets zero gradient,
 * padding a sample never changes its pooled bits, results do not depend on the thread count,
 * cls pooling copies any dtype, and inference rejects malformed nodes. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/op_harness.h"
#include "tests/support/test_util.h"

/* This suite's own xorshift stream (tu_urand, tu_fill), so its inputs stay as they were. */
static uint64_t g_rng = 0x243f6a8885a308d3ull;

static const char k_node[] = "test.node"; /* the bare kernels' node name */
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
    ir_tensor_t in[2] = {tu_tensor(dt, 3, (int64_t[]){2, 4, 3}),
                         tu_tensor(dt, 2, (int64_t[]){2, 4})};
    tu_fill(&in[0], &g_rng, 5.0, 0.0);
    for (int t = 0; t < 4; t++) tu_set(&in[1], t, 1.0); /* row 0 full, row 1 empty */
    ir_tensor_t y = tu_tensor(dt, 2, (int64_t[]){2, 3});
    tu_run_kernel(IR_OP_MASKED_MEAN_POOL, k_node, NULL, 0, in, 2, &y, 1, NULL);
    for (int e = 0; e < 3; e++) {
      double mean = 0;
      for (int t = 0; t < 4; t++) mean += tu_get(&in[0], t * 3 + e);
      ck_assert_double_le(fabs(tu_get(&y, e) - mean / 4), dt == IR_DTYPE_F64 ? 1e-15 : 1e-6);
      ck_assert(tu_get(&y, 3 + e) == 0.0);
    }
    ir_tensor_t bin[3] = {in[1], tu_tensor(dt, 2, (int64_t[]){2, 3}), in[0]}; /* mask, dy, like_h */
    tu_fill(&bin[1], &g_rng, 1.0, 0.0);
    ir_tensor_t dh = tu_tensor(dt, 3, (int64_t[]){2, 4, 3});
    tu_fill(&dh, &g_rng, 1.0, 0.0); /* the kernel must overwrite every element */
    tu_run_kernel(IR_OP_MASKED_MEAN_POOL_BWD, k_node, NULL, 0, bin, 3, &dh, 1, NULL);
    for (int t = 0; t < 4; t++)
      for (int e = 0; e < 3; e++) {
        ck_assert(tu_get(&dh, (4 + t) * 3 + e) == 0.0);
        ck_assert_double_le(fabs(tu_get(&dh, t * 3 + e) - tu_get(&bin[1], e) / 4),
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
  ir_tensor_t in[2] = {tu_tensor(dt, 3, (int64_t[]){3, L, H}), tu_tensor(dt, 2, (int64_t[]){3, L})};
  tu_fill(&in[0], &g_rng, 1e4, 0.0);
  for (int64_t i = 0; i < 3 * L; i++) tu_set(&in[1], i, (i % 5) != 0); /* other rows: some mask */
  for (int64_t t = 0; t < L; t++) {
    tu_set(&in[1], L + t, t < valid ? 1.0 : 0.0);
    if (t < valid)
      for (int e = 0; e < H; e++) tu_set(&in[0], (L + t) * H + e, tu_get(ref, t * H + e));
  }
  ir_tensor_t y = tu_tensor(dt, 2, (int64_t[]){3, H});
  tu_run_kernel(IR_OP_MASKED_MEAN_POOL, k_node, NULL, 0, in, 2, &y, 1, par);
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
      ir_tensor_t ref = tu_tensor(dt, 2, (int64_t[]){valid, 7});
      tu_fill(&ref, &g_rng, 3.0, 0.0);
      tu_two_threads_t two = tu_two_threads();
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
    ir_tensor_t bin[3] = {tu_tensor(dt, 2, (int64_t[]){5, 9}), tu_tensor(dt, 2, (int64_t[]){5, 4}),
                          tu_tensor(dt, 3, (int64_t[]){5, 9, 4})};
    for (int64_t i = 0; i < 45; i++) tu_set(&bin[0], i, (double)((i * 7) % 3) * 0.5);
    tu_fill(&bin[1], &g_rng, 1.0, 0.0);
    ir_tensor_t d1 = tu_tensor(dt, 3, (int64_t[]){5, 9, 4}),
                d2 = tu_tensor(dt, 3, (int64_t[]){5, 9, 4});
    tu_two_threads_t two = tu_two_threads();
    tu_run_kernel(IR_OP_MASKED_MEAN_POOL_BWD, k_node, NULL, 0, bin, 3, &d1, 1, NULL);
    tu_run_kernel(IR_OP_MASKED_MEAN_POOL_BWD, k_node, NULL, 0, bin, 3, &d2, 1, &two.base);
    ck_assert_int_gt(two.splits, 0);
    ck_assert(tu_same_bits(&d1, &d2));
    for (int i = 0; i < 3; i++) free(bin[i].data);
    free(d1.data);
    free(d2.data);
  }
}
END_TEST

/* ---- cls pooling: any dtype, the backward is zero except position 0 ----------------------- */

START_TEST(test_cls_pool) {
  ir_tensor_t h = tu_tensor(IR_DTYPE_I64, 3, (int64_t[]){2, 3, 2});
  for (int64_t i = 0; i < 12; i++) ((int64_t *)h.data)[i] = 100 + i;
  ir_tensor_t y = tu_tensor(IR_DTYPE_I64, 2, (int64_t[]){2, 2});
  tu_run_kernel(IR_OP_CLS_POOL, k_node, NULL, 0, &h, 1, &y, 1, NULL);
  int64_t *yv = y.data;
  ck_assert(yv[0] == 100 && yv[1] == 101 && yv[2] == 106 && yv[3] == 107);

  ir_tensor_t in[2] = {tu_tensor(IR_DTYPE_F32, 2, (int64_t[]){2, 2}),
                       tu_tensor(IR_DTYPE_F32, 3, (int64_t[]){2, 3, 2})}; /* dy, like_h */
  tu_fill(&in[0], &g_rng, 1.0, 0.0);
  tu_fill(&in[1], &g_rng, 1.0, 0.0);
  ir_tensor_t dh = tu_tensor(IR_DTYPE_F32, 3, (int64_t[]){2, 3, 2});
  tu_fill(&dh, &g_rng, 1.0, 0.0);
  tu_run_kernel(IR_OP_CLS_POOL_BWD, k_node, NULL, 0, in, 2, &dh, 1, NULL);
  for (int b = 0; b < 2; b++)
    for (int t = 0; t < 3; t++)
      for (int e = 0; e < 2; e++)
        ck_assert(tu_get(&dh, (b * 3 + t) * 2 + e) == (t == 0 ? tu_get(&in[0], b * 2 + e) : 0.0));
  free(h.data);
  free(y.data);
  free(in[0].data);
  free(in[1].data);
  free(dh.data);
}
END_TEST

/* ---- inference --------------------------------------------------------------------------- */

static uint32_t input(ir_graph_t *g, const char *name, ir_dtype_t dt, int rank,
                      const ir_dim_t *dims) {
  ir_type_t t = tu_static_type(dt, 0, NULL);
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  return tu_input(g, name, &t);
}

static void expect_error(ir_graph_t *g, ir_op_t op, const uint32_t *ins, uint32_t nin,
                         const char *needle) {
  tu_expect_build_error(g, tu_node(g, op, NULL, ins, nin, NULL, 0, NULL), needle, NULL);
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

  uint32_t y = tu_node(g, IR_OP_MASKED_MEAN_POOL, NULL, (uint32_t[]){h, mask}, 2, NULL, 0, NULL);
  ck_assert_uint_ne(y, IR_NONE);
  const ir_type_t *ty = ir_value_type(g, y);
  ck_assert_int_eq(ty->rank, 2);
  ck_assert(ir_dim_equal(ty->dims[0], b) && ir_dim_equal(ty->dims[1], six));
  uint32_t c = tu_node(g, IR_OP_CLS_POOL, NULL, &h, 1, NULL, 0, NULL);
  ck_assert(ir_type_equal(ir_value_type(g, c), ty));
  uint32_t dh =
      tu_node(g, IR_OP_MASKED_MEAN_POOL_BWD, NULL, (uint32_t[]){mask, y, h}, 3, NULL, 0, NULL);
  ck_assert(ir_type_equal(ir_value_type(g, dh), ir_value_type(g, h)));
  uint32_t ch = tu_node(g, IR_OP_CLS_POOL_BWD, NULL, (uint32_t[]){c, h}, 2, NULL, 0, NULL);
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

int main(void) { return tu_run_suite(pool_suite()); }
