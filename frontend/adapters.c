/* Adapters (heads) of ModelGenerator (modelgenerator/adapters/adapters.py and the two
 * MMFusion*Adapter classes of adapters/fusion.py). An adapter maps one embedding (a sequence
 * [B, L, H] with its mask, or a pooled [B, H]) to predictions [B, out_features]; the MMFusion
 * adapters first run their fusion module over the modalities, then their inner adapter.
 *
 * Parameter names follow the peer's modules under c->prefix:
 *   MLPAdapter (an nn.Sequential)  <prefix>.<i>.weight, i the layer's index in
 *                                  [Dropout, (Linear, act, [Dropout]) per hidden size, Linear]
 *   LinearAdapter                  <prefix>.1.weight (an MLPAdapter without hidden layers)
 *   MLPPoolAdapter                 <prefix>.mlp.<i>.weight
 *   Linear{CLS,MeanPool,MaxPool}Adapter  <prefix>.linear.weight
 *   MMFusion{Seq,Token}Adapter     <prefix>.fusion_module.<...>, <prefix>.adapter.<...>
 * Dropout with p == 0 is the identity in PyTorch, so no node is emitted for it. */
#include <math.h>
#include <string.h>

#include "frontend/emit.h"
#include "frontend/fe_internal.h"

/* ---- helpers --------------------------------------------------------------------------------- */
static const fe_node_t *arg_place(const fe_component_ctx_t *c, int a) {
  return c->args && c->args[a].node ? c->args[a].node : c->b->section;
}

static int in_rank(const fe_component_ctx_t *c, const fe_seq_t *in) {
  const ir_type_t *t = ir_value_type(c->b->forward, in->hidden);
  return t ? t->rank : -1;
}

/* ---- defaults of nested classes ---------------------------------------------------------- */
/* The typed defaults of every argument of cls, as if the config gave none. */
static void class_defaults(const fe_class_t *cls, fe_arg_value_t *out) {
  for (uint32_t i = 0; i < cls->nargs; i++) {
    const fe_arg_spec_t *s = &cls->args[i];
    memset(&out[i], 0, sizeof out[i]);
    if (!s->dflt) continue;
    fe_node_t n = {.kind = FE_NODE_SCALAR, .file = "<default>", .scalar = s->dflt};
    if (fe_scalar_is_null(&n)) {
      out[i].is_null = true;
      continue;
    }
    switch (s->type) {
      case FE_ARG_INT: (void)fe_scalar_int(&n, &out[i].i); break;
      case FE_ARG_FLOAT: (void)fe_scalar_float(&n, &out[i].f); break;
      case FE_ARG_BOOL: (void)fe_scalar_bool(&n, &out[i].b); break;
      case FE_ARG_STRING: out[i].s = s->dflt; break;
      default: break;
    }
  }
}

/* A nested class argument: the class the config chose, or the spec's default class with its
 * default arguments (written into store, FE_MAX_ARGS entries). */
static ad_status_t nested(const fe_component_ctx_t *c, const fe_arg_spec_t *spec,
                          const fe_arg_value_t *v, fe_arg_value_t *store, const fe_class_t **cls,
                          const fe_arg_value_t **args) {
  if (v && v->cls) {
    *cls = v->cls;
    *args = v->args;
    if (!*args) {
      class_defaults(*cls, store);
      *args = store;
    }
    return AD_OK;
  }
  *cls = spec->dflt ? fe_find_class(spec->dflt) : NULL;
  if (!*cls)
    return ad_status_make(AD_STATUS_INTERNAL, "%s: default class '%s' is not registered",
                          c->prefix, spec->dflt ? spec->dflt : "(none)");
  class_defaults(*cls, store);
  *args = store;
  return AD_OK;
}

/* ---- MLPAdapter and friends ---------------------------------------------------------------- */
typedef struct mlp_cfg {
  const fe_node_t *hidden; /* sequence of ints, or NULL for [] */
  const char *act;
  bool bias;
  double p;
  bool in_middle;
} mlp_cfg_t;

static const struct {
  const char *name;
  ir_op_t op;
} k_acts[] = {
    {"torch.nn.Tanh", IR_OP_TANH},   {"torch.nn.ReLU", IR_OP_RELU},
    {"torch.nn.GELU", IR_OP_GELU_ERF}, {"torch.nn.SiLU", IR_OP_SILU},
    {"torch.nn.Sigmoid", IR_OP_SIGMOID},
};
#define NACTS (sizeof k_acts / sizeof k_acts[0])

static bool act_op(const char *name, ir_op_t *op) {
  for (size_t i = 0; i < NACTS; i++)
    if (strcmp(k_acts[i].name, name) == 0 ||
        strcmp(k_acts[i].name + strlen("torch.nn."), name) == 0) {
      *op = k_acts[i].op;
      return true;
    }
  return false;
}

static ad_status_t check_mlp_args(const char *path, const fe_arg_value_t *hidden,
                                  const fe_arg_value_t *act, const fe_node_t *section) {
  const fe_node_t *h = hidden->list;
  for (uint32_t i = 0; h && i < h->n; i++) {
    int64_t v;
    if (!fe_scalar_int(h->items[i], &v) || v <= 0)
      return fe_error_at(h->items[i], "%s.init_args.hidden_sizes.%u: expected a positive integer",
                         path, i);
  }
  ir_op_t op;
  if (act->s && !act_op(act->s, &op))
    return fe_error_at(act->node ? act->node : section,
                       "%s.init_args.activation_layer: '%s' is not supported (torch.nn.Tanh, "
                       "ReLU, GELU, SiLU or Sigmoid)",
                       path, act->s);
  return AD_OK;
}

/* The peer's MLPAdapter (nn.Sequential) under the current scope: x [..., in] -> [..., out].
 * prefix names the adapter in messages. */
static uint32_t mlp(fe_emit_t *e, const char *prefix, uint32_t x, int64_t in, int64_t out,
                    const mlp_cfg_t *m) {
  ir_op_t act = IR_OP_TANH;
  if (m->act) (void)act_op(m->act, &act); /* validated by the class check */
  int idx = 0;
  char name[24];
  snprintf(name, sizeof name, "%d", idx++);
  x = fe_emit_dropout(e, name, x, m->p);
  for (uint32_t i = 0; m->hidden && i < m->hidden->n; i++) {
    int64_t h = 0;
    if (!fe_scalar_int(m->hidden->items[i], &h) || h <= 0) {
      e->err = fe_error_at(m->hidden->items[i], "%s: hidden_sizes.%u: expected a positive integer",
                           prefix, i);
      return IR_NONE;
    }
    snprintf(name, sizeof name, "%d", idx++);
    x = fe_emit_linear(e, name, x, in, h, m->bias);
    snprintf(name, sizeof name, "%d", idx++);
    x = fe_emit_node(e, act, name, &x, 1, NULL, 0, NULL);
    if (m->in_middle) {
      snprintf(name, sizeof name, "%d", idx++);
      x = fe_emit_dropout(e, name, x, m->p);
    }
    in = h;
  }
  snprintf(name, sizeof name, "%d", idx++);
  return fe_emit_linear(e, name, x, in, out, m->bias);
}

/* Pooling of a sequence [B, L, H] to [B, H] as the peer's heads do. */
typedef enum pool_kind { POOL_MEAN, POOL_CLS, POOL_MAX } pool_kind_t;

static uint32_t pool(fe_emit_t *e, const char *name, const fe_seq_t *in, pool_kind_t k) {
  const int64_t axes[1] = {1};
  ir_attr_t red[2] = {IR_ATTR_INTS("axes", axes, 1), IR_ATTR_I("keepdim", 0)};
  if (k == POOL_CLS) return fe_emit_node(e, IR_OP_CLS_POOL, name, &in->hidden, 1, NULL, 0, NULL);
  if (k == POOL_MEAN) {
    if (in->mask == IR_NONE) /* hidden_states.mean(1) */
      return fe_emit_node(e, IR_OP_REDUCE_MEAN, name, &in->hidden, 1, red, 2, NULL);
    uint32_t pin[2] = {in->hidden, in->mask};
    return fe_emit_node(e, IR_OP_MASKED_MEAN_POOL, name, pin, 2, NULL, 0, NULL);
  }
  uint32_t h = in->hidden;
  if (in->mask != IR_NONE) { /* hidden.masked_fill(mask[..., None] == 0, -inf) */
    ir_type_t mt = *ir_value_type(e->g, in->mask);
    mt.rank = 3;
    mt.dims[2] = ir_dim_const(1);
    uint32_t m3 = fe_emit_node(e, IR_OP_RESHAPE, NULL, &in->mask, 1, NULL, 0, &mt);
    ir_type_t ct;
    memset(&ct, 0, sizeof ct);
    ct.dtype = e->dt;
    const double ninf = -INFINITY;
    ir_attr_t cv = IR_ATTR_FLOATS("value", &ninf, 1);
    uint32_t fill = fe_emit_node(e, IR_OP_CONST, NULL, NULL, 0, &cv, 1, &ct);
    uint32_t w[3] = {m3, h, fill};
    h = fe_emit_node(e, IR_OP_WHERE, "masked_fill", w, 3, NULL, 0, NULL);
  }
  return fe_emit_node(e, IR_OP_REDUCE_MAX, name, &h, 1, red, 2, NULL);
}

static ad_status_t need_rank(const fe_component_ctx_t *c, const fe_seq_t *in, int rank,
                             const char *what) {
  int r = in_rank(c, in);
  if (r == rank) return AD_OK;
  if (rank == 3)
    return fe_error_at(c->b->section,
                       "%s: %s pools a sequence [B, L, H], but its input is already pooled "
                       "(rank %d); use a token adapter (MLPAdapter, LinearAdapter) after a "
                       "pooling fusion",
                       c->prefix, what, r);
  return fe_error_at(c->b->section,
                     "%s: %s maps every token of a sequence, so its predictions would be per "
                     "token; pool first (MLPPoolAdapter, LinearCLSAdapter) or use a pooling "
                     "fusion (ConcatFusion)",
                     c->prefix, what);
}

/* MLPAdapter(in, out, hidden_sizes, activation_layer, bias, dropout, dropout_in_middle) */
static const fe_arg_spec_t k_mlp_args[] = {
    {"hidden_sizes", FE_ARG_LIST, 0, NULL},
    {"activation_layer", FE_ARG_STRING, 0, "torch.nn.Tanh"},
    {"bias", FE_ARG_BOOL, 0, "true"},
    {"dropout", FE_ARG_FLOAT, FE_ARG_PROB, "0.0"},
    {"dropout_in_middle", FE_ARG_BOOL, 0, "true"},
};
enum { MLP_HIDDEN, MLP_ACT, MLP_BIAS, MLP_DROPOUT, MLP_MIDDLE };

static ad_status_t mlp_check(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                             const fe_node_t *section) {
  (void)cls;
  return check_mlp_args(path, &a[MLP_HIDDEN], &a[MLP_ACT], section);
}

static mlp_cfg_t mlp_cfg_of(const fe_arg_value_t *a, int hidden, int act, int bias, int p,
                            int middle) {
  return (mlp_cfg_t){.hidden = a[hidden].list,
                     .act = a[act].s,
                     .bias = a[bias].b,
                     .p = a[p].f,
                     .in_middle = a[middle].b};
}

static ad_status_t mlp_build(fe_component_ctx_t *c, const fe_seq_t *in, int64_t out_features,
                             uint32_t *pred) {
  AD_RETURN_IF_ERROR(need_rank(c, in, 2, "MLPAdapter"));
  fe_arg_value_t store[FE_MAX_ARGS];
  const fe_arg_value_t *a = c->args;
  if (!a) {
    class_defaults(c->cls, store);
    a = store;
  }
  mlp_cfg_t m = mlp_cfg_of(a, MLP_HIDDEN, MLP_ACT, MLP_BIAS, MLP_DROPOUT, MLP_MIDDLE);
  fe_emit_t e = {.m = c->b->module, .g = c->b->forward, .dt = c->b->dtype};
  const char *outer = e.g->scope; /* the prefix is dotted: restore, not pop */
  ir_push_scope(e.g, c->prefix);
  *pred = mlp(&e, c->prefix, in->hidden, in->size, out_features, &m);
  e.g->scope = outer;
  return e.err;
}

static const fe_adapter_ops_t k_mlp_ops = {.build = mlp_build};

const fe_class_t fe_class_mlp_adapter = {
    .class_path = "modelgenerator.adapters.MLPAdapter",
    .section = "adapter",
    .args = k_mlp_args,
    .nargs = sizeof k_mlp_args / sizeof k_mlp_args[0],
    .check = mlp_check,
    .kind = FE_CLASS_ADAPTER,
    .adapter = &k_mlp_ops,
    .aliases = (const char *const[]){"modelgenerator.adapters.adapters.MLPAdapter", NULL},
};

/* LinearAdapter(in, out) = MLPAdapter(in, out, hidden_sizes=[]) */
static ad_status_t linear_adapter_build(fe_component_ctx_t *c, const fe_seq_t *in,
                                        int64_t out_features, uint32_t *pred) {
  AD_RETURN_IF_ERROR(need_rank(c, in, 2, "LinearAdapter"));
  mlp_cfg_t m = {.bias = true};
  fe_emit_t e = {.m = c->b->module, .g = c->b->forward, .dt = c->b->dtype};
  const char *outer = e.g->scope; /* the prefix is dotted: restore, not pop */
  ir_push_scope(e.g, c->prefix);
  *pred = mlp(&e, c->prefix, in->hidden, in->size, out_features, &m);
  e.g->scope = outer;
  return e.err;
}

static const fe_adapter_ops_t k_linear_ops = {.build = linear_adapter_build};

const fe_class_t fe_class_linear_adapter = {
    .class_path = "modelgenerator.adapters.LinearAdapter",
    .section = "adapter",
    .kind = FE_CLASS_ADAPTER,
    .adapter = &k_linear_ops,
    .aliases = (const char *const[]){"modelgenerator.adapters.adapters.LinearAdapter", NULL},
};

/* MLPPoolAdapter(in, out, pooling, hidden_sizes, activation_layer, bias, dropout,
 * dropout_in_middle) */
static const fe_arg_spec_t k_mlp_pool_args[] = {
    {"pooling", FE_ARG_STRING, 0, "mean_pooling"},
    {"hidden_sizes", FE_ARG_LIST, 0, NULL},
    {"activation_layer", FE_ARG_STRING, 0, "torch.nn.Tanh"},
    {"bias", FE_ARG_BOOL, 0, "true"},
    {"dropout", FE_ARG_FLOAT, FE_ARG_PROB, "0.0"},
    {"dropout_in_middle", FE_ARG_BOOL, 0, "true"},
};
enum { MP_POOLING, MP_HIDDEN, MP_ACT, MP_BIAS, MP_DROPOUT, MP_MIDDLE };

static ad_status_t mlp_pool_check(const fe_class_t *cls, const char *path,
                                  const fe_arg_value_t *a, const fe_node_t *section) {
  (void)cls;
  const char *p = a[MP_POOLING].s ? a[MP_POOLING].s : "mean_pooling";
  if (strcmp(p, "mean_pooling") != 0 && strcmp(p, "cls_pooling") != 0)
    return fe_error_at(a[MP_POOLING].node ? a[MP_POOLING].node : section,
                       "%s.init_args.pooling: '%s' is not a pooling of MLPPoolAdapter (expected "
                       "mean_pooling or cls_pooling)",
                       path, p);
  return check_mlp_args(path, &a[MP_HIDDEN], &a[MP_ACT], section);
}

static ad_status_t mlp_pool_build(fe_component_ctx_t *c, const fe_seq_t *in, int64_t out_features,
                                  uint32_t *pred) {
  AD_RETURN_IF_ERROR(need_rank(c, in, 3, "MLPPoolAdapter"));
  fe_arg_value_t store[FE_MAX_ARGS];
  const fe_arg_value_t *a = c->args;
  if (!a) {
    class_defaults(c->cls, store);
    a = store;
  }
  if (a[MP_POOLING].s && strcmp(a[MP_POOLING].s, "mean_pooling") != 0 &&
      strcmp(a[MP_POOLING].s, "cls_pooling") != 0)
    return fe_error_at(arg_place(c, MP_POOLING), "%s: unknown pooling '%s'", c->prefix,
                       a[MP_POOLING].s);
  bool cls_pool = a[MP_POOLING].s && strcmp(a[MP_POOLING].s, "cls_pooling") == 0;
  mlp_cfg_t m = mlp_cfg_of(a, MP_HIDDEN, MP_ACT, MP_BIAS, MP_DROPOUT, MP_MIDDLE);
  fe_emit_t e = {.m = c->b->module, .g = c->b->forward, .dt = c->b->dtype};
  const char *outer = e.g->scope; /* the prefix is dotted: restore, not pop */
  ir_push_scope(e.g, c->prefix);
  uint32_t x = pool(&e, "pooling", in, cls_pool ? POOL_CLS : POOL_MEAN); /* [B, H] */
  ir_push_scope(e.g, "mlp");
  *pred = mlp(&e, c->prefix, x, in->size, out_features, &m);
  ir_pop_scope(e.g);
  e.g->scope = outer;
  return e.err;
}

static const fe_adapter_ops_t k_mlp_pool_ops = {.build = mlp_pool_build};

const fe_class_t fe_class_mlp_pool_adapter = {
    .class_path = "modelgenerator.adapters.MLPPoolAdapter",
    .section = "adapter",
    .args = k_mlp_pool_args,
    .nargs = sizeof k_mlp_pool_args / sizeof k_mlp_pool_args[0],
    .check = mlp_pool_check,
    .kind = FE_CLASS_ADAPTER,
    .adapter = &k_mlp_pool_ops,
    .aliases = (const char *const[]){"modelgenerator.adapters.adapters.MLPPoolAdapter", NULL},
};

/* Linear{CLS,MeanPool,MaxPool}Adapter(in, out): pool, then self.linear. */
static ad_status_t pooled_linear(fe_component_ctx_t *c, const fe_seq_t *in, int64_t out_features,
                                 uint32_t *pred, pool_kind_t k, const char *what) {
  AD_RETURN_IF_ERROR(need_rank(c, in, 3, what));
  fe_emit_t e = {.m = c->b->module, .g = c->b->forward, .dt = c->b->dtype};
  const char *outer = e.g->scope; /* the prefix is dotted: restore, not pop */
  ir_push_scope(e.g, c->prefix);
  uint32_t x = pool(&e, "pooling", in, k);
  *pred = fe_emit_linear(&e, "linear", x, in->size, out_features, true);
  e.g->scope = outer;
  return e.err;
}

static ad_status_t cls_build(fe_component_ctx_t *c, const fe_seq_t *in, int64_t out_features,
                             uint32_t *pred) {
  return pooled_linear(c, in, out_features, pred, POOL_CLS, "LinearCLSAdapter");
}
static ad_status_t mean_build(fe_component_ctx_t *c, const fe_seq_t *in, int64_t out_features,
                              uint32_t *pred) {
  return pooled_linear(c, in, out_features, pred, POOL_MEAN, "LinearMeanPoolAdapter");
}
static ad_status_t max_build(fe_component_ctx_t *c, const fe_seq_t *in, int64_t out_features,
                             uint32_t *pred) {
  return pooled_linear(c, in, out_features, pred, POOL_MAX, "LinearMaxPoolAdapter");
}

static const fe_adapter_ops_t k_cls_ops = {.build = cls_build};
static const fe_adapter_ops_t k_mean_ops = {.build = mean_build};
static const fe_adapter_ops_t k_max_ops = {.build = max_build};

const fe_class_t fe_class_linear_cls_adapter = {
    .class_path = "modelgenerator.adapters.LinearCLSAdapter",
    .section = "adapter",
    .kind = FE_CLASS_ADAPTER,
    .adapter = &k_cls_ops,
    .aliases = (const char *const[]){"modelgenerator.adapters.adapters.LinearCLSAdapter", NULL},
};

const fe_class_t fe_class_linear_mean_pool_adapter = {
    .class_path = "modelgenerator.adapters.LinearMeanPoolAdapter",
    .section = "adapter",
    .kind = FE_CLASS_ADAPTER,
    .adapter = &k_mean_ops,
    .aliases =
        (const char *const[]){"modelgenerator.adapters.adapters.LinearMeanPoolAdapter", NULL},
};

const fe_class_t fe_class_linear_max_pool_adapter = {
    .class_path = "modelgenerator.adapters.LinearMaxPoolAdapter",
    .section = "adapter",
    .kind = FE_CLASS_ADAPTER,
    .adapter = &k_max_ops,
    .aliases =
        (const char *const[]){"modelgenerator.adapters.adapters.LinearMaxPoolAdapter", NULL},
};

/* ---- MMFusionSeqAdapter / MMFusionTokenAdapter --------------------------------------------- */
static const fe_arg_spec_t k_mm_seq_args[] = {
    {"fusion", FE_ARG_CLASS, 0, "modelgenerator.adapters.fusion.CrossAttentionFusion",
     FE_CLASS_FUSION},
    {"adapter", FE_ARG_CLASS, 0, "modelgenerator.adapters.LinearCLSAdapter", FE_CLASS_ADAPTER},
};
static const fe_arg_spec_t k_mm_token_args[] = {
    {"fusion", FE_ARG_CLASS, 0, "modelgenerator.adapters.fusion.ConcatFusion", FE_CLASS_FUSION},
    {"adapter", FE_ARG_CLASS, 0, "modelgenerator.adapters.MLPAdapter", FE_CLASS_ADAPTER},
};
enum { MM_FUSION, MM_ADAPTER };

/* fusion_module(h0, m0, h1, m1[, h2, m2]), then adapter(fused, m0) (seq) or adapter(fused)
 * (token). */
static ad_status_t mm_build(fe_component_ctx_t *c, const fe_seq_t *ins, uint32_t n,
                            int64_t out_features, uint32_t *pred, bool seq) {
  const fe_arg_spec_t *specs = seq ? k_mm_seq_args : k_mm_token_args;
  fe_arg_value_t fstore[FE_MAX_ARGS], astore[FE_MAX_ARGS];
  const fe_class_t *fcls, *acls;
  const fe_arg_value_t *fargs, *aargs;
  AD_RETURN_IF_ERROR(nested(c, &specs[MM_FUSION], c->args ? &c->args[MM_FUSION] : NULL, fstore,
                            &fcls, &fargs));
  AD_RETURN_IF_ERROR(nested(c, &specs[MM_ADAPTER], c->args ? &c->args[MM_ADAPTER] : NULL, astore,
                            &acls, &aargs));
  if (fcls->kind != FE_CLASS_FUSION || !fcls->fusion)
    return fe_error_at(arg_place(c, MM_FUSION), "%s.fusion: '%s' is not a fusion class",
                       c->prefix, fcls->class_path);
  if (acls->kind != FE_CLASS_ADAPTER || !acls->adapter || !acls->adapter->build)
    return fe_error_at(arg_place(c, MM_ADAPTER),
                       "%s.adapter: '%s' is not a single-input adapter (a head such as "
                       "MLPPoolAdapter or MLPAdapter)",
                       c->prefix, acls->class_path);
  fe_component_ctx_t fc = {
      .b = c->b,
      .prefix = ad_arena_printf(&c->b->module->arena, "%s.fusion_module", c->prefix),
      .cls = fcls,
      .args = fargs};
  fe_seq_t fused;
  AD_RETURN_IF_ERROR(fcls->fusion->build(&fc, ins, n, &fused));
  /* Sequence adapters pool with the query (modality 0) mask; token adapters get no mask. */
  fused.mask = seq && in_rank(c, &fused) == 3 ? ins[0].mask : IR_NONE;
  fe_component_ctx_t ac = {.b = c->b,
                           .prefix = ad_arena_printf(&c->b->module->arena, "%s.adapter", c->prefix),
                           .cls = acls,
                           .args = aargs};
  return acls->adapter->build(&ac, &fused, out_features, pred);
}

static ad_status_t mm_seq_build(fe_component_ctx_t *c, const fe_seq_t *ins, uint32_t n,
                                int64_t out_features, uint32_t *pred) {
  return mm_build(c, ins, n, out_features, pred, true);
}
static ad_status_t mm_token_build(fe_component_ctx_t *c, const fe_seq_t *ins, uint32_t n,
                                  int64_t out_features, uint32_t *pred) {
  return mm_build(c, ins, n, out_features, pred, false);
}

static const fe_adapter_ops_t k_mm_seq_ops = {.build_mm = mm_seq_build};
static const fe_adapter_ops_t k_mm_token_ops = {.build_mm = mm_token_build};

const fe_class_t fe_class_mm_fusion_seq_adapter = {
    .class_path = "modelgenerator.adapters.MMFusionSeqAdapter",
    .section = "adapter",
    .args = k_mm_seq_args,
    .nargs = sizeof k_mm_seq_args / sizeof k_mm_seq_args[0],
    .kind = FE_CLASS_ADAPTER,
    .adapter = &k_mm_seq_ops,
    .aliases = (const char *const[]){"modelgenerator.adapters.fusion.MMFusionSeqAdapter", NULL},
};

const fe_class_t fe_class_mm_fusion_token_adapter = {
    .class_path = "modelgenerator.adapters.MMFusionTokenAdapter",
    .section = "adapter",
    .args = k_mm_token_args,
    .nargs = sizeof k_mm_token_args / sizeof k_mm_token_args[0],
    .kind = FE_CLASS_ADAPTER,
    .adapter = &k_mm_token_ops,
    .aliases = (const char *const[]){"modelgenerator.adapters.fusion.MMFusionTokenAdapter", NULL},
};
