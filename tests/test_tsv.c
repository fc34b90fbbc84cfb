/* The TSV row index: LF, CRLF, BOM and reordered-column files give the same rows and labels;
 * each malformed file fails with one error naming the file, line and column; the sidecar is
 * reused when its key matches and rebuilt on a size or mtime change or corruption; z-score
 * statistics match hand-computed values; and a ~20 MB file is indexed with the same scan
 * buffers as a 2 MB one. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/test_util.h"
#include "runtime/tsv.h"

static const char *const Y[] = {"labels_0", "labels_1", "labels_2"};
static const char *const X[] = {"dna_seq", "rna_seq", "protein_seq"};
static const rt_tsv_rename_t REN[] = {{"dna_seq", "dna_seq_sequences"},
                                      {"rna_seq", "rna_seq_sequences"},
                                      {"protein_seq", "protein_seq_sequences"},
                                      {"not_selected", "ignored"}};


static const char *data(const char *name) {
  static char buf[1024];
  const char *src = getenv("AIDOMM_SOURCE_DIR");
  snprintf(buf, sizeof buf, "%s/tests/data/%s", src ? src : ".", name);
  return buf;
}

static rt_tsv_options_t opts(void) {
  return (rt_tsv_options_t){.y_cols = Y, .n_y = 3, .x_cols = X, .n_x = 3, .renames = REN,
                            .n_renames = 4, .no_cache = true};
}

static rt_tsv_index_t *open_ok(const char *path, const rt_tsv_options_t *o) {
  rt_tsv_index_t *idx = NULL;
  ad_status_t st = rt_tsv_open(path, o, &idx);
  if (st) ck_abort_msg("%s: %s", path, ad_status_message(st));
  return idx;
}

/* Opens a file that must fail; checks the code and that every needle is in the message. */
static void expect_error(const char *name, const rt_tsv_options_t *o, ad_status_code_t code,
                         const char *const *needles, size_t nn) {
  rt_tsv_index_t *idx = NULL;
  const char *path = data(name);
  ad_status_t st = rt_tsv_open(path, o, &idx);
  ck_assert_msg(st != NULL, "%s: opened without error", name);
  ck_assert_ptr_null(idx);
  const char *m = ad_status_message(st);
  ck_assert_int_eq(ad_status_code(st), code);
  ck_assert_msg(strstr(m, name) != NULL, "message does not name the file: %s", m);
  for (size_t i = 0; i < nn; i++)
    ck_assert_msg(strstr(m, needles[i]) != NULL, "'%s' not in: %s", needles[i], m);
  ad_status_free(st);
}

static void field_eq(const rt_tsv_index_t *idx, const rt_tsv_row_t *row, size_t j,
                     const char *want) {
  size_t n;
  const char *f = rt_tsv_row_x(idx, row, j, &n);
  ck_assert_msg(n == strlen(want) && memcmp(f, want, n) == 0, "x%zu: '%.*s' != '%s'", j, (int)n,
                f, want);
}

/* The three data rows of tests/data/tsv_*.tsv. */
static const double LAB[3][3] = {{1.5, 0, 7}, {2, 3.25, 7}, {-1, 0.5, 7}};
static const char *const SEQ[3][3] = {
    {"ACGTACGT", "ACGU", "MKV"}, {"TTTTAAAA", "GGCU", ""}, {"acgtNNNN", "A", "M"}};

static void check_good(const char *name) {
  rt_tsv_options_t o = opts();
  rt_tsv_index_t *idx = open_ok(data(name), &o);
  ck_assert_int_eq(rt_tsv_rows(idx), 3);
  ck_assert_uint_eq(rt_tsv_num_cols(idx), 12);
  ck_assert_uint_eq(rt_tsv_num_labels(idx), 3);
  ck_assert_str_eq(rt_tsv_x_name(idx, 0), "dna_seq_sequences");
  ck_assert_str_eq(rt_tsv_x_header(idx, 2), "protein_seq");
  const double *lab = rt_tsv_labels(idx); /* [3, 3] */
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 3; k++) ck_assert_double_eq(lab[i * 3 + k], LAB[i][k]);
  rt_tsv_row_t row = {0};
  for (int i = 0; i < 3; i++) {
    ck_assert_uint_eq(rt_tsv_row_line(idx, i), (unsigned)i + 2);
    ad_status_t st = rt_tsv_read_row(idx, i, &row);
    ck_assert_msg(!st, "%s", st ? ad_status_message(st) : "");
    for (size_t j = 0; j < 3; j++) field_eq(idx, &row, j, SEQ[i][j]);
  }
  ad_status_t st = rt_tsv_read_row(idx, 3, &row);
  ck_assert_ptr_nonnull(st);
  ad_status_free(st);
  rt_tsv_row_free(&row);
  rt_tsv_close(idx);
}

START_TEST(test_lf_crlf_bom_reordered_agree) {
  check_good("tsv_lf.tsv");
  check_good("tsv_crlf.tsv");
  check_good("tsv_bom_crlf.tsv"); /* BOM, CRLF, no final newline */
  check_good("tsv_reordered.tsv"); /* columns permuted, a label column last, CRLF */
}
END_TEST

START_TEST(test_small_chunks_same_result) {
  /* Chunk boundaries fall inside fields, CRLF pairs and the BOM's line. */
  for (size_t chunk = 16; chunk <= 64; chunk += 7) {
    rt_tsv_options_t o = opts();
    o.chunk_size = chunk;
    rt_tsv_index_t *a = open_ok(data("tsv_bom_crlf.tsv"), &o);
    o.chunk_size = 0;
    rt_tsv_index_t *b = open_ok(data("tsv_bom_crlf.tsv"), &o);
    ck_assert_int_eq(rt_tsv_rows(a), rt_tsv_rows(b));
    for (int64_t i = 0; i < rt_tsv_rows(a); i++) {
      ck_assert_uint_eq(rt_tsv_row_offset(a, i), rt_tsv_row_offset(b, i));
      ck_assert_uint_eq(rt_tsv_row_length(a, i), rt_tsv_row_length(b, i));
    }
    ck_assert_mem_eq(rt_tsv_labels(a), rt_tsv_labels(b), 9 * sizeof(double));
    rt_tsv_close(a);
    rt_tsv_close(b);
  }
}
END_TEST

START_TEST(test_bad_files) {
  rt_tsv_options_t o = opts();
  const char *missing[] = {"'labels_1' not found", "labels_0, labels_2, chromosome"};
  expect_error("tsv_missing_col.tsv", &o, AD_STATUS_INVALID_ARGUMENT, missing, 2);
  const char *nan[] = {":3:", "labels_1", "'NaN'"};
  expect_error("tsv_nan_label.tsv", &o, AD_STATUS_INVALID_ARGUMENT, nan, 3);
  const char *empty[] = {":4:", "labels_2", "empty label"};
  expect_error("tsv_empty_label.tsv", &o, AD_STATUS_INVALID_ARGUMENT, empty, 3);
  const char *text[] = {":2:", "labels_0", "'high'"};
  expect_error("tsv_text_label.tsv", &o, AD_STATUS_INVALID_ARGUMENT, text, 3);
  const char *inf[] = {":2:", "labels_0", "'inf'"};
  expect_error("tsv_inf_label.tsv", &o, AD_STATUS_INVALID_ARGUMENT, inf, 3);
  const char *trunc[] = {":4:", "10 fields", "truncated"};
  expect_error("tsv_truncated.tsv", &o, AD_STATUS_DATA_LOSS, trunc, 3);
  const char *extra[] = {":3:", "more fields"};
  expect_error("tsv_extra_field.tsv", &o, AD_STATUS_INVALID_ARGUMENT, extra, 2);
  const char *none[] = {"empty file"};
  expect_error("tsv_empty.tsv", &o, AD_STATUS_INVALID_ARGUMENT, none, 1);
  /* A missing input column is named too. */
  const char *const x2[] = {"dna_seq", "cds_seq"};
  o.x_cols = x2;
  o.n_x = 2;
  const char *xmiss[] = {"input column 'cds_seq' not found", "transcript_id, gene_id"};
  expect_error("tsv_lf.tsv", &o, AD_STATUS_INVALID_ARGUMENT, xmiss, 2);
  /* The line cap: the header is 102 bytes, the longest row 47. */
  o = opts();
  o.max_line = 40;
  const char *cap1[] = {":1:", "40-byte cap"};
  expect_error("tsv_lf.tsv", &o, AD_STATUS_INVALID_ARGUMENT, cap1, 2);
  o.max_line = 102;
  rt_tsv_index_t *idx = open_ok(data("tsv_crlf.tsv"), &o); /* the CR does not count */
  rt_tsv_close(idx);
  o.max_line = 101;
  const char *cap2[] = {":1:", "101-byte cap"};
  expect_error("tsv_crlf.tsv", &o, AD_STATUS_INVALID_ARGUMENT, cap2, 2);
}
END_TEST

static void write_file(const char *path, const char *s) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(s, 1, strlen(s), f), strlen(s));
  ck_assert_int_eq(fclose(f), 0);
}

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)sz + 1);
  ck_assert_uint_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
  fclose(f);
  b[sz] = 0;
  *n = (size_t)sz;
  return b;
}

START_TEST(test_long_row_error_names_line) {
  tu_tmpdir_create("tsv");
  char path[256];
  snprintf(path, sizeof path, "%s/long.tsv", tu_tmpdir());
  FILE *f = fopen(path, "wb");
  fprintf(f, "labels_0\tdna_seq\n1\tACGT\n2\t");
  for (int i = 0; i < 5000; i++) fputc('A', f);
  fprintf(f, "\n3\tC\n");
  fclose(f);
  const char *const y[] = {"labels_0"};
  rt_tsv_options_t o = {.y_cols = y, .n_y = 1, .max_line = 1000, .no_cache = true,
                        .chunk_size = 256};
  rt_tsv_index_t *idx = NULL;
  ad_status_t st = rt_tsv_open(path, &o, &idx);
  ck_assert_ptr_nonnull(st);
  ck_assert_msg(strstr(ad_status_message(st), "long.tsv:3: line is longer than the 1000-byte cap"),
                "%s", ad_status_message(st));
  ad_status_free(st);
  o.max_line = 0;
  idx = open_ok(path, &o);
  ck_assert_int_eq(rt_tsv_rows(idx), 3);
  ck_assert_uint_eq(rt_tsv_row_length(idx, 1), 5002);
  rt_tsv_close(idx);
  /* A header alone (no newline) is a valid file with no rows; its statistics are an error. */
  write_file(path, "labels_0\tdna_seq");
  idx = open_ok(path, &o);
  ck_assert_int_eq(rt_tsv_rows(idx), 0);
  double mean, std;
  const rt_tsv_index_t *one[] = {idx};
  ad_status_t zs = rt_tsv_zscore_stats(one, 1, &mean, &std);
  ck_assert_ptr_nonnull(zs);
  ad_status_free(zs);
  rt_tsv_close(idx);
  tu_tmpdir_remove();
}
END_TEST

static void set_mtime(const char *path, time_t sec) {
  struct timespec ts[2] = {{sec, 0}, {sec, 0}};
  ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
}

START_TEST(test_sidecar_reuse_and_invalidation) {
  tu_tmpdir_create("tsv");
  char path[256];
  snprintf(path, sizeof path, "%s/train_1.tsv", tu_tmpdir());
  size_t n;
  char *text = slurp(data("tsv_lf.tsv"), &n);
  write_file(path, text);
  set_mtime(path, 1700000000);
  rt_tsv_options_t o = opts();
  o.no_cache = false;

  rt_tsv_index_t *a = open_ok(path, &o);
  ck_assert(!rt_tsv_from_cache(a));
  ck_assert_uint_eq(rt_tsv_bytes_scanned(a), n);
  char side[512];
  snprintf(side, sizeof side, "%s/.train_1.tsv.aidomm-idx", tu_tmpdir());
  ck_assert_str_eq(rt_tsv_sidecar_path(a), side);
  ck_assert_int_eq(access(side, R_OK), 0);

  rt_tsv_index_t *b = open_ok(path, &o); /* same key: no scan */
  ck_assert(rt_tsv_from_cache(b));
  ck_assert_uint_eq(rt_tsv_bytes_scanned(b), 0);
  ck_assert_int_eq(rt_tsv_rows(b), 3);
  ck_assert_uint_eq(rt_tsv_x_column(b, 0), rt_tsv_x_column(a, 0));
  ck_assert_mem_eq(rt_tsv_labels(a), rt_tsv_labels(b), 9 * sizeof(double));
  for (int64_t i = 0; i < 3; i++) {
    ck_assert_uint_eq(rt_tsv_row_offset(a, i), rt_tsv_row_offset(b, i));
    ck_assert_uint_eq(rt_tsv_row_length(a, i), rt_tsv_row_length(b, i));
    ck_assert_uint_eq(rt_tsv_row_line(a, i), rt_tsv_row_line(b, i));
  }
  rt_tsv_row_t row = {0};
  ck_assert_ptr_null(rt_tsv_read_row(b, 2, &row));
  field_eq(b, &row, 0, "acgtNNNN");
  rt_tsv_close(b);

  /* A different selection is a different key. */
  rt_tsv_options_t o2 = o;
  o2.n_y = 2;
  b = open_ok(path, &o2);
  ck_assert(!rt_tsv_from_cache(b));
  rt_tsv_close(b);
  b = open_ok(path, &o);
  ck_assert(!rt_tsv_from_cache(b)); /* the 2-label open replaced the sidecar */
  rt_tsv_close(b);

  /* Same size and content, new mtime: rescan. */
  set_mtime(path, 1700000100);
  b = open_ok(path, &o);
  ck_assert(!rt_tsv_from_cache(b));
  rt_tsv_close(b);
  b = open_ok(path, &o);
  ck_assert(rt_tsv_from_cache(b));
  rt_tsv_close(b);

  /* Same mtime, a row appended (size change): rescan sees 4 rows. */
  FILE *f = fopen(path, "ab");
  fputs("T9\tG9\t9\t9\t9\tchr3\t1\t2\t+\tU\t\tA\n", f);
  fclose(f);
  set_mtime(path, 1700000100);
  b = open_ok(path, &o);
  ck_assert(!rt_tsv_from_cache(b));
  ck_assert_int_eq(rt_tsv_rows(b), 4);
  ck_assert_double_eq(rt_tsv_labels(b)[9], 9.0);
  rt_tsv_close(b);

  /* Corrupt sidecars are ignored and rebuilt: a flipped byte in each position, a truncation. */
  size_t sn;
  char *good = slurp(side, &sn);
  for (size_t pos = 0; pos < sn; pos += 7) {
    char *bad = malloc(sn);
    memcpy(bad, good, sn);
    bad[pos] ^= 0x5a;
    FILE *g = fopen(side, "wb");
    fwrite(bad, 1, sn, g);
    fclose(g);
    free(bad);
    b = open_ok(path, &o);
    ck_assert_msg(!rt_tsv_from_cache(b), "corrupt byte %zu trusted", pos);
    ck_assert_int_eq(rt_tsv_rows(b), 4);
    rt_tsv_close(b);
  }
  FILE *g = fopen(side, "wb");
  fwrite(good, 1, sn / 2, g);
  fclose(g);
  b = open_ok(path, &o);
  ck_assert(!rt_tsv_from_cache(b));
  rt_tsv_close(b);
  b = open_ok(path, &o);
  ck_assert(rt_tsv_from_cache(b)); /* and the rebuilt one is good */
  rt_tsv_close(b);
  free(good);

  /* A cache directory: the sidecar goes there, not beside the data. */
  unlink(side);
  char cdir[256];
  snprintf(cdir, sizeof cdir, "%s/cache", tu_tmpdir());
  ck_assert_int_eq(mkdir(cdir, 0755), 0);
  o.cache_dir = cdir;
  b = open_ok(path, &o);
  ck_assert(!rt_tsv_from_cache(b));
  ck_assert_int_ne(access(side, F_OK), 0);
  ck_assert_ptr_nonnull(strstr(rt_tsv_sidecar_path(b), "/cache/train_1.tsv-"));
  char cside[512];
  snprintf(cside, sizeof cside, "%s", rt_tsv_sidecar_path(b));
  rt_tsv_close(b);
  b = open_ok(path, &o);
  ck_assert(rt_tsv_from_cache(b));
  rt_tsv_close(b);
  unlink(cside);
  rmdir(cdir);

  /* The file rewritten behind an index: reading the row is an error, not garbage. */
  write_file(path, "x\n");
  ad_status_t st = rt_tsv_read_row(a, 1, &row);
  ck_assert_ptr_nonnull(st);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_DATA_LOSS);
  ad_status_free(st);
  rt_tsv_row_free(&row);
  rt_tsv_close(a);
  free(text);
  tu_tmpdir_remove();
}
END_TEST

START_TEST(test_zscore_stats) {
  rt_tsv_options_t o = opts();
  rt_tsv_index_t *tr = open_ok(data("tsv_lf.tsv"), &o);
  rt_tsv_index_t *va = open_ok(data("tsv_val.tsv"), &o);
  const rt_tsv_index_t *both[] = {tr, va};
  double mean[3], std[3];
  ck_assert_ptr_null(rt_tsv_zscore_stats(both, 2, mean, std));
  /* labels_0: 1.5 2 -1 4.5 -> mean 1.75, deviations +-0.25, +-2.75 -> var 15.25 / 4.
   * labels_1: 0 3.25 0.5 -0.75 -> mean 0.75, squares .5625 6.25 .0625 2.25 -> var 9.125 / 4.
   * labels_2: all 7 -> std 0. */
  ck_assert_double_eq(mean[0], 1.75);
  ck_assert_double_eq_tol(std[0], sqrt(15.25 / 4), 1e-15);
  ck_assert_double_eq(mean[1], 0.75);
  ck_assert_double_eq_tol(std[1], sqrt(9.125 / 4), 1e-15);
  ck_assert_double_eq(mean[2], 7.0);
  ck_assert_double_eq(std[2], 0.0);
  /* Train alone: labels_0 1.5 2 -1 -> mean 5/6, var ((2/3)^2 + (7/6)^2 + (11/6)^2) / 3. */
  ck_assert_ptr_null(rt_tsv_zscore_stats(both, 1, mean, std));
  ck_assert_double_eq_tol(mean[0], 5.0 / 6.0, 1e-15);
  ck_assert_double_eq_tol(std[0], sqrt((16.0 / 36 + 49.0 / 36 + 121.0 / 36) / 3), 1e-15);
  /* Mismatched selections are refused. */
  rt_tsv_options_t o2 = o;
  o2.n_y = 2;
  rt_tsv_index_t *two = open_ok(data("tsv_val.tsv"), &o2);
  const rt_tsv_index_t *mixed[] = {tr, two};
  ad_status_t st = rt_tsv_zscore_stats(mixed, 2, mean, std);
  ck_assert_ptr_nonnull(st);
  ad_status_free(st);
  rt_tsv_close(two);
  rt_tsv_close(tr);
  rt_tsv_close(va);
}
END_TEST

/* Rows like the real ones: a 196,608-base DNA window dominates each line. */
static void write_big(const char *path, int rows) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  fputs("transcript_id\tgene_id", f);
  for (int k = 0; k < 30; k++) fprintf(f, "\tlabels_%d", k);
  fputs("\tchromosome\ttss\ttes\tstrand\trna_seq\tprotein_seq\tdna_seq\n", f);
  static char dna[196608];
  for (size_t i = 0; i < sizeof dna; i++) dna[i] = "ACGTacgtN"[i % 9];
  for (int r = 0; r < rows; r++) {
    fprintf(f, "ENST%08d\tENSG%08d", r, r);
    for (int k = 0; k < 30; k++) fprintf(f, "\t%.17g", (r * 31 + k) * 0.125 - 13.2877);
    fprintf(f, "\tchr1\t%d\t%d\t+\tACGUACGU\t%s\t", r * 1000, r * 1000 + 500, r % 2 ? "" : "MKV");
    fwrite(dna, 1, sizeof dna, f);
    fputc('\n', f);
  }
  ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_memory_flat_in_file_size) {
  tu_tmpdir_create("tsv");
  char small[256], big[256];
  snprintf(small, sizeof small, "%s/small.tsv", tu_tmpdir());
  snprintf(big, sizeof big, "%s/big.tsv", tu_tmpdir());
  write_big(small, 10);
  write_big(big, 100); /* ~19.7 MB */
  char *y[30], names[30][16];
  for (int k = 0; k < 30; k++) {
    snprintf(names[k], sizeof names[k], "labels_%d", k);
    y[k] = names[k];
  }
  rt_tsv_options_t o = {.y_cols = (const char *const *)y, .n_y = 30, .x_cols = X, .n_x = 3,
                        .no_cache = true, .chunk_size = 64 << 10};
  rt_tsv_index_t *a = open_ok(small, &o);
  rt_tsv_index_t *b = open_ok(big, &o);
  ck_assert_int_eq(rt_tsv_rows(a), 10);
  ck_assert_int_eq(rt_tsv_rows(b), 100);
  ck_assert_uint_gt(rt_tsv_bytes_scanned(b), 19000000u);
  /* The scan holds one chunk, the header and a label field: the same for both files, and far
   * below one row (~197 KB) let alone the file. */
  ck_assert_uint_eq(rt_tsv_scan_buffer_peak(a), rt_tsv_scan_buffer_peak(b));
  ck_assert_uint_lt(rt_tsv_scan_buffer_peak(b), (64 << 10) + 4096);
  const double *lab = rt_tsv_labels(b); /* [100, 30] */
  ck_assert_double_eq(lab[77 * 30 + 29], (77 * 31 + 29) * 0.125 - 13.2877);
  rt_tsv_row_t row = {0};
  ck_assert_ptr_null(rt_tsv_read_row(b, 99, &row));
  size_t n;
  const char *dna = rt_tsv_row_x(b, &row, 0, &n);
  ck_assert_uint_eq(n, 196608);
  ck_assert_int_eq(dna[196607], "ACGTacgtN"[196607 % 9]);
  rt_tsv_row_x(b, &row, 2, &n);
  ck_assert_uint_eq(n, 0); /* odd rows have no protein */
  rt_tsv_row_free(&row);
  rt_tsv_close(a);
  rt_tsv_close(b);
  tu_tmpdir_remove();
}
END_TEST

int main(void) {
  Suite *s = suite_create("tsv");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_lf_crlf_bom_reordered_agree);
  tcase_add_test(tc, test_small_chunks_same_result);
  tcase_add_test(tc, test_bad_files);
  tcase_add_test(tc, test_long_row_error_names_line);
  tcase_add_test(tc, test_sidecar_reuse_and_invalidation);
  tcase_add_test(tc, test_zscore_stats);
  tcase_add_test(tc, test_memory_flat_in_file_size);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
