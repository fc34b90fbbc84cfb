/* Ops of the reduce group (see ir/ops.def for their semantics): REDUCE_SUM, REDUCE_MEAN,
 * REDUCE_MAX, REDUCE_MAX_BWD, and the broadcasting pair EXPAND / SUM_TO (each the other's VJP),
 * which share the reduction machinery here.
 *
 * Reference kernels run on f32 and f64 (EXPAND, a copy, on every dtype). Sums accumulate in
 * double for f32 and pairwise for f64, in an order fixed by the shape alone; parallel work is
 * split over output elements only, so results never depend on the thread count. */
#include <string.h>

#include "ir/ops/ops_internal.h"

#define RED_BLOCK 16 /* pairwise summation: leaf blocks of 16 summed left to right */

/* Streaming pairwise ("cascade") sum: leaf blocks of RED_BLOCK values are summed in order and
 * merged like a binary counter, so the error grows as O(log n) and the association depends
 * only on n. With pairwise == false it is a plain running sum in double. */
typedef struct red_acc {
  bool pairwise;
  int nblk, top;
  double blk;
  double s[64];
  int lvl[64];
} red_acc_t;

static void acc_init(red_acc_t *a, bool pairwise) {
  a->pairwise = pairwise;
  a->nblk = 0;
  a->top = 0;
  a->blk = 0.0;
}

static inline void acc_add(red_acc_t *a, double v) {
  a->blk += v;
  if (a->pairwise && ++a->nblk == RED_BLOCK) {
    double s = a->blk;
    int l = 0;
    while (a->top > 0 && a->lvl[a->top - 1] == l) {
      s = a->s[--a->top] + s;
      l++;
    }
    a->s[a->top] = s;
    a->lvl[a->top++] = l;
    a->blk = 0.0;
    a->nblk = 0;
  }
}

static double acc_result(const red_acc_t *a) {
  double r = a->blk;
  for (int i = a->top - 1; i >= 0; i--) r = a->s[i] + r;
  return r;
}

static inline double ld(const ir_tensor_t *t, int64_t i) {
  return t->dtype == IR_DTYPE_F32 ? (double)((const float *)t->data)[i]
                                  : ((const double *)t->data)[i];
}

static inline void st(ir_tensor_t *t, int64_t i, double v) {
  if (t->dtype == IR_DTYPE_F32) ((float *)t->data)[i] = (float)v;
  else ((double *)t->data)[i] = v;
}

/* ---- reduction plan: kept axes index the output compactly, reduced axes are iterated ---- */

typedef struct red_plan {
  int nk, nr;
  int64_t kdims[IR_MAX_RANK], kstr[IR_MAX_RANK]; /* kept axes: sizes, input strides */
  int64_t rdims[IR_MAX_RANK], rstr[IR_MAX_RANK]; /* reduced axes */
  int64_t nkept, nred;
} red_plan_t;

static void red_plan_init(red_plan_t *p, const int64_t *dims, int rank, uint32_t mask) {
  int64_t str[IR_MAX_RANK], s = 1;
  for (int d = rank - 1; d >= 0; d--) {
    str[d] = s;
    s *= dims[d];
  }
  p->nk = p->nr = 0;
  p->nkept = p->nred = 1;
  for (int d = 0; d < rank; d++) {
    if (mask >> d & 1) {
      p->rdims[p->nr] = dims[d];
      p->rstr[p->nr++] = str[d];
      p->nred *= dims[d];
    } else {
      p->kdims[p->nk] = dims[d];
      p->kstr[p->nk++] = str[d];
      p->nkept *= dims[d];
    }
  }
}

/* Input offset of the first element reduced into output element k. */
static int64_t red_base(const red_plan_t *p, int64_t k) {
  int64_t off = 0;
  for (int d = p->nk - 1; d >= 0; d--) {
    off += (k % p->kdims[d]) * p->kstr[d];
    k /= p->kdims[d];
  }
  return off;
}

/* Iterates the reduced set of output element `base` in row-major order: OFF is bound to each
 * input offset in turn. */
#define RED_FOREACH(p, base, OFF, BODY)                                          \
  do {                                                                           \
    int64_t in_n_ = (p)->nr ? (p)->rdims[(p)->nr - 1] : 1;                       \
    int64_t in_s_ = (p)->nr ? (p)->rstr[(p)->nr - 1] : 0;                        \
    int64_t nout_ = in_n_ ? (p)->nred / in_n_ : 0;                               \
    for (int64_t o_ = 0; o_ < nout_; o_++) {                                     \
      int64_t off_ = (base), rem_ = o_;                                          \
      for (int d_ = (p)->nr - 2; d_ >= 0; d_--) {                                \
        off_ += (rem_ % (p)->rdims[d_]) * (p)->rstr[d_];                         \
        rem_ /= (p)->rdims[d_];                                                  \
      }                                                                          \
      for (int64_t j_ = 0; j_ < in_n_; j_++) {                                   \
        int64_t OFF = off_ + j_ * in_s_;                                         \
        BODY;                                                                    \
      }                                                                          \
    }                                                                            \
  } while (0)

static double red_sum(const red_plan_t *p, const ir_tensor_t *x, int64_t base) {
  red_acc_t acc;
  acc_init(&acc, x->dtype == IR_DTYPE_F64);
  RED_FOREACH(p, base, off, acc_add(&acc, ld(x, off)));
  return acc_result(&acc);
}

/* amax: NaN anywhere gives NaN, as torch. */
static double red_max(const red_plan_t *p, const ir_tensor_t *x, int64_t base) {
  double m = -INFINITY;
  bool nan = false;
  RED_FOREACH(p, base, off, {
    double v = ld(x, off);
    if (v != v) nan = true;
    else if (v > m) m = v;
  });
  return nan ? NAN : m;
}

/* ---- attributes ------------------------------------------------------------------------- */

/* Reduced-axis bitmask from attrs axes (ints, or one int; negative counts from the end;
 * missing or empty means every axis, as torch's dim=None). NULL on success, else why not. */
static const char *axes_mask(const ir_node_t *n, int rank, uint32_t *mask) {
  const ir_attr_t *at = ir_node_attr(n, "axes");
  *mask = 0;
  if (!at || (at->kind == IR_ATTR_INTS && at->n == 0)) {
    *mask = rank ? (uint32_t)((1u << rank) - 1) : 0;
    return NULL;
  }
  uint32_t cnt = at->kind == IR_ATTR_INTS ? at->n : 1;
  if (at->kind != IR_ATTR_INTS && at->kind != IR_ATTR_INT) return "attribute axes must be ints";
  for (uint32_t i = 0; i < cnt; i++) {
    int64_t v = at->kind == IR_ATTR_INTS ? at->ints[i] : at->i;
    int ax = ir_norm_axis(v, rank);
    if (ax < 0) return "an axis is out of range";
    if (*mask >> ax & 1) return "an axis is repeated";
    *mask |= 1u << ax;
  }
  return NULL;
}

static bool attr_keepdim(const ir_node_t *n) { return ir_node_attr_int(n, "keepdim", 0) != 0; }

/* Reduced type of x: reduced axes become 1 (keepdim) or disappear. */
static ir_type_t reduced_type(const ir_type_t *x, uint32_t mask, bool keepdim) {
  ir_type_t t;
  memset(&t, 0, sizeof t);
  t.dtype = x->dtype;
  for (int d = 0; d < x->rank; d++) {
    if (!(mask >> d & 1)) t.dims[t.rank++] = x->dims[d];
    else if (keepdim) t.dims[t.rank++] = ir_dim_const(1);
  }
  return t;
}

static ad_status_t type_error(const ir_graph_t *g, const ir_node_t *n, const char *what,
                              const ir_type_t *a, const ir_type_t *b) {
  ad_buf_t sa = {0}, sb = {0};
  ir_print_type(g->module, a, &sa);
  ir_print_type(g->module, b, &sb);
  ad_buf_append(&sa, "", 1);
  ad_buf_append(&sb, "", 1);
  ad_status_t s = ir_node_error(g, n, "%s (%s vs %s)", what, (const char *)sa.data,
                                (const char *)sb.data);
  ad_buf_free(&sa);
  ad_buf_free(&sb);
  return s;
}

static ad_status_t need_f32_f64(const ir_graph_t *g, const ir_node_t *n, uint32_t i) {
  ir_dtype_t t = ir_in_type(g, n, i)->dtype;
  if (t != IR_DTYPE_F32 && t != IR_DTYPE_F64)
    return ir_node_error(g, n, "input %u has dtype %s; the reference kernel takes f32 or f64", i,
                         ir_dtype_name(t));
  return AD_OK;
}

/* ---- inference ------------------------------------------------------------------------- */

static ad_status_t infer_reduce(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(need_f32_f64(g, n, 0));
  const ir_type_t *x = ir_in_type(g, n, 0);
  uint32_t mask;
  const char *why = axes_mask(n, x->rank, &mask);
  if (why) return ir_node_error(g, n, "%s for an input of rank %d", why, x->rank);
  *out = reduced_type(x, mask, attr_keepdim(n));
  return AD_OK;
}

static ad_status_t infer_reduce_max_bwd(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(need_f32_f64(g, n, 0));
  const ir_type_t *x = ir_in_type(g, n, 0);
  uint32_t mask;
  const char *why = axes_mask(n, x->rank, &mask);
  if (why) return ir_node_error(g, n, "%s for an input of rank %d", why, x->rank);
  ir_type_t r = reduced_type(x, mask, attr_keepdim(n));
  for (uint32_t i = 1; i < 3; i++)
    if (!ir_type_equal(ir_in_type(g, n, i), &r))
      return type_error(g, n, i == 1 ? "y must have the reduced type of x"
                                     : "dy must have the reduced type of x",
                        ir_in_type(g, n, i), &r);
  *out = *x;
  return AD_OK;
}

/* `small` broadcasts to `big` (right-aligned; each dim equal or the constant 1). */
static bool broadcasts_to(const ir_type_t *small, const ir_type_t *big) {
  if (small->rank > big->rank) return false;
  int lead = big->rank - small->rank;
  for (int d = 0; d < small->rank; d++) {
    int64_t v;
    if (ir_dim_equal(small->dims[d], big->dims[d + lead])) continue;
    if (ir_dim_is_const(small->dims[d], &v) && v == 1) continue;
    return false;
  }
  return true;
}

static ad_status_t infer_expand(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *x = ir_in_type(g, n, 0), *like = ir_in_type(g, n, 1);
  if (!broadcasts_to(x, like)) return type_error(g, n, "x does not broadcast to like", x, like);
  *out = *like;
  out->dtype = x->dtype;
  return AD_OK;
}

static ad_status_t infer_sum_to(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(need_f32_f64(g, n, 0));
  const ir_type_t *x = ir_in_type(g, n, 0), *like = ir_in_type(g, n, 1);
  if (!broadcasts_to(like, x))
    return type_error(g, n, "like does not broadcast to x, so x cannot be summed to it", like, x);
  *out = *like;
  out->dtype = x->dtype;
  return AD_OK;
}

/* ---- kernels --------------------------------------------------------------------------- */

typedef struct red_ctx {
  const ir_kernel_args_t *a;
  red_plan_t p;
  ir_op_t op;
} red_ctx_t;

static void reduce_range(void *vc, int64_t k0, int64_t k1) {
  const red_ctx_t *c = vc;
  const ir_tensor_t *x = &c->a->in[0];
  ir_tensor_t *y = &c->a->out[0];
  for (int64_t k = k0; k < k1; k++) {
    int64_t base = red_base(&c->p, k);
    double v;
    if (c->op == IR_OP_REDUCE_MAX) v = red_max(&c->p, x, base);
    else if (c->op == IR_OP_REDUCE_MEAN) v = red_sum(&c->p, x, base) / (double)c->p.nred;
    else v = red_sum(&c->p, x, base); /* REDUCE_SUM, SUM_TO */
    st(y, k, v);
  }
}

static int64_t red_grain(const red_plan_t *p) {
  return p->nred >= 16384 ? 1 : 16384 / (p->nred ? p->nred : 1);
}

static ad_status_t kernel_reduce(const ir_kernel_args_t *a) {
  red_ctx_t c = {.a = a, .op = a->node->op};
  uint32_t mask;
  const char *why = axes_mask(a->node, a->in[0].rank, &mask);
  if (why)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "node '%s' (%s): %s", a->node->name,
                          ir_op_name(a->node->op), why);
  red_plan_init(&c.p, a->in[0].dims, a->in[0].rank, mask);
  ir_parallel_for(a->par, c.p.nkept, red_grain(&c.p), reduce_range, &c);
  return AD_OK;
}

/* dx = (dy / count) * (x == y) per reduced group, count = how many tie for the max. */
static void max_bwd_range(void *vc, int64_t k0, int64_t k1) {
  const red_ctx_t *c = vc;
  const ir_tensor_t *x = &c->a->in[0], *y = &c->a->in[1], *dy = &c->a->in[2];
  ir_tensor_t *dx = &c->a->out[0];
  for (int64_t k = k0; k < k1; k++) {
    int64_t base = red_base(&c->p, k);
    double yk = ld(y, k), count = 0.0;
    RED_FOREACH(&c->p, base, off, count += ld(x, off) == yk ? 1.0 : 0.0);
    double gk = ld(dy, k) / count;
    if (x->dtype == IR_DTYPE_F32) gk = (float)gk; /* torch divides in the tensor's dtype */
    RED_FOREACH(&c->p, base, off, st(dx, off, gk * (ld(x, off) == yk ? 1.0 : 0.0)));
  }
}

static ad_status_t kernel_reduce_max_bwd(const ir_kernel_args_t *a) {
  red_ctx_t c = {.a = a, .op = a->node->op};
  uint32_t mask;
  const char *why = axes_mask(a->node, a->in[0].rank, &mask);
  if (why)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "node '%s' (%s): %s", a->node->name,
                          ir_op_name(a->node->op), why);
  red_plan_init(&c.p, a->in[0].dims, a->in[0].rank, mask);
  ir_parallel_for(a->par, c.p.nkept, red_grain(&c.p), max_bwd_range, &c);
  return AD_OK;
}

/* SUM_TO reduces the leading axes x has beyond like's rank and the axes where like is 1. */
static ad_status_t kernel_sum_to(const ir_kernel_args_t *a) {
  const ir_tensor_t *x = &a->in[0], *y = &a->out[0];
  red_ctx_t c = {.a = a, .op = IR_OP_SUM_TO};
  uint32_t mask = 0;
  int lead = x->rank - y->rank;
  if (lead < 0)
    return ad_status_make(AD_STATUS_INTERNAL, "node '%s' (sum_to): output rank exceeds input",
                          a->node->name);
  for (int d = 0; d < x->rank; d++) {
    if (d < lead) {
      mask |= 1u << d;
    } else if (y->dims[d - lead] != x->dims[d]) {
      if (y->dims[d - lead] != 1)
        return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                              "node '%s' (sum_to): dim %d is %lld in x but %lld in like",
                              a->node->name, d, (long long)x->dims[d],
                              (long long)y->dims[d - lead]);
      mask |= 1u << d;
    }
  }
  red_plan_init(&c.p, x->dims, x->rank, mask);
  ir_parallel_for(a->par, c.p.nkept, red_grain(&c.p), reduce_range, &c);
  return AD_OK;
}

typedef struct expand_ctx {
  const ir_kernel_args_t *a;
  int64_t str[IR_MAX_RANK]; /* x's element strides over the output (0: broadcast) */
  int64_t rowlen;
  size_t es;
} expand_ctx_t;

static void expand_range(void *vc, int64_t r0, int64_t r1) {
  const expand_ctx_t *c = vc;
  const ir_tensor_t *y = &c->a->out[0];
  const uint8_t *px = c->a->in[0].data;
  uint8_t *py = y->data;
  int last = y->rank - 1;
  for (int64_t r = r0; r < r1; r++) {
    int64_t off = 0, rem = r;
    for (int d = last - 1; d >= 0; d--) {
      off += (rem % y->dims[d]) * c->str[d];
      rem /= y->dims[d];
    }
    for (int64_t j = 0; j < c->rowlen; j++)
      memcpy(py + (size_t)(r * c->rowlen + j) * c->es,
             px + (size_t)(off + j * c->str[last]) * c->es, c->es);
  }
}

static ad_status_t kernel_expand(const ir_kernel_args_t *a) {
  const ir_tensor_t *y = &a->out[0];
  int64_t numel = ir_tensor_numel(y);
  if (numel == 0) return AD_OK;
  expand_ctx_t c = {.a = a, .es = ir_dtype_size(y->dtype)};
  if (y->rank == 0) {
    memcpy(y->data, a->in[0].data, c.es);
    return AD_OK;
  }
  ir_broadcast_strides(&a->in[0], y, c.str);
  c.rowlen = y->dims[y->rank - 1];
  int64_t grain = c.rowlen >= 16384 ? 1 : 16384 / c.rowlen;
  ir_parallel_for(a->par, numel / c.rowlen, grain, expand_range, &c);
  return AD_OK;
}

/* ---- VJP rules ------------------------------------------------------------------------- */

static uint32_t emit_const_splat(ir_graph_t *g, ir_dtype_t dtype, double v) {
  ir_type_t t;
  memset(&t, 0, sizeof t);
  t.dtype = dtype;
  ir_attr_t at = IR_ATTR_FLOATS("value", &v, 1);
  ir_node_desc_t d = {.op = IR_OP_CONST, .attrs = &at, .nattrs = 1, .out_types = &t,
                      .nout_types = 1};
  return ir_build(g, &d);
}

static bool same_shape(const ir_type_t *a, const ir_type_t *b) {
  if (a->rank != b->rank) return false;
  for (int d = 0; d < a->rank; d++)
    if (!ir_dim_equal(a->dims[d], b->dims[d])) return false;
  return true;
}

/* dy of a reduction in keepdim form (reduced axes as 1), ready to broadcast against x. */
static uint32_t keepdim_grad(ir_graph_t *g, uint32_t dy, uint32_t x, uint32_t mask) {
  const ir_type_t *tx = ir_value_type(g, x), *tdy = ir_value_type(g, dy);
  if (!tx || !tdy) return IR_NONE;
  ir_type_t t = reduced_type(tx, mask, true);
  t.dtype = tdy->dtype;
  if (same_shape(&t, tdy)) return dy;
  return ir_emit_reshape(g, dy, &t);
}

static ad_status_t vjp_reduce(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  ir_graph_t *g = c->g;
  uint32_t x = c->node.inputs[0];
  if (!ir_value_type(g, x)) return AD_OK;
  const ir_type_t tx = *ir_value_type(g, x); /* a copy: emitting may move g->values */
  uint32_t mask;
  if (axes_mask(&c->node, tx.rank, &mask)) return AD_OK; /* inference rejected it */
  int rank = tx.rank;
  if (c->node.op == IR_OP_REDUCE_MAX) {
    uint32_t ins[3] = {x, c->node.output0, dy};
    c->in_grads[0] = ir_emit(g, IR_OP_REDUCE_MAX_BWD, ins, 3, c->node.attrs, c->node.nattrs);
    return AD_OK;
  }
  ir_dtype_t dt = tx.dtype;
  uint32_t gk = keepdim_grad(g, dy, x, mask);
  if (c->node.op == IR_OP_REDUCE_MEAN) {
    /* The count is the actual one: a constant when every reduced dim is static, else counted
     * at run time by summing ones over the same axes. */
    int64_t count = 1;
    bool fixed = true;
    for (int d = 0; d < rank; d++) {
      int64_t v;
      if (!(mask >> d & 1)) continue;
      if (ir_dim_is_const(tx.dims[d], &v)) count *= v;
      else fixed = false;
    }
    uint32_t cnt;
    if (fixed) {
      cnt = emit_const_splat(g, dt, (double)count);
    } else {
      int64_t axes[IR_MAX_RANK];
      int na = 0;
      for (int d = 0; d < rank; d++)
        if (mask >> d & 1) axes[na++] = d;
      ir_attr_t at[2] = {IR_ATTR_INTS("axes", axes, na), IR_ATTR_I("keepdim", 1)};
      uint32_t ones = ir_emit2(g, IR_OP_EXPAND, emit_const_splat(g, dt, 1.0), x);
      cnt = ir_emit(g, IR_OP_REDUCE_SUM, &ones, 1, at, 2);
    }
    gk = ir_emit2(g, IR_OP_DIV, gk, cnt);
  }
  c->in_grads[0] = ir_emit2(g, IR_OP_EXPAND, gk, x);
  return AD_OK;
}

static ad_status_t vjp_expand(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  uint32_t x = c->node.inputs[0];
  const ir_type_t *tx = ir_value_type(c->g, x), *ty = ir_value_type(c->g, dy);
  if (tx && ty && same_shape(tx, ty)) c->in_grads[0] = dy;
  else c->in_grads[0] = ir_emit2(c->g, IR_OP_SUM_TO, dy, x);
  return AD_OK;
}

static ad_status_t vjp_sum_to(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  uint32_t x = c->node.inputs[0];
  const ir_type_t *tx = ir_value_type(c->g, x), *ty = ir_value_type(c->g, dy);
  if (tx && ty && same_shape(tx, ty)) c->in_grads[0] = dy;
  else c->in_grads[0] = ir_emit2(c->g, IR_OP_EXPAND, dy, x);
  return AD_OK;
}

/* ---- costs ------------------------------------------------------------------------------ */

static void cost_reduce(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *in_dtypes,
                        const ir_shape_t *out, ir_cost_t *c) {
  uint64_t nin = (uint64_t)ir_shape_numel(&in[0]), nout = (uint64_t)ir_shape_numel(&out[0]);
  size_t es = ir_dtype_size(in_dtypes[0]);
  switch (n->op) {
    case IR_OP_EXPAND: /* like is read for its shape only */
      c->flops = 0;
      c->bytes = (nin + nout) * es;
      break;
    case IR_OP_SUM_TO:
      c->flops = nin;
      c->bytes = (nin + nout) * es;
      break;
    case IR_OP_REDUCE_MAX_BWD: /* reads x twice, y and dy once, writes dx */
      c->flops = 3 * nin;
      c->bytes = (3 * nin + 2 * (uint64_t)ir_shape_numel(&in[1])) * es;
      break;
    default:
      c->flops = nin;
      c->bytes = (nin + nout) * es;
      break;
  }
}

/* ---- registration ---------------------------------------------------------------------- */

static void set(ir_op_info_t *t, ir_op_t op, ir_fusion_class_t fusion, int32_t nin,
                ad_status_t (*infer)(const ir_graph_t *, const ir_node_t *, ir_type_t *),
                ad_status_t (*kernel)(const ir_kernel_args_t *),
                ad_status_t (*vjp)(ir_vjp_ctx_t *), uint32_t nondiff) {
  t[op].fusion = fusion;
  t[op].min_inputs = nin;
  t[op].max_inputs = nin;
  t[op].noutputs = 1;
  t[op].flags = 0;
  t[op].infer = infer;
  t[op].kernel = kernel;
  t[op].vjp = vjp;
  t[op].nondiff_inputs = nondiff;
  t[op].cost = cost_reduce;
}

void ir_ops_register_reduce(ir_op_info_t *table) {
  const ir_fusion_class_t r = IR_FUSION_REDUCTION;
  set(table, IR_OP_REDUCE_SUM, r, 1, infer_reduce, kernel_reduce, vjp_reduce, 0);
  set(table, IR_OP_REDUCE_MEAN, r, 1, infer_reduce, kernel_reduce, vjp_reduce, 0);
  set(table, IR_OP_REDUCE_MAX, r, 1, infer_reduce, kernel_reduce, vjp_reduce, 0);
  set(table, IR_OP_REDUCE_MAX_BWD, r, 3, infer_reduce_max_bwd, kernel_reduce_max_bwd, NULL, 0x7);
  set(table, IR_OP_EXPAND, IR_FUSION_ELEMENTWISE, 2, infer_expand, kernel_expand, vjp_expand,
      1u << 1);
  set(table, IR_OP_SUM_TO, r, 2, infer_sum_to, kernel_sum_to, vjp_sum_to, 1u << 1);
}
