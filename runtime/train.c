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
  /* gradient accumulation: grad_step / apply_step and the summed gradients of the window */
  const ir_graph_t *gg, *ag;
  rt_exec_t *gexec, *aexec;
  pass_memplan_t gmp, amp;
  uint32_t ngrads;
  const char **gname; /* [ngrads] "grad:<slot>" */
  void **gsum;        /* [ngrads] */
  size_t *gbytes;     /* [ngrads] */
  ir_dtype_t *gdt;    /* [ngrads] */
  int window;         /* micro-batches summed so far */
  int64_t symvals[IR_MAX_SYMBOLS];
};

static double scalar_of(const ir_tensor_t *t) {
  return t->dtype == IR_DTYPE_F64 ? *(const double *)t->data : (double)*(const float *)t->data;
}

/* Runs `e` on g with the batch feeds plus the runtime scalars g's module declares. */
static ad_status_t run_program(rt_trainer_t *t, rt_exec_t *e, const ir_graph_t *g,
                               const int64_t *symvals, const rt_feed_t *bf, uint32_t nb,
                               const rt_feed_t *sc, uint32_t ns) {
  rt_feed_t *feeds = calloc(nb + ns + 1, sizeof *feeds);
  if (!feeds) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  uint32_t k = 0;
  for (uint32_t i = 0; i < nb; i++) feeds[k++] = bf[i];
  for (uint32_t i = 0; i < ns; i++) {
    const ir_scalar_decl_t *d = ir_module_find_scalar(g->module, sc[i].name);
    if (!d) continue;
    if (ir_dtype_size(d->dtype) != sc[i].bytes) {
      free(feeds);
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "runtime scalar '%s' has dtype %s",
                            d->name, ir_dtype_name(d->dtype));
    }
    feeds[k++] = sc[i];
  }
  ad_status_t st = rt_exec_run(e, t->state, symvals, feeds, k, rt_threadpool_parallel(t->pool));
  free(feeds);
  return st;
}

static ad_status_t program_exec(const plan_t *p, const char *name, const ir_graph_t **g,
                                pass_memplan_t *mp, rt_exec_t **e) {
  *g = ir_module_find_program(p->module, name);
  const plan_memplan_t *pm = plan_find_memplan(p, name);
  if (!*g || !pm)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "the plan has no '%s' program: accumulate_grad_batches > 1 needs a plan "
                          "compiled with it (aidommc compile --trainer.accumulate_grad_batches K)",
                          name);
  *mp = (pass_memplan_t){pm->nvalues, pm->offset, pm->size, pm->peak_bytes, pm->total_bytes};
  return rt_exec_create(*g, mp, e);
}

ad_status_t rt_trainer_enable_accumulation(rt_trainer_t *t) {
  if (t->gexec) return AD_OK;
  AD_RETURN_IF_ERROR(program_exec(t->plan, "grad_step", &t->gg, &t->gmp, &t->gexec));
  AD_RETURN_IF_ERROR(program_exec(t->plan, "apply_step", &t->ag, &t->amp, &t->aexec));
  uint32_t n = 0;
  for (uint32_t i = 0; i < t->ag->nnodes; i++) n += t->ag->nodes[i].op == IR_OP_INPUT;
  t->gname = calloc(n ? n : 1, sizeof *t->gname);
  t->gsum = calloc(n ? n : 1, sizeof *t->gsum);
  t->gbytes = calloc(n ? n : 1, sizeof *t->gbytes);
  t->gdt = calloc(n ? n : 1, sizeof *t->gdt);
  if (!t->gname || !t->gsum || !t->gbytes || !t->gdt)
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  ir_module_bounds(t->plan->module, t->symvals);
  for (uint32_t i = 0; i < t->ag->nnodes; i++) {
    const ir_node_t *nd = &t->ag->nodes[i];
    if (nd->op != IR_OP_INPUT) continue;
    const ir_type_t *ty = &t->ag->values[nd->output0].type;
    ir_shape_t sh = ir_type_shape(ty, t->symvals);
    size_t bytes = (size_t)ir_shape_numel(&sh) * ir_dtype_size(ty->dtype);
    t->gname[t->ngrads] = nd->name;
    t->gdt[t->ngrads] = ty->dtype;
    t->gbytes[t->ngrads] = bytes;
    t->gsum[t->ngrads] = calloc(1, bytes ? bytes : 1);
    if (!t->gsum[t->ngrads++]) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  return AD_OK;
}

/* torch accumulates p.grad = p.grad + g in the gradient dtype, micro-batch after micro-batch. */
ad_status_t rt_trainer_accumulate(rt_trainer_t *t, const rt_batch_t *batch, int64_t micro_step,
                                  int64_t seed, double loss_scale, double *loss) {
  rt_feed_t sc[3] = {{"step", &micro_step, sizeof micro_step},
                     {"seed", &seed, sizeof seed},
                     {"loss_scale", &loss_scale, sizeof loss_scale}};
  AD_RETURN_IF_ERROR(run_program(t, t->gexec, t->gg, batch->symvals, batch->feeds, batch->nfeeds,
                                 sc, 3));
  const ir_tensor_t *l = rt_exec_output(t->gexec, "loss");
  if (!l) return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "grad_step has no 'loss' output");
  *loss = scalar_of(l);
  for (uint32_t i = 0; i < t->ngrads; i++) {
    const ir_tensor_t *g = rt_exec_output(t->gexec, t->gname[i]);
    if (!g || (size_t)ir_tensor_numel(g) * ir_dtype_size(g->dtype) != t->gbytes[i])
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "grad_step has no output '%s'",
                            t->gname[i]);
    if (t->window == 0) {
      memcpy(t->gsum[i], g->data, t->gbytes[i]);
    } else if (t->gdt[i] == IR_DTYPE_F64) {
      double *d = t->gsum[i];
      const double *x = g->data;
      for (size_t j = 0; j < t->gbytes[i] / sizeof *d; j++) d[j] = d[j] + x[j];
    } else {
      float *d = t->gsum[i];
      const float *x = g->data;
      for (size_t j = 0; j < t->gbytes[i] / sizeof *d; j++) d[j] = d[j] + x[j];
    }
  }
  t->window++;
  return AD_OK;
}

ad_status_t rt_trainer_apply(rt_trainer_t *t, int64_t step, double lr, int64_t seed) {
  if (t->window == 0)
    return ad_status_make(AD_STATUS_INTERNAL, "rt_trainer_apply: no accumulated gradient");
  rt_feed_t *gf = calloc(t->ngrads ? t->ngrads : 1, sizeof *gf);
  if (!gf) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  for (uint32_t i = 0; i < t->ngrads; i++) gf[i] = (rt_feed_t){t->gname[i], t->gsum[i], t->gbytes[i]};
  rt_feed_t sc[4] = {{"step", &step, sizeof step}, {"lr", &lr, sizeof lr},
                     {"seed", &seed, sizeof seed}, {"clip_max", &t->clip_max, sizeof t->clip_max}};
  ad_status_t st = run_program(t, t->aexec, t->ag, t->symvals, gf, t->ngrads, sc, 4);
  free(gf);
  t->window = 0;
  if (st) return st;
  const ir_tensor_t *gn = rt_exec_output(t->aexec, "grad_norm");
  t->grad_norm = gn ? scalar_of(gn) : NAN;
  return AD_OK;
}

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
  rt_exec_free(t->gexec);
  rt_exec_free(t->aexec);
  for (uint32_t i = 0; i < t->ngrads; i++) free(t->gsum[i]);
  free(t->gname);
  free(t->gsum);
  free(t->gbytes);
  free(t->gdt);
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
