/* The aidomm-rt command line: every bad flag, value or key is one line on stderr and exit code
 * 2; a good run of the tiny transformer plan exits 0. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/test_util.h"

static char g_bin[1024], g_plan[1024];

static void setup(void) {
  tu_tmpdir_create("aidomm_rt");
  tu_bin_path(g_bin, sizeof g_bin, "aidomm-rt");
  char cc[1024];
  tu_bin_path(cc, sizeof cc, "aidommc");
  snprintf(g_plan, sizeof g_plan, "%s", tu_tmpdir_path("tiny.plan"));
  tu_proc_t r = tu_run_tool(cc, "compile", tu_source_path("configs/tiny_transformer.yaml"), "-o",
                            g_plan, NULL);
  if (r.code != 0) fprintf(stderr, "compile failed: %s\n", r.err);
  tu_proc_free(&r);
}

static void teardown(void) { tu_tmpdir_remove(); }

/* exit 2, exactly one line on stderr, containing `want` */
static void expect_usage(tu_proc_t r, const char *want) {
  ck_assert_msg(r.code == 2, "exit %d, stderr:\n%s", r.code, r.err);
  ck_assert_msg(strstr(r.err, want) != NULL, "'%s' not in:\n%s", want, r.err);
  ck_assert_msg(tu_count_lines(r.err, r.err_len) == 1 || strstr(r.err, "usage:"),
                "more than one line:\n%s", r.err);
  tu_proc_free(&r);
}

START_TEST(test_bad_command_lines) {
  expect_usage(tu_run_tool(g_bin, "walk", g_plan, NULL), "unknown command 'walk'");
  expect_usage(tu_run_tool(g_bin, "run", NULL), "missing PLAN");
  expect_usage(tu_run_tool(g_bin, "run", g_plan, "--job", "train", NULL),
               "--job needs fit, validate, test or predict");
  expect_usage(tu_run_tool(g_bin, "run", g_plan, "--threads", "-1", NULL),
               "--threads needs a non-negative integer");
  expect_usage(tu_run_tool(g_bin, "run", g_plan, "--predictions", "tpm", NULL),
               "--predictions needs log2tpm or zscore");
  expect_usage(tu_run_tool(g_bin, "run", g_plan, "--progress", "sometimes", NULL),
               "--progress needs on, off or auto");
  expect_usage(tu_run_tool(g_bin, "run", g_plan, "--trainer.max_steps", NULL), "needs a value");
  expect_usage(tu_run_tool(g_bin, "run", g_plan, "-x", NULL), "unknown option '-x'");
}
END_TEST

START_TEST(test_bad_keys_and_values) {
  /* a compile-time key names aidommc; an unknown key is named; a bad value is placed on the
   * command line */
  expect_usage(tu_run_tool(g_bin, "run", g_plan, "--model.init_args.hidden_size", "64", NULL),
               "changes the compiled graph; give it to aidommc compile");
  expect_usage(tu_run_tool(g_bin, "run", g_plan, "--trainer.max_stepz", "5", NULL),
               "unknown config key '--trainer.max_stepz'");
  /* the column is the argument's position, also behind other flags */
  expect_usage(tu_run_tool(g_bin, "run", g_plan, "--threads", "1", "--trainer.max_steps", "many",
                           NULL),
               "<command line>:1:5: error: trainer.max_steps: expected an integer, got 'many'");
  expect_usage(tu_run_tool(g_bin, "run", tu_tmpdir_path("absent.plan"), NULL), "absent.plan");
}
END_TEST

START_TEST(test_good_run) {
  tu_proc_t r = tu_run_tool(g_bin, "run", g_plan, "--trainer.max_steps", "3", "--progress", "off",
                            NULL);
  ck_assert_msg(r.code == 0, "exit %d:\n%s", r.code, r.err);
  ck_assert_ptr_nonnull(strstr(r.out, "step    3"));
  tu_proc_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("aidomm_rt");
  TCase *tc = tcase_create("cli");
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_bad_command_lines);
  tcase_add_test(tc, test_bad_keys_and_values);
  tcase_add_test(tc, test_good_run);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
