/* Training trajectories against the peer (issue 5 acceptance), on the fixtures of
 * tools/golden/trajectory_peer.py (the peer's own Lightning Trainer.fit, CPU, f32):
 *   - tests/configs/trajectory/tiny3_lora.yaml (tiny Enformer + AIDO.RNA with LoRA + ESM2 with
 *     LoRA, ConcatFusion + MLPAdapter, every dropout 0), 10 steps with T = 10 and W = 3 (step 1
 *     at lr 0), gradient clipping 4.0, from the start of tools/golden/predict_peer.py (Hugging
 *     Face folders + rest.safetensors, non-strict) and fed the peer's batches: loss, learning rate
 *     and pre-clip gradient norm at every step, and every state_dict entry after step 10
 *     (frozen and unused parameters and BatchNorm buffers included), 1e-4 relative;
 *   - tests/configs/trajectory/tiny3_lora_dropout.yaml (lora_dropout and the adapter's dropout
 *     0.1), one step fed the peer's realized keep-masks through the executor's test-only mask
 *     injection (rt_exec_set_dropout_masks): loss, gradient norm, every gradient and the entries
 *     the step changed, 1e-4 relative.
 * The peer runs its loaded backbones in eval mode during fit (docs/ARCHITECTURE.md, "Peer
 * quirks"); both fixtures depend on aidomm doing the same. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "plan/plan.h"
#include "runtime/exec.h"
#include "runtime/safetensors.h"
#include "runtime/threadpool.h"
#include "runtime/train.h"
#include "runtime/weights.h"
#include "support/golden.h"
#include "support/peer_run.h"
#include "support/test_util.h"

#define TOL 1e-4
#define STEPS 10

static const char *const k_steps = "tests/golden/trajectory/steps.safetensors";
static const char *const k_dropout = "tests/golden/trajectory/dropout_step.safetensors";

static rt_st_file_t *open_golden(const char *rel) {
  rt_st_file_t *f = NULL;
  tu_ok(rt_st_open(tu_source_path(rel), &f));
  return f;
}

static double rel(double got, double want) {
  return fabs(got - want) / (fabs(want) > 0 ? fabs(want) : 1.0);
}

/* ---- 1. ten steps -------------------------------------------------------------------------- */
static char g_plan[4096];

static const plan_t *compile_plan(plan_t **p) {
  char bin[4096];
  tu_bin_path(bin, sizeof bin, "aidommc");
  snprintf(g_plan, sizeof g_plan, "%s", tu_tmpdir_path("tiny3_lora.plan"));
  tu_proc_t r = tu_run_tool(bin, "compile",
                            tu_source_path("tests/configs/trajectory/tiny3_lora.yaml"), "-o",
                            g_plan, NULL);
  ck_assert_msg(r.code == 0, "compile failed: %s", r.err);
  tu_proc_free(&r);
  tu_ok(plan_read(g_plan, p));
  return *p;
}

START_TEST(test_ten_steps) {
  rt_st_file_t *gold = open_golden(k_steps);
  plan_t *p = NULL;
  compile_plan(&p);
  fe_job_t job;
  fe_config_t *cfg = pr_load_job("tests/configs/trajectory/tiny3_lora.yaml", &job);
  ck_assert(job.has_scheduler);
  ck_assert_int_eq(job.max_epochs, -1);
  /* Lightning's estimated_stepping_batches with max_steps and no max_epochs (runtime/fit.c) */
  int64_t T = job.max_steps;
  int64_t W = rt_warmup_steps(job.warmup_ratio, job.num_warmup_steps, T);
  ck_assert_int_eq(T, pr_meta_int(gold, "T"));
  ck_assert_int_eq(W, pr_meta_int(gold, "W"));
  ck_assert_int_ge(W, 2);
  ck_assert_int_eq(pr_meta_int(gold, "steps"), STEPS);

  rt_state_t *s = NULL;
  tu_ok(rt_state_create(p->module, &s));
  pr_load_start(s, &job);

  /* every peer state_dict entry is an aidomm model slot and the other way round */
  pr_check_entry_set(p->module, gold, "final/");

  rt_trainer_t *tr = NULL;
  tu_ok(rt_trainer_create(p, s, 2, &tr));
  rt_trainer_set_clip(tr, job.gradient_clip_val);
  const ir_graph_t *g = ir_module_find_program(p->module, "train_step");
  double wl = 0, wlr = 0, wn = 0;
  printf("trajectory (T %lld, W %lld, clip %g):\n", (long long)T, (long long)W,
         job.gradient_clip_val);
  for (int k = 1; k <= STEPS; k++) {
    rt_batch_t b;
    pr_golden_batch(g, gold, k, &b);
    double lr = rt_cosine_warmup_lr(job.lr, k, T, W), loss = 0;
    tu_ok(rt_trainer_step(tr, &b, k, lr, job.seed, &loss));
    free(b.feeds);
    double gn = rt_trainer_grad_norm(tr);
    double pl = pr_f64_at(gold, "loss", k - 1), plr = pr_f64_at(gold, "lr", k - 1),
           pn = pr_f64_at(gold, "grad_norm", k - 1);
    double el = rel(loss, pl), elr = rel(lr, plr), en = rel(gn, pn);
    if (k == 1) ck_assert(lr == 0.0 && plr == 0.0);
    printf("  step %2d  loss %.9g (peer %.9g, rel %.2g)  lr %.9g (rel %.2g)  grad_norm %.9g "
           "(peer %.9g, rel %.2g)\n",
           k, loss, pl, el, lr, elr, gn, pn, en);
    wl = fmax(wl, el);
    wlr = fmax(wlr, elr);
    wn = fmax(wn, en);
  }
  pr_worst_t w;
  pr_compare_entries(s, gold, "final/", "after step 10", TOL, &w);
  printf("worst rel errors: loss %.3g, lr %.3g, grad_norm %.3g; final entries %.3g (%s, %u "
         "entries)\n",
         wl, wlr, wn, w.err, w.key, w.n);
  ck_assert_msg(wl <= TOL, "loss rel error %g", wl);
  ck_assert_msg(wlr <= TOL, "lr rel error %g", wlr);
  ck_assert_msg(wn <= TOL, "grad_norm rel error %g", wn);
  ck_assert_msg(w.bad == 0 && w.err <= TOL, "%u of %u final entries off; worst %s %g", w.bad, w.n,
                w.key, w.err);
  /* every buffer exactly the folder's: eval-mode BatchNorm neither updates its running
   * statistics nor counts num_batches_tracked (and ESM's inv_freq is a constant) */
  uint32_t nbuf = 0;
  for (uint32_t i = 0; i < p->module->nslots; i++) {
    const ir_state_slot_t *sl = &p->module->slots[i];
    if (!(sl->flags & IR_SLOT_BUFFER)) continue;
    char key[512];
    snprintf(key, sizeof key, "final/%s", sl->name);
    ir_tensor_t got = pr_slot_tensor(s, i), want;
    ck_assert(rt_st_as_ir_tensor(pr_need(gold, key), &want));
    ck_assert_msg(golden_rel_error(&got, &want) == 0, "%s moved", sl->name);
    nbuf++;
  }
  ck_assert_uint_gt(nbuf, 0);
  rt_trainer_free(tr);
  rt_state_free(s);
  plan_free(p);
  fe_config_free(cfg);
  rt_st_close(gold);
}
END_TEST

/* ---- 2. one step on the peer's dropout masks ----------------------------------------------- */
/* Compiled in-process as the driver does, plus an OUTPUT "grad:<slot>" per trained parameter. */
static ir_module_t *compile_with_grads(const char *rel_config, fe_job_t *job,
                                      fe_config_t **cfg) {
  fe_config_t *c = NULL;
  tu_ok(fe_config_load(tu_source_path(rel_config), 0, NULL, &c));
  c->warn_stream = NULL;
  ir_module_t *m = NULL;
  tu_ok(fe_build_module(c, &m, job));
  pass_train_options_t to = {.beta1 = job->beta1, .beta2 = job->beta2, .eps = job->eps,
                             .weight_decay = job->weight_decay, .emit_grad_outputs = 1};
  tu_ok(pass_lower_training(m, &to));
  pass_pipeline_options_t po;
  memset(&po, 0, sizeof po);
  tu_ok(pass_run_pipeline(m, &po));
  *cfg = c; /* owns the job's strings */
  return m;
}

START_TEST(test_dropout_step) {
  rt_st_file_t *gold = open_golden(k_dropout);
  fe_job_t job;
  fe_config_t *cfg = NULL;
  ir_module_t *m =
      compile_with_grads("tests/configs/trajectory/tiny3_lora_dropout.yaml", &job, &cfg);
  ir_graph_t *g = ir_module_find_program(m, "train_step");
  ck_assert_ptr_nonnull(g);

  /* aidomm's dropout sites (forward and VJP share the key) against the peer's masks */
  const char *keys[64];
  uint32_t nkeys = 0;
  for (uint32_t i = 0; i < g->nnodes; i++) {
    if (g->nodes[i].op != IR_OP_DROPOUT) continue;
    const char *k = ir_node_attr_string(&g->nodes[i], "key", "");
    bool seen = false;
    for (uint32_t j = 0; j < nkeys; j++) seen |= strcmp(keys[j], k) == 0;
    if (!seen) {
      ck_assert_uint_lt(nkeys, 64);
      keys[nkeys++] = k;
    }
  }
  rt_dropout_mask_t masks[64];
  uint32_t nmasks = 0;
  printf("dropout sites: aidomm keys / peer mask names\n");
  for (size_t i = 0; i < rt_st_count(gold); i++) {
    const rt_st_tensor_t *t = rt_st_at(gold, i);
    if (strncmp(t->name, "mask/", 5) != 0) continue;
    ck_assert_int_eq(t->dtype, RT_ST_U8);
    ck_assert_uint_lt(nmasks, 64);
    /* aidomm names a site by the peer's module path (pass_lora: "<layer>.lora_dropout.default";
     * nn.Sequential index for the adapter's dropout), so the map is the identity */
    masks[nmasks++] = (rt_dropout_mask_t){t->name + 5, (const uint8_t *)t->data, rt_st_numel(t)};
  }
  for (uint32_t i = 0; i < nkeys || i < nmasks; i++)
    printf("  %-90s %s\n", i < nkeys ? keys[i] : "-", i < nmasks ? masks[i].key : "-");
  ck_assert_uint_eq(nkeys, nmasks);
  for (uint32_t j = 0; j < nkeys; j++) {
    bool found = false;
    for (uint32_t i = 0; i < nmasks; i++) found |= strcmp(masks[i].key, keys[j]) == 0;
    ck_assert_msg(found, "no peer mask for aidomm dropout '%s'", keys[j]);
  }
  /* the peer's scale of kept entries is the kernel's (T)1 / (T)(1 - p) */
  const rt_st_tensor_t *sc = pr_need(gold, "scale");
  double p = strtod(rt_st_metadata(gold, "p"), NULL);
  ck_assert(((const float *)sc->data)[0] == 1.0f / (float)(1.0 - p));

  int64_t T = job.max_steps, W = rt_warmup_steps(job.warmup_ratio, job.num_warmup_steps, T);
  ck_assert_int_eq(T, pr_meta_int(gold, "T"));
  ck_assert_int_eq(W, pr_meta_int(gold, "W"));
  double lr = rt_cosine_warmup_lr(job.lr, 1, T, W);
  ck_assert_msg(rel(lr, pr_f64_at(gold, "lr", 0)) <= 1e-15, "lr %.17g", lr);

  rt_state_t *s = NULL, *s0 = NULL;
  tu_ok(rt_state_create(m, &s));
  tu_ok(rt_state_create(m, &s0));
  pr_load_start(s, &job);
  pr_load_start(s0, &job);

  pass_memplan_t mp;
  tu_ok(pass_memplan(g, 1, &mp));
  rt_exec_t *ex = NULL;
  tu_ok(rt_exec_create(g, &mp, &ex));
  rt_exec_set_dropout_masks(ex, masks, nmasks);
  rt_batch_t b;
  pr_golden_batch(g, gold, 1, &b);
  int64_t step = 1, seed = job.seed;
  double clip = job.gradient_clip_val;
  rt_feed_t feeds[72];
  uint32_t nf = 0;
  for (uint32_t i = 0; i < b.nfeeds; i++) feeds[nf++] = b.feeds[i];
  feeds[nf++] = (rt_feed_t){"step", &step, sizeof step};
  feeds[nf++] = (rt_feed_t){"lr", &lr, sizeof lr};
  feeds[nf++] = (rt_feed_t){"seed", &seed, sizeof seed};
  feeds[nf++] = (rt_feed_t){"clip_max", &clip, sizeof clip};
  rt_threadpool_t *pool = NULL;
  tu_ok(rt_threadpool_create(2, &pool));
  tu_ok(rt_exec_run(ex, s, b.symvals, feeds, nf, rt_threadpool_parallel(pool)));
  free(b.feeds);

  const ir_tensor_t *lt = rt_exec_output(ex, "loss"), *nt = rt_exec_output(ex, "grad_norm");
  ck_assert(lt && nt && lt->dtype == IR_DTYPE_F32 && nt->dtype == IR_DTYPE_F32);
  double loss = *(const float *)lt->data, gn = *(const float *)nt->data;
  double el = rel(loss, pr_f64_at(gold, "loss", 0)), en = rel(gn, pr_f64_at(gold, "grad_norm", 0));
  printf("dropout step: loss %.9g (peer %.9g, rel %.2g)  grad_norm %.9g (peer %.9g, rel %.2g)\n",
         loss, pr_f64_at(gold, "loss", 0), el, gn, pr_f64_at(gold, "grad_norm", 0), en);

  /* every gradient the peer has, and no trained parameter the peer has none for */
  double wg = 0;
  char wgk[256] = "";
  uint32_t ngrad = 0, badg = 0;
  for (size_t i = 0; i < rt_st_count(gold); i++) {
    const rt_st_tensor_t *t = rt_st_at(gold, i);
    if (strncmp(t->name, "grad/", 5) != 0) continue;
    char out[512];
    snprintf(out, sizeof out, "grad:%s", t->name + 5);
    const ir_tensor_t *got = rt_exec_output(ex, out);
    ck_assert_msg(got != NULL, "aidomm has no gradient for '%s'", t->name + 5);
    ir_tensor_t want;
    ck_assert(rt_st_as_ir_tensor(t, &want));
    double e = golden_rel_error(got, &want);
    ngrad++;
    if (!(e <= TOL)) {
      badg++;
      printf("  grad %s: rel error %.3g\n", t->name + 5, e);
    }
    if (!(e <= wg)) {
      wg = e;
      snprintf(wgk, sizeof wgk, "%s", t->name + 5);
    }
  }
  uint32_t nout = 0;
  for (uint32_t i = 0; i < g->nnodes; i++)
    nout += g->nodes[i].op == IR_OP_OUTPUT && strncmp(g->nodes[i].name, "grad:", 5) == 0;
  ck_assert_uint_eq(nout, ngrad);

  /* the entries the step changed, and every other model entry left at the start */
  pr_worst_t w;
  pr_compare_entries(s, gold, "final/", "after the step", TOL, &w);
  double wu = 0;
  char wuk[256] = "";
  uint32_t nun = 0;
  for (uint32_t i = 0; i < m->nslots; i++) {
    if (!pr_model_slot(&m->slots[i])) continue;
    char key[512];
    snprintf(key, sizeof key, "final/%s", m->slots[i].name);
    if (rt_st_find(gold, key)) continue;
    ir_tensor_t a = pr_slot_tensor(s, i), z = pr_slot_tensor(s0, i);
    double e = golden_rel_error(&a, &z);
    nun++;
    if (!(e <= wu)) {
      wu = e;
      snprintf(wuk, sizeof wuk, "%s", m->slots[i].name);
    }
  }
  printf("dropout step worst rel errors: gradients %.3g (%s, %u), changed entries %.3g (%s, %u), "
         "unchanged entries moved %.3g (%s, %u)\n",
         wg, wgk, ngrad, w.err, w.key, w.n, wu, wuk, nun);
  ck_assert_msg(el <= TOL, "loss rel error %g", el);
  ck_assert_msg(en <= TOL, "grad_norm rel error %g", en);
  ck_assert_msg(badg == 0 && wg <= TOL, "%u gradients off; worst %s %g", badg, wgk, wg);
  ck_assert_msg(w.bad == 0 && w.err <= TOL, "%u entries off; worst %s %g", w.bad, w.key, w.err);
  ck_assert_msg(wu == 0, "'%s' moved (%g) where the peer's did not", wuk, wu);

  rt_threadpool_free(pool);
  rt_exec_free(ex);
  pass_memplan_free(&mp);
  rt_state_free(s);
  rt_state_free(s0);
  ir_module_free(m);
  fe_config_free(cfg);
  rt_st_close(gold);
}
END_TEST

/* The injection refuses a site it has no mask for and a mask of the wrong size; resetting the
 * table gives Philox back. */
START_TEST(test_mask_injection_errors) {
  fe_job_t job;
  fe_config_t *cfg = NULL;
  ir_module_t *m =
      compile_with_grads("tests/configs/trajectory/tiny3_lora_dropout.yaml", &job, &cfg);
  ir_graph_t *g = ir_module_find_program(m, "train_step");
  rt_st_file_t *gold = open_golden(k_dropout);
  rt_state_t *s = NULL;
  tu_ok(rt_state_create(m, &s));
  tu_ok(rt_state_init(s, 1));
  pass_memplan_t mp;
  tu_ok(pass_memplan(g, 1, &mp));
  rt_exec_t *ex = NULL;
  tu_ok(rt_exec_create(g, &mp, &ex));
  rt_batch_t b;
  pr_golden_batch(g, gold, 1, &b);
  int64_t step = 1;
  b.feeds[b.nfeeds++] = (rt_feed_t){"step", &step, sizeof step}; /* AdamW's count */
  /* a table that lacks a site names it */
  const rt_st_tensor_t *t = pr_need(gold, "mask/adapter.adapter.0");
  rt_dropout_mask_t one = {"adapter.adapter.0", (const uint8_t *)t->data, rt_st_numel(t)};
  rt_exec_set_dropout_masks(ex, &one, 1);
  tu_expect_msg(rt_exec_run(ex, s, b.symvals, b.feeds, b.nfeeds, NULL),
                "no injected dropout mask for key", "lora_dropout.default");
  /* a mask of the wrong size */
  rt_dropout_mask_t wrong = {"adapter.adapter.0", (const uint8_t *)t->data, rt_st_numel(t) - 1};
  rt_exec_set_dropout_masks(ex, &wrong, 1);
  ad_status_t st = rt_exec_run(ex, s, b.symvals, b.feeds, b.nfeeds, NULL);
  ck_assert_ptr_nonnull(st);
  ad_status_free(st);
  /* reset: Philox again */
  rt_exec_set_dropout_masks(ex, NULL, 0);
  tu_ok(rt_exec_run(ex, s, b.symvals, b.feeds, b.nfeeds, NULL));
  free(b.feeds);
  rt_exec_free(ex);
  pass_memplan_free(&mp);
  rt_state_free(s);
  ir_module_free(m);
  fe_config_free(cfg);
  rt_st_close(gold);
}
END_TEST

/* The peer quirk in the graph: a loaded backbone's own modules run in eval mode during fit. */
START_TEST(test_pretrained_backbones_train_in_eval_mode) {
  fe_job_t job;
  fe_config_t *cfg = NULL;
  ir_module_t *m =
      compile_with_grads("tests/configs/trajectory/tiny3_lora_dropout.yaml", &job, &cfg);
  const ir_graph_t *f = ir_module_find_program(m, "forward");
  int bn = 0, drop = 0;
  for (uint32_t i = 0; i < f->nnodes; i++) {
    const ir_node_t *n = &f->nodes[i];
    if (n->op == IR_OP_BATCHNORM) {
      bn++;
      ck_assert_int_eq(ir_node_attr_int(n, "training", 1), 0);
    }
    ck_assert_msg(n->op != IR_OP_STATE_OUT, "forward writes state: %s", n->name);
    if (n->op == IR_OP_DROPOUT) {
      drop++;
      const char *k = ir_node_attr_string(n, "key", "");
      ck_assert_msg(strstr(k, ".lora_dropout.default") || strcmp(k, "adapter.adapter.0") == 0,
                    "a backbone's own dropout: %s", k);
    }
  }
  ck_assert_int_gt(bn, 0);
  ck_assert_int_eq(drop, 9);
  ir_module_free(m);
  fe_config_free(cfg);

  /* from_scratch: true builds the backbones in train mode (batch statistics, buffer writes) */
  fe_config_t *c = NULL;
  char *ov[] = {"--model.init_args.backbone.init_args.from_scratch", "true",
                "--model.init_args.backbone.init_args.config_overwrites.dropout_rate", "0.1",
                "--model.init_args.backbone1.init_args.from_scratch", "true",
                "--model.init_args.backbone1.init_args.config_overwrites.hidden_dropout_prob",
                "0.1"};
  tu_ok(fe_config_load(tu_source_path("tests/configs/trajectory/tiny3_lora_dropout.yaml"), 8, ov,
                       &c));
  c->warn_stream = NULL;
  tu_ok(fe_build_module(c, &m, &job));
  f = ir_module_find_program(m, "forward");
  int train_bn = 0, writes = 0, enf_drop = 0, rna_drop = 0;
  for (uint32_t i = 0; i < f->nnodes; i++) {
    const ir_node_t *n = &f->nodes[i];
    if (n->op == IR_OP_BATCHNORM) train_bn += ir_node_attr_int(n, "training", 0) == 1;
    writes += n->op == IR_OP_STATE_OUT;
    if (n->op != IR_OP_DROPOUT) continue;
    const char *k = ir_node_attr_string(n, "key", "");
    enf_drop += strncmp(k, "backbone.", 9) == 0;
    rna_drop += strncmp(k, "backbone1.", 10) == 0 && !strstr(k, "lora_dropout");
  }
  ck_assert_int_eq(train_bn, bn);
  ck_assert_int_eq(writes, 3 * bn);
  ck_assert_int_gt(enf_drop, 0);
  ck_assert_int_gt(rna_drop, 0);
  ir_module_free(m);
  fe_config_free(c);
}
END_TEST

static void setup(void) { tu_tmpdir_create("trajectory"); }
static void teardown(void) {}

int main(void) {
  Suite *s = suite_create("trajectory");
  TCase *tc = tcase_create("trajectory");
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_pretrained_backbones_train_in_eval_mode);
  tcase_add_test(tc, test_ten_steps);
  tcase_add_test(tc, test_dropout_step);
  tcase_add_test(tc, test_mask_injection_errors);
  suite_add_tcase(s, tc);
  int rc = tu_run_suite(s);
  tu_tmpdir_remove();
  return rc;
}
