/* fit: the plan's "train_step" program over the train split (or, for models without a data
 * class such as the tiny transformer, one synthetic batch), then a checkpoint. */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "ir/philox.h"
#include "runtime/init.h"
#include "runtime/loader.h"
#include "runtime/run_internal.h"
#include "runtime/safetensors.h"
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

/* ---- signals: finish the step, checkpoint, exit 130 / 143 ---------------------------------- */
static volatile sig_atomic_t g_signal;
static void on_signal(int sig) { g_signal = sig; }

typedef struct saved_handlers {
  struct sigaction intr, term;
} saved_handlers_t;

static void install_handlers(saved_handlers_t *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  g_signal = 0;
  sigaction(SIGINT, &sa, &old->intr);
  sigaction(SIGTERM, &sa, &old->term);
}

static void restore_handlers(const saved_handlers_t *old) {
  sigaction(SIGINT, &old->intr, NULL);
  sigaction(SIGTERM, &old->term, NULL);
}

/* ---- training checkpoints -------------------------------------------------------------------- */
/* Where the run is: what a resumed run needs to continue bit for bit. The data order of epoch e
 * is a pure function of (seed, e) and dropout of (seed, step), so (step, epoch, batches done in
 * the epoch) plus the parameters, BatchNorm buffers and AdamW moments are the whole state. */
typedef struct fit_pos {
  int64_t step, epoch, batch; /* optimizer steps done; current epoch; its batches done */
} fit_pos_t;

static ad_status_t save_training(rt_ctx_t *c, const char *path, const fit_pos_t *pos,
                                 const char *policy_json) {
  char *zs = c->z.k ? rt_zscore_to_json(&c->z) : NULL;
  json_t *o = json_object();
  json_object_set_new(o, "global_step", json_integer(pos->step));
  json_object_set_new(o, "epoch", json_integer(pos->epoch));
  json_object_set_new(o, "batch_in_epoch", json_integer(pos->batch));
  json_object_set_new(o, "seed", json_integer(c->job.seed));
  if (policy_json) {
    json_t *p = json_loads(policy_json, 0, NULL);
    if (p) json_object_set_new(o, "checkpoint_callback", p);
  }
  char *ts = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  char stepbuf[32];
  snprintf(stepbuf, sizeof stepbuf, "%lld", (long long)pos->step);
  rt_st_kv_t meta[4] = {{"format", "pt"}, {"aidomm.global_step", stepbuf},
                        {"aidomm.train_state", ts}, {"aidomm.label_zscore", zs}};
  ad_status_t st = ts ? rt_weights_save_training_checkpoint(c->state, path, meta, zs ? 4 : 3)
                      : ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  free(ts);
  free(zs);
  return st;
}

/* With --ckpt_path on fit: the optimizer state and the position when the file is a training
 * checkpoint of this plan (Lightning's resume), unless reset_optimizer_states. */
static ad_status_t resume_from(rt_ctx_t *c, fit_pos_t *pos, char **policy_json) {
  memset(pos, 0, sizeof *pos);
  *policy_json = NULL;
  const char *path = c->job.ckpt_path;
  if (!path || !path[0]) return AD_OK;
  rt_st_file_t *f = NULL;
  AD_RETURN_IF_ERROR(rt_st_open(path, &f));
  const char *ts = rt_st_metadata(f, "aidomm.train_state");
  ad_status_t st = AD_OK;
  if (ts) {
    json_error_t e;
    json_t *o = json_loads(ts, 0, &e);
    json_t *gs = o ? json_object_get(o, "global_step") : NULL;
    json_t *ep = o ? json_object_get(o, "epoch") : NULL;
    json_t *bi = o ? json_object_get(o, "batch_in_epoch") : NULL;
    if (!json_is_integer(gs) || !json_is_integer(ep) || !json_is_integer(bi) ||
        json_integer_value(gs) < 0 || json_integer_value(ep) < 0 || json_integer_value(bi) < 0) {
      st = ad_status_make(AD_STATUS_DATA_LOSS, "%s: metadata aidomm.train_state is malformed",
                          path);
    } else {
      pos->step = json_integer_value(gs);
      pos->epoch = json_integer_value(ep);
      pos->batch = json_integer_value(bi);
      json_t *cp = json_object_get(o, "checkpoint_callback");
      if (cp) *policy_json = json_dumps(cp, JSON_COMPACT | JSON_SORT_KEYS);
    }
    json_decref(o);
  }
  rt_st_close(f);
  if (st || !ts) return st;
  if (!c->job.reset_optimizer_states)
    AD_RETURN_IF_ERROR(rt_weights_load_checkpoint_ex(c->state, path, c->job.strict_loading, true,
                                                     NULL));
  AD_RETURN_IF_ERROR(rt_mkdirs(c->out_dir));
  AD_RETURN_IF_ERROR(rt_metrics_csv_truncate_after(c, pos->step));
  fprintf(c->out, "fit: resuming from %s at step %lld (epoch %lld, batch %lld)%s\n", path,
          (long long)pos->step, (long long)pos->epoch, (long long)pos->batch,
          c->job.reset_optimizer_states ? " with a fresh optimizer" : "");
  return AD_OK;
}

/* Lightning's _should_check_val_fx for an integer or fractional val_check_interval. */
static bool val_due(const fe_job_t *j, int64_t nb, int64_t epoch, int64_t batch_idx,
                    int64_t total_batch_idx) {
  if (j->check_val_every_n_epoch > 0 && (epoch + 1) % j->check_val_every_n_epoch != 0)
    return false;
  int64_t every = j->val_check_interval > 0
                      ? j->val_check_interval
                      : (int64_t)((double)nb * (j->val_check_fraction > 0 ? j->val_check_fraction : 1.0));
  if (every < 1) every = 1;
  int64_t it = j->check_val_every_n_epoch > 0 ? batch_idx : total_batch_idx;
  return (it + 1) % every == 0;
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
  fit_pos_t pos = {0, 0, 0};
  char *policy_json = NULL;
  if (!st) st = resume_from(c, &pos, &policy_json);
  free(policy_json); /* ModelCheckpoint bookkeeping: see ckpt_policy when wired */
  if (!st) st = rt_mkdirs(c->out_dir);
  /* a fresh run's metrics replace the rows an earlier (or killed) run logged */
  if (!st && pos.step == 0) st = rt_metrics_csv_truncate_after(c, 0);
  ad_buf_t last = {0};
  ad_buf_printf(&last, "%s/last.safetensors", c->out_dir);
  double t0 = rt_now_s();
  if (!st)
    fprintf(c->out, "fit: train split %lld rows, %lld batches of %lld per epoch, %lld steps, "
                    "lr %g%s (warmup %lld of T = %lld), clip %g, seed %lld\n",
            (long long)n, (long long)nb, (long long)j->batch_size, (long long)max_steps, lr,
            j->has_scheduler ? " cosine" : " constant", (long long)warmup, (long long)total,
            j->gradient_clip_val, (long long)j->seed);
  saved_handlers_t old;
  install_handlers(&old);
  rt_progress_t pr;
  rt_progress_start(&pr, c->out, c->o ? c->o->progress : -1, "fit", max_steps);
  pr.done = pos.step;
  bool stop = false;
  for (int64_t e = pos.epoch; !st && !stop && e < epochs && pos.step < max_steps; e++) {
    if (j->data_shuffle) shuffle(order, n, j->seed, e);
    else for (int64_t i = 0; i < n; i++) order[i] = i;
    int64_t skip = e == pos.epoch ? pos.batch : 0; /* resumed mid-epoch */
    pos.epoch = e;
    pos.batch = skip;
    if (skip >= nb) continue;
    rt_loader_t *ld = NULL;
    rt_loader_options_t lo = {.g = g, .job = j, .ds = ds, .zscore = c->z.k ? &c->z : NULL,
                              .order = order + skip * j->batch_size,
                              .nrows = rows_per_epoch - skip * j->batch_size,
                              .batch_size = j->batch_size};
    st = rt_loader_create(&lo, &ld);
    const rt_data_batch_t *b = NULL;
    while (!st && pos.step < max_steps && !(st = rt_loader_next(ld, &b)) && b) {
      double loss = 0;
      double lr_k = j->has_scheduler ? rt_cosine_warmup_lr(lr, pos.step + 1, total, warmup) : lr;
      st = rt_trainer_step(tr, &b->feeds, pos.step + 1, lr_k, j->seed, &loss);
      if (st) break;
      if (!isfinite(loss)) {
        /* the state already holds this step's update: nothing is saved over good work */
        st = ad_status_make(AD_STATUS_INTERNAL,
                            "the loss (output 'loss' of train_step) is %g at step %lld (epoch "
                            "%lld, batch %lld); stopping without saving. The last checkpoint is "
                            "%s",
                            loss, (long long)pos.step + 1, (long long)e, (long long)pos.batch,
                            (const char *)last.data);
        break;
      }
      pos.step++;
      pos.batch++;
      char extra[64];
      snprintf(extra, sizeof extra, "epoch %lld loss %.4e", (long long)e, loss);
      rt_progress_step(&pr, pos.step, extra);
      if (j->log_every_n_steps > 0 && pos.step % j->log_every_n_steps == 0) {
        const char *names[3] = {"train_loss", "lr-AdamW", "grad_norm"};
        double vals[3] = {loss, lr_k, rt_trainer_grad_norm(tr)};
        st = rt_metrics_csv_append(c, "train", e, pos.step, names, vals, 3);
      }
      if (!st && val_due(j, nb, e, pos.batch - 1, e * nb + pos.batch - 1)) {
        rt_metric_value_t *named = NULL;
        size_t nn = 0;
        st = rt_evaluate_ex(c, PLAN_JOB_VALIDATE, pos.step, e, &named, &nn);
        free(named);
      }
      if (!st && j->has_checkpoint && j->ckpt_every_n_train_steps > 0 &&
          pos.step % j->ckpt_every_n_train_steps == 0)
        st = save_training(c, (const char *)last.data, &pos, NULL);
      if (!st && g_signal) {
        stop = true;
        break;
      }
    }
    rt_loader_free(ld);
    if (!st && !stop && pos.batch >= nb) { /* epoch done: the next starts at its first batch */
      pos.epoch = e + 1;
      pos.batch = 0;
    }
  }
  rt_progress_end(&pr);
  if (!st) {
    st = save_training(c, (const char *)last.data, &pos, NULL);
    if (!st)
      fprintf(c->out, "fit: %lld steps (%.2f s this run); checkpoint %s\n", (long long)pos.step,
              rt_now_s() - t0, (const char *)last.data);
  }
  if (!st && stop) {
    int sig = g_signal;
    st = ad_status_make(sig == SIGTERM ? AD_STATUS_TERMINATED : AD_STATUS_INTERRUPTED,
                        "stopped by %s after step %lld; resume with --ckpt_path %s",
                        sig == SIGTERM ? "SIGTERM" : "SIGINT", (long long)pos.step,
                        (const char *)last.data);
  }
  restore_handlers(&old);
  ad_buf_free(&last);
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
