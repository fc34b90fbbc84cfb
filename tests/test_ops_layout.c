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
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "runtime/interp.h"
#include "tests/support/op_harness.h"
#include "tests/support/test_util.h"

/* This suite's own xorshift stream (tu_urand, tu_fill), so its inputs stay as they were. */
static uint64_t g_rng = 0x13198a2e03707344ull;
static const char k_node[] = "enc.embed"; /* the bare kernels' node name */

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
    ir_tensor_t table = tu_tensor(IR_DTYPE_F32, 2, (int64_t[]){11, 4});
    ir_tensor_t ids = tu_tensor(IR_DTYPE_I32, 2, (int64_t[]){2, 3});
    for (int i = 0; i < 6; i++) ((int32_t *)ids.data)[i] = i;
    ((int32_t *)ids.data)[4] = (int32_t)bad[k];
    ir_tensor_t y = tu_tensor(IR_DTYPE_F32, 3, (int64_t[]){2, 3, 4});
    ir_tensor_t in[2] = {table, ids};
    char want[64];
    snprintf(want, sizeof want, "id %lld at position 4", (long long)bad[k]);
    tu_expect_msg(tu_try_kernel(IR_OP_EMBEDDING, k_node, NULL, 0, in, 2, &y, 1, NULL), "enc.embed",
                  want);
    /* the backward validates the same way: a bad id never becomes a wild write */
    ir_tensor_t dy = tu_tensor(IR_DTYPE_F32, 3, (int64_t[]){2, 3, 4});
    ir_tensor_t bin[3] = {ids, dy, table};
    ir_tensor_t dt = tu_tensor(IR_DTYPE_F32, 2, (int64_t[]){11, 4});
    tu_expect_msg(tu_try_kernel(IR_OP_EMBEDDING_BWD, k_node, NULL, 0, bin, 3, &dt, 1, NULL),
                  "enc.embed", want);
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
    ir_tensor_t ids = tu_tensor(IR_DTYPE_I64, 2, (int64_t[]){3, N / 3});
    for (int i = 0; i < N; i++) ((int64_t *)ids.data)[i] = (i * i + 3 * i) % V; /* repeats */
    ir_tensor_t dy = tu_tensor(dt, 3, (int64_t[]){3, N / 3, H});
    /* magnitudes over 7 decades make any change of summation order visible */
    for (int64_t i = 0; i < (int64_t)N * H; i++)
      tu_set(&dy, i, tu_urand(&g_rng) * pow(10.0, (double)(i % 7) - 3));
    ir_tensor_t like = tu_tensor(dt, 2, (int64_t[]){V, H});
    ir_tensor_t in[3] = {ids, dy, like};
    ir_tensor_t d1 = tu_tensor(dt, 2, (int64_t[]){V, H}), d2 = tu_tensor(dt, 2, (int64_t[]){V, H});
    for (int64_t i = 0; i < V * H; i++) tu_set(&d2, i, 12345.0); /* every element is written */
    tu_two_threads_t two = tu_two_threads();
    tu_run_kernel(IR_OP_EMBEDDING_BWD, k_node, NULL, 0, in, 3, &d1, 1, NULL);
    tu_run_kernel(IR_OP_EMBEDDING_BWD, k_node, NULL, 0, in, 3, &d2, 1, &two.base);
    ck_assert_int_gt(two.splits, 0);
    ck_assert(memcmp(d1.data, d2.data, (size_t)V * H * ir_dtype_size(dt)) == 0);
    /* The documented order: positions in order, in double, rounded once. */
    for (int v = 0; v < V; v++)
      for (int h = 0; h < H; h++) {
        double acc = 0.0;
        for (int i = 0; i < N; i++)
          if (((int64_t *)ids.data)[i] == v) acc += tu_get(&dy, (int64_t)i * H + h);
        double want = dt == IR_DTYPE_F32 ? (double)(float)acc : acc;
        ck_assert_msg(tu_get(&d1, v * H + h) == want, "dtable[%d,%d] = %.17g, want %.17g", v, h,
                      tu_get(&d1, v * H + h), want);
      }
    /* padding_idx: that row gets nothing, others are unchanged */
    ir_attr_t pad = IR_ATTR_I("padding_idx", 2);
    tu_run_kernel(IR_OP_EMBEDDING_BWD, k_node, &pad, 1, in, 3, &d2, 1, &two.base);
    for (int v = 0; v < V; v++)
      for (int h = 0; h < H; h++)
        ck_assert(tu_get(&d2, v * H + h) == (v == 2 ? 0.0 : tu_get(&d1, v * H + h)));
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
  ir_tensor_t x = tu_tensor(IR_DTYPE_I64, 2, (int64_t[]){2, 3});
  for (int i = 0; i < 6; i++) ((int64_t *)x.data)[i] = 10 + i;
  ir_attr_t pad[4] = {IR_ATTR_I("after", 1), IR_ATTR_I("axis", 1), IR_ATTR_I("before", 2),
                      IR_ATTR_F("value", 7.0)};
  ir_tensor_t y = tu_tensor(IR_DTYPE_I64, 2, (int64_t[]){2, 6});
  tu_run_kernel(IR_OP_PAD, k_node, pad, 4, &x, 1, &y, 1, NULL);
  static const int64_t want[12] = {7, 7, 10, 11, 12, 7, 7, 7, 13, 14, 15, 7};
  ck_assert(memcmp(y.data, want, sizeof want) == 0);

  int64_t perm[2] = {1, 0};
  ir_attr_t pa = IR_ATTR_INTS("perm", perm, 2);
  ir_tensor_t t = tu_tensor(IR_DTYPE_I64, 2, (int64_t[]){3, 2});
  tu_run_kernel(IR_OP_PERMUTE, k_node, &pa, 1, &x, 1, &t, 1, NULL);
  static const int64_t want_t[6] = {10, 13, 11, 14, 12, 15};
  ck_assert(memcmp(t.data, want_t, sizeof want_t) == 0);

  ir_attr_t ax = IR_ATTR_I("axis", 0);
  ir_tensor_t parts[2] = {x, x};
  ir_tensor_t c = tu_tensor(IR_DTYPE_I64, 2, (int64_t[]){4, 3});
  tu_run_kernel(IR_OP_CONCAT, k_node, &ax, 1, parts, 2, &c, 1, NULL);
  for (int i = 0; i < 12; i++) ck_assert(((int64_t *)c.data)[i] == 10 + i % 6);
  free(x.data);
  free(y.data);
  free(t.data);
  free(c.data);
}
END_TEST

/* ---- graph-level checks ------------------------------------------------------------------- */

/* Applies the node's VJP with cotangent dy; returns its status, grads in in_grads. */
static ad_status_t apply_vjp(const tu_fx_t *f, uint32_t out, uint32_t dy, uint32_t *in_grads) {
  const ir_node_t *n = ir_value_producer(f->g, out);
  ir_vjp_ctx_t c = {.g = f->g, .node = *n, .out_grads = &dy, .in_grads = in_grads};
  for (uint32_t i = 0; i < n->ninputs; i++) in_grads[i] = IR_NONE;
  return ir_op_info(n->op)->vjp(&c);
}

START_TEST(test_reshape_infer) {
  tu_fx_t f = tu_fx_new_sym();
  uint32_t x = tu_input_text(f.g, "x", "f32[B,L,6]");
  uint32_t y = tu_node_text(f.g, IR_OP_RESHAPE, "enc.merge", &x, 1, NULL, 0, "f32[B*L,6]");
  ck_assert_uint_ne(y, IR_NONE);
  tu_expect_build_error(f.g,
                        tu_node_text(f.g, IR_OP_RESHAPE, "enc.bad", &x, 1, NULL, 0, "f32[B,L,5]"),
                        "enc.bad", "element count");
  /* agrees at the bounds (4*8*6 == 192*1) but not at B = L = 1 */
  tu_expect_build_error(f.g,
                        tu_node_text(f.g, IR_OP_RESHAPE, "enc.bad2", &x, 1, NULL, 0, "f32[192]"),
                        "enc.bad2", "element count");
  tu_expect_build_error(f.g,
                        tu_node_text(f.g, IR_OP_RESHAPE, "enc.bad3", &x, 1, NULL, 0, "f64[B*L,6]"),
                        "enc.bad3", "dtype");
  ir_module_free(f.m);
}
END_TEST

/* Reshape has an explicit output type, which golden cases cannot carry: forward and VJP are
 * checked here, at actual sizes below the bounds. */
START_TEST(test_reshape_run) {
  tu_fx_t f = tu_fx_new_sym();
  uint32_t x = tu_input_text(f.g, "x", "f64[B,L,6]");
  uint32_t y = tu_node_text(f.g, IR_OP_RESHAPE, "enc.heads", &x, 1, NULL, 0, "f64[B*L,2,3]");
  ck_assert_uint_ne(y, IR_NONE);
  uint32_t dy = tu_input_text(f.g, "dy", "f64[B*L,2,3]");
  uint32_t grads[1];
  ck_assert_ptr_null(apply_vjp(&f, y, dy, grads));
  ck_assert(ir_type_equal(ir_value_type(f.g, grads[0]), ir_value_type(f.g, x)));
  ck_assert_int_eq(ir_value_producer(f.g, grads[0])->op, IR_OP_RESHAPE);
  tu_node_text(f.g, IR_OP_OUTPUT, "y", &y, 1, NULL, 0, NULL);
  tu_node_text(f.g, IR_OP_OUTPUT, "dx", &grads[0], 1, NULL, 0, NULL);
  ck_assert_ptr_null(f.g->error);
  int64_t sym[2] = {3, 5};
  rt_interp_t *it;
  ck_assert_ptr_null(rt_interp_create(f.g, sym, &it));
  double xs[90], dys[90];
  for (int i = 0; i < 90; i++) {
    xs[i] = tu_urand(&g_rng);
    dys[i] = tu_urand(&g_rng);
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
  tu_fx_t f = tu_fx_new_sym();
  uint32_t x = tu_input_text(f.g, "x", "f32[B,L,6]");
  uint32_t z = tu_input_text(f.g, "z", "f32[B,3,5]");
  uint32_t ids = tu_input_text(f.g, "ids", "f32[B,L]");
  uint32_t table = tu_input_text(f.g, "table", "f32[11,6]");
  int64_t bad_perm[3] = {0, 0, 2};
  ir_attr_t pa = IR_ATTR_INTS("perm", bad_perm, 3);
  tu_expect_build_error(f.g, tu_node_text(f.g, IR_OP_PERMUTE, "p", &x, 1, &pa, 1, NULL), "'p'",
                        "perm");
  ir_attr_t ax1 = IR_ATTR_I("axis", 1);
  tu_expect_build_error(f.g,
                        tu_node_text(f.g, IR_OP_CONCAT, "c", (uint32_t[]){x, z}, 2, &ax1, 1, NULL),
                        "'c'", "dim 2");
  ir_attr_t sl[3] = {IR_ATTR_I("axis", 2), IR_ATTR_I("end", 9), IR_ATTR_I("start", 1)};
  tu_expect_build_error(f.g, tu_node_text(f.g, IR_OP_SLICE, "s", &x, 1, sl, 3, NULL), "'s'",
                        "outside");
  ir_attr_t pd[3] = {IR_ATTR_I("after", -1), IR_ATTR_I("axis", 0), IR_ATTR_I("before", 0)};
  tu_expect_build_error(f.g, tu_node_text(f.g, IR_OP_PAD, "pd", &x, 1, pd, 3, NULL), "'pd'",
                        ">= 0");
  tu_expect_build_error(
      f.g, tu_node_text(f.g, IR_OP_EMBEDDING, "e", (uint32_t[]){table, ids}, 2, NULL, 0, NULL),
      "'e'", "i32 or i64");
  /* a slice of the symbolic axis from the back keeps a static size */
  ir_attr_t last2[3] = {IR_ATTR_I("axis", 1), IR_ATTR_I("end", 0), IR_ATTR_I("start", -2)};
  uint32_t s2 = tu_node_text(f.g, IR_OP_SLICE, "s2", &x, 1, last2, 3, NULL);
  ck_assert_uint_ne(s2, IR_NONE);
  ir_type_t want = tu_type(f.m, "f32[B,2,6]");
  ck_assert(ir_type_equal(ir_value_type(f.g, s2), &want));
  ck_assert_uint_eq(ir_op_info(IR_OP_EMBEDDING)->nondiff_inputs, 1u << 1);
  ck_assert_uint_eq(ir_op_info(IR_OP_EMBEDDING_BWD)->nondiff_inputs, (1u << 0) | (1u << 2));
  ir_module_free(f.m);
}
END_TEST

START_TEST(test_vjp_symbolic_bounds) {
  tu_fx_t f = tu_fx_new_sym();
  uint32_t x = tu_input_text(f.g, "x", "f32[B,L,6]");
  uint32_t grads[3];
  /* the first 2 of a symbolic axis: the gradient pad after it would be L-2, not static */
  ir_attr_t head[3] = {IR_ATTR_I("axis", 1), IR_ATTR_I("end", 2), IR_ATTR_I("start", 0)};
  uint32_t s = tu_node_text(f.g, IR_OP_SLICE, "enc.head", &x, 1, head, 3, NULL);
  ck_assert_uint_ne(s, IR_NONE);
  uint32_t dy = tu_input_text(f.g, "dy", "f32[B,2,6]");
  tu_expect_msg(apply_vjp(&f, s, dy, grads), "enc.head", "symbolic");
  ck_assert_uint_eq(grads[0], IR_NONE);
  /* trimming both ends of it is fine: pad 1 and 1 restores x's type */
  ir_attr_t trim[3] = {IR_ATTR_I("axis", 1), IR_ATTR_I("end", -1), IR_ATTR_I("start", 1)};
  uint32_t t = tu_node_text(f.g, IR_OP_SLICE, "enc.trim", &x, 1, trim, 3, NULL);
  uint32_t dyt = tu_input_text(f.g, "dyt", "f32[B,L-2,6]");
  ck_assert_ptr_null(apply_vjp(&f, t, dyt, grads));
  ck_assert_uint_ne(grads[0], IR_NONE);
  ck_assert(ir_type_equal(ir_value_type(f.g, grads[0]), ir_value_type(f.g, x)));
  ck_assert_int_eq(ir_value_producer(f.g, grads[0])->op, IR_OP_PAD);
  /* a symbolic input with a symbolic one after it and a static one before: its gradient
   * slice starts at 2 but cannot end at a static bound */
  ir_attr_t ax = IR_ATTR_I("axis", 1);
  uint32_t mid = tu_input_text(f.g, "mid", "f32[B,2,6]");
  uint32_t c = tu_node_text(f.g, IR_OP_CONCAT, "enc.cat", (uint32_t[]){mid, x, x}, 3, &ax, 1, NULL);
  ck_assert_uint_ne(c, IR_NONE);
  uint32_t dyc = tu_input_text(f.g, "dyc", "f32[B,2*L+2,6]");
  tu_expect_msg(apply_vjp(&f, c, dyc, grads), "enc.cat", "input 1");
  ck_assert_ptr_null(ir_graph_take_error(f.g));
  ir_module_free(f.m);
}
END_TEST

/* A slice that fits the bound but not the actual size fails at run time, naming the node. */
START_TEST(test_slice_runtime_bounds) {
  tu_fx_t f = tu_fx_new_sym();
  uint32_t x = tu_input_text(f.g, "x", "f32[B,L]");
  ir_attr_t head[3] = {IR_ATTR_I("axis", 1), IR_ATTR_I("end", 4), IR_ATTR_I("start", 0)};
  uint32_t s = tu_node_text(f.g, IR_OP_SLICE, "enc.head4", &x, 1, head, 3, NULL);
  ck_assert_uint_ne(s, IR_NONE);
  tu_node_text(f.g, IR_OP_OUTPUT, "y", &s, 1, NULL, 0, NULL);
  ck_assert_ptr_null(f.g->error);
  int64_t sym[2] = {2, 3}; /* L = 3 < 4 */
  rt_interp_t *it;
  ck_assert_ptr_null(rt_interp_create(f.g, sym, &it));
  float xs[6] = {0};
  ck_assert_ptr_null(rt_interp_set_input(it, "x", xs, sizeof xs));
  tu_expect_msg(rt_interp_run(it, NULL), "enc.head4", "actual size 3");
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

int main(void) { return tu_run_suite(layout_suite()); }
