/* Private to the config checker: classes.c (typing, nested classes, the build driver),
 * sections.c (top-level sections, trainer, job, --print_config), keys.c (key classes) and
 * config.c (merging and emitting trees). Not for builders: they read fe_internal.h. */
#ifndef AIDOMM_FRONTEND_FE_CHECK_H
#define AIDOMM_FRONTEND_FE_CHECK_H

#include "frontend/fe_internal.h"

/* Warnings are collected while the sections are checked and printed in file order, as a
 * compiler would, whatever order the sections are processed in. */
typedef struct fe_warning {
  const char *file;
  int line, col;
  uint32_t seq;
  char *text;
} fe_warning_t;

typedef struct fe_checker {
  const fe_config_t *c;
  ad_arena_t *arena; /* the config's: resolved nested classes live as long as the config */
  fe_warning_t *w;
  uint32_t nw, capw;
} fe_checker_t;

void fe_checker_init(fe_checker_t *k, const fe_config_t *c);
/* Prints the collected warnings (sorted by place) and frees them. */
void fe_checker_flush(fe_checker_t *k);
void fe_warn_node(fe_checker_t *k, const fe_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fe_warn_key(fe_checker_t *k, const fe_node_t *map, uint32_t i, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* " (known keys: a, b)" or "; did you mean 'x'?" into buf. */
void fe_suggest(const char *word, const char *const *cands, size_t n, char *buf, size_t cap);
/* "'x'", "the quoted string \"x\"", "a mapping" for messages. */
const char *fe_describe(const fe_node_t *n, char *buf, size_t cap);
const char *fe_type_name(fe_arg_type_t t);
/* "model" (tasks), "backbone", "fusion", "adapter", "optimizer", "lr_scheduler", "data",
 * "callback/logger/strategy". */
const char *fe_kind_name(fe_class_kind_t k);

/* A class resolved at a place: its class and typed arguments (defaults filled in). */
typedef struct fe_resolved {
  const fe_class_t *cls;    /* NULL: absent (a nullable class argument or optional section) */
  const fe_node_t *section; /* the node it was written as; NULL when defaulted */
  fe_arg_value_t args[FE_MAX_ARGS];
} fe_resolved_t;

/* Resolves `sec` ({class_path, init_args}, a bare class_path string, or NULL/null for the
 * default class) as a class of `kind` written at `path`. init_args keys listed in `skip`
 * (NULL-terminated, may be NULL) are left to the caller. */
ad_status_t fe_resolve_class(fe_checker_t *k, fe_class_kind_t kind, const char *path,
                             const fe_node_t *sec, const char *default_class,
                             const char *const *skip, fe_resolved_t *out);

/* Argument indices of the classes other files read. */
enum { FE_ADAMW_LR, FE_ADAMW_BETAS, FE_ADAMW_EPS, FE_ADAMW_WD, FE_ADAMW_AMSGRAD, FE_ADAMW_MAXIMIZE };
enum { FE_SYNTH_BATCH, FE_SYNTH_MAXLEN };

/* Typed top-level sections (sections.c). */
typedef struct fe_sections {
  fe_resolved_t model, optim, sched, data;
  const char *optim_path, *sched_path; /* "optimizer" or "model.init_args.optimizer" */
  const fe_node_t *seed, *trainer, *ckpt_path;
} fe_sections_t;

/* Lightning Trainer arguments aidomm knows (sections.c): the default as YAML text, the key
 * class, and whether the runtime acts on it yet (keys it does not act on are warned about by
 * name when given). */
typedef struct fe_trainer_key {
  const char *name;
  const char *dflt;
  fe_key_class_t kc;
  bool acted;
} fe_trainer_key_t;
extern const fe_trainer_key_t fe_trainer_keys[];
extern const size_t fe_ntrainer_keys;

/* Top-level keys: seed_everything, trainer, model, optimizer, lr_scheduler, data, ckpt_path. */
extern const char *const fe_top_keys[];
extern const size_t fe_ntop_keys;

/* Checks every section of the config and fills the job (warnings go to k). */
ad_status_t fe_check_sections(fe_checker_t *k, fe_sections_t *s, fe_job_t *job);

/* ---- trees (config.c) ----------------------------------------------------------------------- */
fe_node_t *fe_node_new_map(ad_arena_t *a);
fe_node_t *fe_node_new_scalar(ad_arena_t *a, const char *text, bool quoted);
void fe_node_map_put(ad_arena_t *a, fe_node_t *map, const char *key, fe_node_t *value);
/* Parses a YAML value written in a spec ("[0.9, 0.999]", "{}") into a node placed at
 * "<default>"; NULL if it does not parse. */
fe_node_t *fe_node_parse_text(ad_arena_t *a, const char *text);
/* Emits a node (a map at the top) as block YAML, as fe_config_emit_yaml does. */
void fe_node_emit_yaml(const fe_node_t *root, ad_buf_t *out);

/* ---- key classes (keys.c) --------------------------------------------------------------------- */
/* The class of an init_args key of `cls` (its flags, else its kind's default). */
fe_key_class_t fe_arg_key_class(const fe_class_t *cls, const fe_arg_spec_t *spec);

#endif
