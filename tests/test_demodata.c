/* The demo-data generator: every file indexes with the TSV reader selecting the 30 labels and
 * the three sequence columns; the header is exact; a realistic share of labels sits at
 * log2(1e-4); the same options give identical bytes and another seed different ones;
 * shuffle_labels keeps each split's label rows (as a multiset) and the sequences; the planted
 * latents read back from the sequences match, and the ideal predictor from both latents has a
 * high Spearman while either latent alone is clearly lower; the manifest makes a second call a
 * no-op (library and tool), and stale or foreign train files are handled. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/demodata.h"
#include "runtime/metrics.h"
#include "runtime/tsv.h"
#include "tests/support/test_util.h"

#define K RT_DEMO_NUM_LABELS
#define FLOOR (-13.287712379549449)

static const char *g_y[K];
static char g_y_names[K][16];
static const char *const X[] = {"dna_seq", "rna_seq", "protein_seq"};

static void init_names(void) {
  for (int t = 0; t < K; t++) {
    snprintf(g_y_names[t], sizeof g_y_names[t], "labels_%d", t);
    g_y[t] = g_y_names[t];
  }
}

static rt_demo_options_t small(void) {
  rt_demo_options_t o;
  rt_demo_defaults(&o);
  o.seed = 7;
  o.train_rows = 40;
  o.val_rows = 10;
  o.test_rows = 10;
  o.train_files = 3;
  o.dna_length = 1024;
  return o;
}

/* Removes dir's files (the datasets have no subdirectories) and dir. */
static void rm_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[700];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

static const char *sub(const char *name) { return tu_tmpdir_path(name); }

static rt_demo_report_t gen(const char *dir, const rt_demo_options_t *o) {
  rt_demo_report_t rep;
  tu_ok(rt_demo_generate(dir, o, &rep));
  return rep;
}

static rt_tsv_index_t *open_file(const char *dir, const char *name) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  rt_tsv_options_t to = {.y_cols = g_y, .n_y = K, .x_cols = X, .n_x = 3, .no_cache = true};
  rt_tsv_index_t *idx = NULL;
  ad_status_t st = rt_tsv_open(path, &to, &idx);
  if (st) ck_abort_msg("%s: %s", path, ad_status_message(st));
  return idx;
}

/* Rows of one split: labels [n, K], latents read back from the sequences, and a checksum of
 * the sequences. */
typedef struct split_rows {
  int64_t n;
  double *labels;
  int *d, *r;
  uint64_t seq_hash;
} split_rows_t;

static uint64_t fnv(uint64_t h, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
  return h;
}

/* Reads split s (its files in order) of the dataset in dir, checking every row's shape. */
static split_rows_t read_split(const char *dir, const rt_demo_options_t *o, int s) {
  split_rows_t sr = {.seq_hash = 0xcbf29ce484222325ull};
  int lo = s == RT_DEMO_SPLIT_TRAIN ? 0 : o->train_files + s - 1;
  int hi = s == RT_DEMO_SPLIT_TRAIN ? o->train_files : lo + 1;
  int64_t want = s == 0 ? o->train_rows : s == 1 ? o->val_rows : o->test_rows;
  sr.labels = malloc((size_t)want * K * sizeof *sr.labels);
  sr.d = malloc((size_t)want * sizeof *sr.d);
  sr.r = malloc((size_t)want * sizeof *sr.r);
  rt_tsv_row_t row = {0};
  for (int f = lo; f < hi; f++) {
    char name[32];
    rt_demo_file_name(o, f, name);
    rt_tsv_index_t *idx = open_file(dir, name);
    ck_assert_uint_eq(rt_tsv_num_cols(idx), 2 + K + 7);
    int64_t n = rt_tsv_rows(idx);
    ck_assert_int_le(sr.n + n, want);
    memcpy(sr.labels + sr.n * K, rt_tsv_labels(idx), (size_t)n * K * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
      tu_ok(rt_tsv_read_row(idx, i, &row));
      size_t dl, rl, pl;
      const char *dna = rt_tsv_row_x(idx, &row, 0, &dl);
      const char *rna = rt_tsv_row_x(idx, &row, 1, &rl);
      const char *prot = rt_tsv_row_x(idx, &row, 2, &pl);
      ck_assert_uint_eq(dl, (size_t)o->dna_length);
      ck_assert_uint_ge(rl, 200);
      /* Plain loops: every ck_assert costs Check a message to its parent process. */
      size_t bad = 0;
      for (size_t j = 0; j < rl; j++) bad += !(rna[j] && strchr("ACGT", rna[j]));
      for (size_t j = 0; j < dl; j++) bad += !(dna[j] && strchr("ACGTacgtN", dna[j]));
      if (bad) ck_abort_msg("%s row %lld: %zu unexpected sequence bytes", name, (long long)i, bad);
      if (pl) ck_assert_int_eq(prot[0], 'M');
      sr.d[sr.n + i] = rt_demo_dna_latent(dna, dl);
      sr.r[sr.n + i] = rt_demo_rna_latent(rna, rl);
      ck_assert_int_le(sr.d[sr.n + i], RT_DEMO_D_MAX);
      sr.seq_hash = fnv(fnv(fnv(sr.seq_hash, dna, dl), rna, rl), prot, pl);
    }
    sr.n += n;
    rt_tsv_close(idx);
  }
  rt_tsv_row_free(&row);
  ck_assert_int_eq(sr.n, want);
  return sr;
}

static void free_split(split_rows_t *sr) {
  free(sr->labels);
  free(sr->d);
  free(sr->r);
}

static char *file_text(const char *dir, const char *name, size_t *len) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return tu_read_file(path, len);
}

START_TEST(test_format_and_labels) {
  init_names();
  tu_tmpdir_create("demodata");
  const char *dir = sub("ds");
  rt_demo_options_t o = small();
  rt_demo_report_t rep = gen(dir, &o);
  ck_assert_int_eq(rep.nfiles, 5);
  /* The header, byte for byte. */
  char want[1024] = "transcript_id\tgene_id";
  for (int t = 0; t < K; t++) snprintf(want + strlen(want), sizeof want - strlen(want),
                                       "\tlabels_%d", t);
  strcat(want, "\tchromosome\ttss\ttes\tstrand\trna_seq\tprotein_seq\tdna_seq\n");
  size_t floor_n = 0, total = 0;
  for (int f = 0; f < 5; f++) {
    char name[32];
    rt_demo_file_name(&o, f, name);
    size_t len;
    char *text = file_text(dir, name, &len);
    ck_assert_msg(len > strlen(want) && !memcmp(text, want, strlen(want)), "%s header", name);
    ck_assert_ptr_null(strchr(text, '\r'));
    ck_assert_int_eq(text[len - 1], '\n');
    free(text);
  }
  static const char *const names[] = {"train_1.tsv", "train_2.tsv", "train_3.tsv",
                                      "validation.tsv", "test.tsv"};
  for (int f = 0; f < 5; f++) {
    char name[32];
    rt_demo_file_name(&o, f, name);
    ck_assert_str_eq(name, names[f]);
  }
  for (int s = 0; s < RT_DEMO_NUM_SPLITS; s++) {
    split_rows_t sr = read_split(dir, &o, s);
    size_t out_of_range = 0;
    for (int64_t i = 0; i < sr.n * K; i++) {
      out_of_range += !(sr.labels[i] >= FLOOR - 1e-6 && sr.labels[i] < 20);
      floor_n += fabs(sr.labels[i] - FLOOR) < 1e-6;
    }
    ck_assert_uint_eq(out_of_range, 0);
    total += (size_t)(sr.n * K);
    ck_assert_int_eq(rep.split[s].rows, sr.n);
    free_split(&sr);
  }
  double share = (double)floor_n / (double)total;
  ck_assert_msg(share > 0.25 && share < 0.6, "floor share %g", share);
  /* Chromosomes as the real split: train_i is chr i, validation chr20, test chr21/22. */
  size_t len;
  char *v = file_text(dir, "validation.tsv", &len);
  ck_assert_ptr_nonnull(strstr(v, "\tchr20\t"));
  free(v);
  char *t2 = file_text(dir, "train_2.tsv", &len);
  ck_assert_ptr_nonnull(strstr(t2, "\tchr2\t"));
  ck_assert_ptr_null(strstr(t2, "\tchr1\t"));
  free(t2);
  rm_dir(dir);
  tu_tmpdir_remove();
}
END_TEST

START_TEST(test_deterministic_in_seed) {
  tu_tmpdir_create("demodata");
  rt_demo_options_t o = small();
  const char *a = sub("a"), *b = sub("b"), *c = sub("c");
  gen(a, &o);
  gen(b, &o);
  o.seed = 8;
  gen(c, &o);
  static const char *const names[] = {"train_1.tsv", "train_2.tsv", "train_3.tsv",
                                      "validation.tsv", "test.tsv", RT_DEMO_MANIFEST};
  for (int f = 0; f < 6; f++) {
    size_t la, lb, lc;
    char *ta = file_text(a, names[f], &la), *tb = file_text(b, names[f], &lb),
         *tc = file_text(c, names[f], &lc);
    ck_assert_msg(la == lb && !memcmp(ta, tb, la), "%s differs for the same seed", names[f]);
    ck_assert_msg(la != lc || memcmp(ta, tc, la), "%s same for another seed", names[f]);
    free(ta);
    free(tb);
    free(tc);
  }
  rm_dir(a);
  rm_dir(b);
  rm_dir(c);
  tu_tmpdir_remove();
}
END_TEST

static int cmp_row(const void *x, const void *y) { return memcmp(x, y, K * sizeof(double)); }

START_TEST(test_shuffle_keeps_label_multiset) {
  init_names();
  tu_tmpdir_create("demodata");
  rt_demo_options_t o = small();
  const char *a = sub("plain"), *b = sub("shuffled");
  gen(a, &o);
  o.shuffle_labels = true;
  rt_demo_report_t rep = gen(b, &o);
  for (int s = 0; s < RT_DEMO_NUM_SPLITS; s++) {
    split_rows_t pa = read_split(a, &o, s), pb = read_split(b, &o, s);
    ck_assert_uint_eq(pa.seq_hash, pb.seq_hash); /* the sequences are untouched */
    size_t bytes = (size_t)pa.n * K * sizeof(double);
    ck_assert_msg(memcmp(pa.labels, pb.labels, bytes) != 0, "split %d not shuffled", s);
    qsort(pa.labels, (size_t)pa.n, K * sizeof(double), cmp_row);
    qsort(pb.labels, (size_t)pb.n, K * sizeof(double), cmp_row);
    ck_assert_msg(memcmp(pa.labels, pb.labels, bytes) == 0, "split %d label rows differ", s);
    free_split(&pa);
    free_split(&pb);
  }
  ck_assert_double_lt(fabs(rep.split[RT_DEMO_SPLIT_TRAIN].oracle_both), 0.5);
  rm_dir(a);
  rm_dir(b);
  tu_tmpdir_remove();
}
END_TEST

/* Mean-over-tissues Spearman of predictions against labels, [n, K] each. */
static double spearman(const double *pred, const double *lab, int64_t n) {
  rt_metrics_t *m = NULL;
  double avg[RT_METRICS_KIND_COUNT];
  tu_ok(rt_metrics_create(K, &m));
  tu_ok(rt_metrics_update_f64(m, pred, lab, n));
  tu_ok(rt_metrics_compute(m, NULL, avg));
  rt_metrics_free(m);
  return avg[RT_METRICS_SPEARMAN];
}

/* Oracle Spearman of (both, d alone, r alone) on the train split of a dataset, with the
 * latents read back from the written sequences. */
static void oracle(const char *dir, const rt_demo_options_t *o, double out[3]) {
  split_rows_t sr = read_split(dir, o, RT_DEMO_SPLIT_TRAIN);
  rt_demo_model_t *m = NULL;
  tu_ok(rt_demo_model_create(o->signal, &m));
  double *pred = malloc((size_t)sr.n * K * sizeof *pred);
  for (int which = 0; which < 3; which++) {
    for (int64_t i = 0; i < sr.n; i++)
      for (int t = 0; t < K; t++)
        pred[i * K + t] = which == 0   ? rt_demo_expect_dr(m, t, sr.d[i], sr.r[i])
                          : which == 1 ? rt_demo_expect_d(m, t, sr.d[i])
                                       : rt_demo_expect_r(m, t, sr.r[i]);
    out[which] = spearman(pred, sr.labels, sr.n);
  }
  free(pred);
  rt_demo_model_free(m);
  free_split(&sr);
}

START_TEST(test_oracle_needs_both_latents) {
  init_names();
  tu_tmpdir_create("demodata");
  rt_demo_options_t o = small();
  o.train_rows = 600;
  o.train_files = 1;
  o.dna_length = 256; /* the window is the whole sequence */
  const char *dir = sub("ds");
  rt_demo_report_t rep = gen(dir, &o);
  double sp[3];
  oracle(dir, &o, sp);
  /* The latents read back give exactly the generator's own oracle. */
  ck_assert_double_eq_tol(sp[0], rep.split[0].oracle_both, 1e-12);
  ck_assert_double_eq_tol(sp[1], rep.split[0].oracle_dna, 1e-12);
  ck_assert_double_eq_tol(sp[2], rep.split[0].oracle_rna, 1e-12);
  ck_assert_msg(sp[0] > 0.7, "both %g", sp[0]);
  ck_assert_msg(sp[1] < 0.5 && sp[2] < 0.5, "dna %g rna %g", sp[1], sp[2]);
  ck_assert_msg(sp[1] > 0.15 && sp[2] > 0.15, "dna %g rna %g", sp[1], sp[2]);
  ck_assert_msg(sp[0] - fmax(sp[1], sp[2]) > 0.25, "both %g dna %g rna %g", sp[0], sp[1], sp[2]);
  /* Signal modes: dna puts everything in d, none in neither. */
  o.signal = RT_DEMO_SIGNAL_DNA;
  gen(dir, &o);
  oracle(dir, &o, sp);
  ck_assert_msg(sp[1] > 0.7 && fabs(sp[2]) < 0.2, "dna mode: dna %g rna %g", sp[1], sp[2]);
  o.signal = RT_DEMO_SIGNAL_NONE;
  gen(dir, &o);
  oracle(dir, &o, sp);
  ck_assert_msg(fabs(sp[0]) < 0.2, "none mode: both %g", sp[0]);
  rm_dir(dir);
  tu_tmpdir_remove();
}
END_TEST

START_TEST(test_manifest_and_tool) {
  tu_tmpdir_create("demodata");
  rt_demo_options_t o = small();
  const char *dir = sub("ds");
  bool cur = true;
  tu_ok(rt_demo_is_current(dir, &o, &cur));
  ck_assert(!cur);
  gen(dir, &o);
  tu_ok(rt_demo_is_current(dir, &o, &cur));
  ck_assert(cur);
  rt_demo_options_t o2 = o;
  o2.shuffle_labels = true;
  tu_ok(rt_demo_is_current(dir, &o2, &cur));
  ck_assert(!cur);
  /* A data file whose size changed makes the dataset incomplete. */
  char path[700];
  snprintf(path, sizeof path, "%s/test.tsv", dir);
  ck_assert_int_eq(truncate(path, 100), 0);
  tu_ok(rt_demo_is_current(dir, &o, &cur));
  ck_assert(!cur);

  char bin[600];
  tu_bin_path(bin, sizeof bin, "aidomm-demodata");
  tu_proc_t r = tu_run_tool(bin, dir, "--seed", "7", "--train-rows", "40", "--val-rows", "10",
                            "--test-rows", "10", "--dna-length=1024", NULL);
  ck_assert_msg(r.code == 0, "%s", r.err);
  ck_assert_ptr_nonnull(strstr(r.out, "wrote 5 files"));
  tu_proc_free(&r);
  tu_ok(rt_demo_is_current(dir, &o, &cur));
  ck_assert(cur);
  r = tu_run_tool(bin, dir, "--seed", "7", "--train-rows", "40", "--val-rows", "10",
                  "--test-rows", "10", "--dna-length=1024", NULL);
  ck_assert_int_eq(r.code, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "nothing to do"));
  tu_proc_free(&r);

  /* Fewer train files: the old train_3.tsv (listed in the old manifest) goes away. */
  r = tu_run_tool(bin, dir, "--seed", "7", "--train-rows", "40", "--val-rows", "10",
                  "--test-rows", "10", "--dna-length=1024", "--train-files", "2", NULL);
  ck_assert_msg(r.code == 0, "%s", r.err);
  tu_proc_free(&r);
  snprintf(path, sizeof path, "%s/train_3.tsv", dir);
  ck_assert_int_ne(access(path, F_OK), 0);
  /* A train file the generator did not write is refused (it would join train_*.tsv). */
  snprintf(path, sizeof path, "%s/train_9.tsv", dir);
  tu_write_file(path, "x\n", 2);
  r = tu_run_tool(bin, dir, "--force", "--train-rows", "4", "--dna-length", "300", NULL);
  ck_assert_int_eq(r.code, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "train_9.tsv"));
  tu_proc_free(&r);
  unlink(path);

  /* Bad flags: one line, exit 2. */
  static const char *const bad[][2] = {{"--signal", "dnax"},     {"--train-files", "20"},
                                       {"--dna-length", "100"},  {"--seed", "-1"},
                                       {"--val-rows", "0"},      {"--bogus", "1"},
                                       {"--train-rows", "12x"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    r = tu_run_tool(bin, dir, bad[i][0], bad[i][1], NULL);
    ck_assert_msg(r.code == 2, "%s %s: exit %d", bad[i][0], bad[i][1], r.code);
    ck_assert_msg(!strncmp(r.err, "aidomm-demodata: error: ", 24), "%s", r.err);
    ck_assert_int_eq(tu_count_lines(r.err, r.err_len), 1);
    tu_proc_free(&r);
  }
  r = tu_run_tool(bin, "--seed", "1", NULL);
  ck_assert_int_eq(r.code, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "missing OUTDIR"));
  tu_proc_free(&r);
  rm_dir(dir);
  tu_tmpdir_remove();
}
END_TEST

int main(void) {
  Suite *s = suite_create("demodata");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_format_and_labels);
  tcase_add_test(tc, test_deterministic_in_seed);
  tcase_add_test(tc, test_shuffle_keeps_label_multiset);
  tcase_add_test(tc, test_oracle_needs_both_latents);
  tcase_add_test(tc, test_manifest_and_tool);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
