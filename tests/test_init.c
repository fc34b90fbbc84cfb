/* Parameter initialisation rules: values are a pure function of (seed, slot name, index), the
 * deterministic rules give torch's values, and bad rules are refused. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/init.h"
#include "tests/support/test_util.h"

static ir_state_slot_t make_slot(const char *name, ir_dtype_t dt, int rank, const int64_t *dims,
                                 const char *init) {
  ir_state_slot_t s;
  memset(&s, 0, sizeof s);
  s.name = name;
  s.init = init;
  s.type.dtype = dt;
  s.type.rank = rank;
  for (int i = 0; i < rank; i++) s.type.dims[i] = ir_dim_const(dims[i]);
  return s;
}

START_TEST(test_random_rules_are_keyed_by_name) {
  const int64_t d[1] = {1000};
  float a[1000], b[1000], c[1000];
  ir_state_slot_t s1 = make_slot("layer.0.weight", IR_DTYPE_F32, 1, d, "normal(0,0.02)");
  ir_state_slot_t s2 = make_slot("layer.1.weight", IR_DTYPE_F32, 1, d, "normal(0,0.02)");
  ck_assert_ptr_null(rt_init_slot(&s1, 42, a));
  ck_assert_ptr_null(rt_init_slot(&s2, 42, b));
  ck_assert_ptr_null(rt_init_slot(&s1, 42, c));
  ck_assert(memcmp(a, c, sizeof a) == 0);  /* same (seed, name): same values */
  ck_assert(memcmp(a, b, sizeof a) != 0);  /* another name: other values */
  double mean = 0, var = 0;
  for (int i = 0; i < 1000; i++) mean += a[i];
  mean /= 1000;
  for (int i = 0; i < 1000; i++) var += (a[i] - mean) * (a[i] - mean);
  double sd = sqrt(var / 999);
  ck_assert_msg(fabs(mean) < 4 * 0.02 / sqrt(1000.0), "mean %g", mean);
  ck_assert_msg(fabs(sd - 0.02) < 0.003, "std %g", sd);
  ir_state_slot_t u = make_slot("u", IR_DTYPE_F32, 1, d, "uniform(-0.5,0.25)");
  ck_assert_ptr_null(rt_init_slot(&u, 7, a));
  for (int i = 0; i < 1000; i++) ck_assert(a[i] >= -0.5f && a[i] < 0.25f);
}
END_TEST

START_TEST(test_dirac_and_rope_inv_freq) {
  const int64_t dw[4] = {3, 3, 1, 1};
  double w[9];
  ir_state_slot_t s = make_slot("pool.to_attn_logits.weight", IR_DTYPE_F64, 4, dw, "dirac(2)");
  ck_assert_ptr_null(rt_init_slot(&s, 1, w));
  for (int o = 0; o < 3; o++)
    for (int i = 0; i < 3; i++) ck_assert(w[o * 3 + i] == (o == i ? 2.0 : 0.0));
  const int64_t dk[3] = {2, 2, 3}; /* a width-3 kernel: the centre tap */
  float k[12];
  ir_state_slot_t s3 = make_slot("conv.weight", IR_DTYPE_F32, 3, dk, "dirac(1)");
  ck_assert_ptr_null(rt_init_slot(&s3, 1, k));
  const float want[12] = {0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0};
  ck_assert(memcmp(k, want, sizeof k) == 0);
  /* torch: 1.0 / (10000 ** (torch.arange(0, 8, 2).float() / 8)) */
  const int64_t dr[1] = {4};
  float r[4];
  ir_state_slot_t sr = make_slot("rotary.inv_freq", IR_DTYPE_F32, 1, dr, "rope_inv_freq(10000,8)");
  ck_assert_ptr_null(rt_init_slot(&sr, 1, r));
  ck_assert(r[0] == 1.0f);
  ck_assert(r[1] == 0.1f);
  ck_assert(r[2] == 0.01f);
  ck_assert(fabsf(r[3] - 0.001f) <= 1e-10f);
}
END_TEST

START_TEST(test_bad_rules_refused) {
  const char *bad[] = {"normal(0)", "normal(0,-1)", "uniform(1,0)", "dirac()", "ones2",
                       "rope_inv_freq(10000)", "normal(0,1)x", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ad_status_t st = rt_init_check_rule(bad[i]);
    ck_assert_msg(st != NULL, "rule '%s' was accepted", bad[i]);
    ck_assert_int_eq(ad_status_code(st), AD_STATUS_INVALID_ARGUMENT);
    ad_status_free(st);
  }
  const int64_t d[1] = {4};
  double x[4];
  ir_state_slot_t s = make_slot("v", IR_DTYPE_F64, 1, d, "dirac(1)");
  ad_status_t st = rt_init_slot(&s, 1, x);
  ck_assert_ptr_nonnull(st);
  ck_assert(strstr(ad_status_message(st), "'v'") != NULL);
  ad_status_free(st);
}
END_TEST

int main(void) {
  Suite *s = suite_create("init");
  TCase *tc = tcase_create("rules");
  tcase_add_test(tc, test_random_rules_are_keyed_by_name);
  tcase_add_test(tc, test_dirac_and_rope_inv_freq);
  tcase_add_test(tc, test_bad_rules_refused);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
