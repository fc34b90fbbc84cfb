/* AIDO.RNA backbones: modelgenerator.backbones.aido_rna_650m, aido_rna_1b600m and
 * aido_rna_1b600m_cds (the peer's GenBioBERT wrapper around
 * modelgenerator/huggingface_models/rnabert/modeling_rnabert.py RNABertModel).
 *
 * Hyperparameters (modelgenerator.md §5.3; tests/golden/keys/aido_rna_*.txt count them):
 *   650M:          33 layers, hidden 1280, 20 heads, FFN 3392  (multimolecule conversion)
 *   1.6B, 1.6B-CDS: 32 layers, hidden 2048, 32 heads, FFN 5440 (config.json of AIDO.RNA-1.6B)
 *   both: vocab 16, LayerNorm eps 1e-5, linear biases, RoPE over the whole head, dropouts 0,
 *   max_position_embeddings 1024. from_scratch uses RNABertConfig()'s defaults instead
 *   (hidden 1024, 24 layers, 16 heads, FFN 4096, RMSNorm, max_position_embeddings 512), as the
 *   wrapper does; config_overwrites are then set onto the config (user > class default).
 *
 * Forward (PyTorch names = slot names under "<prefix>.encoder." [+ "base_model.model." with
 * use_peft]):
 *   x = dropout(embeddings.word_embeddings(ids))                 # padding_idx 0, [B, L, H]
 *   per layer i (pre-norm):
 *     h = attention.ln(x); q, k, v = attention.self.{query,key,value}(h) -> [B, nh, L, d]
 *     q, k = rope(q), rope(k)                                    # rotate-half, base 1e4
 *     S = q k^T / sqrt(d) + Mext, Mext = finfo(float32).min where mask_i * mask_j < 0.5
 *     P = softmax(S), zeroed where Mext < -1e-5 (pad query rows output 0); dropout(P)
 *     x = x + dropout(attention.output.dense(P v merged))
 *     x = x + output.dropout(mlp.down_proj(silu(mlp.gate_proj(ln(x))) * mlp.up_proj(ln(x))))
 *   last_hidden_state = encoder.ln(x)
 * Attention mask: the peer's pair mask, additive finfo(float32).min where mask_i * mask_j < 0.5,
 * goes to the ATTENTION op with mask_mode "add_zero" (probabilities zeroed where the mask is
 * below -1e-5, so padded queries output 0). With attention_probs_dropout_prob > 0 the softmax is
 * spelled out (matmul, mask, softmax, zeroing, dropout, matmul) so the dropout lands on the
 * probabilities as in the peer.
 * Exactness notes: the peer keeps RotaryEmbedding.inv_freq in float32 under model.double(), and
 * computes RMSNorm in float32; aidomm computes both in the compute dtype, so f64 runs are the
 * peer's math in f64 (tools/golden/rnabert.py sets inv_freq in f64 for the f64 golden).
 *
 * use_peft: slots are named with "base_model.model." and, after the forward is emitted,
 * pass_lora rewrites the targeted linears (PEFT LoRA) and freezes the rest; frozen (ignored with
 * use_peft, as in the peer) runs pass_freeze. save_peft_only marks with IR_SLOT_NOSAVE the keys
 * GenBioBERT.on_save_checkpoint drops: with use_peft every non-LoRA encoder key; with frozen
 * every encoder key (LoRA ones included, as the peer's condition reads). */
#include <float.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "frontend/emit.h"
#include "frontend/fe_internal.h"
#include "passes/passes.h"

static const fe_arg_spec_t k_args[] = {
    {"from_scratch", FE_ARG_BOOL, 0, "false"},
    {"max_length", FE_ARG_INT, FE_ARG_POSITIVE | FE_ARG_NULLABLE | FE_ARG_KEY_BOUND, "null"},
    {"use_peft", FE_ARG_BOOL, 0, "false"},
    {"frozen", FE_ARG_BOOL, 0, "false"},
    {"save_peft_only", FE_ARG_BOOL, 0, "true"},
    {"lora_r", FE_ARG_INT, FE_ARG_POSITIVE, "16"},
    {"lora_alpha", FE_ARG_INT, FE_ARG_POSITIVE, "32"},
    {"lora_dropout", FE_ARG_FLOAT, FE_ARG_PROB, "0.1"},
    {"lora_target_modules", FE_ARG_LIST, FE_ARG_NULLABLE, NULL},
    {"config_overwrites", FE_ARG_MAP, FE_ARG_NULLABLE, NULL},
    {"model_init_args", FE_ARG_MAP, FE_ARG_NULLABLE, NULL},
    /* SequenceBackboneInterface's embedding cache: inference-time only, no effect on training */
    {"enable_cache", FE_ARG_BOOL, FE_ARG_IGNORED, "false"},
    {"file_cache_dir", FE_ARG_STRING, FE_ARG_NULLABLE | FE_ARG_IGNORED, "null"},
    {"overwrite_file_cache", FE_ARG_BOOL, FE_ARG_IGNORED, "false"},
    {"cache_write_buffer_size", FE_ARG_INT, FE_ARG_IGNORED, "1000"},
    {"cache_storage_backend", FE_ARG_STRING, FE_ARG_IGNORED, "indexed"},
};
enum {
  A_FROM_SCRATCH,
  A_MAX_LENGTH,
  A_USE_PEFT,
  A_FROZEN,
  A_SAVE_PEFT_ONLY,
  A_LORA_R,
  A_LORA_ALPHA,
  A_LORA_DROPOUT,
  A_LORA_TARGETS,
  A_CONFIG_OVERWRITES,
  A_MODEL_INIT_ARGS,
};

#define ROPE_BASE 10000.0

/* The RNABertConfig fields aidomm acts on. */
typedef struct rna_cfg {
  int64_t vocab, hidden, layers, heads, inter, max_pos, pad_id;
  double hidden_p, attn_p, eps, init_range;
  bool rmsnorm, bias, pooler;
} rna_cfg_t;

static const rna_cfg_t k_cfg_650m = {16, 1280, 33, 20, 3392, 1024, 0, 0.0, 0.0, 1e-5, 0.02,
                                     false, true, false};
static const rna_cfg_t k_cfg_1b600m = {16, 2048, 32, 32, 5440, 1024, 0, 0.0, 0.0, 1e-5, 0.02,
                                       false, true, false};
/* RNABertConfig() defaults (from_scratch). */
static const rna_cfg_t k_cfg_scratch = {16, 1024, 24, 16, 4096, 512, 0, 0.0, 0.0, 1e-5, 0.02,
                                        true, true, false};

static const rna_cfg_t *class_cfg(const fe_class_t *cls);

/* fe_error_at, or a plain status when there is no node to point at (defaults, direct calls). */
static ad_status_t err_at(const fe_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static ad_status_t err_at(const fe_node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ad_status_t st = n ? fe_status_atv(AD_STATUS_INVALID_ARGUMENT, n->file, n->line, n->col, fmt, ap)
                     : ad_status_makev(AD_STATUS_INVALID_ARGUMENT, fmt, ap);
  va_end(ap);
  return st;
}

/* Integer / float / bool / string value of a config_overwrites entry, errors at the value. */
static ad_status_t ow_int(const fe_node_t *v, const char *key, bool positive, int64_t *out) {
  if (!fe_scalar_int(v, out))
    return fe_error_at(v, "config_overwrites.%s: expected an integer", key);
  if (positive && *out <= 0)
    return fe_error_at(v, "config_overwrites.%s must be positive, got %lld", key,
                       (long long)*out);
  if (*out < 0) return fe_error_at(v, "config_overwrites.%s must not be negative", key);
  if (*out > ((int64_t)1 << 31))
    return fe_error_at(v, "config_overwrites.%s is unreasonably large (%lld)", key,
                       (long long)*out);
  return AD_OK;
}

static ad_status_t ow_prob(const fe_node_t *v, const char *key, double *out) {
  if (!fe_scalar_float(v, out) || !(*out >= 0.0 && *out < 1.0))
    return fe_error_at(v, "config_overwrites.%s must be a probability in [0, 1)", key);
  return AD_OK;
}

static const char *const k_known_keys[] = {
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
    "max_position_embeddings", "type_vocab_size", "initializer_range", "layer_norm_eps",
    "pad_token_id", "add_linear_bias", "position_embedding_type", "normalization_type",
    "use_cache", "rotary_percent", "seq_len_interpolation_factor", "is_decoder",
    "add_cross_attention", "num_labels", "problem_type", "output_hidden_states",
    "output_attentions", "return_dict", "torch_dtype", "architectures"};
#define NKNOWN (sizeof k_known_keys / sizeof k_known_keys[0])

/* The effective config: class default, then config_overwrites (setattr), then the checks the
 * peer's modules make at construction. Errors at the offending node. */
static ad_status_t resolve_cfg(const fe_class_t *cls, const fe_arg_value_t *a,
                               const fe_node_t *section, rna_cfg_t *c) {
  *c = a[A_FROM_SCRATCH].b ? k_cfg_scratch : *class_cfg(cls);
  const fe_node_t *ow = a[A_CONFIG_OVERWRITES].is_null ? NULL : a[A_CONFIG_OVERWRITES].list;
  const fe_node_t *where_h = NULL, *where_n = NULL;
  for (uint32_t i = 0; ow && i < ow->n; i++) {
    const char *k = ow->keys[i];
    const fe_node_t *v = ow->items[i];
    bool b;
    if (strcmp(k, "vocab_size") == 0) {
      AD_RETURN_IF_ERROR(ow_int(v, k, true, &c->vocab));
    } else if (strcmp(k, "hidden_size") == 0) {
      AD_RETURN_IF_ERROR(ow_int(v, k, true, &c->hidden));
      where_h = v;
    } else if (strcmp(k, "num_hidden_layers") == 0) {
      AD_RETURN_IF_ERROR(ow_int(v, k, true, &c->layers));
    } else if (strcmp(k, "num_attention_heads") == 0) {
      AD_RETURN_IF_ERROR(ow_int(v, k, true, &c->heads));
      where_n = v;
    } else if (strcmp(k, "intermediate_size") == 0) {
      AD_RETURN_IF_ERROR(ow_int(v, k, true, &c->inter));
    } else if (strcmp(k, "max_position_embeddings") == 0) {
      AD_RETURN_IF_ERROR(ow_int(v, k, true, &c->max_pos));
    } else if (strcmp(k, "pad_token_id") == 0) {
      AD_RETURN_IF_ERROR(ow_int(v, k, false, &c->pad_id));
    } else if (strcmp(k, "hidden_dropout_prob") == 0) {
      AD_RETURN_IF_ERROR(ow_prob(v, k, &c->hidden_p));
    } else if (strcmp(k, "attention_probs_dropout_prob") == 0) {
      AD_RETURN_IF_ERROR(ow_prob(v, k, &c->attn_p));
    } else if (strcmp(k, "layer_norm_eps") == 0) {
      if (!fe_scalar_float(v, &c->eps) || !(c->eps > 0))
        return fe_error_at(v, "config_overwrites.layer_norm_eps must be a positive number");
    } else if (strcmp(k, "initializer_range") == 0) {
      if (!fe_scalar_float(v, &c->init_range) || !(c->init_range >= 0))
        return fe_error_at(v, "config_overwrites.initializer_range must be a number >= 0");
    } else if (strcmp(k, "add_linear_bias") == 0) {
      if (!fe_scalar_bool(v, &c->bias))
        return fe_error_at(v, "config_overwrites.add_linear_bias: expected true or false");
    } else if (strcmp(k, "normalization_type") == 0) {
      const char *s = v->kind == FE_NODE_SCALAR ? v->scalar : "";
      if (strcmp(s, "LayerNorm") == 0)
        c->rmsnorm = false;
      else if (strcmp(s, "RMSNorm") == 0)
        c->rmsnorm = true;
      else
        return fe_error_at(v, "config_overwrites.normalization_type must be 'RMSNorm' or "
                              "'LayerNorm' (as RNABertConfig asserts)");
    } else if (strcmp(k, "hidden_act") == 0) {
      if (v->kind != FE_NODE_SCALAR || strcmp(v->scalar, "swiglu") != 0)
        return fe_error_at(v, "config_overwrites.hidden_act: RNABertMLP supports only 'swiglu'");
    } else if (strcmp(k, "position_embedding_type") == 0) {
      if (v->kind != FE_NODE_SCALAR || strcmp(v->scalar, "rope") != 0)
        return fe_error_at(v, "config_overwrites.position_embedding_type: only 'rope' (the "
                              "AIDO.RNA checkpoints' setting) is supported");
    } else if (strcmp(k, "rotary_percent") == 0) {
      double p;
      if (!fe_scalar_float(v, &p) || p != 1.0)
        return fe_error_at(v, "config_overwrites.rotary_percent: only 1.0 (rotary over the "
                              "whole head) is supported");
    } else if (strcmp(k, "is_decoder") == 0 || strcmp(k, "add_cross_attention") == 0) {
      if (!fe_scalar_bool(v, &b) || b)
        return fe_error_at(v, "config_overwrites.%s: AIDO.RNA is used as an encoder only", k);
    } else {
      bool known = false;
      for (size_t j = 0; j < NKNOWN; j++) known = known || strcmp(k, k_known_keys[j]) == 0;
      if (!known) {
        /* setattr accepts any name, so only a likely typo is an error. */
        const char *near = fe_closest(k, k_known_keys, NKNOWN);
        if (near)
          return fe_error_at_key(ow, i, "config_overwrites: unknown key '%s'; did you mean '%s'?",
                                 k, near);
      }
    }
  }
  const fe_node_t *mia = a[A_MODEL_INIT_ARGS].is_null ? NULL : a[A_MODEL_INIT_ARGS].list;
  for (uint32_t i = 0; mia && i < mia->n; i++) {
    if (strcmp(mia->keys[i], "add_pooling_layer") == 0) {
      if (!fe_scalar_bool(mia->items[i], &c->pooler))
        return fe_error_at(mia->items[i], "model_init_args.add_pooling_layer: expected a bool");
    } else {
      return fe_error_at_key(mia, i, "model_init_args.%s is not an argument of RNABertModel",
                             mia->keys[i]);
    }
  }
  if (c->hidden % c->heads != 0) {
    /* Blame the value just changed on the command line, else the heads (the usual edit is
     * changing one and forgetting the other). */
    bool h_cmd = where_h && strcmp(where_h->file, FE_CMDLINE_FILE) == 0;
    const fe_node_t *where = h_cmd ? where_h : where_n ? where_n : where_h ? where_h : section;
    return err_at(where, "hidden size %lld is not divisible by %lld heads",
                       (long long)c->hidden, (long long)c->heads);
  }
  if ((c->hidden / c->heads) % 2 != 0)
    return err_at(where_n ? where_n : where_h ? where_h : section,
                       "head size %lld (hidden size / heads) must be even for rotary embeddings",
                       (long long)(c->hidden / c->heads));
  if (c->pad_id >= c->vocab)
    return err_at(section, "pad_token_id %lld is outside the vocabulary (%lld)",
                       (long long)c->pad_id, (long long)c->vocab);
  return AD_OK;
}

static ad_status_t check_args(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                              const fe_node_t *section) {
  (void)path;
  rna_cfg_t c;
  AD_RETURN_IF_ERROR(resolve_cfg(cls, a, section, &c));
  const fe_node_t *t = a[A_LORA_TARGETS].is_null ? NULL : a[A_LORA_TARGETS].list;
  for (uint32_t i = 0; t && i < t->n; i++)
    if (t->items[i]->kind != FE_NODE_SCALAR || !t->items[i]->scalar[0])
      return fe_error_at(t->items[i], "lora_target_modules: expected module names");
  if (t && t->n == 0 && a[A_USE_PEFT].b)
    return fe_error_at(t, "lora_target_modules: empty list with use_peft");
  return AD_OK;
}

static ad_status_t embedding_size(const fe_class_t *cls, const fe_arg_value_t *a, int64_t *out) {
  rna_cfg_t c;
  AD_RETURN_IF_ERROR(resolve_cfg(cls, a, NULL, &c));
  *out = c.hidden;
  return AD_OK;
}

/* ---- emission -------------------------------------------------------------------------- */
typedef struct rb {
  fe_emit_t em; /* module, forward program, model dtype, first declaration failure */
  fe_component_ctx_t *c;
  rna_cfg_t cfg;
  int sb, sl;
  const char *init_w;
} rb_t;

typedef struct lin {
  uint32_t w, b;
} lin_t;

/* Declares a Linear's slots (weight [out, in], bias [out] when add_linear_bias). */
static lin_t linear_params(rb_t *t, const char *name, int64_t in, int64_t out) {
  ir_push_scope(t->em.g, name);
  lin_t l = {fe_emit_param(&t->em, "weight", 2, out, in, t->init_w), IR_NONE};
  if (t->cfg.bias) l.b = fe_emit_param(&t->em, "bias", 1, out, 0, "zeros");
  ir_pop_scope(t->em.g);
  return l;
}

static uint32_t linear_apply(rb_t *t, const char *name, uint32_t x, lin_t l) {
  uint32_t ins[3] = {x, l.w, l.b};
  return fe_emit_node(&t->em, IR_OP_LINEAR, name, ins, l.b == IR_NONE ? 2 : 3, NULL, 0, NULL);
}

static uint32_t norm(rb_t *t, const char *name, uint32_t x) {
  int64_t h = t->cfg.hidden;
  if (!t->cfg.rmsnorm) return fe_emit_layernorm(&t->em, name, x, h, t->cfg.eps);
  ir_push_scope(t->em.g, name);
  uint32_t w = fe_emit_param(&t->em, "weight", 1, h, 0, "ones");
  ir_pop_scope(t->em.g);
  ir_attr_t a = IR_ATTR_F("eps", t->cfg.eps);
  uint32_t ins[2] = {x, w};
  return fe_emit_node(&t->em, IR_OP_RMSNORM, name, ins, 2, &a, 1, NULL);
}

/* [B, L, nh*d] -> [B, nh, L, d] */
static uint32_t split_heads(rb_t *t, const char *name, uint32_t x) {
  int64_t nh = t->cfg.heads, d = t->cfg.hidden / nh;
  ir_type_t ty = fe_emit_type(t->em.dt, 4, (const int64_t[]){0, 0, nh, d},
                              (const int[]){t->sb, t->sl, -1, -1});
  uint32_t r = fe_emit_node(&t->em, IR_OP_RESHAPE, NULL, &x, 1, NULL, 0, &ty);
  const int64_t perm[4] = {0, 2, 1, 3};
  ir_attr_t a = IR_ATTR_INTS("perm", perm, 4);
  return fe_emit_node(&t->em, IR_OP_PERMUTE, name, &r, 1, &a, 1, NULL);
}

static uint32_t merge_heads(rb_t *t, uint32_t x) {
  const int64_t perm[4] = {0, 2, 1, 3};
  ir_attr_t a = IR_ATTR_INTS("perm", perm, 4);
  uint32_t p = fe_emit_node(&t->em, IR_OP_PERMUTE, NULL, &x, 1, &a, 1, NULL);
  ir_type_t ty = fe_emit_type(t->em.dt, 3, (const int64_t[]){0, 0, t->cfg.hidden},
                              (const int[]){t->sb, t->sl, -1});
  return fe_emit_node(&t->em, IR_OP_RESHAPE, "merge_heads", &p, 1, NULL, 0, &ty);
}

static uint32_t rotary(rb_t *t, const char *name, uint32_t x) {
  ir_attr_t a[2] = {IR_ATTR_F("base", ROPE_BASE), IR_ATTR_I("inverse", 0)};
  return fe_emit_node(&t->em, IR_OP_ROTARY, name, &x, 1, a, 2, NULL);
}

/* Masks shared by the layers (see the file comment). */
typedef struct masks {
  uint32_t query;    /* [B, 1, L, 1]: mask_i */
  uint32_t pair;     /* [B, 1, L, L]: mask_i * mask_j */
  uint32_t pair_add; /* [B, 1, L, L]: (1 - mask_i * mask_j) * finfo(float32).min */
} masks_t;

static uint32_t attention(rb_t *t, uint32_t x, const masks_t *mk) {
  int64_t h = t->cfg.hidden, nh = t->cfg.heads, d = h / nh;
  ir_push_scope(t->em.g, "attention");
  uint32_t hn = norm(t, "ln", x);
  ir_push_scope(t->em.g, "self");
  lin_t lq = linear_params(t, "query", h, h);
  lin_t lk = linear_params(t, "key", h, h);
  lin_t lv = linear_params(t, "value", h, h);
  uint32_t q = linear_apply(t, "query", hn, lq);
  uint32_t k = linear_apply(t, "key", hn, lk);
  uint32_t v = linear_apply(t, "value", hn, lv);
  q = rotary(t, "q_rotary", split_heads(t, "q_heads", q)); /* [B, nh, L, d] */
  k = rotary(t, "k_rotary", split_heads(t, "k_heads", k));
  v = split_heads(t, "v_heads", v);
  uint32_t o;
  if (t->cfg.attn_p == 0.0) {
    uint32_t ins[4] = {q, k, v, mk->pair_add};
    ir_attr_t at[2] = {IR_ATTR_S("mask_mode", "add_zero"),
                       IR_ATTR_F("scale", 1.0 / sqrt((double)d))};
    o = fe_emit_node(&t->em, IR_OP_ATTENTION, "attention", ins, 4, at, 2, NULL); /* [B, nh, L, d] */
  } else {
    ir_attr_t tb = IR_ATTR_I("trans_b", 1);
    uint32_t qk[2] = {q, k};
    uint32_t s =
        fe_emit_node(&t->em, IR_OP_MATMUL, "scores", qk, 2, &tb, 1, NULL); /* [B, nh, L, L] */
    ir_attr_t sc[2] = {IR_ATTR_F("alpha", 1.0 / sqrt((double)d)), IR_ATTR_F("beta", 0.0)};
    s = fe_emit_node(&t->em, IR_OP_SCALE, "scores_scaled", &s, 1, sc, 2, NULL);
    uint32_t sm[2] = {s, mk->pair_add};
    s = fe_emit_node(&t->em, IR_OP_ADD, "scores_masked", sm, 2, NULL, 0, NULL);
    uint32_t p = fe_emit_node(&t->em, IR_OP_SOFTMAX, "probs", &s, 1, NULL, 0, NULL);
    uint32_t pz[2] = {p, mk->pair};
    p = fe_emit_node(&t->em, IR_OP_MUL, "probs_zeroed", pz, 2, NULL, 0, NULL);
    p = fe_emit_dropout(&t->em, "dropout", p, t->cfg.attn_p);
    uint32_t pv[2] = {p, v};
    o = fe_emit_node(&t->em, IR_OP_MATMUL, "context", pv, 2, NULL, 0, NULL);
  }
  o = merge_heads(t, o); /* [B, L, H] */
  ir_pop_scope(t->em.g);
  ir_push_scope(t->em.g, "output");
  lin_t ld = linear_params(t, "dense", h, h);
  o = linear_apply(t, "dense", o, ld);
  o = fe_emit_dropout(&t->em, "dropout", o, t->cfg.hidden_p);
  ir_pop_scope(t->em.g);
  uint32_t res[2] = {x, o};
  uint32_t y = fe_emit_node(&t->em, IR_OP_ADD, "residual", res, 2, NULL, 0, NULL);
  ir_pop_scope(t->em.g);
  return y;
}

static uint32_t mlp_block(rb_t *t, uint32_t x) {
  int64_t h = t->cfg.hidden, f = t->cfg.inter;
  uint32_t hn = norm(t, "ln", x); /* RNABertLayer.ln */
  ir_push_scope(t->em.g, "mlp");
  /* Declared in the peer's registration order (up, down, gate) so the manifest lists the keys
   * as its state_dict does. */
  lin_t lu = linear_params(t, "up_proj", h, f);
  lin_t ld = linear_params(t, "down_proj", f, h);
  lin_t lg = linear_params(t, "gate_proj", h, f);
  uint32_t gate = linear_apply(t, "gate_proj", hn, lg); /* [B, L, F] */
  uint32_t up = linear_apply(t, "up_proj", hn, lu);
  uint32_t act = fe_emit_node(&t->em, IR_OP_SILU, "act", &gate, 1, NULL, 0, NULL);
  uint32_t gu[2] = {act, up};
  uint32_t prod = fe_emit_node(&t->em, IR_OP_MUL, "gated", gu, 2, NULL, 0, NULL);
  uint32_t down = linear_apply(t, "down_proj", prod, ld); /* [B, L, H] */
  ir_pop_scope(t->em.g);
  ir_push_scope(t->em.g, "output");
  down = fe_emit_dropout(&t->em, "dropout", down, t->cfg.hidden_p);
  ir_pop_scope(t->em.g);
  uint32_t res[2] = {x, down};
  return fe_emit_node(&t->em, IR_OP_ADD, "residual", res, 2, NULL, 0, NULL);
}

/* The symbol of this backbone's length: "L_<omic>", bound max_length (or, without truncation,
 * max_position_embeddings). */
static ad_status_t length_symbol(rb_t *t, const char *omic, int *out) {
  int64_t bound =
      t->c->args[A_MAX_LENGTH].is_null ? t->cfg.max_pos : t->c->args[A_MAX_LENGTH].i;
  const char *name = ad_arena_printf(&t->em.m->arena, "L_%s", omic);
  int s = ir_module_find_symbol(t->em.m, name);
  if (s >= 0) {
    if (t->em.m->symbols[s].bound != bound)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "%s: symbol %s already has bound %lld, not %lld", t->c->prefix, name,
                            (long long)t->em.m->symbols[s].bound, (long long)bound);
    *out = s;
    return AD_OK;
  }
  return ir_module_add_symbol(t->em.m, name, bound, out);
}

static void set_nosave(ir_module_t *m, const char *enc, bool lora_too) {
  size_t n = strlen(enc);
  for (uint32_t i = 0; i < m->nslots; i++) {
    ir_state_slot_t *s = &m->slots[i];
    if (strncmp(s->name, enc, n) != 0) continue;
    bool lora = strstr(s->name, ".lora_A.default.") || strstr(s->name, ".lora_B.default.");
    if (!lora || lora_too) s->flags |= IR_SLOT_NOSAVE;
  }
}

static ad_status_t build(fe_component_ctx_t *c, const char *omic, fe_seq_t *out) {
  const fe_arg_value_t *a = c->args;
  rb_t t = {.em = {.m = c->b->module, .g = c->b->forward, .dt = c->b->dtype},
            .c = c,
            .sb = c->b->sym_batch};
  AD_RETURN_IF_ERROR(resolve_cfg(c->cls, a, c->b->section, &t.cfg));
  /* Peer quirk (docs/ARCHITECTURE.md): a loaded (from_scratch false) RNABert trains in eval
   * mode, its own dropouts off; pass_lora's lora_dropout is a module made after loading. */
  if (c->eval_mode) t.cfg.hidden_p = t.cfg.attn_p = 0.0;
  t.init_w = ad_arena_printf(&t.em.m->arena, "normal(0,%.17g)", t.cfg.init_range);
  AD_RETURN_IF_ERROR(length_symbol(&t, omic, &t.sl));
  bool peft = a[A_USE_PEFT].b;
  int64_t h = t.cfg.hidden;

  /* Inputs live at the top scope under the omic's name. */
  const char *saved_scope = t.em.g->scope;
  t.em.g->scope = "";
  ir_type_t ids_t =
      fe_emit_type(IR_DTYPE_I64, 2, (const int64_t[]){0, 0}, (const int[]){t.sb, t.sl});
  ir_type_t mask_t = fe_emit_type(t.em.dt, 2, (const int64_t[]){0, 0}, (const int[]){t.sb, t.sl});
  uint32_t ids =
      fe_emit_node(&t.em, IR_OP_INPUT, ad_arena_printf(&t.em.m->arena, "%s_input_ids", omic), NULL,
                   0, NULL, 0, &ids_t);
  uint32_t mask =
      fe_emit_node(&t.em, IR_OP_INPUT, ad_arena_printf(&t.em.m->arena, "%s_attention_mask", omic),
                   NULL, 0, NULL, 0, &mask_t);
  ir_push_scope(t.em.g, c->prefix);
  ir_push_scope(t.em.g, "encoder");
  if (peft) ir_push_scope(t.em.g, "base_model.model");

  ir_push_scope(t.em.g, "embeddings");
  ir_push_scope(t.em.g, "word_embeddings");
  uint32_t table = fe_emit_param(&t.em, "weight", 2, t.cfg.vocab, h, t.init_w);
  ir_pop_scope(t.em.g);
  uint32_t emb_in[2] = {table, ids};
  ir_attr_t pad = IR_ATTR_I("padding_idx", t.cfg.pad_id);
  uint32_t x = fe_emit_node(&t.em, IR_OP_EMBEDDING, "word_embeddings", emb_in, 2, &pad, 1, NULL);
  x = fe_emit_dropout(&t.em, "dropout", x, t.cfg.hidden_p); /* [B, L, H] */
  ir_pop_scope(t.em.g);

  /* The peer's constant is finfo(torch.float).min whatever the model dtype. */
  const double fmin = -(double)FLT_MAX;
  masks_t mk = {IR_NONE, IR_NONE, IR_NONE};
  ir_attr_t sc[2] = {IR_ATTR_F("alpha", -fmin), IR_ATTR_F("beta", fmin)};
  ir_type_t kt =
      fe_emit_type(t.em.dt, 4, (const int64_t[]){0, 1, 1, 0}, (const int[]){t.sb, -1, -1, t.sl});
  ir_type_t qt =
      fe_emit_type(t.em.dt, 4, (const int64_t[]){0, 1, 0, 1}, (const int[]){t.sb, -1, t.sl, -1});
  uint32_t mq = fe_emit_node(&t.em, IR_OP_RESHAPE, "query_mask", &mask, 1, NULL, 0, &qt);
  mk.query = mq;
  uint32_t mkv = fe_emit_node(&t.em, IR_OP_RESHAPE, "key_mask", &mask, 1, NULL, 0, &kt);
  uint32_t pr[2] = {mq, mkv};
  /* [B,1,L,L] */
  mk.pair = fe_emit_node(&t.em, IR_OP_MUL, "extended_attention_mask", pr, 2, NULL, 0, NULL);
  mk.pair_add =
      fe_emit_node(&t.em, IR_OP_SCALE, "extended_attention_mask_add", &mk.pair, 1, sc, 2, NULL);

  ir_push_scope(t.em.g, "encoder");
  ir_push_scope(t.em.g, "layer");
  for (int64_t i = 0; i < t.cfg.layers; i++) {
    char idx[24];
    snprintf(idx, sizeof idx, "%lld", (long long)i);
    ir_push_scope(t.em.g, idx);
    x = attention(&t, x, &mk);
    x = mlp_block(&t, x);
    ir_pop_scope(t.em.g);
  }
  ir_pop_scope(t.em.g);
  x = norm(&t, "ln", x); /* last_hidden_state [B, L, H] */
  ir_pop_scope(t.em.g);
  if (t.cfg.pooler) {
    /* RNABertModel(add_pooling_layer=True): a pooler the backbone output never reads. */
    ir_push_scope(t.em.g, "pooler");
    ir_push_scope(t.em.g, "dense");
    const char *w = fe_emit_scoped(&t.em, "weight"), *b = fe_emit_scoped(&t.em, "bias");
    ir_type_t wt = fe_emit_type(t.em.dt, 2, (const int64_t[]){h, h}, NULL);
    ir_type_t bt = fe_emit_type(t.em.dt, 1, (const int64_t[]){h}, NULL);
    if (!t.em.err)
      t.em.err = ir_module_add_slot(
          t.em.m, w, &wt, IR_SLOT_PARAM | IR_SLOT_TRAINABLE | IR_SLOT_UNUSED, t.init_w, NULL);
    if (!t.em.err && t.cfg.bias)
      t.em.err = ir_module_add_slot(
          t.em.m, b, &bt, IR_SLOT_PARAM | IR_SLOT_TRAINABLE | IR_SLOT_UNUSED, "zeros", NULL);
    ir_pop_scope(t.em.g);
    ir_pop_scope(t.em.g);
  }
  t.em.g->scope = saved_scope; /* "base_model.model" is two scope levels: restore, not pop */
  if (t.em.err) return t.em.err;
  AD_RETURN_IF_ERROR(ir_graph_take_error(t.em.g));

  uint32_t held[2] = {x, mask};
  const char *enc = ad_arena_printf(&t.em.m->arena, "%s.encoder.", c->prefix);
  if (peft) {
    const char *targets_default[2] = {"query", "value"};
    const char *targets[64];
    uint32_t nt = 0;
    const fe_node_t *tl = a[A_LORA_TARGETS].is_null ? NULL : a[A_LORA_TARGETS].list;
    if (!tl) {
      targets[0] = targets_default[0];
      targets[1] = targets_default[1];
      nt = 2;
    } else {
      if (tl->n > 64) return fe_error_at(tl, "lora_target_modules: at most 64 names");
      for (uint32_t i = 0; i < tl->n; i++) targets[nt++] = tl->items[i]->scalar;
    }
    pass_lora_options_t lo = {.prefix = c->prefix,
                              .targets = targets,
                              .ntargets = nt,
                              .r = a[A_LORA_R].i,
                              .alpha = (double)a[A_LORA_ALPHA].i,
                              .dropout = a[A_LORA_DROPOUT].f};
    ad_status_t st = pass_lora(t.em.m, t.em.g, &lo, held, 2, NULL);
    if (st) {
      const fe_node_t *where = tl ? tl : a[A_USE_PEFT].node ? a[A_USE_PEFT].node : c->b->section;
      ad_status_t e = err_at(where, "%s", ad_status_message(st));
      ad_status_free(st);
      return e;
    }
  } else if (a[A_FROZEN].b) {
    AD_RETURN_IF_ERROR(
        pass_freeze(t.em.m, ad_arena_printf(&t.em.m->arena, "%s.encoder", c->prefix), NULL));
  }
  if ((peft || a[A_FROZEN].b) && a[A_SAVE_PEFT_ONLY].b) set_nosave(t.em.m, enc, a[A_FROZEN].b);

  out->hidden = held[0];
  out->mask = held[1];
  out->size = h;
  out->len_sym = t.sl;
  return AD_OK;
}

static void describe(const fe_class_t *cls, const fe_arg_value_t *a, fe_job_backbone_t *out) {
  out->tokenizer = FE_TOKENIZER_RNABERT;
  out->hub_id = cls == &fe_class_aido_rna_650m      ? "genbio-ai/AIDO.RNA-650M"
                : cls == &fe_class_aido_rna_1b600m ? "genbio-ai/AIDO.RNA-1.6B"
                                                   : "genbio-ai/AIDO.RNA-1.6B-CDS";
  out->pretrained = !a[A_FROM_SCRATCH].b;
}

static const fe_backbone_ops_t k_ops = {
    .embedding_size = embedding_size, .build = build, .describe = describe};

const fe_class_t fe_class_aido_rna_650m = {
    .class_path = "modelgenerator.backbones.aido_rna_650m",
    .section = "model",
    .args = k_args,
    .nargs = sizeof k_args / sizeof k_args[0],
    .check = check_args,
    .kind = FE_CLASS_BACKBONE,
    .backbone = &k_ops,
};

const fe_class_t fe_class_aido_rna_1b600m = {
    .class_path = "modelgenerator.backbones.aido_rna_1b600m",
    .section = "model",
    .args = k_args,
    .nargs = sizeof k_args / sizeof k_args[0],
    .check = check_args,
    .kind = FE_CLASS_BACKBONE,
    .backbone = &k_ops,
};

const fe_class_t fe_class_aido_rna_1b600m_cds = {
    .class_path = "modelgenerator.backbones.aido_rna_1b600m_cds",
    .section = "model",
    .args = k_args,
    .nargs = sizeof k_args / sizeof k_args[0],
    .check = check_args,
    .kind = FE_CLASS_BACKBONE,
    .backbone = &k_ops,
};

static const rna_cfg_t *class_cfg(const fe_class_t *cls) {
  return cls == &fe_class_aido_rna_650m ? &k_cfg_650m : &k_cfg_1b600m;
}
