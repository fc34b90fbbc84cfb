/* Gradient accumulation (Lightning's accumulate_grad_batches, modelgenerator.md §12): with a
 * mean-reduced loss and no batch statistics, k micro-batches of size B summed with loss / k give
 * the step one batch of k*B gives. The tiny RNA-only config (LoRA, no BatchNorm, dropout off)
 * trains 3 steps on the same rows both ways (shuffle off): the global gradient norms and every
 * parameter after the run agree to f32 rounding. A plan compiled without accumulation refuses
 * accumulate_grad_batches > 1 naming the recompile. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/demodata.h"
#include "runtime/safetensors.h"
#include "support/test_util.h"

static char g_data[1024];

static void compile(const char *plan, bool accumulate) {
  char bin[1024];
  tu_bin_path(bin, sizeof bin, "aidommc");
  tu_proc_t r = tu_run_tool(bin, "compile",
                            tu_source_path("configs/tiny_isoform_expression_rna_only.yaml"),
                            "--model.backbone.init_args.lora_dropout", "0", "--data.batch_size",
                            "4", "--trainer.accumulate_grad_batches", accumulate ? "2" : "1", "-o",
                            plan, NULL);
  ck_assert_msg(r.code == 0, "compile: %s", r.err);
  tu_proc_free(&r);
}

static tu_proc_t fit(const char *plan, const char *batch, const char *out, const char *acc) {
  char bin[1024];
  tu_bin_path(bin, sizeof bin, "aidomm-rt");
  return tu_run_tool(bin, "run", plan, "--progress", "off", "--output_dir", out,
                     "--data.init_args.path", g_data, "--data.init_args.shuffle", "false",
                     "--data.init_args.batch_size", batch, "--trainer.max_steps", "3",
                     "--trainer.log_every_n_steps", "1", "--trainer.accumulate_grad_batches", acc,
                     "--trainer.callbacks.0.init_args.dirpath", out, NULL);
}

static void grad_norms(const char *out, double *g) {
  char p[1100];
  snprintf(p, sizeof p, "%s/metrics.csv", out);
  char *t = tu_read_file(p, NULL);
  int n = 0;
  for (char *s = strstr(t, ",grad_norm,"); s && n < 3; s = strstr(s + 1, ",grad_norm,"))
    g[n++] = strtod(s + 11, NULL);
  ck_assert_int_eq(n, 3);
  free(t);
}

START_TEST(test_two_micro_batches_equal_one_batch) {
  tu_tmpdir_create("accumulate");
  snprintf(g_data, sizeof g_data, "%s", tu_tmpdir_path("data"));
  rt_demo_options_t o;
  rt_demo_defaults(&o);
  o.train_rows = 24;
  o.val_rows = 6;
  o.test_rows = 6;
  o.train_files = 1;
  o.dna_length = 256;
  tu_ok(rt_demo_generate(g_data, &o, NULL));
  char p1[1024], p2[1024], o1[1024], o2[1024];
  snprintf(p1, sizeof p1, "%s", tu_tmpdir_path("k1.plan"));
  snprintf(p2, sizeof p2, "%s", tu_tmpdir_path("k2.plan"));
  snprintf(o1, sizeof o1, "%s", tu_tmpdir_path("k1"));
  snprintf(o2, sizeof o2, "%s", tu_tmpdir_path("k2"));
  compile(p1, false);
  compile(p2, true);
  tu_proc_t r = fit(p1, "4", o1, "1");
  ck_assert_msg(r.code == 0, "%s", r.err);
  tu_proc_free(&r);
  r = fit(p2, "2", o2, "2");
  ck_assert_msg(r.code == 0, "%s", r.err);
  tu_proc_free(&r);
  double g1[3], g2[3];
  grad_norms(o1, g1);
  grad_norms(o2, g2);
  for (int i = 0; i < 3; i++)
    ck_assert_msg(fabs(g1[i] - g2[i]) <= 1e-5 * g1[i], "step %d: %g vs %g", i + 1, g1[i], g2[i]);
  char c1[1100], c2[1100];
  snprintf(c1, sizeof c1, "%s/last.safetensors", o1);
  snprintf(c2, sizeof c2, "%s/last.safetensors", o2);
  rt_st_file_t *a = NULL, *b = NULL;
  tu_ok(rt_st_open(c1, &a));
  tu_ok(rt_st_open(c2, &b));
  double worst = 0;
  int compared = 0;
  for (size_t i = 0; i < rt_st_count(a); i++) {
    const rt_st_tensor_t *x = rt_st_at(a, i), *y = rt_st_find(b, x->name);
    ck_assert_ptr_nonnull(y);
    if (x->dtype != RT_ST_F32) continue;
    const float *u = x->data, *v = y->data;
    double num = 0, den = 0;
    for (int64_t k = 0; k < rt_st_numel(x); k++) {
      num = fmax(num, fabs((double)u[k] - (double)v[k]));
      den = fmax(den, fabs((double)u[k]));
    }
    double e = den > 0 ? num / den : num;
    if (e > worst) worst = e;
    compared++;
  }
  printf("accumulate 2 x 2 vs batch 4: %d tensors, worst rel %.3g; grad norms %.6g %.6g %.6g\n",
         compared, worst, g2[0], g2[1], g2[2]);
  ck_assert_msg(worst <= 1e-5, "worst %g", worst);
  rt_st_close(a);
  rt_st_close(b);
  /* a plan without the accumulation programs refuses k > 1 */
  r = fit(p1, "2", o1, "2");
  ck_assert_int_ne(r.code, 0);
  ck_assert_msg(strstr(r.err, "accumulate_grad_batches") && strstr(r.err, "aidommc compile"), "%s",
                r.err);
  tu_proc_free(&r);
  tu_tmpdir_remove();
}
END_TEST

int main(void) {
  Suite *s = suite_create("accumulate");
  TCase *tc = tcase_create("accumulate");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_two_micro_batches_equal_one_batch);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
