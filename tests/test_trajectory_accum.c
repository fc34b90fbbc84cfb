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
#include "support/test_util.h"

#define TOL 1e-4
#define MAX_MICRO 16

static const char *const k_golden = "tests/golden/trajectory/accum_steps.safetensors";
static const char *const k_config = "tests/configs/trajectory/tiny3_lora_accum.yaml";

static const rt_st_tensor_t *need(const rt_st_file_t *f, const char *name) {
  const rt_st_tensor_t *t = rt_st_find(f, name);
  ck_assert_msg(t != NULL, "%s lacks '%s'", rt_st_path(f), name);
  return t;
}

static double f64_at(const rt_st_file_t *f, const char *name, int64_t i) {
  const rt_st_tensor_t *t = need(f, name);
  ck_assert_int_eq(t->dtype, RT_ST_F64);
  ck_assert_int_lt(i, rt_st_numel(t));
  return ((const double *)t->data)[i];
}

static int64_t meta_int(const rt_st_file_t *f, const char *key) {
  const char *v = rt_st_metadata(f, key);
  ck_assert_msg(v != NULL, "%s: no metadata '%s'", rt_st_path(f), key);
  return strtoll(v, NULL, 10);
}

static double rel(double got, double want) {
  return fabs(got - want) / (fabs(want) > 0 ? fabs(want) : 1.0);
}

/* The peer's start, as tests/test_trajectory.c: every backbone from its Hugging Face folder,
 * then rest.safetensors non-strictly (LoRA, fusion, head). */
static void load_start(rt_state_t *s, const fe_job_t *job) {
  char models[4096];
  snprintf(models, sizeof models, "%s", tu_source_path("tests/golden/predict/models"));
  setenv("AIDOMM_MODELS", models, 1);
  tu_ok(rt_state_init(s, (uint64_t)job->seed));
  for (uint32_t i = 0; i < job->nbackbones; i++) {
    const fe_job_backbone_t *b = &job->backbones[i];
    ck_assert_msg(b->pretrained, "%s is not pretrained", b->prefix);
    char *folder = NULL;
    tu_ok(rt_weights_find_hf_folder(b->hub_id, &folder));
    rt_weights_report_t rep;
    memset(&rep, 0, sizeof rep);
    tu_ok(rt_weights_load_hf_folder(s, b->prefix, folder, NULL, &rep));
    ck_assert_uint_gt(rep.nloaded, 0);
    rt_weights_report_free(&rep);
    free(folder);
  }
  rt_weights_report_t rep;
  memset(&rep, 0, sizeof rep);
  tu_ok(rt_weights_load_checkpoint(s, tu_source_path("tests/golden/predict/rest.safetensors"),
                                   false, &rep));
  ck_assert_uint_eq(rep.nunexpected, 0);
  rt_weights_report_free(&rep);
}

static ir_tensor_t slot_tensor(const rt_state_t *s, int64_t i) {
  const ir_state_slot_t *sl = &s->module->slots[i];
  int64_t zeros[IR_MAX_SYMBOLS] = {0};
  ir_shape_t sh = ir_type_shape(&sl->type, zeros);
  ir_tensor_t t = {.data = s->data[i], .dtype = sl->type.dtype, .rank = sh.rank};
  memcpy(t.dims, sh.dims, sizeof t.dims);
  return t;
}

static bool model_slot(const ir_state_slot_t *sl) {
  return (sl->flags & (IR_SLOT_PARAM | IR_SLOT_BUFFER)) && !(sl->flags & IR_SLOT_OPTIM);
}

/* The single symbol a dim is, or -1. */
static int dim_symbol(ir_dim_t d) {
  if (d.nterms == 1 && d.cst == 0 && d.div == 1 && d.terms[0].coef == 1 && d.terms[0].sym_b < 0)
    return d.terms[0].sym_a;
  return -1;
}

/* Feeds for every INPUT of g from batch/<m>/<input name>; symbol values from their shapes. The
 * feeds borrow the file's data; free b->feeds only. */
static void golden_batch(const ir_graph_t *g, const rt_st_file_t *f, int m, rt_batch_t *b) {
  memset(b, 0, sizeof *b);
  ir_module_bounds(g->module, b->symvals);
  b->feeds = calloc(g->nnodes, sizeof *b->feeds);
  const rt_st_tensor_t *ts[64];
  const ir_node_t *ns[64];
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (n->op != IR_OP_INPUT) continue;
    char key[256];
    snprintf(key, sizeof key, "batch/%d/%s", m, n->name);
    const rt_st_tensor_t *t = need(f, key);
    const ir_type_t *ty = ir_value_type(g, n->output0);
    ir_dtype_t dt;
    ck_assert_msg(rt_st_dtype_to_ir(t->dtype, &dt) && dt == ty->dtype, "%s: dtype", key);
    ck_assert_int_eq(t->rank, ty->rank);
    for (int d = 0; d < ty->rank; d++) {
      int s = dim_symbol(ty->dims[d]);
      if (s >= 0) b->symvals[s] = t->shape[d];
    }
    ck_assert_uint_lt(b->nfeeds, 64);
    ts[b->nfeeds] = t;
    ns[b->nfeeds] = n;
    b->feeds[b->nfeeds++] = (rt_feed_t){n->name, t->data, t->nbytes};
  }
  ck_assert_uint_gt(b->nfeeds, 0);
  for (uint32_t i = 0; i < b->nfeeds; i++) {
    ir_shape_t sh = ir_type_shape(ir_value_type(g, ns[i]->output0), b->symvals);
    for (int d = 0; d < sh.rank; d++)
      ck_assert_msg(sh.dims[d] == ts[i]->shape[d], "micro-batch %d: %s dim %d is %lld, the "
                    "program %lld", m, ns[i]->name, d, (long long)ts[i]->shape[d],
                    (long long)sh.dims[d]);
  }
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

  fe_config_t *cfg = NULL;
  fe_job_t job;
  tu_ok(fe_config_load(tu_source_path(k_config), 0, NULL, &cfg));
  cfg->warn_stream = NULL;
  tu_ok(fe_config_job(cfg, &job));
  ck_assert(job.has_scheduler);
  const int64_t k = job.accumulate_grad_batches;
  ck_assert_int_eq(k, 2);
  ck_assert_int_eq(k, meta_int(gold, "accumulate_grad_batches"));
  ck_assert_int_eq(job.batch_size, 4);
  ck_assert_int_gt(job.max_epochs, 0);

  /* runtime/fit.c's loop limits: nb batches an epoch, T = Lightning's estimated_stepping_batches
   * with max_epochs set, min(ceil(nb / k) * max_epochs, max_steps) */
  const int64_t nb = meta_int(gold, "batches_per_epoch");
  ck_assert_int_eq(nb, 3);
  int64_t T = (nb + k - 1) / k * job.max_epochs;
  if (job.max_steps > 0 && job.max_steps < T) T = job.max_steps;
  int64_t W = rt_warmup_steps(job.warmup_ratio, job.num_warmup_steps, T);
  ck_assert_int_eq(T, meta_int(gold, "T"));
  ck_assert_int_eq(W, meta_int(gold, "W"));
  ck_assert_int_ge(W, 1);
  const int64_t nsteps = meta_int(gold, "steps"), nmicro = meta_int(gold, "micro_batches");
  ck_assert_int_eq(nsteps, job.max_steps);
  ck_assert_int_le(nmicro, MAX_MICRO);

  /* fit.c's windows: the optimizer steps after micro-batch (e, b) when (b + 1) % k == 0 or b is
   * the epoch's last batch; the peer's micro-batch -> step map */
  const rt_st_tensor_t *so = need(gold, "step_of_micro");
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
  load_start(s, &job);
  uint32_t nmodel = 0, nfinal = 0;
  for (uint32_t i = 0; i < p->module->nslots; i++) {
    const ir_state_slot_t *sl = &p->module->slots[i];
    if (!model_slot(sl)) continue;
    nmodel++;
    char key[512];
    snprintf(key, sizeof key, "final/%s", sl->name);
    ck_assert_msg(rt_st_find(gold, key) != NULL, "aidomm slot '%s' is not a peer entry",
                  sl->name);
  }
  for (size_t i = 0; i < rt_st_count(gold); i++)
    nfinal += strncmp(rt_st_at(gold, i)->name, "final/", 6) == 0;
  ck_assert_uint_eq(nmodel, nfinal);
  ck_assert_int_eq(nfinal, meta_int(gold, "n_final"));

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
    golden_batch(g, gold, (int)m, &b);
    double loss = 0;
    /* Lightning divides by k whatever the window's length */
    tu_ok(rt_trainer_accumulate(tr, &b, m, job.seed, 1.0 / (double)k, &loss));
    free(b.feeds);
    double pl = f64_at(gold, "loss", m - 1), el = rel(loss, pl);
    wl = fmax(wl, el);
    printf("  micro %lld  loss %.9g (peer %.9g, rel %.2g)\n", (long long)m, loss, pl, el);
    if (!closes[m - 1]) continue;
    double lr = rt_cosine_warmup_lr(job.lr, step, T, W);
    tu_ok(rt_trainer_apply(tr, step, lr, job.seed));
    double gn = rt_trainer_grad_norm(tr);
    double plr = f64_at(gold, "lr", step - 1), pn = f64_at(gold, "grad_norm", step - 1);
    double elr = rel(lr, plr), en = rel(gn, pn);
    if (step == 1) ck_assert(lr == 0.0 && plr == 0.0);
    printf("    -> step %lld  lr %.9g (rel %.2g)  grad_norm %.9g (peer %.9g, rel %.2g)%s\n",
           (long long)step, lr, elr, gn, pn, en,
           ((const uint8_t *)need(gold, "clipped")->data)[step - 1] ? " clipped" : "");
    wlr = fmax(wlr, elr);
    wn = fmax(wn, en);
    step++;
  }

  double we = 0;
  char wkey[256] = "";
  uint32_t n = 0, bad = 0;
  for (size_t i = 0; i < rt_st_count(gold); i++) {
    const rt_st_tensor_t *t = rt_st_at(gold, i);
    if (strncmp(t->name, "final/", 6) != 0) continue;
    int64_t si = rt_state_find(s, t->name + 6);
    ck_assert_msg(si >= 0, "no aidomm slot '%s'", t->name + 6);
    ir_tensor_t got = slot_tensor(s, si), want;
    ck_assert(rt_st_as_ir_tensor(t, &want));
    double e = golden_rel_error(&got, &want);
    n++;
    if (!(e <= TOL)) {
      bad++;
      printf("  after step %lld %s: rel error %.3g\n", (long long)nsteps, t->name + 6, e);
    }
    if (!(e <= we)) {
      we = e;
      snprintf(wkey, sizeof wkey, "%s", t->name + 6);
    }
  }
  printf("worst rel errors: micro-batch loss %.3g, lr %.3g, grad_norm %.3g; final entries %.3g "
         "(%s, %u entries)\n",
         wl, wlr, wn, we, wkey, n);
  ck_assert_msg(wl <= TOL, "loss rel error %g", wl);
  ck_assert_msg(wlr <= TOL, "lr rel error %g", wlr);
  ck_assert_msg(wn <= TOL, "grad_norm rel error %g", wn);
  ck_assert_msg(bad == 0 && we <= TOL, "%u of %u final entries off; worst %s %g", bad, n, wkey,
                we);

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
