/* Philox4x32-10 counter-based RNG and the dropout keying contract shared by every backend.
 *
 * Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC 2011), exactly as Random123's philox4x32_R(10, ctr, key): a 128-bit counter ctr[0..3]
 * and a 64-bit key key[0..1] map to four 32-bit words. One round:
 *     (hi0, lo0) = 0xD2511F53 * ctr[0]     (32x32 -> 64-bit product, high and low halves)
 *     (hi1, lo1) = 0xCD9E8D57 * ctr[2]
 *     ctr = { hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0 }
 * ten rounds, the key bumped by (0x9E3779B9, 0xBB67AE85) (mod 2^32) between rounds.
 *
 * DROPOUT KEYING (a cross-backend contract: the CUDA and LLVM kernels must reproduce every bit).
 * Inputs: seed (i64 runtime scalar), name (the node's attr "key": a stable name such as
 * "backbone.encoder.layer.3.attention.dropout", never a node index), step (the i64 global
 * micro-step), e (the logical element index: the row-major flat index of the element in the
 * compact tensor at its actual dims, 0 <= e < numel), p (drop probability, attr "p").
 *
 *   h      = FNV-1a-64(bytes of name, without the terminating NUL)
 *              offset basis 0xcbf29ce484222325, prime 0x100000001b3, h = (h ^ byte) * prime
 *   s      = splitmix64 finaliser of (uint64)seed:
 *              z = seed + 0x9E3779B97F4A7C15; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
 *              z = (z ^ z>>27) * 0x94D049BB133111EB; s = z ^ z>>31
 *   k64    = h ^ s                 key = { (uint32)k64, (uint32)(k64 >> 32) }
 *   b      = e / 4                 (one Philox call serves four consecutive elements)
 *   ctr    = { (uint32)b, (uint32)(b >> 32), (uint32)step, (uint32)((uint64)step >> 32) }
 *   w      = philox4x32_10(ctr, key)[e % 4]
 *   u      = (w >> 8) * 2^-24      (24 random bits: exact in f32 and f64, u in [0, 1))
 *   keep   = u >= p                (compared in double; p = 0 keeps all, p = 1 drops all)
 *   y      = keep ? x * scale : 0, scale = 1 / (1 - p) computed in the tensor dtype, as torch
 *            multiplies by its (dtype) noise tensor: scale = (T)1 / (T)(1 - p).
 *
 * The seed is passed through the splitmix64 finaliser because seeds are small consecutive
 * integers: XORing them into the hash raw would make (seed, name) pairs differ only in a few low
 * key bits. Philox is safe under related keys, so this is belt and braces, but it costs nothing. */
#ifndef AIDOMM_IR_PHILOX_H
#define AIDOMM_IR_PHILOX_H

#include <stdbool.h>
#include <stdint.h>

void ir_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

uint64_t ir_philox_fnv1a64(const char *s);
uint64_t ir_philox_mix_seed(uint64_t seed);

/* The Philox key of one dropout site. */
void ir_philox_dropout_key(int64_t seed, const char *name, uint32_t key[2]);
/* The four words serving elements 4*block .. 4*block+3 at a micro-step. */
void ir_philox_dropout_block(const uint32_t key[2], uint64_t block, int64_t step, uint32_t out[4]);

static inline double ir_philox_uniform(uint32_t w) { return (double)(w >> 8) * 0x1p-24; }

/* keep decision for one element (slow path for tests and tools; kernels go block by block). */
bool ir_philox_dropout_keep(const uint32_t key[2], int64_t step, uint64_t elem, double p);

#endif
