/* Shared by the job runners (run.c, evaluate.c, fit.c): a resolved run. */
#ifndef AIDOMM_RUNTIME_RUN_INTERNAL_H
#define AIDOMM_RUNTIME_RUN_INTERNAL_H

#include "frontend/frontend.h"
#include "runtime/dataset.h"
#include "runtime/metrics.h"
#include "runtime/threadpool.h"
#include "runtime/train.h"

typedef struct rt_ctx {
  const plan_t *plan;
  const rt_run_options_t *o;
  const char *plan_name; /* for messages */
  FILE *out;
  fe_config_t *cfg;      /* the plan's config with the runtime overrides (owns job strings) */
  fe_job_t job;
  plan_job_kind_t kind;
  rt_state_t *state;
  rt_zscore_t z;         /* label statistics; z.k == 0 when labels are not normalised */
  bool z_from_ckpt;
  char *train_state;     /* --ckpt_path's aidomm.train_state metadata (JSON), or NULL */
  char *out_dir;         /* predictions, metrics.csv */
  rt_dataset_options_t dopt;
} rt_ctx_t;

/* Opens the split, with z-score statistics computed from train + validation (unless the
 * context already has them, e.g. from a checkpoint). */
ad_status_t rt_ctx_open_split(rt_ctx_t *c, rt_split_kind_t split, rt_dataset_t **out);

/* Progress for a loop of `total` units: a live line with rate and ETA on a terminal, plain
 * lines (about every 10%, and the last) otherwise. */
typedef struct rt_progress {
  FILE *f;
  const char *what;
  int64_t total, done, last_line;
  double t0, last_draw;
  bool tty, enabled;
} rt_progress_t;

void rt_progress_start(rt_progress_t *p, FILE *f, int mode, const char *what, int64_t total);
void rt_progress_step(rt_progress_t *p, int64_t done, const char *extra);
void rt_progress_end(rt_progress_t *p);
double rt_now_s(void);

/* Lightning's limit_*_batches over an epoch of nb batches: a count, or a fraction (floored);
 * never more than nb. */
int64_t rt_limit_batches(double limit, bool is_count, int64_t nb);

/* mkdir -p */
ad_status_t rt_mkdirs(const char *path);

/* Appends metric rows to <out_dir>/metrics.csv ("stage,epoch,step,name,value", the header
 * written when the file is new). */
ad_status_t rt_metrics_csv_append(const rt_ctx_t *c, const char *stage, int64_t epoch,
                                  int64_t step, const char *const *names, const double *values,
                                  size_t n);

/* Drops the train and val rows logged after `step` (a resumed run logs them again). */
ad_status_t rt_metrics_csv_truncate_after(const rt_ctx_t *c, int64_t step);

ad_status_t rt_evaluate(rt_ctx_t *c);
/* One evaluation of `kind` (validate or test) at a training step; inside fit it prints one line,
 * writes no predictions, and hands back the named metrics (stage loss first; free *named). */
ad_status_t rt_evaluate_ex(rt_ctx_t *c, plan_job_kind_t kind, int64_t step, int64_t epoch,
                           rt_metric_value_t **named, size_t *nnamed);
ad_status_t rt_fit(rt_ctx_t *c);

#endif
