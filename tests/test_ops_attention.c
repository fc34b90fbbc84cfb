/* The attention group (rotary, attention, attention_bwd): golden cases against torch (forward,
 * VJP vs autograd, f64 finite differences) through the op harness, plus what goldens cannot
 * show: a fully masked row is uniform, the backward is bit-identical for any thread count,
 * padding a sample with masked keys leaves its valid rows bit-identical, the rotation inverts
 * and may run in place, and inference rejects malformed nodes with a message naming them. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/op_harness.h"
#include "tests/support/test_util.h"

/* One thread: the whole range on the caller, through the pool interface. */
static void one_run(ir_parallel_t *self, int64_t n, int64_t grain, ir_range_fn fn, void *ctx) {
  (void)self;
  (void)grain;
  fn(ctx, 0, n);
}

/* ---- tensors and kernels -------------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static void fill_random(ir_tensor_t *t, double scale) { tu_fill(t, &g_rng, scale, 0.0); }

static double finfo_min(ir_dtype_t dt) { return dt == IR_DTYPE_F64 ? -DBL_MAX : -FLT_MAX; }

static const ir_dtype_t k_dtypes[2] = {IR_DTYPE_F32, IR_DTYPE_F64};

/* ---- golden cases ----------------------------------------------------------------------- */

START_TEST(test_golden) {
  op_harness_tol_t tol = op_harness_default_tol();
  ck_assert_int_eq(op_harness_run_file("tests/golden/ops_attention.safetensors", &tol), 0);
}
END_TEST

/* ---- a fully masked row comes out uniform, a partially masked one ignores its masked keys -- */

START_TEST(test_fully_masked_row_uniform) {
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = k_dtypes[di];
    enum { H = 2, LQ = 4, LK = 6, D = 4, DV = 3 };
    ir_tensor_t in[4] = {tu_tensor(dt, 4, (int64_t[]){1, H, LQ, D}),
                         tu_tensor(dt, 4, (int64_t[]){1, H, LK, D}),
                         tu_tensor(dt, 4, (int64_t[]){1, H, LK, DV}),
                         tu_tensor(dt, 4, (int64_t[]){1, 1, LQ, LK})}; /* q, k, v, mask */
    for (int i = 0; i < 3; i++) fill_random(&in[i], 3.0);
    for (int j = 0; j < LK; j++) {
      tu_set(&in[3], 2 * LK + j, finfo_min(dt));             /* row 2: every key masked */
      if (j >= 3) tu_set(&in[3], 1 * LK + j, finfo_min(dt)); /* row 1: keys 3.. masked */
    }
    ir_tensor_t out[3] = {tu_tensor(dt, 4, (int64_t[]){1, H, LQ, DV}),
                          tu_tensor(dt, 3, (int64_t[]){1, H, LQ}),
                          tu_tensor(dt, 3, (int64_t[]){1, H, LQ})};
    ir_attr_t attrs[1] = {IR_ATTR_F("scale", 0.5)};
    tu_run_kernel(IR_OP_ATTENTION, "test.node", attrs, 1, in, 4, out, 3, NULL);

    /* The same heads over keys 0..2 only, no mask: row 1 must match it bit for bit. */
    ir_tensor_t kin[3] = {in[0], tu_tensor(dt, 4, (int64_t[]){1, H, 3, D}),
                          tu_tensor(dt, 4, (int64_t[]){1, H, 3, DV})};
    for (int h = 0; h < H; h++) {
      for (int j = 0; j < 3; j++) {
        for (int e = 0; e < D; e++)
          tu_set(&kin[1], (h * 3 + j) * D + e, tu_get(&in[1], (h * LK + j) * D + e));
        for (int e = 0; e < DV; e++)
          tu_set(&kin[2], (h * 3 + j) * DV + e, tu_get(&in[2], (h * LK + j) * DV + e));
      }
    }
    ir_tensor_t kout[3] = {tu_tensor(dt, 4, (int64_t[]){1, H, LQ, DV}),
                           tu_tensor(dt, 3, (int64_t[]){1, H, LQ}),
                           tu_tensor(dt, 3, (int64_t[]){1, H, LQ})};
    tu_run_kernel(IR_OP_ATTENTION, "test.node", attrs, 1, kin, 3, kout, 3, NULL);

    double tol = dt == IR_DTYPE_F64 ? 1e-14 : 1e-6;
    for (int h = 0; h < H; h++) {
      int64_t r2 = h * LQ + 2, r1 = h * LQ + 1;
      ck_assert_double_eq(tu_get(&out[1], r2), finfo_min(dt)); /* m: the fill itself */
      ck_assert_double_eq(tu_get(&out[2], r2), (double)LK);    /* l: exp(0) for every key */
      for (int e = 0; e < DV; e++) {
        double mean = 0;
        for (int j = 0; j < LK; j++) mean += tu_get(&in[2], (h * LK + j) * DV + e) / LK;
        ck_assert_double_le(fabs(tu_get(&out[0], r2 * DV + e) - mean), tol * 3.0);
        ck_assert(tu_get(&out[0], r1 * DV + e) == tu_get(&kout[0], r1 * DV + e));
      }
      ck_assert(tu_get(&out[1], r1) == tu_get(&kout[1], r1));
      ck_assert(tu_get(&out[2], r1) == tu_get(&kout[2], r1));
    }
    tu_free_tensors(in, 4);
    tu_free_tensors(out, 3);
    tu_free_tensors(kin + 1, 2);
    tu_free_tensors(kout, 3);
  }
}
END_TEST

/* ---- the backward does not depend on how heads are spread over threads -------------------- */

START_TEST(test_bwd_thread_invariance) {
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = k_dtypes[di];
    enum { B = 2, H = 3, LQ = 7, LK = 9, D = 5, DV = 4 };
    ir_tensor_t in[8] = {
        tu_tensor(dt, 4, (int64_t[]){B, H, LQ, D}), tu_tensor(dt, 4, (int64_t[]){B, H, LK, D}),
        tu_tensor(dt, 4, (int64_t[]){B, H, LK, DV}), tu_tensor(dt, 4, (int64_t[]){B, 1, LQ, LK})};
    for (int i = 0; i < 3; i++) fill_random(&in[i], 2.0);
    /* pair mask: sample 1 has 5 valid queries and 6 valid keys */
    for (int i = 0; i < LQ; i++)
      for (int j = 0; j < LK; j++)
        if (i >= 5 || j >= 6) tu_set(&in[3], (LQ + i) * LK + j, finfo_min(dt));
    ir_tensor_t fwd[3] = {tu_tensor(dt, 4, (int64_t[]){B, H, LQ, DV}),
                          tu_tensor(dt, 3, (int64_t[]){B, H, LQ}),
                          tu_tensor(dt, 3, (int64_t[]){B, H, LQ})};
    ir_attr_t fattrs[1] = {IR_ATTR_F("scale", 0.4472135954999579)};
    tu_run_kernel(IR_OP_ATTENTION, "test.node", fattrs, 1, in, 4, fwd, 3, NULL);
    in[4] = fwd[0];
    in[5] = fwd[1];
    in[6] = fwd[2];
    in[7] = tu_tensor(dt, 4, (int64_t[]){B, H, LQ, DV}); /* dO */
    fill_random(&in[7], 1.0);

    ir_attr_t battrs[2] = {IR_ATTR_I("has_mask", 1), IR_ATTR_F("scale", 0.4472135954999579)};
    tu_two_threads_t two = tu_two_threads();
    ir_parallel_t one = {one_run};
    ir_parallel_t *pars[3] = {NULL, &one, &two.base};
    ir_tensor_t grads[3][3];
    for (int p = 0; p < 3; p++) {
      grads[p][0] = tu_tensor(dt, 4, (int64_t[]){B, H, LQ, D});
      grads[p][1] = tu_tensor(dt, 4, (int64_t[]){B, H, LK, D});
      grads[p][2] = tu_tensor(dt, 4, (int64_t[]){B, H, LK, DV});
      tu_run_kernel(IR_OP_ATTENTION_BWD, "test.node", battrs, 2, in, 8, grads[p], 3, pars[p]);
    }
    ck_assert_int_gt(two.splits, 0);
    for (int p = 1; p < 3; p++)
      for (int o = 0; o < 3; o++)
        ck_assert_msg(tu_same_bits(&grads[0][o], &grads[p][o]), "output %d differs with pool %d", o,
                      p);
    /* a gradient that is all zeros would pass the comparison trivially */
    double norm = 0;
    for (int64_t i = 0; i < ir_tensor_numel(&grads[0][1]); i++)
      norm += fabs(tu_get(&grads[0][1], i));
    ck_assert_double_gt(norm, 1e-3);
    for (int p = 0; p < 3; p++) tu_free_tensors(grads[p], 3);
    tu_free_tensors(in, 4);
    tu_free_tensors(in + 7, 1);
    tu_free_tensors(fwd, 3);
  }
}
END_TEST

/* ---- padding a sample with masked keys (and padded query rows) changes no valid bit -------- */

/* Self attention of one sample with `valid` tokens stored at length L: q, k, v rows beyond
 * `valid` hold garbage, the ESM-style key mask [1,1,1,L] removes those keys. */
static void run_padded(ir_dtype_t dt, int64_t valid, int64_t L, const ir_tensor_t *ref,
                       ir_tensor_t *out) {
  enum { H = 2, D = 6, DV = 5 };
  ir_tensor_t in[4] = {
      tu_tensor(dt, 4, (int64_t[]){1, H, L, D}), tu_tensor(dt, 4, (int64_t[]){1, H, L, D}),
      tu_tensor(dt, 4, (int64_t[]){1, H, L, DV}), tu_tensor(dt, 4, (int64_t[]){1, 1, 1, L})};
  for (int i = 0; i < 3; i++) {
    fill_random(&in[i], 1e3); /* garbage on the padded rows */
    int64_t w = in[i].dims[3];
    for (int h = 0; h < H; h++)
      for (int64_t t = 0; t < valid; t++)
        for (int64_t e = 0; e < w; e++)
          tu_set(&in[i], (h * L + t) * w + e, tu_get(&ref[i], (h * valid + t) * w + e));
  }
  for (int64_t t = valid; t < L; t++) tu_set(&in[3], t, finfo_min(dt));
  out[0] = tu_tensor(dt, 4, (int64_t[]){1, H, L, DV});
  out[1] = tu_tensor(dt, 3, (int64_t[]){1, H, L});
  out[2] = tu_tensor(dt, 3, (int64_t[]){1, H, L});
  ir_attr_t attrs[1] = {IR_ATTR_F("scale", 0.408248290463863)};
  tu_run_kernel(IR_OP_ATTENTION, "test.node", attrs, 1, in, 4, out, 3, NULL);
  tu_free_tensors(in, 4);
}

START_TEST(test_padding_invariance) {
  static const int64_t cases[][2] = {{5, 8}, {11, 16}, {11, 29}, {17, 40}};
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = k_dtypes[di];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
      int64_t valid = cases[c][0], L = cases[c][1];
      ir_tensor_t ref[3] = {tu_tensor(dt, 4, (int64_t[]){1, 2, valid, 6}),
                            tu_tensor(dt, 4, (int64_t[]){1, 2, valid, 6}),
                            tu_tensor(dt, 4, (int64_t[]){1, 2, valid, 5})};
      for (int i = 0; i < 3; i++) fill_random(&ref[i], 2.0);
      ir_tensor_t a[3], b[3];
      run_padded(dt, valid, valid, ref, a);
      run_padded(dt, valid, L, ref, b);
      for (int h = 0; h < 2; h++)
        for (int64_t t = 0; t < valid; t++) {
          ck_assert_msg(
              memcmp((char *)a[0].data + (size_t)((h * valid + t) * 5) * ir_dtype_size(dt),
                     (char *)b[0].data + (size_t)((h * L + t) * 5) * ir_dtype_size(dt),
                     5 * ir_dtype_size(dt)) == 0,
              "O row %lld of head %d differs at L=%lld (valid %lld, %s)", (long long)t, h,
              (long long)L, (long long)valid, ir_dtype_name(dt));
          ck_assert(tu_get(&a[1], h * valid + t) == tu_get(&b[1], h * L + t));
          ck_assert(tu_get(&a[2], h * valid + t) == tu_get(&b[2], h * L + t));
        }
      tu_free_tensors(ref, 3);
      tu_free_tensors(a, 3);
      tu_free_tensors(b, 3);
    }
  }
}
END_TEST

/* ---- rotary: the inverse undoes it, and in-place equals out-of-place ------------------- */

START_TEST(test_rotary_inverse_and_inplace) {
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = k_dtypes[di];
    int64_t dims[4] = {2, 3, 7, 8};
    ir_tensor_t x = tu_tensor(dt, 4, dims), y = tu_tensor(dt, 4, dims), z = tu_tensor(dt, 4, dims);
    fill_random(&x, 2.0);
    ir_attr_t fwd[2] = {IR_ATTR_F("base", 10000.0), IR_ATTR_I("inverse", 0)};
    ir_attr_t inv[2] = {IR_ATTR_F("base", 10000.0), IR_ATTR_I("inverse", 1)};
    tu_run_kernel(IR_OP_ROTARY, "test.node", fwd, 2, &x, 1, &y, 1, NULL);
    tu_run_kernel(IR_OP_ROTARY, "test.node", inv, 2, &y, 1, &z, 1, NULL);
    double tol = dt == IR_DTYPE_F64 ? 1e-14 : 1e-6, moved = 0;
    for (int64_t i = 0; i < ir_tensor_numel(&x); i++) {
      ck_assert_double_le(fabs(tu_get(&z, i) - tu_get(&x, i)), tol * 4.0);
      moved += fabs(tu_get(&y, i) - tu_get(&x, i));
    }
    ck_assert_double_gt(moved, 1e-3); /* it did rotate (positions > 0) */
    /* position 0 is the identity rotation */
    for (int e = 0; e < 8; e++) ck_assert(tu_get(&y, e) == tu_get(&x, e));
    ir_tensor_t w = tu_tensor(dt, 4, dims);
    memcpy(w.data, x.data, (size_t)ir_tensor_numel(&x) * ir_dtype_size(dt));
    tu_run_kernel(IR_OP_ROTARY, "test.node", fwd, 2, &w, 1, &w, 1, NULL);
    ck_assert(tu_same_bits(&w, &y));
    free(x.data);
    free(y.data);
    free(z.data);
    free(w.data);
  }
}
END_TEST

/* ---- inference and the VJP rule ----------------------------------------------------------- */

typedef struct gfix {
  ir_module_t *m;
  ir_graph_t *g;
  int B, L, Lk;
} gfix_t;

static gfix_t gfix_make(void) {
  gfix_t f;
  f.m = ir_module_create();
  ck_assert_ptr_null(ir_module_add_symbol(f.m, "B", 2, &f.B));
  ck_assert_ptr_null(ir_module_add_symbol(f.m, "L", 8, &f.L));
  ck_assert_ptr_null(ir_module_add_symbol(f.m, "Lk", 12, &f.Lk));
  f.g = ir_module_add_program(f.m, "main");
  ck_assert_ptr_nonnull(f.g);
  return f;
}

/* dims: >= 0 constants, -1 B, -2 L, -3 Lk */
static uint32_t input(gfix_t *f, const char *name, int rank, const int *dims) {
  ir_type_t t;
  memset(&t, 0, sizeof t);
  t.dtype = IR_DTYPE_F32;
  t.rank = rank;
  for (int i = 0; i < rank; i++)
    t.dims[i] = dims[i] >= 0 ? ir_dim_const(dims[i])
                             : ir_dim_sym(dims[i] == -1   ? f->B
                                          : dims[i] == -2 ? f->L
                                                          : f->Lk);
  return tu_input(f->g, name, &t);
}

/* Builds `op` and expects failure with a message containing `needle`. */
static void expect_error(gfix_t *f, ir_op_t op, const uint32_t *ins, uint32_t nin,
                         const ir_attr_t *attrs, uint32_t nattrs, const char *needle) {
  ck_assert_uint_eq(tu_node(f->g, op, NULL, ins, nin, attrs, nattrs, NULL), IR_NONE);
  tu_expect_msg(ir_graph_take_error(f->g), needle, NULL);
}

START_TEST(test_infer_and_vjp_rule) {
  gfix_t f = gfix_make();
  uint32_t q = input(&f, "q", 4, (int[]){-1, 2, -2, 8});
  uint32_t k = input(&f, "k", 4, (int[]){-1, 2, -3, 8});
  uint32_t v = input(&f, "v", 4, (int[]){-1, 2, -3, 6});
  uint32_t mask = input(&f, "mask", 4, (int[]){-1, 1, 1, -3});
  uint32_t badk = input(&f, "badk", 4, (int[]){-1, 2, -3, 4});
  uint32_t badmask = input(&f, "badmask", 4, (int[]){-1, 1, -3, -3});
  uint32_t odd = input(&f, "odd", 3, (int[]){-1, -2, 7});
  ir_attr_t scale[1] = {IR_ATTR_F("scale", 0.25)};

  uint32_t ins[4] = {q, k, v, mask};
  uint32_t o = tu_node(f.g, IR_OP_ATTENTION, NULL, ins, 4, scale, 1, NULL);
  ck_assert_uint_ne(o, IR_NONE);
  const ir_type_t *to = ir_value_type(f.g, o), *tm = ir_value_type(f.g, o + 1);
  ck_assert_int_eq(to->rank, 4);
  ck_assert(ir_dim_equal(to->dims[2], ir_dim_sym(f.L)));
  ck_assert(ir_dim_equal(to->dims[3], ir_dim_const(6)));
  ck_assert_int_eq(tm->rank, 3);
  ck_assert(ir_dim_equal(tm->dims[2], ir_dim_sym(f.L)));
  ck_assert(ir_type_equal(tm, ir_value_type(f.g, o + 2)));

  expect_error(&f, IR_OP_ATTENTION, (uint32_t[]){q, badk, v}, 3, scale, 1, "head dim");
  expect_error(&f, IR_OP_ATTENTION, (uint32_t[]){q, k, v, badmask}, 4, scale, 1, "broadcast");
  expect_error(&f, IR_OP_ATTENTION, (uint32_t[]){q, k, v}, 3, NULL, 0, "scale");
  expect_error(&f, IR_OP_ROTARY, &odd, 1, NULL, 0, "even");
  ir_attr_t bwd_attrs[2] = {IR_ATTR_I("has_mask", 1), IR_ATTR_F("scale", 0.25)};
  expect_error(&f, IR_OP_ATTENTION_BWD, (uint32_t[]){q, k, v, o, o + 1, o + 2, o}, 7, bwd_attrs, 2,
               "has_mask");

  /* The rule: only dO flows back, through one attention_bwd that sees the mask; the mask
   * itself gets no gradient. */
  ck_assert_uint_eq(ir_op_info(IR_OP_ATTENTION)->nondiff_inputs, 1u << 3);
  uint32_t dO = input(&f, "dO", 4, (int[]){-1, 2, -2, 6});
  const ir_node_t *fwd = ir_value_producer(f.g, o);
  ir_vjp_ctx_t c = {.g = f.g, .node = *fwd};
  uint32_t out_grads[3] = {dO, IR_NONE, IR_NONE};
  uint32_t in_grads[4] = {IR_NONE, IR_NONE, IR_NONE, IR_NONE};
  c.out_grads = out_grads;
  c.in_grads = in_grads;
  ck_assert_ptr_null(ir_op_info(IR_OP_ATTENTION)->vjp(&c));
  ck_assert_ptr_null(f.g->error);
  const ir_node_t *bwd = ir_value_producer(f.g, in_grads[0]);
  ck_assert_int_eq(bwd->op, IR_OP_ATTENTION_BWD);
  ck_assert_uint_eq(bwd->ninputs, 8);
  ck_assert_int_eq(ir_node_attr_int(bwd, "has_mask", -1), 1);
  ck_assert_double_eq(ir_node_attr_float(bwd, "scale", 0), 0.25);
  ck_assert_uint_eq(in_grads[1], in_grads[0] + 1);
  ck_assert_uint_eq(in_grads[2], in_grads[0] + 2);
  ck_assert_uint_eq(in_grads[3], IR_NONE);
  ck_assert(ir_type_equal(ir_value_type(f.g, in_grads[1]), ir_value_type(f.g, k)));
  ck_assert(ir_type_equal(ir_value_type(f.g, in_grads[2]), ir_value_type(f.g, v)));

  /* rotary's rule is the inverse rotation with the same base */
  uint32_t xq = input(&f, "xq", 4, (int[]){-1, 2, -2, 8});
  ir_attr_t rattrs[2] = {IR_ATTR_F("base", 500.0), IR_ATTR_I("inverse", 0)};
  uint32_t y = tu_node(f.g, IR_OP_ROTARY, NULL, &xq, 1, rattrs, 2, NULL);
  ck_assert_uint_ne(y, IR_NONE);
  ir_vjp_ctx_t rc = {.g = f.g, .node = *ir_value_producer(f.g, y)};
  uint32_t rog[1] = {xq}, rig[1] = {IR_NONE};
  rc.out_grads = rog;
  rc.in_grads = rig;
  ck_assert_ptr_null(ir_op_info(IR_OP_ROTARY)->vjp(&rc));
  const ir_node_t *rn = ir_value_producer(f.g, rig[0]);
  ck_assert_int_eq(rn->op, IR_OP_ROTARY);
  ck_assert_int_eq(ir_node_attr_int(rn, "inverse", -1), 1);
  ck_assert_double_eq(ir_node_attr_float(rn, "base", 0), 500.0);
  ir_module_free(f.m);
}
END_TEST

/* ---- mask modes: inference checks them and the VJP hands them to attention_bwd ------------ */

START_TEST(test_mask_modes_infer_and_vjp) {
  gfix_t f = gfix_make();
  uint32_t q = input(&f, "q", 4, (int[]){-1, 2, -2, 8});
  uint32_t k = input(&f, "k", 4, (int[]){-1, 2, -3, 8});
  uint32_t v = input(&f, "v", 4, (int[]){-1, 2, -3, 6});
  uint32_t pair = input(&f, "pair", 4, (int[]){-1, 1, -2, -3});
  ir_attr_t bad_mode[2] = {IR_ATTR_S("mask_mode", "multiply"), IR_ATTR_F("scale", 0.25)};
  ir_attr_t fill_nomask[2] = {IR_ATTR_S("mask_mode", "fill"), IR_ATTR_F("scale", 0.25)};
  ir_attr_t bad_fill[3] = {IR_ATTR_F("fill", INFINITY), IR_ATTR_S("mask_mode", "fill"),
                           IR_ATTR_F("scale", 0.25)};
  expect_error(&f, IR_OP_ATTENTION, (uint32_t[]){q, k, v, pair}, 4, bad_mode, 2, "mask_mode");
  expect_error(&f, IR_OP_ATTENTION, (uint32_t[]){q, k, v}, 3, fill_nomask, 2, "needs a mask");
  expect_error(&f, IR_OP_ATTENTION, (uint32_t[]){q, k, v, pair}, 4, bad_fill, 3, "fill");

  static const char *const modes[2] = {"fill", "add_zero"};
  for (int mi = 0; mi < 2; mi++) {
    ir_attr_t attrs[3] = {IR_ATTR_F("fill", -5e20), IR_ATTR_S("mask_mode", modes[mi]),
                          IR_ATTR_F("scale", 0.25)};
    uint32_t o = tu_node(f.g, IR_OP_ATTENTION, NULL, (uint32_t[]){q, k, v, pair}, 4, attrs, 3,
                         NULL);
    ck_assert_uint_ne(o, IR_NONE);
    uint32_t dO = input(&f, mi ? "dO_add_zero" : "dO_fill", 4, (int[]){-1, 2, -2, 6});
    ir_vjp_ctx_t c = {.g = f.g, .node = *ir_value_producer(f.g, o)};
    uint32_t out_grads[3] = {dO, IR_NONE, IR_NONE};
    uint32_t in_grads[4] = {IR_NONE, IR_NONE, IR_NONE, IR_NONE};
    c.out_grads = out_grads;
    c.in_grads = in_grads;
    ck_assert_ptr_null(ir_op_info(IR_OP_ATTENTION)->vjp(&c));
    ck_assert_ptr_null(f.g->error);
    const ir_node_t *bwd = ir_value_producer(f.g, in_grads[0]);
    ck_assert_int_eq(bwd->op, IR_OP_ATTENTION_BWD);
    ck_assert_str_eq(ir_node_attr_string(bwd, "mask_mode", ""), modes[mi]);
    ck_assert_double_eq(ir_node_attr_float(bwd, "fill", 0), -5e20);
    ck_assert_uint_eq(in_grads[3], IR_NONE);
  }
  /* the default convention adds no attributes to the backward */
  ir_attr_t plain[1] = {IR_ATTR_F("scale", 0.25)};
  uint32_t o = tu_node(f.g, IR_OP_ATTENTION, NULL, (uint32_t[]){q, k, v, pair}, 4, plain, 1, NULL);
  uint32_t dO = input(&f, "dO_add", 4, (int[]){-1, 2, -2, 6});
  ir_vjp_ctx_t c = {.g = f.g, .node = *ir_value_producer(f.g, o)};
  uint32_t out_grads[3] = {dO, IR_NONE, IR_NONE};
  uint32_t in_grads[4] = {IR_NONE, IR_NONE, IR_NONE, IR_NONE};
  c.out_grads = out_grads;
  c.in_grads = in_grads;
  ck_assert_ptr_null(ir_op_info(IR_OP_ATTENTION)->vjp(&c));
  const ir_node_t *bwd = ir_value_producer(f.g, in_grads[0]);
  ck_assert_ptr_null(ir_node_attr(bwd, "mask_mode"));
  ck_assert_ptr_null(ir_node_attr(bwd, "fill"));
  ck_assert_uint_eq(bwd->nattrs, 2);
  ir_module_free(f.m);
}
END_TEST

/* ---- add_zero zeroes masked probabilities, fill uses the fill rounded to the dtype -------- */

START_TEST(test_mask_modes_kernels) {
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = k_dtypes[di];
    enum { LQ = 3, LK = 4, D = 2, DV = 2 };
    ir_tensor_t in[4] = {tu_tensor(dt, 4, (int64_t[]){1, 1, LQ, D}),
                         tu_tensor(dt, 4, (int64_t[]){1, 1, LK, D}),
                         tu_tensor(dt, 4, (int64_t[]){1, 1, LK, DV}),
                         tu_tensor(dt, 4, (int64_t[]){1, 1, LQ, LK})};
    for (int i = 0; i < 3; i++) fill_random(&in[i], 1.0);
    /* row 0: keys 2, 3 masked; row 1: all masked; row 2: none */
    for (int j = 0; j < LK; j++) {
      tu_set(&in[3], 0 * LK + j, j >= 2 ? finfo_min(dt) : 0.0);
      tu_set(&in[3], 1 * LK + j, finfo_min(dt));
    }
    ir_tensor_t out[3] = {tu_tensor(dt, 4, (int64_t[]){1, 1, LQ, DV}),
                          tu_tensor(dt, 3, (int64_t[]){1, 1, LQ}),
                          tu_tensor(dt, 3, (int64_t[]){1, 1, LQ})};
    ir_attr_t za[2] = {IR_ATTR_S("mask_mode", "add_zero"), IR_ATTR_F("scale", 0.5)};
    tu_run_kernel(IR_OP_ATTENTION, "test.node", za, 2, in, 4, out, 3, NULL);
    for (int e = 0; e < DV; e++) ck_assert(tu_get(&out[0], 1 * DV + e) == 0.0); /* zeroed row */
    ck_assert_double_eq(tu_get(&out[2], 1), (double)LK); /* l still counts every key */
    ck_assert_double_ne(tu_get(&out[0], 0), 0.0);

    /* fill: the same row pattern as a 0/1 mask; the fully masked row's m is the fill as
     * stored in the dtype (-1e30 rounded to float for f32) */
    for (int i = 0; i < LQ * LK; i++) tu_set(&in[3], i, tu_get(&in[3], i) < 0 ? 0.0 : 1.0);
    ir_attr_t fa[2] = {IR_ATTR_S("mask_mode", "fill"), IR_ATTR_F("scale", 0.5)};
    tu_run_kernel(IR_OP_ATTENTION, "test.node", fa, 2, in, 4, out, 3, NULL);
    double want_fill = dt == IR_DTYPE_F32 ? (double)(float)-1e30 : -1e30;
    ck_assert_double_eq(tu_get(&out[1], 1), want_fill);
    ck_assert_double_eq(tu_get(&out[2], 1), (double)LK);
    for (int e = 0; e < DV; e++) { /* uniform over the keys */
      double mean = 0;
      for (int j = 0; j < LK; j++) mean += tu_get(&in[2], j * DV + e) / LK;
      ck_assert_double_le(fabs(tu_get(&out[0], 1 * DV + e) - mean), 1e-6);
    }
    tu_free_tensors(in, 4);
    tu_free_tensors(out, 3);
  }
}
END_TEST

static Suite *attention_suite(void) {
  Suite *s = suite_create("ops_attention");
  TCase *tc = tcase_create("attention");
  tcase_add_test(tc, test_golden);
  tcase_add_test(tc, test_fully_masked_row_uniform);
  tcase_add_test(tc, test_bwd_thread_invariance);
  tcase_add_test(tc, test_padding_invariance);
  tcase_add_test(tc, test_rotary_inverse_and_inplace);
  tcase_add_test(tc, test_infer_and_vjp_rule);
  tcase_add_test(tc, test_mask_modes_infer_and_vjp);
  tcase_add_test(tc, test_mask_modes_kernels);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(attention_suite()); }
