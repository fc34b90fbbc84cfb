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
typedef struct fe_job {
  int64_t seed;          /* seed_everything */
  int64_t max_steps;     /* trainer.max_steps */
  double lr, beta1, beta2, eps, weight_decay; /* AdamW */
  int64_t batch_size;
  int64_t max_length;    /* data max_length: the bound of symbol L */
  ir_dtype_t dtype;      /* trainer.precision: f32 (32) or f64 (64) */
} fe_job_t;

/* Builds the IR for the config's model class (the class registry lives in frontend/).
 * Schema errors are placed at the offending node; ignored keys are warned about on
 * c->warn_stream. max_steps is -1 when the trainer sets no limit. */
ad_status_t fe_build_module(const fe_config_t *c, ir_module_t **out_module, fe_job_t *out_job);

#endif
