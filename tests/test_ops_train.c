/* The train group (dropout, mse, mse_bwd, adamw): golden cases against torch through the op
 * harness (MSE forward/VJP/finite differences, dropout p = 0, AdamW at t = 1, 2, 10), AdamW
 * bit-identical to torch's single-tensor update (also in place and on two threads), and the
 * dropout contract that torch cannot check for us: the keep fraction, reproducibility from
 * (seed, key, step), sensitivity to each of them, thread-count independence, and a VJP that
 * reproduces the forward mask. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "runtime/interp.h"
#include "runtime/safetensors.h"
#include "runtime/threadpool.h"
#include "tests/support/golden.h"
#include "tests/support/op_harness.h"
#include "tests/support/test_util.h"

#define GOLDEN "tests/golden/ops_train.safetensors"

/* Runs a range in pieces of 1001 elements (never a multiple of four), serially: chunk starts
 * fall inside Philox blocks. */
static void odd_run(ir_parallel_t *self, int64_t n, int64_t grain, ir_range_fn fn, void *ctx) {
  (void)self;
  (void)grain;
  for (int64_t b = 0; b < n; b += 1001) fn(ctx, b, b + 1001 < n ? b + 1001 : n);
}
static ir_parallel_t g_odd = {odd_run};

START_TEST(test_golden_cases) { ck_assert_int_eq(op_harness_run_file(GOLDEN, NULL), 0); }
END_TEST

/* ---- ADAMW: every bit equal to torch --------------------------------------------------- */

static ir_tensor_t view_of(const rt_st_file_t *f, const char *cname, const char *part) {
  char key[256];
  snprintf(key, sizeof key, "%s/%s", cname, part);
  const rt_st_tensor_t *t = rt_st_find(f, key);
  ck_assert_msg(t != NULL, "missing %s", key);
  ir_tensor_t v;
  ck_assert(rt_st_as_ir_tensor(t, &v));
  return v;
}

static size_t tensor_bytes(const ir_tensor_t *t) {
  return (size_t)ir_tensor_numel(t) * ir_dtype_size(t->dtype);
}

/* Runs the adamw kernel of a golden case on `par`; in place when asked (p' written over a copy
 * of p that is also the input). Returns the number of output bytes that differ from torch. */
static size_t adamw_case_mismatch(const rt_st_file_t *f, json_t *jc, ir_parallel_t *par,
                                  bool inplace) {
  const char *cn = json_string_value(json_object_get(jc, "name"));
  json_t *ja = json_object_get(jc, "attrs");
  ir_attr_t attrs[4] = {
      IR_ATTR_F("beta1", json_number_value(json_object_get(ja, "beta1"))),
      IR_ATTR_F("beta2", json_number_value(json_object_get(ja, "beta2"))),
      IR_ATTR_F("eps", json_number_value(json_object_get(ja, "eps"))),
      IR_ATTR_F("weight_decay", json_number_value(json_object_get(ja, "weight_decay"))),
  };
  ir_node_t node = {.op = IR_OP_ADAMW, .name = cn, .nattrs = 4, .attrs = attrs};
  ir_tensor_t in[8], out[3], want[3];
  /* 6 inputs, or 8 with the clipping pair (grad_norm, max_norm) */
  uint32_t nin = (uint32_t)json_array_size(json_object_get(jc, "inputs"));
  if (nin == 0) nin = 6;
  ck_assert(nin == 6 || nin == 8);
  for (uint32_t i = 0; i < nin; i++) {
    char part[8];
    snprintf(part, sizeof part, "in%d", i);
    in[i] = view_of(f, cn, part);
  }
  for (int j = 0; j < 3; j++) {
    char part[8];
    snprintf(part, sizeof part, "out%d", j);
    want[j] = view_of(f, cn, part);
    out[j] = want[j];
    out[j].data = malloc(tensor_bytes(&want[j]));
  }
  if (inplace) {
    memcpy(out[0].data, in[0].data, tensor_bytes(&in[0]));
    in[0].data = out[0].data;
  }
  ir_kernel_args_t a = {.node = &node, .in = in, .nin = nin, .out = out, .nout = 3, .par = par};
  ad_status_t st = ir_op_info(IR_OP_ADAMW)->kernel(&a);
  ck_assert_msg(st == NULL, "%s: %s", cn, st ? ad_status_message(st) : "");
  size_t diff = 0;
  for (int j = 0; j < 3; j++) {
    const uint8_t *x = out[j].data, *y = want[j].data;
    for (size_t b = 0; b < tensor_bytes(&want[j]); b++) diff += x[b] != y[b];
    free(out[j].data);
  }
  return diff;
}

START_TEST(test_adamw_bit_identical_to_torch) {
  char *path = golden_path(GOLDEN);
  rt_st_file_t *f = NULL;
  ad_status_t st = rt_st_open(path, &f);
  ck_assert_msg(st == NULL, "%s", st ? ad_status_message(st) : "");
  json_t *cases = json_loads(rt_st_metadata(f, "cases"), 0, NULL);
  ck_assert_ptr_nonnull(cases);
  rt_threadpool_t *tp = NULL;
  ck_assert_ptr_null(rt_threadpool_create(2, &tp));
  int n = 0;
  for (size_t k = 0; k < json_array_size(cases); k++) {
    json_t *jc = json_array_get(cases, k);
    if (strcmp(json_string_value(json_object_get(jc, "op")), "adamw") != 0) continue;
    const char *cn = json_string_value(json_object_get(jc, "name"));
    ck_assert_msg(adamw_case_mismatch(f, jc, NULL, false) == 0, "%s differs from torch", cn);
    ck_assert_msg(adamw_case_mismatch(f, jc, NULL, true) == 0, "%s differs in place", cn);
    ck_assert_msg(adamw_case_mismatch(f, jc, &g_odd, false) == 0, "%s differs split", cn);
    ck_assert_msg(adamw_case_mismatch(f, jc, rt_threadpool_parallel(tp), false) == 0,
                  "%s differs on 2 threads", cn);
    n++;
  }
  ck_assert_int_ge(n, 12); /* t = 1, 2, 10 in f32 and f64, and the clipping cases */
  rt_threadpool_free(tp);
  json_decref(cases);
  rt_st_close(f);
  free(path);
}
END_TEST

/* ---- graph helpers ---------------------------------------------------------------------- */

static ir_type_t vec_type(ir_dtype_t dt, int64_t n) { return tu_static_type(dt, 1, &n); }

static ir_type_t scalar_type(ir_dtype_t dt) { return tu_static_type(dt, 0, NULL); }

static uint32_t input(ir_graph_t *g, const char *name, ir_type_t t) {
  return tu_input(g, name, &t);
}

/* x[n] -> dropout -> "y"; with_vjp adds dy[n] and "dx" = the VJP applied to dy. */
static ir_module_t *dropout_module(ir_dtype_t dt, int64_t n, double p, const char *key,
                                   bool with_vjp) {
  ir_module_t *m = ir_module_create();
  ir_graph_t *g = ir_module_add_program(m, "train_step");
  uint32_t ins[3] = {input(g, "x", vec_type(dt, n)), input(g, "seed", scalar_type(IR_DTYPE_I64)),
                     input(g, "step", scalar_type(IR_DTYPE_I64))};
  ir_attr_t attrs[2] = {IR_ATTR_F("p", p), IR_ATTR_S("key", key)};
  uint32_t y = tu_node(g, IR_OP_DROPOUT, "drop", ins, 3, attrs, 2, NULL);
  tu_output(g, "y", y);
  if (with_vjp) {
    ir_node_t node = g->nodes[g->nnodes - 2]; /* the dropout, before the output node */
    ck_assert_int_eq(node.op, IR_OP_DROPOUT);
    uint32_t dy = input(g, "dy", vec_type(dt, n));
    uint32_t in_grads[3] = {IR_NONE, IR_NONE, IR_NONE};
    ir_vjp_ctx_t c = {.g = g, .node = node, .out_grads = &dy, .in_grads = in_grads};
    ck_assert_ptr_null(ir_op_info(IR_OP_DROPOUT)->vjp(&c));
    ck_assert_uint_ne(in_grads[0], IR_NONE);
    ck_assert_uint_eq(in_grads[1], IR_NONE);
    ck_assert_uint_eq(in_grads[2], IR_NONE);
    tu_output(g, "dx", in_grads[0]);
  }
  ck_assert_msg(g->error == NULL, "%s", g->error ? ad_status_message(g->error) : "");
  return m;
}

/* Runs the module's program; y (and dx) receive n elements of dt. */
static void run_dropout(ir_module_t *m, const void *x, const void *dy, int64_t seed, int64_t step,
                        ir_parallel_t *par, void *y, void *dx) {
  ir_graph_t *g = m->programs[0];
  int64_t sym[IR_MAX_SYMBOLS] = {0};
  rt_interp_t *it = NULL;
  ck_assert_ptr_null(rt_interp_create(g, sym, &it));
  const ir_tensor_t *xt = rt_interp_value(it, g->nodes[0].output0);
  size_t bytes = (size_t)ir_tensor_numel(xt) * ir_dtype_size(xt->dtype);
  ck_assert_ptr_null(rt_interp_set_input(it, "x", x, bytes));
  ck_assert_ptr_null(rt_interp_set_input(it, "seed", &seed, sizeof seed));
  ck_assert_ptr_null(rt_interp_set_input(it, "step", &step, sizeof step));
  if (dy) ck_assert_ptr_null(rt_interp_set_input(it, "dy", dy, bytes));
  ad_status_t st = rt_interp_run(it, par);
  ck_assert_msg(st == NULL, "%s", st ? ad_status_message(st) : "");
  memcpy(y, rt_interp_output(it, "y")->data, bytes);
  if (dx) memcpy(dx, rt_interp_output(it, "dx")->data, bytes);
  rt_interp_free(it);
}

#define NDROP 100003 /* odd, so the last Philox block is partial */

static float *ones_f32(int64_t n) {
  float *x = malloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < n; i++) x[i] = 1.0f;
  return x;
}

static int64_t count_kept(const float *y, int64_t n) {
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++) k += y[i] != 0.0f;
  return k;
}

static int64_t count_diff(const float *a, const float *b, int64_t n) {
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++) k += (a[i] != 0.0f) != (b[i] != 0.0f);
  return k;
}

START_TEST(test_dropout_keep_fraction_and_scale) {
  static const double ps[] = {0.1, 0.3, 0.5, 0.9};
  float *x = ones_f32(NDROP), *y = malloc(sizeof(float) * NDROP);
  for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
    double p = ps[k];
    ir_module_t *m = dropout_module(IR_DTYPE_F32, NDROP, p, "layer.0.dropout", false);
    run_dropout(m, x, NULL, 42, 0, NULL, y, NULL);
    double frac = (double)count_kept(y, NDROP) / NDROP;
    double sigma = sqrt(p * (1 - p) / NDROP);
    ck_assert_msg(fabs(frac - (1 - p)) < 4 * sigma, "p=%g: keep fraction %.5f", p, frac);
    float scale = 1.0f / (float)(1.0 - p); /* torch's dtype noise value */
    for (int64_t i = 0; i < NDROP; i++) ck_assert(y[i] == 0.0f || y[i] == scale);
    ir_module_free(m);
  }
  /* p = 0 is the identity to the bit, p = 1 drops everything. */
  double *xd = malloc(sizeof(double) * NDROP), *yd = malloc(sizeof(double) * NDROP);
  for (int64_t i = 0; i < NDROP; i++) xd[i] = sin((double)i) * 1e3;
  ir_module_t *m = dropout_module(IR_DTYPE_F64, NDROP, 0.0, "k", false);
  run_dropout(m, xd, NULL, 1, 1, NULL, yd, NULL);
  ck_assert_int_eq(memcmp(xd, yd, sizeof(double) * NDROP), 0);
  ir_module_free(m);
  m = dropout_module(IR_DTYPE_F64, NDROP, 1.0, "k", false);
  run_dropout(m, xd, NULL, 1, 1, NULL, yd, NULL);
  for (int64_t i = 0; i < NDROP; i++) ck_assert(yd[i] == 0.0);
  ir_module_free(m);
  free(xd);
  free(yd);
  free(x);
  free(y);
}
END_TEST

START_TEST(test_dropout_mask_keyed_by_seed_key_step) {
  float *x = ones_f32(NDROP);
  float *a = malloc(sizeof(float) * NDROP), *b = malloc(sizeof(float) * NDROP);
  ir_module_t *m1 = dropout_module(IR_DTYPE_F32, NDROP, 0.5, "encoder.layer.1.dropout", false);
  ir_module_t *m1b = dropout_module(IR_DTYPE_F32, NDROP, 0.5, "encoder.layer.1.dropout", false);
  ir_module_t *m2 = dropout_module(IR_DTYPE_F32, NDROP, 0.5, "encoder.layer.2.dropout", false);
  run_dropout(m1, x, NULL, 7, 100, NULL, a, NULL);
  /* Same (seed, key, step) in another module (node numbering is irrelevant): same mask. */
  run_dropout(m1b, x, NULL, 7, 100, NULL, b, NULL);
  ck_assert_int_eq(memcmp(a, b, sizeof(float) * NDROP), 0);
  /* Each of step, key and seed changes about half the decisions at p = 0.5. */
  int64_t lo = NDROP / 2 - 4 * (int64_t)sqrt(NDROP / 4.0),
          hi = NDROP / 2 + 4 * (int64_t)sqrt(NDROP / 4.0);
  run_dropout(m1, x, NULL, 7, 101, NULL, b, NULL);
  int64_t d = count_diff(a, b, NDROP);
  ck_assert_msg(d > lo && d < hi, "step change flipped %lld", (long long)d);
  run_dropout(m2, x, NULL, 7, 100, NULL, b, NULL);
  d = count_diff(a, b, NDROP);
  ck_assert_msg(d > lo && d < hi, "key change flipped %lld", (long long)d);
  run_dropout(m1, x, NULL, 8, 100, NULL, b, NULL);
  d = count_diff(a, b, NDROP);
  ck_assert_msg(d > lo && d < hi, "seed change flipped %lld", (long long)d);
  ir_module_free(m1);
  ir_module_free(m1b);
  ir_module_free(m2);
  free(x);
  free(a);
  free(b);
}
END_TEST

START_TEST(test_dropout_thread_count_independent) {
  float *x = malloc(sizeof(float) * NDROP);
  for (int64_t i = 0; i < NDROP; i++) x[i] = (float)cos((double)i);
  float *y1 = malloc(sizeof(float) * NDROP), *y2 = malloc(sizeof(float) * NDROP);
  ir_module_t *m = dropout_module(IR_DTYPE_F32, NDROP, 0.25, "fusion.dropout", false);
  rt_threadpool_t *tp = NULL;
  ck_assert_ptr_null(rt_threadpool_create(2, &tp));
  run_dropout(m, x, NULL, 3, 5, NULL, y1, NULL);
  run_dropout(m, x, NULL, 3, 5, rt_threadpool_parallel(tp), y2, NULL);
  ck_assert_int_eq(memcmp(y1, y2, sizeof(float) * NDROP), 0);
  run_dropout(m, x, NULL, 3, 5, &g_odd, y2, NULL);
  ck_assert_int_eq(memcmp(y1, y2, sizeof(float) * NDROP), 0);
  rt_threadpool_free(tp);
  ir_module_free(m);
  free(x);
  free(y1);
  free(y2);
}
END_TEST

START_TEST(test_dropout_vjp_reproduces_mask) {
  for (int k = 0; k < 2; k++) {
    ir_dtype_t dt = k ? IR_DTYPE_F64 : IR_DTYPE_F32;
    size_t es = ir_dtype_size(dt);
    void *x = malloc(es * NDROP), *y = malloc(es * NDROP), *dx = malloc(es * NDROP);
    for (int64_t i = 0; i < NDROP; i++) {
      double v = 1.0 + sin(0.1 * (double)i);
      if (dt == IR_DTYPE_F64)
        ((double *)x)[i] = v;
      else
        ((float *)x)[i] = (float)v;
    }
    ir_module_t *m = dropout_module(dt, NDROP, 0.4, "adapter.dropout", true);
    /* With dy = x, dx = dy * mask * scale must equal y = x * mask * scale bit for bit. */
    run_dropout(m, x, x, 11, 12345, NULL, y, dx);
    ck_assert_int_eq(memcmp(y, dx, es * NDROP), 0);
    ir_module_free(m);
    free(x);
    free(y);
    free(dx);
  }
}
END_TEST

START_TEST(test_inference_rejects_malformed_nodes) {
  ir_module_t *m = ir_module_create();
  ir_graph_t *g = ir_module_add_program(m, "p");
  uint32_t x = input(g, "x", vec_type(IR_DTYPE_F32, 8));
  uint32_t xi = input(g, "xi", vec_type(IR_DTYPE_I64, 8));
  uint32_t s = input(g, "seed", scalar_type(IR_DTYPE_I64));
  uint32_t sf = input(g, "seedf", scalar_type(IR_DTYPE_F32));
  uint32_t lr = input(g, "lr", scalar_type(IR_DTYPE_F64));
  uint32_t lr32 = input(g, "lr32", scalar_type(IR_DTYPE_F32));
  uint32_t y = input(g, "y", vec_type(IR_DTYPE_F32, 7));
  ck_assert_ptr_null(g->error);
  struct {
    ir_op_t op;
    uint32_t ins[6];
    uint32_t nin;
    ir_attr_t attrs[4];
    uint32_t nattrs;
    const char *expect;
  } bad[] = {
      {IR_OP_DROPOUT, {x, s, s}, 3, {IR_ATTR_F("p", 0.1)}, 1, "key"},
      {IR_OP_DROPOUT, {x, s, s}, 3, {IR_ATTR_F("p", 1.5), IR_ATTR_S("key", "k")}, 2, "outside"},
      {IR_OP_DROPOUT, {x, sf, s}, 3, {IR_ATTR_F("p", 0.1), IR_ATTR_S("key", "k")}, 2, "seed"},
      {IR_OP_DROPOUT, {xi, s, s}, 3, {IR_ATTR_F("p", 0.1), IR_ATTR_S("key", "k")}, 2, "float"},
      {IR_OP_MSE, {x, y}, 2, {{0}}, 0, "same type"},
      {IR_OP_MSE_BWD, {x, x, lr}, 3, {{0}}, 0, "dloss"},
      {IR_OP_ADAMW,
       {x, x, x, x, lr32, s},
       6,
       {IR_ATTR_F("beta1", 0.9), IR_ATTR_F("beta2", 0.999), IR_ATTR_F("eps", 1e-8),
        IR_ATTR_F("weight_decay", 0.01)},
       4,
       "lr"},
      {IR_OP_ADAMW,
       {x, y, x, x, lr, s},
       6,
       {IR_ATTR_F("beta1", 0.9), IR_ATTR_F("beta2", 0.999), IR_ATTR_F("eps", 1e-8),
        IR_ATTR_F("weight_decay", 0.01)},
       4,
       "type of p"},
      {IR_OP_ADAMW,
       {x, x, x, x, lr, s},
       6,
       {IR_ATTR_F("beta1", 1.0), IR_ATTR_F("beta2", 0.999), IR_ATTR_F("eps", 1e-8),
        IR_ATTR_F("weight_decay", 0.01)},
       4,
       "beta1"},
      {IR_OP_ADAMW,
       {x, x, x, x, lr, s},
       6,
       {IR_ATTR_F("beta1", 0.9), IR_ATTR_F("beta2", 0.999), IR_ATTR_F("eps", 1e-8)},
       3,
       "weight_decay"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    ck_assert_uint_eq(
        tu_node(g, bad[k].op, NULL, bad[k].ins, bad[k].nin, bad[k].attrs, bad[k].nattrs, NULL),
        IR_NONE);
    ad_status_t st = ir_graph_take_error(g);
    ck_assert_msg(st != NULL, "case %zu accepted", k);
    ck_assert_msg(strstr(ad_status_message(st), bad[k].expect) != NULL, "case %zu: %s", k,
                  ad_status_message(st));
    ad_status_free(st);
  }
  ir_module_free(m);
}
END_TEST

START_TEST(test_adamw_rejects_step_zero) {
  float p[4] = {1, 2, 3, 4}, o[3][4];
  double lr = 1e-3;
  int64_t step = 0;
  ir_attr_t attrs[4] = {IR_ATTR_F("beta1", 0.9), IR_ATTR_F("beta2", 0.999), IR_ATTR_F("eps", 1e-8),
                        IR_ATTR_F("weight_decay", 0.0)};
  ir_node_t node = {.op = IR_OP_ADAMW, .name = "opt.w", .nattrs = 4, .attrs = attrs};
  ir_tensor_t vec = {.data = p, .dtype = IR_DTYPE_F32, .rank = 1, .dims = {4}};
  ir_tensor_t in[6] = {vec,
                       vec,
                       vec,
                       vec,
                       {.data = &lr, .dtype = IR_DTYPE_F64},
                       {.data = &step, .dtype = IR_DTYPE_I64}};
  ir_tensor_t out[3] = {vec, vec, vec};
  for (int j = 0; j < 3; j++) out[j].data = o[j];
  ir_kernel_args_t a = {.node = &node, .in = in, .nin = 6, .out = out, .nout = 3};
  ad_status_t st = ir_op_info(IR_OP_ADAMW)->kernel(&a);
  ck_assert_ptr_nonnull(st);
  ck_assert_ptr_nonnull(strstr(ad_status_message(st), "opt.w"));
  ad_status_free(st);
  /* Registry contract: stateful, never differentiated; dropout random; mse target nondiff. */
  ck_assert(ir_op_info(IR_OP_ADAMW)->flags & IR_OP_FLAG_STATEFUL);
  ck_assert_ptr_null(ir_op_info(IR_OP_ADAMW)->vjp);
  ck_assert(ir_op_info(IR_OP_DROPOUT)->flags & IR_OP_FLAG_RANDOM);
  ck_assert_uint_eq(ir_op_info(IR_OP_DROPOUT)->nondiff_inputs, 0x6);
  ck_assert_uint_eq(ir_op_info(IR_OP_MSE)->nondiff_inputs, 0x2);
}
END_TEST

int main(void) {
  Suite *s = suite_create("ops_train");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_golden_cases);
  tcase_add_test(tc, test_adamw_bit_identical_to_torch);
  tcase_add_test(tc, test_dropout_keep_fraction_and_scale);
  tcase_add_test(tc, test_dropout_mask_keyed_by_seed_key_step);
  tcase_add_test(tc, test_dropout_thread_count_independent);
  tcase_add_test(tc, test_dropout_vjp_reproduces_mask);
  tcase_add_test(tc, test_inference_rejects_malformed_nodes);
  tcase_add_test(tc, test_adamw_rejects_step_zero);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
