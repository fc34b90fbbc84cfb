/* rt_run_plan: resolves the job of a plan (its config + runtime overrides), builds the state
 * (initial values, pretrained backbone folders, --ckpt_path) and hands over to fit or
 * evaluation. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/run_internal.h"
#include "runtime/safetensors.h"
#include "runtime/weights.h"
#include "support/buf.h"

double rt_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- progress -------------------------------------------------------------------------------- */
void rt_progress_start(rt_progress_t *p, FILE *f, int mode, const char *what, int64_t total) {
  memset(p, 0, sizeof *p);
  p->f = f;
  p->what = what;
  p->total = total;
  p->t0 = p->last_draw = rt_now_s();
  p->tty = mode < 0 && isatty(fileno(f));
  p->enabled = mode != 0;
}

static void fmt_eta(char *s, size_t n, double sec) {
  if (!isfinite(sec) || sec < 0) snprintf(s, n, "?");
  else if (sec < 60) snprintf(s, n, "%.0fs", sec);
  else if (sec < 3600) snprintf(s, n, "%dm%02ds", (int)(sec / 60), (int)fmod(sec, 60));
  else snprintf(s, n, "%dh%02dm", (int)(sec / 3600), (int)fmod(sec / 60, 60));
}

void rt_progress_step(rt_progress_t *p, int64_t done, const char *extra) {
  p->done = done;
  if (!p->enabled) return;
  double now = rt_now_s(), el = now - p->t0;
  double rate = el > 0 ? (double)done / el : 0;
  char eta[32];
  fmt_eta(eta, sizeof eta, rate > 0 ? (double)(p->total - done) / rate : NAN);
  if (p->tty) {
    if (now - p->last_draw < 0.1 && done < p->total) return;
    p->last_draw = now;
    fprintf(p->f, "\r%s %lld/%lld  %.2f it/s  ETA %s%s%s\033[K", p->what, (long long)done,
            (long long)p->total, rate, eta, extra ? "  " : "", extra ? extra : "");
    fflush(p->f);
    return;
  }
  int64_t every = p->total >= 10 ? p->total / 10 : 1;
  if (done != p->total && done - p->last_line < every) return;
  p->last_line = done;
  fprintf(p->f, "%s %lld/%lld  %.2f it/s  ETA %s%s%s\n", p->what, (long long)done,
          (long long)p->total, rate, eta, extra ? "  " : "", extra ? extra : "");
  fflush(p->f);
}

void rt_progress_end(rt_progress_t *p) {
  if (p->enabled && p->tty) {
    fputc('\n', p->f);
    fflush(p->f);
  }
}

int64_t rt_limit_batches(double limit, bool is_count, int64_t nb) {
  int64_t n = is_count ? (int64_t)limit : (int64_t)floor(limit * (double)nb);
  return n < nb ? n : nb;
}

/* ---- output folder and metrics CSV ----------------------------------------------------------- */
ad_status_t rt_mkdirs(const char *path) {
  char *tmp = strdup(path);
  if (!tmp) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  for (char *s = tmp + 1;; s++) {
    if (*s == '/' || *s == 0) {
      char c = *s;
      *s = 0;
      if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
        ad_status_t st = ad_status_make(AD_STATUS_IO, "cannot create folder '%s': %s", tmp,
                                        strerror(errno));
        free(tmp);
        return st;
      }
      *s = c;
      if (!c) break;
    }
  }
  free(tmp);
  return AD_OK;
}

ad_status_t rt_metrics_csv_append(const rt_ctx_t *c, const char *stage, int64_t epoch,
                                  int64_t step, const char *const *names, const double *values,
                                  size_t n) {
  AD_RETURN_IF_ERROR(rt_mkdirs(c->out_dir));
  ad_buf_t path = {0};
  ad_buf_printf(&path, "%s/metrics.csv", c->out_dir);
  struct stat sb;
  bool fresh = stat((const char *)path.data, &sb) != 0 || sb.st_size == 0;
  FILE *f = fopen((const char *)path.data, "a");
  if (!f) {
    ad_status_t st = ad_status_make(AD_STATUS_IO, "cannot open '%s': %s",
                                    (const char *)path.data, strerror(errno));
    ad_buf_free(&path);
    return st;
  }
  if (fresh) fputs("stage,epoch,step,name,value\n", f);
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s,%lld,%lld,%s,%.17g\n", stage, (long long)epoch, (long long)step, names[i],
            values[i]);
  bool bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
  bad |= fclose(f) != 0;
  ad_status_t st = bad ? ad_status_make(AD_STATUS_IO, "cannot write '%s'", (const char *)path.data)
                       : AD_OK;
  ad_buf_free(&path);
  return st;
}

ad_status_t rt_metrics_csv_truncate_after(const rt_ctx_t *c, int64_t step) {
  ad_buf_t path = {0}, tmp = {0};
  ad_buf_printf(&path, "%s/metrics.csv", c->out_dir);
  ad_buf_printf(&tmp, "%s/.metrics.csv.tmp.%ld", c->out_dir, (long)getpid());
  FILE *in = fopen((const char *)path.data, "r");
  ad_status_t st = AD_OK;
  if (in) {
    FILE *out = fopen((const char *)tmp.data, "w");
    if (!out) {
      st = ad_status_make(AD_STATUS_IO, "cannot create '%s': %s", (const char *)tmp.data,
                          strerror(errno));
    } else {
      char *line = NULL;
      size_t cap = 0;
      ssize_t len;
      size_t kept = 0, dropped = 0;
      while ((len = getline(&line, &cap, in)) > 0) {
        /* stage,epoch,step,name,value: keep the header, evaluation rows and rows up to step */
        char *a = strchr(line, ','), *b = a ? strchr(a + 1, ',') : NULL;
        long long s = b ? strtoll(b + 1, NULL, 10) : 0;
        bool train_row = strncmp(line, "train,", 6) == 0 || strncmp(line, "val,", 4) == 0;
        if (train_row && s > step) {
          dropped++;
          continue;
        }
        fwrite(line, 1, (size_t)len, out);
        kept++;
      }
      free(line);
      bool bad = fflush(out) != 0 || fsync(fileno(out)) != 0;
      bad |= fclose(out) != 0;
      if (bad) st = ad_status_make(AD_STATUS_IO, "cannot write '%s'", (const char *)tmp.data);
      else if (rename((const char *)tmp.data, (const char *)path.data) != 0)
        st = ad_status_make(AD_STATUS_IO, "cannot replace '%s': %s", (const char *)path.data,
                            strerror(errno));
      if (st) unlink((const char *)tmp.data);
      else if (dropped)
        fprintf(c->out, "fit: metrics.csv: dropped %zu rows logged after step %lld by the "
                        "interrupted run\n", dropped, (long long)step);
      (void)kept;
    }
    fclose(in);
  }
  ad_buf_free(&path);
  ad_buf_free(&tmp);
  return st;
}

/* ---- job resolution -------------------------------------------------------------------------- */
static ad_status_t resolve_job(rt_ctx_t *c) {
  const rt_run_options_t *o = c->o;
  int pos0 = o && o->overrides_argpos > 0 ? o->overrides_argpos : 1;
  int nov = o ? o->noverrides : 0;
  int *pos = calloc((size_t)(nov ? nov : 1), sizeof *pos);
  if (!pos) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  for (int i = 0; i < nov; i++)
    pos[i] = o->override_argpos ? o->override_argpos[i] : pos0 + i;
  for (int i = 0; i < nov; i++) {
    const char *a = o->overrides[i];
    if (a[0] != '-' || a[1] != '-') continue; /* a value */
    ad_status_t kst = fe_key_check(a, FE_TOOL_RUNTIME, pos[i]);
    if (kst) {
      free(pos);
      return kst;
    }
  }
  ad_buf_t name = {0};
  ad_buf_printf(&name, "%s(config)", c->plan_name);
  ad_status_t st = fe_config_load_text((const char *)name.data, c->plan->config_yaml,
                                       c->plan->config_len, nov, nov ? o->overrides : NULL, pos,
                                       &c->cfg);
  free(pos);
  ad_buf_free(&name);
  if (st) return st;
  /* The compiler already printed the config's warnings; runtime keys are checked again. */
  c->cfg->warn_stream = NULL;
  AD_RETURN_IF_ERROR(fe_config_job(c->cfg, &c->job));
  c->kind = o && o->job >= 0 ? (plan_job_kind_t)o->job : c->plan->job.kind;
  return AD_OK;
}

static ad_status_t resolve_out_dir(rt_ctx_t *c) {
  ad_buf_t b = {0};
  if (c->o && c->o->output_dir) {
    ad_buf_printf(&b, "%s", c->o->output_dir);
  } else {
    const fe_job_t *j = &c->job;
    const char *root = j->default_root_dir && j->default_root_dir[0] ? j->default_root_dir : ".";
    if (j->logger_dir && j->logger_dir[0])
      ad_buf_printf(&b, "%s/%s", j->logger_dir, j->logger_name && j->logger_name[0]
                                                    ? j->logger_name : "lightning_logs");
    else
      ad_buf_printf(&b, "%s/%s", root, "lightning_logs");
  }
  c->out_dir = (char *)b.data;
  return c->out_dir ? AD_OK : ad_status_make(AD_STATUS_RESOURCE, "out of memory");
}

/* Pretrained folders of the backbones, then --ckpt_path, as the peer builds the task (loading
 * the hub weights) and then restores the checkpoint. */
static ad_status_t load_weights(rt_ctx_t *c) {
  const fe_job_t *j = &c->job;
  for (uint32_t i = 0; i < j->nbackbones; i++) {
    const fe_job_backbone_t *b = &j->backbones[i];
    if (!b->pretrained) continue;
    char *folder = NULL;
    ad_status_t st = rt_weights_find_hf_folder(b->hub_id, &folder);
    if (st)
      return ad_status_annotate(
          st, "%s (%s)%s", b->prefix, b->class_path,
          b->tokenizer == FE_TOKENIZER_ESM2
              ? " (the peer's ESM2 backbone always loads them)"
              : "; set from_scratch: true for random weights");
    rt_weights_report_t rep;
    memset(&rep, 0, sizeof rep);
    st = rt_weights_load_hf_folder(c->state, b->prefix, folder, NULL, &rep);
    if (!st)
      fprintf(c->out, "weights: %s <- %s (%zu tensors)\n", b->prefix, folder, rep.nloaded);
    rt_weights_report_free(&rep);
    free(folder);
    if (st) return st;
  }
  if (!j->ckpt_path || !j->ckpt_path[0]) return AD_OK;
  /* The metadata first (one read): the training state a fit resumes from, the label statistics
   * that win over recomputing them, and the seed check below. */
  AD_RETURN_IF_ERROR(rt_weights_refuse_pickle(j->ckpt_path));
  rt_st_file_t *f = NULL;
  AD_RETURN_IF_ERROR(rt_st_open(j->ckpt_path, &f));
  ad_status_t st = AD_OK;
  const char *ts = rt_st_metadata(f, "aidomm.train_state");
  if (ts && !(c->train_state = strdup(ts))) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  /* save_peft_only leaves frozen base weights out of the checkpoint; when they were random
   * (from_scratch) they come back only from the same seed_everything */
  json_t *o = ts ? json_loads(ts, 0, NULL) : NULL;
  json_t *sd = o ? json_object_get(o, "seed") : NULL;
  bool random_base = false;
  for (uint32_t i = 0; i < j->nbackbones; i++) random_base |= !j->backbones[i].pretrained;
  size_t nosave = 0;
  for (uint32_t i = 0; i < c->state->module->nslots; i++)
    nosave += (c->state->module->slots[i].flags & IR_SLOT_NOSAVE) != 0;
  if (json_is_integer(sd) && json_integer_value(sd) != j->seed && random_base && nosave)
    fprintf(stderr,
            "aidomm-rt: warning: %s was trained with seed_everything %lld but this run uses "
            "%lld; its %zu frozen slots left out by save_peft_only were random (from_scratch) "
            "and are re-drawn from this seed, so predictions differ: pass "
            "--seed_everything %lld\n",
            j->ckpt_path, (long long)json_integer_value(sd), (long long)j->seed, nosave,
            (long long)json_integer_value(sd));
  json_decref(o);
  const char *zs = rt_st_metadata(f, "aidomm.label_zscore");
  if (!st && zs) {
    st = rt_zscore_from_json(zs, &c->z);
    if (st) st = ad_status_annotate(st, "%s: metadata aidomm.label_zscore", j->ckpt_path);
    else c->z_from_ckpt = true;
  }
  rt_st_close(f);
  if (st) return st;
  /* a fit resuming from a training checkpoint takes the AdamW moments too (Lightning's resume),
   * unless reset_optimizer_states */
  bool optimizer = c->kind == PLAN_JOB_FIT && c->train_state && !j->reset_optimizer_states;
  rt_weights_report_t rep;
  memset(&rep, 0, sizeof rep);
  st = rt_weights_load_checkpoint_ex(c->state, j->ckpt_path, j->strict_loading, optimizer, &rep);
  if (!st) {
    fprintf(c->out, "weights: checkpoint %s (%zu tensors%s%s", j->ckpt_path, rep.nloaded,
            optimizer ? ", the optimizer state included" : "",
            j->strict_loading ? ", strict)\n" : "");
    if (!j->strict_loading)
      fprintf(c->out, ", non-strict: %zu missing kept their values, %zu unexpected ignored)\n",
              rep.nmissing, rep.nunexpected);
  }
  rt_weights_report_free(&rep);
  return st;
}

ad_status_t rt_ctx_open_split(rt_ctx_t *c, rt_split_kind_t split, rt_dataset_t **out) {
  *out = NULL;
  rt_dataset_t *ds = NULL;
  AD_RETURN_IF_ERROR(rt_dataset_open(&c->job, split, &c->dopt, &ds));
  ad_status_t st = AD_OK;
  if (c->job.data_normalize && c->z.k == 0) {
    /* the peer's statistics: train + validation */
    rt_dataset_t *tv[2] = {NULL, NULL};
    rt_dataset_options_t lab = c->dopt;
    lab.labels_optional = false; /* the statistics need labels */
    for (int s = 0; s < 2 && !st; s++)
      st = (rt_split_kind_t)s == split ? AD_OK
                                       : rt_dataset_open(&c->job, (rt_split_kind_t)s, &lab, &tv[s]);
    if (!st) {
      const rt_dataset_t *both[2] = {tv[0] ? tv[0] : ds, tv[1] ? tv[1] : ds};
      st = rt_zscore_compute(both, 2, &c->z);
    }
    if (st) st = ad_status_annotate(st, "label statistics (train + validation)");
    rt_dataset_close(tv[0]);
    rt_dataset_close(tv[1]);
  }
  if (!st && c->z.k && c->z.k != rt_dataset_num_labels(ds))
    st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                        "the label statistics have %zu columns, the data %zu", c->z.k,
                        rt_dataset_num_labels(ds));
  if (st) {
    rt_dataset_close(ds);
    return st;
  }
  *out = ds;
  return AD_OK;
}

ad_status_t rt_run_plan(const plan_t *p, const rt_run_options_t *o) {
  rt_ctx_t c;
  memset(&c, 0, sizeof c);
  c.plan = p;
  c.o = o;
  c.out = o && o->out ? o->out : stdout;
  c.plan_name = o && o->plan_path ? o->plan_path : "plan";
  c.dopt.cache_dir = o ? o->index_dir : NULL;
  ad_status_t st = resolve_job(&c);
  if (!st) st = resolve_out_dir(&c);
  if (!st && c.dopt.cache_dir) st = rt_mkdirs(c.dopt.cache_dir);
  if (!st) st = rt_state_create(p->module, &c.state);
  if (!st) st = rt_state_init(c.state, (uint64_t)c.job.seed);
  if (!st) st = load_weights(&c);
  if (!st) st = c.kind == PLAN_JOB_FIT ? rt_fit(&c) : rt_evaluate(&c);
  rt_state_free(c.state);
  rt_zscore_free(&c.z);
  free(c.train_state);
  free(c.out_dir);
  fe_config_free(c.cfg);
  return st;
}
