/* Ops of the train group (see ir/ops.def for their semantics): DROPOUT, MSE, MSE_BWD, ADAMW.
 *
 * These ops follow torch's CPU kernels operation by operation, in the tensor dtype, because the
 * fixtures (tools/golden/ops_train.py) come from torch and training runs are compared with the
 * peer's: F.dropout multiplies by a dtype noise tensor, F.mse_loss squares in the dtype, and
 * torch.optim.AdamW's single-tensor path (foreach and fused off) updates parameter and moments
 * with scalars rounded to the dtype. Elementwise kernels split over elements only; the MSE
 * reduction runs serially (f64 pairwise, f32 accumulated in double), so results never depend on
 * the thread count. */
#include <string.h>

#include "ir/ops/ops_internal.h"
#include "ir/philox.h"

#define TRAIN_GRAIN 4096 /* elements per parallel chunk */

static bool is_f32_or_f64(ir_dtype_t t) { return t == IR_DTYPE_F32 || t == IR_DTYPE_F64; }

static ad_status_t need_rank0(const ir_graph_t *g, const ir_node_t *n, uint32_t i, ir_dtype_t dt,
                              const char *what) {
  const ir_type_t *t = ir_in_type(g, n, i);
  if (t->rank != 0 || t->dtype != dt)
    return ir_node_error(g, n, "input %u (%s) must be %s[], got rank %d %s", i, what,
                         ir_dtype_name(dt), t->rank, ir_dtype_name(t->dtype));
  return AD_OK;
}

static ad_status_t need_float_attr(const ir_graph_t *g, const ir_node_t *n, const char *key,
                                   double lo, double hi, double *out) {
  const ir_attr_t *a = ir_node_attr(n, key);
  if (!a || (a->kind != IR_ATTR_FLOAT && a->kind != IR_ATTR_INT))
    return ir_node_error(g, n, "needs a numeric attribute '%s'", key);
  double v = a->kind == IR_ATTR_FLOAT ? a->f : (double)a->i;
  if (!(v >= lo && v <= hi))
    return ir_node_error(g, n, "attribute '%s' = %g is outside [%g, %g]", key, v, lo, hi);
  *out = v;
  return AD_OK;
}

static ad_status_t kernel_dtype_error(const ir_kernel_args_t *a, ir_dtype_t dt) {
  return ad_status_make(AD_STATUS_UNIMPLEMENTED, "node '%s' (%s): no reference kernel for %s",
                        a->node->name, ir_op_name(a->node->op), ir_dtype_name(dt));
}

/* ---- DROPOUT (x, seed:i64[], step:i64[]) attrs p, key ----------------------------------- */

static ad_status_t infer_dropout(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *x = ir_in_type(g, n, 0);
  if (!ir_dtype_is_float(x->dtype)) return ir_node_error(g, n, "x must be a float tensor");
  AD_RETURN_IF_ERROR(need_rank0(g, n, 1, IR_DTYPE_I64, "seed"));
  AD_RETURN_IF_ERROR(need_rank0(g, n, 2, IR_DTYPE_I64, "step"));
  double p;
  AD_RETURN_IF_ERROR(need_float_attr(g, n, "p", 0.0, 1.0, &p));
  const char *key = ir_node_attr_string(n, "key", NULL);
  if (!key || !key[0])
    return ir_node_error(g, n, "needs a non-empty string attribute 'key' (the stable RNG name)");
  out[0] = *x;
  return AD_OK;
}

typedef struct dropout_ctx {
  const void *x; /* x: [numel] flat, logical element order */
  void *y;       /* y: [numel] */
  ir_dtype_t dt;
  uint32_t key[2];
  int64_t step;
  double p;
  double scale64;
  float scale32;
} dropout_ctx_t;

static void dropout_range(void *vctx, int64_t begin, int64_t end) {
  const dropout_ctx_t *c = vctx;
  uint32_t w[4];
  for (int64_t e = begin; e < end; e++) {
    /* One Philox call per group of four logical elements (philox.h); chunk starts need not
     * be multiples of four, so the block is (re)computed whenever e enters a new one. */
    if (e == begin || (e & 3) == 0) ir_philox_dropout_block(c->key, (uint64_t)e >> 2, c->step, w);
    bool keep = ir_philox_uniform(w[e & 3]) >= c->p;
    /* x * noise as torch does (noise = keep ? 1/(1-p) : 0), so NaN * 0 stays NaN. */
    if (c->dt == IR_DTYPE_F64)
      ((double *)c->y)[e] = ((const double *)c->x)[e] * (keep ? c->scale64 : 0.0);
    else
      ((float *)c->y)[e] = ((const float *)c->x)[e] * (keep ? c->scale32 : 0.0f);
  }
}

static ad_status_t kernel_dropout(const ir_kernel_args_t *a) {
  const ir_tensor_t *x = &a->in[0];
  if (!is_f32_or_f64(x->dtype)) return kernel_dtype_error(a, x->dtype);
  dropout_ctx_t c = {.x = x->data, .y = a->out[0].data, .dt = x->dtype};
  c.p = ir_node_attr_float(a->node, "p", 0.0);
  c.step = *(const int64_t *)a->in[2].data;
  ir_philox_dropout_key(*(const int64_t *)a->in[1].data, ir_node_attr_string(a->node, "key", ""),
                        c.key);
  /* torch: noise.div_(1 - p) on a dtype tensor of ones, i.e. (T)1 / (T)(1 - p). */
  c.scale64 = 1.0 / (1.0 - c.p);
  c.scale32 = 1.0f / (float)(1.0 - c.p);
  ir_parallel_for(a->par, ir_tensor_numel(x), TRAIN_GRAIN, dropout_range, &c);
  return AD_OK;
}

/* dx = dy * mask / (1-p): the same op, attrs and (seed, step) reproduce the forward mask. */
static ad_status_t vjp_dropout(ir_vjp_ctx_t *c) {
  if (c->out_grads[0] == IR_NONE) return AD_OK;
  const ir_node_t *n = &c->node;
  uint32_t ins[3] = {c->out_grads[0], n->inputs[1], n->inputs[2]};
  c->in_grads[0] = ir_emit(c->g, IR_OP_DROPOUT, ins, 3, n->attrs, n->nattrs);
  return AD_OK;
}

static void cost_numel(const ir_shape_t *s, uint64_t per, ir_cost_t *c) {
  c->flops = (uint64_t)ir_shape_numel(s) * per;
}

static void cost_dropout(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                         const ir_shape_t *out, ir_cost_t *c) {
  cost_numel(&in[0], 1, c);
}

/* ---- MSE (pred, target) -> f[] and MSE_BWD (pred, target, dloss) -> dpred ---------------- */

static ad_status_t check_pred_target(const ir_graph_t *g, const ir_node_t *n) {
  const ir_type_t *p = ir_in_type(g, n, 0), *t = ir_in_type(g, n, 1);
  if (!ir_dtype_is_float(p->dtype)) return ir_node_error(g, n, "pred must be a float tensor");
  if (!ir_type_equal(p, t)) return ir_node_error(g, n, "pred and target must have the same type");
  return AD_OK;
}

static ad_status_t infer_mse(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_pred_target(g, n));
  memset(&out[0], 0, sizeof out[0]);
  out[0].dtype = ir_in_type(g, n, 0)->dtype;
  out[0].rank = 0;
  return AD_OK;
}

/* Pairwise sum of (a-b)^2, each square rounded to f64 as torch's f64 kernel does. */
static double sumsq_pairwise_f64(const double *a, const double *b, int64_t n) {
  if (n <= 32) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
      double d = a[i] - b[i];
      s += d * d;
    }
    return s;
  }
  int64_t h = n / 2;
  return sumsq_pairwise_f64(a, b, h) + sumsq_pairwise_f64(a + h, b + h, n - h);
}

static ad_status_t kernel_mse(const ir_kernel_args_t *a) {
  const ir_tensor_t *p = &a->in[0], *t = &a->in[1];
  int64_t n = ir_tensor_numel(p); /* pred, target: [numel] flat */
  if (p->dtype == IR_DTYPE_F64) {
    double s = sumsq_pairwise_f64(p->data, t->data, n);
    *(double *)a->out[0].data = n > 0 ? s / (double)n : NAN; /* torch: mean of empty is nan */
  } else if (p->dtype == IR_DTYPE_F32) {
    const float *pd = p->data, *td = t->data;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
      float d = pd[i] - td[i];
      s += (double)(d * d); /* square rounded in f32 like torch, summed in f64 */
    }
    *(float *)a->out[0].data = n > 0 ? (float)(s / (double)n) : NAN;
  } else {
    return kernel_dtype_error(a, p->dtype);
  }
  return AD_OK;
}

static ad_status_t vjp_mse(ir_vjp_ctx_t *c) {
  if (c->out_grads[0] == IR_NONE) return AD_OK;
  const ir_node_t *n = &c->node;
  uint32_t ins[3] = {n->inputs[0], n->inputs[1], c->out_grads[0]};
  c->in_grads[0] = ir_emit(c->g, IR_OP_MSE_BWD, ins, 3, NULL, 0);
  return AD_OK;
}

static void cost_mse(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                     const ir_shape_t *out, ir_cost_t *c) {
  cost_numel(&in[0], 3, c);
}

static ad_status_t infer_mse_bwd(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_pred_target(g, n));
  AD_RETURN_IF_ERROR(need_rank0(g, n, 2, ir_in_type(g, n, 0)->dtype, "dloss"));
  out[0] = *ir_in_type(g, n, 0);
  return AD_OK;
}

typedef struct mse_bwd_ctx {
  const void *p, *t; /* pred, target: [numel] */
  void *dp;          /* dpred: [numel] */
  ir_dtype_t dt;
  double norm64, dl64;
  float norm32, dl32;
} mse_bwd_ctx_t;

/* torch mse_loss_backward: (pred - target).mul_(2/numel).mul_(dloss), rounding at each step. */
static void mse_bwd_range(void *vctx, int64_t begin, int64_t end) {
  const mse_bwd_ctx_t *c = vctx;
  if (c->dt == IR_DTYPE_F64) {
    const double *p = c->p, *t = c->t;
    double *d = c->dp;
    for (int64_t i = begin; i < end; i++) d[i] = ((p[i] - t[i]) * c->norm64) * c->dl64;
  } else {
    const float *p = c->p, *t = c->t;
    float *d = c->dp;
    for (int64_t i = begin; i < end; i++) d[i] = ((p[i] - t[i]) * c->norm32) * c->dl32;
  }
}

static ad_status_t kernel_mse_bwd(const ir_kernel_args_t *a) {
  const ir_tensor_t *p = &a->in[0];
  if (!is_f32_or_f64(p->dtype)) return kernel_dtype_error(a, p->dtype);
  int64_t n = ir_tensor_numel(p);
  double norm = n > 0 ? 2.0 / (double)n : 0.0;
  mse_bwd_ctx_t c = {.p = p->data, .t = a->in[1].data, .dp = a->out[0].data, .dt = p->dtype,
                     .norm64 = norm, .norm32 = (float)norm};
  if (p->dtype == IR_DTYPE_F64)
    c.dl64 = *(const double *)a->in[2].data;
  else
    c.dl32 = *(const float *)a->in[2].data;
  ir_parallel_for(a->par, n, TRAIN_GRAIN, mse_bwd_range, &c);
  return AD_OK;
}

static void cost_mse_bwd(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                         const ir_shape_t *out, ir_cost_t *c) {
  cost_numel(&in[0], 3, c);
}

/* ---- ADAMW (p, g, m, v, lr:f64[], step:i64[]) -> p', m', v' ------------------------------ */

static ad_status_t infer_adamw(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *p = ir_in_type(g, n, 0);
  if (!ir_dtype_is_float(p->dtype)) return ir_node_error(g, n, "p must be a float tensor");
  static const char *const names[3] = {"g", "m", "v"};
  for (uint32_t i = 1; i < 4; i++)
    if (!ir_type_equal(ir_in_type(g, n, i), p))
      return ir_node_error(g, n, "%s must have the type of p", names[i - 1]);
  AD_RETURN_IF_ERROR(need_rank0(g, n, 4, IR_DTYPE_F64, "lr"));
  AD_RETURN_IF_ERROR(need_rank0(g, n, 5, IR_DTYPE_I64, "step"));
  if (n->ninputs == 8) { /* gradient clipping: the global norm and max_norm */
    AD_RETURN_IF_ERROR(need_rank0(g, n, 6, p->dtype, "grad_norm"));
    AD_RETURN_IF_ERROR(need_rank0(g, n, 7, IR_DTYPE_F64, "max_norm"));
  } else if (n->ninputs != 6) {
    return ir_node_error(g, n, "takes 6 inputs, or 8 with grad_norm and max_norm");
  }
  double v = 0.0;
  static const char *const betas[2] = {"beta1", "beta2"};
  for (int i = 0; i < 2; i++) {
    AD_RETURN_IF_ERROR(need_float_attr(g, n, betas[i], 0.0, 1.0, &v));
    if (v == 1.0) return ir_node_error(g, n, "attribute '%s' must be below 1", betas[i]);
  }
  AD_RETURN_IF_ERROR(need_float_attr(g, n, "eps", 0.0, INFINITY, &v));
  AD_RETURN_IF_ERROR(need_float_attr(g, n, "weight_decay", 0.0, INFINITY, &v));
  for (int i = 0; i < 3; i++) out[i] = *p;
  return AD_OK;
}

/* The per-step scalars, computed in double exactly as torch's Python code does, then rounded
 * to the tensor dtype where torch hands them to a kernel as a Python scalar. */
typedef struct adamw_scalars {
  double decay;   /* 1 - lr*wd                      (param.mul_) */
  double w;       /* 1 - beta1                      (exp_avg.lerp_ weight) */
  double beta2;   /*                                (exp_avg_sq.mul_) */
  double omb2;    /* 1 - beta2                      (addcmul_ value) */
  double bc2sqrt; /* (1 - beta2^t) ** 0.5           (Python float pow, not sqrt) */
  double eps;     /*                                (add_) */
  double negss;   /* -(lr / (1 - beta1^t))          (addcdiv_ value) */
} adamw_scalars_t;

typedef struct adamw_ctx {
  const void *p, *g, *m, *v; /* each [numel] */
  void *po, *mo, *vo;        /* p', m', v': [numel] */
  ir_dtype_t dt;
  adamw_scalars_t s;
  bool clip;                 /* g is multiplied by coef first (clip_grad_norm_) */
  double coef64;
  float coef32;
} adamw_ctx_t;

/* Where torch's CPU kernels fuse a multiply-add we do too, which makes the update
 * bit-identical to torch's AVX2/AVX512 kernels (tests/test_ops_train.c checks every bit):
 * - lerp (ATen/native/Lerp.h lerp_vec) calls fmadd explicitly: weight small (|w| < 0.5):
 *   fma(w, end - self, self), otherwise fma(w - 1, end - self, end);
 * - addcmul's `self + value * t1 * t2` is contracted by the compiler into
 *   fma(value * t1, t2, self) (the intrinsics are plain vector arithmetic to GCC);
 * - addcdiv's `self + value * t1 / t2` and the denominator have a division in between, so
 *   nothing fuses there. */
static inline double lerp64(double self, double end, double w) {
  return fabs(w) < 0.5 ? fma(w, end - self, self) : fma(w - 1.0, end - self, end);
}
static inline float lerp32(float self, float end, float w) {
  return fabsf(w) < 0.5f ? fmaf(w, end - self, self) : fmaf(w - 1.0f, end - self, end);
}

static void adamw_range(void *vctx, int64_t begin, int64_t end) {
  const adamw_ctx_t *c = vctx;
  const adamw_scalars_t *s = &c->s;
  if (c->dt == IR_DTYPE_F64) {
    const double *p = c->p, *g = c->g, *m = c->m, *v = c->v;
    double *po = c->po, *mo = c->mo, *vo = c->vo;
    for (int64_t i = begin; i < end; i++) {
      double gi = c->clip ? g[i] * c->coef64 : g[i];
      double pi = p[i] * s->decay;
      double mi = lerp64(m[i], gi, s->w);
      double vi = fma(s->omb2 * gi, gi, v[i] * s->beta2);
      double denom = sqrt(vi) / s->bc2sqrt + s->eps;
      po[i] = pi + (s->negss * mi) / denom;
      mo[i] = mi;
      vo[i] = vi;
    }
  } else {
    const float *p = c->p, *g = c->g, *m = c->m, *v = c->v;
    float *po = c->po, *mo = c->mo, *vo = c->vo;
    const float decay = (float)s->decay, w = (float)s->w, beta2 = (float)s->beta2;
    const float omb2 = (float)s->omb2, bc2sqrt = (float)s->bc2sqrt, eps = (float)s->eps;
    const float negss = (float)s->negss;
    for (int64_t i = begin; i < end; i++) {
      float gi = c->clip ? g[i] * c->coef32 : g[i];
      float pi = p[i] * decay;
      float mi = lerp32(m[i], gi, w);
      float vi = fmaf(omb2 * gi, gi, v[i] * beta2);
      float denom = sqrtf(vi) / bc2sqrt + eps;
      po[i] = pi + (negss * mi) / denom;
      mo[i] = mi;
      vo[i] = vi;
    }
  }
}

static ad_status_t kernel_adamw(const ir_kernel_args_t *a) {
  const ir_tensor_t *p = &a->in[0];
  if (!is_f32_or_f64(p->dtype)) return kernel_dtype_error(a, p->dtype);
  const ir_node_t *n = a->node;
  double lr = *(const double *)a->in[4].data;
  int64_t t = *(const int64_t *)a->in[5].data;
  if (t < 1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "node '%s' (adamw): step must be the 1-based step count, got %lld",
                          n->name, (long long)t);
  double b1 = ir_node_attr_float(n, "beta1", 0.9), b2 = ir_node_attr_float(n, "beta2", 0.999);
  double eps = ir_node_attr_float(n, "eps", 1e-8), wd = ir_node_attr_float(n, "weight_decay", 0.0);
  double bc1 = 1.0 - pow(b1, (double)t);
  double bc2 = 1.0 - pow(b2, (double)t);
  adamw_ctx_t c = {.p = p->data, .g = a->in[1].data, .m = a->in[2].data, .v = a->in[3].data,
                   .po = a->out[0].data, .mo = a->out[1].data, .vo = a->out[2].data,
                   .dt = p->dtype};
  c.s.decay = 1.0 - lr * wd;
  c.s.w = 1.0 - b1;
  c.s.beta2 = b2;
  c.s.omb2 = 1.0 - b2;
  c.s.bc2sqrt = pow(bc2, 0.5);
  c.s.eps = eps;
  c.s.negss = -(lr / bc1);
  /* torch.nn.utils.clip_grad_norm_ (Lightning's gradient_clip_val, "norm"): in the gradient
   * dtype, clip_coef = max_norm / (total_norm + 1e-6), which torch evaluates as
   * (total_norm + 1e-6).reciprocal() * max_norm (Tensor.__rtruediv__), clamped to at most 1,
   * then every gradient is multiplied by it. max_norm <= 0 means no clipping. */
  if (a->nin == 8) {
    double max_norm = *(const double *)a->in[7].data;
    if (max_norm > 0) {
      c.clip = true;
      if (p->dtype == IR_DTYPE_F64) {
        double tn = *(const double *)a->in[6].data;
        double coef = (1.0 / (tn + 1e-6)) * max_norm;
        c.coef64 = coef > 1.0 ? 1.0 : coef;
      } else {
        float tn = *(const float *)a->in[6].data;
        float coef = (1.0f / (tn + 1e-6f)) * (float)max_norm;
        c.coef32 = coef > 1.0f ? 1.0f : coef;
      }
    }
  }
  ir_parallel_for(a->par, ir_tensor_numel(p), TRAIN_GRAIN, adamw_range, &c);
  return AD_OK;
}

static void cost_adamw(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                       const ir_shape_t *out, ir_cost_t *c) {
  cost_numel(&in[0], 14, c);
}

/* ---- registration ------------------------------------------------------------------------ */

void ir_ops_register_train(ir_op_info_t *table) {
  table[IR_OP_DROPOUT] = (ir_op_info_t){
      .fusion = IR_FUSION_ELEMENTWISE, .min_inputs = 3, .max_inputs = 3, .noutputs = 1,
      .flags = IR_OP_FLAG_RANDOM | IR_OP_FLAG_INPLACE, .infer = infer_dropout,
      .kernel = kernel_dropout, .vjp = vjp_dropout, .nondiff_inputs = (1u << 1) | (1u << 2),
      .cost = cost_dropout};
  table[IR_OP_MSE] = (ir_op_info_t){
      .fusion = IR_FUSION_REDUCTION, .min_inputs = 2, .max_inputs = 2, .noutputs = 1,
      .infer = infer_mse, .kernel = kernel_mse, .vjp = vjp_mse, .nondiff_inputs = 1u << 1,
      .cost = cost_mse};
  table[IR_OP_MSE_BWD] = (ir_op_info_t){
      .fusion = IR_FUSION_ELEMENTWISE, .min_inputs = 3, .max_inputs = 3, .noutputs = 1,
      .infer = infer_mse_bwd, .kernel = kernel_mse_bwd, .vjp = NULL, .nondiff_inputs = 0x7,
      .cost = cost_mse_bwd};
  /* Elementwise over the parameter with three outputs; p' may overwrite p in place. */
  table[IR_OP_ADAMW] = (ir_op_info_t){
      .fusion = IR_FUSION_ELEMENTWISE, .min_inputs = 6, .max_inputs = 8, .noutputs = 3,
      .flags = IR_OP_FLAG_STATEFUL | IR_OP_FLAG_INPLACE, .infer = infer_adamw,
      .kernel = kernel_adamw, .vjp = NULL, .nondiff_inputs = 0xff, .cost = cost_adamw};
}
