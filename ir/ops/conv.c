/* Ops of the conv group (semantics in ir/ops.def): Enformer's CONV1D and BATCHNORM and their
 * backward ops.
 *
 *   conv1d        (x[B,Cin,L], w[Cout,Cin,K]) | (x, w, b[Cout])  attr padding
 *                   -> y[B,Cout,Lout], Lout = L + 2p - K + 1; torch.nn.Conv1d with stride 1,
 *                   dilation 1, zero padding p on both sides (a cross-correlation):
 *                   y[b,o,t] = b[o] + sum_{c,k} w[o,c,k] * x[b,c,t+k-p]
 *   conv1d_bwd    (x, w, dy)  attrs padding, has_bias  -> dx, dw[, db]
 *   batchnorm     (x[B,C,L], w[C], b[C], running_mean[C], running_var[C])
 *                 attrs eps (1e-5), momentum (0.1), training (1)
 *                   -> y, mean[C], rstd[C], new_running_mean[C], new_running_var[C]
 *   batchnorm_bwd (x, w, mean, rstd, dy)  attr training  -> dx, dw, db
 *
 * padding defaults to K/2 for odd K ("same" length, as every Enformer conv uses). An even K
 * without an explicit padding is refused: K/2 would grow the length by one, which is what
 * torch does but never what a builder means.
 *
 * BatchNorm follows torch.nn.functional.batch_norm. training=1: per-channel statistics over
 * (B, L) at the actual sizes, biased variance for normalising, running stats updated as
 * new = (1 - momentum) * old + momentum * stat with the unbiased variance (divided by n - 1);
 * n = B*L must exceed 1 (torch raises otherwise). training=0: normalise with the running
 * stats, which pass through unchanged; mean / rstd are then the running mean and
 * 1/sqrt(running_var + eps), so the backward op reads the statistics it needs from the
 * forward's outputs in both modes. mean, rstd and the running stats are non-differentiable
 * outputs and the running stats non-differentiable inputs: the VJP uses dy of output 0 only.
 * The backward ops have no VJP (no job needs second derivatives of these).
 *
 * Numerics. Everything accumulates in double and rounds once on store. Long sums (over
 * positions: dw, db, the BatchNorm statistics) are pairwise over fixed halves with leaves of
 * at most PW_LEAF terms; the per-output sums of conv1d and of dx are pairwise over channel
 * halves with leaves of at most CH_LEAF channels, each adding its K taps in order. Work is
 * split only over independent outputs (conv rows x position tiles, (o, c) weight pairs,
 * BatchNorm channels), so results never depend on the thread count. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ops/ops_internal.h"

#define PW_LEAF 32
#define CH_LEAF 8
#define CONV_TILE 256 /* output positions per conv task */

/* ---- helpers --------------------------------------------------------------------------- */
static inline double ld(const void *p, ir_dtype_t dt, int64_t i) {
  return dt == IR_DTYPE_F32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

static inline void st(void *p, ir_dtype_t dt, int64_t i, double v) {
  if (dt == IR_DTYPE_F32)
    ((float *)p)[i] = (float)v;
  else
    ((double *)p)[i] = v;
}

static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

static ad_status_t check_kernel_dtype(const ir_kernel_args_t *a) {
  for (uint32_t i = 0; i < a->nin; i++) {
    ir_dtype_t dt = a->in[i].dtype;
    if (dt != a->in[0].dtype || (dt != IR_DTYPE_F32 && dt != IR_DTYPE_F64))
      return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                            "node '%s' (%s): the reference kernel takes f32 or f64 inputs of one "
                            "dtype, input %u is %s",
                            a->node->name ? a->node->name : "?", ir_op_name(a->node->op), i,
                            ir_dtype_name(dt));
  }
  return AD_OK;
}

static ad_status_t dims_mismatch(const ir_kernel_args_t *a) {
  return ad_status_make(AD_STATUS_INTERNAL, "node '%s' (%s): inconsistent actual dims",
                        a->node->name ? a->node->name : "?", ir_op_name(a->node->op));
}

static ad_status_t oom(const ir_kernel_args_t *a) {
  return ad_status_make(AD_STATUS_RESOURCE, "node '%s' (%s): out of memory for kernel scratch",
                        a->node->name ? a->node->name : "?", ir_op_name(a->node->op));
}

/* What one term of a pairwise position sum is (p is a per-sum constant). */
typedef enum pw_kind {
  PW_A,      /* a[i] */
  PW_AB,     /* a[i] * b[i] */
  PW_SQDEV,  /* (a[i] - p)^2 */
  PW_A_BDEV, /* a[i] * (b[i] - p) */
} pw_kind_t;

static double pw_leaf(pw_kind_t kind, ir_dtype_t dt, const void *a, const void *b, int64_t i0,
                      int64_t i1, double p) {
  double s = 0.0;
  switch (kind) {
    case PW_A:
      for (int64_t i = i0; i < i1; i++) s += ld(a, dt, i);
      break;
    case PW_AB:
      for (int64_t i = i0; i < i1; i++) s += ld(a, dt, i) * ld(b, dt, i);
      break;
    case PW_SQDEV:
      for (int64_t i = i0; i < i1; i++) {
        double d = ld(a, dt, i) - p;
        s += d * d;
      }
      break;
    case PW_A_BDEV:
      for (int64_t i = i0; i < i1; i++) s += ld(a, dt, i) * (ld(b, dt, i) - p);
      break;
  }
  return s;
}

/* Sum of terms [i0, i1) of a and b (element pointers already offset): the split points depend
 * only on the range, so the result does too. */
static double pw_sum(pw_kind_t kind, ir_dtype_t dt, const void *a, const void *b, int64_t i0,
                     int64_t i1, double p) {
  if (i1 - i0 <= PW_LEAF) return pw_leaf(kind, dt, a, b, i0, i1, p);
  int64_t mid = i0 + (i1 - i0) / 2;
  return pw_sum(kind, dt, a, b, i0, mid, p) + pw_sum(kind, dt, a, b, mid, i1, p);
}

/* Pairwise sum of v[0..n) (per-sample partials; n is the batch size). */
static double pw_array(const double *v, int64_t n) {
  if (n <= 2) return n <= 0 ? 0.0 : n == 1 ? v[0] : v[0] + v[1];
  int64_t mid = n / 2;
  return pw_array(v, mid) + pw_array(v + mid, n - mid);
}

/* Element pointer arithmetic on a typed buffer. */
static inline const void *elem(const void *p, ir_dtype_t dt, int64_t i) {
  return (const char *)p + (size_t)i * ir_dtype_size(dt);
}

/* ---- padding and attributes ------------------------------------------------------------- */

/* The effective padding for kernel width K: the attribute, or K/2 for odd K. False when the
 * attribute is malformed or absent with an even K. */
static bool conv_padding(const ir_node_t *n, int64_t K, int64_t *p) {
  const ir_attr_t *a = ir_node_attr(n, "padding");
  if (a) {
    *p = a->i;
    return a->kind == IR_ATTR_INT && a->i >= 0;
  }
  if (K % 2 == 0) return false;
  *p = K / 2;
  return true;
}

static ad_status_t check_flag_attr(const ir_graph_t *g, const ir_node_t *n, const char *key) {
  const ir_attr_t *a = ir_node_attr(n, key);
  if (a && (a->kind != IR_ATTR_INT || (a->i != 0 && a->i != 1)))
    return ir_node_error(g, n, "attribute '%s' must be 0 or 1", key);
  return AD_OK;
}

static ad_status_t check_number_attr(const ir_graph_t *g, const ir_node_t *n, const char *key,
                                     double lo, double hi) {
  const ir_attr_t *a = ir_node_attr(n, key);
  if (!a) return AD_OK;
  if (a->kind != IR_ATTR_FLOAT && a->kind != IR_ATTR_INT)
    return ir_node_error(g, n, "attribute '%s' must be a number", key);
  double v = ir_node_attr_float(n, key, 0.0);
  if (!isfinite(v) || v < lo || v > hi)
    return ir_node_error(g, n, "attribute '%s' must be in [%g, %g], got %g", key, lo, hi, v);
  return AD_OK;
}

/* ---- conv1d type inference --------------------------------------------------------------- */

/* Checks x [B, Cin, L] and w [Cout, Cin, K] (K static); gives K, the padding and Lout's dim. */
static ad_status_t conv_geometry(const ir_graph_t *g, const ir_node_t *n, int64_t *K, int64_t *p,
                                 ir_dim_t *lout) {
  const ir_type_t *x = ir_in_type(g, n, 0), *w = ir_in_type(g, n, 1);
  if (!ir_dtype_is_float(x->dtype) || x->rank != 3)
    return ir_node_error(g, n, "x (input 0) must be a float [B, Cin, L] tensor");
  if (w->dtype != x->dtype || w->rank != 3)
    return ir_node_error(g, n, "w (input 1) must be %s[Cout, Cin, K]", ir_dtype_name(x->dtype));
  if (!ir_dim_equal(w->dims[1], x->dims[1]))
    return ir_node_error(g, n, "w (input 1) has a different Cin (dim 1) from x's channels");
  if (!ir_dim_is_const(w->dims[2], K) || *K < 1)
    return ir_node_error(g, n, "w (input 1) must have a static kernel width K >= 1");
  if (!conv_padding(n, *K, p))
    return ir_node_error(g, n,
                         ir_node_attr(n, "padding")
                             ? "attribute 'padding' must be an integer >= 0"
                             : "an even kernel width (K=%lld) needs an explicit 'padding'",
                         (long long)*K);
  if (!ir_dim_add_const(x->dims[2], 2 * *p - *K + 1, lout))
    return ir_node_error(g, n, "the output length L + 2p - K + 1 is not representable");
  /* Dims are nondecreasing in every symbol, so all-ones symbols give the shortest length. */
  int64_t ones[IR_MAX_SYMBOLS];
  for (int i = 0; i < IR_MAX_SYMBOLS; i++) ones[i] = 1;
  if (ir_dim_eval(*lout, ones) < 1)
    return ir_node_error(g, n, "the output length L + 2p - K + 1 can be < 1 (K=%lld, padding=%lld)",
                         (long long)*K, (long long)*p);
  return AD_OK;
}

static ad_status_t infer_conv1d(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  int64_t K, p;
  ir_dim_t lout;
  AD_RETURN_IF_ERROR(conv_geometry(g, n, &K, &p, &lout));
  const ir_type_t *x = ir_in_type(g, n, 0), *w = ir_in_type(g, n, 1);
  if (n->ninputs == 3) {
    const ir_type_t *b = ir_in_type(g, n, 2);
    if (b->dtype != x->dtype || b->rank != 1 || !ir_dim_equal(b->dims[0], w->dims[0]))
      return ir_node_error(g, n, "b (input 2) must be %s[Cout]", ir_dtype_name(x->dtype));
  }
  out[0] = *x;
  out[0].dims[1] = w->dims[0];
  out[0].dims[2] = lout;
  return AD_OK;
}

static ad_status_t infer_conv1d_bwd(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  int64_t K, p;
  ir_dim_t lout;
  AD_RETURN_IF_ERROR(conv_geometry(g, n, &K, &p, &lout));
  AD_RETURN_IF_ERROR(check_flag_attr(g, n, "has_bias"));
  const ir_type_t *x = ir_in_type(g, n, 0), *w = ir_in_type(g, n, 1), *dy = ir_in_type(g, n, 2);
  if (dy->dtype != x->dtype || dy->rank != 3 || !ir_dim_equal(dy->dims[0], x->dims[0]) ||
      !ir_dim_equal(dy->dims[1], w->dims[0]) || !ir_dim_equal(dy->dims[2], lout))
    return ir_node_error(g, n, "dy (input 2) must have the conv1d output's type [B, Cout, Lout]");
  out[0] = *x;
  out[1] = *w;
  if (ir_node_attr_int(n, "has_bias", 0)) {
    out[2] = *w;
    out[2].rank = 1;
    memset(&out[2].dims[1], 0, sizeof out[2].dims[0] * (IR_MAX_RANK - 1));
  }
  return AD_OK;
}

/* ---- conv1d kernels -------------------------------------------------------------------- */

/* One output row family of a correlation-shaped sum, shared by the forward and by dx:
 *   out[r, t] = sum_{ch, k} wt[wbase(r) + ch*wch + k] * in[ibase(r) + ch*ich + t + shift(k)]
 * forward: rows (b, o), ch = c, in = x [B,Cin,L],    shift = k - p;
 * dx:      rows (b, c), ch = o, in = dy [B,Cout,Lout], shift = p - k. */
typedef struct conv_ctx {
  ir_dtype_t dt;
  const void *in, *w, *bias; /* bias [nrow_ch] or NULL (forward only) */
  void *out;                 /* [B, nrow_ch, lout] */
  int64_t nrow_ch;           /* rows per sample: Cout (forward) or Cin (dx) */
  int64_t nch;               /* channels summed: Cin (forward) or Cout (dx) */
  int64_t K, lin, lout, ntiles, depth;
  bool transposed; /* dx: weight strides and tap shift of the transposed correlation */
  int64_t p;
  atomic_int failed;
} conv_ctx_t;

/* acc[0, t1 - t0) += sum over channels [c0, c1) and taps, for output row (b, r). */
static void conv_leaf(const conv_ctx_t *c, int64_t b, int64_t r, int64_t c0, int64_t c1, int64_t t0,
                      int64_t t1, double *acc) {
  for (int64_t ch = c0; ch < c1; ch++) {
    int64_t ibase = (b * c->nch + ch) * c->lin;
    for (int64_t k = 0; k < c->K; k++) {
      int64_t widx =
          c->transposed ? (ch * c->nrow_ch + r) * c->K + k : (r * c->nch + ch) * c->K + k;
      int64_t shift = c->transposed ? c->p - k : k - c->p;
      double wv = ld(c->w, c->dt, widx);
      /* valid t: 0 <= t + shift < lin */
      int64_t lo = imax(t0, -shift), hi = imin(t1, c->lin - shift);
      if (c->dt == IR_DTYPE_F32) {
        const float *s = (const float *)c->in + ibase + shift;
        for (int64_t t = lo; t < hi; t++) acc[t - t0] += wv * (double)s[t];
      } else {
        const double *s = (const double *)c->in + ibase + shift;
        for (int64_t t = lo; t < hi; t++) acc[t - t0] += wv * s[t];
      }
    }
  }
}

/* acc = the channel sum over [c0, c1), pairwise over halves; scratch holds one tile per level. */
static void conv_chsum(const conv_ctx_t *c, int64_t b, int64_t r, int64_t c0, int64_t c1,
                       int64_t t0, int64_t t1, double *acc, double *scratch) {
  int64_t n = t1 - t0;
  if (c1 - c0 <= CH_LEAF) {
    memset(acc, 0, sizeof(double) * (size_t)n);
    conv_leaf(c, b, r, c0, c1, t0, t1, acc);
    return;
  }
  int64_t mid = c0 + (c1 - c0) / 2;
  conv_chsum(c, b, r, c0, mid, t0, t1, acc, scratch);
  conv_chsum(c, b, r, mid, c1, t0, t1, scratch, scratch + CONV_TILE);
  for (int64_t i = 0; i < n; i++) acc[i] += scratch[i];
}

/* Levels of conv_chsum below the top for n channels. */
static int64_t chsum_depth(int64_t n) {
  int64_t d = 0;
  while (n > CH_LEAF) {
    n -= n / 2; /* the larger half */
    d++;
  }
  return d;
}

/* Tasks are (b, row, tile) triples in row-major order. */
static void conv_tiles(void *vctx, int64_t begin, int64_t end) {
  conv_ctx_t *c = vctx;
  double *buf = malloc(sizeof(double) * (size_t)(CONV_TILE * (c->depth + 1)));
  if (!buf) {
    atomic_store(&c->failed, 1);
    return;
  }
  for (int64_t task = begin; task < end; task++) {
    int64_t row = task / c->ntiles, tile = task % c->ntiles;
    int64_t b = row / c->nrow_ch, r = row % c->nrow_ch;
    int64_t t0 = tile * CONV_TILE, t1 = imin(t0 + CONV_TILE, c->lout);
    conv_chsum(c, b, r, 0, c->nch, t0, t1, buf, buf + CONV_TILE);
    double bias = c->bias ? ld(c->bias, c->dt, r) : 0.0;
    for (int64_t t = t0; t < t1; t++) st(c->out, c->dt, row * c->lout + t, bias + buf[t - t0]);
  }
  free(buf);
}

/* Runs a conv_ctx over B samples; false when a worker ran out of memory. */
static bool conv_run(ir_parallel_t *par, conv_ctx_t *c, int64_t B) {
  c->ntiles = (c->lout + CONV_TILE - 1) / CONV_TILE;
  c->depth = chsum_depth(c->nch);
  atomic_init(&c->failed, 0);
  int64_t ntasks = B * c->nrow_ch * c->ntiles;
  /* about 64k multiply-adds per task */
  int64_t per = CONV_TILE * c->nch * c->K;
  int64_t grain = per >= 65536 ? 1 : 65536 / per;
  ir_parallel_for(par, ntasks, grain, conv_tiles, c);
  return !atomic_load(&c->failed);
}

/* The actual geometry a kernel sees; false when the dims disagree. */
typedef struct conv_dims {
  int64_t B, Cin, L, Cout, K, p, Lout;
} conv_dims_t;

static bool conv_dims(const ir_kernel_args_t *a, const ir_tensor_t *y, conv_dims_t *d) {
  const ir_tensor_t *x = &a->in[0], *w = &a->in[1];
  if (x->rank != 3 || w->rank != 3 || y->rank != 3) return false;
  d->B = x->dims[0];
  d->Cin = x->dims[1];
  d->L = x->dims[2];
  d->Cout = w->dims[0];
  d->K = w->dims[2];
  if (w->dims[1] != d->Cin || d->K < 1 || !conv_padding(a->node, d->K, &d->p)) return false;
  d->Lout = d->L + 2 * d->p - d->K + 1;
  return d->Lout >= 0 && y->dims[0] == d->B && y->dims[1] == d->Cout && y->dims[2] == d->Lout;
}

static ad_status_t kernel_conv1d(const ir_kernel_args_t *a) {
  AD_RETURN_IF_ERROR(check_kernel_dtype(a));
  conv_dims_t d;
  if (!conv_dims(a, &a->out[0], &d)) return dims_mismatch(a);
  if (a->nin == 3 && (a->in[2].rank != 1 || a->in[2].dims[0] != d.Cout)) return dims_mismatch(a);
  conv_ctx_t c = {.dt = a->in[0].dtype,
                  .in = a->in[0].data,
                  .w = a->in[1].data,
                  .bias = a->nin == 3 ? a->in[2].data : NULL,
                  .out = a->out[0].data,
                  .nrow_ch = d.Cout,
                  .nch = d.Cin,
                  .K = d.K,
                  .lin = d.L,
                  .lout = d.Lout,
                  .p = d.p};
  return conv_run(a->par, &c, d.B) ? AD_OK : oom(a);
}

/* dw[o, c, k] = sum_{b, t} dy[b, o, t] * x[b, c, t + k - p]; db[o] = sum_{b, t} dy[b, o, t].
 * Tasks are (o, c) pairs; each sum is pairwise over t per sample, then over the samples. */
typedef struct conv_dw_ctx {
  ir_dtype_t dt;
  const void *x, *dy; /* x [B, Cin, L], dy [B, Cout, Lout] */
  void *dw, *db;      /* dw [Cout, Cin, K], db [Cout] or NULL */
  conv_dims_t d;
  atomic_int failed;
} conv_dw_ctx_t;

static void conv_dw_pairs(void *vctx, int64_t begin, int64_t end) {
  conv_dw_ctx_t *c = vctx;
  const conv_dims_t *d = &c->d;
  double *part = malloc(sizeof(double) * (size_t)(d->B + 1)); /* part: [B] */
  if (!part) {
    atomic_store(&c->failed, 1);
    return;
  }
  for (int64_t pair = begin; pair < end; pair++) {
    int64_t o = pair / d->Cin, ch = pair % d->Cin;
    for (int64_t k = 0; k < d->K; k++) {
      int64_t shift = k - d->p;
      /* valid t: 0 <= t < Lout and 0 <= t + shift < L */
      int64_t lo = imax(0, -shift), hi = imin(d->Lout, d->L - shift);
      for (int64_t b = 0; b < d->B; b++) {
        const void *dyr = elem(c->dy, c->dt, (b * d->Cout + o) * d->Lout + lo);
        const void *xr = elem(c->x, c->dt, (b * d->Cin + ch) * d->L + lo + shift);
        part[b] = hi > lo ? pw_sum(PW_AB, c->dt, dyr, xr, 0, hi - lo, 0.0) : 0.0;
      }
      st(c->dw, c->dt, (o * d->Cin + ch) * d->K + k, pw_array(part, d->B));
    }
    if (c->db && ch == 0) {
      for (int64_t b = 0; b < d->B; b++)
        part[b] = pw_sum(PW_A, c->dt, elem(c->dy, c->dt, (b * d->Cout + o) * d->Lout), NULL, 0,
                         d->Lout, 0.0);
      st(c->db, c->dt, o, pw_array(part, d->B));
    }
  }
  free(part);
}

static ad_status_t kernel_conv1d_bwd(const ir_kernel_args_t *a) {
  AD_RETURN_IF_ERROR(check_kernel_dtype(a));
  conv_dims_t d;
  const ir_tensor_t *x = &a->in[0], *w = &a->in[1], *dy = &a->in[2];
  if (!conv_dims(a, dy, &d)) return dims_mismatch(a);
  bool has_bias = ir_node_attr_int(a->node, "has_bias", 0) != 0;
  if (a->nout != (has_bias ? 3u : 2u)) return dims_mismatch(a);
  ir_dtype_t dt = x->dtype;
  /* dx: the transposed correlation of dy with w */
  conv_ctx_t c = {.dt = dt,
                  .in = dy->data,
                  .w = w->data,
                  .out = a->out[0].data,
                  .nrow_ch = d.Cin,
                  .nch = d.Cout,
                  .K = d.K,
                  .lin = d.Lout,
                  .lout = d.L,
                  .transposed = true,
                  .p = d.p};
  if (!conv_run(a->par, &c, d.B)) return oom(a);
  conv_dw_ctx_t cw = {.dt = dt,
                      .x = x->data,
                      .dy = dy->data,
                      .dw = a->out[1].data,
                      .db = has_bias ? a->out[2].data : NULL,
                      .d = d};
  atomic_init(&cw.failed, 0);
  int64_t per = d.K * d.B * d.Lout;
  ir_parallel_for(a->par, d.Cout * d.Cin, per >= 65536 ? 1 : 65536 / (per > 0 ? per : 1),
                  conv_dw_pairs, &cw);
  return atomic_load(&cw.failed) ? oom(a) : AD_OK;
}

/* ---- batchnorm type inference ----------------------------------------------------------- */

/* x [B, C, L] at input 0 and the [C] vectors at the given inputs. */
static ad_status_t check_bn_inputs(const ir_graph_t *g, const ir_node_t *n,
                                   const char *const *names, uint32_t nvec) {
  const ir_type_t *x = ir_in_type(g, n, 0);
  if (!ir_dtype_is_float(x->dtype) || x->rank != 3)
    return ir_node_error(g, n, "x (input 0) must be a float [B, C, L] tensor");
  for (uint32_t i = 1; i <= nvec; i++) {
    const ir_type_t *t = ir_in_type(g, n, i);
    if (t->dtype != x->dtype || t->rank != 1 || !ir_dim_equal(t->dims[0], x->dims[1]))
      return ir_node_error(g, n, "%s (input %u) must be %s[C] with C = x's dim 1", names[i - 1], i,
                           ir_dtype_name(x->dtype));
  }
  return AD_OK;
}

static ad_status_t infer_batchnorm(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  static const char *const names[4] = {"w", "b", "running_mean", "running_var"};
  AD_RETURN_IF_ERROR(check_bn_inputs(g, n, names, 4));
  AD_RETURN_IF_ERROR(check_number_attr(g, n, "eps", 0.0, INFINITY));
  AD_RETURN_IF_ERROR(check_number_attr(g, n, "momentum", 0.0, 1.0));
  AD_RETURN_IF_ERROR(check_flag_attr(g, n, "training"));
  out[0] = *ir_in_type(g, n, 0);
  for (int j = 1; j < 5; j++) out[j] = *ir_in_type(g, n, 3);
  return AD_OK;
}

static ad_status_t infer_batchnorm_bwd(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  static const char *const names[3] = {"w", "mean", "rstd"};
  AD_RETURN_IF_ERROR(check_bn_inputs(g, n, names, 3));
  AD_RETURN_IF_ERROR(check_flag_attr(g, n, "training"));
  const ir_type_t *x = ir_in_type(g, n, 0);
  if (!ir_type_equal(ir_in_type(g, n, 4), x))
    return ir_node_error(g, n, "dy (input 4) must have x's type");
  out[0] = *x;
  out[1] = out[2] = *ir_in_type(g, n, 1);
  return AD_OK;
}

/* ---- batchnorm kernels ------------------------------------------------------------------ */

typedef struct bn_ctx {
  ir_dtype_t dt;
  bool training;
  double eps, momentum;
  int64_t B, C, L;
  const void *x, *w, *b, *rm, *rv, *dy; /* x, dy [B, C, L]; the rest [C] */
  const void *mean_in, *rstd_in;        /* backward: the forward's statistics [C] */
  void *y, *mean, *rstd, *nrm, *nrv;    /* forward outputs */
  void *dx, *dw, *db;                   /* backward outputs */
  atomic_int failed;
} bn_ctx_t;

/* Pairwise sum over (b, l) of channel ch: per sample over l, then over the samples. */
static double bn_sum(const bn_ctx_t *c, pw_kind_t kind, const void *a, const void *bsrc, int64_t ch,
                     double p, double *part) {
  for (int64_t s = 0; s < c->B; s++) {
    int64_t base = (s * c->C + ch) * c->L;
    part[s] = pw_sum(kind, c->dt, elem(a, c->dt, base), bsrc ? elem(bsrc, c->dt, base) : NULL, 0,
                     c->L, p);
  }
  return pw_array(part, c->B);
}

static void bn_fwd_channels(void *vctx, int64_t begin, int64_t end) {
  bn_ctx_t *c = vctx;
  double *part = malloc(sizeof(double) * (size_t)(c->B + 1)); /* part: [B] */
  if (!part) {
    atomic_store(&c->failed, 1);
    return;
  }
  double n = (double)(c->B * c->L);
  for (int64_t ch = begin; ch < end; ch++) {
    double rm = ld(c->rm, c->dt, ch), rv = ld(c->rv, c->dt, ch), mean, rstd;
    if (c->training) {
      mean = bn_sum(c, PW_A, c->x, NULL, ch, 0.0, part) / n;
      /* Two passes (mean, then squared deviations) avoid the cancellation of E[x^2]-E[x]^2. */
      double ss = bn_sum(c, PW_SQDEV, c->x, NULL, ch, mean, part);
      rstd = 1.0 / sqrt(ss / n + c->eps);
      /* torch: momentum * stat + (1 - momentum) * running, unbiased variance */
      st(c->nrm, c->dt, ch, c->momentum * mean + (1.0 - c->momentum) * rm);
      st(c->nrv, c->dt, ch, c->momentum * (ss / (n - 1.0)) + (1.0 - c->momentum) * rv);
    } else {
      mean = rm;
      rstd = 1.0 / sqrt(rv + c->eps);
      st(c->nrm, c->dt, ch, rm);
      st(c->nrv, c->dt, ch, rv);
    }
    st(c->mean, c->dt, ch, mean);
    st(c->rstd, c->dt, ch, rstd);
    double wv = ld(c->w, c->dt, ch), bv = ld(c->b, c->dt, ch);
    for (int64_t s = 0; s < c->B; s++) {
      int64_t base = (s * c->C + ch) * c->L;
      for (int64_t l = 0; l < c->L; l++)
        st(c->y, c->dt, base + l, (ld(c->x, c->dt, base + l) - mean) * rstd * wv + bv);
    }
  }
  free(part);
}

static ad_status_t bn_dims(const ir_kernel_args_t *a, uint32_t nvec, bn_ctx_t *c) {
  const ir_tensor_t *x = &a->in[0];
  if (x->rank != 3) return dims_mismatch(a);
  c->dt = x->dtype;
  c->B = x->dims[0];
  c->C = x->dims[1];
  c->L = x->dims[2];
  for (uint32_t i = 1; i <= nvec; i++)
    if (a->in[i].rank != 1 || a->in[i].dims[0] != c->C) return dims_mismatch(a);
  c->training = ir_node_attr_int(a->node, "training", 1) != 0;
  return AD_OK;
}

static int64_t channel_grain(const bn_ctx_t *c) {
  int64_t per = c->B * c->L;
  return per >= 16384 ? 1 : 16384 / (per > 0 ? per : 1);
}

static ad_status_t kernel_batchnorm(const ir_kernel_args_t *a) {
  AD_RETURN_IF_ERROR(check_kernel_dtype(a));
  bn_ctx_t c = {0};
  AD_RETURN_IF_ERROR(bn_dims(a, 4, &c));
  if (c.training && c.B * c.L <= 1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "node '%s' (batchnorm): training needs more than one value per channel "
                          "(B*L = %lld)",
                          a->node->name ? a->node->name : "?", (long long)(c.B * c.L));
  c.eps = ir_node_attr_float(a->node, "eps", 1e-5);
  c.momentum = ir_node_attr_float(a->node, "momentum", 0.1);
  c.x = a->in[0].data;
  c.w = a->in[1].data;
  c.b = a->in[2].data;
  c.rm = a->in[3].data;
  c.rv = a->in[4].data;
  c.y = a->out[0].data;
  c.mean = a->out[1].data;
  c.rstd = a->out[2].data;
  c.nrm = a->out[3].data;
  c.nrv = a->out[4].data;
  atomic_init(&c.failed, 0);
  ir_parallel_for(a->par, c.C, channel_grain(&c), bn_fwd_channels, &c);
  return atomic_load(&c.failed) ? oom(a) : AD_OK;
}

/* Per channel: xhat = (x - mean) * rstd, dw = sum dy * xhat, db = sum dy;
 * training: dx = w * rstd * (dy - db/n - xhat * dw/n) (mean and variance depend on x);
 * eval:     dx = dy * w * rstd. */
static void bn_bwd_channels(void *vctx, int64_t begin, int64_t end) {
  bn_ctx_t *c = vctx;
  double *part = malloc(sizeof(double) * (size_t)(c->B + 1)); /* part: [B] */
  if (!part) {
    atomic_store(&c->failed, 1);
    return;
  }
  double n = (double)(c->B * c->L);
  for (int64_t ch = begin; ch < end; ch++) {
    double mean = ld(c->mean_in, c->dt, ch), rstd = ld(c->rstd_in, c->dt, ch);
    double wv = ld(c->w, c->dt, ch);
    double sdy = bn_sum(c, PW_A, c->dy, NULL, ch, 0.0, part);
    double sdyx = bn_sum(c, PW_A_BDEV, c->dy, c->x, ch, mean, part) * rstd;
    st(c->dw, c->dt, ch, sdyx);
    st(c->db, c->dt, ch, sdy);
    double gm = sdy / n, gx = sdyx / n, scale = wv * rstd;
    for (int64_t s = 0; s < c->B; s++) {
      int64_t base = (s * c->C + ch) * c->L;
      for (int64_t l = 0; l < c->L; l++) {
        double dyv = ld(c->dy, c->dt, base + l), v;
        if (c->training) {
          double xhat = (ld(c->x, c->dt, base + l) - mean) * rstd;
          v = scale * (dyv - gm - xhat * gx);
        } else {
          v = dyv * scale;
        }
        st(c->dx, c->dt, base + l, v);
      }
    }
  }
  free(part);
}

static ad_status_t kernel_batchnorm_bwd(const ir_kernel_args_t *a) {
  AD_RETURN_IF_ERROR(check_kernel_dtype(a));
  bn_ctx_t c = {0};
  AD_RETURN_IF_ERROR(bn_dims(a, 3, &c));
  const ir_tensor_t *dy = &a->in[4];
  if (dy->rank != 3 || dy->dims[0] != c.B || dy->dims[1] != c.C || dy->dims[2] != c.L)
    return dims_mismatch(a);
  c.x = a->in[0].data;
  c.w = a->in[1].data;
  c.mean_in = a->in[2].data;
  c.rstd_in = a->in[3].data;
  c.dy = dy->data;
  c.dx = a->out[0].data;
  c.dw = a->out[1].data;
  c.db = a->out[2].data;
  atomic_init(&c.failed, 0);
  ir_parallel_for(a->par, c.C, channel_grain(&c), bn_bwd_channels, &c);
  return atomic_load(&c.failed) ? oom(a) : AD_OK;
}

/* ---- VJP rules ------------------------------------------------------------------------- */

/* A failed emission leaves a sticky error in g: hand it up instead of wiring IR_NONE in. */
static ad_status_t emitted(ir_graph_t *g, const ir_vjp_ctx_t *c, uint32_t v) {
  if (v != IR_NONE) return AD_OK;
  ad_status_t e = ir_graph_take_error(g);
  if (e) return ad_status_annotate(e, "in the VJP of node '%s'", c->node.name);
  return ir_node_error(g, &c->node, "VJP emission produced no value");
}

static ad_status_t vjp_conv1d(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  int64_t K = 0, p = 0;
  const ir_type_t *w = ir_value_type(c->g, c->node.inputs[1]);
  if (!ir_dim_is_const(w->dims[2], &K) || !conv_padding(&c->node, K, &p))
    return ir_node_error(c->g, &c->node, "VJP: the kernel width or padding is malformed");
  bool has_bias = c->node.ninputs == 3;
  ir_attr_t attrs[2] = {IR_ATTR_I("has_bias", has_bias), IR_ATTR_I("padding", p)};
  uint32_t ins[3] = {c->node.inputs[0], c->node.inputs[1], dy};
  uint32_t r = ir_emit(c->g, IR_OP_CONV1D_BWD, ins, 3, attrs, 2);
  AD_RETURN_IF_ERROR(emitted(c->g, c, r));
  c->in_grads[0] = r;
  c->in_grads[1] = r + 1;
  if (has_bias) c->in_grads[2] = r + 2;
  return AD_OK;
}

static ad_status_t vjp_batchnorm(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0]; /* the statistics and running stats are non-differentiable */
  if (dy == IR_NONE) return AD_OK;
  ir_attr_t attr = IR_ATTR_I("training", ir_node_attr_int(&c->node, "training", 1) != 0);
  uint32_t ins[5] = {c->node.inputs[0], c->node.inputs[1], c->node.output0 + 1, c->node.output0 + 2,
                     dy};
  uint32_t r = ir_emit(c->g, IR_OP_BATCHNORM_BWD, ins, 5, &attr, 1);
  AD_RETURN_IF_ERROR(emitted(c->g, c, r));
  c->in_grads[0] = r;
  c->in_grads[1] = r + 1;
  c->in_grads[2] = r + 2;
  return AD_OK;
}

/* ---- costs ----------------------------------------------------------------------------- */

/* in[1] is w [Cout, Cin, K]: each output element is a Cin*K-long dot product. */
static void cost_conv1d(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                        const ir_shape_t *out, ir_cost_t *c) {
  (void)n;
  (void)dt;
  c->flops = 2ull * (uint64_t)ir_shape_numel(&out[0]) * (uint64_t)(in[1].dims[1] * in[1].dims[2]);
}

/* dx and dw each cost the forward's multiply-adds (in[2] is dy); db one add per dy element. */
static void cost_conv1d_bwd(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                            const ir_shape_t *out, ir_cost_t *c) {
  (void)dt;
  (void)out;
  uint64_t fwd =
      2ull * (uint64_t)ir_shape_numel(&in[2]) * (uint64_t)(in[1].dims[1] * in[1].dims[2]);
  c->flops = 2u * fwd + (ir_node_attr_int(n, "has_bias", 0) ? (uint64_t)ir_shape_numel(&in[2]) : 0);
}

/* statistics (3 per element in training), normalise and affine (4) */
static void cost_batchnorm(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                           const ir_shape_t *out, ir_cost_t *c) {
  (void)dt;
  (void)out;
  c->flops = (uint64_t)ir_shape_numel(&in[0]) * (ir_node_attr_int(n, "training", 1) ? 7u : 4u);
}

/* two sums (3), dx (6 in training, 2 in eval) */
static void cost_batchnorm_bwd(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                               const ir_shape_t *out, ir_cost_t *c) {
  (void)dt;
  (void)out;
  c->flops = (uint64_t)ir_shape_numel(&in[0]) * (ir_node_attr_int(n, "training", 1) ? 9u : 5u);
}

void ir_ops_register_conv(ir_op_info_t *t) {
  t[IR_OP_CONV1D] = (ir_op_info_t){.fusion = IR_FUSION_CONTRACTION,
                                   .min_inputs = 2,
                                   .max_inputs = 3,
                                   .noutputs = 1,
                                   .infer = infer_conv1d,
                                   .kernel = kernel_conv1d,
                                   .vjp = vjp_conv1d,
                                   .cost = cost_conv1d};
  /* Two contractions of different shapes (dx, dw) and a reduction (db). */
  t[IR_OP_CONV1D_BWD] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE,
                                       .min_inputs = 3,
                                       .max_inputs = 3,
                                       .noutputs = -1,
                                       .infer = infer_conv1d_bwd,
                                       .kernel = kernel_conv1d_bwd,
                                       .cost = cost_conv1d_bwd};
  /* Per-channel statistics over (B, L), not the last axis, next to the running-stat outputs. */
  t[IR_OP_BATCHNORM] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE,
                                      .min_inputs = 5,
                                      .max_inputs = 5,
                                      .noutputs = 5,
                                      .infer = infer_batchnorm,
                                      .kernel = kernel_batchnorm,
                                      .vjp = vjp_batchnorm,
                                      .nondiff_inputs = (1u << 3) | (1u << 4), /* running stats */
                                      .cost = cost_batchnorm};
  t[IR_OP_BATCHNORM_BWD] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE,
                                          .min_inputs = 5,
                                          .max_inputs = 5,
                                          .noutputs = 3,
                                          .infer = infer_batchnorm_bwd,
                                          .kernel = kernel_batchnorm_bwd,
                                          .cost = cost_batchnorm_bwd};
}
