/* The matmul group (matmul, linear): golden cases against torch (forward, VJP vs autograd, f64
 * finite differences) through the op harness, plus what goldens cannot show: f32 dot products
 * accumulate in double, results are bit-identical for any thread count, the VJP of a shared
 * weight folds the batch into one product (no batched dW summed afterwards), costs count
 * 2*M*N*K flops, and inference rejects malformed nodes with a message naming them. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/op_harness.h"
#include "tests/support/test_util.h"

/* This suite's own xorshift stream (tu_urand, tu_fill), so its inputs stay as they were. */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

/* ---- goldens ------------------------------------------------------------------------------ */

START_TEST(golden_cases) {
  op_harness_tol_t tol = op_harness_default_tol();
  ck_assert_int_eq(op_harness_run_file("tests/golden/ops_matmul.safetensors", &tol), 0);
}
END_TEST

/* ---- accumulation and determinism ------------------------------------------------------- */

START_TEST(f32_dot_accumulates_in_double) {
  /* [2^24, 1 x 32] . ones: f32 accumulation stalls at 2^24, double reaches 2^24 + 32. */
  tu_fx_t f = tu_fx_new();
  int64_t da[2] = {1, 33}, db[2] = {33, 1}, dw[2] = {1, 33};
  uint32_t a = tu_fx_input(&f, "a", IR_DTYPE_F32, 2, da),
           b = tu_fx_input(&f, "b", IR_DTYPE_F32, 2, db);
  uint32_t w = tu_fx_input(&f, "w", IR_DTYPE_F32, 2, dw);
  uint32_t ab[2] = {a, b}, aw[2] = {a, w};
  uint32_t y = tu_fx_op(&f, IR_OP_MATMUL, "mm", ab, 2, NULL, 0);
  uint32_t z = tu_fx_op(&f, IR_OP_LINEAR, "lin", aw, 2, NULL, 0);
  ck_assert(y != IR_NONE && z != IR_NONE);
  ir_tensor_t t[2] = {tu_tensor(IR_DTYPE_F32, 2, da), tu_tensor(IR_DTYPE_F32, 2, db)};
  ir_tensor_t tw[2] = {t[0], tu_tensor(IR_DTYPE_F32, 2, dw)};
  float *pa = t[0].data;
  pa[0] = 16777216.0f;
  for (int i = 1; i < 33; i++) pa[i] = 1.0f;
  for (int i = 0; i < 33; i++) ((float *)t[1].data)[i] = ((float *)tw[1].data)[i] = 1.0f;
  ir_tensor_t oy = tu_tensor_of(&f, y), oz = tu_tensor_of(&f, z);
  tu_run_node(&f, y, t, 2, &oy, NULL);
  tu_run_node(&f, z, tw, 2, &oz, NULL);
  ck_assert_float_eq(*(float *)oy.data, 16777248.0f);
  ck_assert_float_eq(*(float *)oz.data, 16777248.0f);
  free(t[0].data);
  free(t[1].data);
  free(tw[1].data);
  free(oy.data);
  free(oz.data);
  ir_module_free(f.m);
}
END_TEST

static void check_matmul_threads(ir_dtype_t dt, bool ta, bool tb) {
  tu_fx_t f = tu_fx_new();
  /* a: [3, 1, 41, 67] (or [.., 67, 41]) x b: [2, 67, 29] (or [.., 29, 67]) -> [3, 2, 41, 29] */
  int64_t da[4] = {3, 1, ta ? 67 : 41, ta ? 41 : 67}, db[3] = {2, tb ? 29 : 67, tb ? 67 : 29};
  uint32_t a = tu_fx_input(&f, "a", dt, 4, da), b = tu_fx_input(&f, "b", dt, 3, db);
  ir_attr_t at[2] = {IR_ATTR_I("trans_a", ta), IR_ATTR_I("trans_b", tb)};
  uint32_t ab[2] = {a, b};
  uint32_t y = tu_fx_op(&f, IR_OP_MATMUL, "mm", ab, 2, at, 2);
  ck_assert_uint_ne(y, IR_NONE);
  ir_tensor_t t[2] = {tu_tensor(dt, 4, da), tu_tensor(dt, 3, db)};
  tu_fill(&t[0], &g_rng, 1.0, 0.0);
  tu_fill(&t[1], &g_rng, 1.0, 0.0);
  ir_tensor_t o1 = tu_tensor_of(&f, y), o2 = tu_tensor_of(&f, y);
  ck_assert_int_eq(o1.rank, 4);
  ck_assert(o1.dims[0] == 3 && o1.dims[1] == 2 && o1.dims[2] == 41 && o1.dims[3] == 29);
  tu_two_threads_t two = tu_two_threads();
  tu_run_node(&f, y, t, 2, &o1, NULL);
  tu_run_node(&f, y, t, 2, &o2, &two.base);
  ck_assert_int_gt(two.splits, 0);
  size_t bytes = (size_t)ir_tensor_numel(&o1) * ir_dtype_size(dt);
  ck_assert_msg(memcmp(o1.data, o2.data, bytes) == 0, "matmul differs between 1 and 2 threads");
  /* Spot-check one element against a direct double sum. */
  int64_t bi = 2, hi = 1, m = 40, n = 28, K = 67;
  double want = 0.0;
  for (int64_t k = 0; k < K; k++) {
    int64_t ia = bi * 41 * 67 + (ta ? k * 41 + m : m * 67 + k);
    int64_t ib = hi * 67 * 29 + (tb ? n * 67 + k : k * 29 + n);
    double va = dt == IR_DTYPE_F32 ? ((float *)t[0].data)[ia] : ((double *)t[0].data)[ia];
    double vb = dt == IR_DTYPE_F32 ? ((float *)t[1].data)[ib] : ((double *)t[1].data)[ib];
    want += va * vb;
  }
  int64_t io = ((bi * 2 + hi) * 41 + m) * 29 + n;
  double got = dt == IR_DTYPE_F32 ? ((float *)o1.data)[io] : ((double *)o1.data)[io];
  ck_assert_msg(fabs(got - want) <= 1e-6 * (fabs(want) + 1.0), "%g vs %g", got, want);
  free(t[0].data);
  free(t[1].data);
  free(o1.data);
  free(o2.data);
  ir_module_free(f.m);
}

START_TEST(results_do_not_depend_on_threads) {
  for (int k = 0; k < 8; k++)
    check_matmul_threads(k & 1 ? IR_DTYPE_F64 : IR_DTYPE_F32, (k >> 1) & 1, (k >> 2) & 1);
}
END_TEST

/* ---- VJP structure and costs ----------------------------------------------------------- */

START_TEST(shared_weight_grad_is_one_product) {
  /* y = x[B, L, 8] w[8, 6] with symbols: dW must come from one [8, B*L] x [B*L, 6] product. */
  ir_module_t *m = ir_module_create();
  int sb, sl;
  ck_assert_ptr_null(ir_module_add_symbol(m, "B", 4, &sb));
  ck_assert_ptr_null(ir_module_add_symbol(m, "L", 16, &sl));
  ir_graph_t *g = ir_module_add_program(m, "test");
  ir_type_t tx, tw, ty;
  memset(&tx, 0, sizeof tx);
  tx.dtype = IR_DTYPE_F32;
  tx.rank = 3;
  tx.dims[0] = ir_dim_sym(sb);
  tx.dims[1] = ir_dim_sym(sl);
  tx.dims[2] = ir_dim_const(8);
  tw = tx;
  tw.rank = 2;
  tw.dims[0] = ir_dim_const(8);
  tw.dims[1] = ir_dim_const(6);
  ty = tx;
  ty.dims[2] = ir_dim_const(6);
  ir_node_desc_t ix = {.op = IR_OP_INPUT, .name = "x", .out_types = &tx, .nout_types = 1};
  ir_node_desc_t iw = {.op = IR_OP_INPUT, .name = "w", .out_types = &tw, .nout_types = 1};
  ir_node_desc_t idy = {.op = IR_OP_INPUT, .name = "dy", .out_types = &ty, .nout_types = 1};
  uint32_t x = ir_build(g, &ix), w = ir_build(g, &iw), dy = ir_build(g, &idy);
  uint32_t xw[2] = {x, w};
  ir_node_desc_t dm = {.op = IR_OP_MATMUL, .name = "proj", .inputs = xw, .ninputs = 2};
  uint32_t y = ir_build(g, &dm);
  ck_assert_uint_ne(y, IR_NONE);
  ck_assert(ir_type_equal(ir_value_type(g, y), &ty));
  uint32_t mark = g->nnodes;
  uint32_t grads[2] = {IR_NONE, IR_NONE};
  ir_vjp_ctx_t c = {.g = g, .node = *ir_value_producer(g, y), .out_grads = &dy, .in_grads = grads};
  ck_assert_ptr_null(ir_op_info(IR_OP_MATMUL)->vjp(&c));
  ck_assert_ptr_null(g->error);
  ck_assert(ir_type_equal(ir_value_type(g, grads[0]), &tx));
  ck_assert(ir_type_equal(ir_value_type(g, grads[1]), &tw));
  ck_assert_int_eq(ir_value_producer(g, grads[1])->op, IR_OP_MATMUL);
  ck_assert_int_eq(tu_count_op(g, mark, IR_OP_SUM_TO), 0);
  ck_assert_int_eq(tu_count_op(g, mark, IR_OP_MATMUL), 2);
  /* Costs at B=3, L=5: forward 2 * 15 * 6 * 8 flops. */
  int64_t sym[2] = {3, 5};
  ir_cost_t cost = ir_node_cost(g, ir_value_producer(g, y), sym);
  ck_assert_uint_eq(cost.flops, 2u * 15u * 6u * 8u);
  ck_assert_uint_eq(cost.bytes, 4u * (15u * 8u + 48u + 15u * 6u));
  /* The same through LINEAR: dW [6, 8] is one product as well, db one reduction. */
  ir_type_t tw2 = tw;
  tw2.dims[0] = ir_dim_const(6);
  tw2.dims[1] = ir_dim_const(8);
  ir_type_t tb;
  memset(&tb, 0, sizeof tb);
  tb.dtype = IR_DTYPE_F32;
  tb.rank = 1;
  tb.dims[0] = ir_dim_const(6);
  ir_node_desc_t iw2 = {.op = IR_OP_INPUT, .name = "w2", .out_types = &tw2, .nout_types = 1};
  ir_node_desc_t ib = {.op = IR_OP_INPUT, .name = "b2", .out_types = &tb, .nout_types = 1};
  uint32_t w2 = ir_build(g, &iw2), b2 = ir_build(g, &ib);
  uint32_t xwb[3] = {x, w2, b2};
  ir_node_desc_t dl = {.op = IR_OP_LINEAR, .name = "lin", .inputs = xwb, .ninputs = 3};
  uint32_t z = ir_build(g, &dl);
  ck_assert_uint_ne(z, IR_NONE);
  ck_assert(ir_type_equal(ir_value_type(g, z), &ty));
  mark = g->nnodes;
  uint32_t lg[3] = {IR_NONE, IR_NONE, IR_NONE};
  ir_vjp_ctx_t c2 = {.g = g, .node = *ir_value_producer(g, z), .out_grads = &dy, .in_grads = lg};
  ck_assert_ptr_null(ir_op_info(IR_OP_LINEAR)->vjp(&c2));
  ck_assert_ptr_null(g->error);
  ck_assert(ir_type_equal(ir_value_type(g, lg[0]), &tx));
  ck_assert(ir_type_equal(ir_value_type(g, lg[1]), &tw2));
  ck_assert(ir_type_equal(ir_value_type(g, lg[2]), &tb));
  ck_assert_int_eq(tu_count_op(g, mark, IR_OP_SUM_TO), 0);
  ck_assert_int_eq(ir_value_producer(g, lg[2])->op, IR_OP_REDUCE_SUM);
  cost = ir_node_cost(g, ir_value_producer(g, z), sym);
  ck_assert_uint_eq(cost.flops, 2u * 15u * 6u * 8u + 15u * 6u);
  ir_module_free(m);
}
END_TEST

/* ---- inference errors -------------------------------------------------------------------- */

START_TEST(infer_errors_name_the_node) {
  tu_fx_t f = tu_fx_new();
  int64_t d1[3] = {2, 3, 4}, d2[3] = {3, 5, 6}, d3[2] = {5, 4}, d4[1] = {4}, d5[1] = {7};
  uint32_t a = tu_fx_input(&f, "a", IR_DTYPE_F32, 3, d1),
           b = tu_fx_input(&f, "b", IR_DTYPE_F32, 3, d2);
  uint32_t w = tu_fx_input(&f, "w", IR_DTYPE_F32, 2, d3),
           v = tu_fx_input(&f, "v", IR_DTYPE_F32, 1, d4);
  uint32_t bias = tu_fx_input(&f, "bias", IR_DTYPE_F32, 1, d5);
  uint32_t w64 = tu_fx_input(&f, "w64", IR_DTYPE_F64, 2, d3);
  uint32_t ab[2] = {a, b}, av[2] = {a, v}, aw[2] = {a, w}, awb[3] = {a, w, bias};
  uint32_t aw64[2] = {a, w64};
  tu_fx_expect_error(&f, IR_OP_MATMUL, "layers.1.attn.scores", ab, 2, NULL, 0, "contraction");
  tu_fx_expect_error(&f, IR_OP_MATMUL, "rank1", av, 2, NULL, 0, "rank >= 2");
  ir_attr_t tb = IR_ATTR_I("trans_b", 1);
  uint32_t b2 = tu_fx_input(&f, "b2", IR_DTYPE_F32, 3, (int64_t[3]){3, 6, 4});
  uint32_t ab2[2] = {a, b2};
  tu_fx_expect_error(&f, IR_OP_MATMUL, "batch", ab2, 2, &tb, 1, "batch dims");
  tu_fx_expect_error(&f, IR_OP_MATMUL, "mixed", aw64, 2, NULL, 0, "dtype");
  /* LINEAR: w is [O, I] = [5, 4], so a [2, 3, 4] fits; a bias of 7 does not. */
  ck_assert_uint_ne(tu_fx_op(&f, IR_OP_LINEAR, "lin_ok", aw, 2, NULL, 0), IR_NONE);
  tu_fx_expect_error(&f, IR_OP_LINEAR, "lin_bias", awb, 3, NULL, 0, "b must be");
  uint32_t bw[2] = {b, w};
  tu_fx_expect_error(&f, IR_OP_LINEAR, "lin_in", bw, 2, NULL, 0, "in_features");
  ir_module_free(f.m);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ops_matmul");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, golden_cases);
  tcase_add_test(tc, f32_dot_accumulates_in_double);
  tcase_add_test(tc, results_do_not_depend_on_threads);
  tcase_add_test(tc, shared_weight_grad_is_one_product);
  tcase_add_test(tc, infer_errors_name_the_node);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(suite()); }
