/* modelgenerator.backbones.esm2_{8m,35m,150m,650m}: ModelGenerator's `ESM` wrapper
 * (modelgenerator/backbones/backbones.py) around transformers 4.38.0 `EsmModel` (AutoModel),
 * optionally under peft 0.13.2 LoRA. Parameter slots are the peer's state_dict keys,
 * "<prefix>.encoder.<EsmModel path>" ("<prefix>.encoder.base_model.model.<path>" with use_peft);
 * tests/golden/keys/esm2_*.txt (tools/golden/esm2.py) are the peer's tables they must equal.
 *
 * PyTorch equivalent (EsmModel.forward with the hub configs: rotary, token_dropout, no
 * emb_layer_norm_before, gelu = erf GELU, pre-LN layers):
 *   x = word_embeddings(ids)                                           # [B, L, H], padding_idx
 *   x = token_dropout(x, ids, mask)     # rows of <mask> zeroed, x (1-0.12)/(1-n_mask/n_valid),
 *                                       # then x * mask (ESM_TOKEN_DROPOUT)
 *   x = dropout(x)
 *   madd = (1 - mask)[:, None, None, :] * finfo(dtype).min                 # keys only
 *   for layer in encoder.layer:
 *     h = layer.attention.LayerNorm(x)
 *     q = heads(query(h)) * d^-0.5; k = heads(key(h)); v = heads(value(h))  # [B, nh, L, d]
 *     q, k = rope(q), rope(k)                    # after the scaling, as the peer does
 *     o = softmax(q k^T + madd) v                                          # scale 1
 *     x = x + dropout(attention.output.dense(merge(o)))
 *     h = layer.LayerNorm(x)
 *     x = x + dropout(output.dense(gelu_erf(intermediate.dense(h))))
 *   last_hidden_state = encoder.emb_layer_norm_after(x)
 * embeddings.position_embeddings (EsmEmbeddings builds it even for rotary in 4.38), pooler.dense
 * and contact_head.regression are parameters the forward never reads: IR_SLOT_UNUSED slots.
 * Each layer's rotary_embeddings.inv_freq is a persistent buffer in the state_dict: a
 * BUFFER | UNUSED slot (the ROTARY op computes the same frequencies itself).
 *
 * Arguments follow ESM.__init__: there is no from_scratch (the peer's ESM rejects it as an
 * unexpected keyword), and use_peft with lora_target_modules null is an error, as in peft
 * 0.13.2, which has no default LoRA targets for model_type "esm". With use_peft, frozen is
 * ignored for training (as ESM.setup); otherwise frozen runs pass_freeze on "<prefix>.encoder".
 * save_peft_only (ESM.on_save_checkpoint) marks the encoder slots it drops IR_SLOT_NOSAVE.
 * Without max_length the length symbol L_<omic> is bounded by max_position_embeddings. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "frontend/emit.h"
#include "frontend/fe_internal.h"
#include "passes/passes.h"

static const fe_arg_spec_t k_args[] = {
    {"max_length", FE_ARG_INT, FE_ARG_POSITIVE | FE_ARG_NULLABLE | FE_ARG_KEY_BOUND, "null"},
    {"use_peft", FE_ARG_BOOL, 0, "false"},
    {"frozen", FE_ARG_BOOL, 0, "false"},
    {"save_peft_only", FE_ARG_BOOL, 0, "true"},
    {"lora_r", FE_ARG_INT, FE_ARG_POSITIVE, "16"},
    {"lora_alpha", FE_ARG_INT, FE_ARG_POSITIVE, "32"},
    {"lora_dropout", FE_ARG_FLOAT, FE_ARG_PROB, "0.1"},
    {"lora_target_modules", FE_ARG_LIST, FE_ARG_NULLABLE, "null"},
    {"lora_modules_to_save", FE_ARG_LIST, FE_ARG_NULLABLE, "null"},
    {"lora_use_rslora", FE_ARG_BOOL, 0, "false"},
    {"config_overwrites", FE_ARG_MAP, FE_ARG_NULLABLE, "null"},
    {"model_init_args", FE_ARG_MAP, FE_ARG_NULLABLE | FE_ARG_IGNORED, "null"},
    {"enable_cache", FE_ARG_BOOL, FE_ARG_IGNORED, "false"},
    {"file_cache_dir", FE_ARG_STRING, FE_ARG_NULLABLE | FE_ARG_IGNORED, "null"},
    {"overwrite_file_cache", FE_ARG_BOOL, FE_ARG_IGNORED, "false"},
    {"cache_write_buffer_size", FE_ARG_INT, FE_ARG_IGNORED, "1000"},
    {"cache_storage_backend", FE_ARG_STRING, FE_ARG_IGNORED, "indexed"},
};
enum {
  A_MAX_LENGTH,
  A_USE_PEFT,
  A_FROZEN,
  A_SAVE_PEFT_ONLY,
  A_LORA_R,
  A_LORA_ALPHA,
  A_LORA_DROPOUT,
  A_LORA_TARGETS,
  A_LORA_SAVE,
  A_LORA_RSLORA,
  A_OVERWRITES,
};

#define ROPE_BASE 10000.0

/* EsmConfig, after the hub config.json and config_overwrites. */
typedef struct esm_hp {
  int64_t vocab, hidden, layers, heads, ffn, max_pos, mask_token, pad_token;
  double eps, hidden_dropout, attn_dropout, init_range;
  bool token_dropout;
} esm_hp_t;

typedef struct esm_size {
  const char *class_path;
  int64_t layers, hidden, heads, ffn;
} esm_size_t;

/* facebook/esm2_t{6,12,30,33}_*_UR50D config.json (see tools/golden/esm2.py for sources). */
static const esm_size_t k_sizes[] = {
    {"modelgenerator.backbones.esm2_8m", 6, 320, 20, 1280},
    {"modelgenerator.backbones.esm2_35m", 12, 480, 20, 1920},
    {"modelgenerator.backbones.esm2_150m", 30, 640, 20, 2560},
    {"modelgenerator.backbones.esm2_650m", 33, 1280, 20, 5120},
};

/* EsmConfig / PretrainedConfig fields that change nothing aidomm builds. */
static const char *const k_inert_keys[] = {
    "use_cache",   "is_folding_model", "esmfold_config", "vocab_list",  "output_hidden_states",
    "output_attentions", "return_dict", "torch_dtype", "architectures", "model_type",
    "transformers_version", "classifier_dropout", "bos_token_id", "eos_token_id",
};
static const char *const k_effect_keys[] = {
    "vocab_size",          "hidden_size",          "num_hidden_layers",
    "num_attention_heads", "intermediate_size",    "max_position_embeddings",
    "mask_token_id",       "pad_token_id",         "layer_norm_eps",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range",
    "token_dropout",       "emb_layer_norm_before", "hidden_act",
    "position_embedding_type",
};

static const esm_size_t *size_of(const fe_class_t *cls) {
  for (size_t i = 0; i < sizeof k_sizes / sizeof k_sizes[0]; i++)
    if (strcmp(cls->class_path, k_sizes[i].class_path) == 0) return &k_sizes[i];
  return &k_sizes[2];
}

static ad_status_t ow_int(const fe_node_t *v, const char *key, int64_t lo, int64_t *out) {
  int64_t x;
  if (!fe_scalar_int(v, &x))
    return fe_error_at(v, "config_overwrites.%s: expected an integer", key);
  if (x < lo)
    return fe_error_at(v, "config_overwrites.%s must be >= %lld, got %lld", key, (long long)lo,
                       (long long)x);
  *out = x;
  return AD_OK;
}

static ad_status_t ow_float(const fe_node_t *v, const char *key, double lo, double hi,
                            double *out) {
  double x;
  if (!fe_scalar_float(v, &x))
    return fe_error_at(v, "config_overwrites.%s: expected a number", key);
  if (!(x >= lo && x < hi))
    return fe_error_at(v, "config_overwrites.%s must be in [%g, %g), got %g", key, lo, hi, x);
  *out = x;
  return AD_OK;
}

/* The EsmConfig the peer builds: the hub config of this size, then nested_set_config. */
static ad_status_t resolve_hp(const fe_class_t *cls, const fe_arg_value_t *a, esm_hp_t *hp) {
  const esm_size_t *s = size_of(cls);
  *hp = (esm_hp_t){.vocab = 33,
                   .hidden = s->hidden,
                   .layers = s->layers,
                   .heads = s->heads,
                   .ffn = s->ffn,
                   .max_pos = 1026,
                   .mask_token = 32,
                   .pad_token = 1,
                   .eps = 1e-5,
                   .init_range = 0.02,
                   .token_dropout = true};
  const fe_node_t *ow = a[A_OVERWRITES].is_null ? NULL : a[A_OVERWRITES].list;
  const fe_node_t *hidden_node = NULL, *heads_node = NULL;
  for (uint32_t i = 0; ow && i < ow->n; i++) {
    const char *k = ow->keys[i];
    const fe_node_t *v = ow->items[i];
    bool b;
    if (strcmp(k, "vocab_size") == 0) AD_RETURN_IF_ERROR(ow_int(v, k, 1, &hp->vocab));
    else if (strcmp(k, "hidden_size") == 0) {
      AD_RETURN_IF_ERROR(ow_int(v, k, 1, &hp->hidden));
      hidden_node = v;
    } else if (strcmp(k, "num_hidden_layers") == 0)
      AD_RETURN_IF_ERROR(ow_int(v, k, 0, &hp->layers));
    else if (strcmp(k, "num_attention_heads") == 0) {
      AD_RETURN_IF_ERROR(ow_int(v, k, 1, &hp->heads));
      heads_node = v;
    } else if (strcmp(k, "intermediate_size") == 0) AD_RETURN_IF_ERROR(ow_int(v, k, 1, &hp->ffn));
    else if (strcmp(k, "max_position_embeddings") == 0)
      AD_RETURN_IF_ERROR(ow_int(v, k, 1, &hp->max_pos));
    else if (strcmp(k, "mask_token_id") == 0) AD_RETURN_IF_ERROR(ow_int(v, k, 0, &hp->mask_token));
    else if (strcmp(k, "pad_token_id") == 0) AD_RETURN_IF_ERROR(ow_int(v, k, 0, &hp->pad_token));
    else if (strcmp(k, "layer_norm_eps") == 0)
      AD_RETURN_IF_ERROR(ow_float(v, k, DBL_MIN, 1.0, &hp->eps));
    else if (strcmp(k, "hidden_dropout_prob") == 0)
      AD_RETURN_IF_ERROR(ow_float(v, k, 0.0, 1.0, &hp->hidden_dropout));
    else if (strcmp(k, "attention_probs_dropout_prob") == 0) {
      AD_RETURN_IF_ERROR(ow_float(v, k, 0.0, 1.0, &hp->attn_dropout));
      /* The attention op has no dropout on the probabilities; every ESM2 config uses 0. */
      if (hp->attn_dropout != 0.0)
        return fe_error_at(v, "config_overwrites.attention_probs_dropout_prob: only 0 is "
                              "supported for ESM2 (the hub configs use 0)");
    } else if (strcmp(k, "initializer_range") == 0)
      AD_RETURN_IF_ERROR(ow_float(v, k, 0.0, 1e9, &hp->init_range));
    else if (strcmp(k, "token_dropout") == 0) {
      if (!fe_scalar_bool(v, &b))
        return fe_error_at(v, "config_overwrites.token_dropout: expected true or false");
      hp->token_dropout = b;
    } else if (strcmp(k, "emb_layer_norm_before") == 0) {
      if (!fe_scalar_bool(v, &b))
        return fe_error_at(v, "config_overwrites.emb_layer_norm_before: expected true or false");
      if (b)
        return fe_error_at(v, "config_overwrites.emb_layer_norm_before: true (ESM-1b style) is "
                              "not supported; ESM2 uses false");
    } else if (strcmp(k, "hidden_act") == 0) {
      if (v->kind != FE_NODE_SCALAR || strcmp(v->scalar, "gelu") != 0)
        return fe_error_at(v, "config_overwrites.hidden_act: only \"gelu\" (ESM's erf GELU) is "
                              "supported");
    } else if (strcmp(k, "position_embedding_type") == 0) {
      if (v->kind != FE_NODE_SCALAR || strcmp(v->scalar, "rotary") != 0)
        return fe_error_at(v, "config_overwrites.position_embedding_type: only \"rotary\" "
                              "(ESM2) is supported");
    } else {
      bool inert = false;
      for (size_t j = 0; j < sizeof k_inert_keys / sizeof k_inert_keys[0]; j++)
        inert |= strcmp(k, k_inert_keys[j]) == 0;
      if (inert) continue;
      const char *near =
          fe_closest(k, k_effect_keys, sizeof k_effect_keys / sizeof k_effect_keys[0]);
      if (near)
        return fe_error_at_key(ow, i, "config_overwrites.%s is not an EsmConfig field; did you "
                                      "mean '%s'?", k, near);
      return fe_error_at_key(ow, i, "config_overwrites.%s is not an EsmConfig field", k);
    }
  }
  const fe_node_t *where = heads_node ? heads_node : hidden_node ? hidden_node : ow;
  if (hp->hidden % hp->heads != 0)
    return fe_error_at(where, "hidden size %lld is not divisible by %lld heads",
                       (long long)hp->hidden, (long long)hp->heads);
  if ((hp->hidden / hp->heads) % 2 != 0)
    return fe_error_at(where, "head size %lld (hidden size / heads) must be even for rotary "
                              "embeddings", (long long)(hp->hidden / hp->heads));
  if (hp->pad_token >= hp->vocab || hp->mask_token >= hp->vocab)
    return fe_error_at(ow, "config_overwrites: pad_token_id %lld and mask_token_id %lld must be "
                           "below vocab_size %lld", (long long)hp->pad_token,
                       (long long)hp->mask_token, (long long)hp->vocab);
  return AD_OK;
}

static ad_status_t check_args(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                              const fe_node_t *section) {
  esm_hp_t hp;
  AD_RETURN_IF_ERROR(resolve_hp(cls, a, &hp));
  const fe_node_t *peft = a[A_USE_PEFT].node ? a[A_USE_PEFT].node : section;
  if (a[A_USE_PEFT].b) {
    if (a[A_LORA_TARGETS].is_null || !a[A_LORA_TARGETS].list)
      return fe_error_at(peft,
                         "%s.init_args: use_peft needs lora_target_modules (peft 0.13.2 "
                         "has no default LoRA targets for ESM: \"Please specify "
                         "`target_modules` in `peft_config`\"), e.g. [query, value]",
                         path);
    const fe_node_t *t = a[A_LORA_TARGETS].list;
    if (t->n == 0)
      return fe_error_at(t, "%s.init_args.lora_target_modules: empty list", path);
    for (uint32_t i = 0; i < t->n; i++)
      if (t->items[i]->kind != FE_NODE_SCALAR || !t->items[i]->scalar[0])
        return fe_error_at(t->items[i], "%s.init_args.lora_target_modules: expected module "
                                        "names", path);
    if (a[A_LORA_RSLORA].b)
      return fe_error_at(a[A_LORA_RSLORA].node, "%s.init_args.lora_use_rslora: rank-stabilised "
                                                "LoRA is not supported", path);
    if (!a[A_LORA_SAVE].is_null && a[A_LORA_SAVE].list && a[A_LORA_SAVE].list->n > 0)
      return fe_error_at(a[A_LORA_SAVE].list, "%s.init_args.lora_modules_to_save is not "
                                              "supported", path);
  }
  return AD_OK;
}

static ad_status_t embedding_size(const fe_class_t *cls, const fe_arg_value_t *args, int64_t *out) {
  esm_hp_t hp;
  AD_RETURN_IF_ERROR(resolve_hp(cls, args, &hp));
  *out = hp.hidden;
  return AD_OK;
}

/* ---- emission ------------------------------------------------------------------------------ */
typedef struct esm {
  fe_emit_t em; /* module, forward program, model dtype, first declaration failure */
  fe_component_ctx_t *c;
  esm_hp_t hp;
  const char *base; /* "<prefix>.encoder" or "<prefix>.encoder.base_model.model" */
  int sb, sl;
} esm_t;

static const char *fmt(esm_t *e, const char *f, const char *a, const char *b) {
  return ad_arena_printf(&e->em.m->arena, f, a, b);
}

/* Declares slot "<base>.<path>" (state_dict order is declaration order). */
static void slot(esm_t *e, const char *path, int rank, int64_t d0, int64_t d1, uint32_t flags,
                 const char *init) {
  if (e->em.err) return;
  const int64_t dims[2] = {d0, d1};
  ir_type_t ty = fe_emit_type(e->em.dt, rank, dims, NULL);
  e->em.err = ir_module_add_slot(e->em.m, fmt(e, "%s.%s", e->base, path), &ty, flags, init, NULL);
}

static const char *param_init(esm_t *e) {
  return ad_arena_printf(&e->em.m->arena, "normal(0,%.17g)", e->hp.init_range);
}

#define P_TRAIN (IR_SLOT_PARAM | IR_SLOT_TRAINABLE)

static void linear_slots(esm_t *e, const char *path, int64_t in, int64_t out, uint32_t extra) {
  slot(e, fmt(e, "%s.%s", path, "weight"), 2, out, in, P_TRAIN | extra, param_init(e));
  slot(e, fmt(e, "%s.%s", path, "bias"), 1, out, 0, P_TRAIN | extra, "zeros");
}

static void ln_slots(esm_t *e, const char *path) {
  slot(e, fmt(e, "%s.%s", path, "weight"), 1, e->hp.hidden, 0, P_TRAIN, "ones");
  slot(e, fmt(e, "%s.%s", path, "bias"), 1, e->hp.hidden, 0, P_TRAIN, "zeros");
}

/* STATE_IN of "<base>.<path>", node named after the slot's local part under the scope. */
static uint32_t read(esm_t *e, const char *path) {
  if (e->em.err) return IR_NONE;
  const char *name = fmt(e, "%s.%s", e->base, path);
  int64_t s = ir_module_find_slot(e->em.m, name);
  if (s < 0) {
    e->em.err = ad_status_make(AD_STATUS_INTERNAL, "esm2 builder: no slot '%s'", name);
    return IR_NONE;
  }
  ir_attr_t a = IR_ATTR_S("slot", name);
  const char *saved = e->em.g->scope;
  e->em.g->scope = "";
  uint32_t v = fe_emit_node(&e->em, IR_OP_STATE_IN, name, NULL, 0, &a, 1, &e->em.m->slots[s].type);
  e->em.g->scope = saved;
  return v;
}

static uint32_t linear(esm_t *e, const char *path, const char *name, uint32_t x) {
  uint32_t ins[3] = {x, read(e, fmt(e, "%s.%s", path, "weight")),
                     read(e, fmt(e, "%s.%s", path, "bias"))};
  return fe_emit_node(&e->em, IR_OP_LINEAR, name, ins, 3, NULL, 0, NULL);
}

static uint32_t layernorm(esm_t *e, const char *path, const char *name, uint32_t x) {
  uint32_t ins[3] = {x, read(e, fmt(e, "%s.%s", path, "weight")),
                     read(e, fmt(e, "%s.%s", path, "bias"))};
  ir_attr_t a = IR_ATTR_F("eps", e->hp.eps);
  return fe_emit_node(&e->em, IR_OP_LAYERNORM, name, ins, 3, &a, 1, NULL);
}

/* nn.Dropout(hidden_dropout_prob); p == 0 is the identity in torch, so nothing is emitted. */
static uint32_t dropout(esm_t *e, const char *name, uint32_t x) {
  return fe_emit_dropout(&e->em, name, x, e->hp.hidden_dropout);
}

static uint32_t split_heads(esm_t *e, const char *name, uint32_t x) {
  int64_t nh = e->hp.heads, d = e->hp.hidden / nh;
  ir_type_t ty = fe_emit_type(e->em.dt, 4, (const int64_t[]){0, 0, nh, d},
                              (const int[]){e->sb, e->sl, -1, -1});
  uint32_t r = fe_emit_node(&e->em, IR_OP_RESHAPE, NULL, &x, 1, NULL, 0, &ty);
  const int64_t perm[4] = {0, 2, 1, 3};
  ir_attr_t a = IR_ATTR_INTS("perm", perm, 4);
  return fe_emit_node(&e->em, IR_OP_PERMUTE, name, &r, 1, &a, 1, NULL); /* [B, nh, L, d] */
}

static uint32_t layer(esm_t *e, const char *lp, uint32_t x, uint32_t madd) {
  int64_t h = e->hp.hidden, d = h / e->hp.heads;
  /* EsmAttention: LayerNorm -> EsmSelfAttention -> EsmSelfOutput (dense, dropout, residual) */
  ir_push_scope(e->em.g, "attention");
  uint32_t hn = layernorm(e, fmt(e, "%s.%s", lp, "attention.LayerNorm"), "LayerNorm", x);
  ir_push_scope(e->em.g, "self");
  uint32_t q = linear(e, fmt(e, "%s.%s", lp, "attention.self.query"), "query", hn);
  uint32_t k = linear(e, fmt(e, "%s.%s", lp, "attention.self.key"), "key", hn);
  uint32_t v = linear(e, fmt(e, "%s.%s", lp, "attention.self.value"), "value", hn);
  q = split_heads(e, "q_heads", q);
  k = split_heads(e, "k_heads", k);
  v = split_heads(e, "v_heads", v);
  /* query_layer * attention_head_size**-0.5 (a Python float), before the rotary embedding */
  ir_attr_t qs[2] = {IR_ATTR_F("alpha", pow((double)d, -0.5)), IR_ATTR_F("beta", 0.0)};
  q = fe_emit_node(&e->em, IR_OP_SCALE, "q_scaled", &q, 1, qs, 2, NULL);
  ir_attr_t ra[2] = {IR_ATTR_F("base", ROPE_BASE), IR_ATTR_I("inverse", 0)};
  q = fe_emit_node(&e->em, IR_OP_ROTARY, "q_rotary", &q, 1, ra, 2, NULL);
  k = fe_emit_node(&e->em, IR_OP_ROTARY, "k_rotary", &k, 1, ra, 2, NULL);
  uint32_t ins[4] = {q, k, v, madd};
  ir_attr_t sc = IR_ATTR_F("scale", 1.0);
  uint32_t o =
      fe_emit_node(&e->em, IR_OP_ATTENTION, "attention", ins, 4, &sc, 1, NULL); /* [B, nh, L, d] */
  const int64_t perm[4] = {0, 2, 1, 3};
  ir_attr_t pa = IR_ATTR_INTS("perm", perm, 4);
  o = fe_emit_node(&e->em, IR_OP_PERMUTE, NULL, &o, 1, &pa, 1, NULL);
  ir_type_t mt =
      fe_emit_type(e->em.dt, 3, (const int64_t[]){0, 0, h}, (const int[]){e->sb, e->sl, -1});
  o = fe_emit_node(&e->em, IR_OP_RESHAPE, "context", &o, 1, NULL, 0, &mt); /* [B, L, H] */
  ir_pop_scope(e->em.g);
  ir_push_scope(e->em.g, "output");
  o = linear(e, fmt(e, "%s.%s", lp, "attention.output.dense"), "dense", o);
  o = dropout(e, "dropout", o);
  uint32_t r1[2] = {o, x};
  x = fe_emit_node(&e->em, IR_OP_ADD, "residual", r1, 2, NULL, 0, NULL);
  ir_pop_scope(e->em.g);
  ir_pop_scope(e->em.g);
  /* feed_forward_chunk: LayerNorm -> EsmIntermediate (dense, gelu) -> EsmOutput */
  hn = layernorm(e, fmt(e, "%s.%s", lp, "LayerNorm"), "LayerNorm", x);
  ir_push_scope(e->em.g, "intermediate");
  uint32_t f = linear(e, fmt(e, "%s.%s", lp, "intermediate.dense"), "dense", hn); /* [B, L, F] */
  f = fe_emit_node(&e->em, IR_OP_GELU_ERF, "gelu", &f, 1, NULL, 0, NULL);
  ir_pop_scope(e->em.g);
  ir_push_scope(e->em.g, "output");
  f = linear(e, fmt(e, "%s.%s", lp, "output.dense"), "dense", f);
  f = dropout(e, "dropout", f);
  uint32_t r2[2] = {f, x};
  x = fe_emit_node(&e->em, IR_OP_ADD, "residual", r2, 2, NULL, 0, NULL);
  ir_pop_scope(e->em.g);
  return x;
}

/* Slots in EsmModel.state_dict() order (tests/golden/keys/esm2_*.txt). */
static void declare_slots(esm_t *e) {
  const esm_hp_t *hp = &e->hp;
  int64_t h = hp->hidden;
  slot(e, "embeddings.word_embeddings.weight", 2, hp->vocab, h, P_TRAIN, "normal(0,0.02)");
  slot(e, "embeddings.position_embeddings.weight", 2, hp->max_pos, h, P_TRAIN | IR_SLOT_UNUSED,
       "normal(0,0.02)");
  for (int64_t i = 0; i < hp->layers; i++) {
    char lp[48];
    snprintf(lp, sizeof lp, "encoder.layer.%lld", (long long)i);
    linear_slots(e, fmt(e, "%s.%s", lp, "attention.self.query"), h, h, 0);
    linear_slots(e, fmt(e, "%s.%s", lp, "attention.self.key"), h, h, 0);
    linear_slots(e, fmt(e, "%s.%s", lp, "attention.self.value"), h, h, 0);
    /* A constant the ROTARY op recomputes; kept as a buffer because the peer saves it. */
    slot(e, fmt(e, "%s.%s", lp, "attention.self.rotary_embeddings.inv_freq"), 1, h / hp->heads / 2,
         0, IR_SLOT_BUFFER | IR_SLOT_UNUSED,
         ad_arena_printf(&e->em.m->arena, "rope_inv_freq(10000,%lld)", (long long)(h / hp->heads)));
    linear_slots(e, fmt(e, "%s.%s", lp, "attention.output.dense"), h, h, 0);
    ln_slots(e, fmt(e, "%s.%s", lp, "attention.LayerNorm"));
    linear_slots(e, fmt(e, "%s.%s", lp, "intermediate.dense"), h, hp->ffn, 0);
    linear_slots(e, fmt(e, "%s.%s", lp, "output.dense"), hp->ffn, h, 0);
    ln_slots(e, fmt(e, "%s.%s", lp, "LayerNorm"));
  }
  ln_slots(e, "encoder.emb_layer_norm_after");
  linear_slots(e, "pooler.dense", h, h, IR_SLOT_UNUSED);
  /* EsmContactPredictionHead(in_features = layers * heads), bias=True */
  linear_slots(e, "contact_head.regression", hp->layers * hp->heads, 1, IR_SLOT_UNUSED);
}

static ad_status_t build(fe_component_ctx_t *c, const char *omic, fe_seq_t *out) {
  const fe_arg_value_t *a = c->args;
  esm_t e = {.em = {.m = c->b->module, .g = c->b->forward, .dt = c->b->dtype}, .c = c};
  AD_RETURN_IF_ERROR(resolve_hp(c->cls, a, &e.hp));
  /* Peer quirk (docs/ARCHITECTURE.md): the peer always loads ESM2 with from_pretrained and so
   * trains it in eval mode, its own dropouts off; pass_lora's lora_dropout stays. */
  if (c->eval_mode) e.hp.hidden_dropout = e.hp.attn_dropout = 0.0;
  bool peft = a[A_USE_PEFT].b;
  e.base =
      ad_arena_printf(&e.em.m->arena, "%s.encoder%s", c->prefix, peft ? ".base_model.model" : "");

  /* The per-modality length symbol "L_<omic>", bounded by max_length (tokens, specials
   * included) or, without truncation, max_position_embeddings (as the AIDO.RNA builder). */
  int64_t bound = a[A_MAX_LENGTH].is_null ? e.hp.max_pos : a[A_MAX_LENGTH].i;
  const char *lname = ad_arena_printf(&e.em.m->arena, "L_%s", omic);
  e.sl = ir_module_find_symbol(e.em.m, lname);
  if (e.sl < 0)
    AD_RETURN_IF_ERROR(ir_module_add_symbol(e.em.m, lname, bound, &e.sl));
  else if (e.em.m->symbols[e.sl].bound != bound)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "%s: length symbol %s already bound to %lld, not %lld", c->prefix, lname,
                          (long long)e.em.m->symbols[e.sl].bound, (long long)bound);
  e.sb = c->b->sym_batch;

  declare_slots(&e);
  if (e.em.err) return e.em.err;

  const char *saved = e.em.g->scope;
  e.em.g->scope = "";
  ir_type_t ids_t =
      fe_emit_type(IR_DTYPE_I64, 2, (const int64_t[]){0, 0}, (const int[]){e.sb, e.sl});
  ir_type_t mask_t = fe_emit_type(e.em.dt, 2, (const int64_t[]){0, 0}, (const int[]){e.sb, e.sl});
  uint32_t ids = fe_emit_node(&e.em, IR_OP_INPUT, fmt(&e, "%s_%s", omic, "input_ids"), NULL, 0,
                              NULL, 0, &ids_t);
  uint32_t mask = fe_emit_node(&e.em, IR_OP_INPUT, fmt(&e, "%s_%s", omic, "attention_mask"), NULL,
                               0, NULL, 0, &mask_t);
  e.em.g->scope = saved;

  /* e.base has several dotted parts, which ir_pop_scope would take off one at a time. */
  const char *outer = e.em.g->scope;
  ir_push_scope(e.em.g, e.base);
  ir_push_scope(e.em.g, "embeddings");
  uint32_t emb_in[2] = {read(&e, "embeddings.word_embeddings.weight"), ids};
  ir_attr_t pad = IR_ATTR_I("padding_idx", e.hp.pad_token);
  uint32_t x = fe_emit_node(&e.em, IR_OP_EMBEDDING, "word_embeddings", emb_in, 2, &pad, 1, NULL);
  if (e.hp.token_dropout) {
    uint32_t td_in[3] = {x, ids, mask};
    ir_attr_t td[2] = {IR_ATTR_I("mask_token", e.hp.mask_token), IR_ATTR_F("ratio", 0.15 * 0.8)};
    x = fe_emit_node(&e.em, IR_OP_ESM_TOKEN_DROPOUT, "token_dropout", td_in, 3, td, 2, NULL);
  } else {
    /* embeddings * attention_mask.unsqueeze(-1) */
    ir_type_t m3 =
        fe_emit_type(e.em.dt, 3, (const int64_t[]){0, 0, 1}, (const int[]){e.sb, e.sl, -1});
    uint32_t m = fe_emit_node(&e.em, IR_OP_RESHAPE, "mask3", &mask, 1, NULL, 0, &m3);
    uint32_t mm[2] = {x, m};
    x = fe_emit_node(&e.em, IR_OP_MUL, "masked", mm, 2, NULL, 0, NULL);
  }
  x = dropout(&e, "dropout", x); /* [B, L, H] */
  ir_pop_scope(e.em.g);

  /* get_extended_attention_mask: (1 - mask) * finfo.min == mask * (-min) + min, exact for a
   * 0/1 mask; added to the scores of every head and query. */
  double fmin = e.em.dt == IR_DTYPE_F64 ? -DBL_MAX : -(double)FLT_MAX;
  ir_attr_t sc[2] = {IR_ATTR_F("alpha", -fmin), IR_ATTR_F("beta", fmin)};
  uint32_t madd =
      fe_emit_node(&e.em, IR_OP_SCALE, "extended_attention_mask", &mask, 1, sc, 2, NULL);
  ir_type_t m4 =
      fe_emit_type(e.em.dt, 4, (const int64_t[]){0, 1, 1, 0}, (const int[]){e.sb, -1, -1, e.sl});
  madd = fe_emit_node(&e.em, IR_OP_RESHAPE, "extended_attention_mask.view", &madd, 1, NULL, 0, &m4);

  ir_push_scope(e.em.g, "encoder");
  ir_push_scope(e.em.g, "layer");
  for (int64_t i = 0; i < e.hp.layers; i++) {
    char idx[24], lp[48];
    snprintf(idx, sizeof idx, "%lld", (long long)i);
    snprintf(lp, sizeof lp, "encoder.layer.%lld", (long long)i);
    ir_push_scope(e.em.g, idx);
    x = layer(&e, lp, x, madd);
    ir_pop_scope(e.em.g);
  }
  ir_pop_scope(e.em.g);
  x = layernorm(&e, "encoder.emb_layer_norm_after", "emb_layer_norm_after", x);
  e.em.g->scope = outer;
  if (e.em.err) return e.em.err;
  ad_status_t gst = ir_graph_take_error(e.em.g);
  if (gst) return ad_status_annotate(gst, "building %s for %s", c->cls->class_path, c->prefix);

  if (peft) {
    const fe_node_t *t = a[A_LORA_TARGETS].list;
    const char *targets[32];
    uint32_t nt = 0;
    for (uint32_t i = 0; t && i < t->n && nt < 32; i++) targets[nt++] = t->items[i]->scalar;
    pass_lora_options_t lo = {.prefix = c->prefix, .targets = targets, .ntargets = nt,
                              .r = a[A_LORA_R].i, .alpha = (double)a[A_LORA_ALPHA].i,
                              .dropout = a[A_LORA_DROPOUT].f};
    AD_RETURN_IF_ERROR(pass_lora(e.em.m, e.em.g, &lo, &x, 1, NULL));
  } else if (a[A_FROZEN].b) {
    AD_RETURN_IF_ERROR(
        pass_freeze(e.em.m, ad_arena_printf(&e.em.m->arena, "%s.encoder", c->prefix), NULL));
  }
  /* ESM.on_save_checkpoint: with save_peft_only, a frozen encoder is left out of checkpoints
   * entirely (LoRA included, even though use_peft trains it), a PEFT one but for lora_A/B. */
  if ((peft || a[A_FROZEN].b) && a[A_SAVE_PEFT_ONLY].b) {
    const char *enc = ad_arena_printf(&e.em.m->arena, "%s.encoder.", c->prefix);
    size_t n = strlen(enc);
    for (uint32_t i = 0; i < e.em.m->nslots; i++) {
      ir_state_slot_t *s = &e.em.m->slots[i];
      if (strncmp(s->name, enc, n) != 0) continue;
      bool lora = strstr(s->name, ".lora_A.default.") || strstr(s->name, ".lora_B.default.");
      if (!lora || a[A_FROZEN].b) s->flags |= IR_SLOT_NOSAVE;
    }
  }
  *out = (fe_seq_t){.hidden = x, .mask = mask, .size = e.hp.hidden, .len_sym = e.sl};
  return AD_OK;
}

/* The ESM wrapper has no from_scratch: the peer always loads the hub weights. */
static void describe(const fe_class_t *cls, const fe_arg_value_t *a, fe_job_backbone_t *out) {
  (void)a;
  static const char *const hub[] = {"facebook/esm2_t6_8M_UR50D", "facebook/esm2_t12_35M_UR50D",
                                    "facebook/esm2_t30_150M_UR50D", "facebook/esm2_t33_650M_UR50D"};
  out->tokenizer = FE_TOKENIZER_ESM2;
  out->hub_id = hub[size_of(cls) - k_sizes];
  out->pretrained = true;
}

static const fe_backbone_ops_t k_ops = {
    .embedding_size = embedding_size, .build = build, .describe = describe};

#define ESM_CLASS(var, path)                                            \
  const fe_class_t var = {.class_path = path,                           \
                          .section = "model",                           \
                          .args = k_args,                               \
                          .nargs = sizeof k_args / sizeof k_args[0],    \
                          .check = check_args,                          \
                          .kind = FE_CLASS_BACKBONE,                    \
                          .backbone = &k_ops}

/* Defined in modelgenerator/backbones/__init__.py only (modelgenerator.backbones.backbones has
 * the ESM base class, not these), so there are no alias paths. */
ESM_CLASS(fe_class_esm2_8m, "modelgenerator.backbones.esm2_8m");
ESM_CLASS(fe_class_esm2_35m, "modelgenerator.backbones.esm2_35m");
ESM_CLASS(fe_class_esm2_150m, "modelgenerator.backbones.esm2_150m");
ESM_CLASS(fe_class_esm2_650m, "modelgenerator.backbones.esm2_650m");
