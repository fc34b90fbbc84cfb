/* fit: the plan's "train_step" program over the train split (or, for models without a data
 * class such as the tiny transformer, one synthetic batch), then a checkpoint. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ir/philox.h"
#include "runtime/ckpt_policy.h"
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

/* "; parameter 'X' holds NaN/Inf after the update" for the first parameter or buffer slot (in
 * slot order) with a non-finite value, or "" when all are finite. */
static void first_nonfinite_slot(const rt_state_t *s, char *out, size_t cap) {
  out[0] = 0;
  const ir_module_t *m = s->module;
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *sl = &m->slots[i];
    if (!(sl->flags & (IR_SLOT_PARAM | IR_SLOT_BUFFER)) || (sl->flags & IR_SLOT_OPTIM)) continue;
    ir_dtype_t dt = sl->type.dtype;
    if (dt != IR_DTYPE_F32 && dt != IR_DTYPE_F64) continue;
    size_t n = s->bytes[i] / ir_dtype_size(dt);
    for (size_t k = 0; k < n; k++) {
      double v = dt == IR_DTYPE_F64 ? ((const double *)s->data[i])[k]
                                    : (double)((const float *)s->data[i])[k];
      if (!isfinite(v)) {
        snprintf(out, cap, "; %s '%s' holds %g (element %zu) after the update",
                 sl->flags & IR_SLOT_BUFFER ? "buffer" : "parameter", sl->name, v, k);
        return;
      }
    }
  }
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
  const char *ts = c->train_state, *path = c->job.ckpt_path;
  if (!ts) return AD_OK; /* no checkpoint, or a model checkpoint: a fresh run from its weights */
  json_error_t e;
  json_t *o = json_loads(ts, 0, &e);
  json_t *gs = o ? json_object_get(o, "global_step") : NULL;
  json_t *ep = o ? json_object_get(o, "epoch") : NULL;
  json_t *bi = o ? json_object_get(o, "batch_in_epoch") : NULL;
  if (!json_is_integer(gs) || !json_is_integer(ep) || !json_is_integer(bi) ||
      json_integer_value(gs) < 0 || json_integer_value(ep) < 0 || json_integer_value(bi) < 0) {
    json_decref(o);
    return ad_status_make(AD_STATUS_DATA_LOSS, "%s: metadata aidomm.train_state is malformed",
                          path);
  }
  pos->step = json_integer_value(gs);
  pos->epoch = json_integer_value(ep);
  pos->batch = json_integer_value(bi);
  json_t *cp = json_object_get(o, "checkpoint_callback");
  if (cp) *policy_json = json_dumps(cp, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  AD_RETURN_IF_ERROR(rt_mkdirs(c->out_dir));
  AD_RETURN_IF_ERROR(rt_metrics_csv_truncate_after(c, pos->step));
  fprintf(c->out, "fit: resuming from %s at step %lld (epoch %lld, batch %lld)%s\n", path,
          (long long)pos->step, (long long)pos->epoch, (long long)pos->batch,
          c->job.reset_optimizer_states ? " with a fresh optimizer" : "");
  return AD_OK;
}

/* ---- ModelCheckpoint (runtime/ckpt_policy.c decides, this file does the I/O) ---------------- */
typedef struct ckpt_cb {
  rt_ckpt_policy_t *p; /* NULL without a ModelCheckpoint callback */
  rt_ckpt_actions_t acts;
  char *dirpath;
} ckpt_cb_t;

static ad_status_t ckpt_cb_create(rt_ctx_t *c, bool has_val, const char *policy_json,
                                  ckpt_cb_t *cb) {
  memset(cb, 0, sizeof *cb);
  const fe_job_t *j = &c->job;
  if (!j->has_checkpoint) return AD_OK;
  ad_buf_t d = {0};
  /* Lightning's default dirpath: <log dir>/checkpoints */
  if (j->ckpt_dirpath && j->ckpt_dirpath[0]) ad_buf_printf(&d, "%s", j->ckpt_dirpath);
  else ad_buf_printf(&d, "%s/checkpoints", c->out_dir);
  while (d.len > 1 && d.data[d.len - 1] == '/') d.data[--d.len] = 0; /* os.path.join form */
  cb->dirpath = (char *)d.data;
  rt_ckpt_settings_t s = rt_ckpt_settings_default();
  s.dirpath = cb->dirpath;
  s.filename = j->ckpt_filename;
  s.monitor = j->ckpt_monitor;
  s.mode_max = j->ckpt_mode_max;
  s.save_top_k = j->ckpt_save_top_k;
  s.save_last = j->ckpt_save_last_link ? RT_CKPT_SAVE_LAST_LINK
                : j->ckpt_save_last    ? RT_CKPT_SAVE_LAST_ON
                                       : RT_CKPT_SAVE_LAST_OFF;
  s.every_n_train_steps = j->ckpt_every_n_train_steps;
  s.every_n_epochs = j->ckpt_every_n_epochs;
  s.save_on_train_epoch_end = j->ckpt_save_on_train_epoch_end_tri;
  s.resume_path = j->ckpt_path && j->ckpt_path[0] ? j->ckpt_path : NULL;
  s.check_val_every_n_epoch = j->check_val_every_n_epoch;
  s.val_check_interval_is_one =
      j->val_check_interval == 1 || (j->val_check_interval == 0 && j->val_check_fraction == 1.0);
  s.has_validation = has_val;
  AD_RETURN_IF_ERROR(rt_ckpt_policy_create(&s, &cb->p));
  if (policy_json) { /* a resumed run continues the bookkeeping exactly */
    rt_ckpt_restore_t how;
    AD_RETURN_IF_ERROR(rt_ckpt_policy_restore(cb->p, policy_json, false, &how));
  }
  return AD_OK;
}

static void ckpt_cb_free(ckpt_cb_t *cb) {
  rt_ckpt_policy_free(cb->p);
  rt_ckpt_actions_free(&cb->acts);
  free(cb->dirpath);
}

/* Carries out the actions of the last event: SAVE / REMOVE / LINK files, WARN lines. Every
 * saved file holds the policy state as it stands after the event. */
static ad_status_t ckpt_cb_apply(rt_ctx_t *c, ckpt_cb_t *cb, const fit_pos_t *pos, bool *saved) {
  if (!cb->p || !cb->acts.n) return AD_OK;
  char *js = NULL;
  ad_status_t st = rt_ckpt_policy_state_json(cb->p, &js);
  for (size_t i = 0; !st && i < cb->acts.n; i++) {
    const rt_ckpt_action_t *a = &cb->acts.items[i];
    switch (a->kind) {
      case RT_CKPT_SAVE: {
        char *slash = strrchr(a->path, '/');
        if (slash) {
          *slash = 0;
          st = rt_mkdirs(a->path);
          *slash = '/';
        }
        if (!st) st = save_training(c, a->path, pos, js);
        if (!st) fprintf(c->out, "checkpoint: %s (step %lld)\n", a->path, (long long)pos->step);
        if (saved) *saved = true;
        break;
      }
      case RT_CKPT_REMOVE:
        if (unlink(a->path) != 0 && errno != ENOENT)
          st = ad_status_make(AD_STATUS_IO, "cannot remove '%s': %s", a->path, strerror(errno));
        break;
      case RT_CKPT_LINK: {
        ad_buf_t tmp = {0};
        ad_buf_printf(&tmp, "%s.tmp-link", a->path);
        unlink((const char *)tmp.data);
        if (symlink(a->target, (const char *)tmp.data) != 0 ||
            rename((const char *)tmp.data, a->path) != 0)
          st = ad_status_make(AD_STATUS_IO, "cannot link '%s' to '%s': %s", a->path, a->target,
                              strerror(errno));
        ad_buf_free(&tmp);
        break;
      }
      case RT_CKPT_WARN:
        fprintf(stderr, "aidomm-rt: warning: %s\n", a->message);
        break;
    }
  }
  free(js);
  rt_ckpt_actions_clear(&cb->acts);
  return st;
}

/* aidomm's own resume point (<output dir>/last.safetensors), with the callback's bookkeeping. */
static ad_status_t save_resume_point(rt_ctx_t *c, const ckpt_cb_t *cb, const char *path,
                                     const fit_pos_t *pos) {
  char *js = NULL;
  ad_status_t st = cb->p ? rt_ckpt_policy_state_json(cb->p, &js) : AD_OK;
  if (!st) st = save_training(c, path, pos, js);
  free(js);
  return st;
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
  nb = rt_limit_batches(j->limit_train_batches, j->limit_is_count[0], nb);
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
  int64_t acc = j->accumulate_grad_batches > 1 ? j->accumulate_grad_batches : 1;
  if (!st && acc > 1) st = rt_trainer_enable_accumulation(tr);
  fit_pos_t pos = {0, 0, 0};
  char *policy_json = NULL;
  if (!st) st = resume_from(c, &pos, &policy_json);
  ckpt_cb_t cb;
  memset(&cb, 0, sizeof cb);
  bool has_val = j->limit_val_batches > 0;
  if (!st) st = ckpt_cb_create(c, has_val, policy_json, &cb);
  free(policy_json);
  if (!st && cb.p && pos.step == 0) { /* names already in the folder get -v1, -v2, ... */
    DIR *d = opendir(cb.dirpath);
    struct dirent *de;
    while (d && (de = readdir(d))) {
      size_t ln = strlen(de->d_name);
      if (ln > 12 && strcmp(de->d_name + ln - 12, ".safetensors") == 0) {
        ad_buf_t fp = {0};
        ad_buf_printf(&fp, "%s/%s", cb.dirpath, de->d_name);
        rt_ckpt_policy_note_existing(cb.p, (const char *)fp.data);
        ad_buf_free(&fp);
      }
    }
    if (d) closedir(d);
  }
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
      bool stepped = true;
      if (acc == 1) {
        st = rt_trainer_step(tr, &b->feeds, pos.step + 1, lr_k, j->seed, &loss);
      } else {
        /* Lightning: loss / k, gradients summed, the optimizer steps when (batch_idx + 1) % k
         * == 0 or on the epoch's last batch (a short window still divides by k); dropout of a
         * micro-batch is keyed by its global micro-batch number */
        st = rt_trainer_accumulate(tr, &b->feeds, e * nb + pos.batch + 1, j->seed,
                                   1.0 / (double)acc, &loss);
        stepped = (pos.batch + 1) % acc == 0 || pos.batch + 1 >= nb;
        if (!st && stepped && isfinite(loss)) st = rt_trainer_apply(tr, pos.step + 1, lr_k, j->seed);
      }
      if (st) break;
      if (!isfinite(loss)) {
        /* the state already holds this step's update: nothing is saved over good work */
        char where[320];
        first_nonfinite_slot(c->state, where, sizeof where);
        bool have_last = access((const char *)last.data, F_OK) == 0;
        st = ad_status_make(AD_STATUS_INTERNAL,
                            "the loss (output 'loss' of train_step) is %g at step %lld (epoch "
                            "%lld, batch %lld)%s; stopping without saving. %s%s",
                            loss, (long long)pos.step + 1, (long long)e, (long long)pos.batch,
                            where,
                            have_last ? "The last good checkpoint is "
                                      : "No checkpoint was written yet",
                            have_last ? (const char *)last.data : "");
        break;
      }
      if (stepped) pos.step++;
      pos.batch++;
      char extra[64];
      snprintf(extra, sizeof extra, "epoch %lld loss %.4e", (long long)e, loss);
      rt_progress_step(&pr, pos.step, extra);
      if (stepped && j->log_every_n_steps > 0 && pos.step % j->log_every_n_steps == 0) {
        const char *names[3] = {"train_loss", "lr-AdamW", "grad_norm"};
        double vals[3] = {loss, lr_k, rt_trainer_grad_norm(tr)};
        st = rt_metrics_csv_append(c, "train", e, pos.step, names, vals, 3);
      }
      bool saved = false;
      if (!st && cb.p) { /* ModelCheckpoint.on_train_batch_end runs before validation */
        rt_ckpt_metric_t m = {"train_loss", (double)(float)loss}; /* self.log keeps f32 */
        st = rt_ckpt_policy_on_train_batch_end(cb.p, pos.step, e, pos.batch >= nb, &m, 1,
                                               &cb.acts);
        if (!st) st = ckpt_cb_apply(c, &cb, &pos, &saved);
      }
      if (!st && has_val && val_due(j, nb, e, pos.batch - 1, e * nb + pos.batch - 1)) {
        rt_metric_value_t *named = NULL;
        size_t nn = 0;
        st = rt_evaluate_ex(c, PLAN_JOB_VALIDATE, pos.step, e, &named, &nn);
        if (!st && cb.p) {
          rt_ckpt_metric_t *ms = calloc(nn ? nn : 1, sizeof *ms);
          if (!ms) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
          for (size_t i = 0; !st && i < nn; i++)
            ms[i] = (rt_ckpt_metric_t){named[i].name, (double)(float)named[i].value};
          if (!st) st = rt_ckpt_policy_on_validation_end(cb.p, pos.step, e, ms, nn, &cb.acts);
          if (!st) st = ckpt_cb_apply(c, &cb, &pos, &saved);
          free(ms);
        }
        free(named);
      }
      /* aidomm's own resume point: with every ModelCheckpoint save, and every
       * every_n_train_steps even while the callback defers (no monitor value yet) */
      /* (only between optimizer steps: a window's partial gradient sums are not saved) */
      if (!st && stepped &&
          (saved || (j->has_checkpoint && j->ckpt_every_n_train_steps > 0 &&
                     pos.step % j->ckpt_every_n_train_steps == 0))) {
        st = save_resume_point(c, &cb, (const char *)last.data, &pos);
      }
      if (!st && stepped && g_signal) {
        stop = true;
        break;
      }
    }
    rt_loader_free(ld);
    /* The epoch ends with its last batch or at max_steps (Lightning runs the epoch-end hooks
     * then too); only a finished epoch moves the position to the next one. */
    if (!st && !stop && (pos.batch >= nb || pos.step >= max_steps)) {
      if (cb.p) {
        st = rt_ckpt_policy_on_train_epoch_end(cb.p, pos.step, e, &cb.acts);
        if (!st) st = ckpt_cb_apply(c, &cb, &pos, NULL);
      }
      if (pos.batch >= nb) {
        pos.epoch = e + 1;
        pos.batch = 0;
      }
    }
  }
  rt_progress_end(&pr);
  if (!st && !stop && cb.p) {
    st = rt_ckpt_policy_on_train_end(cb.p, pos.step, pos.epoch, &cb.acts);
    if (!st) st = ckpt_cb_apply(c, &cb, &pos, NULL);
  }
  if (!st) {
    st = save_resume_point(c, &cb, (const char *)last.data, &pos);
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
  ckpt_cb_free(&cb);
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
