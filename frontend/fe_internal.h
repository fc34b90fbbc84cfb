/* Frontend internals shared by config.c (YAML tree), classes.c (schemas, sections, the build
 * driver) and the per-class builders (tiny_transformer.c). Not part of the public API. */
#ifndef AIDOMM_FRONTEND_FE_INTERNAL_H
#define AIDOMM_FRONTEND_FE_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>

#include "frontend/frontend.h"

/* File name used for nodes that come from command-line overrides. Their place is line 1,
 * column = 1-based position of the override among the override arguments. */
#define FE_CMDLINE_FILE "<command line>"

/* ---- scalar interpretation (YAML 1.2 core schema, plus '_' digit separators as PyYAML) --- */
bool fe_scalar_is_null(const fe_node_t *n); /* plain null, Null, NULL, ~ or empty */
/* Each returns false when the node is not a plain scalar of that type (or out of range). */
bool fe_scalar_int(const fe_node_t *n, int64_t *out);
bool fe_scalar_float(const fe_node_t *n, double *out); /* finite values only */
bool fe_scalar_bool(const fe_node_t *n, bool *out);

/* Where a map's i-th key was written (overrides that created the key point at the command line). */
void fe_key_place(const fe_node_t *map, uint32_t i, const char **file, int *line, int *col);
/* Index of key in a map, or -1. */
int64_t fe_map_find(const fe_node_t *map, const char *key);
/* "a mapping", "a list" or "a scalar", for messages. */
const char *fe_node_kind_name(const fe_node_t *n);

/* Copies src with control characters escaped (\n, \t, \xNN), truncating to cap. */
void fe_one_line(char *dst, size_t cap, const char *src);
/* ad_status_at with control characters in the message escaped (one line, always). */
ad_status_t fe_status_at(ad_status_code_t code, const char *file, int line, int col,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
ad_status_t fe_status_atv(ad_status_code_t code, const char *file, int line, int col,
                          const char *fmt, va_list ap);
/* An error placed at a node / at a map key (INVALID_ARGUMENT). */
ad_status_t fe_error_at(const fe_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
ad_status_t fe_error_at_key(const fe_node_t *map, uint32_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Edit distance (optimal string alignment) for "did you mean" suggestions. */
size_t fe_edit_distance(const char *a, const char *b);
/* The closest candidate within a distance that scales with the length, or NULL. */
const char *fe_closest(const char *word, const char *const *cands, size_t ncands);

/* ---- class registry ---------------------------------------------------------------------- */
typedef enum fe_arg_type {
  FE_ARG_INT = 0,
  FE_ARG_FLOAT,
  FE_ARG_BOOL,
  FE_ARG_STRING,
  FE_ARG_LIST,
  FE_ARG_CLASS, /* a nested {class_path, init_args} object (or a bare class_path string);
                   fe_arg_spec_t.kind says which kind of class is acceptable */
  FE_ARG_MAP,   /* a free-form map (config_overwrites, rename_cols) */
  FE_ARG_ANY,   /* any YAML value (unions such as `str | list[str]`); the class's check
                   validates it; fe_arg_value_t.list holds the node */
} fe_arg_type_t;

/* What a class is for; nested FE_ARG_CLASS arguments accept one kind. */
typedef enum fe_class_kind {
  FE_CLASS_TASK = 0,   /* a model section class: builds the whole "forward" program */
  FE_CLASS_BACKBONE,   /* modelgenerator.backbones.* */
  FE_CLASS_FUSION,     /* modelgenerator.adapters.fusion.* */
  FE_CLASS_ADAPTER,    /* modelgenerator.adapters.* (heads and MMFusion*Adapter) */
  FE_CLASS_OPTIMIZER,
  FE_CLASS_SCHEDULER,
  FE_CLASS_DATA,
  FE_CLASS_OTHER,      /* callbacks, loggers, strategies: accepted, warned about */
} fe_class_kind_t;

enum {
  FE_ARG_REQUIRED = 1u << 0, /* no default: the config must give it */
  FE_ARG_POSITIVE = 1u << 1, /* > 0 */
  FE_ARG_NONNEG = 1u << 2,   /* >= 0 */
  FE_ARG_PROB = 1u << 3,     /* in [0, 1) */
  FE_ARG_NULLABLE = 1u << 4, /* null accepted (value then counts as absent) */
  FE_ARG_IGNORED = 1u << 5,  /* accepted for compatibility; a non-default value is warned about */
  /* Key classes (fe_key_class) where the argument differs from its class kind's default
   * (model components and optimizers: compile-time; schedulers, data, callbacks: runtime). */
  FE_ARG_KEY_COMPILE = 1u << 6,
  FE_ARG_KEY_BOUND = 1u << 7,
  FE_ARG_KEY_RUNTIME = 1u << 8,
};

typedef struct fe_arg_spec {
  const char *name;
  fe_arg_type_t type;
  uint32_t flags;
  const char *dflt; /* YAML text of the default (plain scalar); NULL for required / lists;
                       for FE_ARG_CLASS the default class_path */
  fe_class_kind_t kind; /* FE_ARG_CLASS: the kind of class accepted */
} fe_arg_spec_t;

/* A resolved argument: the typed value and the node it came from (NULL when defaulted). */
typedef struct fe_arg_value {
  const fe_node_t *node;
  bool is_null;
  int64_t i;
  double f;
  bool b;
  const char *s;
  const fe_node_t *list; /* FE_ARG_LIST: the sequence node; FE_ARG_MAP: the map node */
  /* FE_ARG_CLASS: the resolved nested class and its typed arguments (indexed like
   * cls->args; arena-owned by the config) */
  const struct fe_class *cls;
  const struct fe_arg_value *args;
} fe_arg_value_t;

#define FE_MAX_ARGS 32

typedef struct fe_class fe_class_t;

/* Everything a model builder needs. */
typedef struct fe_build_ctx {
  const fe_config_t *config;
  ir_module_t *module;
  ir_graph_t *forward;
  ir_dtype_t dtype; /* compute and parameter dtype (trainer.precision) */
  int sym_batch;    /* symbol index of B */
  int sym_len;      /* symbol index of L */
  const fe_class_t *cls;
  const fe_arg_value_t *args; /* indexed like cls->args */
  const fe_node_t *section;   /* the model section (for errors without a better place) */
} fe_build_ctx_t;

struct fe_class {
  const char *class_path;
  const char *section; /* "model", "optimizer", "data" */
  const fe_arg_spec_t *args;
  uint32_t nargs;
  /* Cross-argument checks after typing (errors at the offending node); may be NULL. */
  ad_status_t (*check)(const fe_class_t *cls, const char *path, const fe_arg_value_t *args,
                       const fe_node_t *section);
  /* Model classes: declares slots and emits the "forward" program. */
  ad_status_t (*build)(fe_build_ctx_t *ctx);
  fe_class_kind_t kind;
  /* Component classes fill the one matching their kind. */
  const struct fe_backbone_ops *backbone;
  const struct fe_fusion_ops *fusion;
  const struct fe_adapter_ops *adapter;
  /* Other class paths that name this class (e.g. "modelgenerator.adapters.MMFusionSeqAdapter"
   * also reachable as "modelgenerator.adapters.adapters.MMFusionSeqAdapter"); NULL-terminated. */
  const char *const *aliases;
};

/* ---- components: backbones, fusions, adapters ------------------------------------------------
 * A task class (MMSequenceRegression, SequenceRegression, TinyTransformer) builds the forward
 * program by calling the component classes its arguments name. A component knows only its own
 * arguments, the parameter-name prefix it lives under (the peer's module path, e.g.
 * "backbone1" or "adapter.fusion_module") and the IR values it is handed. */

/* A sequence of embeddings (or one pooled vector) flowing between components. */
typedef struct fe_seq {
  uint32_t hidden; /* value [B, L, H] (or [B, H] when pooled) */
  uint32_t mask;   /* value [B, L] in the compute dtype, 1 = valid; IR_NONE when pooled */
  int64_t size;    /* H */
  int len_sym;     /* symbol index of L, or -1 when L is static */
} fe_seq_t;

typedef struct fe_component_ctx {
  fe_build_ctx_t *b;          /* module, forward graph, dtype, config, B symbol */
  const char *prefix;         /* parameter/node path prefix: "backbone", "adapter.fusion_module" */
  const struct fe_class *cls;
  const fe_arg_value_t *args; /* indexed like cls->args */
  int64_t dna_window;         /* data.dna_window when the task passes one to a DNA backbone: its
                                 static input length (0: the backbone's max_length) */
  bool eval_mode;             /* backbones: the peer trains this backbone's own modules in eval
                                 mode (loaded by from_pretrained; see tasks.c build_backbone):
                                 BatchNorm on its running statistics with no buffer writes, and
                                 no dropout of the backbone's own (LoRA's lora_dropout stays) */
} fe_component_ctx_t;

/* Backbones: the embedding size (needed before the fusion/adapter widths are known) and the
 * builder. A backbone declares its own INPUT nodes named "<omic>_input_ids",
 * "<omic>_attention_mask" (DNA: "<omic>_one_hot"), its own length symbol, and its parameter
 * slots named "<prefix>.encoder.<peer module path>" exactly as the peer's state_dict. */
typedef struct fe_backbone_ops {
  ad_status_t (*embedding_size)(const struct fe_class *cls, const fe_arg_value_t *args,
                                int64_t *out);
  ad_status_t (*build)(fe_component_ctx_t *c, const char *omic, fe_seq_t *out);
  /* What the runtime needs to feed and load it: tokenizer, hub id, whether the peer loads
   * pretrained weights. prefix/omic/class_path are filled by the caller. */
  void (*describe)(const struct fe_class *cls, const fe_arg_value_t *args, fe_job_backbone_t *out);
} fe_backbone_ops_t;

/* Fusions: ins[0] is the query modality (backbone_order[0]); output size known up front. */
typedef struct fe_fusion_ops {
  ad_status_t (*output_size)(const struct fe_class *cls, const fe_arg_value_t *args,
                             const int64_t *in_sizes, uint32_t n, int64_t *out);
  ad_status_t (*build)(fe_component_ctx_t *c, const fe_seq_t *ins, uint32_t n, fe_seq_t *out);
} fe_fusion_ops_t;

/* Adapters: in (sequence or pooled) -> pred [B, out_features]. MMFusion*Adapter take the
 * several modalities through build_mm; plain heads through build. */
typedef struct fe_adapter_ops {
  ad_status_t (*build)(fe_component_ctx_t *c, const fe_seq_t *in, int64_t out_features,
                       uint32_t *pred);
  ad_status_t (*build_mm)(fe_component_ctx_t *c, const fe_seq_t *ins, uint32_t n,
                          int64_t out_features, uint32_t *pred);
} fe_adapter_ops_t;

/* The registry (classes.c). */
const fe_class_t *fe_find_class(const char *class_path);
/* Index of an argument by name, or -1. */
int fe_class_arg_index(const fe_class_t *cls, const char *name);

/* The backbones of a task class (MMSequenceRegression, SequenceRegression) into
 * job->backbones; other classes leave nbackbones 0. */
void fe_task_backbones(const fe_class_t *cls, const fe_arg_value_t *args, fe_job_t *job);

/* Iteration over the table (frontend/registry.c), for key tables and suggestions. */
size_t fe_class_count(void);
const fe_class_t *fe_class_at(size_t i);

/* Classes (one file each; listed in frontend/registry.c). */
extern const fe_class_t fe_class_tiny_transformer;
extern const fe_class_t fe_class_esm2_8m;
extern const fe_class_t fe_class_esm2_35m;
extern const fe_class_t fe_class_esm2_150m;
extern const fe_class_t fe_class_esm2_650m;
extern const fe_class_t fe_class_aido_rna_650m;
extern const fe_class_t fe_class_aido_rna_1b600m;
extern const fe_class_t fe_class_aido_rna_1b600m_cds;
extern const fe_class_t fe_class_adamw;
extern const fe_class_t fe_class_synthetic_data;
extern const fe_class_t fe_class_cross_attention_fusion;
extern const fe_class_t fe_class_concat_fusion;
extern const fe_class_t fe_class_mm_fusion_seq_adapter;
extern const fe_class_t fe_class_mm_fusion_token_adapter;
extern const fe_class_t fe_class_mlp_adapter;
extern const fe_class_t fe_class_mlp_pool_adapter;
extern const fe_class_t fe_class_linear_adapter;
extern const fe_class_t fe_class_linear_cls_adapter;
extern const fe_class_t fe_class_linear_mean_pool_adapter;
extern const fe_class_t fe_class_linear_max_pool_adapter;
extern const fe_class_t fe_class_mm_sequence_regression;
extern const fe_class_t fe_class_sequence_regression;
extern const fe_class_t fe_class_enformer;
extern const fe_class_t fe_class_isoform_expression;
extern const fe_class_t fe_class_cosine_with_warmup;
extern const fe_class_t fe_class_model_checkpoint;
extern const fe_class_t fe_class_lr_monitor;
extern const fe_class_t fe_class_wandb_logger;
extern const fe_class_t fe_class_csv_logger;
extern const fe_class_t fe_class_tensorboard_logger;
extern const fe_class_t fe_class_ddp_strategy;

#endif
