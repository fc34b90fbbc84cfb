/* Regression metrics (runtime/metrics.h):
 *  - goldens (tools/golden/metrics.py): the peer's metric classes over torchmetrics, fed f64 and
 *    streamed in the fixture's uneven batches; per-column values (the test stage's pearson_i,
 *    ...) and uniform averages equal to 1e-10 relative per metric, except Pearson on exactly
 *    constant columns, where we return NaN and torchmetrics returns NaN or rounding noise;
 *  - batch-split invariance: the same samples in any batching give bitwise equal results;
 *  - the logged (name, value) list of each stage, in the peer's order;
 *  - cancellation: a large common offset changes nothing; errors on bad arguments. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/metrics.h"
#include "runtime/safetensors.h"
#include "support/golden.h"

#define NK RT_METRICS_KIND_COUNT

static rt_st_file_t *open_fixture(void) {
  char *p = golden_path("tests/golden/metrics.safetensors");
  rt_st_file_t *f = NULL;
  ad_status_t st = rt_st_open(p, &f);
  free(p);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  return f;
}

static const rt_st_tensor_t *get(rt_st_file_t *f, const char *cas, const char *what) {
  char name[128];
  snprintf(name, sizeof name, "%s/%s", cas, what);
  const rt_st_tensor_t *t = rt_st_find(f, name);
  ck_assert_msg(t != NULL, "fixture lacks %s", name);
  return t;
}

typedef struct gcase {
  char name[64];
  int64_t n, k;
  int f32; /* feed through rt_metrics_update_f32 */
  const void *preds, *labels; /* [n, k] */
  const int64_t *splits;
  int64_t nsplits;
  const double *per_col; /* [NK, k] torchmetrics */
  const double *avg;     /* [NK] */
} gcase_t;

static int load_cases(rt_st_file_t *f, gcase_t *cases, int max) {
  json_error_t jerr;
  json_t *arr = json_loads(rt_st_metadata(f, "cases"), 0, &jerr);
  ck_assert_msg(arr && json_is_array(arr), "bad cases metadata");
  int nc = (int)json_array_size(arr);
  ck_assert_int_le(nc, max);
  for (int c = 0; c < nc; c++) {
    json_t *o = json_array_get(arr, (size_t)c);
    gcase_t *g = &cases[c];
    const rt_st_tensor_t *pc = NULL;
    snprintf(g->name, sizeof g->name, "%s", json_string_value(json_object_get(o, "name")));
    const char *nm = g->name;
    g->n = json_integer_value(json_object_get(o, "n"));
    g->k = json_integer_value(json_object_get(o, "k"));
    g->f32 = strcmp(json_string_value(json_object_get(o, "dtype")), "f32") == 0;
    const rt_st_tensor_t *tp = get(f, nm, "preds"), *tl = get(f, nm, "labels");
    ck_assert_int_eq(tp->dtype, g->f32 ? RT_ST_F32 : RT_ST_F64);
    ck_assert_int_eq(tl->dtype, tp->dtype);
    ck_assert_int_eq(rt_st_numel(tp), g->n * g->k);
    g->preds = tp->data;
    g->labels = tl->data;
    const rt_st_tensor_t *ts = get(f, nm, "splits");
    g->splits = ts->data;
    g->nsplits = rt_st_numel(ts);
    pc = get(f, nm, "per_col");
    ck_assert_int_eq(rt_st_numel(pc), NK * g->k);
    g->per_col = pc->data;
    g->avg = get(f, nm, "avg")->data;
  }
  json_decref(arr);
  return nc;
}

static void feed(rt_metrics_t *m, const gcase_t *g, int64_t r0, int64_t b) {
  ad_status_t st;
  if (g->f32)
    st = rt_metrics_update_f32(m, (const float *)g->preds + r0 * g->k,
                               (const float *)g->labels + r0 * g->k, b);
  else
    st = rt_metrics_update_f64(m, (const double *)g->preds + r0 * g->k,
                               (const double *)g->labels + r0 * g->k, b);
  ck_assert_msg(!st, "%s", ad_status_message(st));
}

static double value_at(const gcase_t *g, const void *base, int64_t i, int64_t j) {
  return g->f32 ? (double)((const float *)base)[i * g->k + j]
                : ((const double *)base)[i * g->k + j];
}

static int column_constant(const gcase_t *g, const void *base, int64_t j) {
  for (int64_t i = 1; i < g->n; i++)
    if (value_at(g, base, i, j) != value_at(g, base, 0, j)) return 0;
  return 1;
}

/* Both NaN, or equal. */
static int same(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

START_TEST(test_goldens) {
  rt_st_file_t *f = open_fixture();
  gcase_t cases[16];
  int nc = load_cases(f, cases, 16);
  ck_assert_int_ge(nc, 7);
  double worst[NK] = {0};
  for (int c = 0; c < nc; c++) {
    const gcase_t *g = &cases[c];
    rt_metrics_t *m = NULL;
    ck_assert(!rt_metrics_create(g->k, &m));
    int64_t r0 = 0;
    for (int64_t s = 0; s < g->nsplits; s++) {
      feed(m, g, r0, g->splits[s]);
      r0 += g->splits[s];
    }
    ck_assert_int_eq(r0, g->n);
    ck_assert_int_eq(rt_metrics_count(m), g->n);
    double *pc = malloc((size_t)(NK * g->k) * sizeof *pc), avg[NK];
    ck_assert(!rt_metrics_compute(m, pc, avg));
    int any_const = 0;
    for (int t = 0; t < NK; t++) {
      double num = 0, den = 0;
      for (int64_t j = 0; j < g->k; j++) {
        double got = pc[t * g->k + j], want = g->per_col[t * g->k + j];
        if (t == RT_METRICS_PEARSON && g->n >= 2 &&
            (column_constant(g, g->preds, j) || column_constant(g, g->labels, j))) {
          /* The one documented divergence (runtime/metrics.h). */
          any_const = 1;
          ck_assert_msg(isnan(got), "%s pearson col %lld constant: got %g", g->name,
                        (long long)j, got);
          printf("  %s: pearson of constant column %lld: NaN (torchmetrics %.3g)\n", g->name,
                 (long long)j, want);
          continue;
        }
        ck_assert_msg(isnan(got) == isnan(want), "%s %s col %lld: got %.17g want %.17g",
                      g->name, rt_metrics_kind_name(t), (long long)j, got, want);
        if (isnan(want)) continue;
        num = fmax(num, fabs(got - want));
        den = fmax(den, fabs(want));
      }
      double e = den > 0 ? num / den : num;
      ck_assert_msg(e <= 1e-10, "%s %s per-column rel error %g", g->name,
                    rt_metrics_kind_name(t), e);
      worst[t] = fmax(worst[t], e);
      double want = g->avg[t];
      if (t == RT_METRICS_PEARSON && any_const) {
        ck_assert(isnan(avg[t]));
        continue;
      }
      ck_assert_msg(isnan(avg[t]) == isnan(want), "%s avg %s: got %.17g want %.17g", g->name,
                    rt_metrics_kind_name(t), avg[t], want);
      if (!isnan(want)) {
        double ea = fabs(avg[t] - want) / fmax(fabs(want), 1e-300);
        ck_assert_msg(ea <= 1e-10, "%s avg %s rel error %g", g->name, rt_metrics_kind_name(t),
                      ea);
        worst[t] = fmax(worst[t], ea);
      }
    }
    free(pc);
    rt_metrics_free(m);
  }
  for (int t = 0; t < NK; t++)
    printf("metrics golden %-8s worst rel error %.3g\n", rt_metrics_kind_name(t), worst[t]);
  rt_st_close(f);
}
END_TEST

/* The fixture's samples in one batch, one row at a time, and in pseudo-random batches, with a
 * reset between: every result bit-identical to the fixture's own batching. */
START_TEST(test_batch_split_invariance) {
  rt_st_file_t *f = open_fixture();
  gcase_t cases[16];
  int nc = load_cases(f, cases, 16);
  for (int c = 0; c < nc; c++) {
    const gcase_t *g = &cases[c];
    size_t sz = (size_t)(NK * g->k);
    double *ref = malloc(sz * sizeof *ref), *got = malloc(sz * sizeof *got);
    double ravg[NK], gavg[NK];
    rt_metrics_t *m = NULL;
    ck_assert(!rt_metrics_create(g->k, &m));
    int64_t r0 = 0;
    for (int64_t s = 0; s < g->nsplits; s++) {
      feed(m, g, r0, g->splits[s]);
      r0 += g->splits[s];
    }
    ck_assert(!rt_metrics_compute(m, ref, ravg));
    uint32_t seed = 12345u + (uint32_t)c;
    for (int mode = 0; mode < 3; mode++) {
      rt_metrics_reset(m);
      ck_assert_int_eq(rt_metrics_count(m), 0);
      for (r0 = 0; r0 < g->n;) {
        int64_t b = g->n - r0;
        if (mode == 1) b = 1;
        if (mode == 2) {
          seed = seed * 1664525u + 1013904223u;
          b = 1 + (int64_t)(seed >> 8) % 13;
          if (b > g->n - r0) b = g->n - r0;
          feed(m, g, r0, 0); /* empty batches are no-ops */
        }
        feed(m, g, r0, b);
        r0 += b;
      }
      ck_assert(!rt_metrics_compute(m, got, gavg));
      for (size_t i = 0; i < sz; i++)
        ck_assert_msg(same(got[i], ref[i]), "%s mode %d cell %zu: %.17g vs %.17g", g->name,
                      mode, i, got[i], ref[i]);
      for (int t = 0; t < NK; t++) ck_assert(same(gavg[t], ravg[t]));
    }
    free(ref);
    free(got);
    rt_metrics_free(m);
  }
  rt_st_close(f);
}
END_TEST

START_TEST(test_named) {
  rt_st_file_t *f = open_fixture();
  gcase_t cases[16];
  int nc = load_cases(f, cases, 16);
  const gcase_t *g = NULL;
  for (int c = 0; c < nc; c++)
    if (cases[c].k == 30) g = &cases[c];
  ck_assert(g != NULL);
  rt_metrics_t *m = NULL;
  ck_assert(!rt_metrics_create(30, &m));
  feed(m, g, 0, g->n);
  rt_metric_value_t *v = NULL;
  size_t nv = 0;
  ck_assert(!rt_metrics_named(m, RT_METRICS_STAGE_TEST, &v, &nv));
  ck_assert_uint_eq(nv, 5 + 5 * 30);
  const char *heads[5] = {"test_pearson", "test_spearman", "test_mae", "test_r2", "test_mse"};
  for (int t = 0; t < 5; t++) {
    ck_assert_str_eq(v[t].name, heads[t]);
    ck_assert(fabs(v[t].value - g->avg[t]) <= 1e-10 * fabs(g->avg[t]));
  }
  /* per-label blocks in the order the peer's ModuleDict receives them */
  const char *blocks[5] = {"spearman", "pearson", "r2", "mse", "mae"};
  const int kinds[5] = {RT_METRICS_SPEARMAN, RT_METRICS_PEARSON, RT_METRICS_R2, RT_METRICS_MSE,
                        RT_METRICS_MAE};
  for (int b = 0; b < 5; b++)
    for (int j = 0; j < 30; j++) {
      char want[40];
      snprintf(want, sizeof want, "test_%s_%d", blocks[b], j);
      const rt_metric_value_t *e = &v[5 + b * 30 + j];
      ck_assert_str_eq(e->name, want);
      double w = g->per_col[kinds[b] * 30 + j];
      ck_assert_msg(fabs(e->value - w) <= 1e-10 * fmax(fabs(w), 1.0), "%s", want);
    }
  ck_assert_str_eq(v[nv - 1].name, "test_mae_29");
  free(v);
  ck_assert(!rt_metrics_named(m, RT_METRICS_STAGE_VAL, &v, &nv));
  ck_assert_uint_eq(nv, 5);
  ck_assert_str_eq(v[1].name, "val_spearman");
  free(v);
  ck_assert(!rt_metrics_named(m, RT_METRICS_STAGE_TRAIN, &v, &nv));
  ck_assert_uint_eq(nv, 5);
  ck_assert_str_eq(v[3].name, "train_r2");
  free(v);
  rt_metrics_free(m);

  /* K = 1: the test stage has no per-label entries (the peer adds them only for K > 1). */
  ck_assert(!rt_metrics_create(1, &m));
  double p[3] = {1, 2, 3}, l[3] = {1, 3, 2};
  ck_assert(!rt_metrics_update_f64(m, p, l, 3));
  ck_assert(!rt_metrics_named(m, RT_METRICS_STAGE_TEST, &v, &nv));
  ck_assert_uint_eq(nv, 5);
  ck_assert_str_eq(v[4].name, "test_mse");
  ck_assert(fabs(v[4].value - 2.0 / 3.0) <= 1e-15);
  /* ranks (1,2,3) vs (1,3,2): centred (-1,0,1) and (-1,1,0), cov 1/3, std^2 2/3 each */
  ck_assert(fabs(v[1].value - (1.0 / 3.0) / (2.0 / 3.0 + 1e-6)) <= 1e-15);
  free(v);
  rt_metrics_free(m);
  rt_st_close(f);
}
END_TEST

/* Exactly representable data around 2^30: the metrics must equal those of the same data
 * without the offset (a one-pass sum of squares loses every digit here). */
START_TEST(test_cancellation) {
  enum { N = 1000 };
  double x0[N], x1[N], y[N];
  for (int i = 0; i < N; i++) {
    double t = (double)((i * 37) % N);
    x0[i] = t / 4.0;
    x1[i] = 1073741824.0 + t / 4.0;
    y[i] = (double)((i * i) % 97) / 16.0 + 1073741824.0;
  }
  rt_metrics_t *a = NULL, *b = NULL;
  ck_assert(!rt_metrics_create(1, &a));
  ck_assert(!rt_metrics_create(1, &b));
  double y0[N];
  for (int i = 0; i < N; i++) y0[i] = y[i] - 1073741824.0;
  ck_assert(!rt_metrics_update_f64(a, x0, y0, N));
  ck_assert(!rt_metrics_update_f64(b, x1, y, N));
  double pa[NK], pb[NK];
  ck_assert(!rt_metrics_compute(a, pa, NULL));
  ck_assert(!rt_metrics_compute(b, pb, NULL));
  /* x - y is the same exact value in both, so the error metrics are bitwise equal. */
  ck_assert(pa[RT_METRICS_MSE] == pb[RT_METRICS_MSE]);
  ck_assert(pa[RT_METRICS_MAE] == pb[RT_METRICS_MAE]);
  ck_assert(pa[RT_METRICS_SPEARMAN] == pb[RT_METRICS_SPEARMAN]);
  ck_assert_msg(fabs(pa[RT_METRICS_PEARSON] - pb[RT_METRICS_PEARSON]) <= 1e-14, "%.17g %.17g",
                pa[RT_METRICS_PEARSON], pb[RT_METRICS_PEARSON]);
  ck_assert_msg(fabs(pa[RT_METRICS_R2] - pb[RT_METRICS_R2]) <= 1e-13 * fabs(pa[RT_METRICS_R2]),
                "%.17g %.17g", pa[RT_METRICS_R2], pb[RT_METRICS_R2]);
  rt_metrics_free(a);
  rt_metrics_free(b);
}
END_TEST

START_TEST(test_edges_and_errors) {
  rt_metrics_t *m = NULL;
  ad_status_t st = rt_metrics_create(0, &m);
  ck_assert(st && ad_status_code(st) == AD_STATUS_INVALID_ARGUMENT);
  ad_status_free(st);
  ck_assert(m == NULL);
  ck_assert(!rt_metrics_create(2, &m));
  double d[4] = {0};
  st = rt_metrics_update_f64(m, d, d, -1);
  ck_assert(st && ad_status_code(st) == AD_STATUS_INVALID_ARGUMENT);
  ad_status_free(st);
  st = rt_metrics_update_f64(m, NULL, d, 1);
  ck_assert(st && ad_status_code(st) == AD_STATUS_INVALID_ARGUMENT);
  ad_status_free(st);
  /* nothing accumulated: NaN everywhere, as torch's 0 / 0 */
  double pc[NK * 2], avg[NK];
  ck_assert(!rt_metrics_compute(m, pc, avg));
  for (int i = 0; i < NK * 2; i++) ck_assert(isnan(pc[i]));
  /* a NaN prediction poisons only its own column */
  double p[6] = {1, 2, 3, NAN, 5, 4}, l[6] = {1, 1, 2, 2, 3, 3}; /* [3, 2] */
  ck_assert(!rt_metrics_update_f64(m, p, l, 3));
  ck_assert(!rt_metrics_compute(m, pc, avg));
  for (int t = 0; t < NK; t++) {
    ck_assert(!isnan(pc[t * 2 + 0]));
    ck_assert(isnan(pc[t * 2 + 1]));
    ck_assert(isnan(avg[t]));
  }
  ck_assert(pc[RT_METRICS_PEARSON * 2] >= 0.98 && pc[RT_METRICS_PEARSON * 2] <= 1.0);
  rt_metrics_free(m);
}
END_TEST

int main(void) {
  Suite *s = suite_create("metrics");
  TCase *tc = tcase_create("metrics");
  tcase_add_test(tc, test_goldens);
  tcase_add_test(tc, test_batch_split_invariance);
  tcase_add_test(tc, test_named);
  tcase_add_test(tc, test_cancellation);
  tcase_add_test(tc, test_edges_and_errors);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
