/* Ops of the elementwise group (see ir/ops.def for their semantics): binary arithmetic with
 * numpy broadcasting, WHERE, SCALE, the activations and unary math, UNARY_BWD (the backward of
 * every differentiable unary op) and CAST. EXPAND and SUM_TO live in reduce.c, which shares
 * their reduction machinery.
 *
 * Kernels load each element into double, compute there and round once on store: for + - * /
 * and sqrt that equals the correctly rounded f32 result (53 >= 2*24+2 bits), and for the
 * transcendental functions it is at least as accurate as torch's f32 kernels. bf16 and f16
 * take the same path, so a mixed-precision graph can run on the reference interpreter. */
#include <string.h>

#include "ir/ops/ops_internal.h"

#define EW_CHUNK 256 /* elements staged per row piece in each input's double buffer */
#define EW_MAX_IN 3

static const double kSqrt1_2 = 0.70710678118654752440;   /* 1/sqrt(2) */
static const double k2_SqrtPi = 1.12837916709551257390;  /* 2/sqrt(pi) */
static const double kSqrt2 = 1.41421356237309504880;
static const double kGeluKappa = 0.044715;
static const double kGeluSigmoidAlpha = 1.702;

/* ---- dtype conversions ----------------------------------------------------------------- */

/* Rounds (-1)^neg * sig * 2^e2 to nearest-even in a binary float format with `mb` fraction
 * bits and `eb` exponent bits (subnormals kept, overflow to inf) and returns its bit pattern.
 * One rounding from the exact value, so i64 and f64 sources never double-round. */
static uint64_t round_to_format(int neg, uint64_t sig, int e2, int mb, int eb) {
  uint64_t sign = (uint64_t)neg << (mb + eb);
  if (sig == 0) return sign;
  int p = 63 - __builtin_clzll(sig); /* value in [2^(p+e2), 2^(p+e2+1)) */
  int e = p + e2;                    /* unbiased exponent of the exact value */
  int bias = (1 << (eb - 1)) - 1, emin = 1 - bias;
  int shift = p - mb; /* low bits to drop so that mb+1 significant bits remain */
  if (e < emin) shift += emin - e; /* subnormal target: fewer significant bits */
  uint64_t q;
  if (shift <= 0) {
    q = sig << -shift;
  } else if (shift > 64) {
    q = 0; /* below half the smallest subnormal */
  } else {
    uint64_t rem = shift == 64 ? sig : sig & ((1ull << shift) - 1);
    uint64_t half = 1ull << (shift - 1);
    q = shift == 64 ? 0 : sig >> shift;
    if (rem > half || (rem == half && (q & 1))) q++;
  }
  /* A subnormal that rounds up to 2^mb is exactly the smallest normal's encoding. */
  if (e < emin) return sign | q;
  if (q >> (mb + 1)) {
    q >>= 1;
    e++;
  }
  uint64_t emax_field = (1ull << eb) - 1;
  if ((uint64_t)(e + bias) >= emax_field) return sign | (emax_field << mb);
  return sign | ((uint64_t)(e + bias) << mb) | (q & ((1ull << mb) - 1));
}

static uint64_t f64_round_bits(double d, int mb, int eb) {
  uint64_t b;
  memcpy(&b, &d, sizeof b);
  int neg = (int)(b >> 63);
  int ex = (int)((b >> 52) & 0x7ff);
  uint64_t man = b & ((1ull << 52) - 1);
  if (ex == 0x7ff) { /* inf, or NaN made quiet */
    uint64_t expall = ((1ull << eb) - 1) << mb;
    return ((uint64_t)neg << (mb + eb)) | expall | (man ? 1ull << (mb - 1) : 0);
  }
  if (ex == 0) return round_to_format(neg, man, -1074, mb, eb);
  return round_to_format(neg, man | (1ull << 52), ex - 1075, mb, eb);
}

static uint16_t f64_to_bf16(double d) { return (uint16_t)f64_round_bits(d, 7, 8); }
static uint16_t f64_to_f16(double d) { return (uint16_t)f64_round_bits(d, 10, 5); }

static double bf16_to_f64(uint16_t h) {
  uint32_t b = (uint32_t)h << 16;
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

static double f16_to_f64(uint16_t h) {
  int neg = h >> 15, ex = (h >> 10) & 0x1f, man = h & 0x3ff;
  double v;
  if (ex == 0x1f) v = man ? NAN : INFINITY;
  else if (ex == 0) v = ldexp((double)man, -24);
  else v = ldexp((double)(man | 0x400), ex - 25);
  return neg ? -v : v;
}

static uint16_t i64_to_narrow(int64_t v, int mb, int eb) {
  uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  return (uint16_t)round_to_format(v < 0, mag, 0, mb, eb);
}

/* Float to integer: truncation toward zero, saturating at the range, NaN -> 0 (C leaves
 * these undefined and torch's result depends on the CPU; we pick the defined one). */
static int64_t f64_to_int_sat(double d, int64_t lo, int64_t hi) {
  if (d != d) return 0;
  if (d <= (double)lo) return lo;
  if (d >= (double)hi) return hi;
  return (int64_t)d;
}

static bool dtype_is_int(ir_dtype_t t) {
  return t == IR_DTYPE_I32 || t == IR_DTYPE_I64 || t == IR_DTYPE_U8;
}

/* dst[0..n) = x[off + j*stride] as double (float dtypes, plus exact small ints). */
static void load_f(ir_dtype_t t, const void *p, int64_t off, int64_t stride, int64_t n,
                   double *dst) {
  switch (t) {
    case IR_DTYPE_F32: {
      const float *x = (const float *)p + off;
      for (int64_t j = 0; j < n; j++) dst[j] = x[j * stride];
      break;
    }
    case IR_DTYPE_F64: {
      const double *x = (const double *)p + off;
      for (int64_t j = 0; j < n; j++) dst[j] = x[j * stride];
      break;
    }
    case IR_DTYPE_BF16: {
      const uint16_t *x = (const uint16_t *)p + off;
      for (int64_t j = 0; j < n; j++) dst[j] = bf16_to_f64(x[j * stride]);
      break;
    }
    case IR_DTYPE_F16: {
      const uint16_t *x = (const uint16_t *)p + off;
      for (int64_t j = 0; j < n; j++) dst[j] = f16_to_f64(x[j * stride]);
      break;
    }
    case IR_DTYPE_I32: {
      const int32_t *x = (const int32_t *)p + off;
      for (int64_t j = 0; j < n; j++) dst[j] = x[j * stride];
      break;
    }
    case IR_DTYPE_I64: {
      const int64_t *x = (const int64_t *)p + off;
      for (int64_t j = 0; j < n; j++) dst[j] = (double)x[j * stride];
      break;
    }
    case IR_DTYPE_U8: {
      const uint8_t *x = (const uint8_t *)p + off;
      for (int64_t j = 0; j < n; j++) dst[j] = x[j * stride];
      break;
    }
    case IR_DTYPE_COUNT: break;
  }
}

static void load_i(ir_dtype_t t, const void *p, int64_t off, int64_t stride, int64_t n,
                   int64_t *dst) {
  switch (t) {
    case IR_DTYPE_I32: {
      const int32_t *x = (const int32_t *)p + off;
      for (int64_t j = 0; j < n; j++) dst[j] = x[j * stride];
      break;
    }
    case IR_DTYPE_I64: {
      const int64_t *x = (const int64_t *)p + off;
      for (int64_t j = 0; j < n; j++) dst[j] = x[j * stride];
      break;
    }
    case IR_DTYPE_U8: {
      const uint8_t *x = (const uint8_t *)p + off;
      for (int64_t j = 0; j < n; j++) dst[j] = x[j * stride];
      break;
    }
    default: break;
  }
}

/* out[off..off+n) = src rounded to nearest-even (floats) or saturated (ints). */
static void store_f(ir_dtype_t t, void *p, int64_t off, int64_t n, const double *src) {
  switch (t) {
    case IR_DTYPE_F32: {
      float *y = (float *)p + off;
      for (int64_t j = 0; j < n; j++) y[j] = (float)src[j];
      break;
    }
    case IR_DTYPE_F64: memcpy((double *)p + off, src, (size_t)n * sizeof(double)); break;
    case IR_DTYPE_BF16: {
      uint16_t *y = (uint16_t *)p + off;
      for (int64_t j = 0; j < n; j++) y[j] = f64_to_bf16(src[j]);
      break;
    }
    case IR_DTYPE_F16: {
      uint16_t *y = (uint16_t *)p + off;
      for (int64_t j = 0; j < n; j++) y[j] = f64_to_f16(src[j]);
      break;
    }
    case IR_DTYPE_I32: {
      int32_t *y = (int32_t *)p + off;
      for (int64_t j = 0; j < n; j++) y[j] = (int32_t)f64_to_int_sat(src[j], INT32_MIN, INT32_MAX);
      break;
    }
    case IR_DTYPE_I64: {
      int64_t *y = (int64_t *)p + off;
      for (int64_t j = 0; j < n; j++) y[j] = f64_to_int_sat(src[j], INT64_MIN, INT64_MAX);
      break;
    }
    case IR_DTYPE_U8: {
      uint8_t *y = (uint8_t *)p + off;
      for (int64_t j = 0; j < n; j++) y[j] = (uint8_t)f64_to_int_sat(src[j], 0, 255);
      break;
    }
    case IR_DTYPE_COUNT: break;
  }
}

/* Integers into any dtype: wrap-around between integer types (as torch), one rounding into
 * floats. */
static void store_i(ir_dtype_t t, void *p, int64_t off, int64_t n, const int64_t *src) {
  switch (t) {
    case IR_DTYPE_F32: {
      float *y = (float *)p + off;
      for (int64_t j = 0; j < n; j++) y[j] = (float)src[j];
      break;
    }
    case IR_DTYPE_F64: {
      double *y = (double *)p + off;
      for (int64_t j = 0; j < n; j++) y[j] = (double)src[j];
      break;
    }
    case IR_DTYPE_BF16: {
      uint16_t *y = (uint16_t *)p + off;
      for (int64_t j = 0; j < n; j++) y[j] = i64_to_narrow(src[j], 7, 8);
      break;
    }
    case IR_DTYPE_F16: {
      uint16_t *y = (uint16_t *)p + off;
      for (int64_t j = 0; j < n; j++) y[j] = i64_to_narrow(src[j], 10, 5);
      break;
    }
    case IR_DTYPE_I32: {
      int32_t *y = (int32_t *)p + off;
      for (int64_t j = 0; j < n; j++) y[j] = (int32_t)(uint32_t)(uint64_t)src[j];
      break;
    }
    case IR_DTYPE_I64: memcpy((int64_t *)p + off, src, (size_t)n * sizeof(int64_t)); break;
    case IR_DTYPE_U8: {
      uint8_t *y = (uint8_t *)p + off;
      for (int64_t j = 0; j < n; j++) y[j] = (uint8_t)(uint64_t)src[j];
      break;
    }
    case IR_DTYPE_COUNT: break;
  }
}

/* ---- scalar math (double) -------------------------------------------------------------- */

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Forward of a unary op at one element; formulas as torch writes them. */
static double unary_fwd(ir_op_t op, double x, double alpha, double beta) {
  switch (op) {
    case IR_OP_SCALE: return alpha * x + beta;
    case IR_OP_GELU_ERF: return x * 0.5 * (1.0 + erf(x * kSqrt1_2));
    case IR_OP_GELU_TANH: {
      double kbeta = kSqrt2 * k2_SqrtPi * 0.5; /* sqrt(2/pi) */
      return 0.5 * x * (1.0 + tanh(kbeta * (x + kGeluKappa * x * x * x)));
    }
    case IR_OP_GELU_SIGMOID: return sigmoid(kGeluSigmoidAlpha * x) * x;
    case IR_OP_RELU: return x > 0.0 ? x : (x != x ? x : 0.0);
    case IR_OP_SILU: return x / (1.0 + exp(-x));
    case IR_OP_TANH: return tanh(x);
    case IR_OP_SIGMOID: return sigmoid(x);
    case IR_OP_EXP: return exp(x);
    case IR_OP_LOG: return log(x);
    case IR_OP_SQRT: return sqrt(x);
    case IR_OP_RSQRT: return 1.0 / sqrt(x);
    case IR_OP_NEG: return -x;
    default: return NAN;
  }
}

/* dx of a unary op from x, y = f(x) and dy; torch's backward formulas. */
static double unary_bwd(ir_op_t op, double x, double y, double dy) {
  switch (op) {
    case IR_OP_GELU_ERF: {
      double cdf = 0.5 * (1.0 + erf(x * kSqrt1_2));
      double pdf = exp(-0.5 * x * x) * (k2_SqrtPi * kSqrt1_2 * 0.5);
      return dy * (cdf + x * pdf);
    }
    case IR_OP_GELU_TANH: {
      double kbeta = kSqrt2 * k2_SqrtPi * 0.5;
      double x_sq = x * x, x_cube = x_sq * x;
      double t = tanh(kbeta * (x + kGeluKappa * x_cube));
      double left = 0.5 * x, right = 1.0 + t;
      double left_d = 0.5 * right;
      double right_d = left * (1.0 - t * t);
      double inner_d = kbeta * (1.0 + 3.0 * kGeluKappa * x_sq);
      return dy * (left_d + right_d * inner_d);
    }
    case IR_OP_GELU_SIGMOID: {
      double s = sigmoid(kGeluSigmoidAlpha * x);
      return dy * (s + kGeluSigmoidAlpha * x * s * (1.0 - s));
    }
    case IR_OP_RELU: return y > 0.0 ? dy : 0.0;
    case IR_OP_SILU: {
      double s = sigmoid(x);
      return dy * s * (1.0 + x * (1.0 - s));
    }
    case IR_OP_TANH: return dy * (1.0 - y * y);
    case IR_OP_SIGMOID: return dy * (1.0 - y) * y;
    case IR_OP_EXP: return dy * y;
    case IR_OP_LOG: return dy / x;
    case IR_OP_SQRT: return dy / (2.0 * y);
    case IR_OP_RSQRT: return -0.5 * dy * (y * y * y);
    case IR_OP_NEG: return -dy;
    default: return NAN;
  }
}

static bool is_unary_math(ir_op_t op) {
  switch (op) {
    case IR_OP_GELU_ERF: case IR_OP_GELU_TANH: case IR_OP_GELU_SIGMOID: case IR_OP_RELU:
    case IR_OP_SILU: case IR_OP_TANH: case IR_OP_SIGMOID: case IR_OP_EXP: case IR_OP_LOG:
    case IR_OP_SQRT: case IR_OP_RSQRT: case IR_OP_NEG:
      return true;
    default: return false;
  }
}

/* ---- attributes ---------------------------------------------------------------------- */

static double attr_num(const ir_node_t *n, const char *key, double dflt) {
  const ir_attr_t *at = ir_node_attr(n, key);
  if (!at) return dflt;
  if (at->kind == IR_ATTR_FLOAT) return at->f;
  if (at->kind == IR_ATTR_INT) return (double)at->i;
  return dflt;
}

static ad_status_t check_num_attr(const ir_graph_t *g, const ir_node_t *n, const char *key) {
  const ir_attr_t *at = ir_node_attr(n, key);
  if (at && at->kind != IR_ATTR_FLOAT && at->kind != IR_ATTR_INT)
    return ir_node_error(g, n, "attribute '%s' must be a number", key);
  return AD_OK;
}

/* The forward op named by UNARY_BWD's fn attribute, or IR_OP_COUNT. */
static ir_op_t bwd_fn(const ir_node_t *n) {
  const char *fn = ir_node_attr_string(n, "fn", NULL);
  ir_op_t op;
  if (!fn || !ir_op_from_name(fn, &op) || !is_unary_math(op)) return IR_OP_COUNT;
  return op;
}

static bool cast_target(const ir_node_t *n, ir_dtype_t *out) {
  const char *s = ir_node_attr_string(n, "dtype", NULL);
  return s && ir_dtype_from_name(s, out);
}

/* ---- inference ------------------------------------------------------------------------ */

static ad_status_t need_float(const ir_graph_t *g, const ir_node_t *n, uint32_t i) {
  ir_dtype_t t = ir_in_type(g, n, i)->dtype;
  if (!ir_dtype_is_float(t))
    return ir_node_error(g, n, "input %u has dtype %s, a float dtype is required", i,
                         ir_dtype_name(t));
  return AD_OK;
}

static ad_status_t same_dtype(const ir_graph_t *g, const ir_node_t *n, uint32_t i, uint32_t j) {
  ir_dtype_t a = ir_in_type(g, n, i)->dtype, b = ir_in_type(g, n, j)->dtype;
  if (a != b)
    return ir_node_error(g, n, "inputs %u and %u differ in dtype (%s vs %s)", i, j,
                         ir_dtype_name(a), ir_dtype_name(b));
  return AD_OK;
}

static ad_status_t broadcast_or_error(const ir_graph_t *g, const ir_node_t *n,
                                      const ir_type_t *a, const ir_type_t *b, uint32_t ia,
                                      uint32_t ib, ir_type_t *out) {
  if (ir_broadcast_types(a, b, out)) return AD_OK;
  ad_buf_t sa = {0}, sb = {0};
  ir_print_type(g->module, a, &sa);
  ir_print_type(g->module, b, &sb);
  ad_buf_append(&sa, "", 1);
  ad_buf_append(&sb, "", 1);
  ad_status_t st = ir_node_error(g, n, "inputs %u (%s) and %u (%s) do not broadcast", ia,
                                 (const char *)sa.data, ib, (const char *)sb.data);
  ad_buf_free(&sa);
  ad_buf_free(&sb);
  return st;
}

static ad_status_t infer_binary(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(same_dtype(g, n, 0, 1));
  ir_dtype_t t = ir_in_type(g, n, 0)->dtype;
  bool int_ok = n->op != IR_OP_DIV && (t == IR_DTYPE_I32 || t == IR_DTYPE_I64);
  if (!int_ok) AD_RETURN_IF_ERROR(need_float(g, n, 0));
  AD_RETURN_IF_ERROR(
      broadcast_or_error(g, n, ir_in_type(g, n, 0), ir_in_type(g, n, 1), 0, 1, out));
  out->dtype = t;
  return AD_OK;
}

static ad_status_t infer_where(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(same_dtype(g, n, 1, 2));
  ir_type_t ab, cond = *ir_in_type(g, n, 0);
  AD_RETURN_IF_ERROR(
      broadcast_or_error(g, n, ir_in_type(g, n, 1), ir_in_type(g, n, 2), 1, 2, &ab));
  ab.dtype = ir_in_type(g, n, 1)->dtype;
  cond.dtype = ab.dtype;
  AD_RETURN_IF_ERROR(broadcast_or_error(g, n, &cond, &ab, 0, 1, out));
  out->dtype = ab.dtype;
  return AD_OK;
}

static ad_status_t infer_unary(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  ir_dtype_t t = ir_in_type(g, n, 0)->dtype;
  if (!(n->op == IR_OP_NEG && (t == IR_DTYPE_I32 || t == IR_DTYPE_I64)))
    AD_RETURN_IF_ERROR(need_float(g, n, 0));
  if (n->op == IR_OP_SCALE) {
    AD_RETURN_IF_ERROR(check_num_attr(g, n, "alpha"));
    AD_RETURN_IF_ERROR(check_num_attr(g, n, "beta"));
  }
  *out = *ir_in_type(g, n, 0);
  return AD_OK;
}

static ad_status_t infer_unary_bwd(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  if (bwd_fn(n) == IR_OP_COUNT) {
    const char *fn = ir_node_attr_string(n, "fn", NULL);
    return ir_node_error(g, n, "attribute fn '%s' is not a differentiable unary op",
                         fn ? fn : "(missing)");
  }
  AD_RETURN_IF_ERROR(need_float(g, n, 0));
  for (uint32_t i = 1; i < 3; i++)
    if (!ir_type_equal(ir_in_type(g, n, 0), ir_in_type(g, n, i)))
      return ir_node_error(g, n, "input %u must have the type of x (input 0)", i);
  *out = *ir_in_type(g, n, 0);
  return AD_OK;
}

static ad_status_t infer_cast(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  ir_dtype_t to;
  if (!cast_target(n, &to)) {
    const char *s = ir_node_attr_string(n, "dtype", NULL);
    return ir_node_error(g, n, "attribute dtype '%s' is not a dtype name", s ? s : "(missing)");
  }
  *out = *ir_in_type(g, n, 0);
  out->dtype = to;
  return AD_OK;
}

/* ---- kernels ---------------------------------------------------------------------------- */

typedef struct ew_ctx ew_ctx_t;
/* Computes output elements out0 .. out0+rowlen-1 (one row of the last output dim); input k
 * starts at element off[k] and steps by strides[k][rank-1]. */
typedef void (*ew_row_fn)(const ew_ctx_t *c, const int64_t *off, int64_t out0);

struct ew_ctx {
  const ir_kernel_args_t *a;
  ew_row_fn row;
  ir_op_t op; /* the function applied (UNARY_BWD: its fn) */
  double alpha, beta;
  uint32_t nin;
  int rank;                                /* >= 1 */
  int64_t dims[IR_MAX_RANK];               /* out dims */
  int64_t strides[EW_MAX_IN][IR_MAX_RANK]; /* input k over out (0 on broadcast dims) */
  int64_t rowlen;
};

static void ew_range(void *vc, int64_t r0, int64_t r1) {
  const ew_ctx_t *c = vc;
  for (int64_t r = r0; r < r1; r++) {
    int64_t off[EW_MAX_IN] = {0}, rem = r;
    for (int d = c->rank - 2; d >= 0; d--) {
      int64_t i = rem % c->dims[d];
      rem /= c->dims[d];
      for (uint32_t k = 0; k < c->nin; k++) off[k] += i * c->strides[k][d];
    }
    c->row(c, off, r * c->rowlen);
  }
}

/* Float ops: stage inputs in double, compute, round on store. */
static void ew_row_float(const ew_ctx_t *c, const int64_t *off, int64_t out0) {
  double buf[EW_MAX_IN][EW_CHUNK], res[EW_CHUNK];
  const ir_tensor_t *in = c->a->in;
  int last = c->rank - 1;
  for (int64_t j0 = 0; j0 < c->rowlen; j0 += EW_CHUNK) {
    int64_t n = c->rowlen - j0 < EW_CHUNK ? c->rowlen - j0 : EW_CHUNK;
    for (uint32_t k = 0; k < c->nin; k++) {
      int64_t ls = c->strides[k][last];
      load_f(in[k].dtype, in[k].data, off[k] + j0 * ls, ls, n, buf[k]);
    }
    const double *x = buf[0], *y = buf[1], *z = buf[2];
    switch (c->a->node->op) {
      case IR_OP_ADD: for (int64_t j = 0; j < n; j++) res[j] = x[j] + y[j]; break;
      case IR_OP_SUB: for (int64_t j = 0; j < n; j++) res[j] = x[j] - y[j]; break;
      case IR_OP_MUL: for (int64_t j = 0; j < n; j++) res[j] = x[j] * y[j]; break;
      case IR_OP_DIV: for (int64_t j = 0; j < n; j++) res[j] = x[j] / y[j]; break;
      case IR_OP_UNARY_BWD:
        for (int64_t j = 0; j < n; j++) res[j] = unary_bwd(c->op, x[j], y[j], z[j]);
        break;
      default:
        for (int64_t j = 0; j < n; j++) res[j] = unary_fwd(c->op, x[j], c->alpha, c->beta);
        break;
    }
    store_f(c->a->out[0].dtype, c->a->out[0].data, out0 + j0, n, res);
  }
}

/* Integer ADD/SUB/MUL/NEG wrap around like torch's (two's complement, via unsigned). */
static void ew_row_int(const ew_ctx_t *c, const int64_t *off, int64_t out0) {
  int64_t buf[2][EW_CHUNK], res[EW_CHUNK];
  const ir_tensor_t *in = c->a->in;
  int last = c->rank - 1;
  for (int64_t j0 = 0; j0 < c->rowlen; j0 += EW_CHUNK) {
    int64_t n = c->rowlen - j0 < EW_CHUNK ? c->rowlen - j0 : EW_CHUNK;
    for (uint32_t k = 0; k < c->nin; k++) {
      int64_t ls = c->strides[k][last];
      load_i(in[k].dtype, in[k].data, off[k] + j0 * ls, ls, n, buf[k]);
    }
    for (int64_t j = 0; j < n; j++) {
      uint64_t x = (uint64_t)buf[0][j], y = c->nin > 1 ? (uint64_t)buf[1][j] : 0;
      uint64_t r;
      switch (c->a->node->op) {
        case IR_OP_ADD: r = x + y; break;
        case IR_OP_SUB: r = x - y; break;
        case IR_OP_MUL: r = x * y; break;
        default: r = (uint64_t)0 - x; break; /* NEG */
      }
      res[j] = (int64_t)r;
    }
    store_i(c->a->out[0].dtype, c->a->out[0].data, out0 + j0, n, res);
  }
}

static bool nonzero_at(const ir_tensor_t *t, int64_t i) {
  switch (t->dtype) {
    case IR_DTYPE_F32: return ((const float *)t->data)[i] != 0.0f;
    case IR_DTYPE_F64: return ((const double *)t->data)[i] != 0.0;
    case IR_DTYPE_BF16: case IR_DTYPE_F16:
      return (((const uint16_t *)t->data)[i] & 0x7fff) != 0; /* +-0 is the only zero */
    case IR_DTYPE_I32: return ((const int32_t *)t->data)[i] != 0;
    case IR_DTYPE_I64: return ((const int64_t *)t->data)[i] != 0;
    case IR_DTYPE_U8: return ((const uint8_t *)t->data)[i] != 0;
    case IR_DTYPE_COUNT: break;
  }
  return false;
}

/* WHERE copies element bytes, so every dtype (i64 ids included) passes through exactly. */
static void ew_row_where(const ew_ctx_t *c, const int64_t *off, int64_t out0) {
  const ir_tensor_t *in = c->a->in;
  int last = c->rank - 1;
  size_t es = ir_dtype_size(c->a->out[0].dtype);
  const uint8_t *pa = in[1].data, *pb = in[2].data;
  uint8_t *po = c->a->out[0].data;
  for (int64_t j = 0; j < c->rowlen; j++) {
    bool t = nonzero_at(&in[0], off[0] + j * c->strides[0][last]);
    const uint8_t *src = t ? pa + (size_t)(off[1] + j * c->strides[1][last]) * es
                           : pb + (size_t)(off[2] + j * c->strides[2][last]) * es;
    memcpy(po + (size_t)(out0 + j) * es, src, es);
  }
}

/* CAST: same shape, so off[0] == out0 and the input stride is 1. */
static void ew_row_cast(const ew_ctx_t *c, const int64_t *off, int64_t out0) {
  const ir_tensor_t *x = &c->a->in[0];
  ir_tensor_t *y = &c->a->out[0];
  for (int64_t j0 = 0; j0 < c->rowlen; j0 += EW_CHUNK) {
    int64_t n = c->rowlen - j0 < EW_CHUNK ? c->rowlen - j0 : EW_CHUNK;
    if (dtype_is_int(x->dtype)) {
      int64_t buf[EW_CHUNK];
      load_i(x->dtype, x->data, off[0] + j0, 1, n, buf);
      store_i(y->dtype, y->data, out0 + j0, n, buf);
    } else {
      double buf[EW_CHUNK];
      load_f(x->dtype, x->data, off[0] + j0, 1, n, buf);
      store_f(y->dtype, y->data, out0 + j0, n, buf);
    }
  }
}

/* Lays the inputs over the output's shape and runs `row` over every output row in parallel.
 * Inputs of the output's exact shape collapse to one flat dimension. */
static ad_status_t ew_run(const ir_kernel_args_t *a, ew_row_fn row, ir_op_t fn) {
  ew_ctx_t c;
  memset(&c, 0, sizeof c);
  c.a = a;
  c.row = row;
  c.op = fn;
  c.alpha = attr_num(a->node, "alpha", 1.0);
  c.beta = attr_num(a->node, "beta", 0.0);
  c.nin = a->nin;
  if (c.nin > EW_MAX_IN)
    return ad_status_make(AD_STATUS_INTERNAL, "node '%s' (%s): bad elementwise arity",
                          a->node->name, ir_op_name(a->node->op));
  const ir_tensor_t *out = &a->out[0];
  int64_t numel = ir_tensor_numel(out);
  if (numel == 0) return AD_OK;
  bool flat = true;
  for (uint32_t k = 0; k < c.nin; k++) {
    if (ir_tensor_numel(&a->in[k]) != numel) flat = false;
  }
  if (flat || out->rank == 0) {
    /* Same element count as the output means same layout (broadcasting only adds 1s). */
    c.rank = 1;
    c.dims[0] = numel;
    for (uint32_t k = 0; k < c.nin; k++) c.strides[k][0] = 1;
  } else {
    c.rank = out->rank;
    memcpy(c.dims, out->dims, sizeof(int64_t) * (size_t)out->rank);
    for (uint32_t k = 0; k < c.nin; k++) ir_broadcast_strides(&a->in[k], out, c.strides[k]);
  }
  c.rowlen = c.dims[c.rank - 1];
  int64_t nrows = numel / c.rowlen;
  int64_t grain = c.rowlen >= 16384 ? 1 : 16384 / c.rowlen;
  ir_parallel_for(a->par, nrows, grain, ew_range, &c);
  return AD_OK;
}

static ad_status_t kernel_arith(const ir_kernel_args_t *a) {
  ir_dtype_t t = a->in[0].dtype;
  if (t == IR_DTYPE_I32 || t == IR_DTYPE_I64) return ew_run(a, ew_row_int, a->node->op);
  return ew_run(a, ew_row_float, a->node->op);
}

static ad_status_t kernel_unary_bwd(const ir_kernel_args_t *a) {
  ir_op_t fn = bwd_fn(a->node);
  if (fn == IR_OP_COUNT)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "node '%s' (unary_bwd): bad fn attribute",
                          a->node->name);
  return ew_run(a, ew_row_float, fn);
}

static ad_status_t kernel_where(const ir_kernel_args_t *a) {
  return ew_run(a, ew_row_where, IR_OP_WHERE);
}

static ad_status_t kernel_cast(const ir_kernel_args_t *a) {
  return ew_run(a, ew_row_cast, IR_OP_CAST);
}

/* ---- VJP rules --------------------------------------------------------------------------- */

/* g summed down to the shape of value `like` when broadcasting made it larger. */
static uint32_t sum_to(ir_graph_t *g, uint32_t grad, uint32_t like) {
  if (grad == IR_NONE) return IR_NONE;
  const ir_type_t *tg = ir_value_type(g, grad), *tl = ir_value_type(g, like);
  if (tg && tl && tg->rank == tl->rank) {
    bool same = true;
    for (int d = 0; d < tg->rank; d++) same = same && ir_dim_equal(tg->dims[d], tl->dims[d]);
    if (same) return grad;
  }
  return ir_emit2(g, IR_OP_SUM_TO, grad, like);
}

static uint32_t emit_const_splat(ir_graph_t *g, ir_dtype_t dtype, double v) {
  ir_type_t t;
  memset(&t, 0, sizeof t);
  t.dtype = dtype;
  t.rank = 0;
  ir_attr_t at = IR_ATTR_FLOATS("value", &v, 1);
  ir_node_desc_t d = {.op = IR_OP_CONST, .attrs = &at, .nattrs = 1, .out_types = &t,
                      .nout_types = 1};
  return ir_build(g, &d);
}

static ad_status_t vjp_binary(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  ir_graph_t *g = c->g;
  uint32_t a = c->node.inputs[0], b = c->node.inputs[1], y = c->node.output0;
  uint32_t da = IR_NONE, db = IR_NONE;
  switch (c->node.op) {
    case IR_OP_ADD: da = dy; db = dy; break;
    case IR_OP_SUB: da = dy; db = ir_emit1(g, IR_OP_NEG, dy); break;
    case IR_OP_MUL:
      da = ir_emit2(g, IR_OP_MUL, dy, b);
      db = ir_emit2(g, IR_OP_MUL, dy, a);
      break;
    case IR_OP_DIV:
      /* torch: grad / b and -grad * ((a / b) / b); y = a / b is already computed. */
      da = ir_emit2(g, IR_OP_DIV, dy, b);
      db = ir_emit1(g, IR_OP_NEG, ir_emit2(g, IR_OP_MUL, dy, ir_emit2(g, IR_OP_DIV, y, b)));
      break;
    default: return AD_OK;
  }
  c->in_grads[0] = sum_to(g, da, a);
  c->in_grads[1] = sum_to(g, db, b);
  return AD_OK;
}

static ad_status_t vjp_where(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  ir_graph_t *g = c->g;
  const ir_type_t *ty = ir_value_type(g, dy);
  uint32_t zero = emit_const_splat(g, ty ? ty->dtype : IR_DTYPE_F32, 0.0);
  uint32_t cond = c->node.inputs[0], a = c->node.inputs[1], b = c->node.inputs[2];
  uint32_t ga[3] = {cond, dy, zero}, gb[3] = {cond, zero, dy};
  c->in_grads[1] = sum_to(g, ir_emit(g, IR_OP_WHERE, ga, 3, NULL, 0), a);
  c->in_grads[2] = sum_to(g, ir_emit(g, IR_OP_WHERE, gb, 3, NULL, 0), b);
  return AD_OK;
}

static ad_status_t vjp_scale(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  ir_attr_t at = IR_ATTR_F("alpha", attr_num(&c->node, "alpha", 1.0));
  c->in_grads[0] = ir_emit(c->g, IR_OP_SCALE, &dy, 1, &at, 1);
  return AD_OK;
}

static ad_status_t vjp_neg(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  c->in_grads[0] = ir_emit1(c->g, IR_OP_NEG, dy);
  return AD_OK;
}

static ad_status_t vjp_unary(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  uint32_t ins[3] = {c->node.inputs[0], c->node.output0, dy};
  ir_attr_t at = IR_ATTR_S("fn", ir_op_name(c->node.op));
  c->in_grads[0] = ir_emit(c->g, IR_OP_UNARY_BWD, ins, 3, &at, 1);
  return AD_OK;
}

/* Float-to-float casts pass the gradient back cast to the source dtype; casts to or from
 * integers carry no gradient. */
static ad_status_t vjp_cast(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  const ir_type_t *tx = ir_value_type(c->g, c->node.inputs[0]);
  const ir_type_t *ty = ir_value_type(c->g, dy);
  if (!tx || !ty || !ir_dtype_is_float(tx->dtype) || !ir_dtype_is_float(ty->dtype))
    return AD_OK;
  if (tx->dtype == ty->dtype) {
    c->in_grads[0] = dy;
    return AD_OK;
  }
  ir_attr_t at = IR_ATTR_S("dtype", ir_dtype_name(tx->dtype));
  c->in_grads[0] = ir_emit(c->g, IR_OP_CAST, &dy, 1, &at, 1);
  return AD_OK;
}

/* ---- costs ------------------------------------------------------------------------------ */

/* Approximate flops per output element; transcendental functions count as a few. */
static uint64_t flops_per_elem(ir_op_t op) {
  switch (op) {
    case IR_OP_CAST: case IR_OP_WHERE: return 0;
    case IR_OP_SCALE: return 2;
    case IR_OP_EXP: case IR_OP_LOG: case IR_OP_SQRT: case IR_OP_RSQRT: return 2;
    case IR_OP_TANH: case IR_OP_SIGMOID: return 4;
    case IR_OP_SILU: return 5;
    case IR_OP_GELU_ERF: case IR_OP_GELU_TANH: case IR_OP_GELU_SIGMOID: return 8;
    case IR_OP_UNARY_BWD: return 10;
    default: return 1;
  }
}

static void cost_ew(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *in_dtypes,
                    const ir_shape_t *out, ir_cost_t *c) {
  int64_t numel = ir_shape_numel(&out[0]);
  ir_dtype_t od = in_dtypes[n->op == IR_OP_WHERE ? 1 : 0];
  if (n->op == IR_OP_CAST) cast_target(n, &od);
  uint64_t bytes = (uint64_t)numel * ir_dtype_size(od);
  for (uint32_t i = 0; i < n->ninputs; i++)
    bytes += (uint64_t)ir_shape_numel(&in[i]) * ir_dtype_size(in_dtypes[i]);
  c->flops = (uint64_t)numel * flops_per_elem(n->op);
  c->bytes = bytes;
}

/* ---- registration ----------------------------------------------------------------------- */

static void set(ir_op_info_t *t, ir_op_t op, int32_t nin_min, int32_t nin_max, uint32_t flags,
                ad_status_t (*infer)(const ir_graph_t *, const ir_node_t *, ir_type_t *),
                ad_status_t (*kernel)(const ir_kernel_args_t *),
                ad_status_t (*vjp)(ir_vjp_ctx_t *), uint32_t nondiff) {
  t[op].fusion = IR_FUSION_ELEMENTWISE;
  t[op].min_inputs = nin_min;
  t[op].max_inputs = nin_max;
  t[op].noutputs = 1;
  t[op].flags = flags;
  t[op].infer = infer;
  t[op].kernel = kernel;
  t[op].vjp = vjp;
  t[op].nondiff_inputs = nondiff;
  t[op].cost = cost_ew;
}

void ir_ops_register_elementwise(ir_op_info_t *table) {
  /* INPLACE: output 0 may reuse input 0's buffer when their types are equal (the planner
   * checks shapes); each element is read before it is written. */
  const uint32_t ip = IR_OP_FLAG_INPLACE;
  set(table, IR_OP_ADD, 2, 2, ip, infer_binary, kernel_arith, vjp_binary, 0);
  set(table, IR_OP_SUB, 2, 2, ip, infer_binary, kernel_arith, vjp_binary, 0);
  set(table, IR_OP_MUL, 2, 2, ip, infer_binary, kernel_arith, vjp_binary, 0);
  set(table, IR_OP_DIV, 2, 2, ip, infer_binary, kernel_arith, vjp_binary, 0);
  set(table, IR_OP_WHERE, 3, 3, 0, infer_where, kernel_where, vjp_where, 1u << 0);
  set(table, IR_OP_SCALE, 1, 1, ip, infer_unary, kernel_arith, vjp_scale, 0);
  set(table, IR_OP_NEG, 1, 1, ip, infer_unary, kernel_arith, vjp_neg, 0);
  static const ir_op_t kUnary[] = {IR_OP_GELU_ERF, IR_OP_GELU_TANH, IR_OP_GELU_SIGMOID,
                                   IR_OP_RELU,     IR_OP_SILU,      IR_OP_TANH,
                                   IR_OP_SIGMOID,  IR_OP_EXP,       IR_OP_LOG,
                                   IR_OP_SQRT,     IR_OP_RSQRT};
  for (size_t i = 0; i < sizeof kUnary / sizeof kUnary[0]; i++)
    set(table, kUnary[i], 1, 1, ip, infer_unary, kernel_arith, vjp_unary, 0);
  set(table, IR_OP_UNARY_BWD, 3, 3, ip, infer_unary_bwd, kernel_unary_bwd, NULL, 0x7);
  set(table, IR_OP_CAST, 1, 1, 0, infer_cast, kernel_cast, vjp_cast, 0);
}
