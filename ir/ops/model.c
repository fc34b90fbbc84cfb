/* Ops of the model group (see ir/ops.def for their semantics): REL_SHIFT and REL_SHIFT_BWD
 * (Enformer's relative_shift), ONE_HOT (Enformer's str_to_one_hot byte table) and
 * ESM_TOKEN_DROPOUT (transformers 4.38 EsmEmbeddings token dropout + attention-mask multiply).
 *
 * REL_SHIFT and ONE_HOT move or look up values without arithmetic, so they are exact in every
 * dtype. ESM_TOKEN_DROPOUT reproduces torch's dtype handling bit for bit: the observed mask
 * ratio is float32 whatever the embedding dtype (see esm_row_denominator). Work is split over
 * independent rows, so results do not depend on the thread count. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ops/ops_internal.h"

static inline double load(const ir_tensor_t *t, int64_t i) {
  return t->dtype == IR_DTYPE_F64 ? ((const double *)t->data)[i]
                                  : (double)((const float *)t->data)[i];
}

static ad_status_t dims_mismatch(const ir_kernel_args_t *a) {
  return ad_status_make(AD_STATUS_INTERNAL, "node '%s' (%s): inconsistent actual dims",
                        a->node->name, ir_op_name(a->node->op));
}

static ad_status_t unsupported(const ir_kernel_args_t *a, const ir_tensor_t *t) {
  return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                        "node '%s' (%s): the reference kernel does not take %s", a->node->name,
                        ir_op_name(a->node->op), ir_dtype_name(t->dtype));
}

/* ================================ REL_SHIFT ============================================= */

/* Requires input xi to be [..., n, 2n-1]. */
static ad_status_t check_rel_x(const ir_graph_t *g, const ir_node_t *n, uint32_t xi,
                               const char *what) {
  const ir_type_t *x = ir_in_type(g, n, xi);
  if (x->rank < 2)
    return ir_node_error(g, n, "%s (input %u) must be [..., n, 2n-1], got rank %d", what, xi,
                         x->rank);
  ir_dim_t two_n, want;
  if (!ir_dim_mul(x->dims[x->rank - 2], ir_dim_const(2), &two_n) ||
      !ir_dim_add_const(two_n, -1, &want) || !ir_dim_equal(want, x->dims[x->rank - 1]))
    return ir_node_error(g, n, "%s (input %u): the last dim must be 2n-1 (n: the dim before it)",
                         what, xi);
  return AD_OK;
}

static ad_status_t infer_rel_shift(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_rel_x(g, n, 0, "x"));
  const ir_type_t *x = ir_in_type(g, n, 0);
  out[0] = *x;
  out[0].dims[x->rank - 1] = x->dims[x->rank - 2];
  return AD_OK;
}

typedef struct rel_ctx {
  const char *in; /* forward: x [R, n, 2n-1]; backward: dy [R, n, n] */
  char *out;      /* forward: y [R, n, n]; backward: dx [R, n, 2n-1] */
  int64_t n;
  size_t es; /* element size */
  bool bwd;
} rel_ctx_t;

/* rows: the flattened [R, n] rows i of one [n, *] matrix. Row i of y is the contiguous window
 * x[i, n-1-i .. 2n-2-i]; the backward writes dy's row into that window of zeros. */
static void rel_rows(void *vctx, int64_t begin, int64_t end) {
  const rel_ctx_t *c = vctx;
  int64_t n = c->n, w = 2 * n - 1;
  size_t es = c->es;
  for (int64_t r = begin; r < end; r++) {
    int64_t off = n - 1 - r % n;
    if (!c->bwd) {
      memcpy(c->out + (size_t)(r * n) * es, c->in + (size_t)(r * w + off) * es, (size_t)n * es);
    } else {
      char *dx = c->out + (size_t)(r * w) * es;
      memset(dx, 0, (size_t)w * es);
      memcpy(dx + (size_t)off * es, c->in + (size_t)(r * n) * es, (size_t)n * es);
    }
  }
}

static ad_status_t kernel_rel_shift(const ir_kernel_args_t *a) {
  const ir_tensor_t *x = &a->in[0], *y = &a->out[0];
  if (x->rank < 2) return dims_mismatch(a);
  int64_t n = x->dims[x->rank - 2];
  if (x->dims[x->rank - 1] != 2 * n - 1 && !(n == 0 && x->dims[x->rank - 1] == 0))
    return dims_mismatch(a);
  int64_t rows = n ? ir_tensor_numel(y) / n : 0;
  if (rows == 0) return AD_OK;
  rel_ctx_t c = {.in = x->data, .out = y->data, .n = n, .es = ir_dtype_size(x->dtype)};
  ir_parallel_for(a->par, rows, 256, rel_rows, &c);
  return AD_OK;
}

/* Every element of y is one element of x, so the VJP scatters dy back (zeros elsewhere). */
static ad_status_t vjp_rel_shift(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  uint32_t ins[2] = {dy, c->node.inputs[0]};
  c->in_grads[0] = ir_emit(c->g, IR_OP_REL_SHIFT_BWD, ins, 2, NULL, 0);
  return AD_OK;
}

/* ================================ REL_SHIFT_BWD ========================================= */

static ad_status_t infer_rel_shift_bwd(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_rel_x(g, n, 1, "like_x"));
  const ir_type_t *dy = ir_in_type(g, n, 0), *x = ir_in_type(g, n, 1);
  ir_type_t want = *x;
  want.dims[x->rank - 1] = x->dims[x->rank - 2];
  if (!ir_type_equal(dy, &want))
    return ir_node_error(g, n, "dy (input 0) must be [..., n, n] with like_x's dtype, lead dims");
  out[0] = *x;
  return AD_OK;
}

static ad_status_t kernel_rel_shift_bwd(const ir_kernel_args_t *a) {
  const ir_tensor_t *dy = &a->in[0], *dx = &a->out[0];
  if (dx->rank < 2) return dims_mismatch(a);
  int64_t n = dx->dims[dx->rank - 2];
  if (ir_tensor_numel(dy) != (n ? ir_tensor_numel(dx) / (2 * n - 1) * n : 0))
    return dims_mismatch(a);
  int64_t rows = n ? ir_tensor_numel(dy) / n : 0;
  if (rows == 0) return AD_OK;
  size_t es = ir_dtype_size(dx->dtype);
  rel_ctx_t c = {.in = dy->data, .out = dx->data, .n = n, .es = es, .bwd = true};
  ir_parallel_for(a->par, rows, 256, rel_rows, &c);
  return AD_OK;
}

/* REL_SHIFT_BWD is linear in dy and its transpose is REL_SHIFT. */
static ad_status_t vjp_rel_shift_bwd(ir_vjp_ctx_t *c) {
  uint32_t g = c->out_grads[0];
  if (g == IR_NONE) return AD_OK;
  c->in_grads[0] = ir_emit1(c->g, IR_OP_REL_SHIFT, g);
  return AD_OK;
}

/* ================================ ONE_HOT =============================================== */

/* The 256 x 4 table of enformer_pytorch/data.py (one_hot_embed): ACGT in either case one-hot,
 * '.' a quarter each, every other byte (N/n included) all zeros. */
static void one_hot_row(uint8_t byte, double out[4]) {
  out[0] = out[1] = out[2] = out[3] = 0.0;
  switch (byte) {
    case 'A': case 'a': out[0] = 1.0; break;
    case 'C': case 'c': out[1] = 1.0; break;
    case 'G': case 'g': out[2] = 1.0; break;
    case 'T': case 't': out[3] = 1.0; break;
    case '.': out[0] = out[1] = out[2] = out[3] = 0.25; break;
    default: break;
  }
}

static ad_status_t infer_one_hot(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *x = ir_in_type(g, n, 0);
  if (x->dtype != IR_DTYPE_U8)
    return ir_node_error(g, n, "bytes (input 0) must be u8, got %s", ir_dtype_name(x->dtype));
  if (x->rank >= IR_MAX_RANK)
    return ir_node_error(g, n, "bytes (input 0) has rank %d; the output needs one more axis",
                         x->rank);
  const char *s = ir_node_attr_string(n, "dtype", NULL);
  ir_dtype_t dt;
  if (!s || !ir_dtype_from_name(s, &dt) || (dt != IR_DTYPE_F32 && dt != IR_DTYPE_F64))
    return ir_node_error(g, n, "needs a string attribute 'dtype', \"f32\" or \"f64\"");
  out[0] = *x;
  out[0].dtype = dt;
  out[0].dims[x->rank] = ir_dim_const(4);
  out[0].rank = x->rank + 1;
  return AD_OK;
}

typedef struct one_hot_ctx {
  const uint8_t *x;
  const ir_tensor_t *y; /* y: [..., 4] */
} one_hot_ctx_t;

static void one_hot_range(void *vctx, int64_t begin, int64_t end) {
  const one_hot_ctx_t *c = vctx;
  for (int64_t i = begin; i < end; i++) {
    double row[4];
    one_hot_row(c->x[i], row);
    for (int k = 0; k < 4; k++) {
      if (c->y->dtype == IR_DTYPE_F64)
        ((double *)c->y->data)[i * 4 + k] = row[k];
      else
        ((float *)c->y->data)[i * 4 + k] = (float)row[k];
    }
  }
}

static ad_status_t kernel_one_hot(const ir_kernel_args_t *a) {
  const ir_tensor_t *x = &a->in[0], *y = &a->out[0];
  if (x->dtype != IR_DTYPE_U8) return unsupported(a, x);
  if (y->dtype != IR_DTYPE_F32 && y->dtype != IR_DTYPE_F64) return unsupported(a, y);
  if (ir_tensor_numel(y) != 4 * ir_tensor_numel(x)) return dims_mismatch(a);
  one_hot_ctx_t c = {.x = x->data, .y = y};
  ir_parallel_for(a->par, ir_tensor_numel(x), 4096, one_hot_range, &c);
  return AD_OK;
}

/* ================================ ESM_TOKEN_DROPOUT ===================================== */

/* transformers hardcodes mask_ratio_train = 0.15 * 0.8 (== 0.12 in double). */
#define ESM_DEFAULT_RATIO 0.12
#define ESM_DEFAULT_MASK_TOKEN 32

static ad_status_t infer_esm_token_dropout(const ir_graph_t *g, const ir_node_t *n,
                                           ir_type_t *out) {
  const ir_type_t *e = ir_in_type(g, n, 0), *ids = ir_in_type(g, n, 1), *m = ir_in_type(g, n, 2);
  if (e->dtype != IR_DTYPE_F32 && e->dtype != IR_DTYPE_F64)
    return ir_node_error(g, n, "emb (input 0) must be an f32 or f64 [B, L, H] tensor");
  if (e->rank != 3)
    return ir_node_error(g, n, "emb (input 0) must be [B, L, H], got rank %d", e->rank);
  if ((ids->dtype != IR_DTYPE_I32 && ids->dtype != IR_DTYPE_I64) || ids->rank != 2)
    return ir_node_error(g, n, "ids (input 1) must be an i32 or i64 [B, L] tensor");
  if ((m->dtype != IR_DTYPE_F32 && m->dtype != IR_DTYPE_F64) || m->rank != 2)
    return ir_node_error(g, n, "mask (input 2) must be an f32 or f64 [B, L] tensor");
  for (int d = 0; d < 2; d++)
    if (!ir_dim_equal(ids->dims[d], e->dims[d]) || !ir_dim_equal(m->dims[d], e->dims[d]))
      return ir_node_error(g, n, "ids and mask must be [B, L] like emb's first two dims");
  const ir_attr_t *mt = ir_node_attr(n, "mask_token");
  if (mt && mt->kind != IR_ATTR_INT)
    return ir_node_error(g, n, "attribute 'mask_token' must be an int");
  double ratio = ir_node_attr_float(n, "ratio", ESM_DEFAULT_RATIO);
  if (!(ratio >= 0.0 && ratio < 1.0))
    return ir_node_error(g, n, "attribute 'ratio' must be in [0, 1)");
  out[0] = *e;
  return AD_OK;
}

typedef struct esm_ctx {
  const ir_tensor_t *x, *ids, *mask, *y; /* x, y: [B, L, H]; ids, mask: [B, L] */
  int64_t L, H, mask_token;
  double keep; /* 1 - ratio */
  const float *den; /* den: [B], float32 as torch computes it */
} esm_ctx_t;

static inline int64_t id_at(const ir_tensor_t *ids, int64_t i) {
  return ids->dtype == IR_DTYPE_I64 ? ((const int64_t *)ids->data)[i]
                                    : (int64_t)((const int32_t *)ids->data)[i];
}

/* 1 - n_mask / n_valid for row b. EsmEmbeddings computes mask_ratio_observed as
 * `(ids == mask).sum(-1).float() / attention_mask.sum(-1)`: with the tokenizer's integer mask that
 * is a float32 division, and `1 - ratio` stays float32, so the f64 path divides by a float32
 * value too. The mask sum runs in double (exact for 0/1 masks below 2^53) before rounding. */
static float esm_row_denominator(const esm_ctx_t *c, int64_t b) {
  int64_t n_mask = 0;
  double n_valid = 0.0;
  for (int64_t t = 0; t < c->L; t++) {
    n_mask += id_at(c->ids, b * c->L + t) == c->mask_token;
    n_valid += load(c->mask, b * c->L + t);
  }
  float r = (float)n_mask / (float)n_valid;
  return 1.0f - r;
}

/* rows: the flattened [B, L] tokens. y = masked_fill(x, id == mask, 0) * keep / den[b] * mask,
 * in torch's order and precision for each dtype. */
static void esm_rows(void *vctx, int64_t begin, int64_t end) {
  const esm_ctx_t *c = vctx;
  for (int64_t r = begin; r < end; r++) {
    int64_t b = r / c->L;
    bool dropped = id_at(c->ids, r) == c->mask_token;
    double m = load(c->mask, r);
    if (c->x->dtype == IR_DTYPE_F64) {
      const double *x = (const double *)c->x->data + r * c->H;
      double *y = (double *)c->y->data + r * c->H;
      double den = (double)c->den[b];
      for (int64_t e = 0; e < c->H; e++) y[e] = ((dropped ? 0.0 : x[e]) * c->keep) / den * m;
    } else {
      const float *x = (const float *)c->x->data + r * c->H;
      float *y = (float *)c->y->data + r * c->H;
      float keep = (float)c->keep, den = c->den[b], mf = (float)m;
      for (int64_t e = 0; e < c->H; e++) {
        float v = (dropped ? 0.0f : x[e]) * keep;
        v = v / den;
        y[e] = v * mf;
      }
    }
  }
}

static ad_status_t kernel_esm_token_dropout(const ir_kernel_args_t *a) {
  const ir_tensor_t *x = &a->in[0], *ids = &a->in[1], *mask = &a->in[2];
  if (x->dtype != IR_DTYPE_F32 && x->dtype != IR_DTYPE_F64) return unsupported(a, x);
  if (ids->dtype != IR_DTYPE_I32 && ids->dtype != IR_DTYPE_I64) return unsupported(a, ids);
  if (mask->dtype != IR_DTYPE_F32 && mask->dtype != IR_DTYPE_F64) return unsupported(a, mask);
  if (x->rank != 3 || ids->rank != 2 || mask->rank != 2 || ids->dims[0] != x->dims[0] ||
      ids->dims[1] != x->dims[1] || mask->dims[0] != x->dims[0] || mask->dims[1] != x->dims[1])
    return dims_mismatch(a);
  int64_t B = x->dims[0], L = x->dims[1], H = x->dims[2];
  if (B * L * H == 0) return AD_OK;
  float *den = malloc(sizeof(float) * (size_t)B); /* den: [B] */
  if (!den)
    return ad_status_make(AD_STATUS_RESOURCE, "node '%s' (esm_token_dropout): out of memory",
                          a->node->name);
  esm_ctx_t c = {.x = x,
                 .ids = ids,
                 .mask = mask,
                 .y = &a->out[0],
                 .L = L,
                 .H = H,
                 .mask_token = ir_node_attr_int(a->node, "mask_token", ESM_DEFAULT_MASK_TOKEN),
                 .keep = 1.0 - ir_node_attr_float(a->node, "ratio", ESM_DEFAULT_RATIO),
                 .den = den};
  for (int64_t b = 0; b < B; b++) den[b] = esm_row_denominator(&c, b);
  ir_parallel_for(a->par, B * L, 1 + 1024 / (H + 1), esm_rows, &c);
  free(den);
  return AD_OK;
}

/* The op is a per-token scaling of emb (0 on dropped and padded tokens), so the VJP applies the
 * same scaling to dy. */
static ad_status_t vjp_esm_token_dropout(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  uint32_t ins[3] = {dy, c->node.inputs[1], c->node.inputs[2]};
  ir_attr_t attrs[2] = {
      IR_ATTR_I("mask_token", ir_node_attr_int(&c->node, "mask_token", ESM_DEFAULT_MASK_TOKEN)),
      IR_ATTR_F("ratio", ir_node_attr_float(&c->node, "ratio", ESM_DEFAULT_RATIO))};
  c->in_grads[0] = ir_emit(c->g, IR_OP_ESM_TOKEN_DROPOUT, ins, 3, attrs, 2);
  return AD_OK;
}

static void cost_esm_token_dropout(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                                   const ir_shape_t *out, ir_cost_t *c) {
  (void)n;
  (void)dt;
  (void)out;
  c->flops = 3u * (uint64_t)ir_shape_numel(&in[0]) + 2u * (uint64_t)ir_shape_numel(&in[1]);
}

void ir_ops_register_model(ir_op_info_t *t) {
  t[IR_OP_REL_SHIFT] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE,
                                      .min_inputs = 1,
                                      .max_inputs = 1,
                                      .noutputs = 1,
                                      .infer = infer_rel_shift,
                                      .kernel = kernel_rel_shift,
                                      .vjp = vjp_rel_shift};
  t[IR_OP_REL_SHIFT_BWD] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE,
                                          .min_inputs = 2,
                                          .max_inputs = 2,
                                          .noutputs = 1,
                                          .infer = infer_rel_shift_bwd,
                                          .kernel = kernel_rel_shift_bwd,
                                          .vjp = vjp_rel_shift_bwd,
                                          .nondiff_inputs = 1u << 1}; /* like_x: shape only */
  t[IR_OP_ONE_HOT] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE,
                                    .min_inputs = 1,
                                    .max_inputs = 1,
                                    .noutputs = 1,
                                    .infer = infer_one_hot,
                                    .kernel = kernel_one_hot,
                                    .vjp = NULL,
                                    .nondiff_inputs = 1u << 0};
  t[IR_OP_ESM_TOKEN_DROPOUT] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE,
                                              .min_inputs = 3,
                                              .max_inputs = 3,
                                              .noutputs = 1,
                                              .infer = infer_esm_token_dropout,
                                              .kernel = kernel_esm_token_dropout,
                                              .vjp = vjp_esm_token_dropout,
                                              .nondiff_inputs = (1u << 1) | (1u << 2),
                                              .cost = cost_esm_token_dropout};
}
