/* Ops of the pool group (see ir/ops.def for their semantics): MASKED_MEAN_POOL (ModelGenerator's
 * mean_pooling: sum_t m*h / max(sum_t m, 1e-9)), CLS_POOL (h[:, 0]) and their backwards.
 *
 * Sums over L run in double with a pairwise tree that splits at the largest power of two below
 * n; appending positions whose mask is 0 adds exact zeros that leave such a tree's result
 * unchanged, so padding a sample never changes its pooled vector. Work is split over the batch,
 * whose rows are independent, so results do not depend on the thread count. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ops/ops_internal.h"

/* The clamp ModelGenerator applies to the token count (torch.clamp(count, min=1e-9)). */
#define POOL_MIN_COUNT 1e-9

/* sum_i a[i*sa] * b[i*sb] (b NULL: sum_i a[i*sa]); blocks of <= 8 left to right, larger ranges
 * split at the largest power of two below n. */
static double pw_dot(const double *a, int64_t sa, const double *b, int64_t sb, int64_t n) {
  if (n <= 8) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += b ? a[i * sa] * b[i * sb] : a[i * sa];
    return s;
  }
  int64_t h = 8;
  while (h * 2 < n) h *= 2;
  return pw_dot(a, sa, b, sb, h) + pw_dot(a + h * sa, sa, b ? b + h * sb : NULL, sb, n - h);
}

static bool dtype_supported(ir_dtype_t t) { return t == IR_DTYPE_F32 || t == IR_DTYPE_F64; }

static inline double load(const ir_tensor_t *t, int64_t i) {
  return t->dtype == IR_DTYPE_F64 ? ((const double *)t->data)[i]
                                  : (double)((const float *)t->data)[i];
}

static inline void store(const ir_tensor_t *t, int64_t i, double v) {
  if (t->dtype == IR_DTYPE_F64)
    ((double *)t->data)[i] = v;
  else
    ((float *)t->data)[i] = (float)v;
}

static ad_status_t unsupported(const ir_kernel_args_t *a, const ir_tensor_t *t) {
  return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                        "node '%s' (%s): the reference kernel takes f32 or f64, not %s",
                        a->node->name, ir_op_name(a->node->op), ir_dtype_name(t->dtype));
}

static ad_status_t oom(const ir_node_t *n) {
  return ad_status_make(AD_STATUS_RESOURCE, "node '%s' (%s): out of memory for kernel scratch",
                        n->name, ir_op_name(n->op));
}

static ad_status_t dims_mismatch(const ir_kernel_args_t *a) {
  return ad_status_make(AD_STATUS_INTERNAL, "node '%s' (%s): inconsistent actual dims",
                        a->node->name, ir_op_name(a->node->op));
}

/* Checks h [B, L, H] (input hi) and mask [B, L] (input mi): float, mask dims = h's first two. */
static ad_status_t check_h_mask(const ir_graph_t *g, const ir_node_t *n, uint32_t hi, uint32_t mi) {
  const ir_type_t *h = ir_in_type(g, n, hi), *m = ir_in_type(g, n, mi);
  if (!ir_dtype_is_float(h->dtype) || h->rank != 3)
    return ir_node_error(g, n, "h (input %u) must be a float [B, L, H] tensor", hi);
  if (!ir_dtype_is_float(m->dtype) || m->rank != 2)
    return ir_node_error(g, n, "mask (input %u) must be a float [B, L] tensor (0/1 weights)", mi);
  if (!ir_dim_equal(m->dims[0], h->dims[0]) || !ir_dim_equal(m->dims[1], h->dims[1]))
    return ir_node_error(g, n, "mask (input %u) dims differ from h's [B, L]", mi);
  return AD_OK;
}

/* ================================ MASKED_MEAN_POOL ====================================== */

static ad_status_t infer_masked_mean_pool(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_h_mask(g, n, 0, 1));
  const ir_type_t *h = ir_in_type(g, n, 0);
  out[0] = *h;
  out[0].rank = 2;
  out[0].dims[1] = h->dims[2];
  return AD_OK;
}

typedef struct mmp_ctx {
  const ir_tensor_t *h, *mask, *dy, *out; /* h / dh: [B, L, H], mask: [B, L], dy / y: [B, H] */
  const double *hd, *md;                  /* double views of h and mask (forward only) */
  int64_t L, H;
  atomic_int failed;
} mmp_ctx_t;

/* Widens row b of the mask into m[L] and returns max(sum_t m, 1e-9). */
static double mask_row(const ir_tensor_t *mask, int64_t b, int64_t L, double *m) {
  for (int64_t t = 0; t < L; t++) m[t] = load(mask, b * L + t);
  double cnt = pw_dot(m, 1, NULL, 0, L);
  return cnt > POOL_MIN_COUNT ? cnt : POOL_MIN_COUNT;
}

static void mmp_fwd_rows(void *vctx, int64_t begin, int64_t end) {
  mmp_ctx_t *c = vctx;
  for (int64_t b = begin; b < end; b++) {
    const double *m = c->md + b * c->L;         /* [L] */
    const double *hb = c->hd + b * c->L * c->H; /* [L, H] */
    double cnt = pw_dot(m, 1, NULL, 0, c->L);
    double den = cnt > POOL_MIN_COUNT ? cnt : POOL_MIN_COUNT;
    for (int64_t e = 0; e < c->H; e++)
      store(c->out, b * c->H + e, pw_dot(m, 1, hb + e, c->H, c->L) / den);
  }
}

static ad_status_t kernel_masked_mean_pool(const ir_kernel_args_t *a) {
  const ir_tensor_t *h = &a->in[0], *mask = &a->in[1];
  if (!dtype_supported(h->dtype)) return unsupported(a, h);
  if (!dtype_supported(mask->dtype)) return unsupported(a, mask);
  if (h->rank != 3 || mask->rank != 2 || mask->dims[0] != h->dims[0] || mask->dims[1] != h->dims[1])
    return dims_mismatch(a);
  int64_t B = h->dims[0], L = h->dims[1], H = h->dims[2];
  if (B * H == 0) return AD_OK;
  /* hd: [B, L, H], md: [B, L], widened once so the row loops read plain doubles */
  double *hd = malloc(sizeof(double) * (size_t)(B * L * H + 1));
  double *md = malloc(sizeof(double) * (size_t)(B * L + 1));
  if (!hd || !md) {
    free(hd);
    free(md);
    return oom(a->node);
  }
  for (int64_t i = 0; i < B * L * H; i++) hd[i] = load(h, i);
  for (int64_t i = 0; i < B * L; i++) md[i] = load(mask, i);
  mmp_ctx_t c = {.h = h, .mask = mask, .out = &a->out[0], .hd = hd, .md = md, .L = L, .H = H};
  atomic_init(&c.failed, 0);
  ir_parallel_for(a->par, B, 1, mmp_fwd_rows, &c);
  free(hd);
  free(md);
  return AD_OK;
}

static ad_status_t vjp_masked_mean_pool(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  uint32_t ins[3] = {c->node.inputs[1], dy, c->node.inputs[0]}; /* mask, dy, like_h */
  c->in_grads[0] = ir_emit(c->g, IR_OP_MASKED_MEAN_POOL_BWD, ins, 3, NULL, 0);
  return AD_OK;
}

static void cost_masked_mean_pool(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                                  const ir_shape_t *out, ir_cost_t *c) {
  (void)n;
  (void)dt;
  (void)out;
  /* a multiply-add per element of h, the count, one division per output */
  c->flops = 2u * (uint64_t)ir_shape_numel(&in[0]) + (uint64_t)ir_shape_numel(&in[1]) +
             (uint64_t)ir_shape_numel(&out[0]);
}

/* ================================ MASKED_MEAN_POOL_BWD ================================== */

static ad_status_t infer_masked_mean_pool_bwd(const ir_graph_t *g, const ir_node_t *n,
                                              ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_h_mask(g, n, 2, 0));
  const ir_type_t *dy = ir_in_type(g, n, 1), *h = ir_in_type(g, n, 2);
  if (dy->dtype != h->dtype || dy->rank != 2 || !ir_dim_equal(dy->dims[0], h->dims[0]) ||
      !ir_dim_equal(dy->dims[1], h->dims[2]))
    return ir_node_error(g, n, "dy (input 1) must be [B, H] of like_h's dtype");
  out[0] = *h;
  return AD_OK;
}

/* dh[b,t,:] = (dy[b,:] / max(sum m, 1e-9)) * m[b,t], in torch autograd's order. */
static void mmp_bwd_rows(void *vctx, int64_t begin, int64_t end) {
  mmp_ctx_t *c = vctx;
  double *m = malloc(sizeof(double) * (size_t)(c->L + 1)); /* m: [L] */
  double *g = malloc(sizeof(double) * (size_t)(c->H + 1)); /* g: [H] */
  if (!m || !g) {
    free(m);
    free(g);
    atomic_store(&c->failed, 1);
    return;
  }
  for (int64_t b = begin; b < end; b++) {
    double den = mask_row(c->mask, b, c->L, m);
    for (int64_t e = 0; e < c->H; e++) g[e] = load(c->dy, b * c->H + e) / den;
    for (int64_t t = 0; t < c->L; t++)
      for (int64_t e = 0; e < c->H; e++) store(c->out, (b * c->L + t) * c->H + e, g[e] * m[t]);
  }
  free(m);
  free(g);
}

static ad_status_t kernel_masked_mean_pool_bwd(const ir_kernel_args_t *a) {
  const ir_tensor_t *mask = &a->in[0], *dy = &a->in[1], *dh = &a->out[0];
  if (!dtype_supported(dy->dtype)) return unsupported(a, dy);
  if (!dtype_supported(mask->dtype)) return unsupported(a, mask);
  if (dh->rank != 3 || mask->rank != 2 || dy->rank != 2 || mask->dims[0] != dh->dims[0] ||
      mask->dims[1] != dh->dims[1] || dy->dims[0] != dh->dims[0] || dy->dims[1] != dh->dims[2])
    return dims_mismatch(a);
  mmp_ctx_t c = {.mask = mask, .dy = dy, .out = dh, .L = dh->dims[1], .H = dh->dims[2]};
  atomic_init(&c.failed, 0);
  ir_parallel_for(a->par, dh->dims[0], 1, mmp_bwd_rows, &c);
  return atomic_load(&c.failed) ? oom(a->node) : AD_OK;
}

/* dh is linear in dy; its transpose is the pooling itself. */
static ad_status_t vjp_masked_mean_pool_bwd(ir_vjp_ctx_t *c) {
  uint32_t ddh = c->out_grads[0];
  if (ddh == IR_NONE) return AD_OK;
  uint32_t ins[2] = {ddh, c->node.inputs[0]};
  c->in_grads[1] = ir_emit(c->g, IR_OP_MASKED_MEAN_POOL, ins, 2, NULL, 0);
  return AD_OK;
}

static void cost_masked_mean_pool_bwd(const ir_node_t *n, const ir_shape_t *in,
                                      const ir_dtype_t *dt, const ir_shape_t *out, ir_cost_t *c) {
  (void)n;
  (void)dt;
  (void)in;
  c->flops = (uint64_t)ir_shape_numel(&out[0]) + (uint64_t)ir_shape_numel(&in[0]) +
             (uint64_t)ir_shape_numel(&in[1]);
}

/* ================================ CLS_POOL ============================================== */

/* Type of h with axis 1 removed. */
static ir_type_t drop_axis1(const ir_type_t *h) {
  ir_type_t t = *h;
  t.rank = h->rank - 1;
  t.dims[0] = h->dims[0];
  for (int i = 1; i < t.rank; i++) t.dims[i] = h->dims[i + 1];
  for (int i = t.rank; i < IR_MAX_RANK; i++) t.dims[i] = ir_dim_const(0);
  return t;
}

static ad_status_t infer_cls_pool(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *h = ir_in_type(g, n, 0);
  if (h->rank < 2) return ir_node_error(g, n, "h must be [B, L, ...], got rank %d", h->rank);
  out[0] = drop_axis1(h);
  return AD_OK;
}

/* Copies between h [B, L, inner] at position 0 and y [B, inner]; any dtype (bytes). */
static ad_status_t kernel_cls_pool(const ir_kernel_args_t *a) {
  const ir_tensor_t *h = &a->in[0], *y = &a->out[0];
  if (h->rank < 2 || h->dims[1] < 1) return dims_mismatch(a);
  int64_t B = h->dims[0], L = h->dims[1];
  int64_t inner = B ? ir_tensor_numel(h) / (B * L) : 0;
  size_t es = ir_dtype_size(h->dtype), row = (size_t)inner * es;
  for (int64_t b = 0; b < B; b++)
    memcpy((char *)y->data + (size_t)b * row, (const char *)h->data + (size_t)(b * L) * row, row);
  return AD_OK;
}

static ad_status_t vjp_cls_pool(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  uint32_t ins[2] = {dy, c->node.inputs[0]};
  c->in_grads[0] = ir_emit(c->g, IR_OP_CLS_POOL_BWD, ins, 2, NULL, 0);
  return AD_OK;
}

/* ================================ CLS_POOL_BWD ========================================== */

static ad_status_t infer_cls_pool_bwd(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *dy = ir_in_type(g, n, 0), *h = ir_in_type(g, n, 1);
  if (h->rank < 2)
    return ir_node_error(g, n, "like_h (input 1) must be [B, L, ...], got rank %d", h->rank);
  ir_type_t want = drop_axis1(h);
  if (!ir_type_equal(dy, &want))
    return ir_node_error(g, n, "dy (input 0) must have like_h's type without axis 1");
  out[0] = *h;
  return AD_OK;
}

static ad_status_t kernel_cls_pool_bwd(const ir_kernel_args_t *a) {
  const ir_tensor_t *dy = &a->in[0], *dh = &a->out[0];
  if (dh->rank < 2 || dh->dims[1] < 1 || dy->dtype != dh->dtype) return dims_mismatch(a);
  int64_t B = dh->dims[0], L = dh->dims[1];
  int64_t inner = B ? ir_tensor_numel(dh) / (B * L) : 0;
  if (ir_tensor_numel(dy) != B * inner) return dims_mismatch(a);
  size_t es = ir_dtype_size(dh->dtype), row = (size_t)inner * es;
  /* All-zero bytes are +0.0 for the float dtypes and 0 for the integer ones. */
  memset(dh->data, 0, (size_t)(B * L) * row);
  for (int64_t b = 0; b < B; b++)
    memcpy((char *)dh->data + (size_t)(b * L) * row, (const char *)dy->data + (size_t)b * row, row);
  return AD_OK;
}

static ad_status_t vjp_cls_pool_bwd(ir_vjp_ctx_t *c) {
  uint32_t ddh = c->out_grads[0];
  if (ddh == IR_NONE) return AD_OK;
  c->in_grads[0] = ir_emit1(c->g, IR_OP_CLS_POOL, ddh);
  return AD_OK;
}

void ir_ops_register_pool(ir_op_info_t *t) {
  t[IR_OP_MASKED_MEAN_POOL] = (ir_op_info_t){.fusion = IR_FUSION_REDUCTION,
                                             .min_inputs = 2,
                                             .max_inputs = 2,
                                             .noutputs = 1,
                                             .infer = infer_masked_mean_pool,
                                             .kernel = kernel_masked_mean_pool,
                                             .vjp = vjp_masked_mean_pool,
                                             .nondiff_inputs = 1u << 1, /* mask */
                                             .cost = cost_masked_mean_pool};
  /* A reduction: it needs the per-row count over L. */
  t[IR_OP_MASKED_MEAN_POOL_BWD] = (ir_op_info_t){
      .fusion = IR_FUSION_REDUCTION,
      .min_inputs = 3,
      .max_inputs = 3,
      .noutputs = 1,
      .infer = infer_masked_mean_pool_bwd,
      .kernel = kernel_masked_mean_pool_bwd,
      .vjp = vjp_masked_mean_pool_bwd,
      .nondiff_inputs = (1u << 0) | (1u << 2), /* mask, like_h (shape only) */
      .cost = cost_masked_mean_pool_bwd};
  /* A gather of row 0, not elementwise in its index map: fused as a unit. */
  t[IR_OP_CLS_POOL] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE,
                                     .min_inputs = 1,
                                     .max_inputs = 1,
                                     .noutputs = 1,
                                     .infer = infer_cls_pool,
                                     .kernel = kernel_cls_pool,
                                     .vjp = vjp_cls_pool};
  t[IR_OP_CLS_POOL_BWD] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE,
                                         .min_inputs = 2,
                                         .max_inputs = 2,
                                         .noutputs = 1,
                                         .infer = infer_cls_pool_bwd,
                                         .kernel = kernel_cls_pool_bwd,
                                         .vjp = vjp_cls_pool_bwd,
                                         .nondiff_inputs = 1u << 1 /* like_h: shape only */};
}
