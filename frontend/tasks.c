/* Tasks of ModelGenerator (modelgenerator/tasks/tasks.py): MMSequenceRegression and
 * SequenceRegression. A task builds the "forward" program: its backbones (each through its
 * class's fe_backbone_ops, under the parameter prefixes "backbone", "backbone1", "backbone2"),
 * then its adapter (prefix "adapter"), then the regression loss:
 *
 *   MMSequenceRegression.forward:  out_i = backbone_i(**inputs of backbone_order[i])
 *                                  preds = adapter(out0.h, out0.mask, out1.h, out1.mask[, ...])
 *   SequenceRegression.forward:    out = backbone(**inputs); preds = adapter(out.h, out.mask)
 *   evaluate:                      loss = MSELoss()(preds, labels)   (mean over B x outputs)
 *
 * Program interface: INPUT "labels" [B, num_outputs] in the model dtype, the backbones' own
 * INPUTs ("<omic>_input_ids", "<omic>_attention_mask", DNA "<omic>_one_hot"; SequenceRegression
 * uses the omic name "sequences", its data column), OUTPUT "pred" [B, num_outputs] and OUTPUT
 * "loss" []. The runtime scalars seed, step and lr are declared in the module.
 *
 * TaskInterface's optimizer and lr_scheduler are resolved by the sections checker (they are
 * skipped here); strict_loading and reset_optimizer_states only matter when a checkpoint is
 * restored (runtime keys). */
#include <string.h>

#include "frontend/emit.h"
#include "frontend/fe_internal.h"

/* ---- shared arguments ------------------------------------------------------------------------ */
#define TASK_INTERFACE_ARGS                                                             \
  {"use_legacy_adapter", FE_ARG_BOOL, 0, "false"},                                      \
      {"strict_loading", FE_ARG_BOOL, 0, "true"},                                       \
      {"reset_optimizer_states", FE_ARG_BOOL, 0, "false"},                              \
      {"batch_size", FE_ARG_INT, FE_ARG_NULLABLE | FE_ARG_POSITIVE | FE_ARG_IGNORED, "null"}, \
      {"loss_func", FE_ARG_ANY, 0, NULL}

static const fe_arg_spec_t k_mm_args[] = {
    {"backbone", FE_ARG_CLASS, FE_ARG_REQUIRED, NULL, FE_CLASS_BACKBONE},
    {"backbone1", FE_ARG_CLASS, FE_ARG_REQUIRED, NULL, FE_CLASS_BACKBONE},
    {"backbone2", FE_ARG_CLASS, FE_ARG_NULLABLE, "null", FE_CLASS_BACKBONE},
    {"backbone_order", FE_ARG_LIST, 0, NULL}, /* default [dna_seq, rna_seq] */
    {"adapter", FE_ARG_CLASS, 0, "modelgenerator.adapters.MMFusionTokenAdapter",
     FE_CLASS_ADAPTER},
    {"num_outputs", FE_ARG_INT, FE_ARG_POSITIVE, "1"},
    TASK_INTERFACE_ARGS,
};
enum {
  MM_BACKBONE,
  MM_BACKBONE1,
  MM_BACKBONE2,
  MM_ORDER,
  MM_ADAPTER,
  MM_OUTPUTS,
  MM_LEGACY,
  MM_STRICT,
  MM_RESET,
  MM_BATCH,
  MM_LOSS
};

static const fe_arg_spec_t k_sr_args[] = {
    {"backbone", FE_ARG_CLASS, FE_ARG_REQUIRED, NULL, FE_CLASS_BACKBONE},
    {"adapter", FE_ARG_CLASS, 0, "modelgenerator.adapters.LinearCLSAdapter", FE_CLASS_ADAPTER},
    {"num_outputs", FE_ARG_INT, FE_ARG_POSITIVE, "1"},
    {"log_grad_norm_step", FE_ARG_INT, FE_ARG_NONNEG | FE_ARG_IGNORED, "0"},
    TASK_INTERFACE_ARGS,
};
enum { SR_BACKBONE, SR_ADAPTER, SR_OUTPUTS, SR_LOG_GRAD, SR_LEGACY, SR_STRICT, SR_RESET, SR_BATCH,
       SR_LOSS };

static const char *const k_default_order[2] = {"dna_seq", "rna_seq"};
static const char *const k_prefix[3] = {"backbone", "backbone1", "backbone2"};

static const fe_node_t *place(const fe_arg_value_t *v, const fe_node_t *section) {
  return v && v->node ? v->node : section;
}

/* loss_func: torch.nn.MSELoss (the default), as a class path or {class_path: ...}. */
static ad_status_t check_loss(const char *path, const fe_arg_value_t *v) {
  const fe_node_t *n = v->list ? v->list : v->node;
  if (!n || fe_scalar_is_null(n)) return AD_OK;
  const fe_node_t *cp = n;
  if (n->kind == FE_NODE_MAP) {
    int64_t i = fe_map_find(n, "class_path");
    cp = i >= 0 ? n->items[i] : NULL;
    int64_t j = fe_map_find(n, "init_args");
    if (j >= 0 && !fe_scalar_is_null(n->items[j]) && n->items[j]->n > 0)
      return fe_status_at(AD_STATUS_UNIMPLEMENTED, n->items[j]->file, n->items[j]->line,
                          n->items[j]->col,
                          "%s.init_args.loss_func: arguments of the loss are not supported (the "
                          "mean MSELoss is)",
                          path);
  }
  if (!cp || cp->kind != FE_NODE_SCALAR ||
      (strcmp(cp->scalar, "torch.nn.MSELoss") != 0 &&
       strcmp(cp->scalar, "torch.nn.modules.loss.MSELoss") != 0))
    return fe_status_at(AD_STATUS_UNIMPLEMENTED, (cp ? cp : n)->file, (cp ? cp : n)->line,
                        (cp ? cp : n)->col,
                        "%s.init_args.loss_func: only torch.nn.MSELoss is supported", path);
  return AD_OK;
}

/* The omic names of backbone_order (default [dna_seq, rna_seq]). */
static uint32_t order_of(const fe_arg_value_t *a, const char **names) {
  const fe_node_t *l = a[MM_ORDER].list;
  if (!l) {
    names[0] = k_default_order[0];
    names[1] = k_default_order[1];
    return 2;
  }
  for (uint32_t i = 0; i < l->n && i < 3; i++) names[i] = l->items[i]->scalar;
  return l->n;
}

static bool has_backbone2(const fe_arg_value_t *a) {
  return !a[MM_BACKBONE2].is_null && (a[MM_BACKBONE2].cls || a[MM_BACKBONE2].node);
}

static ad_status_t mm_check(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                            const fe_node_t *section) {
  (void)cls;
  uint32_t want = has_backbone2(a) ? 3 : 2;
  const fe_node_t *l = a[MM_ORDER].list;
  if (l) {
    for (uint32_t i = 0; i < l->n; i++) {
      const fe_node_t *it = l->items[i];
      if (it->kind != FE_NODE_SCALAR || fe_scalar_is_null(it) || !it->scalar[0])
        return fe_error_at(it, "%s.init_args.backbone_order.%u: expected a data column prefix "
                               "such as dna_seq",
                           path, i);
      for (uint32_t j = 0; j < i; j++)
        if (strcmp(l->items[j]->scalar, it->scalar) == 0)
          return fe_error_at(it, "%s.init_args.backbone_order: '%s' is listed twice", path,
                             it->scalar);
    }
    if (l->n != want)
      return fe_error_at(
          l,
          "%s.init_args.backbone_order names %u modalities but %u backbones are given "
          "(backbone, backbone1%s)%s",
          path, l->n, want, want == 3 ? ", backbone2" : "",
          l->n == 3 ? "; a third modality needs backbone2" : "");
  } else if (want == 3) {
    return fe_error_at(place(&a[MM_BACKBONE2], section),
                       "%s.init_args.backbone2 is given but backbone_order is the default "
                       "[dna_seq, rna_seq]; name the third modality in backbone_order",
                       path);
  }
  return check_loss(path, &a[MM_LOSS]);
}

static ad_status_t sr_check(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                            const fe_node_t *section) {
  (void)cls;
  (void)section;
  if (a[SR_LEGACY].b)
    return fe_status_at(AD_STATUS_UNIMPLEMENTED, a[SR_LEGACY].node->file, a[SR_LEGACY].node->line,
                        a[SR_LEGACY].node->col,
                        "%s.init_args.use_legacy_adapter: true (the backbone's own Hugging Face "
                        "regression head) is not supported; use an adapter",
                        path);
  return check_loss(path, &a[SR_LOSS]);
}

/* ---- building -------------------------------------------------------------------------------- */
/* Typed defaults of every argument of cls (for a nested class the config left at its default). */
static void class_defaults(const fe_class_t *cls, fe_arg_value_t *out) {
  for (uint32_t i = 0; i < cls->nargs; i++) {
    const fe_arg_spec_t *s = &cls->args[i];
    memset(&out[i], 0, sizeof out[i]);
    if (!s->dflt || s->type == FE_ARG_CLASS) continue;
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

/* The class and arguments of a nested class argument, defaulting as the peer does. */
static ad_status_t nested(fe_build_ctx_t *b, const fe_arg_spec_t *spec, const fe_arg_value_t *v,
                          fe_arg_value_t *store, const fe_class_t **cls,
                          const fe_arg_value_t **args) {
  *cls = v->cls;
  *args = v->args;
  if (!*cls) {
    *cls = spec->dflt ? fe_find_class(spec->dflt) : NULL;
    *args = NULL;
  }
  if (!*cls)
    return fe_error_at(place(v, b->section), "model.init_args.%s: missing class", spec->name);
  if (!*args) {
    class_defaults(*cls, store);
    *args = store;
  }
  return AD_OK;
}

/* data.init_args.dna_window (an aidomm extension) for the DNA backbone, or 0. */
static int64_t dna_window(const fe_build_ctx_t *b) {
  if (!b->config) return 0;
  const fe_node_t *n = fe_config_get(b->config, "data.init_args.dna_window");
  int64_t w = 0;
  if (!n || !fe_scalar_int(n, &w) || w < 0) return 0;
  return w;
}

static ad_status_t build_backbone(fe_build_ctx_t *b, const fe_arg_spec_t *spec,
                                  const fe_arg_value_t *v, const char *prefix, const char *omic,
                                  fe_seq_t *out) {
  fe_arg_value_t store[FE_MAX_ARGS];
  const fe_class_t *cls;
  const fe_arg_value_t *args;
  AD_RETURN_IF_ERROR(nested(b, spec, v, store, &cls, &args));
  if (cls->kind != FE_CLASS_BACKBONE || !cls->backbone)
    return fe_error_at(place(v, b->section), "model.init_args.%s: '%s' is not a backbone",
                       spec->name, cls->class_path);
  size_t n = strlen(cls->class_path);
  bool dna = n >= 8 && strcmp(cls->class_path + n - 8, "enformer") == 0;
  /* Peer quirk: Lightning (>= 2.2) no longer calls .train() at the start of fit and Hugging
   * Face's from_pretrained leaves the model it loads in eval mode, so a backbone the peer loads
   * from a hub folder runs its own modules in eval mode for the whole fit (docs/ARCHITECTURE.md,
   * "Peer quirks"). describe() says whether the peer loads it. */
  fe_job_backbone_t desc;
  memset(&desc, 0, sizeof desc);
  if (cls->backbone->describe) cls->backbone->describe(cls, args, &desc);
  fe_component_ctx_t c = {.b = b,
                          .prefix = prefix,
                          .cls = cls,
                          .args = args,
                          .dna_window = dna ? dna_window(b) : 0,
                          .eval_mode = desc.pretrained};
  /* Components restore the scope they were given; keep the task's even if one does not. */
  const char *scope = b->forward->scope;
  ad_status_t st = cls->backbone->build(&c, omic, out);
  b->forward->scope = scope;
  return st;
}

/* labels INPUT, pred and loss OUTPUTs around the adapter's prediction. */
static ad_status_t regression_head(fe_build_ctx_t *b, uint32_t pred, int64_t nout,
                                   const fe_node_t *where) {
  ir_graph_t *g = b->forward;
  const ir_type_t *pt = pred == IR_NONE ? NULL : ir_value_type(g, pred);
  if (!pt) return ir_graph_take_error(g);
  int64_t w = -1;
  if (pt->rank != 2 || !ir_dim_is_const(pt->dims[1], &w) || w != nout)
    return fe_error_at(where,
                       "the adapter's predictions have rank %d (width %lld), not [B, "
                       "num_outputs=%lld]",
                       pt->rank, (long long)w, (long long)nout);
  const char *saved = g->scope;
  g->scope = "";
  fe_emit_t e = {.m = b->module, .g = g, .dt = b->dtype};
  ir_type_t lt;
  memset(&lt, 0, sizeof lt);
  lt.dtype = b->dtype;
  lt.rank = 2;
  lt.dims[0] = pt->dims[0];
  lt.dims[1] = ir_dim_const(nout);
  uint32_t labels = fe_emit_node(&e, IR_OP_INPUT, "labels", NULL, 0, NULL, 0, &lt);
  fe_emit_node(&e, IR_OP_OUTPUT, "pred", &pred, 1, NULL, 0, NULL);
  uint32_t mse_in[2] = {pred, labels};
  uint32_t loss = fe_emit_node(&e, IR_OP_MSE, "loss_fn", mse_in, 2, NULL, 0, NULL);
  fe_emit_node(&e, IR_OP_OUTPUT, "loss", &loss, 1, NULL, 0, NULL);
  g->scope = saved;
  return AD_OK;
}

static ad_status_t declare_scalars(fe_build_ctx_t *b) {
  static const struct {
    const char *name;
    ir_dtype_t dt;
  } k[3] = {{"seed", IR_DTYPE_I64}, {"step", IR_DTYPE_I64}, {"lr", IR_DTYPE_F64}};
  for (int i = 0; i < 3; i++)
    if (!ir_module_find_scalar(b->module, k[i].name))
      AD_RETURN_IF_ERROR(ir_module_add_scalar(b->module, k[i].name, k[i].dt, 0.0));
  return AD_OK;
}

static ad_status_t adapter_of(fe_build_ctx_t *b, const fe_arg_spec_t *spec,
                              const fe_arg_value_t *v, fe_arg_value_t *store, bool mm,
                              fe_component_ctx_t *out) {
  const fe_class_t *cls;
  const fe_arg_value_t *args;
  AD_RETURN_IF_ERROR(nested(b, spec, v, store, &cls, &args));
  if (cls->kind != FE_CLASS_ADAPTER || !cls->adapter ||
      (mm ? !cls->adapter->build_mm : !cls->adapter->build))
    return fe_error_at(place(v, b->section),
                       mm ? "model.init_args.adapter: '%s' is not a fusion adapter "
                            "(MMFusionSeqAdapter or MMFusionTokenAdapter)"
                          : "model.init_args.adapter: '%s' is not a sequence adapter (a head "
                            "such as LinearCLSAdapter or MLPPoolAdapter)",
                       cls->class_path);
  *out = (fe_component_ctx_t){.b = b, .prefix = "adapter", .cls = cls, .args = args};
  return AD_OK;
}

static ad_status_t mm_build(fe_build_ctx_t *b) {
  const fe_arg_value_t *a = b->args;
  AD_RETURN_IF_ERROR(declare_scalars(b));
  /* Cross-argument checks again: a builder may be driven without the config checker. */
  AD_RETURN_IF_ERROR(mm_check(b->cls, "model", a, b->section));
  const char *order[3];
  uint32_t n = order_of(a, order);
  fe_seq_t seqs[3];
  for (uint32_t i = 0; i < n; i++)
    AD_RETURN_IF_ERROR(build_backbone(b, &k_mm_args[MM_BACKBONE + i], &a[MM_BACKBONE + i],
                                      k_prefix[i], order[i], &seqs[i]));
  fe_arg_value_t store[FE_MAX_ARGS];
  fe_component_ctx_t ac;
  AD_RETURN_IF_ERROR(adapter_of(b, &k_mm_args[MM_ADAPTER], &a[MM_ADAPTER], store, true, &ac));
  uint32_t pred = IR_NONE;
  AD_RETURN_IF_ERROR(ac.cls->adapter->build_mm(&ac, seqs, n, a[MM_OUTPUTS].i, &pred));
  return regression_head(b, pred, a[MM_OUTPUTS].i, place(&a[MM_ADAPTER], b->section));
}

static ad_status_t sr_build(fe_build_ctx_t *b) {
  const fe_arg_value_t *a = b->args;
  AD_RETURN_IF_ERROR(declare_scalars(b));
  AD_RETURN_IF_ERROR(sr_check(b->cls, "model", a, b->section));
  fe_seq_t seq;
  AD_RETURN_IF_ERROR(build_backbone(b, &k_sr_args[SR_BACKBONE], &a[SR_BACKBONE], "backbone",
                                    "sequences", &seq));
  fe_arg_value_t store[FE_MAX_ARGS];
  fe_component_ctx_t ac;
  AD_RETURN_IF_ERROR(adapter_of(b, &k_sr_args[SR_ADAPTER], &a[SR_ADAPTER], store, false, &ac));
  uint32_t pred = IR_NONE;
  AD_RETURN_IF_ERROR(ac.cls->adapter->build(&ac, &seq, a[SR_OUTPUTS].i, &pred));
  return regression_head(b, pred, a[SR_OUTPUTS].i, place(&a[SR_ADAPTER], b->section));
}

static void describe_backbone(const fe_arg_spec_t *spec, const fe_arg_value_t *v,
                              const char *prefix, const char *omic, fe_job_t *job) {
  const fe_class_t *cls = v->cls ? v->cls : spec->dflt ? fe_find_class(spec->dflt) : NULL;
  if (!cls || cls->kind != FE_CLASS_BACKBONE || !cls->backbone || !cls->backbone->describe ||
      job->nbackbones >= FE_MAX_BACKBONES)
    return;
  fe_arg_value_t store[FE_MAX_ARGS];
  const fe_arg_value_t *args = v->args;
  if (!args) {
    class_defaults(cls, store);
    args = store;
  }
  fe_job_backbone_t *bb = &job->backbones[job->nbackbones++];
  memset(bb, 0, sizeof *bb);
  bb->prefix = prefix;
  bb->omic = omic;
  bb->class_path = cls->class_path;
  cls->backbone->describe(cls, args, bb);
}

void fe_task_backbones(const fe_class_t *cls, const fe_arg_value_t *a, fe_job_t *job) {
  job->nbackbones = 0;
  if (cls == &fe_class_mm_sequence_regression) {
    const char *order[3];
    uint32_t n = order_of(a, order);
    for (uint32_t i = 0; i < n && i < 3; i++)
      describe_backbone(&k_mm_args[MM_BACKBONE + i], &a[MM_BACKBONE + i], k_prefix[i], order[i],
                        job);
    job->strict_loading = a[MM_STRICT].b;
    job->reset_optimizer_states = a[MM_RESET].b;
  } else if (cls == &fe_class_sequence_regression) {
    describe_backbone(&k_sr_args[SR_BACKBONE], &a[SR_BACKBONE], "backbone", "sequences", job);
    job->strict_loading = a[SR_STRICT].b;
    job->reset_optimizer_states = a[SR_RESET].b;
  }
}

const fe_class_t fe_class_mm_sequence_regression = {
    .class_path = "modelgenerator.tasks.MMSequenceRegression",
    .section = "model",
    .args = k_mm_args,
    .nargs = sizeof k_mm_args / sizeof k_mm_args[0],
    .check = mm_check,
    .build = mm_build,
    .kind = FE_CLASS_TASK,
    .aliases = (const char *const[]){"modelgenerator.tasks.tasks.MMSequenceRegression", NULL},
};

const fe_class_t fe_class_sequence_regression = {
    .class_path = "modelgenerator.tasks.SequenceRegression",
    .section = "model",
    .args = k_sr_args,
    .nargs = sizeof k_sr_args / sizeof k_sr_args[0],
    .check = sr_check,
    .build = sr_build,
    .kind = FE_CLASS_TASK,
    .aliases = (const char *const[]){"modelgenerator.tasks.tasks.SequenceRegression", NULL},
};
