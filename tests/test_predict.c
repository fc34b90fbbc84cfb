/* validate / test / predict end to end against the peer (issue 4 acceptance), on the tiny
 * 3-modality config tests/configs/predict/tiny3_concat.yaml and the fixtures of
 * tools/golden/predict_peer.py:
 *   - backbones from Hugging Face folders written by the peers' own save_pretrained
 *     (tests/golden/predict/models/<hub id>, found through $AIDOMM_MODELS), the adapter and LoRA
 *     weights from rest.safetensors (--ckpt_path, strict_loading false): aidomm's test
 *     predictions equal the peer's (f32, <= 1e-5 relative);
 *   - a checkpoint written by aidomm (aidomm_ckpt.safetensors, 6 fit steps) loaded into the
 *     peer's module reproduces aidomm's predictions (peer_on_aidomm_ckpt.safetensors);
 *   - z-score statistics equal the peer's; the bad-data cases fail with one clear error. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "plan/plan.h"
#include "runtime/dataset.h"
#include "runtime/safetensors.h"
#include "runtime/train.h"
#include "support/golden.h"
#include "support/peer_run.h"
#include "support/test_util.h"

#define K 30

static char g_plan[4096];

static const char *pred_dir(void) { return tu_source_path("tests/golden/predict"); }

static void compile_plan(void) {
  if (g_plan[0]) return;
  char bin[4096];
  tu_bin_path(bin, sizeof bin, "aidommc");
  snprintf(g_plan, sizeof g_plan, "%s", tu_tmpdir_path("tiny3.plan"));
  tu_proc_t r = tu_run_tool(bin, "compile", tu_source_path("tests/configs/predict/tiny3_concat.yaml"),
                            "-o", g_plan, NULL);
  ck_assert_msg(r.code == 0, "compile failed: %s", r.err);
  tu_proc_free(&r);
}

/* Runs a job of the plan in-process with the runtime overrides; output under tmp/<out>. */
static ad_status_t run_job(plan_job_kind_t job, const char *out, const char *data,
                           const char *ckpt, bool log2tpm, const char *extra_key,
                           const char *extra_val) {
  compile_plan();
  char models[4096], datab[4096], ckptb[4096];
  snprintf(models, sizeof models, "%s/models", pred_dir());
  setenv("AIDOMM_MODELS", models, 1);
  snprintf(datab, sizeof datab, "%s", data ? data : tu_source_path("tests/golden/predict/data"));
  snprintf(ckptb, sizeof ckptb, "%s",
           ckpt ? ckpt : tu_source_path("tests/golden/predict/rest.safetensors"));
  char *ov[8];
  int n = 0;
  ov[n++] = "--data.init_args.path";
  ov[n++] = datab;
  ov[n++] = "--ckpt_path";
  ov[n++] = ckptb;
  if (extra_key) {
    ov[n++] = (char *)extra_key;
    ov[n++] = (char *)extra_val;
  }
  char outdir[4096], idx[4096];
  snprintf(outdir, sizeof outdir, "%s", tu_tmpdir_path(out));
  snprintf(idx, sizeof idx, "%s", tu_tmpdir_path("index"));
  FILE *log = fopen(tu_tmpdir_path("run.log"), "w");
  rt_run_options_t o = {.nthreads = 2, .job = (int)job, .noverrides = n, .overrides = ov,
                        .plan_path = g_plan, .out = log, .output_dir = outdir,
                        .predictions_log2tpm = log2tpm, .progress = 0, .index_dir = idx};
  plan_t *p = NULL;
  ad_status_t st = plan_read(g_plan, &p);
  if (!st) st = rt_run_plan(p, &o);
  plan_free(p);
  fclose(log);
  return st;
}

/* A predictions TSV: transcript ids and [n, K] values. */
typedef struct preds {
  int64_t n;
  char ids[64][64];
  double v[64 * K];
} preds_t;

static void read_preds(const char *path, preds_t *p) {
  size_t len;
  char *text = tu_read_file(path, &len);
  memset(p, 0, sizeof *p);
  char *save = NULL;
  char *line = strtok_r(text, "\n", &save);
  ck_assert_ptr_nonnull(line);
  ck_assert_msg(strncmp(line, "transcript_id\tlabels_0\t", 23) == 0, "header: %s", line);
  while ((line = strtok_r(NULL, "\n", &save))) {
    ck_assert_int_lt(p->n, 64);
    char *s2 = NULL;
    char *f = strtok_r(line, "\t", &s2);
    snprintf(p->ids[p->n], sizeof p->ids[0], "%s", f);
    for (int k = 0; k < K; k++) {
      f = strtok_r(NULL, "\t", &s2);
      ck_assert_ptr_nonnull(f);
      p->v[p->n * K + k] = strtod(f, NULL);
    }
    ck_assert_ptr_null(strtok_r(NULL, "\t", &s2));
    p->n++;
  }
  free(text);
}

/* max|a - b| / max|b| of our predictions against a golden f32 [n, K] tensor. */
static double compare_golden(const preds_t *got, const char *file, const char *tensor) {
  rt_st_file_t *f = NULL;
  tu_ok(rt_st_open(tu_source_path(file), &f));
  const rt_st_tensor_t *t = rt_st_find(f, tensor);
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->dtype, RT_ST_F32);
  ck_assert_int_eq(t->shape[0], got->n);
  ck_assert_int_eq(t->shape[1], K);
  const float *w = (const float *)t->data;
  double num = 0, den = 0;
  for (int64_t i = 0; i < got->n * K; i++) {
    num = fmax(num, fabs(got->v[i] - (double)w[i]));
    den = fmax(den, fabs((double)w[i]));
  }
  rt_st_close(f);
  return num / den;
}

START_TEST(test_peer_predictions_from_hf_folders) {
  tu_ok(run_job(PLAN_JOB_TEST, "t1", NULL, NULL, false, NULL, NULL));
  preds_t p;
  read_preds(tu_tmpdir_path("t1/test_predictions.tsv"), &p);
  ck_assert_int_eq(p.n, 7);
  double e = compare_golden(&p, "tests/golden/predict/peer_predict.safetensors", "test_pred");
  printf("test predictions vs peer (HF folders + rest): rel error %.3g\n", e);
  ck_assert_msg(e <= 1e-5, "rel error %g", e);
  /* metrics land in the CSV with the peer's names */
  char *csv = tu_read_file(tu_tmpdir_path("t1/metrics.csv"), NULL);
  ck_assert_ptr_nonnull(strstr(csv, "stage,epoch,step,name,value\n"));
  ck_assert_ptr_nonnull(strstr(csv, "test,0,0,test_spearman,"));
  ck_assert_ptr_nonnull(strstr(csv, "test,0,0,test_r2_29,"));
  ck_assert_ptr_nonnull(strstr(csv, "test,0,0,test_loss,"));
  free(csv);
}
END_TEST

START_TEST(test_predict_job_and_log2tpm) {
  tu_ok(run_job(PLAN_JOB_PREDICT, "p1", NULL, NULL, false, NULL, NULL));
  tu_ok(run_job(PLAN_JOB_PREDICT, "p2", NULL, NULL, true, NULL, NULL));
  preds_t *z = malloc(sizeof *z), *l = malloc(sizeof *l);
  read_preds(tu_tmpdir_path("p1/predict_predictions.tsv"), z);
  read_preds(tu_tmpdir_path("p2/predict_predictions.tsv"), l);
  double e = compare_golden(z, "tests/golden/predict/peer_predict.safetensors", "test_pred");
  ck_assert_msg(e <= 1e-5, "predict rel error %g", e);
  /* log2(1e-4 + TPM) = z * std + mean with the peer's statistics */
  rt_st_file_t *f = NULL;
  tu_ok(rt_st_open(tu_source_path("tests/golden/predict/peer_predict.safetensors"), &f));
  const double *mean = (const double *)rt_st_find(f, "mean")->data;
  const double *std = (const double *)rt_st_find(f, "std")->data;
  for (int64_t i = 0; i < z->n; i++) {
    ck_assert_str_eq(z->ids[i], l->ids[i]);
    for (int k = 0; k < K; k++) {
      double want = z->v[i * K + k] * std[k] + mean[k];
      ck_assert_msg(fabs(l->v[i * K + k] - want) <= 1e-6 * (1 + fabs(want)), "%g vs %g",
                    l->v[i * K + k], want);
    }
  }
  rt_st_close(f);
  free(z);
  free(l);
}
END_TEST

START_TEST(test_zscore_matches_peer) {
  fe_job_t job;
  fe_config_t *c = pr_load_job("tests/configs/predict/tiny3_concat.yaml", &job);
  char data[4096];
  snprintf(data, sizeof data, "%s", tu_source_path("tests/golden/predict/data"));
  job.data_path = data;
  ck_assert_int_eq(job.n_y, K);
  ck_assert_int_eq(job.nbackbones, 3);
  ck_assert_str_eq(job.backbones[1].hub_id, "genbio-ai/AIDO.RNA-1.6B-CDS");
  ck_assert(job.backbones[2].pretrained);
  rt_dataset_options_t o = {.no_cache = true};
  rt_dataset_t *tr = NULL, *va = NULL;
  tu_ok(rt_dataset_open(&job, RT_SPLIT_TRAIN, &o, &tr));
  tu_ok(rt_dataset_open(&job, RT_SPLIT_VALID, &o, &va));
  ck_assert_int_eq(rt_dataset_num_files(tr), 2); /* train_0.tsv, train_1.tsv */
  ck_assert_int_eq(rt_dataset_rows(tr), 11);
  const rt_dataset_t *both[2] = {tr, va};
  rt_zscore_t z;
  tu_ok(rt_zscore_compute(both, 2, &z));
  rt_st_file_t *f = NULL;
  tu_ok(rt_st_open(tu_source_path("tests/golden/predict/peer_predict.safetensors"), &f));
  const double *mean = (const double *)rt_st_find(f, "mean")->data;
  const double *std = (const double *)rt_st_find(f, "std")->data;
  for (int k = 0; k < K; k++) {
    /* the peer sums a Fortran-ordered array pairwise: equal to rounding, not bit for bit */
    ck_assert_msg(fabs(z.mean[k] - mean[k]) <= 1e-12 * fabs(mean[k]) + 1e-14, "mean %d", k);
    ck_assert_msg(fabs(z.std[k] - std[k]) <= 1e-12 * std[k], "std %d", k);
  }
  /* round trip through the checkpoint metadata form */
  char *js = rt_zscore_to_json(&z);
  rt_zscore_t z2;
  tu_ok(rt_zscore_from_json(js, &z2));
  ck_assert_mem_eq(z.mean, z2.mean, K * sizeof(double));
  ck_assert_mem_eq(z.std, z2.std, K * sizeof(double));
  free(js);
  rt_zscore_free(&z);
  rt_zscore_free(&z2);
  rt_st_close(f);
  rt_dataset_close(tr);
  rt_dataset_close(va);
  fe_config_free(c);
}
END_TEST

/* train_split_files given as a list: every pattern, in the order given, each sorted by glob. */
START_TEST(test_split_pattern_list) {
  fe_config_t *c = NULL;
  char *ov[] = {"--data.init_args.train_split_files", "[train_1.tsv, train_0.tsv]"};
  tu_ok(fe_config_load(tu_source_path("tests/configs/predict/tiny3_concat.yaml"), 2, ov, &c));
  c->warn_stream = NULL;
  fe_job_t job;
  tu_ok(fe_config_job(c, &job));
  char data[4096];
  snprintf(data, sizeof data, "%s", tu_source_path("tests/golden/predict/data"));
  job.data_path = data;
  ck_assert_int_eq(job.nsplit_patterns[RT_SPLIT_TRAIN], 2);
  rt_dataset_options_t o = {.no_cache = true};
  rt_dataset_t *tr = NULL;
  tu_ok(rt_dataset_open(&job, RT_SPLIT_TRAIN, &o, &tr));
  ck_assert_int_eq(rt_dataset_num_files(tr), 2);
  ck_assert_ptr_nonnull(strstr(rt_tsv_path(rt_dataset_file(tr, 0)), "train_1.tsv"));
  ck_assert_int_eq(rt_dataset_rows(tr), 11);
  rt_dataset_close(tr);
  job.split_patterns[RT_SPLIT_TRAIN][1] = "train_9*.tsv";
  tu_expect_msg(rt_dataset_open(&job, RT_SPLIT_TRAIN, &o, &tr), "train split: no file in",
                "'train_9*.tsv'");
  fe_config_free(c);
}
END_TEST

START_TEST(test_aidomm_checkpoint_in_peer) {
  const char *gold = "tests/golden/predict/peer_on_aidomm_ckpt.safetensors";
  struct stat sb;
  ck_assert_msg(stat(tu_source_path(gold), &sb) == 0, "missing %s", gold);
  tu_ok(run_job(PLAN_JOB_TEST, "c1", NULL,
                tu_source_path("tests/golden/predict/aidomm_ckpt.safetensors"), false, NULL,
                NULL));
  preds_t p;
  read_preds(tu_tmpdir_path("c1/test_predictions.tsv"), &p);
  double e = compare_golden(&p, gold, "test_pred");
  printf("aidomm checkpoint: aidomm vs peer predictions rel error %.3g\n", e);
  ck_assert_msg(e <= 1e-5, "rel error %g", e);
}
END_TEST

static const char *data_variant(const char *name, const char *test_text);

/* The peer's predict stage does not require labels: a test.tsv without the label columns
 * predicts the same values. */
static char *drop_label_columns(void) {
  size_t len;
  char *t = tu_read_file(tu_source_path("tests/golden/predict/data/test.tsv"), &len);
  char *out = calloc(1, len + 1);
  for (char *line = t; *line;) {
    char *nl = strchr(line, '\n');
    size_t n = nl ? (size_t)(nl - line) : strlen(line);
    int field = 0;
    for (size_t i = 0, start = 0; i <= n; i++) {
      if (i == n || line[i] == '\t') {
        /* fields 2..31 are labels_0..labels_29 (after transcript_id, gene_id) */
        if (field < 2 || field > 31) {
          if (out[0] && out[strlen(out) - 1] != '\n') strcat(out, "\t");
          strncat(out, line + start, i - start);
        }
        field++;
        start = i + 1;
      }
    }
    strcat(out, "\n");
    line += n + (nl ? 1 : 0);
  }
  free(t);
  return out;
}

START_TEST(test_predict_without_labels) {
  char *t = drop_label_columns();
  ck_assert_ptr_null(strstr(t, "labels_0"));
  const char *dir = data_variant("unlabeled", t);
  free(t);
  tu_ok(run_job(PLAN_JOB_PREDICT, "u1", dir, NULL, false, NULL, NULL));
  preds_t *p = malloc(sizeof *p);
  read_preds(tu_tmpdir_path("u1/predict_predictions.tsv"), p);
  double e = compare_golden(p, "tests/golden/predict/peer_predict.safetensors", "test_pred");
  ck_assert_msg(e <= 1e-5, "unlabeled predict rel error %g", e);
  free(p);
  /* test, which needs labels, says which column is missing */
  tu_expect_msg(run_job(PLAN_JOB_TEST, "u2", dir, NULL, false, NULL, NULL), "labels_0", "test.tsv");
}
END_TEST

START_TEST(test_validate_job) {
  tu_ok(run_job(PLAN_JOB_VALIDATE, "v1", NULL, NULL, false, NULL, NULL));
  char *csv = tu_read_file(tu_tmpdir_path("v1/metrics.csv"), NULL);
  ck_assert_ptr_nonnull(strstr(csv, "val,0,0,val_loss,"));
  ck_assert_ptr_nonnull(strstr(csv, "val,0,0,val_pearson,"));
  ck_assert_ptr_null(strstr(csv, "val_spearman_0")); /* per-column only at test */
  free(csv);
  struct stat sb;
  ck_assert_int_ne(stat(tu_tmpdir_path("v1/val_predictions.tsv"), &sb), 0);
}
END_TEST

/* ---- bad input ------------------------------------------------------------------------------- */
/* A copy of the data folder with test.tsv replaced by `test_text`. */
static const char *data_variant(const char *name, const char *test_text) {
  static char dir[4096];
  snprintf(dir, sizeof dir, "%s", tu_tmpdir_path(name));
  mkdir(dir, 0777);
  const char *files[] = {"train_0.tsv", "train_1.tsv", "validation.tsv"};
  for (int i = 0; i < 3; i++) {
    char src[4096], dst[8300];
    snprintf(src, sizeof src, "tests/golden/predict/data/%s", files[i]);
    size_t len;
    char *t = tu_read_file(tu_source_path(src), &len);
    snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
    tu_write_file(dst, t, len);
    free(t);
  }
  if (test_text) {
    char dst[4200];
    snprintf(dst, sizeof dst, "%s/test.tsv", dir);
    tu_write_file(dst, test_text, strlen(test_text));
  }
  return dir;
}

/* test.tsv with line `line` (1-based, header = 1) passed through edit(). */
static char *edit_test(int line, void (*edit)(char *row, size_t cap)) {
  size_t len;
  char *t = tu_read_file(tu_source_path("tests/golden/predict/data/test.tsv"), &len);
  size_t cap = len + 4096;
  char *out = calloc(1, cap);
  int ln = 1;
  for (char *s = t; *s;) {
    char *nl = strchr(s, '\n');
    size_t n = nl ? (size_t)(nl - s) : strlen(s);
    char *row = calloc(1, n + 4096);
    memcpy(row, s, n);
    if (ln == line) edit(row, n + 4096);
    strcat(out, row);
    strcat(out, "\n");
    free(row);
    ln++;
    s += n + (nl ? 1 : 0);
  }
  free(t);
  return out;
}

static void drop_dna_base(char *row, size_t cap) {
  (void)cap;
  size_t n = strlen(row);
  row[n - 1] = 0; /* dna_seq is the last column */
}

static void nan_label(char *row, size_t cap) {
  char *tab = strchr(row, '\t');
  tab = strchr(tab + 1, '\t'); /* labels_0 starts after transcript_id and gene_id */
  char *end = strchr(tab + 1, '\t');
  char rest[8192];
  snprintf(rest, sizeof rest, "%s", end);
  snprintf(tab + 1, cap - (size_t)(tab + 1 - row), "nan%s", rest);
}

START_TEST(test_wrong_dna_length) {
  char *t = edit_test(3, drop_dna_base);
  const char *dir = data_variant("bad_dna", t);
  free(t);
  ad_status_t st = run_job(PLAN_JOB_TEST, "bd", dir, NULL, false, NULL, NULL);
  ck_assert_ptr_nonnull(st);
  const char *m = ad_status_message(st);
  ck_assert_msg(strstr(m, "test.tsv:3:") && strstr(m, "255 bases") && strstr(m, "256"), "%s", m);
  ck_assert_int_eq(ad_status_exit_code(st), 2);
  ad_status_free(st);
}
END_TEST

START_TEST(test_nan_label) {
  char *t = edit_test(4, nan_label);
  const char *dir = data_variant("bad_nan", t);
  free(t);
  ad_status_t st = run_job(PLAN_JOB_TEST, "bn", dir, NULL, false, NULL, NULL);
  ck_assert_ptr_nonnull(st);
  const char *m = ad_status_message(st);
  ck_assert_msg(strstr(m, "test.tsv:4:") && strstr(m, "labels_0"), "%s", m);
  ck_assert_int_eq(ad_status_exit_code(st), 2);
  ad_status_free(st);
}
END_TEST

START_TEST(test_missing_split_and_folder) {
  const char *dir = data_variant("no_test", NULL); /* no test.tsv */
  ad_status_t st = run_job(PLAN_JOB_TEST, "nt", dir, NULL, false, NULL, NULL);
  tu_expect_msg(st, "test split: no file in", "test.tsv");
  st = run_job(PLAN_JOB_TEST, "nf", "/nonexistent/aidomm-data", NULL, false, NULL, NULL);
  tu_expect_msg(st, "'/nonexistent/aidomm-data' is not a folder", "--data.init_args.path");
}
END_TEST

START_TEST(test_missing_models_folder) {
  compile_plan();
  setenv("AIDOMM_MODELS", tu_tmpdir_path("no_models"), 1);
  char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  setenv("HOME", tu_tmpdir_path("no_home"), 1);
  char data[4096];
  snprintf(data, sizeof data, "%s", tu_source_path("tests/golden/predict/data"));
  char *ov[] = {"--data.init_args.path", data};
  rt_run_options_t o = {.job = PLAN_JOB_TEST, .noverrides = 2, .overrides = ov,
                        .out = fopen("/dev/null", "w"), .progress = 0};
  plan_t *p = NULL;
  tu_ok(plan_read(g_plan, &p));
  ad_status_t st = rt_run_plan(p, &o);
  fclose(o.out);
  plan_free(p);
  if (home) setenv("HOME", home, 1);
  free(home);
  ck_assert_ptr_nonnull(st);
  const char *m = ad_status_message(st);
  ck_assert_msg(strstr(m, "EleutherAI/enformer-official-rough") && strstr(m, "config.json") &&
                    strstr(m, "model.safetensors") && strstr(m, "no_models"),
                "%s", m);
  ad_status_free(st);
}
END_TEST

START_TEST(test_runtime_key_checks) {
  /* a compile-time key names aidommc; a batch size above the plan's bound names the recompile */
  ad_status_t st = run_job(PLAN_JOB_TEST, "k1", NULL, NULL, false,
                           "--model.init_args.num_outputs", "3");
  tu_expect_msg(st, "changes the compiled graph", "aidommc compile");
  st = run_job(PLAN_JOB_TEST, "k2", NULL, NULL, false, "--data.init_args.batch_size", "64");
  tu_expect_msg(st, "exceeds the plan's batch bound", "--data.batch_size 64");
  /* a smaller batch gives the same predictions */
  tu_ok(run_job(PLAN_JOB_TEST, "k3", NULL, NULL, false, "--data.init_args.batch_size", "2"));
  preds_t p;
  read_preds(tu_tmpdir_path("k3/test_predictions.tsv"), &p);
  double e = compare_golden(&p, "tests/golden/predict/peer_predict.safetensors", "test_pred");
  ck_assert_msg(e <= 1e-5, "batch 2: rel error %g", e);
}
END_TEST

static void setup(void) { tu_tmpdir_create("predict"); }
static void teardown(void) {}

int main(void) {
  Suite *s = suite_create("predict");
  TCase *tc = tcase_create("predict");
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_peer_predictions_from_hf_folders);
  tcase_add_test(tc, test_predict_job_and_log2tpm);
  tcase_add_test(tc, test_zscore_matches_peer);
  tcase_add_test(tc, test_split_pattern_list);
  tcase_add_test(tc, test_aidomm_checkpoint_in_peer);
  tcase_add_test(tc, test_predict_without_labels);
  tcase_add_test(tc, test_validate_job);
  tcase_add_test(tc, test_wrong_dna_length);
  tcase_add_test(tc, test_nan_label);
  tcase_add_test(tc, test_missing_split_and_folder);
  tcase_add_test(tc, test_missing_models_folder);
  tcase_add_test(tc, test_runtime_key_checks);
  suite_add_tcase(s, tc);
  int rc = tu_run_suite(s);
  tu_tmpdir_remove();
  return rc;
}
