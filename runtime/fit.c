/* fit: the plan's "train_step" program over the train split (or, for models without a data
 * class such as the tiny transformer, one synthetic batch), then a checkpoint. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/philox.h"
#include "runtime/init.h"
#include "runtime/loader.h"
#include "runtime/run_internal.h"
#include "runtime/weights.h"
#include "support/buf.h"

static ad_status_t fit_synthetic(rt_ctx_t *c, rt_trainer_t *tr, int64_t steps, double lr) {
  rt_batch_t batch;
  memset(&batch, 0, sizeof batch);
  const ir_graph_t *g = ir_module_find_program(c->plan->module, "train_step");
  ad_status_t st = rt_batch_synthetic(g, (uint64_t)c->job.seed, &batch);
  if (!st) {
    fprintf(c->out, "fit: %lld steps on one synthetic batch, lr %g, seed %lld\n",
            (long long)steps, lr, (long long)c->job.seed);
    double t0 = rt_now_s(), first = 0;
    for (int64_t s = 1; s <= steps && !st; s++) {
      double loss = 0;
      st = rt_trainer_step(tr, &batch, s, lr, c->job.seed, &loss);
      if (st) break;
      if (!isfinite(loss)) {
        st = ad_status_make(AD_STATUS_INTERNAL, "loss is %g at step %lld", loss, (long long)s);
        break;
      }
      if (s == 1) first = loss;
      fprintf(c->out, "step %4lld  loss %.6e\n", (long long)s, loss);
      if (s == steps)
        fprintf(c->out, "fit: done in %.2f s; loss %.4e -> %.4e (%.1fx lower)\n", rt_now_s() - t0,
                first, loss, loss > 0 ? first / loss : INFINITY);
    }
  }
  rt_batch_free(&batch);
  return st;
}

/* A permutation of 0..n-1 for epoch `epoch`, a pure function of (seed, epoch). */
static void shuffle(int64_t *order, int64_t n, int64_t seed, int64_t epoch) {
  uint32_t key[2];
  char name[32];
  snprintf(name, sizeof name, "epoch%lld", (long long)epoch);
  rt_philox_key((uint64_t)seed, "shuffle", name, key);
  for (int64_t i = 0; i < n; i++) order[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    uint32_t ctr[4] = {(uint32_t)i, (uint32_t)((uint64_t)i >> 32), 0, 0}, w[4];
    ir_philox4x32_10(ctr, key, w);
    uint64_t r = ((uint64_t)w[0] << 32 | w[1]) % (uint64_t)(i + 1);
    int64_t t = order[i];
    order[i] = order[r];
    order[r] = t;
  }
}

static ad_status_t save_checkpoint(rt_ctx_t *c, const char *path, int64_t step) {
  char stepbuf[32];
  snprintf(stepbuf, sizeof stepbuf, "%lld", (long long)step);
  char *zs = c->z.k ? rt_zscore_to_json(&c->z) : NULL;
  rt_st_kv_t meta[3] = {{"format", "pt"}, {"aidomm.global_step", stepbuf},
                        {"aidomm.label_zscore", zs}};
  ad_status_t st = rt_weights_save_checkpoint(c->state, path, meta, zs ? 3 : 2);
  free(zs);
  return st;
}

static ad_status_t fit_data(rt_ctx_t *c, rt_trainer_t *tr, int64_t max_steps, double lr) {
  const fe_job_t *j = &c->job;
  rt_dataset_t *ds = NULL;
  AD_RETURN_IF_ERROR(rt_ctx_open_split(c, RT_SPLIT_TRAIN, &ds));
  int64_t n = rt_dataset_rows(ds);
  int64_t *order = malloc((size_t)(n ? n : 1) * sizeof *order);
  ad_status_t st = order ? AD_OK : ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  const ir_graph_t *g = ir_module_find_program(c->plan->module, "train_step");
  int64_t nb = n / j->batch_size + (n % j->batch_size != 0);
  /* limit_train_batches: a count, or a fraction of the epoch's batches (floor) */
  if (j->limit_is_count[0])
    nb = (int64_t)j->limit_train_batches < nb ? (int64_t)j->limit_train_batches : nb;
  else if (j->limit_train_batches < 1.0)
    nb = (int64_t)floor(j->limit_train_batches * (double)nb);
  int64_t rows_per_epoch = nb * j->batch_size < n ? nb * j->batch_size : n;
  /* Lightning's loop limits and estimated_stepping_batches (the scheduler's T): max_epochs
   * unset means 1000 epochs without max_steps, no epoch limit with it. */
  int64_t epochs = j->max_epochs > 0 ? j->max_epochs : (max_steps > 0 ? INT64_MAX : 1000);
  int64_t total = max_steps;
  if (j->max_epochs > 0 || max_steps <= 0) {
    int64_t acc = j->accumulate_grad_batches > 0 ? j->accumulate_grad_batches : 1;
    int64_t est = (nb + acc - 1) / acc * (epochs < INT64_MAX ? epochs : 1);
    total = max_steps > 0 && max_steps < est ? max_steps : est;
  }
  if (max_steps <= 0) max_steps = total;
  int64_t warmup = j->has_scheduler ? rt_warmup_steps(j->warmup_ratio, j->num_warmup_steps, total)
                                    : 0;
  rt_trainer_set_clip(tr, j->gradient_clip_val);
  int64_t step = 0;
  double t0 = rt_now_s();
  if (!st)
    fprintf(c->out, "fit: train split %lld rows, %lld batches of %lld per epoch, %lld steps, "
                    "lr %g%s (warmup %lld of T = %lld), clip %g, seed %lld\n",
            (long long)n, (long long)nb, (long long)j->batch_size, (long long)max_steps, lr,
            j->has_scheduler ? " cosine" : " constant", (long long)warmup, (long long)total,
            j->gradient_clip_val, (long long)j->seed);
  rt_progress_t pr;
  rt_progress_start(&pr, c->out, c->o ? c->o->progress : -1, "fit", max_steps);
  for (int64_t e = 0; !st && e < epochs && step < max_steps; e++) {
    if (j->data_shuffle) shuffle(order, n, j->seed, e);
    else for (int64_t i = 0; i < n; i++) order[i] = i;
    rt_loader_t *ld = NULL;
    rt_loader_options_t lo = {.g = g, .job = j, .ds = ds, .zscore = c->z.k ? &c->z : NULL,
                              .order = order, .nrows = rows_per_epoch,
                              .batch_size = j->batch_size};
    st = rt_loader_create(&lo, &ld);
    const rt_data_batch_t *b = NULL;
    while (!st && step < max_steps && !(st = rt_loader_next(ld, &b)) && b) {
      double loss = 0;
      double lr_k = j->has_scheduler ? rt_cosine_warmup_lr(lr, step + 1, total, warmup) : lr;
      st = rt_trainer_step(tr, &b->feeds, step + 1, lr_k, j->seed, &loss);
      if (st) break;
      step++;
      if (!isfinite(loss)) {
        st = ad_status_make(AD_STATUS_INTERNAL, "loss is %g at step %lld (epoch %lld)", loss,
                            (long long)step, (long long)e);
        break;
      }
      char extra[64];
      snprintf(extra, sizeof extra, "epoch %lld loss %.4e", (long long)e, loss);
      rt_progress_step(&pr, step, extra);
      if (j->log_every_n_steps > 0 && step % j->log_every_n_steps == 0) {
        const char *names[3] = {"train_loss", "lr-AdamW", "grad_norm"};
        double vals[3] = {loss, lr_k, rt_trainer_grad_norm(tr)};
        st = rt_metrics_csv_append(c, "train", e, step, names, vals, 3);
      }
    }
    rt_loader_free(ld);
  }
  rt_progress_end(&pr);
  if (!st) {
    st = rt_mkdirs(c->out_dir);
    ad_buf_t path = {0};
    ad_buf_printf(&path, "%s/last.safetensors", c->out_dir);
    if (!st) st = save_checkpoint(c, (const char *)path.data, step);
    if (!st)
      fprintf(c->out, "fit: %lld steps in %.2f s; checkpoint %s\n", (long long)step,
              rt_now_s() - t0, (const char *)path.data);
    ad_buf_free(&path);
  }
  free(order);
  rt_dataset_close(ds);
  return st;
}

ad_status_t rt_fit(rt_ctx_t *c) {
  int64_t steps = c->job.max_steps;
  double lr = c->job.lr;
  rt_trainer_t *tr = NULL;
  ad_status_t st = rt_trainer_create(c->plan, c->state, c->o ? c->o->nthreads : 0, &tr);
  if (!st) {
    if (c->job.nbackbones == 0)
      st = fit_synthetic(c, tr, steps > 0 ? steps : 10, lr);
    else
      st = fit_data(c, tr, steps, lr);
  }
  rt_trainer_free(tr);
  return st;
}
