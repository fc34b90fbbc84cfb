/* Regression metrics of the evaluation loop, in f64: Pearson, Spearman, MAE, R², MSE per output
 * column and their uniform average, equal to what ModelGenerator's regression tasks log through
 * torchmetrics (modelgenerator.md 4.2) when torchmetrics is fed f64.
 *
 * The accumulator keeps every prediction and label (two doubles per sample and column: Spearman
 * needs all of them to rank, and 30 outputs x 50k test rows is 24 MB) and computes every metric
 * at the end from the concatenated columns with compensated (Neumaier) sums and two-pass
 * moments. The result therefore depends only on the samples and their order, never on where the
 * batch boundaries fell (bitwise), unlike torchmetrics' streaming Pearson merge.
 *
 * Semantics, per column of n samples x (predictions) and y (labels):
 *   mse      = sum (x - y)^2 / n;  mae = sum |x - y| / n.
 *   r2       = torchmetrics R2Score: rss = sum (y - x)^2, tss = sum (y - mean y)^2; with
 *              "small" meaning |v| <= 1e-4 (torch.isclose(v, 0, atol=1e-4), an absolute bound on
 *              the *sums*): rss small -> 1; else tss small -> 0; else 1 - rss / tss. n < 2 is NaN
 *              (torchmetrics raises "Needs at least two samples" there, which aborts the peer's
 *              val/test epoch).
 *   pearson  = sxy / sqrt(sxx syy), clamped to [-1, 1]. NaN (torchmetrics warns "The variance
 *              of predictions or target is close to zero ... Setting the correlation
 *              coefficient to nan") when n < 2, when a column is constant, or when its
 *              normalised variance sxx / (n - 1) / max|x - mean|^2 is below sqrt(DBL_EPSILON)
 *              or not finite (max|x - mean| about the final mean; torchmetrics takes it about
 *              its running mean batch by batch, which only moves that threshold slightly).
 *              Divergence, on purpose: for an exactly constant column torchmetrics
 *              only gets NaN when its batch means happen to round back to the constant; when they
 *              do not it returns rounding noise (e.g. -0.083 for a column of 0.1, -6e-18 for one
 *              at log2(1e-4)). We always return NaN there, so the column's average is NaN too.
 *   spearman = average ranks (1-based, ties share the mean of their positions), then
 *              cov / (std_x std_y + 1e-6) with population moments (the 1e-6 is torchmetrics' eps:
 *              a constant column or n = 1 gives 0, and a perfect n = 2 correlation is
 *              0.25 / 0.250001), clamped to [-1, 1]. Needs torch's default dtype f64 to match:
 *              torchmetrics' ranks are int32 / int32, a tensor of the default dtype.
 *   A NaN in a column makes every metric of that column NaN (torchmetrics would rank NaN
 *   last in Spearman). n = 0 gives NaN everywhere (torch's 0 / 0 and mean of nothing).
 *   average  = arithmetic mean over the K columns (multioutput="uniform_average"); NaN if any is.
 */
#ifndef AIDOMM_RUNTIME_METRICS_H
#define AIDOMM_RUNTIME_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "support/status.h"

/* In the order MMSequenceRegression registers (and so logs) its stage metrics. */
typedef enum rt_metrics_kind {
  RT_METRICS_PEARSON = 0,
  RT_METRICS_SPEARMAN,
  RT_METRICS_MAE,
  RT_METRICS_R2,
  RT_METRICS_MSE,
  RT_METRICS_KIND_COUNT
} rt_metrics_kind_t;

typedef enum rt_metrics_stage {
  RT_METRICS_STAGE_TRAIN = 0,
  RT_METRICS_STAGE_VAL,
  RT_METRICS_STAGE_TEST
} rt_metrics_stage_t;

/* "pearson", "spearman", "mae", "r2", "mse"; "train", "val", "test". */
const char *rt_metrics_kind_name(rt_metrics_kind_t kind);
const char *rt_metrics_stage_name(rt_metrics_stage_t stage);

typedef struct rt_metrics rt_metrics_t;

/* num_outputs K >= 1. */
ad_status_t rt_metrics_create(int64_t num_outputs, rt_metrics_t **out);
void rt_metrics_free(rt_metrics_t *m);
/* Forgets every sample (the start of a new epoch); keeps the memory. */
void rt_metrics_reset(rt_metrics_t *m);

int64_t rt_metrics_num_outputs(const rt_metrics_t *m);
int64_t rt_metrics_count(const rt_metrics_t *m); /* samples accumulated */

/* Appends a batch. preds, labels: [batch, K] row-major; batch 0 is a no-op. */
ad_status_t rt_metrics_update_f32(rt_metrics_t *m, const float *preds, const float *labels,
                                  int64_t batch);
ad_status_t rt_metrics_update_f64(rt_metrics_t *m, const double *preds, const double *labels,
                                  int64_t batch);

/* per_col: [RT_METRICS_KIND_COUNT, K] (NULL to skip), avg: [RT_METRICS_KIND_COUNT] (NULL to
 * skip), both indexed by rt_metrics_kind_t. Fails only on memory. */
ad_status_t rt_metrics_compute(const rt_metrics_t *m, double *per_col, double *avg);

typedef struct rt_metric_value {
  char name[40];
  double value;
} rt_metric_value_t;

/* The (name, value) pairs ModelGenerator logs for a stage, in its order: "{stage}_pearson",
 * "_spearman", "_mae", "_r2", "_mse", then for the test stage with K > 1 the per-label metrics
 * "test_spearman_0".."test_spearman_{K-1}", then pearson_i, r2_i, mse_i, mae_i. *out is
 * malloc'd (free it); *count its length. */
ad_status_t rt_metrics_named(const rt_metrics_t *m, rt_metrics_stage_t stage,
                             rt_metric_value_t **out, size_t *count);

#endif
