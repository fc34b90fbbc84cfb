/* The model group (rel_shift, rel_shift_bwd, one_hot, esm_token_dropout): golden cases against
 * the peers' own code (Enformer's relative_shift and str_to_one_hot, transformers' EsmEmbeddings)
 * through the op harness, plus what goldens cannot show: rel_shift is an exact gather for any
 * dtype and its backward is its transpose, the one-hot table is exact for every byte,
 * esm_token_dropout's f32 ratio matches torch's float32 arithmetic bit for bit, results do not
 * depend on the thread count, the VJP rules emit the ops they should, and inference rejects
 * malformed nodes with a message naming the problem. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/op_harness.h"
#include "tests/support/test_util.h"

/* ---- tensors and kernels -------------------------------------------------------------- */

static uint64_t g_rng = 0x452821e638d01377ull;

static double get(const ir_tensor_t *t, int64_t i) {
  switch (t->dtype) {
    case IR_DTYPE_F64: return ((double *)t->data)[i];
    case IR_DTYPE_F32: return ((float *)t->data)[i];
    case IR_DTYPE_I64: return (double)((int64_t *)t->data)[i];
    case IR_DTYPE_I32: return ((int32_t *)t->data)[i];
    default: return ((uint8_t *)t->data)[i];
  }
}

static void set(ir_tensor_t *t, int64_t i, double v) {
  switch (t->dtype) {
    case IR_DTYPE_F64: ((double *)t->data)[i] = v; break;
    case IR_DTYPE_F32: ((float *)t->data)[i] = (float)v; break;
    case IR_DTYPE_I64: ((int64_t *)t->data)[i] = (int64_t)v; break;
    case IR_DTYPE_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    default: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
  }
}

static void fill_random(ir_tensor_t *t, double scale) {
  int64_t n = ir_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) set(t, i, scale * tu_urand(&g_rng));
}

/* ---- golden cases ----------------------------------------------------------------------- */

START_TEST(test_golden) {
  op_harness_tol_t tol = op_harness_default_tol();
  ck_assert_int_eq(op_harness_run_file("tests/golden/ops_model.safetensors", &tol), 0);
}
END_TEST

/* ---- rel_shift: the index map for several dtypes, and the backward is its transpose -------- */

START_TEST(test_rel_shift_index_map) {
  static const ir_dtype_t dts[4] = {IR_DTYPE_F32, IR_DTYPE_F64, IR_DTYPE_I64, IR_DTYPE_U8};
  for (int di = 0; di < 4; di++) {
    for (int64_t n = 1; n <= 9; n += 4) {
      ir_dtype_t dt = dts[di];
      int64_t w = 2 * n - 1;
      ir_tensor_t x = tu_tensor(dt, 3, (int64_t[]){3, n, w});
      ir_tensor_t y = tu_tensor(dt, 3, (int64_t[]){3, n, n});
      for (int64_t k = 0; k < ir_tensor_numel(&x); k++) set(&x, k, (double)(k % 251));
      tu_run_kernel(IR_OP_REL_SHIFT, "test.node", NULL, 0, &x, 1, &y, 1, NULL);
      for (int64_t r = 0; r < 3; r++)
        for (int64_t i = 0; i < n; i++)
          for (int64_t j = 0; j < n; j++)
            ck_assert_double_eq(get(&y, (r * n + i) * n + j),
                                get(&x, (r * n + i) * w + (j - i + n - 1)));
      /* the backward scatters back: bwd(y) keeps the window and zeroes the rest, and
       * rel_shift(bwd(dy)) == dy */
      ir_tensor_t bin[2] = {y, x};
      ir_tensor_t dx = tu_tensor(dt, 3, (int64_t[]){3, n, w});
      fill_random(&dx, 7.0); /* stale contents must be overwritten */
      tu_run_kernel(IR_OP_REL_SHIFT_BWD, "test.node", NULL, 0, bin, 2, &dx, 1, NULL);
      for (int64_t r = 0; r < 3; r++)
        for (int64_t i = 0; i < n; i++)
          for (int64_t k = 0; k < w; k++) {
            int64_t j = k - (n - 1 - i);
            double want = (j >= 0 && j < n) ? get(&x, (r * n + i) * w + k) : 0.0;
            ck_assert_double_eq(get(&dx, (r * n + i) * w + k), want);
          }
      ir_tensor_t y2 = tu_tensor(dt, 3, (int64_t[]){3, n, n});
      tu_run_kernel(IR_OP_REL_SHIFT, "test.node", NULL, 0, &dx, 1, &y2, 1, NULL);
      ck_assert(tu_same_bits(&y, &y2));
      free(x.data);
      free(y.data);
      free(dx.data);
      free(y2.data);
    }
  }
}
END_TEST

/* ---- one_hot: every byte against the table, in both dtypes ------------------------------- */

START_TEST(test_one_hot_table) {
  ir_tensor_t b = tu_tensor(IR_DTYPE_U8, 2, (int64_t[]){2, 256});
  for (int i = 0; i < 512; i++) ((uint8_t *)b.data)[i] = (uint8_t)(i < 256 ? i : 511 - i);
  static const char *const names[2] = {"f32", "f64"};
  static const ir_dtype_t dts[2] = {IR_DTYPE_F32, IR_DTYPE_F64};
  for (int di = 0; di < 2; di++) {
    ir_tensor_t y = tu_tensor(dts[di], 3, (int64_t[]){2, 256, 4});
    fill_random(&y, 3.0);
    ir_attr_t attrs[1] = {IR_ATTR_S("dtype", names[di])};
    tu_run_kernel(IR_OP_ONE_HOT, "test.node", attrs, 1, &b, 1, &y, 1, NULL);
    for (int i = 0; i < 512; i++) {
      int c = ((uint8_t *)b.data)[i];
      double want[4] = {0, 0, 0, 0};
      const char *hit = strchr("AaCcGgTt", c);
      if (c != 0 && hit) want[(hit - "AaCcGgTt") / 2] = 1.0;
      if (c == '.') want[0] = want[1] = want[2] = want[3] = 0.25;
      for (int k = 0; k < 4; k++)
        ck_assert_msg(get(&y, i * 4 + k) == want[k], "byte %d column %d: %g", c, k,
                      get(&y, i * 4 + k));
    }
    free(y.data);
  }
  free(b.data);
}
END_TEST

/* ---- esm_token_dropout: torch's float32 ratio, zeroed and padded rows ------------------- */

START_TEST(test_esm_token_dropout_arithmetic) {
  enum { B = 2, L = 7, H = 5 };
  /* row 0: 7 valid tokens, <mask> at 1, 4 and 5; row 1: 3 valid, none masked */
  static const int64_t ids_v[B][L] = {{0, 32, 5, 6, 32, 32, 2}, {0, 9, 2, 1, 1, 1, 1}};
  static const int nvalid[B] = {7, 3};
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = di ? IR_DTYPE_F64 : IR_DTYPE_F32;
    ir_tensor_t in[3] = {tu_tensor(dt, 3, (int64_t[]){B, L, H}),
                         tu_tensor(IR_DTYPE_I64, 2, (int64_t[]){B, L}),
                         tu_tensor(dt, 2, (int64_t[]){B, L})};
    fill_random(&in[0], 2.0);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < L; t++) {
        set(&in[1], b * L + t, (double)ids_v[b][t]);
        set(&in[2], b * L + t, t < nvalid[b] ? 1.0 : 0.0);
      }
    ir_tensor_t y = tu_tensor(dt, 3, (int64_t[]){B, L, H});
    ir_attr_t attrs[2] = {IR_ATTR_I("mask_token", 32), IR_ATTR_F("ratio", 0.15 * 0.8)};
    tu_run_kernel(IR_OP_ESM_TOKEN_DROPOUT, "test.node", attrs, 2, in, 3, &y, 1, NULL);
    /* torch: 1 - (float)3 / (float)7 in float32, and 1 - 0/3 */
    float den0 = 1.0f - 3.0f / 7.0f;
    for (int b = 0; b < B; b++)
      for (int t = 0; t < L; t++)
        for (int e = 0; e < H; e++) {
          int64_t k = (b * L + t) * H + e;
          double x = get(&in[0], k), want;
          if (ids_v[b][t] == 32 || t >= nvalid[b]) {
            want = 0.0;
          } else if (dt == IR_DTYPE_F64) {
            want = x * 0.88 / (double)(b == 0 ? den0 : 1.0f);
          } else {
            float v = (float)x * 0.88f;
            want = v / (b == 0 ? den0 : 1.0f);
          }
          ck_assert_msg(get(&y, k) == want, "b %d t %d e %d: %.17g vs %.17g", b, t, e, get(&y, k),
                        want);
        }
    for (int i = 0; i < 3; i++) free(in[i].data);
    free(y.data);
  }
}
END_TEST

START_TEST(test_esm_token_dropout_threads) {
  enum { B = 4, L = 50, H = 16 };
  for (int di = 0; di < 2; di++) {
    ir_dtype_t dt = di ? IR_DTYPE_F64 : IR_DTYPE_F32;
    ir_tensor_t in[3] = {tu_tensor(dt, 3, (int64_t[]){B, L, H}),
                         tu_tensor(IR_DTYPE_I32, 2, (int64_t[]){B, L}),
                         tu_tensor(dt, 2, (int64_t[]){B, L})};
    fill_random(&in[0], 2.0);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < L; t++) {
        set(&in[1], b * L + t, (t * 7 + b) % 5 == 0 ? 32 : 4 + t % 20);
        set(&in[2], b * L + t, t < L - 9 * b ? 1.0 : 0.0);
      }
    ir_attr_t attrs[2] = {IR_ATTR_I("mask_token", 32), IR_ATTR_F("ratio", 0.12)};
    ir_tensor_t y = tu_tensor(dt, 3, (int64_t[]){B, L, H}), y2 = tu_tensor(dt, 3,
                              (int64_t[]){B, L, H});
    tu_run_kernel(IR_OP_ESM_TOKEN_DROPOUT, "test.node", attrs, 2, in, 3, &y, 1, NULL);
    tu_two_threads_t two = tu_two_threads();
    tu_run_kernel(IR_OP_ESM_TOKEN_DROPOUT, "test.node", attrs, 2, in, 3, &y2, 1, &two.base);
    ck_assert_int_gt(two.splits, 0);
    ck_assert(tu_same_bits(&y, &y2));
    for (int i = 0; i < 3; i++) free(in[i].data);
    free(y.data);
    free(y2.data);
  }
}
END_TEST

/* ---- inference, VJP rules ------------------------------------------------------------------ */

typedef struct gfix {
  ir_module_t *m;
  ir_graph_t *g;
  int B, N;
} gfix_t;

static gfix_t gfix_make(void) {
  gfix_t f;
  f.m = ir_module_create();
  ck_assert_ptr_null(ir_module_add_symbol(f.m, "B", 2, &f.B));
  ck_assert_ptr_null(ir_module_add_symbol(f.m, "N", 8, &f.N));
  f.g = ir_module_add_program(f.m, "main");
  ck_assert_ptr_nonnull(f.g);
  return f;
}

static void expect_error(gfix_t *f, ir_op_t op, const uint32_t *ins, uint32_t nin,
                         const ir_attr_t *attrs, uint32_t nattrs, const char *needle) {
  ck_assert_uint_eq(tu_node(f->g, op, NULL, ins, nin, attrs, nattrs, NULL), IR_NONE);
  tu_expect_msg(ir_graph_take_error(f->g), needle, NULL);
}

static void expect_type(gfix_t *f, uint32_t v, const char *type) {
  ck_assert_uint_ne(v, IR_NONE);
  ir_type_t t;
  ck_assert_ptr_null(ir_parse_type(f->m, type, &t));
  ck_assert_msg(ir_type_equal(ir_value_type(f->g, v), &t), "value %u is not %s", v, type);
}

/* Applies op's VJP rule to the node producing v with cotangent dy; returns in_grads. */
static void apply_vjp(gfix_t *f, uint32_t v, uint32_t dy, uint32_t *in_grads, uint32_t nin) {
  const ir_node_t *n = ir_value_producer(f->g, v);
  ir_vjp_ctx_t c = {.g = f->g, .node = *n};
  uint32_t out_grads[1] = {dy};
  for (uint32_t i = 0; i < nin; i++) in_grads[i] = IR_NONE;
  c.out_grads = out_grads;
  c.in_grads = in_grads;
  ck_assert_ptr_null(ir_op_info(c.node.op)->vjp(&c));
  ck_assert_ptr_null(f->g->error);
}

START_TEST(test_infer_and_vjp_rules) {
  gfix_t f = gfix_make();
  uint32_t x = tu_input_text(f.g, "x", "f32[B,8,N,2*N-1]");
  uint32_t bad = tu_input_text(f.g, "bad", "f32[B,8,N,2*N]");
  uint32_t y = tu_node(f.g, IR_OP_REL_SHIFT, NULL, &x, 1, NULL, 0, NULL);
  expect_type(&f, y, "f32[B,8,N,N]");
  expect_error(&f, IR_OP_REL_SHIFT, &bad, 1, NULL, 0, "2n-1");
  uint32_t g[4];
  apply_vjp(&f, y, y, g, 1);
  ck_assert_int_eq(ir_value_producer(f.g, g[0])->op, IR_OP_REL_SHIFT_BWD);
  expect_type(&f, g[0], "f32[B,8,N,2*N-1]");
  uint32_t g2[2];
  apply_vjp(&f, g[0], g[0], g2, 2);
  ck_assert_int_eq(ir_value_producer(f.g, g2[0])->op, IR_OP_REL_SHIFT);
  ck_assert_uint_eq(g2[1], IR_NONE);
  ck_assert_uint_eq(ir_op_info(IR_OP_REL_SHIFT_BWD)->nondiff_inputs, 1u << 1);
  expect_error(&f, IR_OP_REL_SHIFT_BWD, (uint32_t[]){x, x}, 2, NULL, 0, "dy");

  uint32_t bytes = tu_input_text(f.g, "bytes", "u8[B,N]");
  uint32_t fb = tu_input_text(f.g, "fb", "f32[B,N]");
  ir_attr_t f64a[1] = {IR_ATTR_S("dtype", "f64")}, i64a[1] = {IR_ATTR_S("dtype", "i64")};
  expect_type(&f, tu_node(f.g, IR_OP_ONE_HOT, NULL, &bytes, 1, f64a, 1, NULL), "f64[B,N,4]");
  expect_error(&f, IR_OP_ONE_HOT, &fb, 1, f64a, 1, "u8");
  expect_error(&f, IR_OP_ONE_HOT, &bytes, 1, i64a, 1, "dtype");
  expect_error(&f, IR_OP_ONE_HOT, &bytes, 1, NULL, 0, "dtype");
  ck_assert_ptr_null(ir_op_info(IR_OP_ONE_HOT)->vjp);

  uint32_t e = tu_input_text(f.g, "e", "f64[B,N,16]"), ids = tu_input_text(f.g, "ids", "i64[B,N]");
  uint32_t m = tu_input_text(f.g, "m", "f64[B,N]"), fids = tu_input_text(f.g, "fids", "f64[B,N]");
  uint32_t m3 = tu_input_text(f.g, "m3", "f64[B,N,1]");
  ir_attr_t ea[2] = {IR_ATTR_I("mask_token", 32), IR_ATTR_F("ratio", 0.12)};
  ir_attr_t eb[1] = {IR_ATTR_F("ratio", 1.0)};
  uint32_t z = tu_node(f.g, IR_OP_ESM_TOKEN_DROPOUT, NULL, (uint32_t[]){e, ids, m}, 3, ea, 2, NULL);
  expect_type(&f, z, "f64[B,N,16]");
  expect_error(&f, IR_OP_ESM_TOKEN_DROPOUT, (uint32_t[]){e, fids, m}, 3, ea, 2, "ids");
  expect_error(&f, IR_OP_ESM_TOKEN_DROPOUT, (uint32_t[]){e, ids, m3}, 3, ea, 2, "mask");
  expect_error(&f, IR_OP_ESM_TOKEN_DROPOUT, (uint32_t[]){e, ids, m}, 3, eb, 1, "ratio");
  uint32_t dz = tu_input_text(f.g, "dz", "f64[B,N,16]");
  uint32_t eg[3];
  apply_vjp(&f, z, dz, eg, 3);
  const ir_node_t *en = ir_value_producer(f.g, eg[0]);
  ck_assert_int_eq(en->op, IR_OP_ESM_TOKEN_DROPOUT);
  ck_assert_uint_eq(en->inputs[0], dz);
  ck_assert_uint_eq(en->inputs[1], ids);
  ck_assert_uint_eq(en->inputs[2], m);
  ck_assert_int_eq(ir_node_attr_int(en, "mask_token", -1), 32);
  ck_assert_double_eq(ir_node_attr_float(en, "ratio", -1), 0.12);
  ck_assert_uint_eq(eg[1], IR_NONE);
  ck_assert_uint_eq(eg[2], IR_NONE);
  ir_module_free(f.m);
}
END_TEST

static Suite *model_suite(void) {
  Suite *s = suite_create("ops_model");
  TCase *tc = tcase_create("model");
  tcase_add_test(tc, test_golden);
  tcase_add_test(tc, test_rel_shift_index_map);
  tcase_add_test(tc, test_one_hot_table);
  tcase_add_test(tc, test_esm_token_dropout_arithmetic);
  tcase_add_test(tc, test_esm_token_dropout_threads);
  tcase_add_test(tc, test_infer_and_vjp_rules);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(model_suite()); }
