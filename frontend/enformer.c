/* modelgenerator.backbones.enformer: the Enformer trunk (lucidrains' port vendored by the peer as
 * modelgenerator/huggingface_models/enformer_pytorch/modeling_enformer.py), wrapped as
 * modelgenerator.backbones.backbones.Enformer. modelgenerator.md §5.2 has the full semantics.
 *
 * PyTorch equivalent (module paths = slot names under "<prefix>.encoder."):
 *   x = one_hot.transpose(1, 2)                                        # [B, 4, L]
 *   x = stem.2(x + stem.1.fn(stem.0(x)))     # conv15; Residual(ConvBlock k1); AttentionPool
 *   for i, t in enumerate(conv_tower):       # ConvBlock k5 -> Residual(ConvBlock k1) -> pool
 *     x = t.2(t.1.fn(t.0(x)) + t.0(x))
 *   x = x.transpose(1, 2)                                              # [B, n, dim]
 *   for layer in transformer:                                          # pre-LN, residual
 *     x = x + drop(Attention(LN(x)))      # relative-position attention, see attention() below
 *     x = x + drop(fn.4(relu(drop(fn.1(LN(x))))))
 *   x = x[:, -trim:trim]                                # TargetLengthCrop (unless deleted)
 *   x = gelu(drop(final_pointwise.1(x.transpose(1, 2)).transpose(1, 2)))  # [B, T, 2 dim]
 * ConvBlock(c) = Conv1d(gelu(BatchNorm1d(x))), gelu(x) = x * sigmoid(1.702 x).
 * BatchNorm runs with batch statistics in the "forward" (training) program and writes
 * running_mean, running_var and num_batches_tracked + 1 through STATE_OUT; the training
 * lowering's "eval" program switches it to the running statistics and drops the writes. When
 * the peer loads the weights (from_scratch false) it trains the trunk in eval mode (a peer
 * quirk, docs/ARCHITECTURE.md): the "forward" program is then the eval-mode one already.
 * AttentionPool on an odd length pads one zero column whose logit is masked to -finfo.max: the
 * softmax of that pair is exactly [1, 0], so the last column passes through unchanged, which
 * is how it is emitted here (slice + concat), forward and backward bit-for-bit the same.
 *
 * Initialisation (from_scratch; pretrained weights replace it): torch's defaults where the
 * runtime's rules express them (uniform +-1/sqrt(fan_in) for convs and linears, zeros for
 * to_out, N(0, 1) for the relative biases, BatchNorm/LayerNorm ones and zeros), and the
 * peer's 2 * dirac for AttentionPool (each logit twice its own channel).
 *
 * The mask handed on is ones [B, T]. The peer's wrapper sizes it [B, target_length] even when
 * delete_crop_layer keeps every bin (and then the fusion fails on the mismatch); here it always
 * has the embedding's length. tools/golden/enformer.py holds the peer's key tables and module
 * goldens; tests/test_enformer.c compares against them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/emit.h"
#include "frontend/enformer_posfeat.h"
#include "frontend/fe_internal.h"

static const fe_arg_spec_t k_args[] = {
    {"from_scratch", FE_ARG_BOOL, 0, "false"},
    {"max_length", FE_ARG_INT, FE_ARG_POSITIVE | FE_ARG_NULLABLE, "196608"},
    {"frozen", FE_ARG_BOOL, 0, "false"},
    {"delete_crop_layer", FE_ARG_BOOL, 0, "false"},
    {"config_overwrites", FE_ARG_MAP, FE_ARG_NULLABLE, NULL},
    {"model_init_args", FE_ARG_MAP, FE_ARG_NULLABLE, NULL},
    /* Not an argument of the peer's Enformer: declared only to refuse it with a clear message. */
    {"use_peft", FE_ARG_BOOL, 0, "false"},
};
enum { A_SCRATCH, A_MAX_LENGTH, A_FROZEN, A_DELETE_CROP, A_OVERWRITES, A_INIT_ARGS, A_USE_PEFT };

#define ENF_MAX_FILTERS 64
#define ENF_MAX_HEADS 16
#define ENF_BN_EPS 1e-5
#define ENF_BN_MOMENTUM 0.1
#define ENF_LN_EPS 1e-5

/* EnformerConfig after config_overwrites (defaults = the peer's EnformerConfig). */
typedef struct enf_cfg {
  int64_t dim, depth, heads, attn_dim_key, num_downsamples, dim_divisible_by, target_length;
  double dropout_rate, attn_dropout, pos_dropout;
  uint32_t nout_heads;
  const char *head_name[ENF_MAX_HEADS];
  int64_t head_size[ENF_MAX_HEADS];
  /* derived */
  int64_t filters[ENF_MAX_FILTERS]; /* [half_dim, *exponential_linspace_int(...)] */
  uint32_t nfilters;
} enf_cfg_t;

/* Python's round() (ties to even) under the default rounding mode. */
static int64_t py_round(double x) { return (int64_t)nearbyint(x); }

/* exponential_linspace_int of the peer, with the same double arithmetic: base = exp(log(end /
 * start) / (num - 1)); out[i] = round(start * base**i / divisible_by) * divisible_by. */
static void exponential_linspace_int(int64_t start, int64_t end, int64_t num, int64_t div,
                                     int64_t *out) {
  double base = exp(log((double)end / (double)start) / (double)(num - 1));
  for (int64_t i = 0; i < num; i++)
    out[i] = py_round((double)start * pow(base, (double)i) / (double)div) * div;
}

static const char *const k_overwrite_keys[] = {
    "dim",          "depth",         "heads",           "attn_dim_key",     "dropout_rate",
    "attn_dropout", "pos_dropout",   "num_downsamples", "dim_divisible_by", "target_length",
    "output_heads", "use_tf_gamma",  "use_checkpointing", "use_convnext",
};
#define NOVERWRITE_KEYS (sizeof k_overwrite_keys / sizeof k_overwrite_keys[0])

static ad_status_t ow_int(const fe_node_t *map, uint32_t i, int64_t lo, int64_t *out) {
  if (!fe_scalar_int(map->items[i], out))
    return fe_error_at(map->items[i], "config_overwrites.%s must be an integer, got %s",
                       map->keys[i], fe_node_kind_name(map->items[i]));
  if (*out < lo)
    return fe_error_at(map->items[i], "config_overwrites.%s must be at least %lld, got %lld",
                       map->keys[i], (long long)lo, (long long)*out);
  return AD_OK;
}

static ad_status_t ow_prob(const fe_node_t *map, uint32_t i, double *out) {
  int64_t iv;
  if (fe_scalar_int(map->items[i], &iv))
    *out = (double)iv;
  else if (!fe_scalar_float(map->items[i], out))
    return fe_error_at(map->items[i], "config_overwrites.%s must be a number", map->keys[i]);
  if (!(*out >= 0.0 && *out < 1.0))
    return fe_error_at(map->items[i], "config_overwrites.%s must be in [0, 1), got %g",
                       map->keys[i], *out);
  return AD_OK;
}

static ad_status_t ow_bool(const fe_node_t *map, uint32_t i, bool *out) {
  if (!fe_scalar_bool(map->items[i], out))
    return fe_error_at(map->items[i], "config_overwrites.%s must be true or false", map->keys[i]);
  return AD_OK;
}

/* Reads config_overwrites over the EnformerConfig defaults and derives the conv tower widths.
 * Every error is placed at the offending key or value. */
static ad_status_t resolve_cfg(const fe_arg_value_t *a, const fe_node_t *section, enf_cfg_t *c) {
  *c = (enf_cfg_t){.dim = 1536,
                   .depth = 11,
                   .heads = 8,
                   .attn_dim_key = 64,
                   .num_downsamples = 7,
                   .dim_divisible_by = 128,
                   .target_length = 896,
                   .dropout_rate = 0.4,
                   .attn_dropout = 0.05,
                   .pos_dropout = 0.01,
                   .nout_heads = 2,
                   .head_name = {"human", "mouse"},
                   .head_size = {5313, 1643}};
  const fe_node_t *map = a[A_OVERWRITES].is_null ? NULL : a[A_OVERWRITES].list;
  const fe_node_t *where[16] = {0}; /* per k_overwrite_keys: the value node, for later errors */
  for (uint32_t i = 0; map && i < map->n; i++) {
    const char *k = map->keys[i];
    int idx = -1;
    for (size_t j = 0; j < NOVERWRITE_KEYS; j++)
      if (strcmp(k, k_overwrite_keys[j]) == 0) idx = (int)j;
    if (idx < 0) {
      const char *near = fe_closest(k, k_overwrite_keys, NOVERWRITE_KEYS);
      return near ? fe_error_at_key(map, i,
                                    "unknown Enformer config key '%s' in config_overwrites; "
                                    "did you mean '%s'?",
                                    k, near)
                  : fe_error_at_key(map, i, "unknown Enformer config key '%s' in config_overwrites",
                                    k);
    }
    where[idx] = map->items[i];
    ad_status_t st = AD_OK;
    bool flag = false;
    switch (idx) {
      case 0: st = ow_int(map, i, 2, &c->dim); break;
      case 1: st = ow_int(map, i, 0, &c->depth); break;
      case 2: st = ow_int(map, i, 1, &c->heads); break;
      case 3: st = ow_int(map, i, 1, &c->attn_dim_key); break;
      case 4: st = ow_prob(map, i, &c->dropout_rate); break;
      case 5: st = ow_prob(map, i, &c->attn_dropout); break;
      case 6: st = ow_prob(map, i, &c->pos_dropout); break;
      case 7: st = ow_int(map, i, 3, &c->num_downsamples); break;
      case 8: st = ow_int(map, i, 1, &c->dim_divisible_by); break;
      case 9:
        st = ow_int(map, i, -1, &c->target_length);
        if (!st && c->target_length == 0)
          st = fe_error_at(map->items[i], "config_overwrites.target_length must be positive (or "
                                          "-1 for no crop)");
        break;
      case 10: {
        const fe_node_t *h = map->items[i];
        if (h->kind != FE_NODE_MAP)
          return fe_error_at(h, "config_overwrites.output_heads must be a map of head name to "
                                "number of outputs, got %s",
                             fe_node_kind_name(h));
        if (h->n > ENF_MAX_HEADS)
          return fe_error_at(h, "at most %d output heads are supported", ENF_MAX_HEADS);
        c->nout_heads = h->n;
        for (uint32_t j = 0; j < h->n; j++) {
          c->head_name[j] = h->keys[j];
          if (!fe_scalar_int(h->items[j], &c->head_size[j]) || c->head_size[j] < 1)
            return fe_error_at(h->items[j], "output_heads.%s must be a positive integer",
                               h->keys[j]);
        }
        break;
      }
      case 11:
        st = ow_bool(map, i, &flag);
        if (!st && flag)
          st = fe_error_at(map->items[i],
                           "use_tf_gamma is not supported: the wrapper loads Enformer with the "
                           "torch gamma features (use_tf_gamma false)");
        break;
      default: st = ow_bool(map, i, &flag); break; /* no numerical effect */
    }
    if (st) return st;
  }
  const fe_node_t *any = map ? map : section;
  int64_t F = c->dim / c->heads; /* num_rel_pos_features = dim_value = dim // heads */
  if (F < 1)
    return fe_error_at(where[2] ? where[2] : any, "heads (%lld) must not exceed dim (%lld)",
                       (long long)c->heads, (long long)c->dim);
  if (F % 6 != 0)
    return fe_error_at(where[2] ? where[2] : where[0] ? where[0] : any,
                       "relative position features dim // heads = %lld // %lld = %lld must be "
                       "divisible by 6 (the peer raises 'feature size is not divisible by number "
                       "of components')",
                       (long long)c->dim, (long long)c->heads, (long long)F);
  int64_t ntower = c->num_downsamples - 1;
  if (ntower + 1 > ENF_MAX_FILTERS)
    return fe_error_at(where[7] ? where[7] : any, "num_downsamples %lld is too large",
                       (long long)c->num_downsamples);
  int64_t half = c->dim / 2;
  c->filters[0] = half;
  exponential_linspace_int(half, c->dim, ntower, c->dim_divisible_by, c->filters + 1);
  c->nfilters = (uint32_t)ntower + 1;
  for (uint32_t i = 1; i < c->nfilters; i++)
    if (c->filters[i] < 1)
      return fe_error_at(where[8] ? where[8] : any,
                         "conv tower block %u would have %lld channels (dim_divisible_by %lld)",
                         i - 1, (long long)c->filters[i], (long long)c->dim_divisible_by);
  if (c->filters[c->nfilters - 1] != c->dim)
    return fe_error_at(where[8] ? where[8] : where[0] ? where[0] : any,
                       "the conv tower ends at %lld channels but the transformer expects dim = "
                       "%lld (dim must be a multiple of dim_divisible_by %lld)",
                       (long long)c->filters[c->nfilters - 1], (long long)c->dim,
                       (long long)c->dim_divisible_by);
  return AD_OK;
}

static ad_status_t check_args(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                              const fe_node_t *section) {
  (void)cls;
  if (a[A_USE_PEFT].node && a[A_USE_PEFT].b)
    return fe_error_at(a[A_USE_PEFT].node,
                       "use_peft is not supported for enformer (as in ModelGenerator)");
  if (!a[A_INIT_ARGS].is_null && a[A_INIT_ARGS].list && a[A_INIT_ARGS].list->n > 0)
    return fe_error_at_key(a[A_INIT_ARGS].list, 0,
                           "%s.init_args.model_init_args: Enformer(config) takes no other "
                           "arguments (the peer raises a TypeError)",
                           path);
  enf_cfg_t c;
  return resolve_cfg(a, section, &c);
}

static ad_status_t embedding_size(const fe_class_t *cls, const fe_arg_value_t *a, int64_t *out) {
  (void)cls;
  enf_cfg_t c;
  AD_RETURN_IF_ERROR(resolve_cfg(a, NULL, &c));
  *out = 2 * c.dim;
  return AD_OK;
}

/* ---- emission ------------------------------------------------------------------------------ */
typedef struct enf {
  fe_emit_t em; /* module, forward program, model dtype, first declaration failure */
  const enf_cfg_t *cfg;
  uint32_t flags; /* of trainable parameters: PARAM (+ TRAINABLE unless frozen) */
  int sb;         /* batch symbol */
  bool eval_bn;   /* the peer's module is in eval mode during fit (fe_component_ctx_t) */
} enf_t;

static uint32_t node1(enf_t *e, ir_op_t op, const char *name, uint32_t x) {
  return fe_emit_node(&e->em, op, name, &x, 1, NULL, 0, NULL);
}

static uint32_t node2(enf_t *e, ir_op_t op, const char *name, uint32_t x, uint32_t y) {
  uint32_t ins[2] = {x, y};
  return fe_emit_node(&e->em, op, name, ins, 2, NULL, 0, NULL);
}

/* [B?, dims...]: leading batch symbol when batch, then constants. */
static ir_type_t mk_type(const enf_t *e, ir_dtype_t dt, bool batch, int rank, const int64_t *d) {
  ir_type_t ty;
  memset(&ty, 0, sizeof ty);
  ty.dtype = dt;
  ty.rank = rank + (batch ? 1 : 0);
  int k = 0;
  if (batch) ty.dims[k++] = ir_dim_sym(e->sb);
  for (int i = 0; i < rank; i++) ty.dims[k++] = ir_dim_const(d[i]);
  return ty;
}

/* A state slot "<scope>.<local>" [d...] (no batch dim) and its STATE_IN node. */
static uint32_t slot_in(enf_t *e, const char *local, ir_dtype_t dt, int rank, const int64_t *d,
                        uint32_t flags, const char *init) {
  ir_type_t ty = mk_type(e, dt, false, rank, d);
  return fe_emit_slot(&e->em, local, &ty, flags, init);
}

static uint32_t param(enf_t *e, const char *local, int rank, const int64_t *d, const char *init) {
  return slot_in(e, local, e->em.dt, rank, d, e->flags, init);
}

static void state_out(enf_t *e, const char *local, uint32_t v) {
  if (v == IR_NONE) return;
  const char *slot = fe_emit_scoped(&e->em, local);
  ir_attr_t a = IR_ATTR_S("slot", slot);
  fe_emit_node(&e->em, IR_OP_STATE_OUT, ad_arena_printf(&e->em.m->arena, "%s.update", local), &v, 1,
               &a, 1, NULL);
}

static uint32_t permute(enf_t *e, const char *name, uint32_t x, const int64_t *perm, int rank) {
  ir_attr_t a = IR_ATTR_INTS("perm", perm, rank);
  return fe_emit_node(&e->em, IR_OP_PERMUTE, name, &x, 1, &a, 1, NULL);
}

static uint32_t reshape(enf_t *e, const char *name, uint32_t x, bool batch, int rank,
                        const int64_t *d) {
  ir_type_t ty = mk_type(e, e->em.dt, batch, rank, d);
  return fe_emit_node(&e->em, IR_OP_RESHAPE, name, &x, 1, NULL, 0, &ty);
}

static uint32_t slice(enf_t *e, const char *name, uint32_t x, int64_t axis, int64_t start,
                      int64_t end) {
  ir_attr_t a[3] = {IR_ATTR_I("axis", axis), IR_ATTR_I("start", start), IR_ATTR_I("end", end)};
  return fe_emit_node(&e->em, IR_OP_SLICE, name, &x, 1, a, 3, NULL);
}

/* nn.Conv1d(cin, cout, k, padding=k//2) named `name`: x [B, cin, L] -> [B, cout, L]. */
static uint32_t conv1d(enf_t *e, const char *name, uint32_t x, int64_t cin, int64_t cout,
                       int64_t k) {
  ir_push_scope(e->em.g, name);
  const char *init = fe_emit_uniform_init(&e->em, cin * k);
  uint32_t w = param(e, "weight", 3, (const int64_t[]){cout, cin, k}, init);
  uint32_t b = param(e, "bias", 1, (const int64_t[]){cout}, init);
  ir_pop_scope(e->em.g);
  uint32_t ins[3] = {x, w, b};
  ir_attr_t a = IR_ATTR_I("padding", k / 2);
  return fe_emit_node(&e->em, IR_OP_CONV1D, name, ins, 3, &a, 1, NULL);
}

/* nn.BatchNorm1d(c) named `name` in training mode: batch statistics, and the running-stat and
 * num_batches_tracked updates written back. In eval mode (e->eval_bn): the running statistics,
 * no writes; num_batches_tracked is then only declared (it stays in the state_dict). x [B, c, L]. */
static uint32_t batchnorm(enf_t *e, const char *name, uint32_t x, int64_t c) {
  ir_push_scope(e->em.g, name);
  const int64_t d[1] = {c};
  uint32_t w = param(e, "weight", 1, d, "ones");
  uint32_t b = param(e, "bias", 1, d, "zeros");
  uint32_t rm = slot_in(e, "running_mean", e->em.dt, 1, d, IR_SLOT_BUFFER, "zeros");
  uint32_t rv = slot_in(e, "running_var", e->em.dt, 1, d, IR_SLOT_BUFFER, "ones");
  uint32_t nbt = IR_NONE;
  if (!e->eval_bn) {
    nbt = slot_in(e, "num_batches_tracked", IR_DTYPE_I64, 0, NULL, IR_SLOT_BUFFER, "zeros");
  } else if (!e->em.err) {
    ir_type_t nt = mk_type(e, IR_DTYPE_I64, false, 0, NULL);
    e->em.err = ir_module_add_slot(e->em.m, fe_emit_scoped(&e->em, "num_batches_tracked"), &nt,
                                   IR_SLOT_BUFFER, "zeros", NULL);
  }
  ir_pop_scope(e->em.g);
  uint32_t ins[5] = {x, w, b, rm, rv};
  ir_attr_t a[3] = {IR_ATTR_F("eps", ENF_BN_EPS), IR_ATTR_F("momentum", ENF_BN_MOMENTUM),
                    IR_ATTR_I("training", e->eval_bn ? 0 : 1)};
  uint32_t y = fe_emit_node(&e->em, IR_OP_BATCHNORM, name, ins, 5, a, 3, NULL);
  if (e->eval_bn) return y;
  ir_push_scope(e->em.g, name);
  if (y != IR_NONE) {
    state_out(e, "running_mean", y + 3);
    state_out(e, "running_var", y + 4);
  }
  ir_type_t ity = mk_type(e, IR_DTYPE_I64, false, 0, NULL);
  double one = 1.0;
  ir_attr_t ca = IR_ATTR_FLOATS("value", &one, 1);
  uint32_t inc =
      fe_emit_node(&e->em, IR_OP_CONST, "num_batches_tracked.one", NULL, 0, &ca, 1, &ity);
  state_out(e, "num_batches_tracked", node2(e, IR_OP_ADD, "num_batches_tracked.add", nbt, inc));
  ir_pop_scope(e->em.g);
  return y;
}

/* ConvBlock(cin, cout, k) = Sequential(BatchNorm1d, GELU, Conv1d) named `name`. */
static uint32_t conv_block(enf_t *e, const char *name, uint32_t x, int64_t cin, int64_t cout,
                           int64_t k) {
  ir_push_scope(e->em.g, name);
  x = batchnorm(e, "0", x, cin);
  x = node1(e, IR_OP_GELU_SIGMOID, "1", x);
  x = conv1d(e, "2", x, cin, cout, k);
  ir_pop_scope(e->em.g);
  return x;
}

/* AttentionPool(c, 2) named `name`: x [B, c, N] -> [B, c, ceil(N/2)]; logits = the 1x1 Conv2d
 * to_attn_logits (weight [c, c, 1, 1], no bias) per position, softmax over each pair. */
static uint32_t attention_pool(enf_t *e, const char *name, uint32_t x, int64_t c, int64_t N) {
  ir_push_scope(e->em.g, name);
  ir_push_scope(e->em.g, "to_attn_logits");
  uint32_t w = param(e, "weight", 4, (const int64_t[]){c, c, 1, 1}, "dirac(2)");
  ir_pop_scope(e->em.g);
  uint32_t w2 = reshape(e, "to_attn_logits.matrix", w, false, 2, (const int64_t[]){c, c});
  int64_t even = N - N % 2;
  uint32_t xe = N % 2 ? slice(e, "even", x, 2, 0, even) : x;
  uint32_t logits = node2(e, IR_OP_MATMUL, "to_attn_logits", w2, xe); /* [B, c, even] */
  const int64_t pairs[3] = {c, even / 2, 2};
  logits = reshape(e, "logits.pairs", logits, true, 3, pairs);
  uint32_t attn = node1(e, IR_OP_SOFTMAX, "softmax", logits);
  uint32_t xp = reshape(e, "pairs", xe, true, 3, pairs);
  uint32_t prod = node2(e, IR_OP_MUL, "weighted", xp, attn);
  const int64_t axes[1] = {-1};
  ir_attr_t ra[2] = {IR_ATTR_INTS("axes", axes, 1), IR_ATTR_I("keepdim", 0)};
  uint32_t y =
      fe_emit_node(&e->em, IR_OP_REDUCE_SUM, "sum", &prod, 1, ra, 2, NULL); /* [B, c, even/2] */
  if (N % 2) {
    uint32_t last = slice(e, "last", x, 2, even, N);
    uint32_t ins[2] = {y, last};
    ir_attr_t ax = IR_ATTR_I("axis", 2);
    y = fe_emit_node(&e->em, IR_OP_CONCAT, "padded_pair", ins, 2, &ax, 1, NULL);
  }
  ir_pop_scope(e->em.g);
  return y;
}

static uint32_t linear(enf_t *e, const char *name, uint32_t x, int64_t in, int64_t out,
                       bool bias, const char *winit) {
  ir_push_scope(e->em.g, name);
  uint32_t w = param(e, "weight", 2, (const int64_t[]){out, in},
                     winit ? winit : fe_emit_uniform_init(&e->em, in));
  uint32_t b = bias ? param(e, "bias", 1, (const int64_t[]){out},
                            winit ? winit : fe_emit_uniform_init(&e->em, in))
                    : IR_NONE;
  ir_pop_scope(e->em.g);
  uint32_t ins[3] = {x, w, b};
  return fe_emit_node(&e->em, IR_OP_LINEAR, name, ins, bias ? 3 : 2, NULL, 0, NULL);
}

static uint32_t layernorm(enf_t *e, const char *name, uint32_t x, int64_t h) {
  ir_push_scope(e->em.g, name);
  uint32_t w = param(e, "weight", 1, (const int64_t[]){h}, "ones");
  uint32_t b = param(e, "bias", 1, (const int64_t[]){h}, "zeros");
  ir_pop_scope(e->em.g);
  uint32_t ins[3] = {x, w, b};
  ir_attr_t a = IR_ATTR_F("eps", ENF_LN_EPS);
  return fe_emit_node(&e->em, IR_OP_LAYERNORM, name, ins, 3, &a, 1, NULL);
}

/* [B, n, h*d] -> [B, h, n, d] */
static uint32_t split_heads(enf_t *e, const char *name, uint32_t x, int64_t n, int64_t h,
                            int64_t d) {
  uint32_t r = reshape(e, NULL, x, true, 3, (const int64_t[]){n, h, d});
  return permute(e, name, r, (const int64_t[]){0, 2, 1, 3}, 4);
}

/* The peer's Attention: content logits (q*scale + u) k^T plus relative logits
 * relative_shift((q*scale + v) (to_rel_k(pos_dropout(R)))^T), softmax, attn dropout, P V,
 * to_out. x [B, n, dim], table R [2n-1, F] (CONST). */
static uint32_t attention(enf_t *e, uint32_t x, uint32_t table, int64_t n) {
  const enf_cfg_t *c = e->cfg;
  int64_t dim = c->dim, h = c->heads, dk = c->attn_dim_key, dv = dim / h, F = dim / h;
  ir_push_scope(e->em.g, "1");
  /* state_dict order: the module's own parameters first, then its children */
  const int64_t bias_d[4] = {1, h, 1, dk};
  uint32_t u = param(e, "rel_content_bias", 4, bias_d, "normal(0,1)");
  uint32_t vb = param(e, "rel_pos_bias", 4, bias_d, "normal(0,1)");
  uint32_t q = linear(e, "to_q", x, dim, dk * h, false, NULL);
  uint32_t k = linear(e, "to_k", x, dim, dk * h, false, NULL);
  uint32_t v = linear(e, "to_v", x, dim, dv * h, false, NULL);
  q = split_heads(e, "q_heads", q, n, h, dk); /* [B, h, n, dk] */
  k = split_heads(e, "k_heads", k, n, h, dk);
  v = split_heads(e, "v_heads", v, n, h, dv);
  ir_attr_t sc[2] = {IR_ATTR_F("alpha", pow((double)dk, -0.5)), IR_ATTR_F("beta", 0.0)};
  q = fe_emit_node(&e->em, IR_OP_SCALE, "q_scaled", &q, 1, sc, 2, NULL);
  uint32_t qu = node2(e, IR_OP_ADD, "q_content", q, u);
  ir_attr_t tb[2] = {IR_ATTR_I("trans_a", 0), IR_ATTR_I("trans_b", 1)};
  uint32_t ck[2] = {qu, k};
  uint32_t content =
      fe_emit_node(&e->em, IR_OP_MATMUL, "content_logits", ck, 2, tb, 2, NULL); /* [B,h,n,n] */

  uint32_t pos = fe_emit_dropout(&e->em, "pos_dropout", table, c->pos_dropout);
  uint32_t qv = node2(e, IR_OP_ADD, "q_position", q, vb);
  /* to_out's slots come before to_rel_k's: the peer registers it first (state_dict order). */
  ir_push_scope(e->em.g, "to_out");
  uint32_t wo = param(e, "weight", 2, (const int64_t[]){dim, dv * h}, "zeros");
  uint32_t bo = param(e, "bias", 1, (const int64_t[]){dim}, "zeros");
  ir_pop_scope(e->em.g);
  uint32_t relk = linear(e, "to_rel_k", pos, F, dk * h, false, NULL); /* [2n-1, h*dk] */
  relk = reshape(e, NULL, relk, false, 3, (const int64_t[]){2 * n - 1, h, dk});
  relk = permute(e, "rel_k", relk, (const int64_t[]){1, 0, 2}, 3); /* [h, 2n-1, dk] */
  uint32_t rk[2] = {qv, relk};
  uint32_t rel =
      fe_emit_node(&e->em, IR_OP_MATMUL, "rel_logits", rk, 2, tb, 2, NULL); /* [B,h,n,2n-1] */
  rel = node1(e, IR_OP_REL_SHIFT, "relative_shift", rel);                   /* [B,h,n,n] */
  uint32_t logits = node2(e, IR_OP_ADD, "logits", content, rel);
  uint32_t attn = node1(e, IR_OP_SOFTMAX, "softmax", logits);
  attn = fe_emit_dropout(&e->em, "attn_dropout", attn, c->attn_dropout);
  uint32_t o = node2(e, IR_OP_MATMUL, "attn_v", attn, v); /* [B, h, n, dv] */
  o = permute(e, NULL, o, (const int64_t[]){0, 2, 1, 3}, 4);
  o = reshape(e, "merge_heads", o, true, 2, (const int64_t[]){n, dv * h});
  uint32_t lin[3] = {o, wo, bo};
  o = fe_emit_node(&e->em, IR_OP_LINEAR, "to_out", lin, 3, NULL, 0, NULL);
  ir_pop_scope(e->em.g);
  return o;
}

/* transformer.<i>: Residual(LN, Attention, Dropout), Residual(LN, Linear, Dropout, ReLU, Linear,
 * Dropout). x [B, n, dim]. */
static uint32_t transformer_layer(enf_t *e, uint32_t x, uint32_t table, int64_t n) {
  const enf_cfg_t *c = e->cfg;
  int64_t dim = c->dim;
  ir_push_scope(e->em.g, "0");
  ir_push_scope(e->em.g, "fn");
  uint32_t y = layernorm(e, "0", x, dim);
  y = attention(e, y, table, n);
  y = fe_emit_dropout(&e->em, "2", y, c->dropout_rate);
  ir_pop_scope(e->em.g);
  x = node2(e, IR_OP_ADD, "residual", x, y);
  ir_pop_scope(e->em.g);
  ir_push_scope(e->em.g, "1");
  ir_push_scope(e->em.g, "fn");
  y = layernorm(e, "0", x, dim);
  y = linear(e, "1", y, dim, 2 * dim, true, NULL);
  y = fe_emit_dropout(&e->em, "2", y, c->dropout_rate);
  y = node1(e, IR_OP_RELU, "3", y);
  y = linear(e, "4", y, 2 * dim, dim, true, NULL);
  y = fe_emit_dropout(&e->em, "5", y, c->dropout_rate);
  ir_pop_scope(e->em.g);
  x = node2(e, IR_OP_ADD, "residual", x, y);
  ir_pop_scope(e->em.g);
  return x;
}

/* Residual(ConvBlock(c, c, 1)) named `name`: x + fn(x). */
static uint32_t residual_block(enf_t *e, const char *name, uint32_t x, int64_t c) {
  ir_push_scope(e->em.g, name);
  uint32_t y = conv_block(e, "fn", x, c, c, 1);
  y = node2(e, IR_OP_ADD, "residual", y, x);
  ir_pop_scope(e->em.g);
  return y;
}

static void idx_name(char *buf, size_t cap, int64_t i) { snprintf(buf, cap, "%lld", (long long)i); }

/* _heads.<name>.0 = nn.Linear(2 dim, size): slots only (the backbone returns the embedding). */
static void declare_heads(enf_t *e) {
  const enf_cfg_t *c = e->cfg;
  uint32_t flags = e->flags | IR_SLOT_UNUSED;
  for (uint32_t i = 0; i < c->nout_heads && !e->em.err; i++) {
    const char *base =
        fe_emit_scoped(&e->em, ad_arena_printf(&e->em.m->arena, "_heads.%s.0", c->head_name[i]));
    const char *init = fe_emit_uniform_init(&e->em, 2 * c->dim);
    ir_type_t tw = mk_type(e, e->em.dt, false, 2, (const int64_t[]){c->head_size[i], 2 * c->dim});
    ir_type_t tb = mk_type(e, e->em.dt, false, 1, (const int64_t[]){c->head_size[i]});
    e->em.err = ir_module_add_slot(e->em.m, ad_arena_printf(&e->em.m->arena, "%s.weight", base),
                                   &tw, flags, init, NULL);
    if (!e->em.err)
      e->em.err = ir_module_add_slot(e->em.m, ad_arena_printf(&e->em.m->arena, "%s.bias", base),
                                     &tb, flags, init, NULL);
  }
}

/* The DNA length the graph is built for, and the node to blame when it does not fit. */
static ad_status_t input_length(const fe_component_ctx_t *c, int64_t *L, const fe_node_t **where) {
  const fe_arg_value_t *a = c->args;
  *where = a[A_MAX_LENGTH].node ? a[A_MAX_LENGTH].node : c->b->section;
  if (c->dna_window > 0) {
    *L = c->dna_window;
    return AD_OK;
  }
  if (a[A_MAX_LENGTH].is_null)
    return fe_error_at(*where, "%s: enformer needs a fixed DNA length: set max_length or "
                               "data.dna_window",
                       c->prefix);
  *L = a[A_MAX_LENGTH].i;
  return AD_OK;
}

static ad_status_t build(fe_component_ctx_t *cc, const char *omic, fe_seq_t *out) {
  enf_cfg_t cfg;
  const fe_arg_value_t *a = cc->args;
  AD_RETURN_IF_ERROR(resolve_cfg(a, cc->b->section, &cfg));
  if (a[A_USE_PEFT].b)
    return fe_error_at(a[A_USE_PEFT].node ? a[A_USE_PEFT].node : cc->b->section,
                       "use_peft is not supported for enformer (as in ModelGenerator)");
  int64_t L = 0;
  const fe_node_t *where = NULL;
  AD_RETURN_IF_ERROR(input_length(cc, &L, &where));
  /* Lengths through the num_downsamples pools (AttentionPool pads odd lengths). */
  int64_t n = L;
  for (int64_t i = 0; i < cfg.num_downsamples; i++) n = (n + 1) / 2;
  bool crop = !a[A_DELETE_CROP].b && cfg.target_length != -1;
  int64_t start = 0, T = n;
  if (crop) {
    if (n < cfg.target_length)
      return fe_error_at(where,
                         "%s: a %lld-bp input gives %lld bins after %lld downsamplings, fewer "
                         "than target_length %lld",
                         cc->prefix, (long long)L, (long long)n, (long long)cfg.num_downsamples,
                         (long long)cfg.target_length);
    /* trim = (target - n) // 2 (floor) and x[:, -trim:trim]: an odd surplus drops one more */
    int64_t surplus = n - cfg.target_length;
    start = (surplus + 1) / 2;
    T = n - 2 * start;
  }

  /* Peer quirk (docs/ARCHITECTURE.md): a loaded Enformer trains in eval mode, BatchNorm on its
   * running statistics and every dropout off. */
  if (cc->eval_mode) cfg.dropout_rate = cfg.attn_dropout = cfg.pos_dropout = 0.0;
  enf_t e = {.em = {.m = cc->b->module, .g = cc->b->forward, .dt = cc->b->dtype},
             .cfg = &cfg,
             .flags = IR_SLOT_PARAM | (a[A_FROZEN].b ? 0u : IR_SLOT_TRAINABLE),
             .sb = cc->b->sym_batch,
             .eval_bn = cc->eval_mode};
  const char *saved_scope = e.em.g->scope;
  e.em.g->scope = "";
  ir_type_t in_t = mk_type(&e, e.em.dt, true, 2, (const int64_t[]){L, 4});
  uint32_t x = fe_emit_node(&e.em, IR_OP_INPUT, ad_arena_printf(&e.em.m->arena, "%s_one_hot", omic),
                            NULL, 0, NULL, 0, &in_t);
  ir_push_scope(e.em.g, cc->prefix);
  ir_push_scope(e.em.g, "encoder");
  x = permute(&e, "_trunk.0", x, (const int64_t[]){0, 2, 1}, 3); /* [B, 4, L] */

  int64_t half = cfg.filters[0], N = L;
  ir_push_scope(e.em.g, "stem");
  x = conv1d(&e, "0", x, 4, half, 15);
  x = residual_block(&e, "1", x, half);
  x = attention_pool(&e, "2", x, half, N);
  N = (N + 1) / 2;
  ir_pop_scope(e.em.g);

  ir_push_scope(e.em.g, "conv_tower");
  for (uint32_t i = 1; i < cfg.nfilters; i++) {
    char idx[24];
    idx_name(idx, sizeof idx, i - 1);
    int64_t cin = cfg.filters[i - 1], cout = cfg.filters[i];
    ir_push_scope(e.em.g, idx);
    x = conv_block(&e, "0", x, cin, cout, 5);
    x = residual_block(&e, "1", x, cout);
    x = attention_pool(&e, "2", x, cout, N);
    N = (N + 1) / 2;
    ir_pop_scope(e.em.g);
  }
  ir_pop_scope(e.em.g);
  x = permute(&e, "_trunk.3", x, (const int64_t[]){0, 2, 1}, 3); /* [B, n, dim] */

  /* One positional table for every layer (each layer has its own pos_dropout), computed in
   * double and rounded once to the model dtype: the peer under trainer.precision 64 runs its
   * forward with float64 as the default dtype and so computes the same table in float64 (at
   * precision 32 its float32 arithmetic differs from this rounding, see enformer_posfeat.c). */
  uint32_t table = IR_NONE;
  if (cfg.depth > 0) {
    int64_t F = cfg.dim / cfg.heads, rows = 2 * n - 1;
    double *vals = malloc(sizeof(double) * (size_t)(rows * F)); /* ir_build copies attrs */
    ad_status_t st = vals ? fe_enformer_positional_features(n, F, vals)
                          : ad_status_make(AD_STATUS_RESOURCE, "out of memory");
    if (st) {
      free(vals);
      e.em.g->scope = saved_scope;
      return st;
    }
    ir_type_t tt = mk_type(&e, e.em.dt, false, 2, (const int64_t[]){rows, F});
    ir_attr_t va = IR_ATTR_FLOATS("value", vals, rows * F);
    table = fe_emit_node(&e.em, IR_OP_CONST, "positional_features", NULL, 0, &va, 1, &tt);
    free(vals);
  }
  ir_push_scope(e.em.g, "transformer");
  for (int64_t i = 0; i < cfg.depth; i++) {
    char idx[24];
    idx_name(idx, sizeof idx, i);
    ir_push_scope(e.em.g, idx);
    x = transformer_layer(&e, x, table, n);
    ir_pop_scope(e.em.g);
  }
  ir_pop_scope(e.em.g);
  if (crop && T != n) x = slice(&e, "crop_final", x, 1, start, start + T);

  ir_push_scope(e.em.g, "final_pointwise");
  x = permute(&e, "0", x, (const int64_t[]){0, 2, 1}, 3);
  x = conv_block(&e, "1", x, cfg.dim, 2 * cfg.dim, 1);
  x = permute(&e, "2", x, (const int64_t[]){0, 2, 1}, 3);
  x = fe_emit_dropout(&e.em, "3", x, cfg.dropout_rate / 8);
  x = node1(&e, IR_OP_GELU_SIGMOID, "4", x); /* [B, T, 2 dim] */
  ir_pop_scope(e.em.g);

  declare_heads(&e);
  ir_type_t mt = mk_type(&e, e.em.dt, true, 1, (const int64_t[]){T});
  double one = 1.0;
  ir_attr_t ma = IR_ATTR_FLOATS("value", &one, 1);
  uint32_t mask = fe_emit_node(&e.em, IR_OP_CONST, "attention_mask", NULL, 0, &ma, 1, &mt);
  ir_pop_scope(e.em.g);
  ir_pop_scope(e.em.g);
  e.em.g->scope = saved_scope;
  if (e.em.err) return e.em.err;
  AD_RETURN_IF_ERROR(ir_graph_take_error(e.em.g));
  *out = (fe_seq_t){.hidden = x, .mask = mask, .size = 2 * cfg.dim, .len_sym = -1};
  return AD_OK;
}

static void describe(const fe_class_t *cls, const fe_arg_value_t *a, fe_job_backbone_t *out) {
  (void)cls;
  out->tokenizer = FE_TOKENIZER_DNA_ONEHOT;
  out->hub_id = "EleutherAI/enformer-official-rough";
  out->pretrained = !a[A_SCRATCH].b;
}

static const fe_backbone_ops_t k_ops = {
    .embedding_size = embedding_size, .build = build, .describe = describe};

/* jsonargparse also resolves the bare class name of a subclass. */
static const char *const k_aliases[] = {"enformer", NULL};

const fe_class_t fe_class_enformer = {
    .class_path = "modelgenerator.backbones.enformer",
    .section = "model",
    .args = k_args,
    .nargs = sizeof k_args / sizeof k_args[0],
    .check = check_args,
    .kind = FE_CLASS_BACKBONE,
    .backbone = &k_ops,
    .aliases = k_aliases,
};
