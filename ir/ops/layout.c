/* Ops of the layout group: gathers and data movement (semantics in ir/ops.def).
 *
 *   reshape        (x) explicit output type; same dtype and element count
 *   permute        (x) attr perm:ints        out.dims[i] = x.dims[perm[i]]
 *   slice          (x) attrs axis, start, end
 *   concat         (x0, x1, ...) attr axis   all dims but `axis` equal
 *   pad            (x) attrs axis, before >= 0, after >= 0, value (default 0)
 *   embedding      (table[V,H], ids[...] i32|i64) attr padding_idx? -> [..., H]
 *   embedding_bwd  (ids, dy[..., H], like_table[V,H]) attr padding_idx? -> dtable[V,H]
 *
 * Slice bounds: end <= 0 means dim + end (so end = 0 is "to the end"), and, as in Python,
 * start < 0 means dim + start; this lets a slice of a symbolic dim (L) keep a static size
 * from either end ("the last 3": start -3, end 0). The resolved bounds must satisfy
 * 0 <= start <= end <= dim: inference checks that at the symbol bounds, the kernel at the
 * actual sizes. Every VJP here is again a layout op, so it must express its bounds as
 * integer attributes: the VJP of a slice (a pad) needs the padding on both sides to be
 * static, which fails for a symbolic dim sliced with end > 0 (or start < 0); that VJP then
 * returns an error naming the node rather than a wrong graph.
 *
 * padding_idx (an aidomm attribute matching nn.Embedding(padding_idx=p), which ESM2 and
 * AIDO.RNA use): the forward is unaffected and the row p of dtable gets no gradient. Any
 * negative value (the default) means none; builders pass torch's normalised, non-negative p.
 *
 * Kernels move bytes, so they serve every dtype (embedding_bwd accumulates, f32/f64 only).
 * An id outside [0, V) is a kernel error naming the node, the id and its position.
 * embedding_bwd is a scatter-add: it is split by column blocks of dtable, never by ids, and
 * adds the rows of dy in id-position order, so repeated ids accumulate in one fixed order
 * whatever the thread count (f32 accumulates in double, rounded once). */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ops/ops_internal.h"

/* ---- helpers ------------------------------------------------------------------------- */
static ad_status_t kernel_error(const ir_kernel_args_t *a, ad_status_code_t code,
                                const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static ad_status_t kernel_error(const ir_kernel_args_t *a, ad_status_code_t code,
                                const char *fmt, ...) {
  char msg[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ad_status_make(code, "node '%s' (%s): %s", a->node->name ? a->node->name : "?",
                        ir_op_name(a->node->op), msg);
}

static ad_status_t emitted(ir_graph_t *g, const ir_vjp_ctx_t *c, uint32_t v) {
  if (v != IR_NONE) return AD_OK;
  ad_status_t e = ir_graph_take_error(g);
  if (e) return ad_status_annotate(e, "in the VJP of node '%s'", c->node.name);
  return ir_node_error(g, &c->node, "VJP emission produced no value");
}

/* Symbol values for the checks that must hold over the whole range of actual sizes. */
static void symvals_bounds(const ir_graph_t *g, int64_t *v) {
  memset(v, 0, sizeof(int64_t) * IR_MAX_SYMBOLS);
  ir_module_bounds(g->module, v);
}

static void symvals_ones(int64_t *v) {
  for (int i = 0; i < IR_MAX_SYMBOLS; i++) v[i] = 1;
}

static int64_t type_numel(const ir_type_t *t, const int64_t *symvals) {
  ir_shape_t s = ir_type_shape(t, symvals);
  return ir_shape_numel(&s);
}

/* [outer, dim, inner] view of t around axis. */
static void split_at(const ir_tensor_t *t, int axis, int64_t *outer, int64_t *inner) {
  int64_t o = 1, in = 1;
  for (int i = 0; i < axis; i++) o *= t->dims[i];
  for (int i = axis + 1; i < t->rank; i++) in *= t->dims[i];
  *outer = o;
  *inner = in;
}

static int64_t byte_grain(int64_t row_bytes) {
  return row_bytes >= 65536 ? 1 : 65536 / (row_bytes > 0 ? row_bytes : 1);
}

static bool attr_is_int(const ir_node_t *n, const char *key) {
  const ir_attr_t *a = ir_node_attr(n, key);
  return a && a->kind == IR_ATTR_INT;
}

static uint32_t emit_slice(ir_graph_t *g, uint32_t x, int axis, int64_t start, int64_t end) {
  ir_attr_t at[3] = {IR_ATTR_I("axis", axis), IR_ATTR_I("start", start), IR_ATTR_I("end", end)};
  return ir_emit(g, IR_OP_SLICE, &x, 1, at, 3);
}

static uint32_t emit_pad0(ir_graph_t *g, uint32_t x, int axis, int64_t before, int64_t after) {
  ir_attr_t at[4] = {IR_ATTR_I("axis", axis), IR_ATTR_I("before", before),
                     IR_ATTR_I("after", after), IR_ATTR_F("value", 0.0)};
  return ir_emit(g, IR_OP_PAD, &x, 1, at, 4);
}

/* ---- reshape ----------------------------------------------------------------------------- */
static ad_status_t infer_reshape(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *x = ir_in_type(g, n, 0);
  if (out[0].dtype != x->dtype)
    return ir_node_error(g, n, "cannot change the dtype (%s to %s); use cast",
                         ir_dtype_name(x->dtype), ir_dtype_name(out[0].dtype));
  /* Both sides are polynomials in the symbols; agreeing at the bounds and at all ones
   * catches every mismatch a builder makes in practice (L*H vs L*H/2, B vs L). */
  int64_t sv[IR_MAX_SYMBOLS];
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 0)
      symvals_bounds(g, sv);
    else
      symvals_ones(sv);
    int64_t a = type_numel(x, sv), b = type_numel(&out[0], sv);
    if (a != b)
      return ir_node_error(g, n,
                           "element count differs: input has %lld, output %lld (symbols at %s)",
                           (long long)a, (long long)b, pass == 0 ? "their bounds" : "1");
  }
  return AD_OK;
}

static ad_status_t kernel_reshape(const ir_kernel_args_t *a) {
  int64_t ni = ir_tensor_numel(&a->in[0]), no = ir_tensor_numel(&a->out[0]);
  if (ni != no)
    return kernel_error(a, AD_STATUS_INVALID_ARGUMENT,
                        "element count differs at the actual sizes: %lld in, %lld out",
                        (long long)ni, (long long)no);
  if (a->out[0].data != a->in[0].data)
    memmove(a->out[0].data, a->in[0].data, (size_t)ni * ir_dtype_size(a->in[0].dtype));
  return AD_OK;
}

static ad_status_t vjp_reshape(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  ir_type_t xt = c->g->values[c->node.inputs[0]].type; /* a copy: emitting may move values */
  uint32_t dx = ir_emit_reshape(c->g, dy, &xt);
  AD_RETURN_IF_ERROR(emitted(c->g, c, dx));
  c->in_grads[0] = dx;
  return AD_OK;
}

/* ---- permute ------------------------------------------------------------------------------ */
static ad_status_t get_perm(const ir_graph_t *g, const ir_node_t *n, int rank, int *perm) {
  const ir_attr_t *p = ir_node_attr(n, "perm");
  if (!p || p->kind != IR_ATTR_INTS || (int)p->n != rank)
    return ir_node_error(g, n, "needs an int list attribute 'perm' of length %d (the rank)", rank);
  bool seen[IR_MAX_RANK] = {false};
  for (int i = 0; i < rank; i++) {
    int64_t v = p->ints[i];
    if (v < 0 || v >= rank || seen[v])
      return ir_node_error(g, n, "attribute 'perm' is not a permutation of 0..%d", rank - 1);
    seen[v] = true;
    perm[i] = (int)v;
  }
  return AD_OK;
}

static ad_status_t infer_permute(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *x = ir_in_type(g, n, 0);
  int perm[IR_MAX_RANK];
  AD_RETURN_IF_ERROR(get_perm(g, n, x->rank, perm));
  out[0] = *x;
  for (int i = 0; i < x->rank; i++) out[0].dims[i] = x->dims[perm[i]];
  return AD_OK;
}

typedef struct permute_ctx {
  const uint8_t *x;
  uint8_t *y;
  size_t esz;
  int rank;
  int64_t odims[IR_MAX_RANK];   /* output dims */
  int64_t istride[IR_MAX_RANK]; /* input element stride of each output axis */
} permute_ctx_t;

/* Output rows (all axes but the last) are independent; the last axis walks the input with
 * one stride. */
static void permute_rows(void *vctx, int64_t r0, int64_t r1) {
  const permute_ctx_t *c = vctx;
  int last = c->rank - 1;
  int64_t n = c->odims[last], s = c->istride[last];
  for (int64_t r = r0; r < r1; r++) {
    int64_t rem = r, off = 0;
    for (int k = last - 1; k >= 0; k--) {
      off += (rem % c->odims[k]) * c->istride[k];
      rem /= c->odims[k];
    }
    uint8_t *dst = c->y + (size_t)(r * n) * c->esz;
    for (int64_t i = 0; i < n; i++)
      memcpy(dst + (size_t)i * c->esz, c->x + (size_t)(off + i * s) * c->esz, c->esz);
  }
}

static ad_status_t kernel_permute(const ir_kernel_args_t *a) {
  const ir_tensor_t *x = &a->in[0];
  size_t esz = ir_dtype_size(x->dtype);
  if (x->rank == 0) {
    memmove(a->out[0].data, x->data, esz);
    return AD_OK;
  }
  const ir_attr_t *p = ir_node_attr(a->node, "perm");
  if (!p || (int)p->n != x->rank)
    return kernel_error(a, AD_STATUS_INTERNAL, "attribute 'perm' does not match rank %d", x->rank);
  permute_ctx_t c = {.x = x->data, .y = a->out[0].data, .esz = esz, .rank = x->rank};
  int64_t in_stride[IR_MAX_RANK], s = 1;
  for (int i = x->rank - 1; i >= 0; i--) {
    in_stride[i] = s;
    s *= x->dims[i];
  }
  int64_t rows = 1;
  for (int i = 0; i < x->rank; i++) {
    c.odims[i] = x->dims[p->ints[i]];
    c.istride[i] = in_stride[p->ints[i]];
    if (i + 1 < x->rank) rows *= c.odims[i];
  }
  ir_parallel_for(a->par, rows, byte_grain(c.odims[x->rank - 1] * (int64_t)esz), permute_rows, &c);
  return AD_OK;
}

static ad_status_t vjp_permute(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  const ir_attr_t *p = ir_node_attr(&c->node, "perm");
  int64_t inv[IR_MAX_RANK];
  for (uint32_t i = 0; i < p->n; i++) inv[p->ints[i]] = (int64_t)i;
  ir_attr_t at = IR_ATTR_INTS("perm", inv, p->n);
  uint32_t dx = ir_emit(c->g, IR_OP_PERMUTE, &dy, 1, &at, 1);
  AD_RETURN_IF_ERROR(emitted(c->g, c, dx));
  c->in_grads[0] = dx;
  return AD_OK;
}

/* ---- slice --------------------------------------------------------------------------------- */
static void slice_resolve(int64_t dim, int64_t start, int64_t end, int64_t *s, int64_t *e) {
  *s = start < 0 ? dim + start : start;
  *e = end <= 0 ? dim + end : end;
}

static ad_status_t infer_slice(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *x = ir_in_type(g, n, 0);
  if (!attr_is_int(n, "axis") || !attr_is_int(n, "start") || !attr_is_int(n, "end"))
    return ir_node_error(g, n, "needs int attributes 'axis', 'start' and 'end'");
  int axis = ir_norm_axis(ir_node_attr_int(n, "axis", 0), x->rank);
  if (axis < 0) return ir_node_error(g, n, "axis is out of range for rank %d", x->rank);
  int64_t start = ir_node_attr_int(n, "start", 0), end = ir_node_attr_int(n, "end", 0);
  ir_dim_t d = x->dims[axis], o;
  /* out = e - s, each of e and s either a constant or dim + constant */
  bool ok;
  if (start >= 0 && end > 0) {
    o = ir_dim_const(end - start);
    ok = true;
  } else if (start < 0 && end <= 0) {
    o = ir_dim_const(end - start);
    ok = true;
  } else if (start >= 0) {
    ok = ir_dim_add_const(d, end - start, &o);
  } else {
    int64_t dv;
    ok = ir_dim_is_const(d, &dv);
    if (ok) o = ir_dim_const(end - (dv + start));
  }
  if (!ok)
    return ir_node_error(g, n, "the sliced size (start %lld, end %lld) is not expressible as a dim",
                         (long long)start, (long long)end);
  int64_t sv[IR_MAX_SYMBOLS], s, e;
  symvals_bounds(g, sv);
  int64_t dim = ir_dim_eval(d, sv);
  slice_resolve(dim, start, end, &s, &e);
  if (s < 0 || s > e || e > dim)
    return ir_node_error(g, n,
                         "slice [%lld, %lld) of axis %d is outside 0..%lld at the symbol bounds",
                         (long long)s, (long long)e, axis, (long long)dim);
  out[0] = *x;
  out[0].dims[axis] = o;
  return AD_OK;
}

typedef struct copy_ctx {
  /* Rows of `outer`: out row o = concatenation over pieces k of in_k[o, off_k : off_k + len_k]
   * (bytes); pad fills around a single piece. */
  uint32_t npieces;
  const ir_tensor_t *ins;
  const int64_t *off, *len; /* per piece, bytes */
  const int64_t *in_row;    /* per piece: bytes of one input row */
  uint8_t *y;
  int64_t out_row;          /* bytes of one output row */
  /* pad: bytes before/after and the fill element */
  int64_t before, after;
  size_t esz;
  uint8_t fill[8];
} copy_ctx_t;

static void copy_rows(void *vctx, int64_t r0, int64_t r1) {
  const copy_ctx_t *c = vctx;
  for (int64_t r = r0; r < r1; r++) {
    uint8_t *dst = c->y + r * c->out_row;
    for (int64_t b = 0; b < c->before; b += (int64_t)c->esz) memcpy(dst + b, c->fill, c->esz);
    dst += c->before;
    for (uint32_t k = 0; k < c->npieces; k++) {
      const uint8_t *src = (const uint8_t *)c->ins[k].data + r * c->in_row[k] + c->off[k];
      memmove(dst, src, (size_t)c->len[k]);
      dst += c->len[k];
    }
    for (int64_t b = 0; b < c->after; b += (int64_t)c->esz) memcpy(dst + b, c->fill, c->esz);
  }
}

static ad_status_t kernel_slice(const ir_kernel_args_t *a) {
  const ir_tensor_t *x = &a->in[0];
  int axis = ir_norm_axis(ir_node_attr_int(a->node, "axis", 0), x->rank);
  if (axis < 0) return kernel_error(a, AD_STATUS_INTERNAL, "axis out of range");
  int64_t dim = x->dims[axis], s, e;
  slice_resolve(dim, ir_node_attr_int(a->node, "start", 0), ir_node_attr_int(a->node, "end", 0),
                &s, &e);
  if (s < 0 || s > e || e > dim || a->out[0].dims[axis] != e - s)
    return kernel_error(a, AD_STATUS_INVALID_ARGUMENT,
                        "slice [%lld, %lld) of axis %d does not fit its actual size %lld",
                        (long long)s, (long long)e, axis, (long long)dim);
  int64_t outer, inner;
  split_at(x, axis, &outer, &inner);
  size_t esz = ir_dtype_size(x->dtype);
  int64_t row_in = dim * inner * (int64_t)esz, len = (e - s) * inner * (int64_t)esz;
  int64_t off = s * inner * (int64_t)esz;
  copy_ctx_t c = {.npieces = 1, .ins = x, .off = &off, .len = &len, .in_row = &row_in,
                  .y = a->out[0].data, .out_row = len, .esz = esz};
  ir_parallel_for(a->par, outer, byte_grain(len), copy_rows, &c);
  return AD_OK;
}

static ad_status_t vjp_slice(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  const ir_type_t *x = &c->g->values[c->node.inputs[0]].type;
  int axis = ir_norm_axis(ir_node_attr_int(&c->node, "axis", 0), x->rank);
  int64_t start = ir_node_attr_int(&c->node, "start", 0);
  int64_t end = ir_node_attr_int(&c->node, "end", 0);
  int64_t dim = 0, before, after;
  bool static_dim = ir_dim_is_const(x->dims[axis], &dim);
  if (!static_dim && (end > 0 || start < 0))
    return ir_node_error(c->g, &c->node,
                         "cannot differentiate: axis %d has a symbolic size, so the gradient pad "
                         "around slice [%lld, %lld) is not static; slice relative to the same "
                         "end (start >= 0 with end <= 0, or start < 0 with end <= 0)",
                         axis, (long long)start, (long long)end);
  before = start >= 0 ? start : dim + start;
  after = end <= 0 ? -end : dim - end;
  uint32_t dx = emit_pad0(c->g, dy, axis, before, after);
  AD_RETURN_IF_ERROR(emitted(c->g, c, dx));
  c->in_grads[0] = dx;
  return AD_OK;
}

/* ---- concat ------------------------------------------------------------------------------- */
static ad_status_t infer_concat(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *x0 = ir_in_type(g, n, 0);
  if (!attr_is_int(n, "axis")) return ir_node_error(g, n, "needs an int attribute 'axis'");
  int axis = ir_norm_axis(ir_node_attr_int(n, "axis", 0), x0->rank);
  if (axis < 0) return ir_node_error(g, n, "axis is out of range for rank %d", x0->rank);
  ir_dim_t sum = x0->dims[axis];
  for (uint32_t k = 1; k < n->ninputs; k++) {
    const ir_type_t *x = ir_in_type(g, n, k);
    if (x->dtype != x0->dtype || x->rank != x0->rank)
      return ir_node_error(g, n, "input %u differs from input 0 in dtype or rank", k);
    for (int i = 0; i < x->rank; i++)
      if (i != axis && !ir_dim_equal(x->dims[i], x0->dims[i]))
        return ir_node_error(g, n, "input %u differs from input 0 in dim %d", k, i);
    if (!ir_dim_add(sum, x->dims[axis], &sum))
      return ir_node_error(g, n, "the concatenated size of axis %d is not expressible as a dim",
                           axis);
  }
  out[0] = *x0;
  out[0].dims[axis] = sum;
  return AD_OK;
}

#define CONCAT_STACK 16

static ad_status_t kernel_concat(const ir_kernel_args_t *a) {
  const ir_tensor_t *x0 = &a->in[0];
  int axis = ir_norm_axis(ir_node_attr_int(a->node, "axis", 0), x0->rank);
  if (axis < 0) return kernel_error(a, AD_STATUS_INTERNAL, "axis out of range");
  uint32_t k = a->nin;
  int64_t sbuf[3 * CONCAT_STACK], *buf = sbuf;
  if (k > CONCAT_STACK) {
    buf = malloc(sizeof(int64_t) * 3 * k);
    if (!buf) return kernel_error(a, AD_STATUS_RESOURCE, "out of memory for %u inputs", k);
  }
  int64_t *off = buf, *len = buf + k, *row = buf + 2 * k;
  int64_t outer, inner, total = 0;
  split_at(x0, axis, &outer, &inner);
  size_t esz = ir_dtype_size(x0->dtype);
  for (uint32_t i = 0; i < k; i++) {
    off[i] = 0;
    len[i] = row[i] = a->in[i].dims[axis] * inner * (int64_t)esz;
    total += a->in[i].dims[axis];
  }
  ad_status_t st = AD_OK;
  if (total != a->out[0].dims[axis]) {
    st = kernel_error(a, AD_STATUS_INTERNAL, "output axis %d has %lld, inputs sum to %lld", axis,
                      (long long)a->out[0].dims[axis], (long long)total);
  } else {
    copy_ctx_t c = {.npieces = k, .ins = a->in, .off = off, .len = len, .in_row = row,
                    .y = a->out[0].data, .out_row = total * inner * (int64_t)esz, .esz = esz};
    ir_parallel_for(a->par, outer, byte_grain(c.out_row), copy_rows, &c);
  }
  if (buf != sbuf) free(buf);
  return st;
}

/* Input k is dy[off_k : off_k + d_k] on axis. The bounds must be static integers: start from
 * the front when everything before k is static, else from the back (negative start). */
static ad_status_t vjp_concat(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  uint32_t k = c->node.ninputs;
  const ir_type_t *x0 = &c->g->values[c->node.inputs[0]].type;
  int axis = ir_norm_axis(ir_node_attr_int(&c->node, "axis", 0), x0->rank);
  /* Static sizes of the inputs along axis, -1 when symbolic (read before emitting). */
  int64_t sbuf[CONCAT_STACK], *sz = sbuf;
  if (k > CONCAT_STACK) {
    sz = malloc(sizeof(int64_t) * k);
    if (!sz) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  for (uint32_t i = 0; i < k; i++) {
    int64_t v;
    sz[i] = ir_dim_is_const(c->g->values[c->node.inputs[i]].type.dims[axis], &v) ? v : -1;
  }
  ad_status_t st = AD_OK;
  for (uint32_t i = 0; i < k && !st; i++) {
    int64_t pre = 0, post = 0; /* static sizes before / after input i; -1: symbolic */
    for (uint32_t j = 0; j < i; j++) pre = (pre < 0 || sz[j] < 0) ? -1 : pre + sz[j];
    for (uint32_t j = i + 1; j < k; j++) post = (post < 0 || sz[j] < 0) ? -1 : post + sz[j];
    int64_t start = 0, end = 0;
    bool ok = true;
    if (pre >= 0 && post >= 0) {
      start = pre;
      end = -post;
    } else if (pre >= 0 && sz[i] >= 0) {
      start = pre;
      end = pre + sz[i];
      ok = end > 0; /* end 0 would mean "to the end" */
    } else if (post >= 0 && sz[i] >= 0) {
      start = -(post + sz[i]);
      end = -post;
      ok = start < 0; /* start 0 would mean "from the front" */
    } else {
      ok = false;
    }
    if (!ok) {
      st = ir_node_error(c->g, &c->node,
                         "cannot differentiate: input %u of the concat on axis %d has no static "
                         "slice bounds in the gradient (symbolic sizes on both sides, or an empty "
                         "input next to a symbolic one)", i, axis);
      break;
    }
    uint32_t dx = emit_slice(c->g, dy, axis, start, end);
    st = emitted(c->g, c, dx);
    if (!st) c->in_grads[i] = dx;
  }
  if (sz != sbuf) free(sz);
  return st;
}

/* ---- pad ------------------------------------------------------------------------------------ */
static ad_status_t infer_pad(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *x = ir_in_type(g, n, 0);
  if (!attr_is_int(n, "axis")) return ir_node_error(g, n, "needs an int attribute 'axis'");
  int axis = ir_norm_axis(ir_node_attr_int(n, "axis", 0), x->rank);
  if (axis < 0) return ir_node_error(g, n, "axis is out of range for rank %d", x->rank);
  int64_t before = ir_node_attr_int(n, "before", 0), after = ir_node_attr_int(n, "after", 0);
  if (before < 0 || after < 0)
    return ir_node_error(g, n, "before (%lld) and after (%lld) must be >= 0", (long long)before,
                         (long long)after);
  const ir_attr_t *v = ir_node_attr(n, "value");
  if (v && v->kind != IR_ATTR_FLOAT && v->kind != IR_ATTR_INT)
    return ir_node_error(g, n, "attribute 'value' must be a number");
  out[0] = *x;
  if (!ir_dim_add_const(x->dims[axis], before + after, &out[0].dims[axis]))
    return ir_node_error(g, n, "the padded size of axis %d is not expressible as a dim", axis);
  return AD_OK;
}

/* The fill element in x's dtype; false for a non-zero fill of a 16-bit float. */
static bool pad_fill(ir_dtype_t dt, double v, uint8_t *fill) {
  memset(fill, 0, 8);
  switch (dt) {
    case IR_DTYPE_F32: { float f = (float)v; memcpy(fill, &f, 4); return true; }
    case IR_DTYPE_F64: memcpy(fill, &v, 8); return true;
    case IR_DTYPE_I32: { int32_t i = (int32_t)v; memcpy(fill, &i, 4); return true; }
    case IR_DTYPE_I64: { int64_t i = (int64_t)v; memcpy(fill, &i, 8); return true; }
    case IR_DTYPE_U8: fill[0] = (uint8_t)v; return true;
    default: return v == 0.0;
  }
}

static ad_status_t kernel_pad(const ir_kernel_args_t *a) {
  const ir_tensor_t *x = &a->in[0];
  int axis = ir_norm_axis(ir_node_attr_int(a->node, "axis", 0), x->rank);
  if (axis < 0) return kernel_error(a, AD_STATUS_INTERNAL, "axis out of range");
  int64_t before = ir_node_attr_int(a->node, "before", 0);
  int64_t after = ir_node_attr_int(a->node, "after", 0);
  double value = ir_node_attr_float(a->node, "value", 0.0);
  int64_t outer, inner;
  split_at(x, axis, &outer, &inner);
  size_t esz = ir_dtype_size(x->dtype);
  int64_t dim = x->dims[axis], len = dim * inner * (int64_t)esz, off = 0;
  if (a->out[0].dims[axis] != dim + before + after)
    return kernel_error(a, AD_STATUS_INTERNAL, "output axis %d has %lld, expected %lld", axis,
                        (long long)a->out[0].dims[axis], (long long)(dim + before + after));
  copy_ctx_t c = {.npieces = 1, .ins = x, .off = &off, .len = &len, .in_row = &len,
                  .y = a->out[0].data, .before = before * inner * (int64_t)esz,
                  .after = after * inner * (int64_t)esz, .esz = esz};
  if (!pad_fill(x->dtype, value, c.fill))
    return kernel_error(a, AD_STATUS_UNIMPLEMENTED, "a non-zero fill of %s is not supported",
                        ir_dtype_name(x->dtype));
  c.out_row = c.before + len + c.after;
  ir_parallel_for(a->par, outer, byte_grain(c.out_row), copy_rows, &c);
  return AD_OK;
}

/* end = -after resolves to before + dim on the padded axis, so this holds for symbolic dims. */
static ad_status_t vjp_pad(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  const ir_type_t *x = &c->g->values[c->node.inputs[0]].type;
  int axis = ir_norm_axis(ir_node_attr_int(&c->node, "axis", 0), x->rank);
  uint32_t dx = emit_slice(c->g, dy, axis, ir_node_attr_int(&c->node, "before", 0),
                           -ir_node_attr_int(&c->node, "after", 0));
  AD_RETURN_IF_ERROR(emitted(c->g, c, dx));
  c->in_grads[0] = dx;
  return AD_OK;
}

/* ---- embedding ------------------------------------------------------------------------------- */
static bool is_id_dtype(ir_dtype_t t) { return t == IR_DTYPE_I32 || t == IR_DTYPE_I64; }

static ad_status_t check_padding_idx(const ir_graph_t *g, const ir_node_t *n) {
  const ir_attr_t *p = ir_node_attr(n, "padding_idx");
  if (p && p->kind != IR_ATTR_INT)
    return ir_node_error(g, n, "attribute 'padding_idx' must be an int");
  return AD_OK;
}

static ad_status_t infer_embedding(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *table = ir_in_type(g, n, 0), *ids = ir_in_type(g, n, 1);
  if (table->rank != 2) return ir_node_error(g, n, "table (input 0) must have rank 2 [V, H]");
  if (!is_id_dtype(ids->dtype))
    return ir_node_error(g, n, "ids (input 1) must be i32 or i64, got %s",
                         ir_dtype_name(ids->dtype));
  if (ids->rank + 1 > IR_MAX_RANK)
    return ir_node_error(g, n, "ids have rank %d; the output would exceed rank %d", ids->rank,
                         IR_MAX_RANK);
  AD_RETURN_IF_ERROR(check_padding_idx(g, n));
  out[0] = *ids;
  out[0].dtype = table->dtype;
  out[0].rank = ids->rank + 1;
  out[0].dims[ids->rank] = table->dims[1];
  return AD_OK;
}

static int64_t load_id(const ir_tensor_t *ids, int64_t i) {
  return ids->dtype == IR_DTYPE_I32 ? (int64_t)((const int32_t *)ids->data)[i]
                                    : ((const int64_t *)ids->data)[i];
}

/* Checked before any work so a bad id is one clear error, never an out-of-bounds access. */
static ad_status_t check_ids(const ir_kernel_args_t *a, const ir_tensor_t *ids, int64_t v) {
  if (!is_id_dtype(ids->dtype))
    return kernel_error(a, AD_STATUS_INVALID_ARGUMENT, "ids must be i32 or i64, got %s",
                        ir_dtype_name(ids->dtype));
  int64_t n = ir_tensor_numel(ids);
  for (int64_t i = 0; i < n; i++) {
    int64_t id = load_id(ids, i);
    if (id < 0 || id >= v)
      return kernel_error(a, AD_STATUS_INVALID_ARGUMENT,
                          "id %lld at position %lld is out of range for a table of %lld rows",
                          (long long)id, (long long)i, (long long)v);
  }
  return AD_OK;
}

typedef struct embed_ctx {
  const ir_tensor_t *ids;
  const uint8_t *table;
  uint8_t *y;
  size_t row; /* bytes of one table row */
} embed_ctx_t;

static void embed_rows(void *vctx, int64_t i0, int64_t i1) {
  const embed_ctx_t *c = vctx;
  for (int64_t i = i0; i < i1; i++)
    memcpy(c->y + (size_t)i * c->row, c->table + (size_t)load_id(c->ids, i) * c->row, c->row);
}

static ad_status_t kernel_embedding(const ir_kernel_args_t *a) {
  const ir_tensor_t *table = &a->in[0], *ids = &a->in[1];
  AD_RETURN_IF_ERROR(check_ids(a, ids, table->dims[0]));
  embed_ctx_t c = {.ids = ids, .table = table->data, .y = a->out[0].data,
                   .row = (size_t)table->dims[1] * ir_dtype_size(table->dtype)};
  ir_parallel_for(a->par, ir_tensor_numel(ids), byte_grain((int64_t)c.row), embed_rows, &c);
  return AD_OK;
}

static ad_status_t vjp_embedding(ir_vjp_ctx_t *c) {
  uint32_t dy = c->out_grads[0];
  if (dy == IR_NONE) return AD_OK;
  const ir_attr_t *p = ir_node_attr(&c->node, "padding_idx");
  ir_attr_t at = p ? *p : IR_ATTR_I("padding_idx", -1);
  uint32_t ins[3] = {c->node.inputs[1], dy, c->node.inputs[0]};
  uint32_t dt = ir_emit(c->g, IR_OP_EMBEDDING_BWD, ins, 3, &at, p ? 1 : 0);
  AD_RETURN_IF_ERROR(emitted(c->g, c, dt));
  c->in_grads[0] = dt;
  return AD_OK;
}

static ad_status_t infer_embedding_bwd(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out) {
  const ir_type_t *ids = ir_in_type(g, n, 0), *dy = ir_in_type(g, n, 1);
  const ir_type_t *table = ir_in_type(g, n, 2);
  if (!is_id_dtype(ids->dtype))
    return ir_node_error(g, n, "ids (input 0) must be i32 or i64, got %s",
                         ir_dtype_name(ids->dtype));
  if (table->rank != 2 || !ir_dtype_is_float(table->dtype))
    return ir_node_error(g, n, "like_table (input 2) must be a float tensor [V, H]");
  bool ok = dy->dtype == table->dtype && dy->rank == ids->rank + 1 &&
            ir_dim_equal(dy->dims[ids->rank], table->dims[1]);
  for (int i = 0; ok && i < ids->rank; i++) ok = ir_dim_equal(dy->dims[i], ids->dims[i]);
  if (!ok) return ir_node_error(g, n, "dy (input 1) must be [ids..., H] in the table's dtype");
  AD_RETURN_IF_ERROR(check_padding_idx(g, n));
  out[0] = *table;
  return AD_OK;
}

#define EMB_COLS 32 /* dtable columns per task: contiguous reads of dy, small accumulator */

typedef struct embed_bwd_ctx {
  const ir_tensor_t *ids;
  ir_dtype_t dt;
  const void *dy; /* [N, H] */
  void *dtable;   /* [V, H] */
  int64_t n, v, h, padding_idx;
  atomic_int oom;
} embed_bwd_ctx_t;

/* Column blocks [b0, b1) of dtable: every row of dy is added in position order, so each
 * element's sum has one order that no partition changes. */
static void embed_bwd_blocks(void *vctx, int64_t b0, int64_t b1) {
  embed_bwd_ctx_t *c = vctx;
  double *acc = malloc(sizeof(double) * (size_t)(c->v > 0 ? c->v : 1) * EMB_COLS); /* [V, 32] */
  if (!acc) {
    atomic_store(&c->oom, 1);
    return;
  }
  for (int64_t b = b0; b < b1; b++) {
    int64_t h0 = b * EMB_COLS, w = c->h - h0 < EMB_COLS ? c->h - h0 : EMB_COLS;
    memset(acc, 0, sizeof(double) * (size_t)c->v * EMB_COLS);
    for (int64_t i = 0; i < c->n; i++) {
      int64_t id = load_id(c->ids, i);
      if (id == c->padding_idx) continue;
      double *dst = acc + id * EMB_COLS;
      int64_t src = i * c->h + h0;
      if (c->dt == IR_DTYPE_F32)
        for (int64_t j = 0; j < w; j++) dst[j] += (double)((const float *)c->dy)[src + j];
      else
        for (int64_t j = 0; j < w; j++) dst[j] += ((const double *)c->dy)[src + j];
    }
    for (int64_t r = 0; r < c->v; r++)
      for (int64_t j = 0; j < w; j++) {
        int64_t o = r * c->h + h0 + j;
        if (c->dt == IR_DTYPE_F32)
          ((float *)c->dtable)[o] = (float)acc[r * EMB_COLS + j];
        else
          ((double *)c->dtable)[o] = acc[r * EMB_COLS + j];
      }
  }
  free(acc);
}

static ad_status_t kernel_embedding_bwd(const ir_kernel_args_t *a) {
  const ir_tensor_t *ids = &a->in[0], *dy = &a->in[1];
  ir_tensor_t *dtable = &a->out[0];
  if (dy->dtype != IR_DTYPE_F32 && dy->dtype != IR_DTYPE_F64)
    return kernel_error(a, AD_STATUS_UNIMPLEMENTED,
                        "the reference kernel handles f32 and f64, not %s",
                        ir_dtype_name(dy->dtype));
  AD_RETURN_IF_ERROR(check_ids(a, ids, dtable->dims[0]));
  embed_bwd_ctx_t c = {.ids = ids, .dt = dy->dtype, .dy = dy->data, .dtable = dtable->data,
                       .n = ir_tensor_numel(ids), .v = dtable->dims[0], .h = dtable->dims[1],
                       .padding_idx = ir_node_attr_int(a->node, "padding_idx", -1)};
  atomic_init(&c.oom, 0);
  int64_t nblocks = (c.h + EMB_COLS - 1) / EMB_COLS;
  ir_parallel_for(a->par, nblocks, 1, embed_bwd_blocks, &c);
  if (atomic_load(&c.oom))
    return kernel_error(a, AD_STATUS_RESOURCE, "out of memory for the %lld-row accumulator",
                        (long long)c.v);
  return AD_OK;
}

/* embedding_bwd is linear in dy: its VJP gathers the cotangent u's rows, except at positions
 * holding padding_idx, which contributed nothing; gathering from u with row p zeroed (built
 * from slices and a zero pad of the static [V, H] table) gives exactly that. */
static ad_status_t vjp_embedding_bwd(ir_vjp_ctx_t *c) {
  uint32_t u = c->out_grads[0];
  if (u == IR_NONE) return AD_OK;
  ir_graph_t *g = c->g;
  int64_t p = ir_node_attr_int(&c->node, "padding_idx", -1), v;
  if (p >= 0) {
    if (!ir_dim_is_const(g->values[c->node.inputs[2]].type.dims[0], &v))
      return ir_node_error(g, &c->node, "cannot differentiate: padding_idx needs a static V");
    if (p < v) {
      if (p == 0) {
        u = emit_pad0(g, emit_slice(g, u, 0, 1, 0), 0, 1, 0);
      } else if (p == v - 1) {
        u = emit_pad0(g, emit_slice(g, u, 0, 0, p), 0, 0, 1);
      } else {
        uint32_t parts[2] = {emit_slice(g, u, 0, 0, p),
                             emit_pad0(g, emit_slice(g, u, 0, p + 1, 0), 0, 1, 0)};
        ir_attr_t ax = IR_ATTR_I("axis", 0);
        u = ir_emit(g, IR_OP_CONCAT, parts, 2, &ax, 1);
      }
    }
  }
  uint32_t dy = ir_emit2(g, IR_OP_EMBEDDING, u, c->node.inputs[0]);
  AD_RETURN_IF_ERROR(emitted(g, c, dy));
  c->in_grads[1] = dy;
  return AD_OK;
}

/* ---- costs ------------------------------------------------------------------------------- */
/* A gather reads only the rows it copies, not the whole table. */
static void cost_embedding(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                           const ir_shape_t *out, ir_cost_t *c) {
  uint64_t y = (uint64_t)ir_shape_numel(&out[0]) * ir_dtype_size(dt[0]);
  c->bytes = (uint64_t)ir_shape_numel(&in[1]) * ir_dtype_size(dt[1]) + 2 * y;
  c->flops = 0;
}

static void cost_embedding_bwd(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *dt,
                               const ir_shape_t *out, ir_cost_t *c) {
  c->flops = (uint64_t)ir_shape_numel(&in[1]);
  /* like_table is read for its shape only */
  c->bytes -= (uint64_t)ir_shape_numel(&in[2]) * ir_dtype_size(dt[2]);
}

void ir_ops_register_layout(ir_op_info_t *t) {
  t[IR_OP_RESHAPE] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE, .min_inputs = 1, .max_inputs = 1,
                                    .noutputs = 1,
                                    .flags = IR_OP_FLAG_EXPLICIT_TYPE | IR_OP_FLAG_INPLACE,
                                    .infer = infer_reshape, .kernel = kernel_reshape,
                                    .vjp = vjp_reshape};
  t[IR_OP_PERMUTE] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE, .min_inputs = 1, .max_inputs = 1,
                                    .noutputs = 1, .infer = infer_permute,
                                    .kernel = kernel_permute, .vjp = vjp_permute};
  t[IR_OP_SLICE] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE, .min_inputs = 1, .max_inputs = 1,
                                  .noutputs = 1, .infer = infer_slice, .kernel = kernel_slice,
                                  .vjp = vjp_slice};
  t[IR_OP_CONCAT] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE, .min_inputs = 1, .max_inputs = -1,
                                   .noutputs = 1, .infer = infer_concat, .kernel = kernel_concat,
                                   .vjp = vjp_concat};
  t[IR_OP_PAD] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE, .min_inputs = 1, .max_inputs = 1,
                                .noutputs = 1, .infer = infer_pad, .kernel = kernel_pad,
                                .vjp = vjp_pad};
  t[IR_OP_EMBEDDING] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE, .min_inputs = 2,
                                      .max_inputs = 2, .noutputs = 1, .infer = infer_embedding,
                                      .kernel = kernel_embedding, .vjp = vjp_embedding,
                                      .nondiff_inputs = 1u << 1, .cost = cost_embedding};
  t[IR_OP_EMBEDDING_BWD] = (ir_op_info_t){.fusion = IR_FUSION_OPAQUE, .min_inputs = 3,
                                          .max_inputs = 3, .noutputs = 1,
                                          .infer = infer_embedding_bwd,
                                          .kernel = kernel_embedding_bwd,
                                          .vjp = vjp_embedding_bwd,
                                          .nondiff_inputs = (1u << 0) | (1u << 2),
                                          .cost = cost_embedding_bwd};
}
