/* aidomm-rt: runs the job recorded in a plan. A thin main over runtime/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "plan/plan.h"
#include "runtime/train.h"

static const char *const kUsage =
    "usage: aidomm-rt run PLAN [--threads N] [--trainer.max_steps N] [--model.optimizer.lr X]\n"
    "                          [--seed_everything N]\n"
    "       aidomm-rt --help | --version\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "aidomm-rt: error: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", kUsage);
  return 2;
}

static int parse_i64(const char *s, int64_t *out) {
  char *end;
  long long v = strtoll(s, &end, 10);
  if (!*s || *end) return 0;
  *out = v;
  return 1;
}

int main(int argc, char **argv) {
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    fputs(kUsage, stdout);
    return 0;
  }
  if (argc >= 2 && !strcmp(argv[1], "--version")) {
    printf("aidomm-rt %s\n", AIDOMM_VERSION);
    return 0;
  }
  if (argc < 2) return usage_error("%s", "missing command");
  if (strcmp(argv[1], "run") != 0) return usage_error("unknown command '%s'", argv[1]);
  const char *path = NULL;
  rt_run_options_t o = {.nthreads = 0, .max_steps = 0, .lr = 0, .seed = -1, .out = stdout};
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int64_t n;
    if (a[0] != '-') {
      if (path) return usage_error("unexpected argument '%s'", a);
      path = a;
    } else if (!strcmp(a, "--threads") || !strcmp(a, "--trainer.max_steps") ||
               !strcmp(a, "--seed_everything")) {
      if (!v || !parse_i64(v, &n) || n < 0) return usage_error("%s needs a non-negative integer", a);
      if (!strcmp(a, "--threads")) o.nthreads = (int)n;
      else if (!strcmp(a, "--trainer.max_steps")) o.max_steps = n;
      else o.seed = n;
      i++;
    } else if (!strcmp(a, "--model.optimizer.lr")) {
      char *end;
      if (!v || !(o.lr = strtod(v, &end), *v && !*end) || o.lr <= 0)
        return usage_error("%s needs a positive number", a);
      i++;
    } else if (a[1] == '-' && strchr(a, '.')) {
      /* A config key this tool cannot apply: say which tool can (compile-time keys need
       * aidommc), or that the key is unknown. */
      ad_status_t st = fe_key_check(a, FE_TOOL_RUNTIME, i);
      if (!st) st = ad_status_make(AD_STATUS_UNIMPLEMENTED,
                                   "%s is a runtime key that aidomm-rt does not apply yet", a);
      ad_status_print(st, "aidomm-rt", stderr);
      ad_status_free(st);
      return 2;
    } else {
      return usage_error("unknown option '%s'", a);
    }
  }
  if (!path) return usage_error("%s", "missing PLAN");
  plan_t *p = NULL;
  ad_status_t st = plan_read(path, &p);
  if (!st) st = rt_run_plan(p, &o);
  plan_free(p);
  if (st) {
    ad_status_print(st, "aidomm-rt", stderr);
    int rc = ad_status_exit_code(st);
    ad_status_free(st);
    return rc;
  }
  return 0;
}
