/* The driver: the shared compile pipeline, the content-addressed plan cache (key stability, hits
 * that reuse the file, corrupt entries compiled again, the cache directory) and the `aidomm`
 * binary ($AIDOMM_BIN_DIR/aidomm): which overrides reach the cache key, and usage errors as one
 * line with exit code 2. Every test uses its own temporary cache directory. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver/compile.h"
#include "driver/plan_cache.h"
#include "plan/plan.h"
#include "tests/support/test_util.h"

#define TINY_CONFIG "configs/tiny_transformer.yaml"

static char g_bin[1024];
static char g_config[1024];
static const char *g_configs[1];

static void setup(void) {
  tu_bin_path(g_bin, sizeof g_bin, "aidomm");
  snprintf(g_config, sizeof g_config, "%s/%s", tu_source_dir(), TINY_CONFIG);
  g_configs[0] = g_config;
  tu_tmpdir_create("driver");
  /* Tests fork per case (Check's default), so this never leaks into another test. */
  ck_assert_int_eq(setenv("AIDOMM_CACHE_DIR", tu_tmpdir(), 1), 0);
}

static drv_compile_request_t tiny_request(int noverrides, char **overrides) {
  return (drv_compile_request_t){.nconfigs = 1, .configs = g_configs,
                                 .noverrides = noverrides, .overrides = overrides,
                                 .job = PLAN_JOB_FIT, .reuse = 1, .created_by = "aidomm"};
}

static void key_of(const drv_compile_request_t *req, char hex[DRV_CACHE_KEY_HEX + 1]) {
  tu_ok(drv_plan_cache_key(req, hex));
  ck_assert_uint_eq(strlen(hex), DRV_CACHE_KEY_HEX);
}

static void count_file(const char *path, const char *name, void *ctx) { ++*(int *)ctx; }

static int count_plans(const char *dir) {
  int n = 0;
  tu_for_each_file(dir, ".plan", count_file, &n);
  return n;
}

/* Exit code 2, exactly one (newline-terminated) line on stderr containing `want`. */
static void expect_input_error(tu_proc_t *r, const char *want) {
  ck_assert_msg(r->code == 2, "exit code %d (expected 2); stderr: %s", r->code, r->err);
  ck_assert_msg(tu_count_lines(r->err, r->err_len) == 1 && r->err[r->err_len - 1] == '\n',
                "expected one line on stderr, got: %s", r->err);
  ck_assert_msg(strstr(r->err, want) != NULL, "expected '%s' in stderr: %s", want, r->err);
}

/* ---- key ------------------------------------------------------------------------------------ */

START_TEST(test_sha256_and_key_text) {
  char hex[DRV_CACHE_KEY_HEX + 1];
  tu_ok(drv_sha256_hex("abc", 3, hex));
  ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  tu_ok(drv_sha256_hex("", 0, hex));
  ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

  ad_buf_t b = {0};
  drv_plan_cache_key_text(0, "a: 1\n", 5, &b);
  char want[128];
  snprintf(want, sizeof want, "aidomm %s\nplan-format %u\ncompiler %u\nreuse 0\na: 1\n",
           AIDOMM_VERSION, PLAN_FORMAT_VERSION, DRV_COMPILER_REVISION);
  ck_assert_uint_eq(b.len, strlen(want));
  ck_assert_int_eq(memcmp(b.data, want, b.len), 0);
  ad_buf_free(&b);
}
END_TEST

START_TEST(test_key_stability) {
  char k1[DRV_CACHE_KEY_HEX + 1], k2[DRV_CACHE_KEY_HEX + 1], k3[DRV_CACHE_KEY_HEX + 1];
  drv_compile_request_t req = tiny_request(0, NULL);
  key_of(&req, k1);
  key_of(&req, k2);
  ck_assert_str_eq(k1, k2);

  /* The job kind is not in the key; the reuse flag is. */
  req.job = PLAN_JOB_PREDICT;
  key_of(&req, k2);
  ck_assert_str_eq(k1, k2);
  req.reuse = 0;
  key_of(&req, k2);
  ck_assert_str_ne(k1, k2);

  /* A compile-time and a bound-changing override each give a new key; the same override, in
   * either spelling, gives the same key every time. */
  char *compile_ov[] = {"--model.init_args.hidden_size", "64"};
  req = tiny_request(2, compile_ov);
  key_of(&req, k2);
  ck_assert_str_ne(k1, k2);
  key_of(&req, k3);
  ck_assert_str_eq(k2, k3);
  char *compile_eq[] = {"--model.init_args.hidden_size=64"};
  req = tiny_request(1, compile_eq);
  key_of(&req, k3);
  ck_assert_str_eq(k2, k3);
  char *bound_ov[] = {"--data.batch_size", "2"};
  req = tiny_request(2, bound_ov);
  key_of(&req, k3);
  ck_assert_str_ne(k1, k3);
  ck_assert_str_ne(k2, k3);

  /* A layered config file that changes nothing keeps the key... */
  const char *same = tu_tmpdir_path("same.yaml");
  tu_write_file(same, "trainer:\n  precision: 32\n", 25);
  const char *two[] = {g_config, same};
  req = tiny_request(0, NULL);
  req.nconfigs = 2;
  req.configs = two;
  key_of(&req, k3);
  ck_assert_str_eq(k1, k3);
  /* ... and one that edits a compile-time key changes it. */
  const char *f64 = tu_tmpdir_path("f64.yaml");
  tu_write_file(f64, "trainer:\n  precision: 64\n", 25);
  two[1] = f64;
  key_of(&req, k3);
  ck_assert_str_ne(k1, k3);

  /* Config errors come back as the frontend reports them. */
  char *bad[] = {"--trainer.max_steps"};
  req = tiny_request(1, bad);
  tu_expect_invalid(drv_plan_cache_key(&req, k3), "needs a value", NULL);
}
END_TEST

/* ---- cache ---------------------------------------------------------------------------------- */

START_TEST(test_cache_miss_then_hit) {
  drv_compile_request_t req = tiny_request(0, NULL);
  char key[DRV_CACHE_KEY_HEX + 1];
  key_of(&req, key);

  plan_t *p = NULL;
  drv_cache_result_t res;
  tu_ok(drv_plan_cache_get(&req, NULL, &p, &res));
  ck_assert(!res.hit && !res.replaced);
  ck_assert_str_eq(res.key, key);
  char want[700];
  snprintf(want, sizeof want, "%s/%s.plan", tu_tmpdir(), key);
  ck_assert_str_eq(res.path, want);
  ck_assert(res.compile_seconds > 0);
  ck_assert_ptr_nonnull(ir_module_find_program(p->module, "train_step"));
  ck_assert_str_eq(p->meta.created_by, "aidomm");
  ck_assert_int_eq(p->job.max_steps, 20);
  plan_free(p);
  drv_cache_result_free(&res);
  ck_assert_int_eq(count_plans(tu_tmpdir()), 1);
  struct stat s1, s2;
  ck_assert_int_eq(stat(want, &s1), 0);

  /* A hit reads the same file: not rewritten (same inode and modification time). The job kind
   * asked for is the one handed back, while the file keeps the canonical fit job. */
  req.job = PLAN_JOB_PREDICT;
  tu_ok(drv_plan_cache_get(&req, NULL, &p, &res));
  ck_assert(res.hit && !res.replaced);
  ck_assert_str_eq(res.key, key);
  ck_assert(res.compile_seconds == 0);
  ck_assert_int_eq(p->job.kind, PLAN_JOB_PREDICT);
  plan_free(p);
  drv_cache_result_free(&res);
  ck_assert_int_eq(stat(want, &s2), 0);
  ck_assert_uint_eq(s1.st_ino, s2.st_ino);
  ck_assert_int_eq(s1.st_mtim.tv_sec, s2.st_mtim.tv_sec);
  ck_assert_int_eq(s1.st_mtim.tv_nsec, s2.st_mtim.tv_nsec);
  tu_ok(plan_read(want, &p));
  ck_assert_int_eq(p->job.kind, PLAN_JOB_FIT);
  plan_free(p);

  /* The cached plan is byte-identical to what drv_compile makes for the same request. */
  req.job = PLAN_JOB_FIT;
  tu_ok(drv_compile(&req, &p));
  ad_buf_t b = {0};
  tu_ok(plan_encode(p, &b));
  size_t n;
  char *cached = tu_read_file(want, &n);
  ck_assert_uint_eq(n, b.len);
  ck_assert_int_eq(memcmp(cached, b.data, n), 0);
  free(cached);
  ad_buf_free(&b);
  plan_free(p);

  /* Another config is another entry. */
  char *ov[] = {"--model.init_args.num_hidden_layers", "1"};
  req = tiny_request(2, ov);
  tu_ok(drv_plan_cache_get(&req, NULL, &p, &res));
  ck_assert(!res.hit);
  ck_assert_str_ne(res.key, key);
  plan_free(p);
  drv_cache_result_free(&res);
  ck_assert_int_eq(count_plans(tu_tmpdir()), 2);
}
END_TEST

START_TEST(test_corrupt_entry_recompiled) {
  drv_compile_request_t req = tiny_request(0, NULL);
  plan_t *p = NULL;
  drv_cache_result_t res;
  tu_ok(drv_plan_cache_get(&req, NULL, &p, &res));
  plan_free(p);
  char *entry = strdup(res.path);
  drv_cache_result_free(&res);
  size_t n;
  char *good = tu_read_file(entry, &n);

  /* Garbage, a truncated file, a flipped byte and a valid plan of another config each are
   * compiled again and overwritten with the good bytes. */
  plan_t *other = NULL;
  char *ov[] = {"--model.init_args.num_hidden_layers", "1"};
  drv_compile_request_t oreq = tiny_request(2, ov);
  tu_ok(drv_compile(&oreq, &other));
  ad_buf_t ob = {0};
  tu_ok(plan_encode(other, &ob));
  plan_free(other);
  char *flipped = malloc(n);
  memcpy(flipped, good, n);
  flipped[n / 2] ^= 0x20;
  struct {
    const void *data;
    size_t len;
  } cases[] = {{"not a plan", 10}, {good, n / 2}, {flipped, n}, {ob.data, ob.len}, {"", 0}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    tu_write_file(entry, cases[i].data, cases[i].len);
    drv_cache_result_t r2;
    tu_ok(drv_plan_cache_get(&req, NULL, &p, &r2));
    ck_assert_msg(!r2.hit && r2.replaced, "case %zu was not recompiled", i);
    ck_assert_str_eq(r2.path, entry);
    plan_free(p);
    drv_cache_result_free(&r2);
    size_t n2;
    char *again = tu_read_file(entry, &n2);
    ck_assert_uint_eq(n2, n);
    ck_assert_int_eq(memcmp(again, good, n), 0);
    free(again);
  }
  /* And now it is a hit again. */
  tu_ok(drv_plan_cache_get(&req, NULL, &p, &res));
  ck_assert(res.hit);
  plan_free(p);
  drv_cache_result_free(&res);
  ck_assert_int_eq(count_plans(tu_tmpdir()), 1);
  ad_buf_free(&ob);
  free(flipped);
  free(good);
  free(entry);
}
END_TEST

START_TEST(test_cache_dir) {
  char *d = NULL;
  ck_assert_int_eq(setenv("AIDOMM_CACHE_DIR", "/some/where", 1), 0);
  ck_assert_int_eq(setenv("XDG_CACHE_HOME", "/xdg", 1), 0);
  ck_assert_int_eq(setenv("HOME", "/home/u", 1), 0);
  tu_ok(drv_plan_cache_dir(&d));
  ck_assert_str_eq(d, "/some/where");
  free(d);
  unsetenv("AIDOMM_CACHE_DIR");
  tu_ok(drv_plan_cache_dir(&d));
  ck_assert_str_eq(d, "/xdg/aidomm/plans");
  free(d);
  /* A relative XDG_CACHE_HOME is ignored, as the XDG spec asks; so is an empty one. */
  ck_assert_int_eq(setenv("XDG_CACHE_HOME", "rel", 1), 0);
  tu_ok(drv_plan_cache_dir(&d));
  ck_assert_str_eq(d, "/home/u/.cache/aidomm/plans");
  free(d);
  ck_assert_int_eq(setenv("XDG_CACHE_HOME", "", 1), 0);
  ck_assert_int_eq(setenv("AIDOMM_CACHE_DIR", "", 1), 0);
  tu_ok(drv_plan_cache_dir(&d));
  ck_assert_str_eq(d, "/home/u/.cache/aidomm/plans");
  free(d);
  unsetenv("XDG_CACHE_HOME");
  unsetenv("AIDOMM_CACHE_DIR");
  unsetenv("HOME");
  tu_expect_invalid(drv_plan_cache_dir(&d), "AIDOMM_CACHE_DIR", NULL);
  ck_assert_ptr_null(d);

  /* The directory is created with its parents. */
  char nested[700];
  snprintf(nested, sizeof nested, "%s/a/b/plans", tu_tmpdir());
  ck_assert_int_eq(setenv("AIDOMM_CACHE_DIR", nested, 1), 0);
  drv_compile_request_t req = tiny_request(0, NULL);
  plan_t *p = NULL;
  drv_cache_result_t res;
  tu_ok(drv_plan_cache_get(&req, NULL, &p, &res));
  ck_assert(!res.hit);
  ck_assert_int_eq(count_plans(nested), 1);
  ck_assert_int_eq(unlink(res.path), 0);
  plan_free(p);
  drv_cache_result_free(&res);
  ck_assert_int_eq(rmdir(nested), 0);
  ck_assert_int_eq(rmdir(tu_tmpdir_path("a/b")), 0);
  ck_assert_int_eq(rmdir(tu_tmpdir_path("a")), 0);

  /* A file where the directory should be is one clear error. */
  const char *file = tu_tmpdir_path("file");
  tu_write_file(file, "x", 1);
  snprintf(nested, sizeof nested, "%s/sub", file);
  tu_expect_msg(drv_plan_cache_get(&req, nested, &p, &res), file, "not a directory");
  ck_assert_ptr_null(p);
}
END_TEST

/* ---- the aidomm binary ---------------------------------------------------------------------- */

START_TEST(test_cli_help_and_usage_errors) {
  tu_proc_t r = tu_run_tool(g_bin, "--help", NULL);
  ck_assert_int_eq(r.code, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: aidomm fit|validate|test|predict --config"));
  ck_assert_ptr_nonnull(strstr(r.out, "AIDOMM_CACHE_DIR"));
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "fit", "--help", NULL);
  ck_assert_int_eq(r.code, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: aidomm"));
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "--version", NULL);
  ck_assert_int_eq(r.code, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "aidomm " AIDOMM_VERSION));
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, NULL);
  ck_assert_int_eq(r.code, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "usage:"));
  tu_proc_free(&r);

  r = tu_run_tool(g_bin, "train", "--config", g_config, NULL);
  expect_input_error(&r, "aidomm: error: unknown command 'train'");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "--frobnicate", NULL);
  expect_input_error(&r, "unknown option '--frobnicate'");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "fit", NULL);
  expect_input_error(&r, "fit needs a config: --config FILE");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "predict", "--trainer.max_steps", "3", NULL);
  expect_input_error(&r, "predict needs a config");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "fit", "--config", NULL);
  expect_input_error(&r, "'--config' needs a value");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "fit", g_config, NULL);
  expect_input_error(&r, "unexpected argument");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "fit", "--config", g_config, "--threads", "many", NULL);
  expect_input_error(&r, "--threads needs a thread count");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "fit", "--config", g_config, "--frobnicate", NULL);
  expect_input_error(&r, "unknown option '--frobnicate'");
  tu_proc_free(&r);
  /* An unknown dotted key: the frontend's message, placed at its argument. */
  r = tu_run_tool(g_bin, "fit", "--config", g_config, "--trainer.frobnicate", "1", NULL);
  expect_input_error(&r, "<command line>:1:4: error: unknown config key '--trainer.frobnicate'");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "fit", "--config", g_config, "--data.init_args.frobnicate=1", NULL);
  expect_input_error(&r, "unknown config key '--data.init_args.frobnicate'");
  tu_proc_free(&r);
  r = tu_run_tool(g_bin, "fit", "--config", g_config, "--trainer.max_steps", NULL);
  expect_input_error(&r, "needs a value");
  tu_proc_free(&r);
  /* A config error is the frontend's one line too. */
  r = tu_run_tool(g_bin, "fit", "--config", tu_tmpdir_path("missing.yaml"), NULL);
  expect_input_error(&r, "missing.yaml");
  tu_proc_free(&r);
  /* None of these compiled anything. */
  ck_assert_int_eq(count_plans(tu_tmpdir()), 0);
}
END_TEST

/* The plan key printed on stderr: "aidomm: plan <hex12> (cached|compiled in X s) PATH". */
static void plan_line(const tu_proc_t *r, char hex12[13], bool *cached) {
  const char *l = strstr(r->err, "aidomm: plan ");
  ck_assert_msg(l != NULL, "no plan line in stderr: %s", r->err);
  l += strlen("aidomm: plan ");
  memcpy(hex12, l, 12);
  hex12[12] = '\0';
  *cached = strncmp(l + 12, " (cached) ", 10) == 0;
  ck_assert_msg(*cached || strncmp(l + 12, " (compiled in ", 14) == 0, "plan line: %s", r->err);
}

START_TEST(test_cli_runtime_keys_keep_the_plan) {
  char key[DRV_CACHE_KEY_HEX + 1], hex[13];
  drv_compile_request_t req = tiny_request(0, NULL);
  key_of(&req, key);
  bool cached;

  tu_proc_t r = tu_run_tool(g_bin, "fit", "--config", g_config, "--trainer.max_steps", "1",
                            "--threads", "2", NULL);
  ck_assert_msg(r.code == 0, "aidomm fit failed (%d): %s", r.code, r.err);
  plan_line(&r, hex, &cached);
  ck_assert(!cached);
  ck_assert_int_eq(strncmp(hex, key, 12), 0);
  ck_assert_ptr_nonnull(strstr(r.err, tu_tmpdir()));
  tu_proc_free(&r);
  ck_assert_int_eq(count_plans(tu_tmpdir()), 1);
  char path[700];
  snprintf(path, sizeof path, "%s/%s.plan", tu_tmpdir(), key);
  struct stat s1, s2;
  ck_assert_int_eq(stat(path, &s1), 0);

  /* Runtime keys (max_steps, lr, seed) go to the runtime: same plan, read from the cache. */
  r = tu_run_tool(g_bin, "fit", "--config", g_config, "--trainer.max_steps=1",
                  "--optimizer.lr", "0.01", "--seed_everything", "3", NULL);
  ck_assert_msg(r.code == 0, "aidomm fit failed (%d): %s", r.code, r.err);
  plan_line(&r, hex, &cached);
  ck_assert(cached);
  ck_assert_int_eq(strncmp(hex, key, 12), 0);
  tu_proc_free(&r);
  ck_assert_int_eq(stat(path, &s2), 0);
  ck_assert_uint_eq(s1.st_ino, s2.st_ino);
  ck_assert_int_eq(s1.st_mtim.tv_nsec, s2.st_mtim.tv_nsec);

  /* A compile-time key selects another plan. */
  r = tu_run_tool(g_bin, "fit", "--config", g_config, "--model.init_args.num_hidden_layers", "1",
                  "--trainer.max_steps", "1", NULL);
  ck_assert_msg(r.code == 0, "aidomm fit failed (%d): %s", r.code, r.err);
  plan_line(&r, hex, &cached);
  ck_assert(!cached);
  ck_assert_int_ne(strncmp(hex, key, 12), 0);
  tu_proc_free(&r);
  ck_assert_int_eq(count_plans(tu_tmpdir()), 2);
}
END_TEST

static Suite *driver_suite(void) {
  Suite *s = suite_create("driver");
  TCase *tc = tcase_create("cache");
  tcase_add_checked_fixture(tc, setup, tu_tmpdir_remove);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_sha256_and_key_text);
  tcase_add_test(tc, test_key_stability);
  tcase_add_test(tc, test_cache_miss_then_hit);
  tcase_add_test(tc, test_corrupt_entry_recompiled);
  tcase_add_test(tc, test_cache_dir);
  suite_add_tcase(s, tc);
  TCase *cli = tcase_create("cli");
  tcase_add_checked_fixture(cli, setup, tu_tmpdir_remove);
  tcase_set_timeout(cli, 120);
  tcase_add_test(cli, test_cli_help_and_usage_errors);
  tcase_add_test(cli, test_cli_runtime_keys_keep_the_plan);
  suite_add_tcase(s, cli);
  return s;
}

int main(void) { return tu_run_suite(driver_suite()); }
