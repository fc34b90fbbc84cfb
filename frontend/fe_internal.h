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
} fe_arg_type_t;

enum {
  FE_ARG_REQUIRED = 1u << 0, /* no default: the config must give it */
  FE_ARG_POSITIVE = 1u << 1, /* > 0 */
  FE_ARG_NONNEG = 1u << 2,   /* >= 0 */
  FE_ARG_PROB = 1u << 3,     /* in [0, 1) */
  FE_ARG_NULLABLE = 1u << 4, /* null accepted (value then counts as absent) */
  FE_ARG_IGNORED = 1u << 5,  /* accepted for compatibility; a non-default value is warned about */
};

typedef struct fe_arg_spec {
  const char *name;
  fe_arg_type_t type;
  uint32_t flags;
  const char *dflt; /* YAML text of the default (plain scalar); NULL for required / lists */
} fe_arg_spec_t;

/* A resolved argument: the typed value and the node it came from (NULL when defaulted). */
typedef struct fe_arg_value {
  const fe_node_t *node;
  bool is_null;
  int64_t i;
  double f;
  bool b;
  const char *s;
  const fe_node_t *list; /* FE_ARG_LIST: the sequence node */
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
};

/* The registry (classes.c). */
const fe_class_t *fe_find_class(const char *class_path);
/* Index of an argument by name, or -1. */
int fe_class_arg_index(const fe_class_t *cls, const char *name);

/* Model classes (one file each). */
extern const fe_class_t fe_class_tiny_transformer;

#endif
