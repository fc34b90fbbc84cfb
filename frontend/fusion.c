/* Fusion modules of ModelGenerator (modelgenerator/adapters/fusion.py): CrossAttentionFusion and
 * ConcatFusion. Each takes the backbones' embeddings in backbone_order (ins[0] is the query /
 * first modality) and returns one fe_seq_t: a sequence [B, Lq, Hq] (cross attention) or a pooled
 * vector [B, n*P] (concat). Parameter names are the peer's module paths under c->prefix, e.g.
 * "adapter.fusion_module.cross_attention_layer_01.query.weight".
 *
 * PyTorch (the peer) for one cross-attention layer (MultiHeadAttention, context C, masks mq, mc):
 *   Q, K, V = query(X), key(C), value(C)                     -> [B, h, L, d] each
 *   S = Q K^T / sqrt(d); S = where(mq[:, None, :, None] * mc[:, None, None, :] > 0.5, S, -1e30)
 *   Y = dense(softmax(S) V merged to [B, Lq, Hq]) + X         (residual on the query input)
 * With three modalities layer_02 runs on layer_01's output with the query mask reused.
 * A fully masked row is uniform (every score -1e30) and its masked scores get no gradient: the
 * ATTENTION op's mask_mode "fill" is exactly that where(). */
#include <math.h>
#include <string.h>

#include "frontend/emit.h"
#include "frontend/fe_internal.h"

/* ---- emission helpers ------------------------------------------------------------------------ */
/* Reshape keeping x's first `keep` dims and appending the given constant tail. */
static uint32_t reshape_tail(fe_emit_t *e, const char *name, uint32_t x, int keep,
                             const int64_t *tail, int ntail) {
  if (x == IR_NONE) return IR_NONE;
  ir_type_t ty = *ir_value_type(e->g, x);
  ty.rank = keep + ntail;
  for (int i = 0; i < ntail; i++) ty.dims[keep + i] = ir_dim_const(tail[i]);
  return fe_emit_node(e, IR_OP_RESHAPE, name, &x, 1, NULL, 0, &ty);
}

static uint32_t permute0213(fe_emit_t *e, const char *name, uint32_t x) {
  static const int64_t perm[4] = {0, 2, 1, 3};
  ir_attr_t a = IR_ATTR_INTS("perm", perm, 4);
  return fe_emit_node(e, IR_OP_PERMUTE, name, &x, 1, &a, 1, NULL);
}

/* The error place for a component argument: its node, else the model section. */
static const fe_node_t *arg_place(const fe_component_ctx_t *c, int a) {
  return c->args && c->args[a].node ? c->args[a].node : c->b->section;
}

/* ---- CrossAttentionFusion ------------------------------------------------------------------- */
static const fe_arg_spec_t k_cross_args[] = {
    {"num_attention_heads", FE_ARG_INT, FE_ARG_POSITIVE, "16"},
};
enum { CA_HEADS };

static ad_status_t cross_output_size(const fe_class_t *cls, const fe_arg_value_t *args,
                                     const int64_t *in_sizes, uint32_t n, int64_t *out) {
  (void)cls;
  (void)args;
  (void)n;
  *out = in_sizes[0];
  return AD_OK;
}

/* [B, L, H] -> [B, h, L, d] */
static uint32_t split_heads(fe_emit_t *e, const char *name, uint32_t x, int64_t h, int64_t d) {
  const int64_t tail[2] = {h, d};
  return permute0213(e, name, reshape_tail(e, NULL, x, 2, tail, 2));
}

/* mq [B, Lq] and mc [B, Lc] -> [B, 1, Lq, Lc] = mq[:, None, :, None] * mc[:, None, None, :]
 * (the peer's get_encoder_attention_mask). */
static uint32_t pair_mask(fe_emit_t *e, uint32_t mq, uint32_t mc) {
  if (mq == IR_NONE || mc == IR_NONE) return IR_NONE;
  ir_type_t tq = *ir_value_type(e->g, mq), tc = *ir_value_type(e->g, mc);
  ir_type_t a = tq, b = tc, p4 = tq;
  a.rank = 3;
  a.dims[2] = ir_dim_const(1); /* [B, Lq, 1] */
  b.rank = 3;
  b.dims[1] = ir_dim_const(1);
  b.dims[2] = tc.dims[1]; /* [B, 1, Lc] */
  p4.rank = 4;
  p4.dims[1] = ir_dim_const(1);
  p4.dims[2] = tq.dims[1];
  p4.dims[3] = tc.dims[1];
  uint32_t ra = fe_emit_node(e, IR_OP_RESHAPE, NULL, &mq, 1, NULL, 0, &a);
  uint32_t rb = fe_emit_node(e, IR_OP_RESHAPE, NULL, &mc, 1, NULL, 0, &b);
  uint32_t ab[2] = {ra, rb};
  uint32_t m = fe_emit_node(e, IR_OP_MUL, "encoder_attention_mask", ab, 2, NULL, 0, NULL);
  return fe_emit_node(e, IR_OP_RESHAPE, "encoder_attention_mask.view", &m, 1, NULL, 0, &p4);
}

/* One MultiHeadAttention layer: x [B, Lq, Hq], ctx [B, Lc, Hc] -> [B, Lq, Hq]. */
static uint32_t mha(fe_emit_t *e, const char *name, uint32_t x, int64_t hq, uint32_t ctx,
                    int64_t hc, uint32_t mask4, int64_t heads) {
  int64_t d = hq / heads;
  ir_push_scope(e->g, name);
  uint32_t q = fe_emit_linear(e, "query", x, hq, hq, true);
  uint32_t k = fe_emit_linear(e, "key", ctx, hc, hq, true);
  uint32_t v = fe_emit_linear(e, "value", ctx, hc, hq, true);
  q = split_heads(e, "q_heads", q, heads, d);
  k = split_heads(e, "k_heads", k, heads, d);
  v = split_heads(e, "v_heads", v, heads, d);
  ir_attr_t at[2] = {IR_ATTR_F("scale", 1.0 / sqrt((double)d)), IR_ATTR_S("mask_mode", "fill")};
  uint32_t ins[4] = {q, k, v, mask4};
  uint32_t o = fe_emit_node(e, IR_OP_ATTENTION, "attention", ins, mask4 == IR_NONE ? 3 : 4, at,
                            mask4 == IR_NONE ? 1 : 2, NULL); /* O: [B, h, Lq, d] */
  o = permute0213(e, NULL, o);
  const int64_t tail[1] = {hq};
  o = reshape_tail(e, "context_layer", o, 2, tail, 1); /* [B, Lq, Hq] */
  o = fe_emit_linear(e, "dense", o, hq, hq, true);
  uint32_t res[2] = {o, x};
  uint32_t y = fe_emit_node(e, IR_OP_ADD, "residual", res, 2, NULL, 0, NULL);
  ir_pop_scope(e->g);
  return y;
}

static ad_status_t check_seq(const fe_component_ctx_t *c, const fe_seq_t *s, uint32_t i,
                             const char *what) {
  const ir_type_t *t = ir_value_type(c->b->forward, s->hidden);
  if (!t || t->rank != 3)
    return fe_error_at(c->b->section, "%s: input %u is not a sequence [B, L, H] (rank %d)", what,
                       i, t ? t->rank : -1);
  return AD_OK;
}

static ad_status_t cross_build(fe_component_ctx_t *c, const fe_seq_t *ins, uint32_t n,
                               fe_seq_t *out) {
  int64_t heads = c->args ? c->args[CA_HEADS].i : 16;
  if (n < 2 || n > 3)
    return fe_error_at(c->b->section, "CrossAttentionFusion fuses 2 or 3 modalities, got %u", n);
  for (uint32_t i = 0; i < n; i++) AD_RETURN_IF_ERROR(check_seq(c, &ins[i], i, c->prefix));
  int64_t hq = ins[0].size;
  if (heads <= 0 || hq % heads != 0)
    return fe_error_at(arg_place(c, CA_HEADS),
                       "CrossAttentionFusion (%s): hidden size %lld of the query modality "
                       "(backbone_order[0]) is not divisible by %lld heads",
                       c->prefix, (long long)hq, (long long)heads);
  fe_emit_t e = {.m = c->b->module, .g = c->b->forward, .dt = c->b->dtype};
  const char *outer = e.g->scope; /* the prefix is dotted: restore, not pop */
  ir_push_scope(e.g, c->prefix);
  uint32_t x = ins[0].hidden;
  static const char *const layer[2] = {"cross_attention_layer_01", "cross_attention_layer_02"};
  for (uint32_t i = 1; i < n; i++) {
    ir_push_scope(e.g, layer[i - 1]);
    uint32_t m4 = pair_mask(&e, ins[0].mask, ins[i].mask);
    ir_pop_scope(e.g);
    x = mha(&e, layer[i - 1], x, hq, ins[i].hidden, ins[i].size, m4, heads);
  }
  e.g->scope = outer;
  *out = (fe_seq_t){.hidden = x, .mask = ins[0].mask, .size = hq, .len_sym = ins[0].len_sym};
  return e.err;
}

static const fe_fusion_ops_t k_cross_ops = {.output_size = cross_output_size,
                                            .build = cross_build};

const fe_class_t fe_class_cross_attention_fusion = {
    .class_path = "modelgenerator.adapters.fusion.CrossAttentionFusion",
    .section = "fusion",
    .args = k_cross_args,
    .nargs = sizeof k_cross_args / sizeof k_cross_args[0],
    .kind = FE_CLASS_FUSION,
    .fusion = &k_cross_ops,
};

/* ---- ConcatFusion --------------------------------------------------------------------------- */
static const fe_arg_spec_t k_concat_args[] = {
    {"project_size", FE_ARG_INT, FE_ARG_POSITIVE, "512"},
    {"pooling", FE_ARG_STRING, 0, "mean_pooling"},
};
enum { CF_PROJECT, CF_POOLING };

static ad_status_t concat_check(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                                const fe_node_t *section) {
  (void)cls;
  const char *p = a[CF_POOLING].s ? a[CF_POOLING].s : "mean_pooling";
  if (strcmp(p, "mean_pooling") != 0 && strcmp(p, "cls_pooling") != 0)
    return fe_error_at(a[CF_POOLING].node ? a[CF_POOLING].node : section,
                       "%s.init_args.pooling: '%s' is not a pooling of ConcatFusion (expected "
                       "mean_pooling or cls_pooling)",
                       path, p);
  return AD_OK;
}

static ad_status_t concat_output_size(const fe_class_t *cls, const fe_arg_value_t *args,
                                      const int64_t *in_sizes, uint32_t n, int64_t *out) {
  (void)cls;
  (void)in_sizes;
  *out = (args ? args[CF_PROJECT].i : 512) * (int64_t)n;
  return AD_OK;
}

static ad_status_t concat_build(fe_component_ctx_t *c, const fe_seq_t *ins, uint32_t n,
                                fe_seq_t *out) {
  if (n < 2 || n > 3)
    return fe_error_at(c->b->section, "ConcatFusion fuses 2 or 3 modalities, got %u", n);
  for (uint32_t i = 0; i < n; i++) AD_RETURN_IF_ERROR(check_seq(c, &ins[i], i, c->prefix));
  int64_t P = c->args ? c->args[CF_PROJECT].i : 512;
  const char *pooling = c->args && c->args[CF_POOLING].s ? c->args[CF_POOLING].s : "mean_pooling";
  bool cls_pool = strcmp(pooling, "cls_pooling") == 0;
  fe_emit_t e = {.m = c->b->module, .g = c->b->forward, .dt = c->b->dtype};
  const char *outer = e.g->scope; /* the prefix is dotted: restore, not pop */
  ir_push_scope(e.g, c->prefix);
  static const char *const proj[3] = {"project", "project_1", "project_2"};
  static const char *const pool[3] = {"seq_pooling", "seq_pooling_1", "seq_pooling_2"};
  uint32_t z[3];
  for (uint32_t i = 0; i < n; i++) {
    uint32_t p;
    if (cls_pool) {
      p = fe_emit_node(&e, IR_OP_CLS_POOL, pool[i], &ins[i].hidden, 1, NULL, 0, NULL);
    } else if (ins[i].mask != IR_NONE) {
      uint32_t pin[2] = {ins[i].hidden, ins[i].mask};
      p = fe_emit_node(&e, IR_OP_MASKED_MEAN_POOL, pool[i], pin, 2, NULL, 0, NULL);
    } else {
      /* The peer's mean pooling needs a mask; a backbone without one has all tokens valid. */
      const int64_t axes[1] = {1};
      ir_attr_t at[2] = {IR_ATTR_INTS("axes", axes, 1), IR_ATTR_I("keepdim", 0)};
      p = fe_emit_node(&e, IR_OP_REDUCE_MEAN, pool[i], &ins[i].hidden, 1, at, 2, NULL);
    }
    z[i] = fe_emit_linear(&e, proj[i], p, ins[i].size, P, true); /* [B, P] */
  }
  ir_attr_t ax = IR_ATTR_I("axis", 1);
  uint32_t y = fe_emit_node(&e, IR_OP_CONCAT, "concat", z, n, &ax, 1, NULL); /* [B, n*P] */
  e.g->scope = outer;
  *out = (fe_seq_t){.hidden = y, .mask = IR_NONE, .size = P * (int64_t)n, .len_sym = -1};
  return e.err;
}

static const fe_fusion_ops_t k_concat_ops = {.output_size = concat_output_size,
                                             .build = concat_build};

const fe_class_t fe_class_concat_fusion = {
    .class_path = "modelgenerator.adapters.fusion.ConcatFusion",
    .section = "fusion",
    .args = k_concat_args,
    .nargs = sizeof k_concat_args / sizeof k_concat_args[0],
    .check = concat_check,
    .kind = FE_CLASS_FUSION,
    .fusion = &k_concat_ops,
};
