/* Memory stays flat in the data size (issue 4): the peak RSS of `aidomm-rt run --job predict`
 * (indexing the test split from scratch plus N predict batches) on a small and on a 10x larger
 * generated dataset (runtime/demodata.c, full 196,608-bp DNA windows) differs by less than
 * 16 MB. The peak is the child's ru_maxrss from wait4.
 *
 * Sizes: 20 MB vs 200 MB of test split by default, so the suite stays fast; with
 * AIDOMM_RSS_FULL=1 the acceptance sizes, 0.2 GB vs 2 GB (tools/bench/rss_flat.sh). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/demodata.h"
#include "support/test_util.h"

#define DNA_LEN 196608

static char g_plan[1024];

static void compile_plan(void) {
  char bin[1024];
  tu_bin_path(bin, sizeof bin, "aidommc");
  snprintf(g_plan, sizeof g_plan, "%s", tu_tmpdir_path("concat.plan"));
  tu_proc_t r = tu_run_tool(
      bin, "compile", tu_source_path("configs/tiny_isoform_expression_dna_rna_concat.yaml"), "-o",
      g_plan, NULL);
  ck_assert_msg(r.code == 0, "compile: %s", r.err);
  tu_proc_free(&r);
}

/* Peak RSS in KiB of one predict run over `dir`, and the test file's size. */
static long predict_peak_kib(const char *dir, const char *out, int batches) {
  char bin[1024], lim[32], datap[1024], outp[1024], idx[1100];
  tu_bin_path(bin, sizeof bin, "aidomm-rt");
  snprintf(lim, sizeof lim, "%d", batches);
  snprintf(datap, sizeof datap, "%s", dir);
  snprintf(outp, sizeof outp, "%s", tu_tmpdir_path(out));
  snprintf(idx, sizeof idx, "%s/idx", outp); /* fresh: the run indexes every file */
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    if (!freopen("/dev/null", "w", stdout)) _exit(126);
    execl(bin, bin, "run", g_plan, "--job", "predict", "--progress", "off", "--threads", "1",
          "--output_dir", outp, "--index_dir", idx, "--data.init_args.path", datap,
          "--trainer.limit_predict_batches", lim, (char *)NULL);
    _exit(127);
  }
  int status = 0;
  struct rusage ru;
  ck_assert_int_eq(wait4(pid, &status, 0, &ru), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "aidomm-rt failed: status %d",
                status);
  return ru.ru_maxrss;
}

static const char *make_data(const char *name, int64_t test_rows) {
  static char dirs[2][1024];
  static int k;
  char *dir = dirs[k++ & 1];
  snprintf(dir, 1024, "%s", tu_tmpdir_path(name));
  rt_demo_options_t o;
  rt_demo_defaults(&o);
  o.train_rows = 24;
  o.val_rows = 8;
  o.test_rows = test_rows;
  o.train_files = 2;
  o.dna_length = DNA_LEN;
  tu_ok(rt_demo_generate(dir, &o, NULL));
  return dir;
}

static long file_mb(const char *dir, const char *name) {
  char p[1100];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  struct stat sb;
  ck_assert_int_eq(stat(p, &sb), 0);
  return (long)(sb.st_size >> 20);
}

START_TEST(test_rss_flat_in_file_size) {
  bool full = getenv("AIDOMM_RSS_FULL") && !strcmp(getenv("AIDOMM_RSS_FULL"), "1");
  int64_t small = full ? 1000 : 100, big = full ? 10000 : 1000; /* ~0.2 MB of text per row */
  compile_plan();
  const char *d1 = make_data("small", small);
  long kib1 = predict_peak_kib(d1, "o1", 8);
  long mb1 = file_mb(d1, "test.tsv");
  const char *d2 = make_data("big", big);
  long kib2 = predict_peak_kib(d2, "o2", 8);
  long mb2 = file_mb(d2, "test.tsv");
  printf("peak RSS: %ld MB test split -> %.1f MiB; %ld MB -> %.1f MiB; difference %.2f MiB\n",
         mb1, kib1 / 1024.0, mb2, kib2 / 1024.0, (kib2 - kib1) / 1024.0);
  ck_assert_int_ge(mb2, 9 * mb1);
  ck_assert_msg(labs(kib2 - kib1) < 16 * 1024, "peak RSS grew by %ld KiB", kib2 - kib1);
}
END_TEST

static void setup(void) { tu_tmpdir_create("rss"); }

int main(void) {
  Suite *s = suite_create("rss");
  TCase *tc = tcase_create("rss");
  tcase_add_unchecked_fixture(tc, setup, NULL);
  tcase_set_timeout(tc, 1200);
  tcase_add_test(tc, test_rss_flat_in_file_size);
  suite_add_tcase(s, tc);
  int rc = tu_run_suite(s);
  tu_tmpdir_remove();
  return rc;
}
