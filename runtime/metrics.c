/* Regression metrics in f64 (runtime/metrics.h has the semantics and the torchmetrics
 * correspondence). */
#include "runtime/metrics.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rt_metrics {
  int64_t k;   /* output columns */
  int64_t n;   /* samples held */
  int64_t cap; /* samples each column can hold */
  double **pcol; /* K columns of predictions, each [cap] (column-major so ranking sorts in place) */
  double **lcol; /* K columns of labels, each [cap] */
};

static const char *const kind_names[RT_METRICS_KIND_COUNT] = {"pearson", "spearman", "mae", "r2",
                                                               "mse"};

const char *rt_metrics_kind_name(rt_metrics_kind_t kind) {
  return (unsigned)kind < RT_METRICS_KIND_COUNT ? kind_names[kind] : "?";
}

const char *rt_metrics_stage_name(rt_metrics_stage_t stage) {
  switch (stage) {
    case RT_METRICS_STAGE_TRAIN: return "train";
    case RT_METRICS_STAGE_VAL: return "val";
    case RT_METRICS_STAGE_TEST: return "test";
  }
  return "?";
}

ad_status_t rt_metrics_create(int64_t num_outputs, rt_metrics_t **out) {
  *out = NULL;
  if (num_outputs < 1 || num_outputs > (1 << 20))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "metrics: num_outputs must be in [1, 2^20], got %lld",
                          (long long)num_outputs);
  rt_metrics_t *m = calloc(1, sizeof *m);
  if (m) {
    m->k = num_outputs;
    m->pcol = calloc((size_t)num_outputs, sizeof *m->pcol);
    m->lcol = calloc((size_t)num_outputs, sizeof *m->lcol);
  }
  if (!m || !m->pcol || !m->lcol) {
    rt_metrics_free(m);
    return ad_status_make(AD_STATUS_RESOURCE, "metrics: out of memory");
  }
  *out = m;
  return AD_OK;
}

void rt_metrics_free(rt_metrics_t *m) {
  if (!m) return;
  for (int64_t j = 0; j < m->k; j++) {
    if (m->pcol) free(m->pcol[j]);
    if (m->lcol) free(m->lcol[j]);
  }
  free(m->pcol);
  free(m->lcol);
  free(m);
}

void rt_metrics_reset(rt_metrics_t *m) { m->n = 0; }
int64_t rt_metrics_num_outputs(const rt_metrics_t *m) { return m->k; }
int64_t rt_metrics_count(const rt_metrics_t *m) { return m->n; }

static ad_status_t reserve(rt_metrics_t *m, int64_t batch) {
  if (batch < 0)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "metrics: negative batch size %lld",
                          (long long)batch);
  if (batch > INT64_MAX / 2 - m->n)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "metrics: too many samples");
  int64_t need = m->n + batch;
  if (need <= m->cap) return AD_OK;
  int64_t cap = m->cap ? m->cap : 64;
  while (cap < need) cap *= 2;
  if ((uint64_t)cap > SIZE_MAX / sizeof(double))
    return ad_status_make(AD_STATUS_RESOURCE, "metrics: %lld samples do not fit in memory",
                          (long long)cap);
  for (int64_t j = 0; j < m->k; j++) {
    /* Grow column by column, committing each pointer at once, so a failure part way leaves
     * every column valid (some merely larger than cap). */
    double *p = realloc(m->pcol[j], (size_t)cap * sizeof(double));
    if (!p) return ad_status_make(AD_STATUS_RESOURCE, "metrics: out of memory");
    m->pcol[j] = p;
    double *l = realloc(m->lcol[j], (size_t)cap * sizeof(double));
    if (!l) return ad_status_make(AD_STATUS_RESOURCE, "metrics: out of memory");
    m->lcol[j] = l;
  }
  m->cap = cap;
  return AD_OK;
}

static ad_status_t check_args(const void *preds, const void *labels, int64_t batch) {
  if (batch > 0 && (!preds || !labels))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "metrics: NULL predictions or labels");
  return AD_OK;
}

/* preds, labels: [batch, K] */
ad_status_t rt_metrics_update_f32(rt_metrics_t *m, const float *preds, const float *labels,
                                  int64_t batch) {
  AD_RETURN_IF_ERROR(check_args(preds, labels, batch));
  AD_RETURN_IF_ERROR(reserve(m, batch));
  for (int64_t b = 0; b < batch; b++)
    for (int64_t j = 0; j < m->k; j++) {
      m->pcol[j][m->n + b] = (double)preds[b * m->k + j];
      m->lcol[j][m->n + b] = (double)labels[b * m->k + j];
    }
  m->n += batch;
  return AD_OK;
}

/* preds, labels: [batch, K] */
ad_status_t rt_metrics_update_f64(rt_metrics_t *m, const double *preds, const double *labels,
                                  int64_t batch) {
  AD_RETURN_IF_ERROR(check_args(preds, labels, batch));
  AD_RETURN_IF_ERROR(reserve(m, batch));
  for (int64_t b = 0; b < batch; b++)
    for (int64_t j = 0; j < m->k; j++) {
      m->pcol[j][m->n + b] = preds[b * m->k + j];
      m->lcol[j][m->n + b] = labels[b * m->k + j];
    }
  m->n += batch;
  return AD_OK;
}

/* ---- compensated sums ------------------------------------------------------------------------ */

/* Neumaier's variant of Kahan summation: the error of each addition is carried whichever
 * operand is larger, so sums of squares of centred values lose nothing to cancellation. */
typedef struct ksum {
  double s, c;
} ksum_t;

static inline void ksum_add(ksum_t *k, double v) {
  double t = k->s + v;
  if (fabs(k->s) >= fabs(v))
    k->c += (k->s - t) + v;
  else
    k->c += (v - t) + k->s;
  k->s = t;
}

static inline double ksum_get(const ksum_t *k) { return k->s + k->c; }

static double mean_of(const double *x, int64_t n) {
  ksum_t s = {0, 0};
  for (int64_t i = 0; i < n; i++) ksum_add(&s, x[i]);
  return ksum_get(&s) / (double)n;
}

static bool has_nan(const double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (isnan(x[i])) return true;
  return false;
}

static bool is_constant(const double *x, int64_t n) {
  for (int64_t i = 1; i < n; i++)
    if (x[i] != x[0]) return false;
  return true;
}

/* ---- per-column metrics ---------------------------------------------------------------------- */

static double clamp1(double r) { return r < -1.0 ? -1.0 : (r > 1.0 ? 1.0 : r); }

static double col_mse(const double *x, const double *y, int64_t n) {
  ksum_t s = {0, 0};
  for (int64_t i = 0; i < n; i++) ksum_add(&s, (x[i] - y[i]) * (x[i] - y[i]));
  return ksum_get(&s) / (double)n;
}

static double col_mae(const double *x, const double *y, int64_t n) {
  ksum_t s = {0, 0};
  for (int64_t i = 0; i < n; i++) ksum_add(&s, fabs(x[i] - y[i]));
  return ksum_get(&s) / (double)n;
}

static double col_r2(const double *x, const double *y, int64_t n) {
  if (n < 2) return NAN;
  double my = mean_of(y, n);
  ksum_t rss = {0, 0}, tss = {0, 0};
  for (int64_t i = 0; i < n; i++) {
    ksum_add(&rss, (y[i] - x[i]) * (y[i] - x[i]));
    ksum_add(&tss, (y[i] - my) * (y[i] - my));
  }
  double r = ksum_get(&rss), t = ksum_get(&tss);
  /* torch.isclose(v, 0, atol=1e-4) is |v| <= 1e-4, false for NaN. */
  bool rss_big = !(fabs(r) <= 1e-4), tss_big = !(fabs(t) <= 1e-4);
  if (rss_big && tss_big) return 1.0 - r / t;
  if (rss_big) return 0.0;
  return 1.0;
}

static double col_pearson(const double *x, const double *y, int64_t n) {
  if (n < 2 || is_constant(x, n) || is_constant(y, n)) return NAN;
  double mx = mean_of(x, n), my = mean_of(y, n);
  ksum_t sxx = {0, 0}, syy = {0, 0}, sxy = {0, 0};
  double ax = 0, ay = 0; /* max |x - mean|, torchmetrics' scale against overflow */
  for (int64_t i = 0; i < n; i++) {
    double dx = x[i] - mx, dy = y[i] - my;
    ksum_add(&sxx, dx * dx);
    ksum_add(&syy, dy * dy);
    ksum_add(&sxy, dx * dy);
    ax = fmax(ax, fabs(dx));
    ay = fmax(ay, fabs(dy));
  }
  double nm1 = (double)(n - 1);
  double vx = ksum_get(&sxx) / nm1 / (ax * ax), vy = ksum_get(&syy) / nm1 / (ay * ay);
  double cxy = ksum_get(&sxy) / nm1 / (ax * ay);
  double bound = sqrt(DBL_EPSILON);
  if (!(vx >= bound) || !(vy >= bound) || !isfinite(vx) || !isfinite(vy) || !isfinite(cxy))
    return NAN;
  return clamp1(cxy / sqrt(vx * vy));
}

typedef struct keyed {
  double v;
  int64_t i;
} keyed_t;

static int keyed_cmp(const void *a, const void *b) {
  const keyed_t *p = a, *q = b;
  if (p->v < q->v) return -1;
  if (p->v > q->v) return 1;
  /* Index order among equals makes the sort deterministic (qsort is not stable); the average
   * rank does not depend on it. */
  return (p->i > q->i) - (p->i < q->i);
}

/* rank[i] = the mean 1-based sorted position of x[i]'s tie group. x has no NaN. */
static void average_ranks(const double *x, int64_t n, keyed_t *scratch, double *rank) {
  for (int64_t i = 0; i < n; i++) scratch[i] = (keyed_t){x[i], i};
  qsort(scratch, (size_t)n, sizeof *scratch, keyed_cmp);
  for (int64_t a = 0; a < n;) {
    int64_t b = a + 1;
    while (b < n && scratch[b].v == scratch[a].v) b++;
    /* positions a+1 .. b: their mean is a half-integer, exact in double */
    double r = 0.5 * ((double)(a + 1) + (double)b);
    for (int64_t t = a; t < b; t++) rank[scratch[t].i] = r;
    a = b;
  }
}

/* rx, ry: [n] scratch for the ranks */
static double col_spearman(const double *x, const double *y, int64_t n, keyed_t *scratch,
                           double *rx, double *ry) {
  average_ranks(x, n, scratch, rx);
  average_ranks(y, n, scratch, ry);
  double mx = mean_of(rx, n), my = mean_of(ry, n);
  ksum_t sxx = {0, 0}, syy = {0, 0}, sxy = {0, 0};
  for (int64_t i = 0; i < n; i++) {
    double dx = rx[i] - mx, dy = ry[i] - my;
    ksum_add(&sxx, dx * dx);
    ksum_add(&syy, dy * dy);
    ksum_add(&sxy, dx * dy);
  }
  double dn = (double)n;
  double cov = ksum_get(&sxy) / dn;
  double sx = sqrt(ksum_get(&sxx) / dn), sy = sqrt(ksum_get(&syy) / dn);
  return clamp1(cov / (sx * sy + 1e-6));
}

ad_status_t rt_metrics_compute(const rt_metrics_t *m, double *per_col, double *avg) {
  int64_t n = m->n, k = m->k;
  keyed_t *scratch = NULL;
  double *rx = NULL, *ry = NULL, *vals = NULL;
  if (n > 0) {
    scratch = malloc((size_t)n * sizeof *scratch);
    rx = malloc((size_t)n * sizeof *rx);
    ry = malloc((size_t)n * sizeof *ry);
  }
  vals = malloc((size_t)(RT_METRICS_KIND_COUNT * k) * sizeof *vals); /* [KIND_COUNT, K] */
  if ((n > 0 && (!scratch || !rx || !ry)) || !vals) {
    free(scratch), free(rx), free(ry), free(vals);
    return ad_status_make(AD_STATUS_RESOURCE, "metrics: out of memory for %lld samples",
                          (long long)n);
  }
  for (int64_t j = 0; j < k; j++) {
    const double *x = m->pcol[j], *y = m->lcol[j];
    double *v = vals + j; /* v[kind * k] */
    if (n == 0 || has_nan(x, n) || has_nan(y, n)) {
      for (int t = 0; t < RT_METRICS_KIND_COUNT; t++) v[t * k] = NAN;
      continue;
    }
    v[RT_METRICS_PEARSON * k] = col_pearson(x, y, n);
    v[RT_METRICS_SPEARMAN * k] = col_spearman(x, y, n, scratch, rx, ry);
    v[RT_METRICS_MAE * k] = col_mae(x, y, n);
    v[RT_METRICS_R2 * k] = col_r2(x, y, n);
    v[RT_METRICS_MSE * k] = col_mse(x, y, n);
  }
  if (per_col) memcpy(per_col, vals, (size_t)(RT_METRICS_KIND_COUNT * k) * sizeof *vals);
  if (avg)
    for (int t = 0; t < RT_METRICS_KIND_COUNT; t++) {
      ksum_t s = {0, 0};
      for (int64_t j = 0; j < k; j++) ksum_add(&s, vals[t * k + j]);
      avg[t] = ksum_get(&s) / (double)k;
    }
  free(scratch), free(rx), free(ry), free(vals);
  return AD_OK;
}

/* Order of the test stage's per-label ModuleDict updates in MMSequenceRegression.__init__. */
static const rt_metrics_kind_t label_order[RT_METRICS_KIND_COUNT] = {
    RT_METRICS_SPEARMAN, RT_METRICS_PEARSON, RT_METRICS_R2, RT_METRICS_MSE, RT_METRICS_MAE};

ad_status_t rt_metrics_named(const rt_metrics_t *m, rt_metrics_stage_t stage,
                             rt_metric_value_t **out, size_t *count) {
  *out = NULL;
  *count = 0;
  int64_t k = m->k;
  bool per_label = stage == RT_METRICS_STAGE_TEST && k > 1;
  size_t total = RT_METRICS_KIND_COUNT + (per_label ? (size_t)RT_METRICS_KIND_COUNT * k : 0);
  double *per_col = malloc((size_t)(RT_METRICS_KIND_COUNT * k) * sizeof *per_col);
  rt_metric_value_t *v = calloc(total, sizeof *v);
  if (!per_col || !v) {
    free(per_col), free(v);
    return ad_status_make(AD_STATUS_RESOURCE, "metrics: out of memory");
  }
  double avg[RT_METRICS_KIND_COUNT];
  ad_status_t st = rt_metrics_compute(m, per_col, avg);
  if (st) {
    free(per_col), free(v);
    return st;
  }
  const char *sn = rt_metrics_stage_name(stage);
  size_t o = 0;
  for (int t = 0; t < RT_METRICS_KIND_COUNT; t++, o++) {
    snprintf(v[o].name, sizeof v[o].name, "%s_%s", sn, kind_names[t]);
    v[o].value = avg[t];
  }
  if (per_label)
    for (int t = 0; t < RT_METRICS_KIND_COUNT; t++)
      for (int64_t j = 0; j < k; j++, o++) {
        snprintf(v[o].name, sizeof v[o].name, "%s_%s_%lld", sn, kind_names[label_order[t]],
                 (long long)j);
        v[o].value = per_col[label_order[t] * k + j];
      }
  free(per_col);
  *out = v;
  *count = total;
  return AD_OK;
}
