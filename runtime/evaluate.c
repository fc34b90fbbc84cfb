/* validate / test / predict: the plan's "eval" program (dropout off, BatchNorm on running
 * statistics) over a split, as Lightning's validate/test/predict loops run the peer's
 * validation_step / test_step / predict_step:
 *
 *   validate  the validation split; metrics val_*        (val_loss, val_pearson, ...)
 *   test      the test split; metrics test_* incl. per-column test_spearman_i ...
 *   predict   the test split (the peer's predict dataloader is the test split); predictions only
 *
 * Outputs in the run's output folder: metrics.csv rows, and <stage>_predictions.tsv for test and
 * predict (transcript_id, then one column per label, in z-scored space as the peer's
 * predictions, or mapped back to log2(1e-4 + TPM) with predictions_log2tpm). The TSV is written
 * to a temporary file and renamed when complete. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/loader.h"
#include "runtime/metrics.h"
#include "runtime/run_internal.h"
#include "support/buf.h"

typedef struct pred_writer {
  FILE *f;
  char *path, *tmp;
} pred_writer_t;

static ad_status_t writer_open(pred_writer_t *w, const rt_ctx_t *c, const char *stage,
                               const rt_dataset_t *ds) {
  memset(w, 0, sizeof *w);
  ad_buf_t p = {0}, t = {0};
  ad_buf_printf(&p, "%s/%s_predictions.tsv", c->out_dir, stage);
  ad_buf_printf(&t, "%s/.%s_predictions.tsv.tmp.%ld", c->out_dir, stage, (long)getpid());
  w->path = (char *)p.data;
  w->tmp = (char *)t.data;
  w->f = fopen(w->tmp, "w");
  if (!w->f)
    return ad_status_make(AD_STATUS_IO, "cannot create '%s': %s", w->tmp, strerror(errno));
  fputs("transcript_id", w->f);
  (void)ds;
  for (uint32_t k = 0; k < c->job.n_y; k++) fprintf(w->f, "\t%s", c->job.y_cols[k]);
  fputc('\n', w->f);
  return AD_OK;
}

static ad_status_t writer_close(pred_writer_t *w, bool commit) {
  ad_status_t st = AD_OK;
  if (w->f) {
    bool bad = fflush(w->f) != 0 || fsync(fileno(w->f)) != 0;
    bad |= fclose(w->f) != 0;
    if (commit && bad) st = ad_status_make(AD_STATUS_IO, "cannot write '%s'", w->tmp);
    if (commit && !st && rename(w->tmp, w->path) != 0)
      st = ad_status_make(AD_STATUS_IO, "cannot rename '%s' to '%s': %s", w->tmp, w->path,
                          strerror(errno));
    if (!commit || st) unlink(w->tmp);
  }
  free(w->path);
  free(w->tmp);
  memset(w, 0, sizeof *w);
  return st;
}

/* One row: the transcript id (or the split row number when the file has no such column). */
static void writer_row(pred_writer_t *w, const rt_ctx_t *c, const rt_dataset_t *ds, int64_t row,
                       const double *pred, size_t k, bool f64, rt_tsv_row_t *scratch) {
  int64_t field = rt_dataset_id_field(ds, row);
  bool wrote = false;
  if (field >= 0) {
    const rt_tsv_index_t *idx;
    int64_t local;
    rt_dataset_locate(ds, row, &idx, &local);
    if (!rt_tsv_read_row(idx, local, scratch) && (size_t)field < scratch->ncols) {
      fwrite(scratch->field[field], 1, scratch->field_len[field], w->f);
      wrote = true;
    }
  }
  if (!wrote) fprintf(w->f, "%lld", (long long)row);
  for (size_t j = 0; j < k; j++) {
    double v = pred[j];
    if (c->o && c->o->predictions_log2tpm && c->z.k) v = v * c->z.std[j] + c->z.mean[j];
    fprintf(w->f, f64 ? "\t%.17g" : "\t%.9g", v);
  }
  fputc('\n', w->f);
}

static void print_table(FILE *out, const char *stage, int64_t n, double loss, const double *avg,
                        const double *per_col, int64_t k, double secs) {
  fprintf(out, "\n%s: %lld rows in %.2f s\n", stage, (long long)n, secs);
  fprintf(out, "  %-10s %12s %12s %12s\n", "metric", "average", "min col", "max col");
  fprintf(out, "  %-10s %12.6f\n", "loss", loss);
  for (int m = 0; m < RT_METRICS_KIND_COUNT; m++) {
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t j = 0; j < k; j++) {
      double v = per_col[(size_t)m * (size_t)k + (size_t)j];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    fprintf(out, "  %-10s %12.6f %12.6f %12.6f\n", rt_metrics_kind_name((rt_metrics_kind_t)m),
            avg[m], lo, hi);
  }
  if (k > 1) {
    fprintf(out, "  spearman per column:");
    for (int64_t j = 0; j < k; j++)
      fprintf(out, "%s%6.3f", j % 10 == 0 ? "\n   " : " ",
              per_col[(size_t)RT_METRICS_SPEARMAN * (size_t)k + (size_t)j]);
    fputc('\n', out);
  }
}

ad_status_t rt_evaluate(rt_ctx_t *c) { return rt_evaluate_ex(c, c->kind, 0, 0, NULL, NULL); }

ad_status_t rt_evaluate_ex(rt_ctx_t *c, plan_job_kind_t kind, int64_t step, int64_t epoch,
                           rt_metric_value_t **named_out, size_t *nnamed_out) {
  const plan_t *p = c->plan;
  if (named_out) *named_out = NULL;
  if (nnamed_out) *nnamed_out = 0;
  bool in_fit = c->kind == PLAN_JOB_FIT;
  const char *stage = kind == PLAN_JOB_VALIDATE ? "val" : kind == PLAN_JOB_TEST ? "test" : "predict";
  rt_split_kind_t split = kind == PLAN_JOB_VALIDATE ? RT_SPLIT_VALID : RT_SPLIT_TEST;
  const ir_graph_t *g = ir_module_find_program(p->module, "eval");
  const plan_memplan_t *pm = plan_find_memplan(p, "eval");
  if (!g || !pm)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s has no 'eval' program", c->plan_name);
  pass_memplan_t mp = {pm->nvalues, pm->offset, pm->size, pm->peak_bytes, pm->total_bytes};
  rt_dataset_t *ds = NULL;
  rt_exec_t *ex = NULL;
  rt_threadpool_t *pool = NULL;
  rt_loader_t *ld = NULL;
  rt_metrics_t *met = NULL;
  pred_writer_t w;
  memset(&w, 0, sizeof w);
  rt_tsv_row_t scratch;
  memset(&scratch, 0, sizeof scratch);
  double *pbuf = NULL;
  int li = kind == PLAN_JOB_VALIDATE ? 1 : kind == PLAN_JOB_TEST ? 2 : 3;
  double limit = li == 1 ? c->job.limit_val_batches
                 : li == 2 ? c->job.limit_test_batches : c->job.limit_predict_batches;

  c->dopt.labels_optional = kind == PLAN_JOB_PREDICT;
  ad_status_t st = rt_ctx_open_split(c, split, &ds);
  c->dopt.labels_optional = false;
  if (!st) st = rt_exec_create(g, &mp, &ex);
  if (!st) st = rt_threadpool_create(c->o ? c->o->nthreads : 0, &pool);
  if (!st) {
    int64_t bs = c->job.batch_size;
    int64_t nb = (rt_dataset_rows(ds) + bs - 1) / bs;
    int64_t lim = rt_limit_batches(limit, c->job.limit_is_count[li], nb);
    int64_t rows = lim * bs < rt_dataset_rows(ds) ? lim * bs : rt_dataset_rows(ds);
    rt_loader_options_t lo = {.g = g, .job = &c->job, .ds = ds, .zscore = c->z.k ? &c->z : NULL,
                              .nrows = rows, .batch_size = bs};
    st = rt_loader_create(&lo, &ld);
  }
  size_t k = ds ? rt_dataset_num_labels(ds) : 0;
  if (!st) st = rt_metrics_create((int64_t)k, &met);
  if (!st) st = rt_mkdirs(c->out_dir);
  if (!st && kind != PLAN_JOB_VALIDATE && !in_fit) st = writer_open(&w, c, stage, ds);
  if (!st) {
    pbuf = malloc((size_t)c->job.batch_size * k * sizeof *pbuf);
    if (!pbuf) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  double loss_sum = 0, t0 = rt_now_s();
  int64_t nrows = 0;
  if (!st && !in_fit) {
    fprintf(c->out, "%s: %s split, %lld rows in %lld batches of %lld, %d thread(s), labels %s\n",
            stage, rt_split_name(split), (long long)rt_dataset_rows(ds),
            (long long)rt_loader_num_batches(ld), (long long)c->job.batch_size,
            rt_threadpool_size(pool),
            c->z.k ? (c->z_from_ckpt ? "z-scored (statistics from the checkpoint)"
                                     : "z-scored (train + validation statistics)")
                   : "as read");
  }
  if (!st) {
    rt_progress_t pr;
    rt_progress_start(&pr, c->out, in_fit ? 0 : c->o ? c->o->progress : -1, stage,
                      rt_loader_num_batches(ld));
    const rt_data_batch_t *b = NULL;
    bool f64 = false;
    while (!st && !(st = rt_loader_next(ld, &b)) && b) {
      st = rt_exec_run(ex, c->state, b->feeds.symvals, b->feeds.feeds, b->feeds.nfeeds,
                       rt_threadpool_parallel(pool));
      if (st) break;
      const ir_tensor_t *pt = rt_exec_output(ex, "pred");
      const ir_tensor_t *lt = rt_exec_output(ex, "loss");
      if (!pt || ir_tensor_numel(pt) != b->n * (int64_t)k) {
        st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "eval program has no [B, %zu] 'pred'", k);
        break;
      }
      f64 = pt->dtype == IR_DTYPE_F64;
      for (int64_t j = 0; j < b->n * (int64_t)k; j++)
        pbuf[j] = f64 ? ((const double *)pt->data)[j] : (double)((const float *)pt->data)[j];
      if (lt) {
        double l = lt->dtype == IR_DTYPE_F64 ? *(const double *)lt->data
                                             : (double)*(const float *)lt->data;
        loss_sum += l * (double)b->n; /* Lightning's epoch mean, weighted by batch size */
      }
      nrows += b->n;
      if (kind != PLAN_JOB_PREDICT) st = rt_metrics_update_f64(met, pbuf, b->labels, b->n);
      if (!st && w.f)
        for (int64_t r = 0; r < b->n; r++)
          writer_row(&w, c, ds, b->rows[r], pbuf + (size_t)r * k, k, f64, &scratch);
      rt_progress_step(&pr, b->index + 1, NULL);
    }
    rt_progress_end(&pr);
  }
  if (!st && kind != PLAN_JOB_PREDICT) {
    double *per = malloc((size_t)RT_METRICS_KIND_COUNT * (k ? k : 1) * sizeof *per);
    double avg[RT_METRICS_KIND_COUNT];
    rt_metric_value_t *named = NULL;
    size_t nnamed = 0;
    if (!per) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
    if (!st) st = rt_metrics_compute(met, per, avg);
    if (!st)
      st = rt_metrics_named(met, kind == PLAN_JOB_VALIDATE ? RT_METRICS_STAGE_VAL
                                                           : RT_METRICS_STAGE_TEST,
                            &named, &nnamed);
    if (!st) {
      double loss = nrows ? loss_sum / (double)nrows : NAN;
      if (in_fit)
        fprintf(c->out, "%s at step %lld: loss %.6f pearson %.4f spearman %.4f r2 %.4f (%.2f s)\n",
                stage, (long long)step, loss, avg[RT_METRICS_PEARSON], avg[RT_METRICS_SPEARMAN],
                avg[RT_METRICS_R2], rt_now_s() - t0);
      else
        print_table(c->out, stage, nrows, loss, avg, per, (int64_t)k, rt_now_s() - t0);
      const char **names = calloc(nnamed + 1, sizeof *names);
      double *vals = calloc(nnamed + 1, sizeof *vals);
      char lname[32];
      snprintf(lname, sizeof lname, "%s_loss", stage);
      if (!names || !vals) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
      if (!st) {
        names[0] = lname;
        vals[0] = loss;
        for (size_t i = 0; i < nnamed; i++) {
          names[i + 1] = named[i].name;
          vals[i + 1] = named[i].value;
        }
        st = rt_metrics_csv_append(c, stage, epoch, step, names, vals, nnamed + 1);
      }
      free(names);
      free(vals);
      if (!st && !in_fit) fprintf(c->out, "metrics: %s/metrics.csv\n", c->out_dir);
      /* the loss first, as named values for ModelCheckpoint's monitor */
      if (!st && named_out) {
        rt_metric_value_t *all = calloc(nnamed + 1, sizeof *all);
        if (!all) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
        else {
          snprintf(all[0].name, sizeof all[0].name, "%s", lname);
          all[0].value = loss;
          memcpy(all + 1, named, nnamed * sizeof *named);
          *named_out = all;
          *nnamed_out = nnamed + 1;
        }
      }
    }
    free(named);
    free(per);
  }
  if (w.f) {
    ad_status_t wst = writer_close(&w, !st);
    if (!st && !wst)
      fprintf(c->out, "predictions: %s/%s_predictions.tsv (%lld rows, %s)\n", c->out_dir, stage,
              (long long)nrows,
              c->o && c->o->predictions_log2tpm && c->z.k ? "log2(1e-4 + TPM)"
              : c->z.k                                    ? "z-scored"
                                                          : "as the labels");
    if (!st) st = wst;
    else ad_status_free(wst);
  }
  free(pbuf);
  rt_tsv_row_free(&scratch);
  rt_metrics_free(met);
  rt_loader_free(ld);
  rt_threadpool_free(pool);
  rt_exec_free(ex);
  rt_dataset_close(ds);
  return st;
}
