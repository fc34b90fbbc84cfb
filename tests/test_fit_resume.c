/* A run killed at any moment resumes to exactly the state of an uninterrupted run (issue 5):
 * the tiny DNA+RNA config trains on generated demo data (runtime/demodata.c) with a periodic
 * checkpoint; a reference run goes straight through; other runs die
 *   - inside a checkpoint write, after the temp file is complete (AIDOMM_FAULT_INJECT=after_temp),
 *   - right after the rename (after_rename),
 *   - by SIGKILL at seeded random moments,
 *   - by SIGTERM (which saves and exits 143),
 * and are resumed with --ckpt_path <out>/last.safetensors. The final checkpoint (parameters,
 * BatchNorm buffers, AdamW moments, position) must equal the reference byte for byte and the
 * metrics CSV must hold the same rows, none duplicated or missing. The config's ModelCheckpoint
 * (monitor val_spearman, top-k, last) runs too, its bookkeeping carried in every checkpoint. */
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/demodata.h"
#include "support/test_util.h"

#define STEPS "30"

static char g_plan[1024], g_data[1024];

static void setup_once(void) {
  if (g_plan[0]) return;
  char bin[1024];
  tu_bin_path(bin, sizeof bin, "aidommc");
  snprintf(g_plan, sizeof g_plan, "%s", tu_tmpdir_path("concat.plan"));
  tu_proc_t r = tu_run_tool(
      bin, "compile", tu_source_path("configs/tiny_isoform_expression_dna_rna_concat.yaml"), "-o",
      g_plan, NULL);
  ck_assert_msg(r.code == 0, "compile: %s", r.err);
  tu_proc_free(&r);
  snprintf(g_data, sizeof g_data, "%s", tu_tmpdir_path("data"));
  rt_demo_options_t o;
  rt_demo_defaults(&o);
  o.train_rows = 26;
  o.val_rows = 6;
  o.test_rows = 6;
  o.train_files = 2;
  o.dna_length = 300;
  tu_ok(rt_demo_generate(g_data, &o, NULL));
}

/* argv of a fit run into out/, resuming from out/last.safetensors when `resume`. */
static int fit_argv(char **argv, char *bin, const char *out, bool resume, char *ckpt) {
  tu_bin_path(bin, 1024, "aidomm-rt");
  int n = 0;
  argv[n++] = bin;
  argv[n++] = "run";
  argv[n++] = g_plan;
  argv[n++] = "--progress";
  argv[n++] = "off";
  argv[n++] = "--threads";
  argv[n++] = "1";
  (void)out; /* the child runs inside out/: every path the checkpoints record is relative */
  argv[n++] = "--output_dir";
  argv[n++] = ".";
  argv[n++] = "--trainer.callbacks.0.init_args.dirpath";
  argv[n++] = "ck";
  argv[n++] = "--data.init_args.path";
  argv[n++] = g_data;
  argv[n++] = "--trainer.max_steps";
  argv[n++] = STEPS;
  argv[n++] = "--trainer.max_epochs";
  argv[n++] = "100";
  argv[n++] = "--trainer.val_check_interval";
  argv[n++] = "7";
  argv[n++] = "--trainer.callbacks.0.init_args.every_n_train_steps";
  argv[n++] = "4";
  if (resume) {
    snprintf(ckpt, 1100, "last.safetensors");
    argv[n++] = "--ckpt_path";
    argv[n++] = ckpt;
  }
  argv[n] = NULL;
  return n;
}

/* How a fit run is started and disturbed. */
typedef struct fit_run {
  bool resume;             /* --ckpt_path last.safetensors */
  const char *fault;       /* AIDOMM_FAULT_INJECT, or NULL */
  const char *key, *value; /* one more override, or NULL */
  long fsize_limit;        /* > 0: RLIMIT_FSIZE (a full disk: writes fail with EFBIG) */
  int sig;                 /* with kill_after_ms > 0: the signal sent */
  long kill_after_ms;
} fit_run_t;

/* Runs fit in `out` (stderr to tmp/child.err) to completion or until killed; returns the wait
 * status. */
static int spawn_fit(const char *out, const fit_run_t *r) {
  char bin[1024], ckpt[1100];
  char *argv[40];
  int n = fit_argv(argv, bin, out, r->resume, ckpt);
  if (r->key) {
    argv[n++] = (char *)r->key;
    argv[n++] = (char *)r->value;
    argv[n] = NULL;
  }
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    if (!freopen("/dev/null", "w", stdout)) _exit(126);
    if (!freopen(tu_tmpdir_path("child.err"), "w", stderr)) _exit(126);
    mkdir(out, 0777);
    if (chdir(out) != 0) _exit(125);
    if (r->fault) setenv("AIDOMM_FAULT_INJECT", r->fault, 1);
    else unsetenv("AIDOMM_FAULT_INJECT");
    if (r->fsize_limit > 0) {
      signal(SIGXFSZ, SIG_IGN);
      struct rlimit rl = {(rlim_t)r->fsize_limit, (rlim_t)r->fsize_limit};
      setrlimit(RLIMIT_FSIZE, &rl);
    }
    execv(bin, argv);
    _exit(127);
  }
  if (r->kill_after_ms > 0) {
    if (r->sig == SIGTERM || r->sig == SIGINT) {
      /* SIGTERM must land once the handlers are in place (the first logged step), else the
       * default action kills the run before it could save (slow under the sanitizers) */
      char csv[1100];
      snprintf(csv, sizeof csv, "%s/metrics.csv", out);
      for (int i = 0; i < 4000; i++) {
        struct stat sb;
        if (stat(csv, &sb) == 0 && sb.st_size > 40) break;
        struct timespec tick = {0, 5000000L};
        nanosleep(&tick, NULL);
      }
    }
    struct timespec ts = {r->kill_after_ms / 1000, (r->kill_after_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    kill(pid, r->sig);
  }
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  return status;
}

static int run_fit(const char *out, bool resume, const char *fault, int sig, long kill_after_ms) {
  fit_run_t r = {.resume = resume, .fault = fault, .sig = sig, .kill_after_ms = kill_after_ms};
  return spawn_fit(out, &r);
}

static bool exists(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0;
}

/* Resumes (or starts afresh when no checkpoint was written yet) until the run completes. */
static void finish(const char *out) {
  char ck[1100];
  snprintf(ck, sizeof ck, "%s/last.safetensors", out);
  int status = run_fit(out, exists(ck), NULL, 0, 0);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "resume failed: %d", status);
}

/* The sorted names in dir/ck (the ModelCheckpoint files), newline-separated (malloc'd). */
static char *ck_listing(const char *dir) {
  char path[1100];
  snprintf(path, sizeof path, "%s/ck", dir);
  char *names[64];
  int n = 0;
  DIR *d = opendir(path);
  ck_assert_ptr_nonnull(d);
  struct dirent *e;
  while ((e = readdir(d)) && n < 64)
    if (e->d_name[0] != '.' && !strstr(e->d_name, ".tmp.")) names[n++] = strdup(e->d_name);
  closedir(d);
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (strcmp(names[j], names[i]) < 0) {
        char *t = names[i];
        names[i] = names[j];
        names[j] = t;
      }
  size_t len = 1;
  for (int i = 0; i < n; i++) len += strlen(names[i]) + 1;
  char *out = calloc(1, len);
  for (int i = 0; i < n; i++) {
    strcat(out, names[i]);
    strcat(out, "\n");
    free(names[i]);
  }
  return out;
}

static void expect_same_as_reference(const char *out) {
  char *la_ = ck_listing(tu_tmpdir_path("ref")), *lb_ = ck_listing(out);
  ck_assert_msg(strcmp(la_, lb_) == 0, "checkpoint files differ:\n%s---\n%s", la_, lb_);
  ck_assert_msg(strstr(la_, "best_val:step=") != NULL, "no top-k file written:\n%s", la_);
  free(la_);
  free(lb_);
  char a[1100], b[1100];
  snprintf(a, sizeof a, "%s/last.safetensors", tu_tmpdir_path("ref"));
  snprintf(b, sizeof b, "%s/last.safetensors", out);
  size_t la, lb;
  char *x = tu_read_file(a, &la), *y = tu_read_file(b, &lb);
  ck_assert_msg(la == lb && memcmp(x, y, la) == 0, "%s differs from the uninterrupted run", b);
  free(x);
  free(y);
  snprintf(a, sizeof a, "%s/metrics.csv", tu_tmpdir_path("ref"));
  snprintf(b, sizeof b, "%s/metrics.csv", out);
  x = tu_read_file(a, &la);
  y = tu_read_file(b, &lb);
  if (la != lb || memcmp(x, y, la) != 0) {
    fprintf(stderr, "reference %s:\n%s\nresumed %s:\n%s\n", a, x, b, y);
    ck_abort_msg("%s: rows differ from the reference (printed on stderr)", b);
  }
  free(x);
  free(y);
}

static void reference(void) {
  setup_once();
  char ck[1100];
  snprintf(ck, sizeof ck, "%s/last.safetensors", tu_tmpdir_path("ref"));
  if (exists(ck)) return;
  int status = run_fit(tu_tmpdir_path("ref"), false, NULL, 0, 0);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reference run: %d", status);
}

START_TEST(test_fault_after_temp_write) {
  reference();
  char out[1024];
  snprintf(out, sizeof out, "%s", tu_tmpdir_path("after_temp"));
  int status = run_fit(out, false, "after_temp:3", 0, 0); /* dies in the 3rd write */
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 137, "status %d", status);
  finish(out);
  expect_same_as_reference(out);
}
END_TEST

START_TEST(test_fault_after_rename) {
  reference();
  char out[1024];
  snprintf(out, sizeof out, "%s", tu_tmpdir_path("after_rename"));
  int status = run_fit(out, false, "after_rename:2", 0, 0);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 137, "status %d", status);
  finish(out);
  expect_same_as_reference(out);
}
END_TEST

START_TEST(test_sigkill_at_random_moments) {
  reference();
  uint64_t rng = 0x5eed2026u;
  for (int k = 0; k < 3; k++) {
    char name[32], out[1024];
    snprintf(name, sizeof name, "kill%d", k);
    snprintf(out, sizeof out, "%s", tu_tmpdir_path(name));
    /* two kills per run at seeded moments, then a clean finish */
    for (int r = 0; r < 2; r++) {
      long ms = 60 + (long)(tu_xorshift64(&rng) % 500);
      char ck[1100];
      snprintf(ck, sizeof ck, "%s/last.safetensors", out);
      run_fit(out, exists(ck), NULL, SIGKILL, ms);
    }
    finish(out);
    expect_same_as_reference(out);
  }
}
END_TEST

START_TEST(test_sigterm_saves_and_exits_143) {
  reference();
  char out[1024];
  snprintf(out, sizeof out, "%s", tu_tmpdir_path("term"));
  int status = run_fit(out, false, NULL, SIGTERM, 20);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return; /* finished first: nothing to test */
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 143, "status %d", status);
  char ck[1100];
  snprintf(ck, sizeof ck, "%s/last.safetensors", out);
  ck_assert(exists(ck));
  finish(out);
  expect_same_as_reference(out);
}
END_TEST

static int run_fit_extra(const char *out, const char *k1, const char *v1, long fsize_limit,
                         bool resume) {
  fit_run_t r = {.resume = resume, .key = k1, .value = v1, .fsize_limit = fsize_limit};
  return spawn_fit(out, &r);
}

START_TEST(test_sigint_saves_and_exits_130) {
  reference();
  char out[1024];
  snprintf(out, sizeof out, "%s", tu_tmpdir_path("int"));
  int status = run_fit(out, false, NULL, SIGINT, 20);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return; /* finished first */
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 130, "status %d", status);
  finish(out);
  expect_same_as_reference(out);
}
END_TEST

START_TEST(test_reset_optimizer_states) {
  reference();
  char out[1024], ck[1100], ref[1100];
  snprintf(out, sizeof out, "%s", tu_tmpdir_path("reset"));
  snprintf(ck, sizeof ck, "%s/last.safetensors", out);
  snprintf(ref, sizeof ref, "%s/last.safetensors", tu_tmpdir_path("ref"));
  int status = run_fit_extra(out, "--trainer.max_steps", "12", 0, false);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
  /* resumed with fresh AdamW moments: it completes, but not on the uninterrupted trajectory */
  status = run_fit_extra(out, "--model.reset_optimizer_states", "true", 0, true);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
  size_t na, nb;
  char *a = tu_read_file(ref, &na), *b = tu_read_file(ck, &nb);
  ck_assert_msg(na != nb || memcmp(a, b, na) != 0, "reset_optimizer_states changed nothing");
  free(a);
  free(b);
}
END_TEST

START_TEST(test_nan_loss_stops_without_saving_over_work) {
  reference();
  char out[1024];
  snprintf(out, sizeof out, "%s", tu_tmpdir_path("nan"));
  int status = run_fit_extra(out, "--model.optimizer.lr", "1e30", 0, false);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d", status);
  char *err = tu_read_file(tu_tmpdir_path("child.err"), NULL);
  ck_assert_msg(strstr(err, "the loss (output 'loss' of train_step) is") && strstr(err, "at step") &&
                    strstr(err, "holds"),
                "%s", err);
  free(err);
}
END_TEST

START_TEST(test_disk_full_keeps_the_previous_checkpoint) {
  reference();
  char out[1024], ck[1100];
  snprintf(out, sizeof out, "%s", tu_tmpdir_path("full"));
  snprintf(ck, sizeof ck, "%s/last.safetensors", out);
  /* a first run writes its checkpoints, then a resumed run meets a full disk */
  int status = run_fit_extra(out, "--trainer.max_steps", "8", 0, false);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
  size_t n0;
  char *before = tu_read_file(ck, &n0);
  status = run_fit_extra(out, "--trainer.max_steps", "16", 64 * 1024, true);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 0, "a full disk went unnoticed");
  size_t n1;
  char *after = tu_read_file(ck, &n1);
  ck_assert_msg(n0 == n1 && memcmp(before, after, n0) == 0, "the previous checkpoint changed");
  free(before);
  free(after);
  /* and no temp file is left behind */
  DIR *d = opendir(out);
  struct dirent *e;
  while ((e = readdir(d))) ck_assert_msg(!strstr(e->d_name, ".tmp."), "left %s", e->d_name);
  closedir(d);
}
END_TEST

static void setup(void) { tu_tmpdir_create("resume"); }

int main(void) {
  Suite *s = suite_create("fit_resume");
  TCase *tc = tcase_create("resume");
  tcase_add_unchecked_fixture(tc, setup, NULL);
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_fault_after_temp_write);
  tcase_add_test(tc, test_fault_after_rename);
  tcase_add_test(tc, test_sigkill_at_random_moments);
  tcase_add_test(tc, test_sigterm_saves_and_exits_143);
  tcase_add_test(tc, test_sigint_saves_and_exits_130);
  tcase_add_test(tc, test_reset_optimizer_states);
  tcase_add_test(tc, test_nan_loss_stops_without_saving_over_work);
  tcase_add_test(tc, test_disk_full_keeps_the_previous_checkpoint);
  suite_add_tcase(s, tc);
  int rc = tu_run_suite(s);
  tu_tmpdir_remove();
  return rc;
}
