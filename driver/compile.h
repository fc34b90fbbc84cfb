/* The compile pipeline shared by `aidommc compile` and `aidomm fit|validate|test|predict`:
 * config files + overrides -> fe_build_module -> pass_lower_training -> pass pipeline -> a plan
 * holding the resolved config YAML, meta, job and memory plans. Prefix `drv_`. */
#ifndef AIDOMM_DRIVER_COMPILE_H
#define AIDOMM_DRIVER_COMPILE_H

#include <stdio.h>

#include "frontend/frontend.h"
#include "plan/plan.h"
#include "support/status.h"

typedef struct drv_compile_request {
  int nconfigs;
  const char *const *configs; /* [nconfigs] config files, later ones override earlier ones */
  int noverrides;
  char *const *overrides;     /* dotted overrides as on a command line:
                                 {"--data.batch_size", "2", "--trainer.precision=64", ...} */
  plan_job_kind_t job;        /* recorded in the plan's JOB section */
  int reuse;                  /* 1: buffers share arena space by liveness; 0: debug layout */
  const char *print_before;   /* pass name or "all": print the IR before it runs; NULL: off */
  const char *print_after;    /* likewise after */
  FILE *print_stream;         /* where IR dumps go; stdout when NULL */
  const char *created_by;     /* the plan's meta.created_by; "aidommc" when NULL */
} drv_compile_request_t;

/* Loads and merges the config files and applies the overrides (fe_config_load_files). The
 * config's warnings go to stderr. */
ad_status_t drv_load_config(const drv_compile_request_t *req, fe_config_t **out);

/* Compiles an already-loaded config (from drv_load_config with the same request) into a plan
 * owned by the caller (plan_free). Nothing is written to disk. */
ad_status_t drv_compile_config(const drv_compile_request_t *req, const fe_config_t *cfg,
                               plan_t **out);

/* drv_load_config + drv_compile_config. */
ad_status_t drv_compile(const drv_compile_request_t *req, plan_t **out);

#endif
