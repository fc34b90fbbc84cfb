/* The norm group (softmax, layernorm, rmsnorm and their backwards): golden cases against
 * torch through the op harness (forward, VJP vs autograd, f64 finite differences), plus what
 * goldens cannot show: long f32 rows still sum to 1 (double accumulation), every kernel is
 * bit-identical on 1 and 2 threads (row and column splits), the backward ops' output counts
 * follow the presence of w, the VJPs wire the right values and ignore mean/rstd cotangents,
 * inference names the node on malformed inputs, and non-f32/f64 kernels refuse cleanly. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/op_harness.h"
#include "tests/support/test_util.h"

/* This suite's own xorshift stream (tu_urand, tu_fill), so its inputs stay as they were. */
static uint64_t g_rng = 0xa4093822299f31d0ull;

static const char k_node[] = "enc.norm"; /* the bare kernels' node name */
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
  ir_tensor_t x = tu_tensor(IR_DTYPE_F32, 2, (int64_t[]){2, H});
  tu_fill(&x, &g_rng, 4.0, 0.0);
  for (int64_t i = H; i < 2 * H; i++) tu_set(&x, i, 3.0); /* row 1 constant: exactly uniform */
  ir_tensor_t y = tu_tensor(IR_DTYPE_F32, 2, (int64_t[]){2, H});
  tu_run_kernel(IR_OP_SOFTMAX, k_node, NULL, 0, &x, 1, &y, 1, NULL);
  double sum = 0.0;
  for (int64_t i = 0; i < H; i++) sum += tu_get(&y, i);
  ck_assert_double_le(fabs(sum - 1.0), 1e-6);
  for (int64_t i = H; i < 2 * H; i++) ck_assert(tu_get(&y, i) == (double)(float)(1.0 / H));

  /* layernorm of a row with a large offset: mean exact, output standardised */
  for (int64_t i = 0; i < H; i++) tu_set(&x, i, 1000.0 + (i % 2 ? 1.0 : -1.0));
  ir_attr_t eps = IR_ATTR_F("eps", 0.0);
  ir_tensor_t out[3] = {tu_tensor(IR_DTYPE_F32, 2, (int64_t[]){2, H}),
                        tu_tensor(IR_DTYPE_F32, 1, (int64_t[]){2}),
                        tu_tensor(IR_DTYPE_F32, 1, (int64_t[]){2})};
  tu_run_kernel(IR_OP_LAYERNORM, k_node, &eps, 1, &x, 1, out, 3, NULL);
  /* H is odd: one more -1 than +1 */
  double mean = 1000.0 - 1.0 / H, var = 1.0 - 1.0 / ((double)H * H);
  ck_assert_double_le(fabs(tu_get(&out[1], 0) - mean), 1e-4);
  ck_assert_double_le(fabs(tu_get(&out[2], 0) - 1.0 / sqrt(var)), 1e-6);
  ck_assert_double_le(fabs(tu_get(&out[0], 0) - (999.0 - mean) / sqrt(var)), 1e-6);
  ck_assert_double_le(fabs(tu_get(&out[0], 1) - (1001.0 - mean) / sqrt(var)), 1e-6);
  free(x.data);
  free(y.data);
  tu_free_tensors(out, 3);
}
END_TEST

/* ---- thread-count independence ------------------------------------------------------------- */

START_TEST(test_threads) {
  enum { N = 700, H = 53 }; /* above the row grain, so both threads get rows */
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = k_dtypes[di];
    int64_t xd[2] = {N, H}, wd[1] = {H}, rd[1] = {N};
    ir_tensor_t x = tu_tensor(dt, 2, xd), w = tu_tensor(dt, 1, wd), b = tu_tensor(dt, 1, wd);
    ir_tensor_t dy = tu_tensor(dt, 2, xd);
    tu_fill(&x, &g_rng, 3.0, 1.0);
    tu_fill(&w, &g_rng, 1.0, 1.0);
    tu_fill(&b, &g_rng, 1.0, 0.0);
    tu_fill(&dy, &g_rng, 1.0, 0.0);
    ir_attr_t eps = IR_ATTR_F("eps", 1e-5);
    for (int rep = 0; rep < 2; rep++) {
      bool rms = rep == 1;
      ir_op_t fwd = rms ? IR_OP_RMSNORM : IR_OP_LAYERNORM, bwd = rms ? IR_OP_RMSNORM_BWD
                                                                      : IR_OP_LAYERNORM_BWD;
      int nf = rms ? 2 : 3;
      ir_tensor_t o1[3], o2[3];
      for (int k = 0; k < nf; k++) {
        o1[k] = k == 0 ? tu_tensor(dt, 2, xd) : tu_tensor(dt, 1, rd);
        o2[k] = k == 0 ? tu_tensor(dt, 2, xd) : tu_tensor(dt, 1, rd);
      }
      ir_tensor_t fin[3] = {x, w, b};
      tu_two_threads_t two = tu_two_threads();
      tu_run_kernel(fwd, k_node, &eps, 1, fin, rms ? 2 : 3, o1, (uint32_t)nf, NULL);
      tu_run_kernel(fwd, k_node, &eps, 1, fin, rms ? 2 : 3, o2, (uint32_t)nf, &two.base);
      for (int k = 0; k < nf; k++) ck_assert(tu_same_bits(&o1[k], &o2[k]));
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
        g1[k] = k == 0 ? tu_tensor(dt, 2, xd) : tu_tensor(dt, 1, wd);
        g2[k] = k == 0 ? tu_tensor(dt, 2, xd) : tu_tensor(dt, 1, wd);
        tu_fill(&g2[k], &g_rng, 9.0, 0.0); /* every element is written */
      }
      tu_run_kernel(bwd, k_node, NULL, 0, bin, nb, g1, (uint32_t)ng, NULL);
      tu_run_kernel(bwd, k_node, NULL, 0, bin, nb, g2, (uint32_t)ng, &two.base);
      ck_assert_int_ge(two.splits, 3);
      for (int k = 0; k < ng; k++)
        ck_assert_msg(tu_same_bits(&g1[k], &g2[k]), "grad %d differs", k);
      /* db is the column sum of dy; dw the column sum of dy * xhat */
      for (int64_t j = 0; j < H; j++) {
        double db = 0.0, dw = 0.0;
        for (int64_t r = 0; r < N; r++) {
          double mean = rms ? 0.0 : tu_get(&o1[1], r), rstd = tu_get(&o1[nf - 1], r);
          db += tu_get(&dy, r * H + j);
          dw += tu_get(&dy, r * H + j) * (tu_get(&x, r * H + j) - mean) * rstd;
        }
        double tol = dt == IR_DTYPE_F64 ? 1e-12 : 1e-5;
        ck_assert_double_le(fabs(tu_get(&g1[1], j) - dw), tol * (1.0 + fabs(dw)));
        if (!rms) ck_assert_double_le(fabs(tu_get(&g1[2], j) - db), tol * (1.0 + fabs(db)));
      }
      tu_free_tensors(o1, nf);
      tu_free_tensors(o2, nf);
      tu_free_tensors(g1, ng);
      tu_free_tensors(g2, ng);
    }
    /* softmax and its backward */
    ir_tensor_t y1 = tu_tensor(dt, 2, xd), y2 = tu_tensor(dt, 2, xd);
    tu_two_threads_t two = tu_two_threads();
    tu_run_kernel(IR_OP_SOFTMAX, k_node, NULL, 0, &x, 1, &y1, 1, NULL);
    tu_run_kernel(IR_OP_SOFTMAX, k_node, NULL, 0, &x, 1, &y2, 1, &two.base);
    ck_assert(tu_same_bits(&y1, &y2));
    ir_tensor_t sin[2] = {y1, dy}, d1 = tu_tensor(dt, 2, xd), d2 = tu_tensor(dt, 2, xd);
    tu_run_kernel(IR_OP_SOFTMAX_BWD, k_node, NULL, 0, sin, 2, &d1, 1, NULL);
    tu_run_kernel(IR_OP_SOFTMAX_BWD, k_node, NULL, 0, sin, 2, &d2, 1, &two.base);
    ck_assert(tu_same_bits(&d1, &d2));
    ck_assert_int_ge(two.splits, 2);
    ir_tensor_t all[8] = {x, w, b, dy, y1, y2, d1, d2};
    tu_free_tensors(all, 8);
  }
}
END_TEST

/* ---- in place: the flag promises output 0 may share input 0's buffer ------------------------ */

START_TEST(test_in_place) {
  static const ir_op_t ops[3] = {IR_OP_SOFTMAX, IR_OP_LAYERNORM, IR_OP_RMSNORM};
  int64_t xd[2] = {5, 9}, rd[1] = {5};
  for (int k = 0; k < 3; k++) {
    ck_assert(ir_op_info(ops[k])->flags & IR_OP_FLAG_INPLACE);
    ir_tensor_t x = tu_tensor(IR_DTYPE_F64, 2, xd);
    tu_fill(&x, &g_rng, 2.0, 0.5);
    ir_tensor_t sep[3] = {tu_tensor(IR_DTYPE_F64, 2, xd), tu_tensor(IR_DTYPE_F64, 1, rd),
                          tu_tensor(IR_DTYPE_F64, 1, rd)};
    ir_tensor_t alias[3] = {x, tu_tensor(IR_DTYPE_F64, 1, rd), tu_tensor(IR_DTYPE_F64, 1, rd)};
    uint32_t nout = ops[k] == IR_OP_SOFTMAX ? 1 : ops[k] == IR_OP_RMSNORM ? 2 : 3;
    tu_run_kernel(ops[k], k_node, NULL, 0, &x, 1, sep, nout, NULL);
    tu_run_kernel(ops[k], k_node, NULL, 0, &x, 1, alias, nout, NULL); /* overwrites x */
    ck_assert(memcmp(sep[0].data, x.data, sizeof(double) * 45) == 0);
    tu_free_tensors(sep, 3);
    tu_free_tensors(alias, 3);
  }
}
END_TEST

/* ---- inference, output counts and VJP wiring --------------------------------------------- */

static void expect_type(const tu_fx_t *f, uint32_t v, const char *type) {
  ir_type_t want = tu_type(f->m, type);
  ck_assert_msg(ir_type_equal(ir_value_type(f->g, v), &want), "value %%%u is not %s", v, type);
}

START_TEST(test_infer) {
  tu_fx_t f = tu_fx_new_sym();
  uint32_t x = tu_input_text(f.g, "x", "f32[B,L,8]"), w = tu_input_text(f.g, "w", "f32[8]");
  uint32_t b = tu_input_text(f.g, "b", "f32[8]"), w7 = tu_input_text(f.g, "w7", "f32[7]");
  uint32_t xi = tu_input_text(f.g, "xi", "i32[B,L,8]"), xd = tu_input_text(f.g, "xd", "f64[B,L,8]");
  ir_attr_t eps = IR_ATTR_F("eps", 1e-12);
  uint32_t ln = tu_fx_op(&f, IR_OP_LAYERNORM, "ln", (uint32_t[]){x, w, b}, 3, &eps, 1);
  ck_assert_uint_ne(ln, IR_NONE);
  ck_assert_uint_eq(ir_value_producer(f.g, ln)->noutputs, 3);
  expect_type(&f, ln, "f32[B,L,8]");
  expect_type(&f, ln + 1, "f32[B,L]");
  expect_type(&f, ln + 2, "f32[B,L]");
  uint32_t lb =
      tu_fx_op(&f, IR_OP_LAYERNORM_BWD, "lb", (uint32_t[]){x, w, ln + 1, ln + 2, x}, 5, NULL, 0);
  ck_assert_uint_eq(ir_value_producer(f.g, lb)->noutputs, 3);
  expect_type(&f, lb + 2, "f32[8]");
  uint32_t lb1 =
      tu_fx_op(&f, IR_OP_LAYERNORM_BWD, "lb1", (uint32_t[]){x, ln + 1, ln + 2, x}, 4, NULL, 0);
  ck_assert_uint_eq(ir_value_producer(f.g, lb1)->noutputs, 1);
  uint32_t rn = tu_fx_op(&f, IR_OP_RMSNORM, "rn", (uint32_t[]){x, w}, 2, &eps, 1);
  ck_assert_uint_eq(ir_value_producer(f.g, rn)->noutputs, 2);
  expect_type(&f, rn + 1, "f32[B,L]");
  uint32_t rb = tu_fx_op(&f, IR_OP_RMSNORM_BWD, "rb", (uint32_t[]){x, w, rn + 1, x}, 4, NULL, 0);
  ck_assert_uint_eq(ir_value_producer(f.g, rb)->noutputs, 2);
  uint32_t rb1 = tu_fx_op(&f, IR_OP_RMSNORM_BWD, "rb1", (uint32_t[]){x, rn + 1, x}, 3, NULL, 0);
  ck_assert_uint_eq(ir_value_producer(f.g, rb1)->noutputs, 1);
  uint32_t v = tu_input_text(f.g, "v", "f64[5]");
  uint32_t lv = tu_fx_op(&f, IR_OP_LAYERNORM, "lv", &v, 1, NULL, 0);
  expect_type(&f, lv + 1, "f64[]");

  tu_expect_build_error(f.g,
                        tu_fx_op(&f, IR_OP_LAYERNORM, "enc.ln_w7", (uint32_t[]){x, w7}, 2, NULL, 0),
                        "enc.ln_w7", "weight");
  ir_attr_t neg = IR_ATTR_F("eps", -1.0);
  tu_expect_build_error(f.g, tu_fx_op(&f, IR_OP_RMSNORM, "enc.rms_neg", &x, 1, &neg, 1),
                        "enc.rms_neg", "eps");
  tu_expect_build_error(f.g, tu_fx_op(&f, IR_OP_SOFTMAX, "enc.sm_int", &xi, 1, NULL, 0),
                        "enc.sm_int", "float");
  tu_expect_build_error(f.g,
                        tu_fx_op(&f, IR_OP_SOFTMAX_BWD, "enc.smb", (uint32_t[]){x, xd}, 2, NULL, 0),
                        "enc.smb", "dy");
  tu_expect_build_error(
      f.g,
      tu_fx_op(&f, IR_OP_LAYERNORM_BWD, "enc.lbm", (uint32_t[]){x, w, x, ln + 2, x}, 5, NULL, 0),
      "enc.lbm", "mean");
  ir_module_free(f.m);
}
END_TEST

START_TEST(test_vjp_wiring) {
  tu_fx_t f = tu_fx_new_sym();
  uint32_t x = tu_input_text(f.g, "x", "f64[B,L,8]"), w = tu_input_text(f.g, "w", "f64[8]");
  uint32_t b = tu_input_text(f.g, "b", "f64[8]"), dy = tu_input_text(f.g, "dy", "f64[B,L,8]");
  uint32_t dm = tu_input_text(f.g, "dm", "f64[B,L]");
  uint32_t ln = tu_fx_op(&f, IR_OP_LAYERNORM, "enc.ln", (uint32_t[]){x, w, b}, 3, NULL, 0);
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
  uint32_t rn = tu_fx_op(&f, IR_OP_RMSNORM, "enc.rn", &x, 1, NULL, 0);
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
  ir_tensor_t x = tu_tensor(IR_DTYPE_BF16, 2, d), y = tu_tensor(IR_DTYPE_BF16, 2, d);
  ad_status_t st = tu_try_kernel(IR_OP_SOFTMAX, k_node, NULL, 0, &x, 1, &y, 1, NULL);
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

int main(void) { return tu_run_suite(norm_suite()); }
