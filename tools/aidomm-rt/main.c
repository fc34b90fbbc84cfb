/* aidomm-rt: runs the job recorded in a plan. A thin main over runtime/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "plan/plan.h"
#include "runtime/train.h"

static const char *const kUsage =
    "usage: aidomm-rt run PLAN [--job fit|validate|test|predict] [--threads N]\n"
    "                          [--output_dir DIR] [--predictions log2tpm|zscore]\n"
    "                          [--progress on|off|auto] [--index_dir DIR]\n"
    "                          [--RUNTIME.KEY VALUE ...]\n"
    "  RUNTIME.KEY: a runtime config key, e.g. --ckpt_path W.safetensors,\n"
    "  --model.strict_loading false, --trainer.max_steps 5, --model.optimizer.lr 1e-3,\n"
    "  --data.init_args.path DIR, --seed_everything 7 (compile-time keys go to aidommc)\n"
    "       aidomm-rt --help | --version\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "aidomm-rt: error: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", kUsage);
  return 2;
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
  rt_run_options_t o = {.nthreads = 0, .job = -1, .out = stdout, .progress = -1};
  /* config overrides are passed on in command-line form, values included */
  char **ov = calloc((size_t)argc, sizeof *ov);
  int *ovpos = calloc((size_t)argc, sizeof *ovpos); /* argv position of each override word */
  int nov = 0, first_ov = 0;
  if (!ov || !ovpos) {
    free(ov);
    free(ovpos);
    return 1;
  }
  int rc = 0;
  for (int i = 2; i < argc && !rc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (a[0] != '-') {
      if (path) rc = usage_error("unexpected argument '%s'", a);
      path = a;
    } else if (!strcmp(a, "--threads")) {
      char *end;
      long n = v ? strtol(v, &end, 10) : -1;
      if (!v || !*v || *end || n < 0) rc = usage_error("%s needs a non-negative integer", a);
      o.nthreads = (int)n;
      i++;
    } else if (!strcmp(a, "--job")) {
      plan_job_kind_t k;
      if (!v || !plan_job_kind_from_name(v, &k))
        rc = usage_error("--job needs fit, validate, test or predict, not '%s'", v ? v : "");
      o.job = (int)k;
      i++;
    } else if (!strcmp(a, "--output_dir")) {
      if (!v) rc = usage_error("%s needs a folder", a);
      o.output_dir = v;
      i++;
    } else if (!strcmp(a, "--index_dir")) {
      if (!v) rc = usage_error("%s needs a folder", a);
      o.index_dir = v;
      i++;
    } else if (!strcmp(a, "--predictions")) {
      if (!v || (strcmp(v, "log2tpm") && strcmp(v, "zscore")))
        rc = usage_error("--predictions needs log2tpm or zscore, not '%s'", v ? v : "");
      else o.predictions_log2tpm = !strcmp(v, "log2tpm");
      i++;
    } else if (!strcmp(a, "--progress")) {
      if (!v || (strcmp(v, "on") && strcmp(v, "off") && strcmp(v, "auto")))
        rc = usage_error("--progress needs on, off or auto, not '%s'", v ? v : "");
      else o.progress = !strcmp(v, "on") ? 1 : !strcmp(v, "off") ? 0 : -1;
      i++;
    } else if (a[1] == '-' && a[2]) {
      if (!nov) first_ov = i;
      ovpos[nov] = i;
      ov[nov++] = argv[i];
      if (!strchr(a, '=')) {
        if (!v) {
          rc = usage_error("%s needs a value", a);
        } else {
          ovpos[nov] = i + 1;
          ov[nov++] = argv[++i];
        }
      }
    } else {
      rc = usage_error("unknown option '%s'", a);
    }
  }
  if (!rc && !path) rc = usage_error("%s", "missing PLAN");
  if (rc) {
    free(ov);
    free(ovpos);
    return rc;
  }
  o.noverrides = nov;
  o.overrides = ov;
  o.overrides_argpos = first_ov;
  o.override_argpos = ovpos;
  o.plan_path = path;
  plan_t *p = NULL;
  ad_status_t st = plan_read(path, &p);
  if (!st) st = rt_run_plan(p, &o);
  plan_free(p);
  free(ov);
  free(ovpos);
  if (st) {
    ad_status_print(st, "aidomm-rt", stderr);
    rc = ad_status_exit_code(st);
    ad_status_free(st);
    return rc;
  }
  return 0;
}
