/* Philox4x32-10 against Random123's published known-answer vectors (kat_vectors), the FNV-1a
 * and splitmix64 building blocks against their published values, and the dropout keying
 * layout documented in ir/philox.h (every bit of it is a cross-backend contract). */
#include <check.h>
#include <math.h>
#include <stdint.h>

#include "ir/philox.h"

typedef struct kat {
  uint32_t ctr[4], key[2], out[4];
} kat_t;

/* Random123 kat_vectors, "philox4x32 10 CTR[4] KEY[2] EXPECTED[4]". */
static const kat_t kKat[] = {
    {{0x00000000, 0x00000000, 0x00000000, 0x00000000},
     {0x00000000, 0x00000000},
     {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

START_TEST(test_known_answers) {
  for (size_t k = 0; k < sizeof kKat / sizeof kKat[0]; k++) {
    uint32_t out[4];
    ir_philox4x32_10(kKat[k].ctr, kKat[k].key, out);
    for (int i = 0; i < 4; i++)
      ck_assert_msg(out[i] == kKat[k].out[i], "vector %zu word %d: got %08x want %08x", k, i,
                    out[i], kKat[k].out[i]);
  }
}
END_TEST

START_TEST(test_fnv1a64_and_seed_mix) {
  /* FNV-1a 64 reference values (Fowler/Noll/Vo test suite). */
  ck_assert_uint_eq(ir_philox_fnv1a64(""), 0xcbf29ce484222325ull);
  ck_assert_uint_eq(ir_philox_fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  ck_assert_uint_eq(ir_philox_fnv1a64("foobar"), 0x85944171f73967e8ull);
  /* splitmix64's first output from state 0 (Vigna's reference generator). */
  ck_assert_uint_eq(ir_philox_mix_seed(0), 0xe220a8397b1dcdafull);
}
END_TEST

START_TEST(test_dropout_key_layout) {
  const char *name = "backbone.encoder.layer.3.attention.output.dropout";
  uint32_t key[2];
  ir_philox_dropout_key(42, name, key);
  uint64_t k64 = ir_philox_fnv1a64(name) ^ ir_philox_mix_seed(42);
  ck_assert_uint_eq(key[0], (uint32_t)k64);
  ck_assert_uint_eq(key[1], (uint32_t)(k64 >> 32));
  /* Negative seeds are taken as their two's-complement bits. */
  ir_philox_dropout_key(-1, name, key);
  k64 = ir_philox_fnv1a64(name) ^ ir_philox_mix_seed(UINT64_MAX);
  ck_assert_uint_eq(key[0], (uint32_t)k64);
  ck_assert_uint_eq(key[1], (uint32_t)(k64 >> 32));
}
END_TEST

START_TEST(test_dropout_counter_layout) {
  const uint32_t key[2] = {0x01234567, 0x89abcdef};
  uint64_t block = 0x0000000200000001ull;
  int64_t step = 0x0000000400000003ll;
  uint32_t got[4], want[4];
  ir_philox_dropout_block(key, block, step, got);
  const uint32_t ctr[4] = {1, 2, 3, 4}; /* block lo, block hi, step lo, step hi */
  ir_philox4x32_10(ctr, key, want);
  for (int i = 0; i < 4; i++) ck_assert_uint_eq(got[i], want[i]);
  /* Element e reads word e % 4 of block e / 4. */
  for (uint64_t e = 0; e < 64; e++) {
    uint32_t w[4];
    ir_philox_dropout_block(key, e / 4, 9, w);
    double u = ir_philox_uniform(w[e % 4]);
    ck_assert(ir_philox_dropout_keep(key, 9, e, 0.5) == (u >= 0.5));
    ck_assert(ir_philox_dropout_keep(key, 9, e, u) == true);
    ck_assert(ir_philox_dropout_keep(key, 9, e, nextafter(u, 2.0)) == false);
  }
}
END_TEST

START_TEST(test_uniform_mapping) {
  ck_assert(ir_philox_uniform(0) == 0.0);
  ck_assert(ir_philox_uniform(0xff) == 0.0); /* the low 8 bits are dropped */
  ck_assert(ir_philox_uniform(0x100) == 0x1p-24);
  ck_assert(ir_philox_uniform(0xffffffffu) == 1.0 - 0x1p-24);
  ck_assert(ir_philox_uniform(0x80000000u) == 0.5);
  /* Exactly representable in f32 too, so a float kernel compares the same value. */
  for (uint32_t w = 0; w < 4096; w += 7) {
    double u = ir_philox_uniform(w * 0x9E3779B9u);
    ck_assert(u == (double)(float)u);
  }
}
END_TEST

START_TEST(test_keep_extremes_and_statistics) {
  uint32_t key[2];
  ir_philox_dropout_key(7, "head.dropout", key);
  const int n = 100000;
  double sum = 0.0;
  int kept = 0;
  for (int e = 0; e < n; e++) {
    ck_assert(ir_philox_dropout_keep(key, 3, (uint64_t)e, 0.0));
    ck_assert(!ir_philox_dropout_keep(key, 3, (uint64_t)e, 1.0));
    uint32_t w[4];
    ir_philox_dropout_block(key, (uint64_t)e / 4, 3, w);
    sum += ir_philox_uniform(w[e % 4]);
    kept += ir_philox_dropout_keep(key, 3, (uint64_t)e, 0.25);
  }
  double mean = sum / n, sd_mean = sqrt(1.0 / 12.0 / n);
  ck_assert_msg(fabs(mean - 0.5) < 4 * sd_mean, "mean uniform %.5f", mean);
  double frac = (double)kept / n, sd_frac = sqrt(0.25 * 0.75 / n);
  ck_assert_msg(fabs(frac - 0.75) < 4 * sd_frac, "keep fraction %.5f", frac);
}
END_TEST

int main(void) {
  Suite *s = suite_create("philox");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_known_answers);
  tcase_add_test(tc, test_fnv1a64_and_seed_mix);
  tcase_add_test(tc, test_dropout_key_layout);
  tcase_add_test(tc, test_dropout_counter_layout);
  tcase_add_test(tc, test_uniform_mapping);
  tcase_add_test(tc, test_keep_extremes_and_statistics);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
