/* Running a plan's job (runtime/run.c): the job settings come from the plan's config with the
 * runtime overrides applied; fit trains (on the config's data, or on one synthetic batch for
 * models without a data class), validate/test/predict evaluate (runtime/evaluate.c). */
#ifndef AIDOMM_RUNTIME_TRAIN_H
#define AIDOMM_RUNTIME_TRAIN_H

#include <stdbool.h>
#include <stdio.h>

#include "plan/plan.h"
#include "runtime/exec.h"

typedef struct rt_run_options {
  int nthreads;                 /* <= 0: all CPUs */
  int job;                      /* -1: the plan's job kind; else a plan_job_kind_t */
  int noverrides;               /* runtime config overrides, as on a command line: */
  char *const *overrides;       /* {"--trainer.max_steps", "5", "--ckpt_path=w.safetensors"} */
  int overrides_argpos;         /* argv position of overrides[0], for error columns (0: 1) */
  const int *override_argpos;   /* [noverrides] argv position of each, when not contiguous */
  const char *plan_path;        /* for messages; may be NULL */
  FILE *out;                    /* progress and tables; stdout when NULL */
  /* aidomm's own run flags (not config keys) */
  const char *output_dir;       /* predictions and metrics CSV; NULL: the logger's folder */
  bool predictions_log2tpm;     /* predictions mapped back from z-scores to log2(1e-4 + TPM) */
  int progress;                 /* 1 on, 0 off, -1: a live line on a terminal, plain lines else */
  const char *index_dir;        /* where TSV row indexes are cached; NULL: beside the data */
} rt_run_options_t;

/* A synthetic batch for a program's INPUT nodes at the bound sizes (see synthetic.c). Owned
 * by the caller: free with rt_batch_free. */
typedef struct rt_batch {
  int64_t symvals[IR_MAX_SYMBOLS];
  uint32_t nfeeds;
  rt_feed_t *feeds;
} rt_batch_t;
ad_status_t rt_batch_synthetic(const ir_graph_t *g, uint64_t seed, rt_batch_t *out);
void rt_batch_free(rt_batch_t *b);

/* One training step on `batch` through the plan's "train_step" program; returns the loss. */
typedef struct rt_trainer rt_trainer_t;
ad_status_t rt_trainer_create(const plan_t *p, rt_state_t *state, int nthreads,
                              rt_trainer_t **out);
void rt_trainer_free(rt_trainer_t *t);
ad_status_t rt_trainer_step(rt_trainer_t *t, const rt_batch_t *batch, int64_t step, double lr,
                            int64_t seed, double *loss);

/* Gradient accumulation (Lightning's accumulate_grad_batches = k), through the plan's
 * grad_step / apply_step programs: rt_trainer_accumulate runs forward + backward of
 * loss * loss_scale (1/k) on one micro-batch (dropout keyed by micro_step) and adds its
 * gradients to the window's sums; rt_trainer_apply clips and steps AdamW with the sums and
 * empties the window. */
ad_status_t rt_trainer_enable_accumulation(rt_trainer_t *t);
ad_status_t rt_trainer_accumulate(rt_trainer_t *t, const rt_batch_t *batch, int64_t micro_step,
                                  int64_t seed, double loss_scale, double *loss);
ad_status_t rt_trainer_apply(rt_trainer_t *t, int64_t step, double lr, int64_t seed);

/* modelgenerator.lr_schedulers.CosineWithWarmup (transformers' cosine schedule, half a cycle):
 * the learning rate of optimizer step k (1-based) is base * f(k - 1) with
 * f(s) = s / max(1, W) for s < W, else max(0, 0.5 (1 + cos(pi (s - W) / max(1, T - W)))),
 * so the first step runs at lr 0 when W >= 1. */
double rt_cosine_warmup_lr(double base, int64_t step, int64_t total, int64_t warmup);
/* W from the scheduler arguments: num_warmup_steps when given, else int(warmup_ratio * T). */
int64_t rt_warmup_steps(double warmup_ratio, int64_t num_warmup_steps, int64_t total);

/* Lightning's gradient_clip_val (global L2 norm); 0 turns clipping off. */
void rt_trainer_set_clip(rt_trainer_t *t, double max_norm);
/* The global gradient norm of the last step, before clipping (NaN if the plan has none). */
double rt_trainer_grad_norm(const rt_trainer_t *t);

ad_status_t rt_run_plan(const plan_t *p, const rt_run_options_t *o);

#endif
