/* End-to-end tests of the aidommc binary ($AIDOMM_BIN_DIR/aidommc): compile the tiny config,
 * inspect the plan, and check that usage and input errors give exit code 2 with exactly one
 * line on stderr. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plan/plan.h"
#include "tests/support/test_util.h"

#define TINY_CONFIG "configs/tiny_transformer.yaml"

static char g_bin[1024];
static char g_config[1024];

static void setup(void) {
  tu_bin_path(g_bin, sizeof g_bin, "aidommc");
  snprintf(g_config, sizeof g_config, "%s/%s", tu_source_dir(), TINY_CONFIG);
  tu_tmpdir_create("aidommc");
}

/* Exit code 2, exactly one (newline-terminated) line on stderr containing `want`. */
static void expect_input_error(tu_proc_t *r, const char *want) {
  ck_assert_msg(r->code == 2, "exit code %d (expected 2); stderr: %s", r->code, r->err);
  ck_assert_msg(tu_count_lines(r->err, r->err_len) == 1 && r->err[r->err_len - 1] == '\n',
                "expected one line on stderr, got: %s", r->err);
  ck_assert_msg(strstr(r->err, want) != NULL, "expected '%s' in stderr: %s", want, r->err);
}

static void compile_tiny(const char *plan_path) {
  tu_proc_t r = tu_run_tool(g_bin, "compile", g_config, "-o", plan_path, NULL);
  ck_assert_msg(r.code == 0, "compile failed (%d): %s", r.code, r.err);
  ck_assert_uint_eq(r.err_len, 0);
  tu_proc_free(&r);
}

/* ---- tests -------------------------------------------------------------------------------- */

START_TEST(test_help_version_usage) {
  tu_proc_t r = tu_run_tool(g_bin, "--help", NULL);
  ck_assert_int_eq(r.code, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: aidommc compile CONFIG -o PLAN"));
  ck_assert_ptr_nonnull(strstr(r.out, "--print-after"));
  tu_proc_free(&r);

  r = tu_run_tool(g_bin, "--version", NULL);
  ck_assert_int_eq(r.code, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "aidommc " AIDOMM_VERSION));
  tu_proc_free(&r);

  r = tu_run_tool(g_bin, NULL);
  ck_assert_int_eq(r.code, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "usage:"));
  tu_proc_free(&r);

  r = tu_run_tool(g_bin, "frobnicate", NULL);
  expect_input_error(&r, "aidommc: error: unknown command 'frobnicate'");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "--frobnicate", NULL);
  expect_input_error(&r, "aidommc: error: unknown option '--frobnicate'");
  tu_proc_free(&r);
}
END_TEST

START_TEST(test_usage_errors) {
  const char *plan = tu_tmpdir_path("x.plan");
  tu_proc_t r = tu_run_tool(g_bin, "compile", g_config, "-o", plan, "--frobnicate", NULL);
  expect_input_error(&r, "aidommc: error: unknown option '--frobnicate'");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "compile", g_config, "-o", plan, "-x", NULL);
  expect_input_error(&r, "unknown option '-x'");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "compile", g_config, NULL);
  expect_input_error(&r, "-o PLAN");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "compile", "-o", plan, NULL);
  expect_input_error(&r, "needs a CONFIG");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "compile", g_config, "-o", NULL);
  expect_input_error(&r, "needs a value");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "compile", g_config, "-o", plan, "--job", "train", NULL);
  expect_input_error(&r, "unknown job 'train'");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "compile", g_config, "-o", plan, "--print-after=nosuchpass", NULL);
  expect_input_error(&r, "unknown pass 'nosuchpass'");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "compile", g_config, "-o", plan, "--trainer.max_steps", NULL);
  expect_input_error(&r, "needs a value");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "inspect", NULL);
  expect_input_error(&r, "needs a PLAN");
  tu_proc_free(&r);
  /* Nothing was written by any of these. */
  ck_assert_int_ne(access(plan, F_OK), 0);
}
END_TEST

START_TEST(test_missing_config) {
  const char *missing = tu_tmpdir_path("no-such-config.yaml");
  tu_proc_t r = tu_run_tool(g_bin, "compile", missing, "-o", tu_tmpdir_path("x.plan"), NULL);
  expect_input_error(&r, missing);
  tu_proc_free(&r);
  ck_assert_int_ne(access(tu_tmpdir_path("x.plan"), F_OK), 0);
}
END_TEST

START_TEST(test_compile_and_read) {
  const char *plan_path = tu_tmpdir_path("tiny.plan");
  compile_tiny(plan_path);
  plan_t *p = NULL;
  ad_status_t st = plan_read(plan_path, &p);
  ck_assert_msg(st == NULL, "%s", ad_status_message(st));
  ck_assert_int_eq(p->job.kind, PLAN_JOB_FIT);
  /* The job mirrors the config (seed_everything: 42, max_steps: 20, batch_size: 4,
   * max_length: 12, lr: 0.001) and the module's symbol bounds. */
  ck_assert_int_eq(p->job.seed, 42);
  ck_assert_int_eq(p->job.max_steps, 20);
  ck_assert_int_eq(p->job.batch_size, 4);
  ck_assert_int_eq(p->job.max_length, 12);
  ck_assert_int_eq(p->job.dtype, IR_DTYPE_F32);
  ck_assert(p->job.lr == 0.001 && p->job.beta2 == 0.999 && p->job.weight_decay == 0.01);
  int bsym = ir_module_find_symbol(p->module, "B");
  ck_assert_int_ge(bsym, 0);
  ck_assert_int_eq(p->module->symbols[bsym].bound, p->job.batch_size);
  ck_assert_str_eq(p->meta.created_by, "aidommc");
  ck_assert_str_eq(p->meta.target_cpu, "host");
  ck_assert_uint_gt(p->config_len, 0);
  ck_assert_ptr_nonnull(strstr(p->config_yaml, "model"));
  ck_assert_ptr_nonnull(ir_module_find_program(p->module, "train_step"));
  const ir_graph_t *eval = ir_module_find_program(p->module, "eval");
  ck_assert_ptr_nonnull(eval);
  ck_assert_uint_eq(p->nmemplans, p->module->nprograms);
  const plan_memplan_t *mp = plan_find_memplan(p, "eval");
  ck_assert_ptr_nonnull(mp);
  ck_assert_int_eq(mp->reuse, 1);
  ck_assert_uint_eq(mp->nvalues, eval->nvalues);
  ck_assert_int_gt(mp->peak_bytes, 0);
  ck_assert_int_le(mp->peak_bytes, mp->total_bytes);
  plan_free(p);

  /* --job, --no-reuse and dotted overrides reach the plan. */
  const char *plan2 = tu_tmpdir_path("tiny-predict.plan");
  tu_proc_t r = tu_run_tool(g_bin, "compile", g_config, "--job", "predict", "--no-reuse", "-o",
                            plan2, "--trainer.max_steps", "3", "--seed_everything=7", NULL);
  ck_assert_msg(r.code == 0, "compile failed (%d): %s", r.code, r.err);
  tu_proc_free(&r);
  st = plan_read(plan2, &p);
  ck_assert_msg(st == NULL, "%s", ad_status_message(st));
  ck_assert_int_eq(p->job.kind, PLAN_JOB_PREDICT);
  ck_assert_int_eq(p->job.max_steps, 3);
  ck_assert_int_eq(p->job.seed, 7);
  for (uint32_t i = 0; i < p->nmemplans; i++) ck_assert_int_eq(p->memplans[i].reuse, 0);
  plan_free(p);

  /* Compiling is deterministic: the same config gives the same bytes. */
  const char *plan3 = tu_tmpdir_path("tiny-again.plan");
  compile_tiny(plan3);
  size_t n1, n3;
  char *b1 = tu_read_file(plan_path, &n1), *b3 = tu_read_file(plan3, &n3);
  ck_assert_uint_eq(n1, n3);
  ck_assert_int_eq(memcmp(b1, b3, n1), 0);
  free(b1);
  free(b3);
}
END_TEST

START_TEST(test_inspect) {
  const char *plan_path = tu_tmpdir_path("tiny.plan");
  compile_tiny(plan_path);
  tu_proc_t r = tu_run_tool(g_bin, "inspect", plan_path, NULL);
  ck_assert_msg(r.code == 0, "inspect failed (%d): %s", r.code, r.err);
  ck_assert_uint_eq(r.err_len, 0);
  const char *want[] = {"job fit", "program 'eval'", "FLOPs/sample", "shape@bound",
                        "symbolic", "activations", "parameters:", "trainable",
                        "peak (reuse)", "peak (no reuse)", "train_step", "total"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    ck_assert_msg(strstr(r.out, want[i]) != NULL, "'%s' missing from:\n%s", want[i], r.out);
  /* Every table row of the eval program names a node of it: spot-check the output and a
   * matmul-like op. */
  ck_assert_msg(strstr(r.out, "linear") || strstr(r.out, "matmul"), "no contraction in:\n%s",
                r.out);
  tu_proc_free(&r);

  r = tu_run_tool(g_bin, "inspect", plan_path, "--full", NULL);
  ck_assert_int_eq(r.code, 0);
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "inspect", plan_path, "--bogus", NULL);
  expect_input_error(&r, "unknown option '--bogus'");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "inspect", tu_tmpdir_path("missing.plan"), NULL);
  expect_input_error(&r, "missing.plan");
  tu_proc_free(&r);
}
END_TEST

START_TEST(test_corrupt_plans_rejected) {
  const char *plan_path = tu_tmpdir_path("tiny.plan");
  compile_tiny(plan_path);
  size_t n;
  char *good = tu_read_file(plan_path, &n);
  ck_assert_uint_gt(n, 256);

  struct {
    const char *name;
    size_t len;    /* bytes kept */
    long flip;     /* byte to flip, or -1 */
    const char *why;
  } cases[] = {
      {"empty.plan", 0, -1, "not an aidomm plan"},
      {"cut-header.plan", 30, -1, "truncated"},
      {"cut-middle.plan", n / 2, -1, "truncated"},
      {"cut-last.plan", n - 1, -1, "truncated"},
      {"flip-magic.plan", n, 0, "not an aidomm plan"},
      {"flip-table.plan", n, PLAN_HEADER_SIZE + 9, "checksum mismatch"},
      {"flip-middle.plan", n, (long)(n / 2), "checksum mismatch"},
      {"flip-last.plan", n, (long)(n - 1), "checksum mismatch"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *path = tu_tmpdir_path(cases[i].name);
    char *d = malloc(n);
    memcpy(d, good, n);
    if (cases[i].flip >= 0) d[cases[i].flip] ^= 0x10;
    tu_write_file(path, d, cases[i].len);
    free(d);
    tu_proc_t r = tu_run_tool(g_bin, "inspect", path, NULL);
    expect_input_error(&r, cases[i].why);
    ck_assert_msg(strstr(r.err, path) != NULL, "stderr does not name the file: %s", r.err);
    ck_assert_uint_eq(r.out_len, 0);
    tu_proc_free(&r);
  }
  /* A YAML config is not a plan. */
  tu_proc_t r = tu_run_tool(g_bin, "inspect", g_config, NULL);
  expect_input_error(&r, "not an aidomm plan");
  tu_proc_free(&r);
  free(good);
}
END_TEST

START_TEST(test_print_after_dce) {
  const char *plan_path = tu_tmpdir_path("tiny.plan");
  tu_proc_t r = tu_run_tool(g_bin, "compile", g_config, "-o", plan_path, "--print-after=dce", NULL);
  ck_assert_msg(r.code == 0, "compile failed (%d): %s", r.code, r.err);
  ck_assert_ptr_nonnull(strstr(r.out, "; *** IR after dce ***"));
  ck_assert_ptr_nonnull(strstr(r.out, "aidomm-ir 1"));
  ck_assert_ptr_nonnull(strstr(r.out, "program \"eval\""));
  ck_assert_ptr_null(strstr(r.out, "IR after cse"));
  /* The dump is the text form: it parses back into a module. */
  const char *start = strstr(r.out, "aidomm-ir 1");
  ir_module_t *m = NULL;
  ad_status_t st = ir_parse_module(start, strlen(start), "<print-after>", &m);
  ck_assert_msg(st == NULL, "%s", ad_status_message(st));
  ck_assert_ptr_nonnull(ir_module_find_program(m, "train_step"));
  ir_module_free(m);
  tu_proc_free(&r);

  r = tu_run_tool(g_bin, "compile", g_config, "-o", plan_path, "--print-before", "all", NULL);
  ck_assert_int_eq(r.code, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "; *** IR before lower-training ***"));
  ck_assert_ptr_nonnull(strstr(r.out, "; *** IR before constfold ***"));
  tu_proc_free(&r);
}
END_TEST

static Suite *aidommc_suite(void) {
  Suite *s = suite_create("aidommc");
  TCase *tc = tcase_create("cli");
  tcase_add_checked_fixture(tc, setup, tu_tmpdir_remove);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_help_version_usage);
  tcase_add_test(tc, test_usage_errors);
  tcase_add_test(tc, test_missing_config);
  tcase_add_test(tc, test_compile_and_read);
  tcase_add_test(tc, test_inspect);
  tcase_add_test(tc, test_corrupt_plans_rejected);
  tcase_add_test(tc, test_print_after_dce);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(aidommc_suite()); }
