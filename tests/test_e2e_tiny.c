/* End to end on configs/tiny_transformer.yaml: YAML -> IR -> training lowering -> memory plan
 * -> planned executor. Checks the acceptance properties of the core compiler:
 *   - whole-graph f64 directional finite differences agree with autodiff (1e-7) for every
 *     parameter tensor, and every trainable parameter gets a non-zero gradient;
 *   - gradients are bit-identical with memory reuse on and off, and for 1 and 2 threads;
 *   - peak memory with reuse <= 0.6 x without it on the training step;
 *   - a fixed batch is overfit to below 1e-3 x the initial loss. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/exec.h"
#include "runtime/interp.h"
#include "runtime/threadpool.h"
#include "runtime/train.h"
#include "support/golden.h"

typedef struct tiny {
  fe_config_t *cfg;
  ir_module_t *m;
  fe_job_t job;
} tiny_t;

static void tiny_load(tiny_t *t, int nov, char *const *ov) {
  char *path = golden_path("configs/tiny_transformer.yaml");
  ad_status_t st = fe_config_load(path, nov, ov, &t->cfg);
  free(path);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  st = fe_build_module(t->cfg, &t->m, &t->job);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  pass_train_options_t o = {t->job.beta1, t->job.beta2, t->job.eps, t->job.weight_decay, 1};
  st = pass_lower_training(t->m, &o);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  st = pass_run_pipeline(t->m, &(pass_pipeline_options_t){0});
  ck_assert_msg(!st, "%s", ad_status_message(st));
}

static void tiny_free(tiny_t *t) {
  ir_module_free(t->m);
  fe_config_free(t->cfg);
}

static const rt_feed_t *feed_scalars(const rt_batch_t *b, int64_t *step, double *lr, int64_t *seed,
                                     uint32_t *n) {
  static rt_feed_t feeds[32];
  ck_assert_uint_le(b->nfeeds + 3, 32);
  memcpy(feeds, b->feeds, sizeof(rt_feed_t) * b->nfeeds);
  *n = b->nfeeds;
  feeds[(*n)++] = (rt_feed_t){"step", step, sizeof *step};
  feeds[(*n)++] = (rt_feed_t){"lr", lr, sizeof *lr};
  feeds[(*n)++] = (rt_feed_t){"seed", seed, sizeof *seed};
  return feeds;
}

/* Loss of the forward program at the current state (f64 config), via the interpreter. */
static double forward_loss(const ir_module_t *m, rt_state_t *s, const rt_batch_t *b) {
  const ir_graph_t *g = ir_module_find_program(m, "forward");
  ck_assert_ptr_nonnull(g);
  rt_interp_t *it;
  ad_status_t st = rt_interp_create(g, b->symvals, &it);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  for (uint32_t i = 0; i < b->nfeeds; i++) {
    st = rt_interp_set_input(it, b->feeds[i].name, b->feeds[i].data, b->feeds[i].bytes);
    ck_assert_msg(!st, "%s", ad_status_message(st));
  }
  int64_t step = 1, seed = 7;
  if (ir_module_find_scalar(m, "step")) ad_status_free(rt_interp_set_input(it, "step", &step, sizeof step));
  if (ir_module_find_scalar(m, "seed")) ad_status_free(rt_interp_set_input(it, "seed", &seed, sizeof seed));
  for (uint32_t i = 0; i < m->nslots; i++)
    ck_assert(!rt_interp_bind_state(it, m->slots[i].name, s->data[i], s->bytes[i]));
  st = rt_interp_run(it, NULL);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  const ir_tensor_t *l = rt_interp_output(it, "loss");
  ck_assert_ptr_nonnull(l);
  ck_assert_int_eq(l->dtype, IR_DTYPE_F64);
  double v = *(const double *)l->data;
  rt_interp_free(it);
  return v;
}

/* Runs train_step once with the given memory plan / threads on a fresh copy of the initial
 * state and returns a malloc'd concatenation of all "grad:" outputs. */
static uint8_t *grads_of_step(const ir_module_t *m, const rt_batch_t *b, int reuse, int threads,
                              size_t *len, int64_t *peak, int64_t *total) {
  const ir_graph_t *g = ir_module_find_program(m, "train_step");
  ck_assert_ptr_nonnull(g);
  pass_memplan_t mp;
  ad_status_t st = pass_memplan(g, reuse, &mp);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  *peak = mp.peak_bytes;
  *total = mp.total_bytes;
  rt_state_t *s;
  ck_assert(!rt_state_create(m, &s));
  ck_assert(!rt_state_init(s, 42));
  rt_exec_t *e;
  st = rt_exec_create(g, &mp, &e);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  rt_threadpool_t *pool;
  ck_assert(!rt_threadpool_create(threads, &pool));
  int64_t step = 1, seed = 7;
  double lr = 1e-3;
  uint32_t n;
  const rt_feed_t *f = feed_scalars(b, &step, &lr, &seed, &n);
  st = rt_exec_run(e, s, b->symvals, f, n, rt_threadpool_parallel(pool));
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ad_buf_t out = {0};
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *nd = &g->nodes[i];
    if (nd->op != IR_OP_OUTPUT || strncmp(nd->name, "grad:", 5) != 0) continue;
    const ir_tensor_t *t = rt_exec_output(e, nd->name);
    ad_buf_append(&out, t->data, (size_t)ir_tensor_numel(t) * ir_dtype_size(t->dtype));
  }
  /* the updated parameters must agree too */
  for (uint32_t i = 0; i < m->nslots; i++) ad_buf_append(&out, s->data[i], s->bytes[i]);
  rt_threadpool_free(pool);
  rt_exec_free(e);
  rt_state_free(s);
  pass_memplan_free(&mp);
  *len = out.len;
  return out.data;
}

START_TEST(test_fd_every_parameter) {
  char *ov[] = {"--trainer.precision", "64"};
  tiny_t t;
  tiny_load(&t, 2, ov);
  const ir_module_t *m = t.m;
  const ir_graph_t *g = ir_module_find_program(m, "train_step");
  ck_assert_ptr_nonnull(g);
  rt_batch_t b;
  ck_assert(!rt_batch_synthetic(g, 5, &b));
  rt_state_t *s;
  ck_assert(!rt_state_create(m, &s));
  ck_assert(!rt_state_init(s, 42));
  /* Check at a generic point of parameter space, not at the initialisation: with 0.02-scale
   * weights some gradients (the MLP's LayerNorm) are ~1e-6 of the loss, below what any
   * finite difference of an f64 loss can resolve to 1e-7 relative. */
  for (uint32_t i = 0; i < m->nslots; i++) {
    if (!(m->slots[i].flags & IR_SLOT_TRAINABLE)) continue;
    double *p = s->data[i];
    for (size_t k = 0; k < s->bytes[i] / sizeof(double); k++)
      p[k] += 0.3 * (((double)((k * 7919u + i * 104729u) % 1009) / 504.5) - 1.0);
  }

  /* gradients from autodiff: the interpreter on train_step with a scratch copy of the state */
  rt_state_t *scratch;
  ck_assert(!rt_state_create(m, &scratch));
  for (uint32_t i = 0; i < m->nslots; i++) memcpy(scratch->data[i], s->data[i], s->bytes[i]);
  rt_interp_t *it;
  ck_assert(!rt_interp_create(g, b.symvals, &it));
  for (uint32_t i = 0; i < b.nfeeds; i++)
    ck_assert(!rt_interp_set_input(it, b.feeds[i].name, b.feeds[i].data, b.feeds[i].bytes));
  int64_t step = 1, seed = 7;
  double lr = 0;
  ad_status_free(rt_interp_set_input(it, "step", &step, sizeof step));
  ad_status_free(rt_interp_set_input(it, "seed", &seed, sizeof seed));
  ad_status_free(rt_interp_set_input(it, "lr", &lr, sizeof lr));
  for (uint32_t i = 0; i < m->nslots; i++)
    ck_assert(!rt_interp_bind_state(it, m->slots[i].name, scratch->data[i], scratch->bytes[i]));
  ad_status_t st = rt_interp_run(it, NULL);
  ck_assert_msg(!st, "%s", ad_status_message(st));

  int nparams = 0;
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *slot = &m->slots[i];
    if (!(slot->flags & IR_SLOT_TRAINABLE)) continue;
    char name[512];
    snprintf(name, sizeof name, "grad:%s", slot->name);
    const ir_tensor_t *gt = rt_interp_output(it, name);
    ck_assert_msg(gt != NULL, "no gradient output for %s", slot->name);
    int64_t n = ir_tensor_numel(gt);
    const double *gr = gt->data;
    double *p = s->data[i];
    double *u = malloc(sizeof(double) * (size_t)n), dot = 0, gmax = 0, pmax = 0;
    for (int64_t k = 0; k < n; k++) {
      u[k] = ((double)((k * 2654435761u + i * 40503u) % 2001) / 1000.0) - 1.0;
      dot += gr[k] * u[k];
      gmax = fmax(gmax, fabs(gr[k]));
      pmax = fmax(pmax, fabs(p[k]));
    }
    ck_assert_msg(gmax > 0, "parameter %s got an all-zero gradient", slot->name);
    /* Fourth-order central stencil: truncation error O(h^4), so h can be large enough that
     * rounding in the f64 loss (~1e-16 relative) stays far below the 1e-7 bound. */
    double h = 1e-4 * (1.0 + pmax), f[4];
    const double taps[4] = {2, 1, -1, -2};
    for (int j = 0; j < 4; j++) {
      for (int64_t k = 0; k < n; k++) p[k] += taps[j] * h * u[k];
      f[j] = forward_loss(m, s, &b);
      for (int64_t k = 0; k < n; k++) p[k] -= taps[j] * h * u[k];
    }
    double fd = (8.0 * (f[1] - f[2]) - (f[0] - f[3])) / (12.0 * h);
    double rel = fabs(fd - dot) / fmax(fabs(dot), 1e-12);
    printf("  fd %-55s autodiff %+.12e fd %+.12e rel %.2e\n", slot->name, dot, fd, rel);
    ck_assert_msg(rel <= 1e-7, "%s: directional derivative rel error %.3e", slot->name, rel);
    free(u);
    nparams++;
  }
  ck_assert_int_gt(nparams, 10);
  rt_interp_free(it);
  rt_state_free(scratch);
  rt_state_free(s);
  rt_batch_free(&b);
  tiny_free(&t);
}
END_TEST

START_TEST(test_reuse_and_threads_bit_identical) {
  tiny_t t;
  tiny_load(&t, 0, NULL);
  const ir_graph_t *g = ir_module_find_program(t.m, "train_step");
  rt_batch_t b;
  ck_assert(!rt_batch_synthetic(g, 5, &b));
  size_t l1, l2, l3;
  int64_t peak1, total1, peak0, total0, pk, tt;
  uint8_t *with_reuse = grads_of_step(t.m, &b, 1, 1, &l1, &peak1, &total1);
  uint8_t *without = grads_of_step(t.m, &b, 0, 1, &l2, &peak0, &total0);
  uint8_t *two_threads = grads_of_step(t.m, &b, 1, 2, &l3, &pk, &tt);
  ck_assert_uint_eq(l1, l2);
  ck_assert_uint_eq(l1, l3);
  ck_assert_msg(memcmp(with_reuse, without, l1) == 0, "gradients differ with reuse on/off");
  ck_assert_msg(memcmp(with_reuse, two_threads, l1) == 0, "gradients differ for 1 vs 2 threads");
  printf("  train_step peak: %lld bytes with reuse, %lld without (ratio %.3f)\n",
         (long long)peak1, (long long)peak0, (double)peak1 / (double)peak0);
  ck_assert_int_le(peak1 * 10, peak0 * 6);
  free(with_reuse);
  free(without);
  free(two_threads);
  rt_batch_free(&b);
  tiny_free(&t);
}
END_TEST

START_TEST(test_overfit_fixed_batch) {
  char *ov[] = {"--model.init_args.hidden_dropout_prob", "0.0"};
  tiny_t t;
  tiny_load(&t, 2, ov);
  const ir_graph_t *g = ir_module_find_program(t.m, "train_step");
  pass_memplan_t mp;
  ck_assert(!pass_memplan(g, 1, &mp));
  rt_state_t *s;
  ck_assert(!rt_state_create(t.m, &s));
  ck_assert(!rt_state_init(s, 42));
  rt_exec_t *e;
  ck_assert(!rt_exec_create(g, &mp, &e));
  rt_batch_t b;
  ck_assert(!rt_batch_synthetic(g, 5, &b));
  double first = 0, loss = 0;
  int64_t seed = 7;
  double lr = 3e-3;
  int64_t step;
  for (step = 1; step <= 1500; step++) {
    uint32_t n;
    const rt_feed_t *f = feed_scalars(&b, &step, &lr, &seed, &n);
    ad_status_t st = rt_exec_run(e, s, b.symvals, f, n, NULL);
    ck_assert_msg(!st, "%s", ad_status_message(st));
    const ir_tensor_t *l = rt_exec_output(e, "loss");
    loss = l->dtype == IR_DTYPE_F64 ? *(double *)l->data : *(float *)l->data;
    if (step == 1) first = loss;
    if (loss < 1e-3 * first) break;
  }
  printf("  overfit: loss %.4e -> %.4e after %lld steps (ratio %.2e)\n", first, loss,
         (long long)step, loss / first);
  ck_assert_msg(loss < 1e-3 * first, "loss %.4e did not fall below 1e-3 x %.4e", loss, first);
  rt_batch_free(&b);
  rt_exec_free(e);
  rt_state_free(s);
  pass_memplan_free(&mp);
  tiny_free(&t);
}
END_TEST

int main(void) {
  Suite *s = suite_create("e2e_tiny");
  TCase *tc = tcase_create("tiny_transformer");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_fd_every_parameter);
  tcase_add_test(tc, test_reuse_and_threads_bit_identical);
  tcase_add_test(tc, test_overfit_fixed_batch);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
