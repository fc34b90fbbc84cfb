/* The reduce group (reduce_sum/mean/max, reduce_max_bwd, expand, sum_to): golden cases against
 * torch (forward, VJP vs autograd, f64 finite differences) through the op harness, plus what
 * goldens cannot show: f32 sums accumulate in double (a sum f32 arithmetic would stall), f64
 * sums are pairwise, results are bit-identical for any thread count, the mean's gradient
 * divides by the actual count when the reduced dim is a symbol, ties share amax's gradient
 * and NaN propagates, and inference rejects malformed nodes with a message naming them. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "runtime/interp.h"
#include "tests/support/op_harness.h"
#include "tests/support/test_util.h"

/* This suite's own xorshift stream (tu_urand, tu_fill), so its inputs stay as they were. */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

/* ---- goldens ------------------------------------------------------------------------------ */

START_TEST(golden_cases) {
  op_harness_tol_t tol = op_harness_default_tol();
  ck_assert_int_eq(op_harness_run_file("tests/golden/ops_reduce.safetensors", &tol), 0);
}
END_TEST

/* ---- accumulation ------------------------------------------------------------------------- */

START_TEST(f32_sum_accumulates_in_double) {
  /* 2^24 followed by 64 ones: f32 running sums stall at 2^24 (each +1 rounds away), the
   * double accumulator reaches 2^24 + 64, which f32 represents exactly. */
  tu_fx_t f = tu_fx_new();
  int64_t d[1] = {65};
  uint32_t x = tu_fx_input(&f, "x", IR_DTYPE_F32, 1, d);
  int64_t axes[1] = {0};
  ir_attr_t at[1] = {IR_ATTR_INTS("axes", axes, 1)};
  uint32_t s = tu_fx_op(&f, IR_OP_REDUCE_SUM, "sum", &x, 1, at, 1);
  uint32_t m = tu_fx_op(&f, IR_OP_REDUCE_MEAN, "mean", &x, 1, at, 1);
  ck_assert(s != IR_NONE && m != IR_NONE);
  ir_tensor_t in = tu_tensor(IR_DTYPE_F32, 1, d), out = tu_tensor_of(&f, s),
              out2 = tu_tensor_of(&f, m);
  float *px = in.data;
  px[0] = 16777216.0f;
  for (int i = 1; i < 65; i++) px[i] = 1.0f;
  tu_run_node(&f, s, &in, 1, &out, NULL);
  tu_run_node(&f, m, &in, 1, &out2, NULL);
  ck_assert_float_eq(*(float *)out.data, 16777280.0f);
  ck_assert_float_eq(*(float *)out2.data, (float)(16777280.0 / 65.0));
  free(in.data);
  free(out.data);
  free(out2.data);
  ir_module_free(f.m);
}
END_TEST

START_TEST(f64_sum_is_pairwise) {
  /* 2^20 copies of 0.1: a left-to-right double sum drifts by ~1e-11 relative, the pairwise
   * one stays within a few ulps of the exact value (2^20 * 0.1 in binary, computed exactly). */
  enum { N = 1 << 20 };
  tu_fx_t f = tu_fx_new();
  int64_t d[1] = {N};
  uint32_t x = tu_fx_input(&f, "x", IR_DTYPE_F64, 1, d);
  uint32_t s = tu_fx_op(&f, IR_OP_REDUCE_SUM, "sum", &x, 1, NULL, 0); /* no axes: all */
  ck_assert_uint_ne(s, IR_NONE);
  ck_assert_int_eq(ir_value_type(f.g, s)->rank, 0);
  ir_tensor_t in = tu_tensor(IR_DTYPE_F64, 1, d), out = tu_tensor_of(&f, s);
  double naive = 0.0;
  for (int i = 0; i < N; i++) {
    ((double *)in.data)[i] = 0.1;
    naive += 0.1;
  }
  tu_run_node(&f, s, &in, 1, &out, NULL);
  double exact = ldexp(0.1, 20), got = *(double *)out.data;
  ck_assert_msg(fabs(got - exact) <= 4 * 2.2e-16 * exact, "pairwise sum %.17g vs %.17g", got,
                exact);
  ck_assert_msg(fabs(naive - exact) > fabs(got - exact), "the test should separate the two");
  free(in.data);
  free(out.data);
  ir_module_free(f.m);
}
END_TEST

/* ---- determinism ------------------------------------------------------------------------- */

static void check_thread_invariant(ir_dtype_t dt, ir_op_t op, const int64_t *axes, uint32_t na,
                                   int keepdim) {
  tu_fx_t f = tu_fx_new();
  int64_t d[3] = {37, 129, 23};
  uint32_t x = tu_fx_input(&f, "x", dt, 3, d);
  ir_attr_t at[2] = {IR_ATTR_INTS("axes", axes, na), IR_ATTR_I("keepdim", keepdim)};
  uint32_t y = tu_fx_op(&f, op, "r", &x, 1, at, 2);
  ck_assert_uint_ne(y, IR_NONE);
  ir_tensor_t in = tu_tensor(dt, 3, d);
  tu_fill(&in, &g_rng, 1.0, 0.0);
  ir_tensor_t a = tu_tensor_of(&f, y), b = tu_tensor_of(&f, y);
  tu_two_threads_t two = tu_two_threads();
  tu_run_node(&f, y, &in, 1, &a, NULL);
  tu_run_node(&f, y, &in, 1, &b, &two.base);
  ck_assert_int_gt(two.splits, 0);
  size_t bytes = (size_t)ir_tensor_numel(&a) * ir_dtype_size(dt);
  ck_assert_msg(memcmp(a.data, b.data, bytes) == 0, "%s differs between 1 and 2 threads",
                ir_op_name(op));
  free(in.data);
  free(a.data);
  free(b.data);
  ir_module_free(f.m);
}

START_TEST(results_do_not_depend_on_threads) {
  const int64_t last[1] = {-1}, outer[2] = {0, 2}, mid[1] = {1};
  for (int k = 0; k < 2; k++) {
    ir_dtype_t dt = k ? IR_DTYPE_F64 : IR_DTYPE_F32;
    check_thread_invariant(dt, IR_OP_REDUCE_SUM, last, 1, 0);
    check_thread_invariant(dt, IR_OP_REDUCE_SUM, outer, 2, 1);
    check_thread_invariant(dt, IR_OP_REDUCE_MEAN, mid, 1, 0);
    check_thread_invariant(dt, IR_OP_REDUCE_MAX, outer, 2, 0);
  }
}
END_TEST

/* ---- amax semantics ------------------------------------------------------------------------ */

START_TEST(max_ties_share_and_nan_propagates) {
  tu_fx_t f = tu_fx_new();
  int64_t d[2] = {2, 4}, dr[1] = {2};
  uint32_t x = tu_fx_input(&f, "x", IR_DTYPE_F64, 2, d);
  uint32_t y = tu_fx_input(&f, "y", IR_DTYPE_F64, 1, dr);
  uint32_t dy = tu_fx_input(&f, "dy", IR_DTYPE_F64, 1, dr);
  int64_t axes[1] = {1};
  ir_attr_t at[1] = {IR_ATTR_INTS("axes", axes, 1)};
  uint32_t mx = tu_fx_op(&f, IR_OP_REDUCE_MAX, "max", &x, 1, at, 1);
  uint32_t ins[3] = {x, y, dy};
  uint32_t bwd = tu_fx_op(&f, IR_OP_REDUCE_MAX_BWD, "max_bwd", ins, 3, at, 1);
  ck_assert(mx != IR_NONE && bwd != IR_NONE);
  ir_tensor_t t[3] = {tu_tensor(IR_DTYPE_F64, 2, d), tu_tensor(IR_DTYPE_F64, 1, dr),
                      tu_tensor(IR_DTYPE_F64, 1, dr)};
  const double xv[8] = {1, 3, 3, 2, -1, NAN, 5, 0};
  memcpy(t[0].data, xv, sizeof xv);
  ir_tensor_t ym = tu_tensor_of(&f, mx), dx = tu_tensor_of(&f, bwd);
  tu_run_node(&f, mx, t, 1, &ym, NULL);
  const double *pm = ym.data;
  ck_assert(pm[0] == 3.0 && isnan(pm[1]));
  /* Row 0: the two 3s share dy = 6 equally. */
  ((double *)t[1].data)[0] = 3.0;
  ((double *)t[1].data)[1] = 5.0;
  ((double *)t[2].data)[0] = 6.0;
  ((double *)t[2].data)[1] = -2.0;
  tu_run_node(&f, bwd, t, 3, &dx, NULL);
  const double *g = dx.data;
  const double want[8] = {0, 3, 3, 0, 0, 0, -2, 0};
  for (int i = 0; i < 8; i++) ck_assert_msg(g[i] == want[i], "dx[%d] = %g", i, g[i]);
  for (int i = 0; i < 3; i++) free(t[i].data);
  free(ym.data);
  free(dx.data);
  ir_module_free(f.m);
}
END_TEST

/* ---- the mean's gradient uses the actual count ------------------------------------------- */

START_TEST(mean_vjp_divides_by_actual_count) {
  ir_module_t *m = ir_module_create();
  int sym;
  ck_assert_ptr_null(ir_module_add_symbol(m, "L", 8, &sym));
  ir_graph_t *g = ir_module_add_program(m, "test");
  ir_type_t tx;
  memset(&tx, 0, sizeof tx);
  tx.dtype = IR_DTYPE_F64;
  tx.rank = 2;
  tx.dims[0] = ir_dim_sym(sym);
  tx.dims[1] = ir_dim_const(2);
  ir_type_t tdy = tx;
  tdy.rank = 1;
  tdy.dims[0] = ir_dim_const(2);
  ir_node_desc_t dx_in = {.op = IR_OP_INPUT, .name = "x", .out_types = &tx, .nout_types = 1};
  ir_node_desc_t ddy_in = {.op = IR_OP_INPUT, .name = "dy", .out_types = &tdy, .nout_types = 1};
  uint32_t x = ir_build(g, &dx_in), dy = ir_build(g, &ddy_in);
  int64_t axes[1] = {0};
  ir_attr_t at[2] = {IR_ATTR_INTS("axes", axes, 1), IR_ATTR_I("keepdim", 0)};
  ir_node_desc_t dm = {.op = IR_OP_REDUCE_MEAN, .name = "mean", .inputs = &x, .ninputs = 1,
                       .attrs = at, .nattrs = 2};
  uint32_t y = ir_build(g, &dm);
  ck_assert_uint_ne(y, IR_NONE);
  uint32_t gx = IR_NONE;
  ir_vjp_ctx_t c = {.g = g, .node = *ir_value_producer(g, y), .out_grads = &dy, .in_grads = &gx};
  ck_assert_ptr_null(ir_op_info(IR_OP_REDUCE_MEAN)->vjp(&c));
  ck_assert_ptr_null(g->error);
  ck_assert_uint_ne(gx, IR_NONE);
  ir_node_desc_t dout = {.op = IR_OP_OUTPUT, .name = "dx", .inputs = &gx, .ninputs = 1};
  ir_build(g, &dout);
  ck_assert_ptr_null(g->error);
  for (int64_t L = 1; L <= 8; L += 3) {
    rt_interp_t *it;
    ck_assert_ptr_null(rt_interp_create(g, &L, &it));
    double xv[16] = {0}, dyv[2] = {3.0, -7.0};
    ck_assert_ptr_null(rt_interp_set_input(it, "x", xv, sizeof(double) * 2 * (size_t)L));
    ck_assert_ptr_null(rt_interp_set_input(it, "dy", dyv, sizeof dyv));
    ad_status_t st = rt_interp_run(it, NULL);
    ck_assert_msg(st == NULL, "%s", st ? ad_status_message(st) : "");
    const ir_tensor_t *out = rt_interp_output(it, "dx");
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(out->dims[0], L);
    const double *p = out->data;
    for (int64_t i = 0; i < L; i++) {
      ck_assert_double_eq(p[2 * i], 3.0 / (double)L);
      ck_assert_double_eq(p[2 * i + 1], -7.0 / (double)L);
    }
    rt_interp_free(it);
  }
  ir_module_free(m);
}
END_TEST

/* ---- inference errors -------------------------------------------------------------------- */

START_TEST(infer_errors_name_the_node) {
  tu_fx_t f = tu_fx_new();
  int64_t d[3] = {2, 3, 4}, d2[2] = {5, 4}, dr[2] = {2, 4};
  uint32_t x = tu_fx_input(&f, "x", IR_DTYPE_F32, 3, d),
           w = tu_fx_input(&f, "w", IR_DTYPE_F32, 2, d2);
  uint32_t r = tu_fx_input(&f, "r", IR_DTYPE_F32, 2, dr);
  uint32_t k = tu_fx_input(&f, "k", IR_DTYPE_I64, 3, d);
  int64_t out_of_range[1] = {3}, repeated[2] = {1, -2};
  ir_attr_t a1 = IR_ATTR_INTS("axes", out_of_range, 1), a2 = IR_ATTR_INTS("axes", repeated, 2);
  tu_fx_expect_error(&f, IR_OP_REDUCE_SUM, "enc.sum", &x, 1, &a1, 1, "out of range");
  tu_fx_expect_error(&f, IR_OP_REDUCE_MAX, "enc.max", &x, 1, &a2, 1, "repeated");
  tu_fx_expect_error(&f, IR_OP_REDUCE_MEAN, "int_mean", &k, 1, NULL, 0, "f32 or f64");
  uint32_t xw[2] = {x, w}, wx[2] = {w, x};
  tu_fx_expect_error(&f, IR_OP_SUM_TO, "sum_to", xw, 2, NULL, 0, "cannot be summed");
  tu_fx_expect_error(&f, IR_OP_EXPAND, "expand", wx, 2, NULL, 0, "does not broadcast");
  /* reduce_max_bwd: y must have x's reduced type ([2,4] for axis 1 without keepdim). */
  int64_t ax1[1] = {1};
  ir_attr_t a3 = IR_ATTR_INTS("axes", ax1, 1);
  uint32_t bad[3] = {x, w, r}, good[3] = {x, r, r};
  tu_fx_expect_error(&f, IR_OP_REDUCE_MAX_BWD, "mbwd", bad, 3, &a3, 1, "y must have");
  ck_assert_uint_ne(tu_fx_op(&f, IR_OP_REDUCE_MAX_BWD, "mbwd_ok", good, 3, &a3, 1), IR_NONE);
  ir_module_free(f.m);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ops_reduce");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, golden_cases);
  tcase_add_test(tc, f32_sum_accumulates_in_double);
  tcase_add_test(tc, f64_sum_is_pairwise);
  tcase_add_test(tc, results_do_not_depend_on_threads);
  tcase_add_test(tc, max_ties_share_and_nan_propagates);
  tcase_add_test(tc, mean_vjp_divides_by_actual_count);
  tcase_add_test(tc, infer_errors_name_the_node);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(suite()); }
