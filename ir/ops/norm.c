/* Ops of the norm group: softmax, LayerNorm, RMSNorm and their backward ops (semantics in
 * ir/ops.def). Everything normalises over the LAST axis; x is [..., H], "rows" are the N
 * leading positions.
 *
 * Optional inputs are omitted, never passed as placeholders, so the input count says which
 * ones are present:
 *   softmax        (x)                                  -> y
 *   softmax_bwd    (y, dy)                              -> dx = y * (dy - sum(dy * y))
 *   layernorm      (x) | (x, w) | (x, w, b)  attr eps   -> y, mean, rstd
 *   layernorm_bwd  (x, mean, rstd, dy)                  -> dx
 *                  (x, w, mean, rstd, dy)               -> dx, dw, db
 *   rmsnorm        (x) | (x, w)              attr eps   -> y, rstd
 *   rmsnorm_bwd    (x, rstd, dy)                        -> dx
 *                  (x, w, rstd, dy)                     -> dx, dw
 * A bias without a weight cannot be expressed (no model in scope has one; a builder would
 * pass w = ones). w and b are [H]; mean and rstd are [...] = x's shape without the last axis
 * (rank 0 for a vector): torch's native_layer_norm results with the kept last dim squeezed.
 * Variance is biased (divides by H) and rstd = 1/sqrt(var + eps), as torch computes it.
 * eps defaults to 1e-5 (torch.nn.LayerNorm) for layernorm and 1e-6 (HF RMSNorm modules) for
 * rmsnorm; builders normally pass the peer's value explicitly.
 *
 * Gradients. mean and rstd are non-differentiable outputs, as in torch (native_layer_norm's
 * output_differentiability is [True, False, False]): their cotangents are ignored and the
 * VJP uses only dy of output 0. softmax_bwd has a VJP (it is linear in dy and cheap);
 * layernorm_bwd and rmsnorm_bwd have none: no job needs second derivatives of a norm.
 *
 * Numerics. The kernels compute in double and round once on store. Every sum is pairwise
 * over fixed halves of its index range with leaves of at most PW_LEAF terms added in order,
 * so results depend only on the sizes, never on the thread partition (rows are split across
 * threads; the column sums dw/db are split by column), and f64 gets pairwise error growth.
 * Row kernels read each element of a row before writing that element only, so softmax,
 * layernorm and rmsnorm may run in place (IR_OP_FLAG_INPLACE). */
#include <math.h>
#include <string.h>

#include "ir/ops/ops_internal.h"

#define PW_LEAF 32

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

static ad_status_t check_kernel_dtype(const ir_kernel_args_t *a) {
  ir_dtype_t dt = a->in[0].dtype;
  if (dt == IR_DTYPE_F32 || dt == IR_DTYPE_F64) return AD_OK;
  return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                        "node '%s' (%s): the reference kernel handles f32 and f64, not %s",
                        a->node->name ? a->node->name : "?", ir_op_name(a->node->op),
                        ir_dtype_name(dt));
}

/* x: [N, H] view of a rank >= 1 tensor: N = product of the leading dims. */
static void rows_of(const ir_tensor_t *t, int64_t *nrows, int64_t *h) {
  int64_t n = 1;
  for (int i = 0; i + 1 < t->rank; i++) n *= t->dims[i];
  *nrows = n;
  *h = t->rank ? t->dims[t->rank - 1] : 1;
}

/* The terms a pairwise sum adds: term i reads element (base + i*stride) of x/y; w (when set)
 * is indexed by the same position within a row (row sums) and mean/rstd by i (column sums). */
typedef enum pw_kind {
  PW_X,           /* x */
  PW_EXP,         /* exp(x - p) */
  PW_SQDEV,       /* (x - p)^2 */
  PW_XY,          /* x * y */
  PW_GW,          /* y * w, with y = dy (w absent: y) */
  PW_GW_XHAT,     /* y * w * (x - p) * q: dy * w * xhat of one row (p = mean, q = rstd) */
  PW_COL_XHAT_DY, /* y * (x - mean[i]) * rstd[i]: dw column term (mean NULL: RMSNorm) */
} pw_kind_t;

typedef struct pw_terms {
  pw_kind_t kind;
  ir_dtype_t dt;
  const void *x, *y, *w, *mean, *rstd;
  int64_t base, stride;
  double p, q;
} pw_terms_t;

static double pw_leaf(const pw_terms_t *t, int64_t i0, int64_t i1) {
  double s = 0.0;
  for (int64_t i = i0; i < i1; i++) {
    int64_t e = t->base + i * t->stride;
    double v;
    switch (t->kind) {
      case PW_X: v = ld(t->x, t->dt, e); break;
      case PW_EXP: v = exp(ld(t->x, t->dt, e) - t->p); break;
      case PW_SQDEV: {
        double d = ld(t->x, t->dt, e) - t->p;
        v = d * d;
        break;
      }
      case PW_XY: v = ld(t->x, t->dt, e) * ld(t->y, t->dt, e); break;
      case PW_GW: v = ld(t->y, t->dt, e) * (t->w ? ld(t->w, t->dt, i) : 1.0); break;
      case PW_GW_XHAT:
        v = ld(t->y, t->dt, e) * (t->w ? ld(t->w, t->dt, i) : 1.0) *
            ((ld(t->x, t->dt, e) - t->p) * t->q);
        break;
      case PW_COL_XHAT_DY: {
        double m = t->mean ? ld(t->mean, t->dt, i) : 0.0;
        v = ld(t->y, t->dt, e) * ((ld(t->x, t->dt, e) - m) * ld(t->rstd, t->dt, i));
        break;
      }
      default: v = 0.0; break;
    }
    s += v;
  }
  return s;
}

/* Sum of terms [i0, i1): the split points depend only on the range, so the result does too. */
static double pw_sum(const pw_terms_t *t, int64_t i0, int64_t i1) {
  if (i1 - i0 <= PW_LEAF) return pw_leaf(t, i0, i1);
  int64_t mid = i0 + (i1 - i0) / 2;
  return pw_sum(t, i0, mid) + pw_sum(t, mid, i1);
}

/* Row grain: about 16k elements per task keeps scheduling overhead negligible. */
static int64_t row_grain(int64_t h) { return h >= 16384 ? 1 : 16384 / (h > 0 ? h : 1); }

/* ---- type inference -------------------------------------------------------------------- */
static ad_status_t check_rows_input(const ir_graph_t *g, const ir_node_t *n, uint32_t i,
                                    const char *what) {
  const ir_type_t *t = ir_in_type(g, n, i);
  if (t->rank < 1)
    return ir_node_error(g, n, "%s must have rank >= 1 (normalised over its last axis)", what);
  if (!ir_dtype_is_float(t->dtype))
    return ir_node_error(g, n, "%s must be a float tensor, got %s", what, ir_dtype_name(t->dtype));
  return AD_OK;
}

static ad_status_t check_same_type(const ir_graph_t *g, const ir_node_t *n, uint32_t i,
                                   const ir_type_t *want, const char *what, const char *like) {
  if (!ir_type_equal(ir_in_type(g, n, i), want))
    return ir_node_error(g, n, "%s (input %u) must have the type of %s", what, i, like);
  return AD_OK;
}

/* w or b of x [..., H]: [H], same dtype. */
static ad_status_t check_affine(const ir_graph_t *g, const ir_node_t *n, uint32_t i,
                                const ir_type_t *x, const char *what) {
  const ir_type_t *t = ir_in_type(g, n, i);
  if (t->dtype != x->dtype || t->rank != 1 || !ir_dim_equal(t->dims[0], x->dims[x->rank - 1]))
    return ir_node_error(g, n, "%s (input %u) must be %s[H] with H the last dim of x", what, i,
                         ir_dtype_name(x->dtype));
  return AD_OK;
}

/* mean/rstd of x [..., H]: [...]. */
static ir_type_t row_stat_type(const ir_type_t *x) {
  ir_type_t t = *x;
  t.rank = x->rank - 1;
  memset(&t.dims[t.rank], 0, sizeof t.dims[0] * (size_t)(IR_MAX_RANK - t.rank));
  return t;
}

static ad_status_t check_eps(const ir_graph_t *g, const ir_node_t *n) {
  const ir_attr_t *a = ir_node_attr(n, "eps");
  if (!a) return AD_OK;
  if (a->kind != IR_ATTR_FLOAT && a->kind != IR_ATTR_INT)
    return ir_node_error(g, n, "attribute 'eps' must be a number");
  double eps = ir_node_attr_float(n, "eps", 0.0);
  if (!(eps >= 0.0) || !isfinite(eps))
    return ir_node_error(g, n, "attribute 'eps' must be finite and >= 0, got %g", eps);
  return AD_OK;
}

static ad_status_t infer_softmax(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_rows_input(g, n, 0, "x"));
  out[0] = *ir_in_type(g, n, 0);
  return AD_OK;
}

static ad_status_t infer_softmax_bwd(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_rows_input(g, n, 0, "y"));
  AD_RETURN_IF_ERROR(check_same_type(g, n, 1, ir_in_type(g, n, 0), "dy", "y"));
  out[0] = *ir_in_type(g, n, 0);
  return AD_OK;
}

static ad_status_t infer_layernorm(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_rows_input(g, n, 0, "x"));
  AD_RETURN_IF_ERROR(check_eps(g, n));
  const ir_type_t *x = ir_in_type(g, n, 0);
  if (n->ninputs >= 2) AD_RETURN_IF_ERROR(check_affine(g, n, 1, x, "weight"));
  if (n->ninputs >= 3) AD_RETURN_IF_ERROR(check_affine(g, n, 2, x, "bias"));
  out[0] = *x;
  out[1] = out[2] = row_stat_type(x);
  return AD_OK;
}

static ad_status_t infer_layernorm_bwd(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_rows_input(g, n, 0, "x"));
  const ir_type_t *x = ir_in_type(g, n, 0);
  bool has_w = n->ninputs == 5;
  uint32_t k = has_w ? 2 : 1; /* index of mean */
  if (has_w) AD_RETURN_IF_ERROR(check_affine(g, n, 1, x, "weight"));
  ir_type_t stat = row_stat_type(x);
  AD_RETURN_IF_ERROR(check_same_type(g, n, k, &stat, "mean", "x without its last axis"));
  AD_RETURN_IF_ERROR(check_same_type(g, n, k + 1, &stat, "rstd", "x without its last axis"));
  AD_RETURN_IF_ERROR(check_same_type(g, n, k + 2, x, "dy", "x"));
  out[0] = *x;
  if (has_w) out[1] = out[2] = *ir_in_type(g, n, 1);
  return AD_OK;
}

static ad_status_t infer_rmsnorm(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_rows_input(g, n, 0, "x"));
  AD_RETURN_IF_ERROR(check_eps(g, n));
  const ir_type_t *x = ir_in_type(g, n, 0);
  if (n->ninputs >= 2) AD_RETURN_IF_ERROR(check_affine(g, n, 1, x, "weight"));
  out[0] = *x;
  out[1] = row_stat_type(x);
  return AD_OK;
}

static ad_status_t infer_rmsnorm_bwd(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_rows_input(g, n, 0, "x"));
  const ir_type_t *x = ir_in_type(g, n, 0);
  bool has_w = n->ninputs == 4;
  uint32_t k = has_w ? 2 : 1; /* index of rstd */
  if (has_w) AD_RETURN_IF_ERROR(check_affine(g, n, 1, x, "weight"));
  ir_type_t stat = row_stat_type(x);
  AD_RETURN_IF_ERROR(check_same_type(g, n, k, &stat, "rstd", "x without its last axis"));
  AD_RETURN_IF_ERROR(check_same_type(g, n, k + 1, x, "dy", "x"));
  out[0] = *x;
  if (has_w) out[1] = *ir_in_type(g, n, 1);
  return AD_OK;
}

/* ---- softmax --------------------------------------------------------------------------- */
typedef struct softmax_ctx {
  ir_dtype_t dt;
  const void *x, *dy; /* softmax: x [N, H]; softmax_bwd: x = y, dy [N, H] */
  void *out;          /* [N, H] */
  int64_t h;
} softmax_ctx_t;

static void softmax_rows(void *vctx, int64_t r0, int64_t r1) {
  const softmax_ctx_t *c = vctx;
  int64_t h = c->h;
  for (int64_t r = r0; r < r1; r++) {
    int64_t base = r * h;
    /* Max-subtraction keeps exp in range; -inf rows give NaN as in torch. */
    double m = -INFINITY;
    for (int64_t i = 0; i < h; i++) {
      double v = ld(c->x, c->dt, base + i);
      if (v > m || isnan(v)) m = v;
    }
    pw_terms_t t = {.kind = PW_EXP, .dt = c->dt, .x = c->x, .base = base, .stride = 1, .p = m};
    double inv = 1.0 / pw_sum(&t, 0, h);
    for (int64_t i = 0; i < h; i++)
      st(c->out, c->dt, base + i, exp(ld(c->x, c->dt, base + i) - m) * inv);
  }
}

static ad_status_t kernel_softmax(const ir_kernel_args_t *a) {
  AD_RETURN_IF_ERROR(check_kernel_dtype(a));
  int64_t nrows, h;
  rows_of(&a->in[0], &nrows, &h);
  softmax_ctx_t c = {.dt = a->in[0].dtype, .x = a->in[0].data, .out = a->out[0].data, .h = h};
  ir_parallel_for(a->par, nrows, row_grain(h), softmax_rows, &c);
  return AD_OK;
}

static void softmax_bwd_rows(void *vctx, int64_t r0, int64_t r1) {
  const softmax_ctx_t *c = vctx;
  int64_t h = c->h;
  for (int64_t r = r0; r < r1; r++) {
    int64_t base = r * h;
    pw_terms_t t = {.kind = PW_XY, .dt = c->dt, .x = c->x, .y = c->dy, .base = base, .stride = 1};
    double s = pw_sum(&t, 0, h); /* sum(dy * y) */
    for (int64_t i = 0; i < h; i++) {
      double y = ld(c->x, c->dt, base + i), dy = ld(c->dy, c->dt, base + i);
      st(c->out, c->dt, base + i, y * (dy - s));
    }
  }
}

static ad_status_t kernel_softmax_bwd(const ir_kernel_args_t *a) {
  AD_RETURN_IF_ERROR(check_kernel_dtype(a));
  int64_t nrows, h;
  rows_of(&a->in[0], &nrows, &h);
  softmax_ctx_t c = {.dt = a->in[0].dtype, .x = a->in[0].data, .dy = a->in[1].data,
                     .out = a->out[0].data, .h = h};
  ir_parallel_for(a->par, nrows, row_grain(h), softmax_bwd_rows, &c);
  return AD_OK;
}

/* ---- layernorm / rmsnorm forward ----------------------------------------------------------- */
typedef struct norm_ctx {
  ir_dtype_t dt;
  bool rms; /* RMSNorm: no centring, no bias */
  double eps;
  const void *x, *w, *b; /* x [N, H]; w, b [H] or NULL */
  void *y, *mean, *rstd; /* y [N, H]; mean [N] (layernorm only), rstd [N] */
  int64_t h;
} norm_ctx_t;

static void norm_rows(void *vctx, int64_t r0, int64_t r1) {
  const norm_ctx_t *c = vctx;
  int64_t h = c->h;
  for (int64_t r = r0; r < r1; r++) {
    int64_t base = r * h;
    pw_terms_t t = {.kind = PW_X, .dt = c->dt, .x = c->x, .base = base, .stride = 1};
    double mean = 0.0;
    if (!c->rms) mean = pw_sum(&t, 0, h) / (double)h;
    /* Two passes (mean, then squared deviations) avoid the cancellation of E[x^2]-E[x]^2. */
    t.kind = PW_SQDEV;
    t.p = mean;
    double var = pw_sum(&t, 0, h) / (double)h;
    double rstd = 1.0 / sqrt(var + c->eps);
    for (int64_t i = 0; i < h; i++) {
      double v = (ld(c->x, c->dt, base + i) - mean) * rstd;
      if (c->w) v = v * ld(c->w, c->dt, i);
      if (c->b) v = v + ld(c->b, c->dt, i);
      st(c->y, c->dt, base + i, v);
    }
    if (c->mean) st(c->mean, c->dt, r, mean);
    st(c->rstd, c->dt, r, rstd);
  }
}

static ad_status_t kernel_norm(const ir_kernel_args_t *a, bool rms) {
  AD_RETURN_IF_ERROR(check_kernel_dtype(a));
  int64_t nrows, h;
  rows_of(&a->in[0], &nrows, &h);
  norm_ctx_t c = {.dt = a->in[0].dtype,
                  .rms = rms,
                  .eps = ir_node_attr_float(a->node, "eps", rms ? 1e-6 : 1e-5),
                  .x = a->in[0].data,
                  .w = a->nin >= 2 ? a->in[1].data : NULL,
                  .b = !rms && a->nin >= 3 ? a->in[2].data : NULL,
                  .y = a->out[0].data,
                  .mean = rms ? NULL : a->out[1].data,
                  .rstd = a->out[rms ? 1 : 2].data,
                  .h = h};
  ir_parallel_for(a->par, nrows, row_grain(h), norm_rows, &c);
  return AD_OK;
}

static ad_status_t kernel_layernorm(const ir_kernel_args_t *a) { return kernel_norm(a, false); }
static ad_status_t kernel_rmsnorm(const ir_kernel_args_t *a) { return kernel_norm(a, true); }

/* ---- layernorm / rmsnorm backward ------------------------------------------------------ */
typedef struct norm_bwd_ctx {
  ir_dtype_t dt;
  const void *x, *w, *dy;  /* x, dy [N, H]; w [H] or NULL */
  const void *mean, *rstd; /* [N]; mean NULL for RMSNorm */
  void *dx, *dw, *db;                   /* dx [N, H]; dw, db [H] or NULL */
  int64_t n, h;
} norm_bwd_ctx_t;

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w, xhat = (x - mean) * rstd;
 * RMSNorm has no mean(g) term (nothing was subtracted) and xhat = x * rstd. */
static void norm_bwd_rows(void *vctx, int64_t r0, int64_t r1) {
  const norm_bwd_ctx_t *c = vctx;
  int64_t h = c->h;
  for (int64_t r = r0; r < r1; r++) {
    int64_t base = r * h;
    double mean = c->mean ? ld(c->mean, c->dt, r) : 0.0, rstd = ld(c->rstd, c->dt, r);
    pw_terms_t t = {.kind = PW_GW, .dt = c->dt, .x = c->x, .y = c->dy, .w = c->w,
                    .base = base, .stride = 1, .p = mean, .q = rstd};
    double mg = c->mean ? pw_sum(&t, 0, h) / (double)h : 0.0;
    t.kind = PW_GW_XHAT;
    double mgx = pw_sum(&t, 0, h) / (double)h;
    for (int64_t i = 0; i < h; i++) {
      double xhat = (ld(c->x, c->dt, base + i) - mean) * rstd;
      double gi = ld(c->dy, c->dt, base + i) * (c->w ? ld(c->w, c->dt, i) : 1.0);
      st(c->dx, c->dt, base + i, rstd * (gi - mg - xhat * mgx));
    }
  }
}

/* dw[h] = sum over rows of dy * xhat, db[h] = sum over rows of dy: split by column, so each
 * column's sum has one fixed order whatever the thread count. */
static void norm_bwd_cols(void *vctx, int64_t h0, int64_t h1) {
  const norm_bwd_ctx_t *c = vctx;
  for (int64_t j = h0; j < h1; j++) {
    pw_terms_t t = {.kind = PW_COL_XHAT_DY, .dt = c->dt, .x = c->x, .y = c->dy, .mean = c->mean,
                    .rstd = c->rstd, .base = j, .stride = c->h};
    st(c->dw, c->dt, j, pw_sum(&t, 0, c->n));
    if (c->db) {
      t.kind = PW_X;
      t.x = c->dy;
      st(c->db, c->dt, j, pw_sum(&t, 0, c->n));
    }
  }
}

static ad_status_t kernel_norm_bwd(const ir_kernel_args_t *a, bool rms) {
  AD_RETURN_IF_ERROR(check_kernel_dtype(a));
  bool has_w = a->nin == (rms ? 4u : 5u);
  uint32_t k = has_w ? 2 : 1; /* first row statistic */
  int64_t nrows, h;
  rows_of(&a->in[0], &nrows, &h);
  norm_bwd_ctx_t c = {.dt = a->in[0].dtype,
                      .x = a->in[0].data,
                      .w = has_w ? a->in[1].data : NULL,
                      .mean = rms ? NULL : a->in[k].data,
                      .rstd = a->in[rms ? k : k + 1].data,
                      .dy = a->in[a->nin - 1].data,
                      .dx = a->out[0].data,
                      .dw = has_w ? a->out[1].data : NULL,
                      .db = has_w && !rms ? a->out[2].data : NULL,
                      .n = nrows,
                      .h = h};
  if (has_w) {
    int64_t grain = nrows >= 16384 ? 1 : 16384 / (nrows > 0 ? nrows : 1);
    ir_parallel_for(a->par, h, grain, norm_bwd_cols, &c);
  }
  ir_parallel_for(a->par, nrows, row_grain(h), norm_bwd_rows, &c);
  return AD_OK;
}

static ad_status_t kernel_layernorm_bwd(const ir_kernel_args_t *a) {
  return kernel_norm_bwd(a, false);
}
static ad_status_t kernel_rmsnorm_bwd(const ir_kernel_args_t *a) {
  return kernel_norm_bwd(a, true);
}

/* ---- VJP rules ------------------------------------------------------------------------- */
/* A failed emission leaves a sticky error in g: hand it up instead of wiring IR_NONE in. */
static ad_status_t emitted(ir_graph_t *g, const ir_vjp_ctx_t *c, uint32_t v) {
  if (v != IR_NONE) return AD_OK;
  ad_status_t e = ir_graph_take_error(g);
  if (e) return ad_status_annotate(e, "in the VJP of node '%s'", c->node.name);
  return ir_node_error(g, &c->node, "VJP emission produced no value");
}

static ad_status_t vjp_softmax(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  uint32_t dx = ir_emit2(c->g, IR_OP_SOFTMAX_BWD, c->node.output0, dy);
  AD_RETURN_IF_ERROR(emitted(c->g, c, dx));
  c->in_grads[0] = dx;
  return AD_OK;
}

/* dx = y * (dy - s), s = sum(dy * y). With cotangent u of dx and t = sum(u * y):
 *   d/d dy = y * (u - t) = softmax_bwd(y, u),   d/dy = u * (dy - s) - dy * t. */
static ad_status_t vjp_softmax_bwd(ir_vjp_ctx_t *c) {
  uint32_t u = c->out_grads[0];
  if (u == IR_NONE) return AD_OK;
  ir_graph_t *g = c->g;
  uint32_t y = c->node.inputs[0], dy = c->node.inputs[1];
  int64_t axes[1] = {-1};
  ir_attr_t rattrs[2] = {IR_ATTR_INTS("axes", axes, 1), IR_ATTR_I("keepdim", 1)};
  uint32_t ddy = ir_emit2(g, IR_OP_SOFTMAX_BWD, y, u);
  uint32_t dyy = ir_emit2(g, IR_OP_MUL, dy, y);
  uint32_t s = ir_emit(g, IR_OP_REDUCE_SUM, &dyy, 1, rattrs, 2); /* [..., 1] */
  uint32_t uy = ir_emit2(g, IR_OP_MUL, u, y);
  uint32_t t = ir_emit(g, IR_OP_REDUCE_SUM, &uy, 1, rattrs, 2); /* [..., 1] */
  uint32_t a = ir_emit2(g, IR_OP_MUL, u, ir_emit2(g, IR_OP_SUB, dy, s));
  uint32_t dyt = ir_emit2(g, IR_OP_MUL, dy, t);
  uint32_t dyv = ir_emit2(g, IR_OP_SUB, a, dyt);
  AD_RETURN_IF_ERROR(emitted(g, c, dyv));
  c->in_grads[0] = dyv;
  c->in_grads[1] = ddy;
  return AD_OK;
}

static ad_status_t vjp_layernorm(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0]; /* mean and rstd are non-differentiable outputs */
  if (dy == IR_NONE) return AD_OK;
  uint32_t ins[5], k = 0;
  ins[k++] = c->node.inputs[0];
  if (c->node.ninputs >= 2) ins[k++] = c->node.inputs[1];
  ins[k++] = c->node.output0 + 1;
  ins[k++] = c->node.output0 + 2;
  ins[k++] = dy;
  uint32_t r = ir_emit(c->g, IR_OP_LAYERNORM_BWD, ins, k, NULL, 0);
  AD_RETURN_IF_ERROR(emitted(c->g, c, r));
  c->in_grads[0] = r;
  if (c->node.ninputs >= 2) c->in_grads[1] = r + 1;
  if (c->node.ninputs >= 3) c->in_grads[2] = r + 2;
  return AD_OK;
}

static ad_status_t vjp_rmsnorm(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0]; /* rstd is a non-differentiable output */
  if (dy == IR_NONE) return AD_OK;
  uint32_t ins[4], k = 0;
  ins[k++] = c->node.inputs[0];
  if (c->node.ninputs >= 2) ins[k++] = c->node.inputs[1];
  ins[k++] = c->node.output0 + 1;
  ins[k++] = dy;
  uint32_t r = ir_emit(c->g, IR_OP_RMSNORM_BWD, ins, k, NULL, 0);
  AD_RETURN_IF_ERROR(emitted(c->g, c, r));
  c->in_grads[0] = r;
  if (c->node.ninputs >= 2) c->in_grads[1] = r + 1;
  return AD_OK;
}

/* ---- costs ----------------------------------------------------------------------------- */
static void cost_per_elem(const ir_shape_t *in, uint64_t per, ir_cost_t *c) {
  c->flops = (uint64_t)ir_shape_numel(&in[0]) * per;
}

/* max, subtract, exp, add, multiply */
static void cost_softmax(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                         const ir_shape_t *out, ir_cost_t *c) {
  cost_per_elem(in, 5, c);
}
/* multiply-add for s, subtract, multiply */
static void cost_softmax_bwd(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                             const ir_shape_t *out, ir_cost_t *c) {
  cost_per_elem(in, 4, c);
}
/* mean, squared deviation (3), normalise (2), affine (2) */
static void cost_layernorm(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                           const ir_shape_t *out, ir_cost_t *c) {
  cost_per_elem(in, 8, c);
}
/* xhat (2), g (1), two row sums (3), dx (4), dw/db column sums (3) */
static void cost_layernorm_bwd(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                               const ir_shape_t *out, ir_cost_t *c) {
  cost_per_elem(in, 13, c);
}
static void cost_rmsnorm(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                         const ir_shape_t *out, ir_cost_t *c) {
  cost_per_elem(in, 5, c);
}
static void cost_rmsnorm_bwd(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                             const ir_shape_t *out, ir_cost_t *c) {
  cost_per_elem(in, 10, c);
}

void ir_ops_register_norm(ir_op_info_t *t) {
  t[IR_OP_SOFTMAX] = (ir_op_info_t){.fusion = IR_FUSION_REDUCTION, .min_inputs = 1,
                                    .max_inputs = 1, .noutputs = 1, .flags = IR_OP_FLAG_INPLACE,
                                    .infer = infer_softmax, .kernel = kernel_softmax,
                                    .vjp = vjp_softmax, .cost = cost_softmax};
  t[IR_OP_SOFTMAX_BWD] = (ir_op_info_t){.fusion = IR_FUSION_REDUCTION, .min_inputs = 2,
                                        .max_inputs = 2, .noutputs = 1,
                                        .flags = IR_OP_FLAG_INPLACE, .infer = infer_softmax_bwd,
                                        .kernel = kernel_softmax_bwd, .vjp = vjp_softmax_bwd,
                                        .cost = cost_softmax_bwd};
  t[IR_OP_LAYERNORM] = (ir_op_info_t){.fusion = IR_FUSION_REDUCTION, .min_inputs = 1,
                                      .max_inputs = 3, .noutputs = 3,
                                      .flags = IR_OP_FLAG_INPLACE, .infer = infer_layernorm,
                                      .kernel = kernel_layernorm, .vjp = vjp_layernorm,
                                      .cost = cost_layernorm};
  /* Column sums (dw, db) next to row sums (dx): not a single-reduction shape. */
  t[IR_OP_LAYERNORM_BWD] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE, .min_inputs = 4,
                                          .max_inputs = 5, .noutputs = -1,
                                          .infer = infer_layernorm_bwd,
                                          .kernel = kernel_layernorm_bwd,
                                          .cost = cost_layernorm_bwd};
  t[IR_OP_RMSNORM] = (ir_op_info_t){.fusion = IR_FUSION_REDUCTION, .min_inputs = 1,
                                    .max_inputs = 2, .noutputs = 2, .flags = IR_OP_FLAG_INPLACE,
                                    .infer = infer_rmsnorm, .kernel = kernel_rmsnorm,
                                    .vjp = vjp_rmsnorm, .cost = cost_rmsnorm};
  t[IR_OP_RMSNORM_BWD] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE, .min_inputs = 3,
                                        .max_inputs = 4, .noutputs = -1,
                                        .infer = infer_rmsnorm_bwd, .kernel = kernel_rmsnorm_bwd,
                                        .cost = cost_rmsnorm_bwd};
}
