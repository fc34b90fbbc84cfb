/* aidomm: the one-command form, `aidomm fit --config X.yaml [--key.path value ...]`, as
 * ModelGenerator's `mgen fit`. Compiles the config into a plan through the content-addressed
 * plan cache (driver/plan_cache.h), then runs the plan's job. A thin main over driver/ and
 * runtime/.
 *
 * Each dotted override is classed by the frontend's key table: compile-time and bound-changing
 * keys go to the compiler (so they are part of the cache key), runtime keys go to the runtime
 * untouched, unknown keys are one error.
 *
 * Exit codes: 0 ok; 2 usage and input errors; 1 runtime failures (I/O, memory, internal). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver/compile.h"
#include "driver/plan_cache.h"
#include "frontend/frontend.h"
#include "plan/plan.h"
#include "runtime/train.h"
#include "support/cli.h"

#ifndef AIDOMM_VERSION
#define AIDOMM_VERSION "unknown"
#endif

#define TOOL "aidomm"

static const char g_usage[] =
    "usage: aidomm fit|validate|test|predict --config CONFIG [--config MORE ...] [options]\n"
    "                                        [--key.path VALUE ...]\n"
    "       aidomm --help | --version\n"
    "\n"
    "Compiles the config into a plan (or reuses the cached one) and runs the job on it.\n"
    "\n"
    "options:\n"
    "  --config FILE           a config file; repeat it to layer files (later ones override\n"
    "                          earlier ones key by key, as mgen does)\n"
    "  --threads N             worker threads (default: all CPUs)\n"
    "  --ckpt_path PATH        weights to start from\n"
    "  --output_dir DIR        where predictions and metrics go (default: the logger's folder)\n"
    "  --predictions log2tpm|zscore\n"
    "                          write predictions mapped back to log2(1e-4 + TPM), or as z-scores\n"
    "  --progress on|off|auto  progress lines (auto: a live line on a terminal)\n"
    "  --index_dir DIR         where TSV row indexes are cached (default: beside the data)\n"
    "  --key.path VALUE        override a config value (also --key.path=VALUE). Compile-time\n"
    "                          and bound-changing keys (model.*, data.batch_size,\n"
    "                          trainer.precision, ...) select the plan; runtime keys\n"
    "                          (trainer.max_steps, model.optimizer.lr, data.path,\n"
    "                          seed_everything, ...) are applied when the plan runs\n"
    "\n"
    "plan cache: $AIDOMM_CACHE_DIR, else $XDG_CACHE_HOME/aidomm/plans, else\n"
    "~/.cache/aidomm/plans; a plan is named by the SHA-256 of the resolved config and is\n"
    "compiled again when it is missing or unreadable.\n"
    "\n"
    "exit status: 0 success, 2 usage or input error, 1 runtime failure\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, TOOL ": error: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (see 'aidomm --help')\n");
  return 2;
}

static int fail(ad_status_t st) { return ad_status_report(st, TOOL); }


typedef struct args {
  plan_job_kind_t job;
  int nthreads;
  const char *output_dir;
  bool predictions_log2tpm;
  int progress; /* 1 on, 0 off, -1 auto */
  const char *index_dir;
  int nconfigs;
  const char **configs;
  int ncompile;
  char **compile; /* compile-time and bound-changing overrides, for the compiler */
  int nruntime;
  char **runtime; /* runtime overrides, untouched, for rt_run_plan */
  int runtime_argpos;    /* argv position of runtime[0] when they are contiguous in argv, else 0 */
  int runtime_next_pos;  /* argv position just past the last runtime override */
} args_t;

static int parse(int argc, char **argv, args_t *a) {
  a->configs = calloc((size_t)argc + 1, sizeof *a->configs);
  a->compile = calloc((size_t)argc + 1, sizeof *a->compile);
  a->runtime = calloc((size_t)argc + 1, sizeof *a->runtime);
  if (!a->configs || !a->compile || !a->runtime) return usage_error("%s", "out of memory");
  bool contiguous = true;
  for (int i = 2; i < argc; i++) {
    const char *arg = argv[i], *v;
    int missing;
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      fputs(g_usage, stdout);
      return 0;
    }
    if ((v = ad_cli_flag_value(argc, argv, &i, "--config", &missing))) {
      a->configs[a->nconfigs++] = v;
    } else if (!missing && (v = ad_cli_flag_value(argc, argv, &i, "--threads", &missing))) {
      char *end;
      long n = strtol(v, &end, 10);
      if (!*v || *end || n < 0 || n > 4096)
        return usage_error("--threads needs a thread count (0 to 4096), got '%s'", v);
      a->nthreads = (int)n;
    } else if (!missing && (v = ad_cli_flag_value(argc, argv, &i, "--output_dir", &missing))) {
      a->output_dir = v;
    } else if (!missing && (v = ad_cli_flag_value(argc, argv, &i, "--predictions", &missing))) {
      if (strcmp(v, "log2tpm") != 0 && strcmp(v, "zscore") != 0)
        return usage_error("--predictions needs log2tpm or zscore, not '%s'", v);
      a->predictions_log2tpm = strcmp(v, "log2tpm") == 0;
    } else if (!missing && (v = ad_cli_flag_value(argc, argv, &i, "--index_dir", &missing))) {
      a->index_dir = v;
    } else if (!missing && (v = ad_cli_flag_value(argc, argv, &i, "--progress", &missing))) {
      if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0 && strcmp(v, "auto") != 0)
        return usage_error("--progress needs on, off or auto, not '%s'", v);
      a->progress = !strcmp(v, "on") ? 1 : !strcmp(v, "off") ? 0 : -1;
    } else if (missing) {
      return usage_error("option '%s' needs a value", arg);
    } else if (strncmp(arg, "--", 2) == 0 && arg[2] && arg[2] != '=') {
      const char *key = arg + 2, *eq = strchr(key, '=');
      size_t klen = eq ? (size_t)(eq - key) : strlen(key);
      fe_key_class_t kc = fe_key_class(arg);
      if (kc == FE_KEY_UNKNOWN) {
        /* A dotted name is meant as a config key: the frontend's message names it. */
        if (!memchr(key, '.', klen)) return usage_error("unknown option '%s'", arg);
        return fail(fe_key_check(arg, FE_TOOL_COMPILE, i));
      }
      int start = i;
      if (!eq && i + 1 >= argc) return usage_error("override '%s' needs a value", arg);
      if (kc == FE_KEY_RUNTIME) {
        if (a->nruntime == 0)
          a->runtime_argpos = start;
        else if (a->runtime_next_pos != start)
          contiguous = false;
        a->runtime[a->nruntime++] = argv[i];
        if (!eq) a->runtime[a->nruntime++] = argv[++i];
        a->runtime_next_pos = i + 1;
      } else {
        a->compile[a->ncompile++] = argv[i];
        if (!eq) a->compile[a->ncompile++] = argv[++i];
      }
    } else if (arg[0] == '-' && arg[1]) {
      return usage_error("unknown option '%s'", arg);
    } else {
      return usage_error("unexpected argument '%s' (config files are given with --config)", arg);
    }
  }
  if (!contiguous) a->runtime_argpos = 0;
  if (a->nconfigs == 0)
    return usage_error("%s needs a config: --config FILE", plan_job_kind_name(a->job));
  return -1; /* go on */
}

static ad_status_t run(const args_t *a) {
  drv_compile_request_t req = {.nconfigs = a->nconfigs, .configs = a->configs,
                               .noverrides = a->ncompile, .overrides = a->compile,
                               .job = a->job, .reuse = 1, .print_stream = stderr,
                               .created_by = TOOL};
  drv_cache_result_t res;
  plan_t *p = NULL;
  AD_RETURN_IF_ERROR(drv_plan_cache_get(&req, NULL, &p, &res));
  if (res.hit)
    fprintf(stderr, TOOL ": plan %.12s (cached) %s\n", res.key, res.path);
  else
    fprintf(stderr, TOOL ": plan %.12s (compiled in %.2f s) %s\n", res.key, res.compile_seconds,
            res.path);
  fflush(stderr);
  rt_run_options_t o = {.nthreads = a->nthreads, .job = (int)a->job,
                        .noverrides = a->nruntime, .overrides = a->runtime,
                        .overrides_argpos = a->runtime_argpos, .plan_path = res.path,
                        .out = stdout, .output_dir = a->output_dir,
                        .predictions_log2tpm = a->predictions_log2tpm,
                        .progress = a->progress,
                        .index_dir = a->index_dir};
  ad_status_t st = rt_run_plan(p, &o);
  if (!st && fflush(stdout) != 0) st = ad_status_make(AD_STATUS_IO, "cannot write to stdout");
  plan_free(p);
  drv_cache_result_free(&res);
  return st;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(g_usage, stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
    fputs(g_usage, stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("aidomm %s (plan format %u)\n", AIDOMM_VERSION, PLAN_FORMAT_VERSION);
    return 0;
  }
  args_t a;
  memset(&a, 0, sizeof a);
  a.progress = -1;
  if (!plan_job_kind_from_name(cmd, &a.job)) {
    if (cmd[0] == '-') return usage_error("unknown option '%s'", cmd);
    return usage_error("unknown command '%s' (expected fit, validate, test or predict)", cmd);
  }
  int rc = parse(argc, argv, &a);
  if (rc < 0) {
    ad_status_t st = run(&a);
    rc = st ? fail(st) : 0;
  }
  free(a.configs);
  free(a.compile);
  free(a.runtime);
  return rc;
}
