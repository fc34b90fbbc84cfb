/* The conv group (conv1d, batchnorm and their backwards): golden cases against torch's
 * F.conv1d / F.batch_norm (forward, VJP vs autograd, f64 finite differences) through the op
 * harness; the full-length (196,608-bp) BatchNorm(train) -> width-15 conv fixture; results
 * bit-identical on 1 and 2 threads; symbolic output lengths and costs; and the error statuses
 * for malformed nodes and a training batch of one value per channel. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ir/ir.h"
#include "runtime/interp.h"
#include "runtime/safetensors.h"
#include "tests/support/golden.h"
#include "tests/support/op_harness.h"
#include "tests/support/test_util.h"

/* ---- tensors and kernels -------------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static void fill_random(ir_tensor_t *t, double scale, double offset) {
  tu_fill(t, &g_rng, scale, offset);
}

static const ir_dtype_t k_dtypes[2] = {IR_DTYPE_F32, IR_DTYPE_F64};

/* ---- golden cases ----------------------------------------------------------------------- */

START_TEST(test_golden) {
  op_harness_tol_t tol = op_harness_default_tol();
  ck_assert_int_eq(op_harness_run_file("tests/golden/ops_conv.safetensors", &tol), 0);
}
END_TEST

/* ---- graph helpers ------------------------------------------------------------------------ */

static uint32_t input(ir_graph_t *g, const char *name, ir_dtype_t dt, int rank,
                      const ir_dim_t *dims) {
  ir_type_t t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  return tu_input(g, name, &t);
}

/* Applies the VJP rule of the node producing `v0` (a copy, as autodiff does). */
static void apply_vjp(ir_graph_t *g, uint32_t v0, const uint32_t *out_grads, uint32_t *in_grads) {
  ir_node_t node = *ir_value_producer(g, v0);
  for (uint32_t i = 0; i < node.ninputs; i++) in_grads[i] = IR_NONE;
  ir_vjp_ctx_t ctx = {.g = g, .node = node, .out_grads = out_grads, .in_grads = in_grads};
  ad_status_t st = ir_op_info(node.op)->vjp(&ctx);
  if (st) ck_abort_msg("VJP of %s: %s", ir_op_name(node.op), ad_status_message(st));
  ck_assert_ptr_null(g->error);
}

/* ---- the full-length fixture -------------------------------------------------------------- */

static const rt_st_tensor_t *need(const rt_st_file_t *f, const char *name) {
  const rt_st_tensor_t *t = rt_st_find(f, name);
  ck_assert_msg(t != NULL, "full_length_conv.safetensors lacks '%s'", name);
  return t;
}

static int64_t cfg_int(json_t *cfg, const char *key) {
  json_t *v = json_object_get(cfg, key);
  ck_assert_msg(json_is_integer(v), "config lacks integer '%s'", key);
  return json_integer_value(v);
}

/* Compares a computed tensor with the stored one of the same name; returns the error. */
static double check_named(const rt_st_file_t *f, const char *name, const ir_tensor_t *got,
                          double tol) {
  ir_tensor_t want;
  ck_assert(rt_st_as_ir_tensor(need(f, name), &want));
  char label[64];
  snprintf(label, sizeof label, "full_length: %s", name);
  double e = golden_compare(label, got, &want, tol);
  printf("  full_length %-12s err=%.2e (tol %.0e)\n", name, e, tol);
  ck_assert_msg(e <= tol, "%s: error %.3g > %.3g", name, e, tol);
  return e;
}

/* Gathers t[0, c, l*stride] into [C, n] (same dtype) and the per-channel sums of t and t^2
 * (f64, [C]). */
static void summarise(const ir_tensor_t *t, int64_t stride, ir_tensor_t *sub, ir_tensor_t *sum,
                      ir_tensor_t *sq) {
  int64_t C = t->dims[1], L = t->dims[2], n = (L + stride - 1) / stride;
  *sub = tu_tensor(t->dtype, 2, (int64_t[]){C, n});
  *sum = tu_tensor(IR_DTYPE_F64, 1, (int64_t[]){C});
  *sq = tu_tensor(IR_DTYPE_F64, 1, (int64_t[]){C});
  for (int64_t c = 0; c < C; c++) {
    double s = 0.0, s2 = 0.0;
    for (int64_t l = 0; l < L; l++) {
      double v = tu_get(t, c * L + l);
      s += v;
      s2 += v * v;
    }
    tu_set(sum, c, s);
    tu_set(sq, c, s2);
    for (int64_t i = 0; i < n; i++) tu_set(sub, c * n + i, tu_get(t, c * L + i * stride));
  }
}

START_TEST(test_full_length) {
  char *path = golden_path("tests/golden/full_length_conv.safetensors");
  rt_st_file_t *f = NULL;
  ad_status_t st = rt_st_open(path, &f);
  if (st) ck_abort_msg("%s: %s", path, ad_status_message(st));
  free(path);
  json_error_t jerr;
  const char *cfg_text = rt_st_metadata(f, "config");
  json_t *cfg = cfg_text ? json_loads(cfg_text, 0, &jerr) : NULL;
  ck_assert_ptr_nonnull(cfg);
  int64_t L = cfg_int(cfg, "L"), Cin = cfg_int(cfg, "Cin"), Cout = cfg_int(cfg, "Cout");
  int64_t K = cfg_int(cfg, "K"), pad = cfg_int(cfg, "padding"), stride = cfg_int(cfg, "stride");
  ck_assert_int_eq(cfg_int(cfg, "B"), 1);
  ck_assert_int_eq(L, 196608);
  json_decref(cfg);

  ir_module_t *m = ir_module_create();
  ir_graph_t *g = ir_module_add_program(m, "full_length");
  ir_dim_t cin = ir_dim_const(Cin), cout = ir_dim_const(Cout), one = ir_dim_const(1);
  ir_dim_t len = ir_dim_const(L), k = ir_dim_const(K);
  uint32_t x = input(g, "x", IR_DTYPE_F32, 3, (ir_dim_t[]){one, cin, len});
  uint32_t bw = input(g, "bn_w", IR_DTYPE_F32, 1, &cin);
  uint32_t bb = input(g, "bn_b", IR_DTYPE_F32, 1, &cin);
  uint32_t rm = input(g, "bn_rm", IR_DTYPE_F32, 1, &cin);
  uint32_t rv = input(g, "bn_rv", IR_DTYPE_F32, 1, &cin);
  uint32_t cw = input(g, "conv_w", IR_DTYPE_F32, 3, (ir_dim_t[]){cout, cin, k});
  uint32_t cb = input(g, "conv_b", IR_DTYPE_F32, 1, &cout);
  uint32_t r = input(g, "r", IR_DTYPE_F32, 3, (ir_dim_t[]){one, cout, len});
  ir_attr_t bn_attr = IR_ATTR_I("training", 1);
  uint32_t bn = tu_node(g, IR_OP_BATCHNORM, NULL, (uint32_t[]){x, bw, bb, rm, rv}, 5, &bn_attr, 1,
                        NULL);
  ir_attr_t pad_attr = IR_ATTR_I("padding", pad);
  uint32_t y = tu_node(g, IR_OP_CONV1D, NULL, (uint32_t[]){bn, cw, cb}, 3, &pad_attr, 1, NULL);
  ck_assert_ptr_null(g->error);
  /* loss = sum(y * r): its cotangent for y is r */
  uint32_t conv_grads[3], bn_grads[5];
  apply_vjp(g, y, (uint32_t[]){r}, conv_grads);
  apply_vjp(g, bn, (uint32_t[]){conv_grads[0], IR_NONE, IR_NONE, IR_NONE, IR_NONE}, bn_grads);
  ck_assert(bn_grads[3] == IR_NONE && bn_grads[4] == IR_NONE);
  tu_output(g, "y", y);
  tu_output(g, "bn_mean", bn + 1);
  tu_output(g, "bn_rstd", bn + 2);
  tu_output(g, "bn_new_rm", bn + 3);
  tu_output(g, "bn_new_rv", bn + 4);
  tu_output(g, "dx", bn_grads[0]);
  tu_output(g, "grad_bn_w", bn_grads[1]);
  tu_output(g, "grad_bn_b", bn_grads[2]);
  tu_output(g, "grad_conv_w", conv_grads[1]);
  tu_output(g, "grad_conv_b", conv_grads[2]);

  rt_interp_t *it = NULL;
  int64_t nosyms[IR_MAX_SYMBOLS] = {0};
  st = rt_interp_create(g, nosyms, &it);
  if (st) ck_abort_msg("interp: %s", ad_status_message(st));
  /* x and r from the closed forms of tools/golden/full_length_conv.py (f64, rounded to f32) */
  float *xv = malloc(sizeof(float) * (size_t)(Cin * L));   /* xv: [1, Cin, L] */
  float *rvv = malloc(sizeof(float) * (size_t)(Cout * L)); /* rvv: [1, Cout, L] */
  ck_assert(xv && rvv);
  for (int64_t c = 0; c < Cin; c++)
    for (int64_t l = 0; l < L; l++) {
      double dl = (double)l, dc = (double)c;
      xv[c * L + l] =
          (float)(sin(0.0123 * dl + 0.7 * dc + 1.3 * 0.0) + 0.1 * cos((0.00071 * dl) * (dc + 1.0)));
    }
  for (int64_t o = 0; o < Cout; o++)
    for (int64_t l = 0; l < L; l++)
      rvv[o * L + l] = (float)cos(0.0029 * (double)l + 0.5 * (double)o);
  ck_assert_ptr_null(rt_interp_set_input(it, "x", xv, sizeof(float) * (size_t)(Cin * L)));
  ck_assert_ptr_null(rt_interp_set_input(it, "r", rvv, sizeof(float) * (size_t)(Cout * L)));
  static const char *const params[] = {"bn_w", "bn_b", "bn_rm", "bn_rv", "conv_w", "conv_b"};
  for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
    const rt_st_tensor_t *t = need(f, params[i]);
    st = rt_interp_set_input(it, params[i], t->data, t->nbytes);
    if (st) ck_abort_msg("input %s: %s", params[i], ad_status_message(st));
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  st = rt_interp_run(it, NULL);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (st) ck_abort_msg("run: %s", ad_status_message(st));
  printf("  full_length: BN(train) -> conv%lld over L=%lld, forward + backward in %.2f s\n",
         (long long)K, (long long)L,
         (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));

  ir_tensor_t sub, sum, sq;
  summarise(rt_interp_output(it, "y"), stride, &sub, &sum, &sq);
  check_named(f, "y_sub", &sub, 1e-5);
  check_named(f, "y_sum", &sum, 1e-5);
  check_named(f, "y_sqsum", &sq, 1e-5);
  tu_free_tensors((ir_tensor_t[]){sub, sum, sq}, 3);
  static const char *const stats[] = {"bn_mean", "bn_rstd", "bn_new_rm", "bn_new_rv"};
  for (size_t i = 0; i < 4; i++) check_named(f, stats[i], rt_interp_output(it, stats[i]), 1e-5);
  static const char *const grads[] = {"grad_bn_w", "grad_bn_b", "grad_conv_w", "grad_conv_b"};
  for (size_t i = 0; i < 4; i++) check_named(f, grads[i], rt_interp_output(it, grads[i]), 1e-4);
  summarise(rt_interp_output(it, "dx"), stride, &sub, &sum, &sq);
  check_named(f, "dx_sub", &sub, 1e-4);
  check_named(f, "dx_sqsum", &sq, 1e-4);
  tu_free_tensors((ir_tensor_t[]){sub, sum, sq}, 3);

  free(xv);
  free(rvv);
  rt_interp_free(it);
  ir_module_free(m);
  rt_st_close(f);
}
END_TEST

/* ---- 1 vs 2 threads ------------------------------------------------------------------------ */

START_TEST(test_threads) {
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = k_dtypes[di];
    /* conv: 20 channels (three levels of the pairwise channel sum), 700 positions (3 tiles) */
    enum { B = 2, CI = 20, CO = 3, K = 5, L = 700 };
    ir_attr_t conv_attrs[2] = {IR_ATTR_I("has_bias", 1), IR_ATTR_I("padding", 2)};
    ir_tensor_t in[3] = {tu_tensor(dt, 3, (int64_t[]){B, CI, L}),
                         tu_tensor(dt, 3, (int64_t[]){CO, CI, K}),
                         tu_tensor(dt, 1, (int64_t[]){CO})};
    for (int i = 0; i < 3; i++) fill_random(&in[i], 1.0, 0.0);
    ir_tensor_t y[2];
    for (int run = 0; run < 2; run++) {
      tu_two_threads_t two = tu_two_threads();
      y[run] = tu_tensor(dt, 3, (int64_t[]){B, CO, L});
      tu_run_kernel(IR_OP_CONV1D, "test.node", conv_attrs + 1, 1, in, 3, &y[run], 1,
                    run ? &two.base : NULL);
      ck_assert(!run || two.splits > 0);
    }
    ck_assert_msg(tu_same_bits(&y[0], &y[1]), "conv1d differs on 2 threads (%s)",
                  ir_dtype_name(dt));

    ir_tensor_t bin[3] = {in[0], in[1], tu_tensor(dt, 3, (int64_t[]){B, CO, L})};
    fill_random(&bin[2], 1.0, 0.0);
    ir_tensor_t g[2][3];
    for (int run = 0; run < 2; run++) {
      tu_two_threads_t two = tu_two_threads();
      g[run][0] = tu_tensor(dt, 3, (int64_t[]){B, CI, L});
      g[run][1] = tu_tensor(dt, 3, (int64_t[]){CO, CI, K});
      g[run][2] = tu_tensor(dt, 1, (int64_t[]){CO});
      tu_run_kernel(IR_OP_CONV1D_BWD, "test.node", conv_attrs, 2, bin, 3, g[run], 3,
                    run ? &two.base : NULL);
      ck_assert(!run || two.splits > 0);
    }
    for (int j = 0; j < 3; j++)
      ck_assert_msg(tu_same_bits(&g[0][j], &g[1][j]), "conv1d_bwd output %d differs (%s)", j,
                    ir_dtype_name(dt));

    /* batchnorm, both modes, and its backward */
    enum { C = 5, BL = 2100 }; /* past the per-channel grain, so channels split */
    ir_tensor_t bn_in[5] = {tu_tensor(dt, 3, (int64_t[]){B, C, BL}),
                            tu_tensor(dt, 1, (int64_t[]){C}), tu_tensor(dt, 1, (int64_t[]){C}),
                            tu_tensor(dt, 1, (int64_t[]){C}), tu_tensor(dt, 1, (int64_t[]){C})};
    fill_random(&bn_in[0], 2.0, 0.5);
    for (int i = 1; i < 5; i++) fill_random(&bn_in[i], 0.4, i == 1 || i == 4 ? 1.0 : 0.0);
    for (int training = 0; training < 2; training++) {
      ir_attr_t attr = IR_ATTR_I("training", training);
      ir_tensor_t o[2][5], d[2][3];
      for (int run = 0; run < 2; run++) {
        tu_two_threads_t two = tu_two_threads();
        o[run][0] = tu_tensor(dt, 3, (int64_t[]){B, C, BL});
        for (int j = 1; j < 5; j++) o[run][j] = tu_tensor(dt, 1, (int64_t[]){C});
        tu_run_kernel(IR_OP_BATCHNORM, "test.node", &attr, 1, bn_in, 5, o[run], 5,
                      run ? &two.base : NULL);
        ir_tensor_t bwd_in[5] = {bn_in[0], bn_in[1], o[run][1], o[run][2],
                                 tu_tensor(dt, 3, (int64_t[]){B, C, BL})};
        for (int64_t i = 0; i < B * C * BL; i++) tu_set(&bwd_in[4], i, cos(0.1 * (double)i));
        d[run][0] = tu_tensor(dt, 3, (int64_t[]){B, C, BL});
        d[run][1] = tu_tensor(dt, 1, (int64_t[]){C});
        d[run][2] = tu_tensor(dt, 1, (int64_t[]){C});
        tu_run_kernel(IR_OP_BATCHNORM_BWD, "test.node", &attr, 1, bwd_in, 5, d[run], 3,
                      run ? &two.base : NULL);
        free(bwd_in[4].data);
        ck_assert(!run || two.splits > 0);
      }
      for (int j = 0; j < 5; j++)
        ck_assert_msg(tu_same_bits(&o[0][j], &o[1][j]),
                      "batchnorm output %d differs (training=%d)", j,
                      training);
      for (int j = 0; j < 3; j++)
        ck_assert_msg(tu_same_bits(&d[0][j], &d[1][j]),
                      "batchnorm_bwd output %d differs (training=%d)", j, training);
      if (!training) { /* eval passes the running stats through bit for bit */
        ck_assert(tu_same_bits(&o[0][3], &bn_in[3]) && tu_same_bits(&o[0][4], &bn_in[4]));
        ck_assert(tu_same_bits(&o[0][1], &bn_in[3]));
      }
      for (int run = 0; run < 2; run++) {
        tu_free_tensors(o[run], 5);
        tu_free_tensors(d[run], 3);
      }
    }
    tu_free_tensors(bn_in, 5);
    tu_free_tensors(in, 3);
    free(bin[2].data);
    tu_free_tensors(y, 2);
    tu_free_tensors(g[0], 3);
    tu_free_tensors(g[1], 3);
  }
}
END_TEST

/* ---- a check against a direct evaluation of the definition --------------------------------- */

/* y[b,o,t] = bias[o] + sum_{c,k} w[o,c,k] x[b,c,t+k-p] at an even width and a wide padding,
 * outside the golden file's shapes. */
START_TEST(test_conv_definition) {
  enum { B = 2, CI = 11, CO = 2, K = 6, P = 4, L = 9, LO = L + 2 * P - K + 1 };
  ir_tensor_t in[3] = {tu_tensor(IR_DTYPE_F64, 3, (int64_t[]){B, CI, L}),
                       tu_tensor(IR_DTYPE_F64, 3, (int64_t[]){CO, CI, K}),
                       tu_tensor(IR_DTYPE_F64, 1, (int64_t[]){CO})};
  for (int i = 0; i < 3; i++) fill_random(&in[i], 1.0, 0.0);
  ir_tensor_t y = tu_tensor(IR_DTYPE_F64, 3, (int64_t[]){B, CO, LO});
  ir_attr_t pad = IR_ATTR_I("padding", P);
  tu_run_kernel(IR_OP_CONV1D, "test.node", &pad, 1, in, 3, &y, 1, NULL);
  for (int b = 0; b < B; b++)
    for (int o = 0; o < CO; o++)
      for (int t = 0; t < LO; t++) {
        double s = tu_get(&in[2], o);
        for (int c = 0; c < CI; c++)
          for (int k = 0; k < K; k++) {
            int src = t + k - P;
            if (src >= 0 && src < L)
              s += tu_get(&in[1], (o * CI + c) * K + k) * tu_get(&in[0], (b * CI + c) * L + src);
          }
        ck_assert_double_le(fabs(tu_get(&y, (b * CO + o) * LO + t) - s), 1e-13);
      }
  tu_free_tensors(in, 3);
  free(y.data);
}
END_TEST

/* ---- inference, symbolic lengths, costs, errors ------------------------------------------- */

static void expect_error(ir_graph_t *g, ir_op_t op, const uint32_t *ins, uint32_t nin,
                         const ir_attr_t *attrs, uint32_t nattrs, const char *needle) {
  tu_expect_build_error(g, tu_node(g, op, NULL, ins, nin, attrs, nattrs, NULL), needle, NULL);
}

START_TEST(test_infer) {
  ir_module_t *m = ir_module_create();
  int Bs, Ls;
  ck_assert_ptr_null(ir_module_add_symbol(m, "B", 2, &Bs));
  ck_assert_ptr_null(ir_module_add_symbol(m, "L", 64, &Ls));
  ir_graph_t *g = ir_module_add_program(m, "main");
  ir_dim_t b = ir_dim_sym(Bs), l = ir_dim_sym(Ls), c3 = ir_dim_const(3), c4 = ir_dim_const(4);
  ir_dim_t c5 = ir_dim_const(5), c15 = ir_dim_const(15);
  uint32_t x = input(g, "x", IR_DTYPE_F32, 3, (ir_dim_t[]){b, c3, l});
  uint32_t w15 = input(g, "w15", IR_DTYPE_F32, 3, (ir_dim_t[]){c4, c3, c15});
  uint32_t w4 = input(g, "w4", IR_DTYPE_F32, 3, (ir_dim_t[]){c4, c3, c4});
  uint32_t w3 = input(g, "w3", IR_DTYPE_F32, 3, (ir_dim_t[]){c4, c3, c3});
  uint32_t wbad = input(g, "wbad", IR_DTYPE_F32, 3, (ir_dim_t[]){c4, c5, c5});
  uint32_t w64 = input(g, "w64", IR_DTYPE_F64, 3, (ir_dim_t[]){c4, c3, c5});
  uint32_t wsym = input(g, "wsym", IR_DTYPE_F32, 3, (ir_dim_t[]){c4, c3, l});
  uint32_t b4 = input(g, "b4", IR_DTYPE_F32, 1, &c4);
  uint32_t b3 = input(g, "b3", IR_DTYPE_F32, 1, &c3);
  uint32_t x2 = input(g, "x2", IR_DTYPE_F32, 2, (ir_dim_t[]){b, c3});
  uint32_t xs = input(g, "xs", IR_DTYPE_F32, 3, (ir_dim_t[]){b, c3, c5}); /* static L = 5 */

  /* K = 15 with the default padding keeps the symbolic length L */
  uint32_t y = tu_node(g, IR_OP_CONV1D, NULL, (uint32_t[]){x, w15, b4}, 3, NULL, 0, NULL);
  ck_assert_uint_ne(y, IR_NONE);
  const ir_type_t *ty = ir_value_type(g, y);
  ck_assert(ty->rank == 3 && ir_dim_equal(ty->dims[0], b) && ir_dim_equal(ty->dims[1], c4) &&
            ir_dim_equal(ty->dims[2], l));
  /* an even width with padding K/2 grows the length by one */
  ir_attr_t pad2 = IR_ATTR_I("padding", 2);
  uint32_t ye = tu_node(g, IR_OP_CONV1D, NULL, (uint32_t[]){x, w4}, 2, &pad2, 1, NULL);
  ir_dim_t lp1;
  ck_assert(ir_dim_add_const(l, 1, &lp1));
  ck_assert(ir_dim_equal(ir_value_type(g, ye)->dims[2], lp1));
  /* cost: 2 * B * Cout * Lout * Cin * K at the actual sizes */
  int64_t sv[IR_MAX_SYMBOLS] = {0};
  sv[Bs] = 2;
  sv[Ls] = 37;
  ir_cost_t cost = ir_node_cost(g, ir_value_producer(g, y), sv);
  ck_assert_uint_eq(cost.flops, 2ull * 2 * 4 * 37 * 3 * 15);
  /* the backward's outputs: dx like x, dw like w, db [Cout] only with has_bias */
  ir_attr_t bwd_attrs[2] = {IR_ATTR_I("has_bias", 1), IR_ATTR_I("padding", 7)};
  uint32_t dx = tu_node(g, IR_OP_CONV1D_BWD, NULL, (uint32_t[]){x, w15, y}, 3, bwd_attrs, 2, NULL);
  ck_assert_uint_ne(dx, IR_NONE);
  ck_assert_uint_eq(ir_value_producer(g, dx)->noutputs, 3);
  ck_assert(ir_type_equal(ir_value_type(g, dx), ir_value_type(g, x)));
  ck_assert(ir_type_equal(ir_value_type(g, dx + 1), ir_value_type(g, w15)));
  ck_assert(ir_type_equal(ir_value_type(g, dx + 2), ir_value_type(g, b4)));
  uint32_t dx2 = tu_node(g, IR_OP_CONV1D_BWD, NULL, (uint32_t[]){x, w15, y}, 3, bwd_attrs + 1, 1,
                         NULL);
  ck_assert_uint_eq(ir_value_producer(g, dx2)->noutputs, 2);
  /* the VJP emits conv1d_bwd with the effective padding and the bias flag */
  uint32_t grads[3];
  apply_vjp(g, y, (uint32_t[]){y}, grads);
  const ir_node_t *bn = ir_value_producer(g, grads[0]);
  ck_assert_int_eq(bn->op, IR_OP_CONV1D_BWD);
  ck_assert_int_eq(ir_node_attr_int(bn, "padding", -1), 7);
  ck_assert_int_eq(ir_node_attr_int(bn, "has_bias", -1), 1);
  ck_assert(grads[1] == grads[0] + 1 && grads[2] == grads[0] + 2);

  /* conv1d errors */
  ir_attr_t pad0 = IR_ATTR_I("padding", 0), padneg = IR_ATTR_I("padding", -1);
  ir_attr_t padf = IR_ATTR_F("padding", 1.5);
  expect_error(g, IR_OP_CONV1D, (uint32_t[]){x, wbad}, 2, NULL, 0, "Cin");
  expect_error(g, IR_OP_CONV1D, (uint32_t[]){x, w4}, 2, NULL, 0, "even kernel width");
  expect_error(g, IR_OP_CONV1D, (uint32_t[]){x, w3}, 2, &padneg, 1, "padding");
  expect_error(g, IR_OP_CONV1D, (uint32_t[]){x, w3}, 2, &padf, 1, "padding");
  expect_error(g, IR_OP_CONV1D, (uint32_t[]){x, w64}, 2, NULL, 0, "w (input 1)");
  expect_error(g, IR_OP_CONV1D, (uint32_t[]){x, wsym}, 2, NULL, 0, "static kernel width");
  expect_error(g, IR_OP_CONV1D, (uint32_t[]){x, w3, b3}, 3, NULL, 0, "b (input 2)");
  expect_error(g, IR_OP_CONV1D, (uint32_t[]){x2, w3}, 2, NULL, 0, "[B, Cin, L]");
  /* valid convs whose output could be empty: L symbolic (L = 1 allowed) or static too short */
  expect_error(g, IR_OP_CONV1D, (uint32_t[]){x, w3}, 2, &pad0, 1, "< 1");
  expect_error(g, IR_OP_CONV1D, (uint32_t[]){xs, w15}, 2, &pad0, 1, "< 1");
  uint32_t yv =
      tu_node(g, IR_OP_CONV1D, NULL, (uint32_t[]){xs, w3}, 2, &pad0, 1, NULL); /* 5 - 3 + 1 = 3 */
  ck_assert_uint_ne(yv, IR_NONE);
  ck_assert(ir_dim_equal(ir_value_type(g, yv)->dims[2], c3));
  /* conv1d_bwd: dy must be the output's type */
  expect_error(g, IR_OP_CONV1D_BWD, (uint32_t[]){x, w15, x}, 3, bwd_attrs + 1, 1, "dy");
  ir_attr_t bad_flag[2] = {IR_ATTR_I("has_bias", 2), IR_ATTR_I("padding", 7)};
  expect_error(g, IR_OP_CONV1D_BWD, (uint32_t[]){x, w15, y}, 3, bad_flag, 2, "has_bias");

  /* batchnorm */
  uint32_t v3[4];
  for (int i = 0; i < 4; i++)
    v3[i] = input(g, (const char *[]){"g", "h", "rm", "rv"}[i], IR_DTYPE_F32, 1, &c3);
  uint32_t y_bn = tu_node(g, IR_OP_BATCHNORM, NULL, (uint32_t[]){x, v3[0], v3[1], v3[2], v3[3]}, 5,
                          NULL, 0, NULL);
  ck_assert_uint_ne(y_bn, IR_NONE);
  ck_assert(ir_type_equal(ir_value_type(g, y_bn), ir_value_type(g, x)));
  for (int j = 1; j < 5; j++)
    ck_assert(ir_type_equal(ir_value_type(g, y_bn + j), ir_value_type(g, v3[0])));
  ck_assert_uint_eq(ir_op_info(IR_OP_BATCHNORM)->nondiff_inputs, (1u << 3) | (1u << 4));
  /* cotangents of the statistics alone give no gradient */
  uint32_t bgr[5];
  apply_vjp(g, y_bn, (uint32_t[]){IR_NONE, y_bn + 1, y_bn + 2, y_bn + 3, y_bn + 4}, bgr);
  for (int i = 0; i < 5; i++) ck_assert(bgr[i] == IR_NONE);
  ir_attr_t eval = IR_ATTR_I("training", 0);
  uint32_t y_ev =
      tu_node(g, IR_OP_BATCHNORM, NULL, (uint32_t[]){x, v3[0], v3[1], v3[2], v3[3]}, 5, &eval, 1,
              NULL);
  apply_vjp(g, y_ev, (uint32_t[]){y_ev, IR_NONE, IR_NONE, IR_NONE, IR_NONE}, bgr);
  ck_assert_int_eq(ir_node_attr_int(ir_value_producer(g, bgr[0]), "training", -1), 0);
  ck_assert(bgr[1] == bgr[0] + 1 && bgr[2] == bgr[0] + 2 && bgr[3] == IR_NONE);

  ir_attr_t bad_train = IR_ATTR_I("training", 2), bad_mom = IR_ATTR_F("momentum", 1.5);
  ir_attr_t bad_eps = IR_ATTR_F("eps", -1.0);
  expect_error(g, IR_OP_BATCHNORM, (uint32_t[]){x, b4, v3[1], v3[2], v3[3]}, 5, NULL, 0,
               "w (input 1)");
  expect_error(g, IR_OP_BATCHNORM, (uint32_t[]){x, v3[0], v3[1], v3[2], b4}, 5, NULL, 0,
               "running_var");
  expect_error(g, IR_OP_BATCHNORM, (uint32_t[]){x2, v3[0], v3[1], v3[2], v3[3]}, 5, NULL, 0,
               "[B, C, L]");
  expect_error(g, IR_OP_BATCHNORM, (uint32_t[]){x, v3[0], v3[1], v3[2], v3[3]}, 5, &bad_train, 1,
               "training");
  expect_error(g, IR_OP_BATCHNORM, (uint32_t[]){x, v3[0], v3[1], v3[2], v3[3]}, 5, &bad_mom, 1,
               "momentum");
  expect_error(g, IR_OP_BATCHNORM, (uint32_t[]){x, v3[0], v3[1], v3[2], v3[3]}, 5, &bad_eps, 1,
               "eps");
  expect_error(g, IR_OP_BATCHNORM_BWD, (uint32_t[]){x, v3[0], v3[1], v3[2], y}, 5, NULL, 0, "dy");
  ir_module_free(m);
}
END_TEST

/* Training statistics need more than one value per channel (torch raises too). */
START_TEST(test_train_single_value) {
  ir_module_t *m = ir_module_create();
  int Ls;
  ck_assert_ptr_null(ir_module_add_symbol(m, "L", 4, &Ls));
  ir_graph_t *g = ir_module_add_program(m, "main");
  ir_dim_t one = ir_dim_const(1), two = ir_dim_const(2), l = ir_dim_sym(Ls);
  uint32_t x = input(g, "x", IR_DTYPE_F64, 3, (ir_dim_t[]){one, two, l});
  uint32_t v[4];
  for (int i = 0; i < 4; i++)
    v[i] = input(g, (const char *[]){"w", "b", "rm", "rv"}[i], IR_DTYPE_F64, 1, &two);
  uint32_t y = tu_node(g, IR_OP_BATCHNORM, NULL, (uint32_t[]){x, v[0], v[1], v[2], v[3]}, 5, NULL,
                       0, NULL);
  tu_output(g, "y", y);
  static const double vals[4][2] = {{1, 1}, {0, 0}, {0, 0}, {1, 1}};
  for (int64_t len = 1; len <= 2; len++) {
    int64_t sv[IR_MAX_SYMBOLS] = {0};
    sv[Ls] = len;
    rt_interp_t *it = NULL;
    ck_assert_ptr_null(rt_interp_create(g, sv, &it));
    double xv[4] = {1.0, 2.0, 3.0, 5.0};
    ck_assert_ptr_null(rt_interp_set_input(it, "x", xv, sizeof(double) * (size_t)(2 * len)));
    for (int i = 0; i < 4; i++)
      ck_assert_ptr_null(rt_interp_set_input(it, (const char *[]){"w", "b", "rm", "rv"}[i], vals[i],
                                             sizeof vals[i]));
    ad_status_t st = rt_interp_run(it, NULL);
    if (len == 1) {
      ck_assert_ptr_nonnull(st);
      ck_assert_int_eq(ad_status_code(st), AD_STATUS_INVALID_ARGUMENT);
      ck_assert_ptr_nonnull(strstr(ad_status_message(st), "more than one value"));
      ad_status_free(st);
    } else {
      ck_assert_ptr_null(st);
      const ir_tensor_t *yt = rt_interp_output(it, "y");
      /* (x - mean) / sqrt(var + eps): +-1 up to eps, for channel [1, 2] */
      ck_assert_double_le(fabs(tu_get(yt, 0) + 1.0 / sqrt(1.0 + 4e-5)), 1e-14);
      ck_assert_double_le(fabs(tu_get(yt, 1) - 1.0 / sqrt(1.0 + 4e-5)), 1e-14);
    }
    rt_interp_free(it);
  }
  ir_module_free(m);
}
END_TEST

static Suite *conv_suite(void) {
  Suite *s = suite_create("ops_conv");
  TCase *tc = tcase_create("conv");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_golden);
  tcase_add_test(tc, test_full_length);
  tcase_add_test(tc, test_threads);
  tcase_add_test(tc, test_conv_definition);
  tcase_add_test(tc, test_infer);
  tcase_add_test(tc, test_train_single_value);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(conv_suite()); }
