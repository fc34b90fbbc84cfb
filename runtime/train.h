/* Running a plan's job. For now the fit job trains on one synthetic batch (runtime/synthetic.c)
 * and reports the loss per step; real data arrives with the data pipeline. */
#ifndef AIDOMM_RUNTIME_TRAIN_H
#define AIDOMM_RUNTIME_TRAIN_H

#include <stdio.h>

#include "plan/plan.h"
#include "runtime/exec.h"

typedef struct rt_run_options {
  int nthreads;      /* <= 0: all CPUs */
  int64_t max_steps; /* > 0 overrides the plan's trainer.max_steps */
  double lr;         /* > 0 overrides the plan's learning rate */
  int64_t seed;      /* >= 0 overrides seed_everything */
  FILE *out;         /* progress lines; stdout when NULL */
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

ad_status_t rt_run_plan(const plan_t *p, const rt_run_options_t *o);

#endif
