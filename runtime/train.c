#include "runtime/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/threadpool.h"

struct rt_trainer {
  const plan_t *plan;
  const ir_graph_t *g;
  rt_state_t *state;
  rt_exec_t *exec;
  pass_memplan_t mp; /* view over the plan's memplan arrays (not owned) */
  rt_threadpool_t *pool;
  double clip_max;  /* gradient_clip_val; 0: off */
  double grad_norm; /* of the last step, before clipping (NaN when the program has none) */
};

void rt_trainer_set_clip(rt_trainer_t *t, double max_norm) { t->clip_max = max_norm; }
double rt_trainer_grad_norm(const rt_trainer_t *t) { return t->grad_norm; }

ad_status_t rt_trainer_create(const plan_t *p, rt_state_t *state, int nthreads,
                              rt_trainer_t **out) {
  *out = NULL;
  const ir_graph_t *g = ir_module_find_program(p->module, "train_step");
  if (!g) return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "plan has no 'train_step' program");
  const plan_memplan_t *pm = plan_find_memplan(p, "train_step");
  if (!pm) return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "plan has no memory plan for 'train_step'");
  rt_trainer_t *t = calloc(1, sizeof *t);
  if (!t) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  t->plan = p;
  t->g = g;
  t->state = state;
  t->mp = (pass_memplan_t){pm->nvalues, pm->offset, pm->size, pm->peak_bytes, pm->total_bytes};
  ad_status_t st = rt_exec_create(g, &t->mp, &t->exec);
  if (!st) st = rt_threadpool_create(nthreads, &t->pool);
  if (st) {
    rt_trainer_free(t);
    return st;
  }
  *out = t;
  return AD_OK;
}

void rt_trainer_free(rt_trainer_t *t) {
  if (!t) return;
  rt_exec_free(t->exec);
  rt_threadpool_free(t->pool);
  free(t);
}

ad_status_t rt_trainer_step(rt_trainer_t *t, const rt_batch_t *batch, int64_t step, double lr,
                            int64_t seed, double *loss) {
  /* the feeds are the batch plus the runtime scalars of this step */
  uint32_t n = batch->nfeeds;
  rt_feed_t *feeds = calloc(n + 4, sizeof *feeds);
  if (!feeds) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  memcpy(feeds, batch->feeds, sizeof *feeds * n);
  feeds[n++] = (rt_feed_t){"step", &step, sizeof step};
  feeds[n++] = (rt_feed_t){"lr", &lr, sizeof lr};
  feeds[n++] = (rt_feed_t){"seed", &seed, sizeof seed};
  feeds[n++] = (rt_feed_t){"clip_max", &t->clip_max, sizeof t->clip_max};
  /* only feed scalars the module declares, with their declared dtype */
  uint32_t k = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (i >= batch->nfeeds) {
      const ir_scalar_decl_t *d = ir_module_find_scalar(t->g->module, feeds[i].name);
      if (!d) continue;
      if (ir_dtype_size(d->dtype) != feeds[i].bytes) {
        free(feeds);
        return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "runtime scalar '%s' has dtype %s",
                              d->name, ir_dtype_name(d->dtype));
      }
    }
    feeds[k++] = feeds[i];
  }
  ad_status_t st = rt_exec_run(t->exec, t->state, batch->symvals, feeds, k,
                               rt_threadpool_parallel(t->pool));
  free(feeds);
  if (st) return st;
  const ir_tensor_t *l = rt_exec_output(t->exec, "loss");
  if (!l) return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "train_step has no 'loss' output");
  *loss = l->dtype == IR_DTYPE_F64 ? *(const double *)l->data : (double)*(const float *)l->data;
  const ir_tensor_t *gn = rt_exec_output(t->exec, "grad_norm");
  t->grad_norm = !gn ? NAN
                 : gn->dtype == IR_DTYPE_F64 ? *(const double *)gn->data
                                             : (double)*(const float *)gn->data;
  return AD_OK;
}

double rt_cosine_warmup_lr(double base, int64_t step, int64_t total, int64_t warmup) {
  int64_t s = step - 1; /* scheduler steps taken before this optimizer step */
  double f;
  if (s < warmup) {
    f = (double)s / (double)(warmup > 1 ? warmup : 1);
  } else {
    double progress = (double)(s - warmup) / (double)(total - warmup > 1 ? total - warmup : 1);
    /* transformers: 0.5 * (1 + cos(pi * num_cycles * 2 * progress)), num_cycles = 0.5 */
    f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
    if (f < 0) f = 0;
  }
  return base * f;
}

int64_t rt_warmup_steps(double warmup_ratio, int64_t num_warmup_steps, int64_t total) {
  if (num_warmup_steps >= 0) return num_warmup_steps;
  if (warmup_ratio > 0) return (int64_t)(warmup_ratio * (double)total); /* Python int() */
  return 0;
}
