/* The elementwise group: golden cases against torch (forward, VJP vs autograd, f64 finite
 * differences) through the op harness, plus what goldens cannot show: CAST rounds to nearest
 * even at exact halfway points (bf16, f16, subnormals, overflow, i64 sources without double
 * rounding), integer casts wrap or saturate as documented, integer arithmetic wraps, WHERE
 * passes i64 ids bit-exactly, VJPs sum broadcast gradients only where shapes differ, and
 * inference rejects malformed nodes with a message naming the node. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/op_harness.h"
#include "tests/support/test_util.h"

/* CAST of n values of dtype `from` into dtype `to`. */
static void cast_array(ir_dtype_t from, const void *src, int64_t n, ir_dtype_t to, void *dst) {
  tu_fx_t f = tu_fx_new();
  uint32_t x = tu_fx_input(&f, "x", from, 1, &n);
  ir_attr_t at = IR_ATTR_S("dtype", ir_dtype_name(to));
  uint32_t y = tu_fx_op(&f, IR_OP_CAST, "cast", &x, 1, &at, 1);
  ck_assert_uint_ne(y, IR_NONE);
  ir_tensor_t in = tu_tensor(from, 1, &n), out = tu_tensor(to, 1, &n);
  memcpy(in.data, src, (size_t)n * ir_dtype_size(from));
  tu_run_node(&f, y, &in, 1, &out, NULL);
  memcpy(dst, out.data, (size_t)n * ir_dtype_size(to));
  free(in.data);
  free(out.data);
  ir_module_free(f.m);
}

static uint32_t f32_bits(float x) {
  uint32_t b;
  memcpy(&b, &x, sizeof b);
  return b;
}

static float bits_f32(uint32_t b) {
  float x;
  memcpy(&x, &b, sizeof x);
  return x;
}

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static uint64_t next_u64(void) { return tu_xorshift64(&g_rng); }

/* ---- goldens ------------------------------------------------------------------------------ */

START_TEST(golden_cases) {
  op_harness_tol_t tol = op_harness_default_tol();
  ck_assert_int_eq(op_harness_run_file("tests/golden/ops_elementwise.safetensors", &tol), 0);
}
END_TEST

/* ---- CAST rounding ------------------------------------------------------------------------ */

START_TEST(cast_bf16_halfway_ties_to_even) {
  /* bf16 keeps 7 fraction bits: near 1.0 its spacing is 2^-7, so 1 + 2^-8 is exactly halfway
   * between 1.0 (even) and 1.0078125 (odd), and 1 + 3*2^-8 between 1.0078125 (odd) and
   * 1.015625 (even). */
  const float src[] = {1.0f + 0x1p-8f,         1.0f + 3 * 0x1p-8f,    1.0f + 0x1p-8f + 0x1p-20f,
                       -(1.0f + 0x1p-8f),      -(1.0f + 3 * 0x1p-8f), 0x1.fffffep127f,
                       -0x1.fffffep127f,       INFINITY,             0.0f,
                       -0.0f,                  0x1p-133f,            0x1.8p-133f};
  const uint16_t want[] = {0x3f80, 0x3f82, 0x3f81, 0xbf80, 0xbf82, 0x7f80,
                           0xff80, 0x7f80, 0x0000, 0x8000, 0x0001, 0x0002};
  int n = (int)(sizeof src / sizeof src[0]);
  uint16_t got[16];
  cast_array(IR_DTYPE_F32, src, n, IR_DTYPE_BF16, got);
  for (int i = 0; i < n; i++)
    ck_assert_msg(got[i] == want[i], "bf16(%a) = 0x%04x, want 0x%04x", (double)src[i], got[i],
                  want[i]);
  /* NaN stays NaN (quiet). */
  float nan = NAN;
  cast_array(IR_DTYPE_F32, &nan, 1, IR_DTYPE_BF16, got);
  ck_assert_msg((got[0] & 0x7f80) == 0x7f80 && (got[0] & 0x7f), "NaN became 0x%04x", got[0]);
}
END_TEST

/* Against the classic integer formulation (round bias 0x7fff plus the kept LSB) on random
 * f32 bit patterns, from f32 and from the same values held in f64. */
START_TEST(cast_bf16_matches_bias_formula) {
  enum { N = 200000 };
  float *src = malloc(sizeof(float) * N);
  double *src64 = malloc(sizeof(double) * N);
  uint16_t *got = malloc(sizeof(uint16_t) * N), *got64 = malloc(sizeof(uint16_t) * N);
  ck_assert(src && src64 && got && got64);
  for (int i = 0; i < N; i++) {
    uint32_t b;
    do b = (uint32_t)next_u64(); while ((b & 0x7f800000u) == 0x7f800000u); /* no inf/NaN */
    src[i] = bits_f32(b);
    src64[i] = src[i];
  }
  cast_array(IR_DTYPE_F32, src, N, IR_DTYPE_BF16, got);
  cast_array(IR_DTYPE_F64, src64, N, IR_DTYPE_BF16, got64);
  for (int i = 0; i < N; i++) {
    uint32_t b = f32_bits(src[i]);
    uint16_t want = (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
    ck_assert_msg(got[i] == want && got64[i] == want, "bf16(%a): f32 0x%04x, f64 0x%04x, want 0x%04x",
                  (double)src[i], got[i], got64[i], want);
  }
  free(src);
  free(src64);
  free(got);
  free(got64);
}
END_TEST

/* Every bf16 and f16 pattern decodes and re-encodes to itself (NaNs stay NaN). */
START_TEST(cast_half_roundtrip_exhaustive) {
  enum { N = 65536 };
  uint16_t *src = malloc(sizeof(uint16_t) * N), *back = malloc(sizeof(uint16_t) * N);
  double *wide = malloc(sizeof(double) * N);
  ck_assert(src && back && wide);
  for (int i = 0; i < N; i++) src[i] = (uint16_t)i;
  const ir_dtype_t kinds[2] = {IR_DTYPE_BF16, IR_DTYPE_F16};
  for (int k = 0; k < 2; k++) {
    uint16_t expmask = kinds[k] == IR_DTYPE_BF16 ? 0x7f80 : 0x7c00;
    cast_array(kinds[k], src, N, IR_DTYPE_F64, wide);
    cast_array(IR_DTYPE_F64, wide, N, kinds[k], back);
    for (int i = 0; i < N; i++) {
      bool is_nan = (src[i] & expmask) == expmask && (src[i] & (uint16_t)~(expmask | 0x8000));
      if (is_nan)
        ck_assert_msg(isnan(wide[i]) && (back[i] & expmask) == expmask, "%s NaN 0x%04x",
                      ir_dtype_name(kinds[k]), src[i]);
      else
        ck_assert_msg(back[i] == src[i], "%s 0x%04x -> %a -> 0x%04x", ir_dtype_name(kinds[k]),
                      src[i], wide[i], back[i]);
    }
  }
  /* Known decodings: smallest f16 subnormal and largest finite f16. */
  uint16_t h[2] = {0x0001, 0x7bff};
  double d[2];
  cast_array(IR_DTYPE_F16, h, 2, IR_DTYPE_F64, d);
  ck_assert(d[0] == 0x1p-24 && d[1] == 65504.0);
  free(src);
  free(back);
  free(wide);
}
END_TEST

/* f16: halfway cases in normals and subnormals, overflow, and random values against a
 * nearest-value search over all finite f16 numbers. */
START_TEST(cast_f16_rne) {
  const double src[] = {1.0 + 0x1p-11, 1.0 + 3 * 0x1p-11, 65504.0, 65519.99, 65520.0, -1e6,
                        0x1p-25,       0x1.8p-24,         0x1.8p-25, 0x1p-26};
  const uint16_t want[] = {0x3c00, 0x3c02, 0x7bff, 0x7bff, 0x7c00, 0xfc00,
                           0x0000, 0x0002, 0x0001, 0x0000};
  int n = (int)(sizeof src / sizeof src[0]);
  uint16_t got[16];
  cast_array(IR_DTYPE_F64, src, n, IR_DTYPE_F16, got);
  for (int i = 0; i < n; i++)
    ck_assert_msg(got[i] == want[i], "f16(%a) = 0x%04x, want 0x%04x", src[i], got[i], want[i]);

  /* Oracle: the sorted non-negative finite f16 values. */
  enum { NPOS = 0x7c00, N = 50000 };
  uint16_t *pos = malloc(sizeof(uint16_t) * NPOS);
  double *posv = malloc(sizeof(double) * NPOS), *x = malloc(sizeof(double) * N);
  uint16_t *res = malloc(sizeof(uint16_t) * N);
  ck_assert(pos && posv && x && res);
  for (int i = 0; i < NPOS; i++) pos[i] = (uint16_t)i;
  cast_array(IR_DTYPE_F16, pos, NPOS, IR_DTYPE_F64, posv);
  for (int i = 0; i < N; i++) {
    /* log-uniform magnitudes from 2^-30 to 2^16, random sign */
    double u = (double)(next_u64() >> 11) / 9007199254740992.0;
    x[i] = ldexp(1.0 + u, (int)(next_u64() % 46) - 30) * ((next_u64() & 1) ? -1.0 : 1.0);
  }
  cast_array(IR_DTYPE_F64, x, N, IR_DTYPE_F16, res);
  for (int i = 0; i < N; i++) {
    double a = fabs(x[i]);
    uint16_t w;
    if (a >= 65520.0) {
      w = 0x7c00;
    } else {
      int lo = 0, hi = NPOS - 1; /* largest index with posv <= a */
      while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (posv[mid] <= a) lo = mid;
        else hi = mid - 1;
      }
      w = (uint16_t)lo;
      if (lo + 1 < NPOS) {
        double dl = a - posv[lo], du = posv[lo + 1] - a;
        if (du < dl || (du == dl && (lo & 1))) w = (uint16_t)(lo + 1);
      }
    }
    if (x[i] < 0) w |= 0x8000;
    ck_assert_msg(res[i] == w, "f16(%a) = 0x%04x, want 0x%04x", x[i], res[i], w);
  }
  free(pos);
  free(posv);
  free(x);
  free(res);
}
END_TEST

START_TEST(cast_integers) {
  /* i64 -> i32 and u8 wrap (two's complement), as torch. */
  const int64_t iv[] = {5, -1, (1ll << 32) + 7, INT64_MIN, 300};
  int32_t i32[5];
  uint8_t u8[5];
  cast_array(IR_DTYPE_I64, iv, 5, IR_DTYPE_I32, i32);
  cast_array(IR_DTYPE_I64, iv, 5, IR_DTYPE_U8, u8);
  ck_assert(i32[0] == 5 && i32[1] == -1 && i32[2] == 7 && i32[3] == 0 && i32[4] == 300);
  ck_assert(u8[0] == 5 && u8[1] == 255 && u8[2] == 7 && u8[3] == 0 && u8[4] == 44);
  /* float -> int truncates toward zero, saturates, NaN -> 0 (documented choice). */
  const double fv[] = {-2.7, 2.7, 1e20, -1e20, NAN, -0.5};
  int32_t r32[6];
  int64_t r64[6];
  uint8_t r8[6];
  cast_array(IR_DTYPE_F64, fv, 6, IR_DTYPE_I32, r32);
  cast_array(IR_DTYPE_F64, fv, 6, IR_DTYPE_I64, r64);
  cast_array(IR_DTYPE_F64, fv, 6, IR_DTYPE_U8, r8);
  ck_assert(r32[0] == -2 && r32[1] == 2 && r32[2] == INT32_MAX && r32[3] == INT32_MIN &&
            r32[4] == 0 && r32[5] == 0);
  ck_assert(r64[0] == -2 && r64[2] == INT64_MAX && r64[3] == INT64_MIN && r64[4] == 0);
  ck_assert(r8[0] == 0 && r8[1] == 2 && r8[2] == 255 && r8[4] == 0);
  /* i64 -> bf16 rounds once from the exact integer: 2^60 + 2^52 + 1 is just above the halfway
   * point 2^60 (1 + 2^-8), so it rounds up; going through f64 first would land exactly on the
   * halfway point and round down to 2^60. Also 257 (tie -> 256) and 259 (tie -> 260). */
  const int64_t big[] = {(1ll << 60) + (1ll << 52) + 1, 257, 259, -259};
  uint16_t bf[4];
  cast_array(IR_DTYPE_I64, big, 4, IR_DTYPE_BF16, bf);
  ck_assert_msg(bf[0] == 0x5d81, "bf16(2^60+2^52+1) = 0x%04x", bf[0]);
  ck_assert(bf[1] == 0x4380 && bf[2] == 0x4382 && bf[3] == 0xc382);
  /* i64 -> f32 likewise: 2^24 + 1 ties to 2^24; 2^40 + 2^16 + 1 rounds up. */
  const int64_t fi[] = {(1ll << 24) + 1, (1ll << 40) + (1ll << 16) + 1};
  float ff[2];
  cast_array(IR_DTYPE_I64, fi, 2, IR_DTYPE_F32, ff);
  ck_assert(ff[0] == 16777216.0f && ff[1] == 0x1.000002p40f);
}
END_TEST

/* ---- integer arithmetic and exact WHERE ------------------------------------------------- */

START_TEST(integer_add_wraps_and_broadcasts) {
  tu_fx_t f = tu_fx_new();
  int64_t da[2] = {2, 2}, db[1] = {2};
  uint32_t a = tu_fx_input(&f, "a", IR_DTYPE_I64, 2, da),
           b = tu_fx_input(&f, "b", IR_DTYPE_I64, 1, db);
  uint32_t ins[2] = {a, b};
  uint32_t y = tu_fx_op(&f, IR_OP_ADD, "add", ins, 2, NULL, 0);
  ck_assert_uint_ne(y, IR_NONE);
  ir_tensor_t t[2] = {tu_tensor(IR_DTYPE_I64, 2, da), tu_tensor(IR_DTYPE_I64, 1, db)};
  ir_tensor_t out = tu_tensor(IR_DTYPE_I64, 2, da);
  int64_t *pa = t[0].data, *pb = t[1].data;
  pa[0] = INT64_MAX; pa[1] = (1ll << 60) + 1; pa[2] = -5; pa[3] = 0;
  pb[0] = 1; pb[1] = 2;
  tu_run_node(&f, y, t, 2, &out, NULL);
  int64_t *po = out.data;
  ck_assert(po[0] == INT64_MIN && po[1] == (1ll << 60) + 3 && po[2] == -4 && po[3] == 2);
  free(t[0].data);
  free(t[1].data);
  free(out.data);
  ir_module_free(f.m);
}
END_TEST

START_TEST(where_passes_i64_exactly) {
  tu_fx_t f = tu_fx_new();
  int64_t dn[1] = {3}, d1[1] = {1};
  uint32_t c = tu_fx_input(&f, "c", IR_DTYPE_U8, 1, dn);
  uint32_t a = tu_fx_input(&f, "a", IR_DTYPE_I64, 1, dn),
           b = tu_fx_input(&f, "b", IR_DTYPE_I64, 1, d1);
  uint32_t ins[3] = {c, a, b};
  uint32_t y = tu_fx_op(&f, IR_OP_WHERE, "where", ins, 3, NULL, 0);
  ck_assert_uint_ne(y, IR_NONE);
  ck_assert_int_eq(ir_value_type(f.g, y)->dtype, IR_DTYPE_I64);
  ir_tensor_t t[3] = {tu_tensor(IR_DTYPE_U8, 1, dn), tu_tensor(IR_DTYPE_I64, 1, dn),
                      tu_tensor(IR_DTYPE_I64, 1, d1)};
  ir_tensor_t out = tu_tensor(IR_DTYPE_I64, 1, dn);
  uint8_t *pc = t[0].data;
  int64_t *pa = t[1].data, *pb = t[2].data;
  pc[0] = 1; pc[1] = 0; pc[2] = 7;
  pa[0] = (1ll << 60) + 1; pa[1] = 2; pa[2] = -((1ll << 55) + 3);
  pb[0] = (1ll << 58) + 1;
  tu_run_node(&f, y, t, 3, &out, NULL);
  int64_t *po = out.data;
  ck_assert(po[0] == (1ll << 60) + 1 && po[1] == (1ll << 58) + 1 && po[2] == -((1ll << 55) + 3));
  for (int i = 0; i < 3; i++) free(t[i].data);
  free(out.data);
  ir_module_free(f.m);
}
END_TEST

/* ---- VJP structure ------------------------------------------------------------------------ */

START_TEST(vjp_sums_only_broadcast_inputs) {
  tu_fx_t f = tu_fx_new();
  int64_t dx[3] = {2, 3, 4}, db[1] = {4};
  uint32_t x = tu_fx_input(&f, "x", IR_DTYPE_F32, 3, dx),
           b = tu_fx_input(&f, "b", IR_DTYPE_F32, 1, db);
  uint32_t ins[2] = {x, b};
  uint32_t y = tu_fx_op(&f, IR_OP_ADD, "add", ins, 2, NULL, 0);
  uint32_t dy = tu_fx_input(&f, "dy", IR_DTYPE_F32, 3, dx);
  ck_assert_uint_ne(y, IR_NONE);
  uint32_t mark = f.g->nnodes;
  uint32_t in_grads[2] = {IR_NONE, IR_NONE};
  ir_vjp_ctx_t c = {.g = f.g, .node = *ir_value_producer(f.g, y), .out_grads = &dy,
                    .in_grads = in_grads};
  ck_assert_ptr_null(ir_op_info(IR_OP_ADD)->vjp(&c));
  ck_assert_ptr_null(f.g->error);
  ck_assert_uint_eq(in_grads[0], dy); /* same shape: the cotangent itself */
  ck_assert_uint_ne(in_grads[1], IR_NONE);
  ck_assert_int_eq(ir_value_producer(f.g, in_grads[1])->op, IR_OP_SUM_TO);
  ck_assert_int_eq(tu_count_op(f.g, mark, IR_OP_SUM_TO), 1);
  ck_assert(ir_type_equal(ir_value_type(f.g, in_grads[1]), ir_value_type(f.g, b)));
  ir_module_free(f.m);
}
END_TEST

START_TEST(vjp_cast_back_and_int_stops) {
  tu_fx_t f = tu_fx_new();
  int64_t d[1] = {4};
  uint32_t x = tu_fx_input(&f, "x", IR_DTYPE_F32, 1, d);
  ir_attr_t to_bf16 = IR_ATTR_S("dtype", "bf16"), to_i32 = IR_ATTR_S("dtype", "i32");
  uint32_t y = tu_fx_op(&f, IR_OP_CAST, "c1", &x, 1, &to_bf16, 1);
  uint32_t z = tu_fx_op(&f, IR_OP_CAST, "c2", &x, 1, &to_i32, 1);
  uint32_t dy = tu_fx_input(&f, "dy", IR_DTYPE_BF16, 1, d);
  uint32_t dz = tu_fx_input(&f, "dz", IR_DTYPE_I32, 1, d);
  uint32_t gx = IR_NONE;
  ir_vjp_ctx_t c = {.g = f.g, .node = *ir_value_producer(f.g, y), .out_grads = &dy, .in_grads = &gx};
  ck_assert_ptr_null(ir_op_info(IR_OP_CAST)->vjp(&c));
  ck_assert_uint_ne(gx, IR_NONE);
  ck_assert_int_eq(ir_value_type(f.g, gx)->dtype, IR_DTYPE_F32);
  uint32_t gz = IR_NONE;
  ir_vjp_ctx_t c2 = {.g = f.g, .node = *ir_value_producer(f.g, z), .out_grads = &dz,
                     .in_grads = &gz};
  ck_assert_ptr_null(ir_op_info(IR_OP_CAST)->vjp(&c2));
  ck_assert_uint_eq(gz, IR_NONE);
  ir_module_free(f.m);
}
END_TEST

/* ---- inference errors ---------------------------------------------------------------------- */

START_TEST(infer_errors_name_the_node) {
  tu_fx_t f = tu_fx_new();
  int64_t d34[2] = {3, 4}, d54[2] = {5, 4}, d4[1] = {4};
  uint32_t a = tu_fx_input(&f, "a", IR_DTYPE_F32, 2, d34),
           b = tu_fx_input(&f, "b", IR_DTYPE_F32, 2, d54);
  uint32_t c = tu_fx_input(&f, "c", IR_DTYPE_F64, 1, d4),
           k = tu_fx_input(&f, "k", IR_DTYPE_I64, 1, d4);
  uint32_t ab[2] = {a, b}, ac[2] = {a, c}, kk[2] = {k, k};
  tu_fx_expect_error(&f, IR_OP_ADD, "layers.0.mlp.add", ab, 2, NULL, 0, "do not broadcast");
  tu_fx_expect_error(&f, IR_OP_MUL, "layers.0.mlp.mul", ac, 2, NULL, 0, "dtype");
  tu_fx_expect_error(&f, IR_OP_DIV, "int_div", kk, 2, NULL, 0, "float dtype");
  tu_fx_expect_error(&f, IR_OP_EXP, "int_exp", &k, 1, NULL, 0, "float dtype");
  ir_attr_t bad_fn = IR_ATTR_S("fn", "softmax");
  uint32_t aaa[3] = {a, a, a};
  tu_fx_expect_error(&f, IR_OP_UNARY_BWD, "bwd", aaa, 3, &bad_fn, 1, "softmax");
  ir_attr_t good_fn = IR_ATTR_S("fn", "tanh");
  uint32_t aab[3] = {a, a, b};
  tu_fx_expect_error(&f, IR_OP_UNARY_BWD, "bwd2", aab, 3, &good_fn, 1, "input 2");
  ir_attr_t bad_dtype = IR_ATTR_S("dtype", "f8");
  tu_fx_expect_error(&f, IR_OP_CAST, "to_f8", &a, 1, &bad_dtype, 1, "f8");
  ir_attr_t bad_alpha = IR_ATTR_S("alpha", "two");
  tu_fx_expect_error(&f, IR_OP_SCALE, "scale", &a, 1, &bad_alpha, 1, "alpha");
  uint32_t cab[3] = {a, c, a};
  tu_fx_expect_error(&f, IR_OP_WHERE, "where", cab, 3, NULL, 0, "dtype");
  /* The graph stays usable after a rejected node. */
  uint32_t ok = tu_fx_op(&f, IR_OP_ADD, "fine", (uint32_t[2]){a, a}, 2, NULL, 0);
  ck_assert_uint_ne(ok, IR_NONE);
  ir_module_free(f.m);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ops_elementwise");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, golden_cases);
  tcase_add_test(tc, cast_bf16_halfway_ties_to_even);
  tcase_add_test(tc, cast_bf16_matches_bias_formula);
  tcase_add_test(tc, cast_half_roundtrip_exhaustive);
  tcase_add_test(tc, cast_f16_rne);
  tcase_add_test(tc, cast_integers);
  tcase_add_test(tc, integer_add_wraps_and_broadcasts);
  tcase_add_test(tc, where_passes_i64_exactly);
  tcase_add_test(tc, vjp_sums_only_broadcast_inputs);
  tcase_add_test(tc, vjp_cast_back_and_int_stops);
  tcase_add_test(tc, infer_errors_name_the_node);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(suite()); }
