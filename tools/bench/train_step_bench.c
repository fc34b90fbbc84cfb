/* aidomm-bench-train: aidomm's CPU training throughput on a compiled plan, the aidomm side of
 * tools/bench/train_step_vs_torch.sh (which documents what is measured).
 *
 *   aidomm-bench-train PLAN [--threads T] [--steps N]   (run from the repository root)
 *
 * Start: the backbones' Hugging Face folders (AIDOMM_MODELS, by default
 * tests/golden/predict/models), then tests/golden/predict/rest.safetensors non-strictly. Feeds:
 * the 10 recorded batches of tests/golden/trajectory/steps.safetensors in turn. One step is
 * rt_trainer_step with the config's cosine lr (T = 5 warm-up + N steps) and clipping. Prints
 * {"steps_per_s": ..., "threads": T}. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frontend/frontend.h"
#include "runtime/safetensors.h"
#include "runtime/train.h"
#include "runtime/weights.h"

#define TOOL "aidomm-bench-train"
#define WARMUP 5
#define NBATCH 10
#define MAX_FEEDS 16

static const char *const k_steps = "tests/golden/trajectory/steps.safetensors";

/* The batch/<k>/<input> tensors of f as feeds for g's INPUTs (borrowing f's data); symbol
 * values from the shapes of inputs whose dims are plain symbols. */
static ad_status_t recorded_batch(const ir_graph_t *g, const rt_st_file_t *f, int k,
                                  rt_batch_t *b) {
  memset(b, 0, sizeof *b);
  ir_module_bounds(g->module, b->symvals);
  b->feeds = calloc(MAX_FEEDS, sizeof *b->feeds);
  if (!b->feeds) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (n->op != IR_OP_INPUT) continue;
    char key[256];
    snprintf(key, sizeof key, "batch/%d/%s", k, n->name);
    const rt_st_tensor_t *t = rt_st_find(f, key);
    const ir_type_t *ty = ir_value_type(g, n->output0);
    if (!t || t->rank != ty->rank || b->nfeeds == MAX_FEEDS)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: no '%s' of rank %d", k_steps, key,
                            ty->rank);
    for (int d = 0; d < ty->rank; d++)
      if (ir_dim_symbol(ty->dims[d]) >= 0) b->symvals[ir_dim_symbol(ty->dims[d])] = t->shape[d];
    b->feeds[b->nfeeds++] = (rt_feed_t){n->name, t->data, t->nbytes};
  }
  return AD_OK;
}

/* The peer's start: backbone folders, then the rest (LoRA, fusion, head) non-strictly. */
static ad_status_t load_start(rt_state_t *s, const fe_job_t *job) {
  AD_RETURN_IF_ERROR(rt_state_init(s, (uint64_t)job->seed));
  for (uint32_t i = 0; i < job->nbackbones; i++) {
    char *folder = NULL;
    AD_RETURN_IF_ERROR(rt_weights_find_hf_folder(job->backbones[i].hub_id, &folder));
    rt_weights_report_t rep = {0};
    ad_status_t st = rt_weights_load_hf_folder(s, job->backbones[i].prefix, folder, NULL, &rep);
    rt_weights_report_free(&rep);
    free(folder);
    AD_RETURN_IF_ERROR(st);
  }
  rt_weights_report_t rep = {0};
  ad_status_t st = rt_weights_load_checkpoint(s, "tests/golden/predict/rest.safetensors", false,
                                              &rep);
  rt_weights_report_free(&rep);
  return st;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ad_status_t bench(const char *plan_path, int threads, int steps) {
  plan_t *p = NULL;
  fe_config_t *cfg = NULL;
  rt_st_file_t *gold = NULL;
  rt_state_t *s = NULL;
  rt_trainer_t *tr = NULL;
  rt_batch_t b[NBATCH] = {0};
  fe_job_t job;
  ad_status_t st = plan_read(plan_path, &p);
  if (!st)
    st = fe_config_load_text(plan_path, p->config_yaml, p->config_len, 0, NULL, NULL, &cfg);
  if (!st) cfg->warn_stream = NULL; /* aidommc already warned about ignored keys */
  if (!st) st = fe_config_job(cfg, &job);
  if (!st) st = rt_st_open(k_steps, &gold);
  const ir_graph_t *g = p ? ir_module_find_program(p->module, "train_step") : NULL;
  if (!st && !g)
    st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s has no train_step", plan_path);
  for (int k = 0; !st && k < NBATCH; k++) st = recorded_batch(g, gold, k + 1, &b[k]);
  if (!st) st = rt_state_create(p->module, &s);
  if (!st) st = load_start(s, &job);
  if (!st) st = rt_trainer_create(p, s, threads, &tr);
  if (!st) {
    rt_trainer_set_clip(tr, job.gradient_clip_val);
    int64_t total = WARMUP + steps;
    int64_t w = rt_warmup_steps(job.warmup_ratio, job.num_warmup_steps, total);
    const rt_st_tensor_t *lt = rt_st_find(gold, "loss");
    double want = lt && lt->dtype == RT_ST_F64 ? *(const double *)lt->data : NAN, t0 = 0, loss = 0;
    for (int64_t k = 1; !st && k <= total; k++) {
      if (k == WARMUP + 1) t0 = now_s();
      double lr = job.has_scheduler ? rt_cosine_warmup_lr(job.lr, k, total, w) : job.lr;
      st = rt_trainer_step(tr, &b[(k - 1) % NBATCH], k, lr, job.seed, &loss);
      /* step 1 (lr 0) is the fixture's step 1: checks the start and the feeds */
      if (!st && k == 1 && !(fabs(loss - want) <= 1e-4 * fabs(want)))
        st = ad_status_make(AD_STATUS_INTERNAL, "step 1 loss %.9g, the fixture's %.9g", loss,
                            want);
    }
    if (!st)
      printf("{\"steps_per_s\": %.6g, \"threads\": %d}\n", steps / (now_s() - t0), threads);
  }
  rt_trainer_free(tr);
  rt_state_free(s);
  for (int k = 0; k < NBATCH; k++) free(b[k].feeds);
  rt_st_close(gold);
  fe_config_free(cfg);
  plan_free(p);
  return st;
}

int main(int argc, char **argv) {
  const char *plan = NULL;
  int threads = 1, steps = 200;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
    else if (argv[i][0] != '-' && !plan) plan = argv[i];
    else plan = NULL, argc = 0;
  }
  if (!plan || threads < 1 || steps < 1) {
    fprintf(stderr, "usage: " TOOL " PLAN [--threads T] [--steps N]  (from the repo root)\n");
    return 2;
  }
  setenv("AIDOMM_MODELS", "tests/golden/predict/models", 0);
  return ad_status_report(bench(plan, threads, steps), TOOL);
}
