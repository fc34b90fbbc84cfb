/* The compile pipeline (moved here from aidommc so that `aidomm` and its plan cache run exactly
 * the same steps). */
#include "driver/compile.h"

#include <string.h>

#include "ir/ir.h"
#include "passes/passes.h"

ad_status_t drv_load_config(const drv_compile_request_t *req, fe_config_t **out) {
  *out = NULL;
  if (!req || req->nconfigs < 1 || !req->configs)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "no config file to compile");
  return fe_config_load_files(req->nconfigs, req->configs, req->noverrides, req->overrides, out);
}

ad_status_t drv_compile_config(const drv_compile_request_t *req, const fe_config_t *cfg,
                               plan_t **out) {
  *out = NULL;
  ir_module_t *m = NULL;
  plan_t *p = NULL;
  ad_buf_t yaml = {0};
  fe_job_t job;
  memset(&job, 0, sizeof job);
  FILE *dump = req->print_stream ? req->print_stream : stdout;
  pass_pipeline_options_t po = {.print_before = req->print_before,
                                .print_after = req->print_after, .print_stream = dump};

  ad_status_t st = fe_build_module(cfg, &m, &job);
  if (!st) {
    pass_train_options_t to = {.beta1 = job.beta1, .beta2 = job.beta2, .eps = job.eps,
                               .weight_decay = job.weight_decay, .emit_grad_outputs = 0,
                               .emit_accumulation = job.accumulate_grad_batches > 1};
    pass_print_if(&po, "lower-training", 0, m);
    st = pass_lower_training(m, &to);
    if (!st) pass_print_if(&po, "lower-training", 1, m);
  }
  if (!st) st = pass_run_pipeline(m, &po);
  /* Dumps are complete before any error or later output reaches the terminal. */
  fflush(dump);
  if (!st) {
    p = plan_create();
    if (!p) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory creating the plan");
  }
  if (!st) {
    plan_set_module(p, m);
    m = NULL;
    fe_config_emit_yaml(cfg, &yaml);
    plan_set_config(p, (const char *)yaml.data, yaml.len);
    plan_set_meta(p, req->created_by ? req->created_by : "aidommc", "host");
    p->job = (plan_job_t){.kind = req->job, .seed = job.seed, .max_steps = job.max_steps,
                          .batch_size = job.batch_size, .max_length = job.max_length,
                          .dtype = job.dtype, .lr = job.lr, .beta1 = job.beta1,
                          .beta2 = job.beta2, .eps = job.eps, .weight_decay = job.weight_decay};
    st = plan_plan_memory(p, req->reuse);
  }
  ad_buf_free(&yaml);
  ir_module_free(m);
  if (st) {
    plan_free(p);
    return st;
  }
  *out = p;
  return AD_OK;
}

ad_status_t drv_compile(const drv_compile_request_t *req, plan_t **out) {
  fe_config_t *cfg = NULL;
  *out = NULL;
  ad_status_t st = drv_load_config(req, &cfg);
  if (!st) st = drv_compile_config(req, cfg, out);
  fe_config_free(cfg);
  return st;
}
