/* Frontend: ModelGenerator-style YAML -> config tree (every node keeps FILE:LINE:COL) -> IR.
 * Owner of the config tree is the caller (fe_config_free). */
#ifndef AIDOMM_FRONTEND_FRONTEND_H
#define AIDOMM_FRONTEND_FRONTEND_H

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
} fe_config_t;

/* Loads a YAML file and applies dotted command-line overrides, e.g.
 * {"--model.init_args.hidden_size", "64", "--trainer.max_steps=5"}. */
ad_status_t fe_config_load(const char *path, int noverrides, char *const *overrides,
                           fe_config_t **out);
void fe_config_free(fe_config_t *c);
/* Looks up a dotted path ("model.init_args.hidden_size"); NULL when absent. */
const fe_node_t *fe_config_get(const fe_config_t *c, const char *dotted);
/* Emits the resolved config as YAML text (stored in the plan). */
void fe_config_emit_yaml(const fe_config_t *c, ad_buf_t *out);

/* The compiled model: a module holding the program "forward" (training-mode forward with
 * named inputs, outputs "pred" and "loss") and all parameter slots; plus the job settings
 * the later passes and the runtime need. */
typedef struct fe_job {
  int64_t seed;          /* seed_everything */
  int64_t max_steps;     /* trainer.max_steps */
  double lr, beta1, beta2, eps, weight_decay; /* AdamW */
  int64_t batch_size;
} fe_job_t;

/* Builds the IR for the config's model class (the class registry lives in frontend/). */
ad_status_t fe_build_module(const fe_config_t *c, ir_module_t **out_module, fe_job_t *out_job);

#endif
