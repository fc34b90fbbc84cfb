/* Ops of the matmul group (see ir/ops.def for their semantics): MATMUL with transposes and
 * broadcast batch dims, and LINEAR (x w^T + b, torch.nn.functional.linear).
 *
 * Reference kernels on f32 and f64: every output element is one dot product, accumulated in
 * double for f32 and pairwise for f64, so its value depends on the shapes alone; parallel work
 * is split over output rows. */
#include <stdlib.h>
#include <string.h>

#include "ir/ops/ops_internal.h"

#define DOT_BLOCK 16 /* pairwise dot products: leaves of at most 16 products, left to right */

static double dot_seq(const double *a, const double *b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

static double dot_pairwise(const double *a, const double *b, int64_t n) {
  if (n <= DOT_BLOCK) return dot_seq(a, b, n);
  int64_t h = n / 2;
  return dot_pairwise(a, b, h) + dot_pairwise(a + h, b + h, n - h);
}

/* f32 operands: products are exact in double and summed there, in order. */
static double dot_f32(const float *a, const float *b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
  return s;
}

/* ---- inference ------------------------------------------------------------------------- */

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

static ad_status_t check_dtypes(const ir_graph_t *g, const ir_node_t *n) {
  ir_dtype_t t = ir_in_type(g, n, 0)->dtype;
  if (t != IR_DTYPE_F32 && t != IR_DTYPE_F64)
    return ir_node_error(g, n, "dtype %s: the reference kernel takes f32 or f64",
                         ir_dtype_name(t));
  for (uint32_t i = 1; i < n->ninputs; i++)
    if (ir_in_type(g, n, i)->dtype != t)
      return ir_node_error(g, n, "input %u has dtype %s, input 0 has %s", i,
                           ir_dtype_name(ir_in_type(g, n, i)->dtype), ir_dtype_name(t));
  return AD_OK;
}

static bool trans_a(const ir_node_t *n) { return ir_node_attr_int(n, "trans_a", 0) != 0; }
static bool trans_b(const ir_node_t *n) { return ir_node_attr_int(n, "trans_b", 0) != 0; }

static ir_type_t batch_type(const ir_type_t *t) {
  ir_type_t b;
  memset(&b, 0, sizeof b);
  b.dtype = t->dtype;
  b.rank = t->rank - 2;
  for (int d = 0; d < b.rank; d++) b.dims[d] = t->dims[d];
  return b;
}

static ad_status_t infer_matmul(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_dtypes(g, n));
  const ir_type_t *a = ir_in_type(g, n, 0), *b = ir_in_type(g, n, 1);
  if (a->rank < 2 || b->rank < 2)
    return ir_node_error(g, n, "operands must have rank >= 2 (got %d and %d)", a->rank, b->rank);
  bool ta = trans_a(n), tb = trans_b(n);
  ir_dim_t m = a->dims[a->rank - (ta ? 1 : 2)], ka = a->dims[a->rank - (ta ? 2 : 1)];
  ir_dim_t kb = b->dims[b->rank - (tb ? 1 : 2)], nn = b->dims[b->rank - (tb ? 2 : 1)];
  if (!ir_dim_equal(ka, kb)) return type_error(g, n, "contraction dims differ", a, b);
  ir_type_t ba = batch_type(a), bb = batch_type(b), bo;
  if (!ir_broadcast_types(&ba, &bb, &bo))
    return type_error(g, n, "batch dims do not broadcast", a, b);
  if (bo.rank + 2 > IR_MAX_RANK) return ir_node_error(g, n, "output rank exceeds the maximum");
  *out = bo;
  out->dtype = a->dtype;
  out->rank = bo.rank + 2;
  out->dims[bo.rank] = m;
  out->dims[bo.rank + 1] = nn;
  return AD_OK;
}

static ad_status_t infer_linear(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  AD_RETURN_IF_ERROR(check_dtypes(g, n));
  const ir_type_t *x = ir_in_type(g, n, 0), *w = ir_in_type(g, n, 1);
  if (x->rank < 1 || w->rank != 2)
    return ir_node_error(g, n, "x must have rank >= 1 and w rank 2 (got %d and %d)", x->rank,
                         w->rank);
  if (!ir_dim_equal(x->dims[x->rank - 1], w->dims[1]))
    return type_error(g, n, "x's last dim differs from w's in_features", x, w);
  if (n->ninputs > 2) {
    const ir_type_t *b = ir_in_type(g, n, 2);
    if (b->rank != 1 || !ir_dim_equal(b->dims[0], w->dims[0]))
      return type_error(g, n, "b must be [out_features] of w", b, w);
  }
  *out = *x;
  out->dims[x->rank - 1] = w->dims[0];
  return AD_OK;
}

/* ---- kernels --------------------------------------------------------------------------- */

typedef struct mm_ctx {
  const ir_kernel_args_t *a;
  const double *ap;  /* a packed: [nba, M, K] */
  const double *bp;  /* b packed transposed: [nbb, N, K] */
  int64_t M, N, K;
  int nbd;                               /* output batch rank */
  int64_t bdims[IR_MAX_RANK];            /* output batch dims */
  int64_t astr[IR_MAX_RANK], bstr[IR_MAX_RANK]; /* batch strides in matrices (0: broadcast) */
} mm_ctx_t;

static void mm_range(void *vc, int64_t r0, int64_t r1) {
  const mm_ctx_t *c = vc;
  ir_tensor_t *y = &c->a->out[0];
  bool f32 = y->dtype == IR_DTYPE_F32;
  for (int64_t r = r0; r < r1; r++) {
    int64_t ib = r / c->M, m = r % c->M, ia = 0, ibb = 0, rem = ib;
    for (int d = c->nbd - 1; d >= 0; d--) {
      int64_t i = rem % c->bdims[d];
      rem /= c->bdims[d];
      ia += i * c->astr[d];
      ibb += i * c->bstr[d];
    }
    const double *arow = c->ap + (ia * c->M + m) * c->K; /* [K] */
    const double *bmat = c->bp + ibb * c->N * c->K;      /* [N, K] */
    for (int64_t n = 0; n < c->N; n++) {
      const double *bcol = bmat + n * c->K;
      if (f32) ((float *)y->data)[r * c->N + n] = (float)dot_seq(arow, bcol, c->K);
      else ((double *)y->data)[r * c->N + n] = dot_pairwise(arow, bcol, c->K);
    }
  }
}

static inline double ld(const ir_tensor_t *t, int64_t i) {
  return t->dtype == IR_DTYPE_F32 ? (double)((const float *)t->data)[i]
                                  : ((const double *)t->data)[i];
}

/* Copies nmat matrices of t (each [R, C] row-major) into dst as [C, R] when transpose, else
 * as [R, C], converting to double. */
static void pack(const ir_tensor_t *t, int64_t nmat, int64_t rows, int64_t cols, bool transpose,
                 double *dst) {
  for (int64_t b = 0; b < nmat; b++) {
    int64_t base = b * rows * cols;
    double *d = dst + base;
    for (int64_t i = 0; i < rows; i++)
      for (int64_t j = 0; j < cols; j++) {
        double v = ld(t, base + i * cols + j);
        if (transpose) d[j * rows + i] = v;
        else d[i * cols + j] = v;
      }
  }
}

/* Strides (in matrices) of a batch shape laid right-aligned over the output batch shape. */
static void batch_strides(const ir_tensor_t *t, int nbd, const int64_t *bdims, int64_t *str) {
  int tb = t->rank - 2, lead = nbd - tb;
  int64_t s = 1;
  for (int d = nbd - 1; d >= 0; d--) {
    if (d < lead) {
      str[d] = 0;
      continue;
    }
    int64_t dim = t->dims[d - lead];
    str[d] = (dim == 1 && bdims[d] != 1) ? 0 : s;
    s *= dim;
  }
}

static ad_status_t kernel_matmul(const ir_kernel_args_t *a) {
  const ir_tensor_t *ta = &a->in[0], *tb = &a->in[1];
  ir_tensor_t *y = &a->out[0];
  bool tra = trans_a(a->node), trb = trans_b(a->node);
  mm_ctx_t c;
  memset(&c, 0, sizeof c);
  c.a = a;
  int64_t ar = ta->dims[ta->rank - 2], ac = ta->dims[ta->rank - 1];
  int64_t br = tb->dims[tb->rank - 2], bc = tb->dims[tb->rank - 1];
  c.M = tra ? ac : ar;
  c.K = tra ? ar : ac;
  c.N = trb ? br : bc;
  if ((trb ? bc : br) != c.K || y->rank < 2 || y->dims[y->rank - 2] != c.M ||
      y->dims[y->rank - 1] != c.N)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "node '%s' (matmul): actual shapes disagree",
                          a->node->name);
  c.nbd = y->rank - 2;
  for (int d = 0; d < c.nbd; d++) c.bdims[d] = y->dims[d];
  batch_strides(ta, c.nbd, c.bdims, c.astr);
  batch_strides(tb, c.nbd, c.bdims, c.bstr);
  int64_t nba = ir_tensor_numel(ta) / (ar * ac > 0 ? ar * ac : 1);
  int64_t nbb = ir_tensor_numel(tb) / (br * bc > 0 ? br * bc : 1);
  int64_t nrows = ir_tensor_numel(y) / (c.N > 0 ? c.N : 1);
  if (ir_tensor_numel(y) == 0) return AD_OK;
  /* Packing puts both operands of every dot product in contiguous double rows:
   * a as [nba, M, K] and b as [nbb, N, K]. */
  size_t na = (size_t)(nba * c.M * c.K), nb = (size_t)(nbb * c.N * c.K);
  double *buf = malloc((na + nb) * sizeof(double) + 1);
  if (!buf)
    return ad_status_make(AD_STATUS_RESOURCE, "node '%s' (matmul): out of memory packing %zu values",
                          a->node->name, na + nb);
  pack(ta, nba, ar, ac, tra, buf);
  pack(tb, nbb, br, bc, !trb, buf + na);
  c.ap = buf;
  c.bp = buf + na;
  int64_t work = c.N * c.K;
  ir_parallel_for(a->par, nrows, work >= 65536 ? 1 : 65536 / (work ? work : 1), mm_range, &c);
  free(buf);
  return AD_OK;
}

typedef struct lin_ctx {
  const ir_kernel_args_t *a;
  int64_t I, O;
} lin_ctx_t;

static void linear_range(void *vc, int64_t r0, int64_t r1) {
  const lin_ctx_t *c = vc;
  const ir_tensor_t *x = &c->a->in[0], *w = &c->a->in[1];
  const ir_tensor_t *b = c->a->nin > 2 ? &c->a->in[2] : NULL;
  ir_tensor_t *y = &c->a->out[0];
  for (int64_t r = r0; r < r1; r++) {
    for (int64_t o = 0; o < c->O; o++) {
      double s;
      if (x->dtype == IR_DTYPE_F32) {
        s = dot_f32((const float *)x->data + r * c->I, (const float *)w->data + o * c->I, c->I);
        if (b) s += ((const float *)b->data)[o];
        ((float *)y->data)[r * c->O + o] = (float)s;
      } else {
        s = dot_pairwise((const double *)x->data + r * c->I, (const double *)w->data + o * c->I,
                         c->I);
        if (b) s += ((const double *)b->data)[o];
        ((double *)y->data)[r * c->O + o] = s;
      }
    }
  }
}

static ad_status_t kernel_linear(const ir_kernel_args_t *a) {
  const ir_tensor_t *x = &a->in[0], *w = &a->in[1];
  lin_ctx_t c = {.a = a, .I = w->dims[1], .O = w->dims[0]};
  if (x->dims[x->rank - 1] != c.I)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "node '%s' (linear): actual shapes disagree",
                          a->node->name);
  int64_t rows = c.I ? ir_tensor_numel(x) / c.I : 0;
  int64_t work = c.I * c.O;
  ir_parallel_for(a->par, rows, work >= 65536 ? 1 : 65536 / (work ? work : 1), linear_range, &c);
  return AD_OK;
}

/* ---- VJP rules ------------------------------------------------------------------------- */

static uint32_t emit_mm(ir_graph_t *g, uint32_t a, uint32_t b, bool ta, bool tb) {
  ir_attr_t at[2];
  uint32_t na = 0;
  if (ta) at[na++] = IR_ATTR_I("trans_a", 1);
  if (tb) at[na++] = IR_ATTR_I("trans_b", 1);
  uint32_t ins[2] = {a, b};
  return ir_emit(g, IR_OP_MATMUL, ins, 2, at, na);
}

static bool same_shape(const ir_type_t *a, const ir_type_t *b) {
  if (a->rank != b->rank) return false;
  for (int d = 0; d < a->rank; d++)
    if (!ir_dim_equal(a->dims[d], b->dims[d])) return false;
  return true;
}

static uint32_t sum_to(ir_graph_t *g, uint32_t grad, uint32_t like) {
  const ir_type_t *tg = ir_value_type(g, grad), *tl = ir_value_type(g, like);
  if (!tg || !tl || same_shape(tg, tl)) return grad;
  return ir_emit2(g, IR_OP_SUM_TO, grad, like);
}

/* v reshaped to [prod(dims[0..rank-1)), dims[rank-1]]; IR_NONE when the product is not an
 * affine dim (then callers fall back to a batched form). */
static uint32_t flatten2(ir_graph_t *g, uint32_t v) {
  const ir_type_t *t = ir_value_type(g, v);
  if (!t || t->rank < 1) return IR_NONE;
  if (t->rank == 2) return v;
  ir_dim_t rows = ir_dim_const(1);
  for (int d = 0; d < t->rank - 1; d++)
    if (!ir_dim_mul(rows, t->dims[d], &rows)) return IR_NONE;
  ir_type_t f;
  memset(&f, 0, sizeof f);
  f.dtype = t->dtype;
  f.rank = 2;
  f.dims[0] = rows;
  f.dims[1] = t->dims[t->rank - 1];
  return ir_emit_reshape(g, v, &f);
}

static ad_status_t vjp_matmul(ir_vjp_ctx_t *c) {
  uint32_t dc = c->out_grads[0];
  if (dc == IR_NONE) return AD_OK;
  ir_graph_t *g = c->g;
  uint32_t a = c->node.inputs[0], b = c->node.inputs[1];
  bool ta = trans_a(&c->node), tb = trans_b(&c->node);
  const ir_type_t *tya = ir_value_type(g, a), *tyb = ir_value_type(g, b);
  if (!tya || !tyb) return AD_OK;
  int ra = tya->rank, rb = tyb->rank;
  /* C = op(A) op(B) gives dop(A) = dC op(B)^T and dop(B) = op(A)^T dC, transposed back. */
  uint32_t da, db = IR_NONE;
  if (!ta) da = emit_mm(g, dc, b, false, !tb);
  else da = emit_mm(g, b, dc, tb, true);
  if (rb == 2 && ra > 2 && !ta) {
    /* A shared weight: fold the batch into the rows so dB is one [K or N, rows] product
     * instead of a batch of products summed afterwards. */
    uint32_t af = flatten2(g, a), dcf = af != IR_NONE ? flatten2(g, dc) : IR_NONE;
    if (af != IR_NONE && dcf != IR_NONE)
      db = tb ? emit_mm(g, dcf, af, true, false) : emit_mm(g, af, dcf, true, false);
  }
  if (db == IR_NONE) {
    if (!tb) db = emit_mm(g, a, dc, !ta, false);
    else db = emit_mm(g, dc, a, true, ta);
  }
  c->in_grads[0] = sum_to(g, da, a);
  c->in_grads[1] = sum_to(g, db, b);
  return AD_OK;
}

static ad_status_t vjp_linear(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  ir_graph_t *g = c->g;
  uint32_t x = c->node.inputs[0], w = c->node.inputs[1];
  if (!ir_value_type(g, x)) return AD_OK;
  const ir_type_t tx = *ir_value_type(g, x); /* a copy: emitting may move g->values */
  int rank = tx.rank;
  /* dW = dy^T x over all leading positions: [O, P] x [P, I]. */
  uint32_t dyf = flatten2(g, dy), xf = dyf != IR_NONE ? flatten2(g, x) : IR_NONE;
  if (dyf != IR_NONE && xf != IR_NONE) c->in_grads[1] = emit_mm(g, dyf, xf, true, false);
  else c->in_grads[1] = sum_to(g, emit_mm(g, dy, x, true, false), w);
  /* dx = dy w: [..., O] x [O, I]; a rank-1 x goes through [1, O]. */
  if (rank >= 2) c->in_grads[0] = emit_mm(g, dy, w, false, false);
  else c->in_grads[0] = ir_emit_reshape(g, emit_mm(g, dyf, w, false, false), &tx);
  if (c->node.ninputs > 2) {
    if (rank == 1) {
      c->in_grads[2] = dy;
    } else {
      int64_t axes[IR_MAX_RANK];
      for (int d = 0; d < rank - 1; d++) axes[d] = d;
      ir_attr_t at[2] = {IR_ATTR_INTS("axes", axes, rank - 1), IR_ATTR_I("keepdim", 0)};
      c->in_grads[2] = ir_emit(g, IR_OP_REDUCE_SUM, &dy, 1, at, 2);
    }
  }
  return AD_OK;
}

/* ---- costs ------------------------------------------------------------------------------ */

static uint64_t io_bytes(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                         const ir_shape_t *out) {
  uint64_t b = (uint64_t)ir_shape_numel(&out[0]) * ir_dtype_size(dt[0]);
  for (uint32_t i = 0; i < n->ninputs; i++)
    b += (uint64_t)ir_shape_numel(&in[i]) * ir_dtype_size(dt[i]);
  return b;
}

static void cost_matmul(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                        const ir_shape_t *out, ir_cost_t *c) {
  const ir_shape_t *a = &in[0];
  int64_t k = trans_a(n) ? a->dims[a->rank - 2] : a->dims[a->rank - 1];
  /* out holds batch * M * N elements; each is a K-long dot product. */
  c->flops = 2ull * (uint64_t)ir_shape_numel(&out[0]) * (uint64_t)k;
  c->bytes = io_bytes(n, in, dt, out);
}

static void cost_linear(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                        const ir_shape_t *out, ir_cost_t *c) {
  uint64_t nout = (uint64_t)ir_shape_numel(&out[0]);
  uint64_t i = (uint64_t)in[1].dims[1];
  c->flops = 2ull * nout * i + (n->ninputs > 2 ? nout : 0);
  c->bytes = io_bytes(n, in, dt, out);
}

/* ---- registration ---------------------------------------------------------------------- */

void ir_ops_register_matmul(ir_op_info_t *table) {
  ir_op_info_t *m = &table[IR_OP_MATMUL];
  m->fusion = IR_FUSION_CONTRACTION;
  m->min_inputs = 2;
  m->max_inputs = 2;
  m->noutputs = 1;
  m->infer = infer_matmul;
  m->kernel = kernel_matmul;
  m->vjp = vjp_matmul;
  m->cost = cost_matmul;

  ir_op_info_t *l = &table[IR_OP_LINEAR];
  l->fusion = IR_FUSION_CONTRACTION;
  l->min_inputs = 2;
  l->max_inputs = 3;
  l->noutputs = 1;
  l->infer = infer_linear;
  l->kernel = kernel_linear;
  l->vjp = vjp_linear;
  l->cost = cost_linear;
}
