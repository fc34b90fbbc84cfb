/* Frontend: ModelGenerator-style YAML -> config tree (every node keeps FILE:LINE:COL) -> IR.
 * Owner of the config tree is the caller (fe_config_free). */
#ifndef AIDOMM_FRONTEND_FRONTEND_H
#define AIDOMM_FRONTEND_FRONTEND_H

#include <stdio.h>

#include "ir/ir.h"

typedef enum fe_node_kind {
  FE_NODE_SCALAR = 0,
  FE_NODE_MAP,
  FE_NODE_SEQ,
} fe_node_kind_t;

typedef struct fe_node fe_node_t;
struct fe_node {
  fe_node_kind_t kind;
  const char *file; /* where it came from: the YAML file, or "<command line>" for overrides */
  int line, col;    /* 1-based */
  const char *scalar;       /* FE_NODE_SCALAR: the text; quoted scalars flagged below */
  int quoted;
  uint32_t n;               /* MAP: pairs; SEQ: items */
  const char **keys;        /* MAP keys */
  fe_node_t **items;        /* MAP values / SEQ items */
  int *key_line, *key_col;  /* MAP key places */
  const char **key_file;    /* MAP: per-key files where keys come from several config files
                               (repeated --config); NULL when every key is from `file` */
};

typedef struct fe_config {
  ad_arena_t arena;
  fe_node_t *root; /* a MAP */
  const char *path;
  FILE *warn_stream; /* warnings "FILE:LINE:COL: warning: ..." (ignored keys); stderr after
                        fe_config_load, NULL silences them */
} fe_config_t;

/* Loads a YAML file and applies dotted command-line overrides, e.g.
 * {"--model.init_args.hidden_size", "64", "--trainer.max_steps=5"}.
 * An override's value is parsed as YAML (a scalar, or a flow list/map); missing keys are
 * created; list elements are named by index ("--trainer.callbacks.0.init_args.dirpath x");
 * as in jsonargparse, "init_args" may be left out under a class_path ("--data.batch_size 2")
 * and a field name applied to a list goes to its last element. Nodes from overrides have the
 * file "<command line>", line 1 and column = the override's 1-based argument position.
 * Every error is one INVALID_ARGUMENT status "FILE:LINE:COL: error: ...". */
ad_status_t fe_config_load(const char *path, int noverrides, char *const *overrides,
                           fe_config_t **out);
void fe_config_free(fe_config_t *c);
/* Looks up a dotted path ("model.init_args.hidden_size", "trainer.callbacks.0"), literally
 * (no init_args elision); NULL when absent. */
const fe_node_t *fe_config_get(const fe_config_t *c, const char *dotted);
/* Emits the resolved config as YAML text (stored in the plan): deterministic, key order kept,
 * quoted scalars stay quoted; loading it again emits the same bytes. */
void fe_config_emit_yaml(const fe_config_t *c, ad_buf_t *out);

/* The compiled model: a module holding the program "forward" (training-mode forward with
 * named inputs, outputs "pred" and "loss") and all parameter slots; plus the job settings
 * the later passes and the runtime need. */
/* How the runtime feeds one backbone (fe_job_t.backbones). */
typedef enum fe_tokenizer {
  FE_TOKENIZER_NONE = 0,
  FE_TOKENIZER_DNA_ONEHOT, /* Enformer: INPUT "<omic>_one_hot" [B, L, 4] */
  FE_TOKENIZER_RNABERT,    /* AIDO.RNA: "<omic>_input_ids" i64 [B, L], "<omic>_attention_mask" */
  FE_TOKENIZER_ESM2,       /* ESM2: likewise */
} fe_tokenizer_t;

typedef struct fe_job_backbone {
  const char *prefix;     /* parameter prefix: "backbone", "backbone1", "backbone2" */
  const char *omic;       /* input-name prefix: backbone_order[i] ("dna_seq"), or "sequences" */
  const char *class_path;
  fe_tokenizer_t tokenizer;
  const char *hub_id;     /* the folder pretrained weights come from ("genbio-ai/AIDO.RNA-650M") */
  bool pretrained;        /* the peer loads hub weights: from_scratch false (ESM2: always) */
} fe_job_backbone_t;

#define FE_MAX_BACKBONES 3
#define FE_MAX_DATA_COLS 64
#define FE_MAX_SPLIT_PATTERNS 16

typedef struct fe_job {
  int64_t seed;          /* seed_everything */
  int64_t max_steps;     /* trainer.max_steps */
  double lr, beta1, beta2, eps, weight_decay; /* AdamW */
  int64_t batch_size;
  int64_t max_length;    /* data max_length: the bound of symbol L; when the data class has
                            none (IsoformExpression) the backbones declare their own length
                            symbols and this is the largest of their bounds */
  ir_dtype_t dtype;      /* trainer.precision: f32 (32) or f64 (64) */

  /* ---- settings for the runtime (issue 3 onwards); Lightning's defaults when absent ---- */
  int64_t max_epochs;              /* trainer.max_epochs; -1 = none given (Lightning: 1000
                                      when max_steps is -1 too) */
  int64_t val_check_interval;      /* trainer.val_check_interval in train batches; 0 = once per
                                      epoch (Lightning's 1.0) */
  double val_check_fraction;       /* val_check_interval given as a float fraction of an epoch
                                      (0 when given as batches) */
  int64_t check_val_every_n_epoch; /* -1 when null */
  int64_t log_every_n_steps;       /* 50 */
  int64_t accumulate_grad_batches; /* 1 */
  double gradient_clip_val;        /* 0 = no clipping; global L2 norm ("norm" algorithm) */
  double limit_train_batches, limit_val_batches, limit_test_batches,
      limit_predict_batches;       /* fraction (<= 1.0) or, when is_count, a batch count */
  bool limit_is_count[4];          /* train, val, test, predict: the limit above is a count */
  const char *default_root_dir;    /* "" when absent (Lightning: the working directory) */
  /* lr_scheduler (modelgenerator.lr_schedulers.CosineWithWarmup); has_scheduler false: the
   * learning rate stays constant. num_warmup_steps wins over warmup_ratio when both given. */
  bool has_scheduler;
  double warmup_ratio;             /* -1 when not given */
  int64_t num_warmup_steps;        /* -1 when not given */
  /* trainer.callbacks: the (last) lightning ModelCheckpoint, has_checkpoint false when none. */
  bool has_checkpoint;
  const char *ckpt_dirpath, *ckpt_filename, *ckpt_monitor; /* "" when null */
  bool ckpt_mode_max, ckpt_save_last, ckpt_save_on_train_epoch_end;
  int64_t ckpt_save_top_k, ckpt_every_n_train_steps, ckpt_every_n_epochs; /* -1 when null */
  int ckpt_save_on_train_epoch_end_tri; /* -1 null, 0, 1 (Lightning resolves null) */
  bool ckpt_save_last_link;             /* save_last: "link" */
  /* trainer.logger: CSV metrics (a W&B logger maps here, with a warning); NULL when off */
  const char *logger_dir, *logger_name;
  const char *ckpt_path;           /* top-level ckpt_path; NULL when null */
  /* data (modelgenerator.data.IsoformExpression); strings are "" when not given */
  const char *data_path;
  /* every pattern of train/valid/test_split_files (a string or a list), in order; none: the
   * defaults train_*.tsv, validation.tsv, test.tsv */
  const char *split_patterns[3][FE_MAX_SPLIT_PATTERNS];
  uint32_t nsplit_patterns[3];
  bool data_normalize, data_shuffle;
  int64_t data_random_seed;
  int64_t dna_window;              /* data.dna_window: centre crop of DNA (0 = off) */
  /* data columns: x_cols as in the TSV header (x_col order), x_names the names the model sees
   * after rename_cols; y_cols the label columns (IsoformExpression: labels_0..labels_29) */
  const char *x_cols[FE_MAX_DATA_COLS], *x_names[FE_MAX_DATA_COLS];
  uint32_t n_x;
  const char *y_cols[FE_MAX_DATA_COLS];
  uint32_t n_y;
  /* model.init_args (TaskInterface): checkpoint restore semantics */
  bool strict_loading, reset_optimizer_states;
  /* the task's backbones, in backbone_order (none for models without a data interface) */
  fe_job_backbone_t backbones[FE_MAX_BACKBONES];
  uint32_t nbackbones;
} fe_job_t;

/* Builds the IR for the config's model class (the class registry lives in frontend/).
 * Schema errors are placed at the offending node; ignored keys are warned about on
 * c->warn_stream. max_steps is -1 when the trainer sets no limit. */
ad_status_t fe_build_module(const fe_config_t *c, ir_module_t **out_module, fe_job_t *out_job);

/* The job settings of a config without building the model (same checks, errors and warnings as
 * fe_build_module; max_length is left 0). Strings point into the config's arena. */
ad_status_t fe_config_job(const fe_config_t *c, fe_job_t *out_job);

/* A config from YAML text in memory (the plan's CONFIG section), named `name` in errors, with
 * overrides applied as fe_config_load does; argpos[i] (NULL: i + 1) is the command-line
 * position of overrides[i], the column of its errors. */
ad_status_t fe_config_load_text(const char *name, const char *text, size_t len, int noverrides,
                                char *const *overrides, const int *argpos, fe_config_t **out);

/* Several config files, as repeated `--config` in jsonargparse: later files override earlier
 * ones key by key (maps merge recursively; scalars and lists are replaced; a node whose
 * class_path changes is replaced whole, init_args included), then the overrides apply. Each node
 * keeps the place of the file it came from. npaths >= 1. */
ad_status_t fe_config_load_files(int npaths, const char *const *paths, int noverrides,
                                 char *const *overrides, fe_config_t **out);

/* `--print_config`: checks the config as fe_build_module does (same errors and warnings, no IR
 * is built) and emits it resolved: every class with its class_path and all of its init_args,
 * defaults filled in (nested classes too), the trainer with Lightning's defaults for the keys
 * aidomm knows. Loading the output and printing it again gives the same bytes, and compiling it
 * gives the same module. */
ad_status_t fe_config_print(const fe_config_t *c, ad_buf_t *out);

/* What changing a config key takes (DESIGN.md "Runtime"). The table behind it is generated from
 * the class registry: every init_args key of every class, classed by its class's kind and the
 * argument's flags. */
typedef enum fe_key_class {
  FE_KEY_UNKNOWN = 0, /* no such key in any registered class or section */
  FE_KEY_COMPILE,     /* changes the compiled graph: model.*, trainer.precision, optimizer betas */
  FE_KEY_BOUND,       /* changes a symbol bound: data.batch_size, backbone max_length,
                         data.dna_window (a recompile, or a smaller value at run time) */
  FE_KEY_RUNTIME,     /* read by the runtime: lr, trainer.max_steps, callbacks, ckpt_path */
} fe_key_class_t;

/* Classes a dotted key as given on a command line ("model.optimizer.lr", with or without
 * "init_args" segments and list indices; a leading "--" and "=value" are ignored). */
fe_key_class_t fe_key_class(const char *dotted);
const char *fe_key_class_name(fe_key_class_t k); /* "compile-time", "bound-changing", ... */

typedef enum fe_tool {
  FE_TOOL_COMPILE = 0, /* aidommc compile: takes every key */
  FE_TOOL_RUNTIME,     /* aidomm-rt run: runtime keys (and bound keys, checked against the plan) */
} fe_tool_t;
/* NULL when `dotted` may be given to `tool`; otherwise an INVALID_ARGUMENT status placed at
 * <command line>:1:argpos naming the tool that takes it, e.g. "--model.init_args.foo changes
 * the compiled graph; give it to aidommc compile". */
ad_status_t fe_key_check(const char *dotted, fe_tool_t tool, int argpos);

/* The generated key table, one line per key: "<section or class_path>\t<key>\t<class>". */
void fe_key_table(ad_buf_t *out);

#endif
