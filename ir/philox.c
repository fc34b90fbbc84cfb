/* Philox4x32-10 and the dropout keying; the bit layout is documented in ir/philox.h. */
#include "ir/philox.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void philox_round(uint32_t c[4], const uint32_t k[2]) {
  uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
  uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
  uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
  uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
  uint32_t n0 = hi1 ^ c[1] ^ k[0];
  uint32_t n2 = hi0 ^ c[3] ^ k[1];
  c[0] = n0;
  c[1] = lo1;
  c[2] = n2;
  c[3] = lo0;
}

void ir_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
  uint32_t k[2] = {key[0], key[1]};
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k[0] += PHILOX_W0;
      k[1] += PHILOX_W1;
    }
    philox_round(c, k);
  }
  for (int i = 0; i < 4; i++) out[i] = c[i];
}

uint64_t ir_philox_fnv1a64(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    h ^= *p;
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t ir_philox_mix_seed(uint64_t seed) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void ir_philox_dropout_key(int64_t seed, const char *name, uint32_t key[2]) {
  uint64_t k64 = ir_philox_fnv1a64(name ? name : "") ^ ir_philox_mix_seed((uint64_t)seed);
  key[0] = (uint32_t)k64;
  key[1] = (uint32_t)(k64 >> 32);
}

void ir_philox_dropout_block(const uint32_t key[2], uint64_t block, int64_t step, uint32_t out[4]) {
  uint64_t st = (uint64_t)step;
  uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)st, (uint32_t)(st >> 32)};
  ir_philox4x32_10(ctr, key, out);
}

bool ir_philox_dropout_keep(const uint32_t key[2], int64_t step, uint64_t elem, double p) {
  uint32_t w[4];
  ir_philox_dropout_block(key, elem / 4, step, w);
  return ir_philox_uniform(w[elem % 4]) >= p;
}
