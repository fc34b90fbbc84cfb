/* Ops of the attention group (see ir/ops.def for their semantics): ROTARY, ATTENTION and
 * ATTENTION_BWD.
 *
 * ATTENTION returns O together with the row statistics m (max of S) and l (sum of exp(S-m)),
 * so the backward graph reads P back from (m, l) and a flash kernel can later replace the
 * reference one without changing anything downstream. The reference kernels compute in double
 * for both f32 and f64 and round once when storing, so the f32 oracle is as close to the exact
 * result as its storage allows.
 *
 * Reductions (dot products over the head dim, sums over keys or queries) use one pairwise
 * summation whose tree splits at the largest power of two below n. That tree does not change
 * when exact zeros are appended: a key that the mask removes contributes exp(finfo.min - m) = 0
 * to l and 0 * v to O, so the valid rows of a sample padded to the batch's longest one are
 * bit-identical to the same sample run alone. Work is split over independent rows (forward)
 * or (batch, head) pairs (backward), so results do not depend on the thread count.
 *
 * Mask conventions (attribute "mask_mode" of ATTENTION and ATTENTION_BWD; the peers differ):
 *   "add"      (default; ESM, Enformer) S = scale*qk^T + mask, the mask additive (0 or
 *              finfo.min), P = softmax(S).
 *   "fill"     (ModelGenerator's fusion MultiHeadAttention) S = where(mask > 0.5, scale*qk^T,
 *              fill) with a multiplicative 0/1 pair mask and attribute "fill" (default -1e30,
 *              rounded to the tensor dtype as torch.where rounds the Python scalar); masked
 *              scores are constants, so no gradient reaches q or k through them. A fully masked
 *              (padded) query row is uniform over the keys, as in the peer.
 *   "add_zero" (RNABert / AIDO.RNA) S as for "add", then P[i,j] = 0 where mask[i,j] < -1e-5
 *              (the threshold rounded to the mask dtype, as torch compares); a fully masked row
 *              outputs 0. Its backward is torch's: softmax's backward uses the unzeroed P, and
 *              dP is zero on the zeroed entries.
 * In every mode m is the row max of S and l = sum_j exp(S_ij - m) over all keys (masked ones
 * included), i.e. the statistics of softmax(S) before any zeroing; O is the zeroed P times V. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ops/ops_internal.h"

/* ---- shared helpers ------------------------------------------------------------------- */

/* sum_i a[i*sa] * b[i*sb] over n terms; blocks of <= 8 run left to right, larger ranges split
 * at the largest power of two below n (see the file comment for why that split). */
static double pw_dot(const double *a, int64_t sa, const double *b, int64_t sb, int64_t n) {
  if (n <= 8) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += a[i * sa] * b[i * sb];
    return s;
  }
  int64_t h = 8;
  while (h * 2 < n) h *= 2;
  return pw_dot(a, sa, b, sb, h) + pw_dot(a + h * sa, sa, b + h * sb, sb, n - h);
}

static double pw_sum(const double *a, int64_t n) {
  if (n <= 8) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += a[i];
    return s;
  }
  int64_t h = 8;
  while (h * 2 < n) h *= 2;
  return pw_sum(a, h) + pw_sum(a + h, n - h);
}

static bool dtype_supported(ir_dtype_t t) { return t == IR_DTYPE_F32 || t == IR_DTYPE_F64; }

/* A read-only double view of a float tensor: f64 data is used in place, f32 is widened into a
 * fresh buffer (*owned, freed by the caller). Returns NULL when out of memory. */
static const double *as_f64(const ir_tensor_t *t, double **owned) {
  *owned = NULL;
  if (t->dtype == IR_DTYPE_F64) return (const double *)t->data;
  int64_t n = ir_tensor_numel(t);
  double *d = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
  if (!d) return NULL;
  const float *f = (const float *)t->data;
  for (int64_t i = 0; i < n; i++) d[i] = (double)f[i];
  *owned = d;
  return d;
}

static inline void store(const ir_tensor_t *t, int64_t i, double v) {
  if (t->dtype == IR_DTYPE_F64)
    ((double *)t->data)[i] = v;
  else
    ((float *)t->data)[i] = (float)v;
}

static inline double load(const ir_tensor_t *t, int64_t i) {
  return t->dtype == IR_DTYPE_F64 ? ((const double *)t->data)[i]
                                  : (double)((const float *)t->data)[i];
}

static ad_status_t oom(const ir_node_t *n) {
  return ad_status_make(AD_STATUS_RESOURCE, "node '%s' (%s): out of memory for kernel scratch",
                        n->name, ir_op_name(n->op));
}

static ad_status_t check_float(const ir_graph_t *g, const ir_node_t *n, uint32_t i,
                               const char *what) {
  if (!ir_dtype_is_float(ir_in_type(g, n, i)->dtype))
    return ir_node_error(g, n, "%s (input %u) must be a float tensor, got %s", what, i,
                         ir_dtype_name(ir_in_type(g, n, i)->dtype));
  return AD_OK;
}

static ad_status_t check_same_dtype(const ir_graph_t *g, const ir_node_t *n, uint32_t i,
                                    uint32_t ref, const char *what) {
  if (ir_in_type(g, n, i)->dtype != ir_in_type(g, n, ref)->dtype)
    return ir_node_error(g, n, "%s (input %u) has dtype %s, expected %s like input %u", what, i,
                         ir_dtype_name(ir_in_type(g, n, i)->dtype),
                         ir_dtype_name(ir_in_type(g, n, ref)->dtype), ref);
  return AD_OK;
}

static ad_status_t check_rank(const ir_graph_t *g, const ir_node_t *n, uint32_t i, int rank,
                              const char *what) {
  if (ir_in_type(g, n, i)->rank != rank)
    return ir_node_error(g, n, "%s (input %u) must have rank %d, got %d", what, i, rank,
                         ir_in_type(g, n, i)->rank);
  return AD_OK;
}

/* Requires dim `ai` of input a to equal dim `bi` of input b. */
static ad_status_t check_dim(const ir_graph_t *g, const ir_node_t *n, uint32_t a, int ai,
                             uint32_t b, int bi, const char *what) {
  if (!ir_dim_equal(ir_in_type(g, n, a)->dims[ai], ir_in_type(g, n, b)->dims[bi]))
    return ir_node_error(g, n, "%s: dim %d of input %u differs from dim %d of input %u", what, ai,
                         a, bi, b);
  return AD_OK;
}

/* An additive mask must broadcast (right-aligned, dims equal or the constant 1) to the scores
 * [B, h, Lq, Lk] without growing them. */
static ad_status_t check_mask(const ir_graph_t *g, const ir_node_t *n, uint32_t mi,
                              const ir_type_t *scores) {
  AD_RETURN_IF_ERROR(check_float(g, n, mi, "mask"));
  AD_RETURN_IF_ERROR(check_same_dtype(g, n, mi, 0, "mask"));
  const ir_type_t *mt = ir_in_type(g, n, mi);
  ir_type_t b;
  if (mt->rank > 4 || !ir_broadcast_types(mt, scores, &b) || !ir_type_equal(&b, scores))
    return ir_node_error(g, n, "mask (input %u) does not broadcast to the scores [B,h,Lq,Lk]", mi);
  return AD_OK;
}

/* Element strides of the actual mask laid over the actual scores [B, h, Lq, Lk]; 0 on
 * broadcast dims. False when the actual dims do not broadcast. */
static bool mask_strides(const ir_tensor_t *mask, const int64_t sdims[4], int64_t st[4]) {
  int64_t s = 1;
  for (int i = 3; i >= 0; i--) {
    int j = mask->rank - 4 + i;
    if (j < 0) {
      st[i] = 0;
      continue;
    }
    if (mask->dims[j] != sdims[i] && mask->dims[j] != 1) return false;
    st[i] = mask->dims[j] == 1 ? 0 : s;
    s *= mask->dims[j];
  }
  return true;
}

static ad_status_t attr_scale(const ir_graph_t *g, const ir_node_t *n, double *scale) {
  const ir_attr_t *a = ir_node_attr(n, "scale");
  if (!a || (a->kind != IR_ATTR_FLOAT && a->kind != IR_ATTR_INT))
    return ir_node_error(g, n, "needs a numeric attribute 'scale' (the peers' 1/sqrt(d))");
  *scale = a->kind == IR_ATTR_FLOAT ? a->f : (double)a->i;
  if (!isfinite(*scale)) return ir_node_error(g, n, "attribute 'scale' must be finite");
  return AD_OK;
}

typedef enum attn_mask_mode {
  ATTN_MASK_ADD = 0,
  ATTN_MASK_FILL,
  ATTN_MASK_ADD_ZERO,
} attn_mask_mode_t;

/* The peer's fusion MultiHeadAttention fills masked scores with this literal. */
#define ATTN_DEFAULT_FILL (-1e30)
/* RNABert zeroes probabilities where its additive mask is below this. */
#define ATTN_ZERO_THRESHOLD (-1e-5)

static bool mask_mode_of(const ir_node_t *n, attn_mask_mode_t *mode) {
  const char *s = ir_node_attr_string(n, "mask_mode", "add");
  if (strcmp(s, "add") == 0)
    *mode = ATTN_MASK_ADD;
  else if (strcmp(s, "fill") == 0)
    *mode = ATTN_MASK_FILL;
  else if (strcmp(s, "add_zero") == 0)
    *mode = ATTN_MASK_ADD_ZERO;
  else
    return false;
  return true;
}

/* Checks mask_mode (a mask is needed unless it is "add") and fill; has_mask says whether the
 * node has a mask input. */
static ad_status_t check_mask_attrs(const ir_graph_t *g, const ir_node_t *n, bool has_mask) {
  const ir_attr_t *a = ir_node_attr(n, "mask_mode");
  attn_mask_mode_t mode;
  if ((a && a->kind != IR_ATTR_STRING) || !mask_mode_of(n, &mode))
    return ir_node_error(g, n, "attribute 'mask_mode' must be \"add\", \"fill\" or \"add_zero\"");
  if (mode != ATTN_MASK_ADD && !has_mask)
    return ir_node_error(g, n, "mask_mode \"%s\" needs a mask input",
                         ir_node_attr_string(n, "mask_mode", "add"));
  const ir_attr_t *f = ir_node_attr(n, "fill");
  if (f && ((f->kind != IR_ATTR_FLOAT && f->kind != IR_ATTR_INT) ||
            (f->kind == IR_ATTR_FLOAT && !isfinite(f->f))))
    return ir_node_error(g, n, "attribute 'fill' must be a finite number");
  return AD_OK;
}

/* How one kernel applies the mask: the mode, and fill / threshold rounded to the dtype the
 * peer compares and fills in. */
typedef struct attn_mask_rule {
  attn_mask_mode_t mode;
  double fill, zero_below;
} attn_mask_rule_t;

static attn_mask_rule_t mask_rule_of(const ir_node_t *n, ir_dtype_t dt) {
  attn_mask_rule_t r = {ATTN_MASK_ADD, ATTN_DEFAULT_FILL, ATTN_ZERO_THRESHOLD};
  (void)mask_mode_of(n, &r.mode); /* inference rejected anything else */
  r.fill = ir_node_attr_float(n, "fill", ATTN_DEFAULT_FILL);
  if (dt == IR_DTYPE_F32) {
    r.fill = (double)(float)r.fill;
    r.zero_below = (double)(float)r.zero_below;
  }
  return r;
}

/* The masked score from the scaled product qk (mask value mv; has: whether there is a mask). */
static inline double masked_score(const attn_mask_rule_t *r, bool has, double qk, double mv) {
  if (!has) return qk;
  if (r->mode == ATTN_MASK_FILL) return mv > 0.5 ? qk : r->fill;
  return qk + mv;
}

/* Whether the entry is a constant of the mask (no gradient to q, k) or zeroed after softmax. */
static inline bool score_blocked(const attn_mask_rule_t *r, bool has, double mv) {
  return has && r->mode == ATTN_MASK_FILL && !(mv > 0.5);
}
static inline bool prob_zeroed(const attn_mask_rule_t *r, bool has, double mv) {
  return has && r->mode == ATTN_MASK_ADD_ZERO && mv < r->zero_below;
}

/* ================================ ROTARY ================================================ */

static ad_status_t infer_rotary(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_float(g, n, 0, "x"));
  const ir_type_t *x = ir_in_type(g, n, 0);
  if (x->rank < 2) return ir_node_error(g, n, "x must be [..., L, d], got rank %d", x->rank);
  int64_t d;
  if (!ir_dim_is_const(x->dims[x->rank - 1], &d) || d <= 0 || d % 2 != 0)
    return ir_node_error(g, n, "the rotated dim (last axis) must be a positive even constant");
  double base = ir_node_attr_float(n, "base", 10000.0);
  if (!(base > 0.0) || !isfinite(base))
    return ir_node_error(g, n, "attribute 'base' must be a positive finite number");
  int64_t inv = ir_node_attr_int(n, "inverse", 0);
  if (inv != 0 && inv != 1) return ir_node_error(g, n, "attribute 'inverse' must be 0 or 1");
  out[0] = *x;
  return AD_OK;
}

typedef struct rotary_ctx {
  const ir_tensor_t *x, *y;
  const double *cs; /* cos/sin table: [L, d/2, 2] */
  int64_t L, d;
  double sign; /* +1 forward rotation, -1 its inverse (= its transpose) */
} rotary_ctx_t;

/* rows: the flattened [..., L] positions; each row is one d-vector at position row % L. */
static void rotary_rows(void *vctx, int64_t begin, int64_t end) {
  const rotary_ctx_t *c = vctx;
  int64_t d = c->d, half = d / 2;
  for (int64_t r = begin; r < end; r++) {
    const double *cs = c->cs + (r % c->L) * d; /* [d/2, 2] */
    int64_t base = r * d;
    for (int64_t i = 0; i < half; i++) {
      /* Both halves are read before either is written, so y may alias x (in-place). */
      double a = load(c->x, base + i), b = load(c->x, base + half + i);
      double co = cs[2 * i], si = c->sign * cs[2 * i + 1];
      /* x*cos + rotate_half(x)*sin with rotate_half([a, b]) = [-b, a] */
      store(c->y, base + i, a * co + (-b) * si);
      store(c->y, base + half + i, b * co + a * si);
    }
  }
}

static ad_status_t kernel_rotary(const ir_kernel_args_t *a) {
  const ir_tensor_t *x = &a->in[0];
  const ir_tensor_t *y = &a->out[0];
  if (!dtype_supported(x->dtype))
    return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                          "node '%s' (rotary): the reference kernel takes f32 or f64, not %s",
                          a->node->name, ir_dtype_name(x->dtype));
  int64_t L = x->dims[x->rank - 2], d = x->dims[x->rank - 1];
  int64_t rows = ir_tensor_numel(x) / (d > 0 ? d : 1);
  if (rows == 0 || d == 0) return AD_OK;
  double base = ir_node_attr_float(a->node, "base", 10000.0);
  double sign = ir_node_attr_int(a->node, "inverse", 0) ? -1.0 : 1.0;
  /* cs: [L, d/2, 2] in double; theta = t * inv_freq_i with inv_freq_i = base^(-2i/d) */
  double *cs = malloc(sizeof(double) * (size_t)(L * d));
  if (!cs) return oom(a->node);
  for (int64_t i = 0; i < d / 2; i++) {
    double inv_freq = 1.0 / pow(base, (double)(2 * i) / (double)d);
    for (int64_t t = 0; t < L; t++) {
      double theta = (double)t * inv_freq;
      cs[t * d + 2 * i] = cos(theta);
      cs[t * d + 2 * i + 1] = sin(theta);
    }
  }
  rotary_ctx_t c = {.x = x, .y = y, .cs = cs, .L = L, .d = d, .sign = sign};
  ir_parallel_for(a->par, rows, 64, rotary_rows, &c);
  free(cs);
  return AD_OK;
}

/* The rotation is orthogonal, so the VJP applies its inverse (the rotation by -theta). */
static ad_status_t vjp_rotary(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  ir_attr_t attrs[2];
  uint32_t na = 0;
  const ir_attr_t *base = ir_node_attr(&c->node, "base");
  if (base) attrs[na++] = *base;
  attrs[na++] = IR_ATTR_I("inverse", ir_node_attr_int(&c->node, "inverse", 0) ? 0 : 1);
  c->in_grads[0] = ir_emit(c->g, IR_OP_ROTARY, &dy, 1, attrs, na);
  return AD_OK;
}

static void cost_rotary(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                        const ir_shape_t *out, ir_cost_t *c) {
  (void)n;
  (void)dt;
  (void)out;
  c->flops = 3u * (uint64_t)ir_shape_numel(&in[0]); /* 2 mul + 1 add per element */
}

/* ================================ ATTENTION ============================================= */

static ad_status_t infer_qkv(const ir_graph_t *g, const ir_node_t *n) {
  static const char *const names[3] = {"q", "k", "v"};
  for (uint32_t i = 0; i < 3; i++) {
    AD_RETURN_IF_ERROR(check_float(g, n, i, names[i]));
    AD_RETURN_IF_ERROR(check_rank(g, n, i, 4, names[i]));
    if (i) AD_RETURN_IF_ERROR(check_same_dtype(g, n, i, 0, names[i]));
  }
  AD_RETURN_IF_ERROR(check_dim(g, n, 1, 0, 0, 0, "k batch vs q batch"));
  AD_RETURN_IF_ERROR(check_dim(g, n, 2, 0, 0, 0, "v batch vs q batch"));
  AD_RETURN_IF_ERROR(check_dim(g, n, 1, 1, 0, 1, "k heads vs q heads"));
  AD_RETURN_IF_ERROR(check_dim(g, n, 2, 1, 0, 1, "v heads vs q heads"));
  AD_RETURN_IF_ERROR(check_dim(g, n, 1, 3, 0, 3, "k head dim vs q head dim"));
  AD_RETURN_IF_ERROR(check_dim(g, n, 2, 2, 1, 2, "v length vs k length"));
  return AD_OK;
}

/* Types of O [B,h,Lq,dv], m and l [B,h,Lq], and the scores [B,h,Lq,Lk]. */
static void attention_types(const ir_graph_t *g, const ir_node_t *n, ir_type_t *o, ir_type_t *ml,
                            ir_type_t *scores) {
  const ir_type_t *q = ir_in_type(g, n, 0), *k = ir_in_type(g, n, 1), *v = ir_in_type(g, n, 2);
  *o = *q;
  o->dims[3] = v->dims[3];
  *ml = *q;
  ml->rank = 3;
  *scores = *q;
  scores->dims[3] = k->dims[2];
}

static ad_status_t infer_attention(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  double scale;
  AD_RETURN_IF_ERROR(attr_scale(g, n, &scale));
  AD_RETURN_IF_ERROR(infer_qkv(g, n));
  ir_type_t o, ml, scores;
  attention_types(g, n, &o, &ml, &scores);
  if (n->ninputs == 4) AD_RETURN_IF_ERROR(check_mask(g, n, 3, &scores));
  AD_RETURN_IF_ERROR(check_mask_attrs(g, n, n->ninputs == 4));
  out[0] = o;
  out[1] = ml;
  out[2] = ml;
  return AD_OK;
}

/* Actual sizes and double views shared by the forward and backward kernels. */
typedef struct attn_dims {
  int64_t B, H, Lq, Lk, d, dv;
} attn_dims_t;

static bool attn_dims_of(const ir_tensor_t *q, const ir_tensor_t *k, const ir_tensor_t *v,
                         attn_dims_t *D) {
  if (q->rank != 4 || k->rank != 4 || v->rank != 4) return false;
  *D = (attn_dims_t){q->dims[0], q->dims[1], q->dims[2], k->dims[2], q->dims[3], v->dims[3]};
  return k->dims[0] == D->B && v->dims[0] == D->B && k->dims[1] == D->H && v->dims[1] == D->H &&
         k->dims[3] == D->d && v->dims[2] == D->Lk;
}

typedef struct attn_fwd_ctx {
  attn_dims_t D;
  double scale;
  const double *q, *k, *v; /* q: [B,H,Lq,d], k: [B,H,Lk,d], v: [B,H,Lk,dv] */
  const double *mask;      /* NULL or broadcast to [B,H,Lq,Lk] through mst */
  int64_t mst[4];
  attn_mask_rule_t rule;
  const ir_tensor_t *o, *m, *l; /* o: [B,H,Lq,dv], m, l: [B,H,Lq] */
  atomic_int failed;
} attn_fwd_ctx_t;

/* rows: the flattened [B, H, Lq] query rows; each is independent. */
static void attn_fwd_rows(void *vctx, int64_t begin, int64_t end) {
  attn_fwd_ctx_t *c = vctx;
  const attn_dims_t D = c->D;
  double *p = malloc(sizeof(double) * (size_t)D.Lk); /* p: [Lk] */
  if (!p) {
    atomic_store(&c->failed, 1);
    return;
  }
  for (int64_t r = begin; r < end; r++) {
    int64_t bh = r / D.Lq, i = r % D.Lq, b = bh / D.H, h = bh % D.H;
    const double *qi = c->q + r * D.d;          /* [d] */
    const double *kh = c->k + bh * D.Lk * D.d;  /* [Lk, d] */
    const double *vh = c->v + bh * D.Lk * D.dv; /* [Lk, dv] */
    const double *mrow = c->mask ? c->mask + b * c->mst[0] + h * c->mst[1] + i * c->mst[2] : NULL;
    double mx = -INFINITY;
    for (int64_t j = 0; j < D.Lk; j++) {
      /* The mask goes on after scaling, as in the peers; finfo.min (or the fill) swamps any
       * score, so a fully masked row becomes constant and its softmax uniform, as torch's. */
      double qk = c->scale * pw_dot(qi, 1, kh + j * D.d, 1, D.d);
      double s = masked_score(&c->rule, mrow != NULL, qk, mrow ? mrow[j * c->mst[3]] : 0.0);
      p[j] = s;
      if (j == 0 || s > mx) mx = s;
    }
    for (int64_t j = 0; j < D.Lk; j++) p[j] = exp(p[j] - mx);
    double l = pw_sum(p, D.Lk);
    for (int64_t j = 0; j < D.Lk; j++)
      p[j] = prob_zeroed(&c->rule, mrow != NULL, mrow ? mrow[j * c->mst[3]] : 0.0) ? 0.0 : p[j] / l;
    for (int64_t e = 0; e < D.dv; e++) store(c->o, r * D.dv + e, pw_dot(p, 1, vh + e, D.dv, D.Lk));
    store(c->m, r, mx);
    store(c->l, r, l);
  }
  free(p);
}

/* Widens inputs [0, n) to double; owned[] receives buffers to free. */
static bool widen_all(const ir_tensor_t *in, uint32_t n, const double **views, double **owned) {
  bool ok = true;
  for (uint32_t i = 0; i < n; i++) {
    views[i] = as_f64(&in[i], &owned[i]);
    if (!views[i]) ok = false;
  }
  return ok;
}

static void free_all(double **owned, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) free(owned[i]);
}

static ad_status_t check_kernel_dtypes(const ir_kernel_args_t *a) {
  for (uint32_t i = 0; i < a->nin; i++)
    if (!dtype_supported(a->in[i].dtype) || a->in[i].dtype != a->in[0].dtype)
      return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                            "node '%s' (%s): the reference kernel takes f32 or f64 inputs of one "
                            "dtype, input %u is %s",
                            a->node->name, ir_op_name(a->node->op), i,
                            ir_dtype_name(a->in[i].dtype));
  return AD_OK;
}

static ad_status_t kernel_attention(const ir_kernel_args_t *a) {
  AD_RETURN_IF_ERROR(check_kernel_dtypes(a));
  attn_dims_t D;
  if (!attn_dims_of(&a->in[0], &a->in[1], &a->in[2], &D))
    return ad_status_make(AD_STATUS_INTERNAL, "node '%s' (attention): inconsistent actual dims",
                          a->node->name);
  int64_t sdims[4] = {D.B, D.H, D.Lq, D.Lk};
  attn_fwd_ctx_t c = {.D = D,
                      .scale = ir_node_attr_float(a->node, "scale", 1.0),
                      .o = &a->out[0],
                      .m = &a->out[1],
                      .l = &a->out[2]};
  atomic_init(&c.failed, 0);
  bool has_mask = a->nin == 4;
  if (has_mask && !mask_strides(&a->in[3], sdims, c.mst))
    return ad_status_make(AD_STATUS_INTERNAL,
                          "node '%s' (attention): the actual mask does not broadcast to the "
                          "scores",
                          a->node->name);
  if (D.B * D.H * D.Lq == 0) return AD_OK;
  if (D.Lk == 0)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "node '%s' (attention): no keys to attend to",
                          a->node->name);
  const double *views[4] = {0};
  double *owned[4] = {0};
  if (!widen_all(a->in, a->nin, views, owned)) {
    free_all(owned, 4);
    return oom(a->node);
  }
  c.q = views[0];
  c.k = views[1];
  c.v = views[2];
  c.mask = has_mask ? views[3] : NULL;
  c.rule = mask_rule_of(a->node, a->in[0].dtype);
  int64_t grain = 1 + 4096 / (1 + D.Lk * (D.d + D.dv));
  ir_parallel_for(a->par, D.B * D.H * D.Lq, grain, attn_fwd_rows, &c);
  free_all(owned, 4);
  return atomic_load(&c.failed) ? oom(a->node) : AD_OK;
}

/* m and l are statistics for the backward, not differentiable outputs: only dO flows back. */
static ad_status_t vjp_attention(ir_vjp_ctx_t *c) {
  uint32_t dO = c->out_grads[0];
  if (dO == IR_NONE) return AD_OK;
  const ir_node_t *n = &c->node;
  bool has_mask = n->ninputs == 4;
  uint32_t ins[8], k = 0;
  for (uint32_t i = 0; i < n->ninputs; i++) ins[k++] = n->inputs[i];
  ins[k++] = n->output0;     /* O */
  ins[k++] = n->output0 + 1; /* m */
  ins[k++] = n->output0 + 2; /* l */
  ins[k++] = dO;
  /* fill and mask_mode travel only when the forward has them, so graphs in the default
   * additive convention keep their attribute set */
  ir_attr_t attrs[4];
  uint32_t na = 0;
  const ir_attr_t *fill = ir_node_attr(n, "fill"), *mode = ir_node_attr(n, "mask_mode");
  if (fill) attrs[na++] = *fill;
  attrs[na++] = IR_ATTR_I("has_mask", has_mask ? 1 : 0);
  if (mode) attrs[na++] = *mode;
  attrs[na++] = IR_ATTR_F("scale", ir_node_attr_float(n, "scale", 1.0));
  uint32_t r = ir_emit(c->g, IR_OP_ATTENTION_BWD, ins, k, attrs, na);
  if (r == IR_NONE) return AD_OK; /* the sticky error in g says why */
  c->in_grads[0] = r;
  c->in_grads[1] = r + 1;
  c->in_grads[2] = r + 2;
  return AD_OK;
}

static void cost_attention(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                           const ir_shape_t *out, ir_cost_t *c) {
  (void)n;
  (void)dt;
  (void)out;
  uint64_t rows = (uint64_t)(in[0].dims[0] * in[0].dims[1] * in[0].dims[2]);
  uint64_t Lk = (uint64_t)in[1].dims[2], d = (uint64_t)in[0].dims[3], dv = (uint64_t)in[2].dims[3];
  /* QK^T, PV, and ~5 per score for mask, max, exp, sum, normalise */
  c->flops = rows * Lk * (2 * d + 2 * dv + 5);
}

/* ================================ ATTENTION_BWD ========================================= */

static ad_status_t infer_attention_bwd(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  double scale;
  AD_RETURN_IF_ERROR(attr_scale(g, n, &scale));
  int64_t hm = ir_node_attr_int(n, "has_mask", -1);
  if (hm != 0 && hm != 1) return ir_node_error(g, n, "needs an int attribute 'has_mask' (0 or 1)");
  if (n->ninputs != (uint32_t)(7 + hm))
    return ir_node_error(g, n, "has_mask=%d needs %d inputs (q, k, v,%s O, m, l, dO), got %u",
                         (int)hm, (int)(7 + hm), hm ? " mask," : "", n->ninputs);
  AD_RETURN_IF_ERROR(infer_qkv(g, n));
  ir_type_t o, ml, scores;
  attention_types(g, n, &o, &ml, &scores);
  if (hm) AD_RETURN_IF_ERROR(check_mask(g, n, 3, &scores));
  AD_RETURN_IF_ERROR(check_mask_attrs(g, n, hm != 0));
  static const char *const names[4] = {"O", "m", "l", "dO"};
  const ir_type_t *want[4] = {&o, &ml, &ml, &o};
  for (uint32_t i = 0; i < 4; i++) {
    uint32_t idx = (uint32_t)(3 + hm) + i;
    if (!ir_type_equal(ir_in_type(g, n, idx), want[i]))
      return ir_node_error(g, n, "%s (input %u) does not have the type the forward gives it",
                           names[i], idx);
  }
  for (uint32_t i = 0; i < 3; i++) out[i] = *ir_in_type(g, n, i);
  return AD_OK;
}

typedef struct attn_bwd_ctx {
  attn_dims_t D;
  double scale;
  const double *q, *k, *v, *mask, *o, *m, *l, *dO; /* as in the forward; dO like O */
  int64_t mst[4];
  attn_mask_rule_t rule;
  const ir_tensor_t *dq, *dk, *dv;
  atomic_int failed;
} attn_bwd_ctx_t;

/* heads: the flattened [B, H]; each head's dq, dk, dv are computed by one worker, every element
 * as one fixed-order reduction, so nothing depends on how heads are spread over threads. */
static void attn_bwd_heads(void *vctx, int64_t begin, int64_t end) {
  attn_bwd_ctx_t *c = vctx;
  const attn_dims_t D = c->D;
  double *P = malloc(sizeof(double) * (size_t)(D.Lq * D.Lk));  /* P: [Lq, Lk] */
  double *dS = malloc(sizeof(double) * (size_t)(D.Lq * D.Lk)); /* dS: [Lq, Lk] */
  if (!P || !dS) {
    free(P);
    free(dS);
    atomic_store(&c->failed, 1);
    return;
  }
  for (int64_t bh = begin; bh < end; bh++) {
    int64_t b = bh / D.H, h = bh % D.H;
    const double *qh = c->q + bh * D.Lq * D.d;                   /* [Lq, d] */
    const double *kh = c->k + bh * D.Lk * D.d;                   /* [Lk, d] */
    const double *vh = c->v + bh * D.Lk * D.dv;                  /* [Lk, dv] */
    const double *oh = c->o + bh * D.Lq * D.dv;                  /* [Lq, dv] */
    const double *dOh = c->dO + bh * D.Lq * D.dv;                /* [Lq, dv] */
    const double *mh = c->m + bh * D.Lq, *lh = c->l + bh * D.Lq; /* [Lq] */
    for (int64_t i = 0; i < D.Lq; i++) {
      /* D_i = rowsum(dO * O) replaces rowsum(P * dP), as flash attention does
       * (O holds the zeroed P in add_zero mode; the zeroed entries have dP = 0, so the sum is
       * the same). */
      double Di = pw_dot(dOh + i * D.dv, 1, oh + i * D.dv, 1, D.dv);
      const double *mrow = c->mask ? c->mask + b * c->mst[0] + h * c->mst[1] + i * c->mst[2] : NULL;
      for (int64_t j = 0; j < D.Lk; j++) {
        double mv = mrow ? mrow[j * c->mst[3]] : 0.0;
        bool has = mrow != NULL;
        double qk = c->scale * pw_dot(qh + i * D.d, 1, kh + j * D.d, 1, D.d);
        double s = masked_score(&c->rule, has, qk, mv);
        double p = exp(s - mh[i]) / lh[i];
        bool zeroed = prob_zeroed(&c->rule, has, mv);
        double dp = zeroed ? 0.0 : pw_dot(dOh + i * D.dv, 1, vh + j * D.dv, 1, D.dv);
        P[i * D.Lk + j] = zeroed ? 0.0 : p; /* what multiplied V */
        dS[i * D.Lk + j] = score_blocked(&c->rule, has, mv) ? 0.0 : p * (dp - Di);
      }
    }
    /* dq = scale * dS K */
    for (int64_t i = 0; i < D.Lq; i++)
      for (int64_t e = 0; e < D.d; e++)
        store(c->dq, (bh * D.Lq + i) * D.d + e,
              c->scale * pw_dot(dS + i * D.Lk, 1, kh + e, D.d, D.Lk));
    /* dk = scale * dS^T Q, dv = P^T dO */
    for (int64_t j = 0; j < D.Lk; j++) {
      for (int64_t e = 0; e < D.d; e++)
        store(c->dk, (bh * D.Lk + j) * D.d + e, c->scale * pw_dot(dS + j, D.Lk, qh + e, D.d, D.Lq));
      for (int64_t e = 0; e < D.dv; e++)
        store(c->dv, (bh * D.Lk + j) * D.dv + e, pw_dot(P + j, D.Lk, dOh + e, D.dv, D.Lq));
    }
  }
  free(P);
  free(dS);
}

static ad_status_t kernel_attention_bwd(const ir_kernel_args_t *a) {
  AD_RETURN_IF_ERROR(check_kernel_dtypes(a));
  bool has_mask = ir_node_attr_int(a->node, "has_mask", 0) != 0;
  uint32_t base = has_mask ? 4 : 3;
  if (a->nin != base + 4)
    return ad_status_make(AD_STATUS_INTERNAL,
                          "node '%s' (attention_bwd): %u inputs for has_mask=%d", a->node->name,
                          a->nin, has_mask);
  attn_dims_t D;
  if (!attn_dims_of(&a->in[0], &a->in[1], &a->in[2], &D))
    return ad_status_make(AD_STATUS_INTERNAL, "node '%s' (attention_bwd): inconsistent actual dims",
                          a->node->name);
  const ir_tensor_t *O = &a->in[base], *dO = &a->in[base + 3];
  if (ir_tensor_numel(O) != D.B * D.H * D.Lq * D.dv || ir_tensor_numel(dO) != ir_tensor_numel(O) ||
      ir_tensor_numel(&a->in[base + 1]) != D.B * D.H * D.Lq ||
      ir_tensor_numel(&a->in[base + 2]) != D.B * D.H * D.Lq)
    return ad_status_make(AD_STATUS_INTERNAL,
                          "node '%s' (attention_bwd): O, m, l or dO do not match q, k, v",
                          a->node->name);
  int64_t sdims[4] = {D.B, D.H, D.Lq, D.Lk};
  attn_bwd_ctx_t c = {.D = D,
                      .scale = ir_node_attr_float(a->node, "scale", 1.0),
                      .dq = &a->out[0],
                      .dk = &a->out[1],
                      .dv = &a->out[2]};
  atomic_init(&c.failed, 0);
  if (has_mask && !mask_strides(&a->in[3], sdims, c.mst))
    return ad_status_make(AD_STATUS_INTERNAL,
                          "node '%s' (attention_bwd): the actual mask does not broadcast to the "
                          "scores",
                          a->node->name);
  if (D.B * D.H == 0) return AD_OK;
  const double *views[8] = {0};
  double *owned[8] = {0};
  if (!widen_all(a->in, a->nin, views, owned)) {
    free_all(owned, 8);
    return oom(a->node);
  }
  c.q = views[0];
  c.k = views[1];
  c.v = views[2];
  c.mask = has_mask ? views[3] : NULL;
  c.rule = mask_rule_of(a->node, a->in[0].dtype);
  c.o = views[base];
  c.m = views[base + 1];
  c.l = views[base + 2];
  c.dO = views[base + 3];
  ir_parallel_for(a->par, D.B * D.H, 1, attn_bwd_heads, &c);
  free_all(owned, 8);
  return atomic_load(&c.failed) ? oom(a->node) : AD_OK;
}

static void cost_attention_bwd(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                               const ir_shape_t *out, ir_cost_t *c) {
  (void)n;
  (void)dt;
  (void)out;
  uint64_t rows = (uint64_t)(in[0].dims[0] * in[0].dims[1] * in[0].dims[2]);
  uint64_t Lk = (uint64_t)in[1].dims[2], d = (uint64_t)in[0].dims[3], dv = (uint64_t)in[2].dims[3];
  /* recompute S (2d), dP (2dv), dq and dk (4d), dv (2dv), ~6 per score for P and dS */
  c->flops = rows * Lk * (6 * d + 4 * dv + 6) + rows * 2 * dv;
}

void ir_ops_register_attention(ir_op_info_t *t) {
  /* Not elementwise: y[i] reads x[i +- d/2]; fusion treats it as a unit. */
  t[IR_OP_ROTARY] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE,
                                   .min_inputs = 1,
                                   .max_inputs = 1,
                                   .noutputs = 1,
                                   .flags = IR_OP_FLAG_INPLACE,
                                   .infer = infer_rotary,
                                   .kernel = kernel_rotary,
                                   .vjp = vjp_rotary,
                                   .cost = cost_rotary};
  t[IR_OP_ATTENTION] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE,
                                      .min_inputs = 3,
                                      .max_inputs = 4,
                                      .noutputs = 3,
                                      .infer = infer_attention,
                                      .kernel = kernel_attention,
                                      .vjp = vjp_attention,
                                      .nondiff_inputs = 1u << 3, /* the mask */
                                      .cost = cost_attention};
  t[IR_OP_ATTENTION_BWD] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE,
                                          .min_inputs = 7,
                                          .max_inputs = 8,
                                          .noutputs = 3,
                                          .infer = infer_attention_bwd,
                                          .kernel = kernel_attention_bwd,
                                          .vjp = NULL,
                                          .cost = cost_attention_bwd};
}
