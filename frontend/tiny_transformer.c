/* aidomm.testing.TinyTransformer: a small pre-LN rotary encoder with a SwiGLU MLP, masked mean
 * pooling and a linear regression head. It exercises every op family the real backbones need
 * (embedding, layernorm, linear, rotary, attention with an additive key mask, dropout, pooling,
 * MSE) at sizes that train in milliseconds, so the whole pipeline can be tested end to end.
 *
 * PyTorch equivalent (parameter names are the module paths):
 *   x = dropout(embeddings.word_embeddings(input_ids))                       # [B, L, H]
 *   mask_add = (1 - attention_mask)[:, None, None, :] * finfo(dtype).min     # [B, 1, 1, L]
 *   for layer in encoder.layer:
 *     h = layer.attention.ln(x)
 *     q, k, v = (layer.attention.self.{query,key,value}(h)
 *                .view(B, L, nh, d).transpose(1, 2))                         # [B, nh, L, d]
 *     q, k = rope(q), rope(k)                                # rotate-half RoPE, base 1e4
 *     o = softmax(q k^T / sqrt(d) + mask_add) v                              # [B, nh, L, d]
 *     x = x + dropout(layer.attention.output.dense(o.transpose(1, 2).reshape(B, L, H)))
 *     h = layer.mlp.ln(x)
 *     x = x + dropout(layer.mlp.down_proj(silu(gate_proj(h)) * up_proj(h)))
 *   pred = head(masked_mean(encoder.ln(x), attention_mask))                  # [B, num_outputs]
 *   loss = mse(pred, labels)
 * Dropout with p == 0 is the identity in PyTorch, so no dropout node is emitted then.
 * tools/golden/tiny_transformer.py is this module in torch; tests/test_frontend.c checks the
 * built graph against it (forward at 1e-10 in f64, and the gradients). */
#include <float.h>
#include <math.h>
#include <string.h>

#include "frontend/emit.h"
#include "frontend/fe_internal.h"

static const fe_arg_spec_t k_args[] = {
    {"vocab_size", FE_ARG_INT, FE_ARG_POSITIVE, "16"},
    {"hidden_size", FE_ARG_INT, FE_ARG_POSITIVE, "32"},
    {"num_attention_heads", FE_ARG_INT, FE_ARG_POSITIVE, "4"},
    {"num_hidden_layers", FE_ARG_INT, FE_ARG_POSITIVE, "2"},
    {"intermediate_size", FE_ARG_INT, FE_ARG_POSITIVE, "48"},
    {"num_outputs", FE_ARG_INT, FE_ARG_POSITIVE, "4"},
    {"hidden_dropout_prob", FE_ARG_FLOAT, FE_ARG_PROB, "0.0"},
    {"layer_norm_eps", FE_ARG_FLOAT, FE_ARG_POSITIVE, "1e-5"},
};
enum { A_VOCAB, A_HIDDEN, A_HEADS, A_LAYERS, A_INTER, A_OUTPUTS, A_DROPOUT, A_EPS };

#define ROPE_BASE 10000.0

static ad_status_t check_args(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                              const fe_node_t *section) {
  (void)cls;
  int64_t hidden = a[A_HIDDEN].i, heads = a[A_HEADS].i;
  /* Blame the heads when given: the usual edit is changing one and forgetting the other. */
  const fe_node_t *where = a[A_HEADS].node    ? a[A_HEADS].node
                           : a[A_HIDDEN].node ? a[A_HIDDEN].node
                                              : section;
  if (hidden % heads != 0)
    return fe_error_at(where,
                       "%s.init_args.num_attention_heads (%lld) must divide hidden_size (%lld)",
                       path, (long long)heads, (long long)hidden);
  if ((hidden / heads) % 2 != 0)
    return fe_error_at(where,
                       "%s.init_args: head size hidden_size/num_attention_heads = %lld must be "
                       "even for rotary embeddings",
                       path, (long long)(hidden / heads));
  return AD_OK;
}

/* ---- emission helpers ---------------------------------------------------------------------- */
typedef struct tt {
  fe_emit_t em; /* module, forward program, model dtype, first declaration failure */
  fe_build_ctx_t *ctx;
  double p;
} tt_t;

static uint32_t linear(tt_t *t, const char *name, uint32_t x, int64_t in, int64_t out) {
  ir_push_scope(t->em.g, name);
  uint32_t w = fe_emit_param(&t->em, "weight", 2, out, in, "normal(0,0.02)");
  uint32_t b = fe_emit_param(&t->em, "bias", 1, out, 0, "zeros");
  ir_pop_scope(t->em.g);
  uint32_t ins[3] = {x, w, b};
  return fe_emit_node(&t->em, IR_OP_LINEAR, name, ins, 3, NULL, 0, NULL);
}

static uint32_t layernorm(tt_t *t, const char *name, uint32_t x, int64_t h) {
  return fe_emit_layernorm(&t->em, name, x, h, t->ctx->args[A_EPS].f); /* output 0: y */
}

static uint32_t dropout(tt_t *t, const char *name, uint32_t x) {
  return fe_emit_dropout(&t->em, name, x, t->p);
}

/* [B, L, nh*d] -> [B, nh, L, d] */
static uint32_t split_heads(tt_t *t, const char *name, uint32_t x, int64_t nh, int64_t d) {
  int sb = t->ctx->sym_batch, sl = t->ctx->sym_len;
  ir_type_t ty =
      fe_emit_type(t->em.dt, 4, (const int64_t[]){0, 0, nh, d}, (const int[]){sb, sl, -1, -1});
  uint32_t r = fe_emit_node(&t->em, IR_OP_RESHAPE, NULL, &x, 1, NULL, 0, &ty);
  const int64_t perm[4] = {0, 2, 1, 3};
  ir_attr_t a = IR_ATTR_INTS("perm", perm, 4);
  return fe_emit_node(&t->em, IR_OP_PERMUTE, name, &r, 1, &a, 1, NULL);
}

/* [B, nh, L, d] -> [B, L, nh*d] */
static uint32_t merge_heads(tt_t *t, uint32_t x, int64_t h) {
  int sb = t->ctx->sym_batch, sl = t->ctx->sym_len;
  const int64_t perm[4] = {0, 2, 1, 3};
  ir_attr_t a = IR_ATTR_INTS("perm", perm, 4);
  uint32_t p = fe_emit_node(&t->em, IR_OP_PERMUTE, NULL, &x, 1, &a, 1, NULL);
  ir_type_t ty = fe_emit_type(t->em.dt, 3, (const int64_t[]){0, 0, h}, (const int[]){sb, sl, -1});
  return fe_emit_node(&t->em, IR_OP_RESHAPE, "merge_heads", &p, 1, NULL, 0, &ty);
}

static uint32_t rotary(tt_t *t, const char *name, uint32_t x) {
  ir_attr_t a[2] = {IR_ATTR_F("base", ROPE_BASE), IR_ATTR_I("inverse", 0)};
  return fe_emit_node(&t->em, IR_OP_ROTARY, name, &x, 1, a, 2, NULL);
}

static uint32_t attention_block(tt_t *t, uint32_t x, uint32_t mask_add) {
  const fe_arg_value_t *a = t->ctx->args;
  int64_t h = a[A_HIDDEN].i, nh = a[A_HEADS].i, d = h / nh;
  ir_push_scope(t->em.g, "attention");
  uint32_t hn = layernorm(t, "ln", x, h);
  ir_push_scope(t->em.g, "self");
  uint32_t q = linear(t, "query", hn, h, h);
  uint32_t k = linear(t, "key", hn, h, h);
  uint32_t v = linear(t, "value", hn, h, h);
  q = rotary(t, "q_rotary", split_heads(t, "q_heads", q, nh, d)); /* [B, nh, L, d] */
  k = rotary(t, "k_rotary", split_heads(t, "k_heads", k, nh, d));
  v = split_heads(t, "v_heads", v, nh, d);
  uint32_t ins[4] = {q, k, v, mask_add};
  ir_attr_t sc = IR_ATTR_F("scale", 1.0 / sqrt((double)d));
  /* O: [B, nh, L, d] */
  uint32_t o = fe_emit_node(&t->em, IR_OP_ATTENTION, "attention", ins, 4, &sc, 1, NULL);
  o = merge_heads(t, o, h); /* [B, L, H] */
  ir_pop_scope(t->em.g);
  ir_push_scope(t->em.g, "output");
  o = linear(t, "dense", o, h, h);
  o = dropout(t, "dropout", o);
  ir_pop_scope(t->em.g);
  uint32_t res[2] = {x, o};
  uint32_t y = fe_emit_node(&t->em, IR_OP_ADD, "residual", res, 2, NULL, 0, NULL);
  ir_pop_scope(t->em.g);
  return y;
}

static uint32_t mlp_block(tt_t *t, uint32_t x) {
  const fe_arg_value_t *a = t->ctx->args;
  int64_t h = a[A_HIDDEN].i, inter = a[A_INTER].i;
  ir_push_scope(t->em.g, "mlp");
  uint32_t hn = layernorm(t, "ln", x, h);
  uint32_t gate = linear(t, "gate_proj", hn, h, inter); /* [B, L, I] */
  uint32_t up = linear(t, "up_proj", hn, h, inter);
  uint32_t act = fe_emit_node(&t->em, IR_OP_SILU, "act", &gate, 1, NULL, 0, NULL);
  uint32_t gu[2] = {act, up};
  uint32_t prod = fe_emit_node(&t->em, IR_OP_MUL, "gated", gu, 2, NULL, 0, NULL);
  uint32_t down = linear(t, "down_proj", prod, inter, h); /* [B, L, H] */
  down = dropout(t, "dropout", down);
  uint32_t res[2] = {x, down};
  uint32_t y = fe_emit_node(&t->em, IR_OP_ADD, "residual", res, 2, NULL, 0, NULL);
  ir_pop_scope(t->em.g);
  return y;
}

static ad_status_t build(fe_build_ctx_t *ctx) {
  const fe_arg_value_t *a = ctx->args;
  int64_t vocab = a[A_VOCAB].i, h = a[A_HIDDEN].i, nout = a[A_OUTPUTS].i;
  tt_t t = {.em = {.m = ctx->module, .g = ctx->forward, .dt = ctx->dtype},
            .ctx = ctx,
            .p = a[A_DROPOUT].f};
  int sb = ctx->sym_batch, sl = ctx->sym_len;

  ir_type_t ids_t = fe_emit_type(IR_DTYPE_I64, 2, (const int64_t[]){0, 0}, (const int[]){sb, sl});
  ir_type_t mask_t = fe_emit_type(t.em.dt, 2, (const int64_t[]){0, 0}, (const int[]){sb, sl});
  ir_type_t lab_t = fe_emit_type(t.em.dt, 2, (const int64_t[]){0, nout}, (const int[]){sb, -1});
  uint32_t ids = fe_emit_node(&t.em, IR_OP_INPUT, "input_ids", NULL, 0, NULL, 0, &ids_t);
  uint32_t mask = fe_emit_node(&t.em, IR_OP_INPUT, "attention_mask", NULL, 0, NULL, 0, &mask_t);
  uint32_t labels = fe_emit_node(&t.em, IR_OP_INPUT, "labels", NULL, 0, NULL, 0, &lab_t);

  ir_push_scope(t.em.g, "embeddings");
  ir_push_scope(t.em.g, "word_embeddings");
  uint32_t table = fe_emit_param(&t.em, "weight", 2, vocab, h, "normal(0,0.02)");
  ir_pop_scope(t.em.g);
  uint32_t emb_in[2] = {table, ids};
  uint32_t x = fe_emit_node(&t.em, IR_OP_EMBEDDING, "word_embeddings", emb_in, 2, NULL, 0, NULL);
  x = dropout(&t, "dropout", x); /* [B, L, H] */
  ir_pop_scope(t.em.g);

  /* (1 - mask) * finfo.min == mask * (-min) + min, broadcast over heads and queries. */
  double fmin = t.em.dt == IR_DTYPE_F64 ? -DBL_MAX : -(double)FLT_MAX;
  ir_attr_t sc[2] = {IR_ATTR_F("alpha", -fmin), IR_ATTR_F("beta", fmin)};
  uint32_t madd =
      fe_emit_node(&t.em, IR_OP_SCALE, "extended_attention_mask", &mask, 1, sc, 2, NULL);
  ir_type_t m4 =
      fe_emit_type(t.em.dt, 4, (const int64_t[]){0, 1, 1, 0}, (const int[]){sb, -1, -1, sl});
  madd = fe_emit_node(&t.em, IR_OP_RESHAPE, "extended_attention_mask.view", &madd, 1, NULL, 0, &m4);

  ir_push_scope(t.em.g, "encoder");
  ir_push_scope(t.em.g, "layer");
  for (int64_t i = 0; i < a[A_LAYERS].i; i++) {
    char idx[24];
    snprintf(idx, sizeof idx, "%lld", (long long)i);
    ir_push_scope(t.em.g, idx);
    x = attention_block(&t, x, madd);
    x = mlp_block(&t, x);
    ir_pop_scope(t.em.g);
  }
  ir_pop_scope(t.em.g);
  x = layernorm(&t, "ln", x, h);
  ir_pop_scope(t.em.g);

  uint32_t pool_in[2] = {x, mask};
  uint32_t pooled =
      fe_emit_node(&t.em, IR_OP_MASKED_MEAN_POOL, "pooler", pool_in, 2, NULL, 0, NULL);
  uint32_t pred = linear(&t, "head", pooled, h, nout); /* [B, num_outputs] */
  fe_emit_node(&t.em, IR_OP_OUTPUT, "pred", &pred, 1, NULL, 0, NULL);
  uint32_t mse_in[2] = {pred, labels};
  uint32_t loss = fe_emit_node(&t.em, IR_OP_MSE, "mse", mse_in, 2, NULL, 0, NULL);
  fe_emit_node(&t.em, IR_OP_OUTPUT, "loss", &loss, 1, NULL, 0, NULL);
  return t.em.err;
}

const fe_class_t fe_class_tiny_transformer = {
    .class_path = "aidomm.testing.TinyTransformer",
    .section = "model",
    .args = k_args,
    .nargs = sizeof k_args / sizeof k_args[0],
    .check = check_args,
    .build = build,
};
