/* Enformer's relative positional features, as modeling_enformer.get_positional_embed computes
 * them when every intermediate is float64 (torch.set_default_dtype(torch.float64) and
 * dtype=torch.float64):
 *
 *   d = -(n-1) .. n-1, k = features / 6
 *   exponential  half_life = 2 ** linspace(3, log2 n, k); exp((-ln 2 / half_life) * |d|),
 *                where `-ln2 / t` is torch's __rtruediv__: reciprocal(t) * (-ln 2)
 *   central mask (2 ** (1..k) - 1 > |d|) as 0/1
 *   gamma        sigma = n / (2k), mu = linspace(n/k, n, k), c = (mu / sigma) ** 2,
 *                r = mu / sigma ** 2, pdf = exp((xlogy(c - 1, |d|) - r |d|) -
 *                (lgamma(c) - c log r)) + 1e-8, divided by its max over the k features
 *   then [the 3k columns, sign(d) * the 3k columns].
 *
 * Each step is one torch kernel, reproduced in the same order with one rounding per operation
 * (the build uses -ffp-contract=off). torch.linspace's CPU kernel computes start + step*i for
 * the first half and end - step*(steps-1-i) for the rest, each as one fused multiply-add (its
 * kernels are compiled with FMA contraction), so fma() is used there. The transcendental
 * functions are libm's where torch uses SLEEF's (both within 1 ulp), so the table agrees with
 * the peer's float64 evaluation to ~1e-12 (gamma columns, where c log r with c up to 4096
 * amplifies last-bit differences; ~1e-16 elsewhere), not bit for bit.
 *
 * That is the peer's own float64 run: Lightning's precision 64 (DoublePrecision.forward_context)
 * sets float64 as torch's default dtype around the forward.
 *
 * With torch's default float32 dtype (precision 32) the peer computes the linspaces, the exponential features
 * and lgamma(c) - c log r in float32 (even for dtype=float64): lgamma(c) reaches ~3e4 for
 * F = 192, where a float32 ulp is 2e-3, so the peer's own float32 table is off the exact one by
 * up to ~3e-3 in the gamma columns. Those SLEEF float32 roundings cannot be reproduced from C;
 * tests/test_enformer_posfeat.c measures that gap against the peer's float32 table. */
#include "frontend/enformer_posfeat.h"

#include <math.h>
#include <stdlib.h>

/* The gamma pdf's additive floor (get_positional_features_gamma's eps). */
#define POSFEAT_GAMMA_EPS 1e-8
/* The exponential half-lives start at 2**3 (min_half_life). */
#define POSFEAT_MIN_HALF_LIFE 3.0

/* torch.linspace(start, end, steps) on the CPU in double. */
static void linspace(double start, double end, int64_t steps, double *out) {
  if (steps == 1) {
    out[0] = start;
    return;
  }
  double step = (end - start) / (double)(steps - 1);
  int64_t half = steps / 2;
  for (int64_t i = 0; i < steps; i++)
    out[i] = i < half ? fma(step, (double)i, start) : fma(-step, (double)(steps - 1 - i), end);
}

/* torch.xlogy(a, x): 0 where a == 0, a * log(x) otherwise (x >= 0 here, never NaN). */
static double xlogy(double a, double x) { return a == 0.0 ? 0.0 : a * log(x); }

ad_status_t fe_enformer_positional_features(int64_t n, int64_t features, double *out) {
  if (n < 1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "enformer positional features: sequence length %lld must be >= 1",
                          (long long)n);
  if (features <= 0 || features % 6 != 0)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "enformer positional features: feature size %lld is not a positive "
                          "multiple of 6 (3 basis functions, each with its sign-flipped copy)",
                          (long long)features);
  int64_t k = features / 6;
  if (k > 62)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "enformer positional features: feature size %lld gives %lld central "
                          "mask widths 2**k - 1, beyond the peer's int64 range (at most 62)",
                          (long long)features, (long long)k);
  if (!out)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "enformer positional features: no output buffer");
  /* per-feature constants, each [k] */
  double *buf = malloc(sizeof(double) * (size_t)(6 * k));
  if (!buf)
    return ad_status_make(AD_STATUS_RESOURCE, "enformer positional features: out of memory");
  double *coef = buf, *width = buf + k, *conc = buf + 2 * k, *rate = buf + 3 * k,
         *cm1 = buf + 4 * k, *lnorm = buf + 5 * k;

  double max_range = log((double)n) / log(2.0);
  linspace(POSFEAT_MIN_HALF_LIFE, max_range, k, coef);
  double neg_ln2 = -log(2.0);
  for (int64_t f = 0; f < k; f++) coef[f] = (1.0 / pow(2.0, coef[f])) * neg_ln2;

  for (int64_t f = 0; f < k; f++) width[f] = (double)((int64_t)1 << (f + 1)) - 1.0;

  double stddev = (double)n / (double)(2 * k);
  double start_mean = (double)n / (double)k;
  double var = stddev * stddev;
  linspace(start_mean, (double)n, k, rate); /* the means, turned into rates below */
  for (int64_t f = 0; f < k; f++) {
    double ratio = rate[f] / stddev;
    conc[f] = ratio * ratio;
    rate[f] = rate[f] / var;
    cm1[f] = conc[f] - 1.0;
    lnorm[f] = lgamma(conc[f]) - conc[f] * log(rate[f]);
  }

  int64_t rows = 2 * n - 1, F = features, half = 3 * k;
  for (int64_t r = 0; r < rows; r++) {
    int64_t d = r - (n - 1);
    double ad = (double)(d < 0 ? -d : d);
    double *o = out + r * F; /* [F] */
    double pmax = -INFINITY;
    for (int64_t f = 0; f < k; f++) {
      o[f] = exp(coef[f] * ad);
      o[k + f] = width[f] > ad ? 1.0 : 0.0;
      double lu = xlogy(cm1[f], ad) - rate[f] * ad;
      double p = exp(lu - lnorm[f]) + POSFEAT_GAMMA_EPS;
      o[2 * k + f] = p;
      if (f == 0 || p > pmax) pmax = p;
    }
    for (int64_t f = 0; f < k; f++) o[2 * k + f] = o[2 * k + f] / pmax;
    double sgn = d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0;
    for (int64_t f = 0; f < half; f++) o[half + f] = sgn * o[f];
  }
  free(buf);
  return AD_OK;
}
