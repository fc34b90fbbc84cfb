/* Gradient accumulation against the peer (Lightning's accumulate_grad_batches), on the fixture
 * tests/golden/trajectory/accum_steps.safetensors of tools/golden/trajectory_peer.py (the peer's
 * own Trainer.fit, CPU, f32) for tests/configs/trajectory/tiny3_lora_accum.yaml: the tiny3_lora
 * model with k = 2, batch 4 (3 micro-batches an epoch of 4, 4, 3 rows: the windows [b0, b1] and
 * the short window [b2]), 2 epochs = 4 optimizer steps, CosineWithWarmup T = 4, W = 1 (step 1 at
 * lr 0), gradient_clip_val 4.0 (steps 1 and 3 clip). From the peer's start (Hugging Face folders
 * + rest.safetensors) the peer's micro-batches go through the plan's grad_step
 * (rt_trainer_accumulate, loss_scale 1/k for every window, the short one included, as Lightning
 * divides) and apply_step (rt_trainer_apply once per window); compared at 1e-4 relative: every
 * micro-batch's loss, every step's learning rate and pre-clip gradient norm of the summed
 * gradients, and every state_dict entry after step 4. The windows themselves follow fit.c's rule
 * (the optimizer steps when (batch + 1) % k == 0 or on the epoch's last batch), checked against
 * the micro-batch -> step map the peer recorded. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "plan/plan.h"
#include "runtime/safetensors.h"
#include "runtime/train.h"
#include "runtime/weights.h"
#include "support/golden.h"
#include "support/peer_run.h"
#include "support/test_util.h"

#define TOL 1e-4
#define MAX_MICRO 16

static const char *const k_golden = "tests/golden/trajectory/accum_steps.safetensors";
static const char *const k_config = "tests/configs/trajectory/tiny3_lora_accum.yaml";

static double rel(double got, double want) {
  return fabs(got - want) / (fabs(want) > 0 ? fabs(want) : 1.0);
}

START_TEST(test_accumulated_steps) {
  rt_st_file_t *gold = NULL;
  tu_ok(rt_st_open(tu_source_path(k_golden), &gold));

  /* the plan, as the driver compiles it: accumulate_grad_batches > 1 adds grad_step/apply_step */
  tu_tmpdir_create("trajectory_accum");
  char bin[4096], plan_path[4096];
  tu_bin_path(bin, sizeof bin, "aidommc");
  snprintf(plan_path, sizeof plan_path, "%s", tu_tmpdir_path("tiny3_lora_accum.plan"));
  tu_proc_t r = tu_run_tool(bin, "compile", tu_source_path(k_config), "-o", plan_path, NULL);
  ck_assert_msg(r.code == 0, "compile failed: %s", r.err);
  tu_proc_free(&r);
  plan_t *p = NULL;
  tu_ok(plan_read(plan_path, &p));
  const ir_graph_t *g = ir_module_find_program(p->module, "grad_step");
  ck_assert_ptr_nonnull(g);
  ck_assert_ptr_nonnull(ir_module_find_program(p->module, "apply_step"));

  fe_job_t job;
  fe_config_t *cfg = pr_load_job(k_config, &job);
  ck_assert(job.has_scheduler);
  const int64_t k = job.accumulate_grad_batches;
  ck_assert_int_eq(k, 2);
  ck_assert_int_eq(k, pr_meta_int(gold, "accumulate_grad_batches"));
  ck_assert_int_eq(job.batch_size, 4);
  ck_assert_int_gt(job.max_epochs, 0);

  /* runtime/fit.c's loop limits: nb batches an epoch, T = Lightning's estimated_stepping_batches
   * with max_epochs set, min(ceil(nb / k) * max_epochs, max_steps) */
  const int64_t nb = pr_meta_int(gold, "batches_per_epoch");
  ck_assert_int_eq(nb, 3);
  int64_t T = (nb + k - 1) / k * job.max_epochs;
  if (job.max_steps > 0 && job.max_steps < T) T = job.max_steps;
  int64_t W = rt_warmup_steps(job.warmup_ratio, job.num_warmup_steps, T);
  ck_assert_int_eq(T, pr_meta_int(gold, "T"));
  ck_assert_int_eq(W, pr_meta_int(gold, "W"));
  ck_assert_int_ge(W, 1);
  const int64_t nsteps = pr_meta_int(gold, "steps"), nmicro = pr_meta_int(gold, "micro_batches");
  ck_assert_int_eq(nsteps, job.max_steps);
  ck_assert_int_le(nmicro, MAX_MICRO);

  /* fit.c's windows: the optimizer steps after micro-batch (e, b) when (b + 1) % k == 0 or b is
   * the epoch's last batch; the peer's micro-batch -> step map */
  const rt_st_tensor_t *so = pr_need(gold, "step_of_micro");
  ck_assert_int_eq(so->dtype, RT_ST_I64);
  ck_assert_int_eq(rt_st_numel(so), nmicro);
  const int64_t *step_of = (const int64_t *)so->data;
  bool closes[MAX_MICRO];
  int64_t step = 1, nshort = 0, win = 0;
  for (int64_t m = 0; m < nmicro; m++) {
    int64_t b = m % nb;
    ck_assert_msg(step_of[m] == step, "micro-batch %lld: aidomm's window is step %lld, the "
                  "peer's %lld", (long long)m + 1, (long long)step, (long long)step_of[m]);
    win++;
    closes[m] = (b + 1) % k == 0 || b + 1 >= nb;
    if (closes[m]) {
      nshort += win < k;
      win = 0;
      step++;
    }
  }
  ck_assert_int_eq(step - 1, nsteps);
  ck_assert_int_gt(nshort, 0); /* the fixture has short windows */

  rt_state_t *s = NULL;
  tu_ok(rt_state_create(p->module, &s));
  pr_load_start(s, &job);
  pr_check_entry_set(p->module, gold, "final/");

  rt_trainer_t *tr = NULL;
  tu_ok(rt_trainer_create(p, s, 2, &tr));
  tu_ok(rt_trainer_enable_accumulation(tr));
  rt_trainer_set_clip(tr, job.gradient_clip_val);
  double wl = 0, wlr = 0, wn = 0;
  printf("accumulation trajectory (k %lld, T %lld, W %lld, clip %g):\n", (long long)k,
         (long long)T, (long long)W, job.gradient_clip_val);
  step = 1;
  for (int64_t m = 1; m <= nmicro; m++) {
    rt_batch_t b;
    pr_golden_batch(g, gold, (int)m, &b);
    double loss = 0;
    /* Lightning divides by k whatever the window's length */
    tu_ok(rt_trainer_accumulate(tr, &b, m, job.seed, 1.0 / (double)k, &loss));
    free(b.feeds);
    double pl = pr_f64_at(gold, "loss", m - 1), el = rel(loss, pl);
    wl = fmax(wl, el);
    printf("  micro %lld  loss %.9g (peer %.9g, rel %.2g)\n", (long long)m, loss, pl, el);
    if (!closes[m - 1]) continue;
    double lr = rt_cosine_warmup_lr(job.lr, step, T, W);
    tu_ok(rt_trainer_apply(tr, step, lr, job.seed));
    double gn = rt_trainer_grad_norm(tr);
    double plr = pr_f64_at(gold, "lr", step - 1), pn = pr_f64_at(gold, "grad_norm", step - 1);
    double elr = rel(lr, plr), en = rel(gn, pn);
    if (step == 1) ck_assert(lr == 0.0 && plr == 0.0);
    printf("    -> step %lld  lr %.9g (rel %.2g)  grad_norm %.9g (peer %.9g, rel %.2g)%s\n",
           (long long)step, lr, elr, gn, pn, en,
           ((const uint8_t *)pr_need(gold, "clipped")->data)[step - 1] ? " clipped" : "");
    wlr = fmax(wlr, elr);
    wn = fmax(wn, en);
    step++;
  }

  char what[64];
  snprintf(what, sizeof what, "after step %lld", (long long)nsteps);
  pr_worst_t w;
  pr_compare_entries(s, gold, "final/", what, TOL, &w);
  printf("worst rel errors: micro-batch loss %.3g, lr %.3g, grad_norm %.3g; final entries %.3g "
         "(%s, %u entries)\n",
         wl, wlr, wn, w.err, w.key, w.n);
  ck_assert_msg(wl <= TOL, "loss rel error %g", wl);
  ck_assert_msg(wlr <= TOL, "lr rel error %g", wlr);
  ck_assert_msg(wn <= TOL, "grad_norm rel error %g", wn);
  ck_assert_msg(w.bad == 0 && w.err <= TOL, "%u of %u final entries off; worst %s %g", w.bad, w.n,
                w.key, w.err);

  rt_trainer_free(tr);
  rt_state_free(s);
  plan_free(p);
  fe_config_free(cfg);
  rt_st_close(gold);
  tu_tmpdir_remove();
}
END_TEST

int main(void) {
  Suite *s = suite_create("trajectory_accum");
  TCase *tc = tcase_create("trajectory_accum");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_accumulated_steps);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
