/* The class registry (class_path -> init_args schema and builder), schema checking with
 * GCC-style errors at the offending node, the top-level sections (seed_everything, trainer,
 * model, optimizer, data) and fe_build_module, which drives the model class's builder.
 *
 * Policy: inside a class's init_args every key must be known (a misspelt key is an error with
 * the closest known key suggested), since a silently ignored model argument changes results.
 * Unknown top-level keys and trainer keys aidomm does not use are warnings naming the key: the
 * users' ModelGenerator configs carry many Lightning settings (logger, callbacks, devices) that
 * do not change the compiled graph. */
#include <float.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/fe_internal.h"

/* ---- suggestions and warnings ---------------------------------------------------------------- */
size_t fe_edit_distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b);
  if (n > 64 || m > 64) return (size_t)-1; /* keys are short; long words get no suggestion */
  size_t d[65][65];
  for (size_t i = 0; i <= n; i++) d[i][0] = i;
  for (size_t j = 0; j <= m; j++) d[0][j] = j;
  for (size_t i = 1; i <= n; i++)
    for (size_t j = 1; j <= m; j++) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      size_t v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1; /* transposition: "lenght" -> "length" */
      d[i][j] = v;
    }
  return d[n][m];
}

const char *fe_closest(const char *word, const char *const *cands, size_t ncands) {
  size_t len = strlen(word), best = (size_t)-1;
  const char *pick = NULL;
  for (size_t i = 0; i < ncands; i++) {
    size_t d = fe_edit_distance(word, cands[i]);
    if (d < best) {
      best = d;
      pick = cands[i];
    }
  }
  size_t limit = len / 3 > 2 ? len / 3 : 2;
  return pick && best <= limit && best < len ? pick : NULL;
}

/* Warnings are collected while the sections are checked and printed in file order, as a
 * compiler would, whatever order the sections are processed in. */
typedef struct warning {
  const char *file;
  int line, col;
  uint32_t seq;
  char *text;
} warning_t;

typedef struct checker {
  const fe_config_t *c;
  warning_t *w;
  uint32_t nw, capw;
} checker_t;

static void warn_at(checker_t *k, const char *file, int line, int col, const char *msg) {
  if (!k->c->warn_stream) return;
  if (k->nw == k->capw) {
    uint32_t ncap = k->capw ? 2 * k->capw : 16;
    warning_t *nw = realloc(k->w, sizeof *nw * ncap);
    if (!nw) return; /* a lost warning is better than a failed compile */
    k->w = nw;
    k->capw = ncap;
  }
  char *text = strdup(msg);
  if (!text) return;
  k->w[k->nw] = (warning_t){file, line, col, k->nw, text};
  k->nw++;
}

static int warning_cmp(const void *pa, const void *pb) {
  const warning_t *a = pa, *b = pb;
  int f = strcmp(a->file, b->file);
  if (f) return f;
  if (a->line != b->line) return a->line < b->line ? -1 : 1;
  if (a->col != b->col) return a->col < b->col ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void flush_warnings(checker_t *k) {
  if (k->nw) qsort(k->w, k->nw, sizeof *k->w, warning_cmp);
  for (uint32_t i = 0; i < k->nw; i++) {
    fprintf(k->c->warn_stream, "%s:%d:%d: warning: %s\n", k->w[i].file, k->w[i].line, k->w[i].col,
            k->w[i].text);
    free(k->w[i].text);
  }
  free(k->w);
  k->w = NULL;
  k->nw = k->capw = 0;
}

static void warn_key(checker_t *k, const fe_node_t *map, uint32_t i, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void warn_key(checker_t *k, const fe_node_t *map, uint32_t i, const char *fmt, ...) {
  char msg[1024], clean[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fe_one_line(clean, sizeof clean, msg);
  const char *file;
  int line, col;
  fe_key_place(map, i, &file, &line, &col);
  warn_at(k, file, line, col, clean);
}

/* " (known keys: a, b, c)" or "; did you mean 'x'?" into buf. */
static void suggest(const char *word, const char *const *cands, size_t n, char *buf, size_t cap) {
  const char *best = fe_closest(word, cands, n);
  if (best) {
    snprintf(buf, cap, "; did you mean '%s'?", best);
    return;
  }
  size_t used = (size_t)snprintf(buf, cap, " (known keys:");
  for (size_t i = 0; i < n && used < cap; i++)
    used += (size_t)snprintf(buf + used, cap - used, "%s %s", i ? "," : "", cands[i]);
  if (used < cap) snprintf(buf + used, cap - used, ")");
}

/* ---- the non-model classes ------------------------------------------------------------------- */
static const fe_arg_spec_t k_adamw_args[] = {
    {"lr", FE_ARG_FLOAT, FE_ARG_POSITIVE, "0.001"},
    {"betas", FE_ARG_LIST, 0, NULL}, /* default (0.9, 0.999), checked below */
    {"eps", FE_ARG_FLOAT, FE_ARG_POSITIVE, "1e-08"},
    {"weight_decay", FE_ARG_FLOAT, FE_ARG_NONNEG, "0.01"},
    {"amsgrad", FE_ARG_BOOL, 0, "false"},
    {"maximize", FE_ARG_BOOL, 0, "false"},
    /* torch implementation switches: no effect on the math. */
    {"foreach", FE_ARG_BOOL, FE_ARG_NULLABLE | FE_ARG_IGNORED, "null"},
    {"fused", FE_ARG_BOOL, FE_ARG_NULLABLE | FE_ARG_IGNORED, "null"},
    {"capturable", FE_ARG_BOOL, FE_ARG_IGNORED, "false"},
    {"differentiable", FE_ARG_BOOL, FE_ARG_IGNORED, "false"},
};
enum { ADAMW_LR, ADAMW_BETAS, ADAMW_EPS, ADAMW_WD, ADAMW_AMSGRAD, ADAMW_MAXIMIZE };

static ad_status_t adamw_check(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                               const fe_node_t *section) {
  (void)cls;
  (void)section;
  if (a[ADAMW_AMSGRAD].b)
    return fe_status_at(AD_STATUS_UNIMPLEMENTED, a[ADAMW_AMSGRAD].node->file,
                        a[ADAMW_AMSGRAD].node->line, a[ADAMW_AMSGRAD].node->col,
                        "%s.init_args.amsgrad: true is not supported yet", path);
  if (a[ADAMW_MAXIMIZE].b)
    return fe_status_at(AD_STATUS_UNIMPLEMENTED, a[ADAMW_MAXIMIZE].node->file,
                        a[ADAMW_MAXIMIZE].node->line, a[ADAMW_MAXIMIZE].node->col,
                        "%s.init_args.maximize: true is not supported yet", path);
  const fe_node_t *betas = a[ADAMW_BETAS].list;
  if (betas) {
    if (betas->n != 2)
      return fe_error_at(betas,
                         "%s.init_args.betas: expected a list of two floats "
                         "[beta1, beta2], got %u item%s",
                         path, betas->n, betas->n == 1 ? "" : "s");
    for (uint32_t i = 0; i < 2; i++) {
      double v;
      if (!fe_scalar_float(betas->items[i], &v))
        return fe_error_at(betas->items[i], "%s.init_args.betas.%u: expected a float", path, i);
      if (!(v >= 0.0 && v < 1.0))
        return fe_error_at(betas->items[i], "%s.init_args.betas.%u must be in [0, 1), got %g", path,
                           i, v);
    }
  }
  return AD_OK;
}

const fe_class_t fe_class_adamw = {
    .class_path = "torch.optim.AdamW",
    .section = "optimizer",
    .args = k_adamw_args,
    .nargs = sizeof k_adamw_args / sizeof k_adamw_args[0],
    .check = adamw_check,
};

static const fe_arg_spec_t k_synthetic_args[] = {
    {"batch_size", FE_ARG_INT, FE_ARG_POSITIVE, "4"},
    {"max_length", FE_ARG_INT, FE_ARG_POSITIVE | FE_ARG_REQUIRED, NULL},
};
enum { DATA_BATCH, DATA_MAXLEN };

const fe_class_t fe_class_synthetic_data = {
    .class_path = "aidomm.testing.SyntheticData",
    .section = "data",
    .args = k_synthetic_args,
    .nargs = sizeof k_synthetic_args / sizeof k_synthetic_args[0],
};

int fe_class_arg_index(const fe_class_t *cls, const char *name) {
  for (uint32_t i = 0; i < cls->nargs; i++)
    if (strcmp(cls->args[i].name, name) == 0) return (int)i;
  return -1;
}

/* ---- typing one argument ------------------------------------------------------------------ */
static const char *type_name(fe_arg_type_t t) {
  switch (t) {
    case FE_ARG_INT: return "an integer";
    case FE_ARG_FLOAT: return "a float";
    case FE_ARG_BOOL: return "a boolean (true or false)";
    case FE_ARG_STRING: return "a string";
    case FE_ARG_MAP: return "a map";
    case FE_ARG_CLASS: return "a class (class_path and init_args)";
    default: return "a list";
  }
}

static const char *describe(const fe_node_t *n, char *buf, size_t cap) {
  if (n->kind != FE_NODE_SCALAR) return fe_node_kind_name(n);
  snprintf(buf, cap, n->quoted ? "the quoted string \"%.60s\"" : "'%.60s'", n->scalar);
  return buf;
}

/* Sizes beyond this are typos, and they keep every shape product far from int64 overflow. */
#define FE_MAX_SIZE ((int64_t)1 << 31)

static ad_status_t type_arg(const fe_arg_spec_t *s, const char *path, const fe_node_t *n,
                            fe_arg_value_t *v) {
  char buf[96];
  memset(v, 0, sizeof *v);
  v->node = n;
  if (fe_scalar_is_null(n)) {
    if (!(s->flags & FE_ARG_NULLABLE))
      return fe_error_at(n, "%s: expected %s, got null", path, type_name(s->type));
    v->is_null = true;
    return AD_OK;
  }
  bool ok = true;
  switch (s->type) {
    case FE_ARG_INT: ok = fe_scalar_int(n, &v->i); break;
    case FE_ARG_FLOAT: ok = fe_scalar_float(n, &v->f); break;
    case FE_ARG_BOOL: ok = fe_scalar_bool(n, &v->b); break;
    case FE_ARG_STRING:
      ok = n->kind == FE_NODE_SCALAR;
      v->s = n->scalar;
      break;
    case FE_ARG_LIST:
      ok = n->kind == FE_NODE_SEQ;
      v->list = n;
      break;
    case FE_ARG_MAP:
      ok = n->kind == FE_NODE_MAP;
      v->list = n;
      break;
    case FE_ARG_CLASS:
      return fe_error_at(n, "%s: nested classes are not supported by this build", path);
  }
  if (!ok)
    return fe_error_at(n, "%s: expected %s, got %s", path, type_name(s->type),
                       describe(n, buf, sizeof buf));
  if (s->type == FE_ARG_INT) {
    if ((s->flags & FE_ARG_POSITIVE) && v->i <= 0)
      return fe_error_at(n, "%s must be positive, got %lld", path, (long long)v->i);
    if ((s->flags & FE_ARG_NONNEG) && v->i < 0)
      return fe_error_at(n, "%s must not be negative, got %lld", path, (long long)v->i);
    if ((s->flags & (FE_ARG_POSITIVE | FE_ARG_NONNEG)) && v->i > FE_MAX_SIZE)
      return fe_error_at(n, "%s is unreasonably large (%lld > %lld)", path, (long long)v->i,
                         (long long)FE_MAX_SIZE);
  } else if (s->type == FE_ARG_FLOAT) {
    if ((s->flags & FE_ARG_POSITIVE) && !(v->f > 0))
      return fe_error_at(n, "%s must be positive, got %g", path, v->f);
    if ((s->flags & FE_ARG_NONNEG) && !(v->f >= 0))
      return fe_error_at(n, "%s must not be negative, got %g", path, v->f);
    if ((s->flags & FE_ARG_PROB) && !(v->f >= 0 && v->f < 1))
      return fe_error_at(n, "%s must be in [0, 1), got %g", path, v->f);
  }
  return AD_OK;
}

/* The default as if written in the config (places point at nothing: defaults are valid). */
static void default_arg(const fe_arg_spec_t *s, fe_arg_value_t *v) {
  memset(v, 0, sizeof *v);
  if (!s->dflt) return;
  fe_node_t n = {.kind = FE_NODE_SCALAR, .file = "<default>", .scalar = s->dflt};
  if (fe_scalar_is_null(&n)) {
    v->is_null = true;
    return;
  }
  switch (s->type) {
    case FE_ARG_INT: (void)fe_scalar_int(&n, &v->i); break;
    case FE_ARG_FLOAT: (void)fe_scalar_float(&n, &v->f); break;
    case FE_ARG_BOOL: (void)fe_scalar_bool(&n, &v->b); break;
    case FE_ARG_STRING: v->s = s->dflt; break;
    case FE_ARG_LIST:
    case FE_ARG_MAP:
    case FE_ARG_CLASS: break;
  }
}

static bool same_as_default(const fe_arg_spec_t *s, const fe_arg_value_t *v) {
  fe_arg_value_t d;
  default_arg(s, &d);
  if (v->is_null || d.is_null) return v->is_null == d.is_null;
  switch (s->type) {
    case FE_ARG_INT: return v->i == d.i;
    case FE_ARG_FLOAT: return v->f == d.f;
    case FE_ARG_BOOL: return v->b == d.b;
    case FE_ARG_STRING: return d.s && strcmp(v->s, d.s) == 0;
    default: return false;
  }
}

/* ---- class sections: {class_path, init_args} ----------------------------------------------- */
typedef struct fe_resolved {
  const fe_class_t *cls;
  const fe_node_t *section; /* NULL when the section is absent (default class) */
  fe_arg_value_t args[FE_MAX_ARGS];
} fe_resolved_t;

static const char *article(const char *word) { return strchr("aeiou", word[0]) ? "an" : "a"; }

static ad_status_t unknown_class(const char *kind, const char *path, const fe_node_t *cp) {
  const char *cands[256];
  size_t n = 0;
  for (size_t i = 0; i < fe_class_count() && n < 256; i++)
    if (strcmp(fe_class_at(i)->section, kind) == 0) cands[n++] = fe_class_at(i)->class_path;
  const fe_class_t *other = fe_find_class(cp->scalar);
  if (other)
    return fe_error_at(cp, "%s.class_path: '%s' is %s %s class, not %s %s class", path, cp->scalar,
                       article(other->section), other->section, article(kind), kind);
  const char *best = fe_closest(cp->scalar, cands, n);
  char known[512];
  size_t used = 0;
  known[0] = 0;
  for (size_t i = 0; i < n && used < sizeof known; i++)
    used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", cands[i]);
  if (best)
    return fe_error_at(cp, "%s.class_path: unknown class '%s'; did you mean '%s'?", path,
                       cp->scalar, best);
  return fe_error_at(cp, "%s.class_path: unknown class '%s' (known %s classes: %s)", path,
                     cp->scalar, kind, known);
}

/* Resolves a {class_path, init_args} section of the given kind ("model", "optimizer", "data")
 * written at `path`. `skip` names an init_args key handled by the caller (or NULL). */
static ad_status_t resolve_class(checker_t *k, const char *kind, const char *path,
                                 const fe_node_t *sec, const char *default_class, const char *skip,
                                 fe_resolved_t *out) {
  memset(out, 0, sizeof *out);
  const fe_node_t *cp = NULL, *init = NULL;
  if (!sec || fe_scalar_is_null(sec)) {
    if (!default_class)
      return fe_error_at(sec ? sec : k->c->root,
                         "missing required section '%s' (a class_path and its init_args)", path);
    out->cls = fe_find_class(default_class);
  } else if (sec->kind == FE_NODE_SCALAR) {
    cp = sec; /* jsonargparse shorthand: `optimizer: torch.optim.AdamW` */
  } else if (sec->kind == FE_NODE_SEQ) {
    return fe_error_at(sec, "%s: expected a mapping with class_path and init_args, got a list",
                       path);
  } else {
    static const char *const keys[] = {"class_path", "init_args"};
    for (uint32_t i = 0; i < sec->n; i++) {
      if (strcmp(sec->keys[i], "class_path") == 0) {
        cp = sec->items[i];
      } else if (strcmp(sec->keys[i], "init_args") == 0) {
        init = sec->items[i];
      } else {
        char hint[256];
        suggest(sec->keys[i], keys, 2, hint, sizeof hint);
        return fe_error_at_key(sec, i, "unknown key '%s' in %s%s", sec->keys[i], path, hint);
      }
    }
    if (!cp) return fe_error_at(sec, "%s: missing 'class_path'", path);
  }
  if (cp) {
    if (cp->kind != FE_NODE_SCALAR || fe_scalar_is_null(cp))
      return fe_error_at(cp, "%s.class_path: expected a class name, got %s", path,
                         fe_scalar_is_null(cp) ? "null" : fe_node_kind_name(cp));
    out->cls = fe_find_class(cp->scalar);
    if (!out->cls || strcmp(out->cls->section, kind) != 0) return unknown_class(kind, path, cp);
  }
  const fe_class_t *cls = out->cls;
  out->section = sec;
  if (init && fe_scalar_is_null(init)) init = NULL;
  if (init && init->kind != FE_NODE_MAP)
    return fe_error_at(init, "%s.init_args: expected a mapping, got %s", path,
                       fe_node_kind_name(init));

  for (uint32_t a = 0; a < cls->nargs; a++) default_arg(&cls->args[a], &out->args[a]);
  const char *names[FE_MAX_ARGS];
  for (uint32_t a = 0; a < cls->nargs; a++) names[a] = cls->args[a].name;
  for (uint32_t i = 0; init && i < init->n; i++) {
    if (skip && strcmp(init->keys[i], skip) == 0) continue;
    int a = fe_class_arg_index(cls, init->keys[i]);
    if (a < 0) {
      char hint[512];
      suggest(init->keys[i], names, cls->nargs, hint, sizeof hint);
      return fe_error_at_key(init, i, "unknown key '%s' in %s.init_args of %s%s", init->keys[i],
                             path, cls->class_path, hint);
    }
    char apath[256];
    snprintf(apath, sizeof apath, "%s.init_args.%s", path, init->keys[i]);
    AD_RETURN_IF_ERROR(type_arg(&cls->args[a], apath, init->items[i], &out->args[a]));
    if ((cls->args[a].flags & FE_ARG_IGNORED) && !same_as_default(&cls->args[a], &out->args[a]))
      warn_key(k, init, i, "%s is ignored by aidomm (no effect on the computation)", apath);
  }
  for (uint32_t a = 0; a < cls->nargs; a++)
    if ((cls->args[a].flags & FE_ARG_REQUIRED) && !out->args[a].node) {
      const fe_node_t *where = init ? init : sec ? sec : k->c->root;
      return fe_error_at(where, "%s.init_args: missing required key '%s' (%s) for %s", path,
                         cls->args[a].name, type_name(cls->args[a].type), cls->class_path);
    }
  if (cls->check) AD_RETURN_IF_ERROR(cls->check(cls, path, out->args, sec ? sec : k->c->root));
  return AD_OK;
}

/* ---- trainer and seed -------------------------------------------------------------------- */
static ad_status_t parse_precision(const fe_node_t *n, ir_dtype_t *out) {
  if (n->kind != FE_NODE_SCALAR || fe_scalar_is_null(n))
    return fe_error_at(n, "trainer.precision: expected 32 or 64, got %s",
                       fe_scalar_is_null(n) ? "null" : fe_node_kind_name(n));
  const char *s = n->scalar;
  if (!strcmp(s, "32") || !strcmp(s, "32-true")) {
    *out = IR_DTYPE_F32;
    return AD_OK;
  }
  if (!strcmp(s, "64") || !strcmp(s, "64-true")) {
    *out = IR_DTYPE_F64;
    return AD_OK;
  }
  static const char *const later[] = {"16",         "16-mixed",  "16-true",           "bf16",
                                      "bf16-mixed", "bf16-true", "transformer-engine"};
  for (size_t i = 0; i < sizeof later / sizeof later[0]; i++)
    if (!strcmp(s, later[i]))
      return fe_status_at(AD_STATUS_UNIMPLEMENTED, n->file, n->line, n->col,
                          "trainer.precision: '%s' is not supported yet (use 32 or 64)", s);
  return fe_error_at(n, "trainer.precision: expected 32 or 64, got '%s'", s);
}

static ad_status_t parse_trainer(checker_t *k, const fe_node_t *t, fe_job_t *job) {
  job->max_steps = -1; /* Lightning's default: no step limit */
  job->dtype = IR_DTYPE_F32;
  if (!t || fe_scalar_is_null(t)) return AD_OK;
  if (t->kind != FE_NODE_MAP)
    return fe_error_at(t, "trainer: expected a mapping, got %s", fe_node_kind_name(t));
  for (uint32_t i = 0; i < t->n; i++) {
    const char *key = t->keys[i];
    const fe_node_t *v = t->items[i];
    if (strcmp(key, "max_steps") == 0) {
      int64_t s;
      char buf[96];
      if (!fe_scalar_int(v, &s))
        return fe_error_at(v, "trainer.max_steps: expected an integer, got %s",
                           describe(v, buf, sizeof buf));
      if (s == 0 || s < -1)
        return fe_error_at(v, "trainer.max_steps must be positive (or -1 for no limit), got %lld",
                           (long long)s);
      job->max_steps = s;
    } else if (strcmp(key, "precision") == 0) {
      AD_RETURN_IF_ERROR(parse_precision(v, &job->dtype));
    } else {
      warn_key(k, t, i, "trainer.%s is ignored (aidomm does not use it yet)", key);
    }
  }
  return AD_OK;
}

static ad_status_t parse_seed(const fe_node_t *n, int64_t *seed) {
  char buf[96];
  if (fe_scalar_is_null(n)) return AD_OK;
  if (!fe_scalar_int(n, seed))
    return fe_error_at(n, "seed_everything: expected an integer seed, got %s",
                       describe(n, buf, sizeof buf));
  /* Lightning's accepted range (numpy seeds are 32-bit). */
  if (*seed < 0 || *seed > 4294967295LL)
    return fe_error_at(n, "seed_everything must be in [0, 4294967295], got %lld", (long long)*seed);
  return AD_OK;
}

/* ---- fe_build_module ------------------------------------------------------------------------ */
static ad_status_t build_module(const fe_config_t *c, const fe_resolved_t *model,
                                const fe_job_t *job, ir_module_t *m) {
  int sb = -1, sl = -1;
  AD_RETURN_IF_ERROR(ir_module_add_symbol(m, "B", job->batch_size, &sb));
  AD_RETURN_IF_ERROR(ir_module_add_symbol(m, "L", job->max_length, &sl));
  AD_RETURN_IF_ERROR(ir_module_add_scalar(m, "seed", IR_DTYPE_I64, (double)job->seed));
  AD_RETURN_IF_ERROR(ir_module_add_scalar(m, "step", IR_DTYPE_I64, 0.0));
  AD_RETURN_IF_ERROR(ir_module_add_scalar(m, "lr", IR_DTYPE_F64, job->lr));
  ir_graph_t *g = ir_module_add_program(m, "forward");
  fe_build_ctx_t ctx = {
      .config = c,
      .module = m,
      .forward = g,
      .dtype = job->dtype,
      .sym_batch = sb,
      .sym_len = sl,
      .cls = model->cls,
      .args = model->args,
      .section = model->section,
  };
  ad_status_t st = model->cls->build(&ctx);
  ad_status_t gst = ir_graph_take_error(g);
  if (st) {
    ad_status_free(gst);
    return st;
  }
  if (gst)
    return ad_status_annotate(gst, "building %s (a bug in aidomm's builder for this class)",
                              model->cls->class_path);
  st = ir_verify_module(m);
  if (st)
    return ad_status_annotate(st, "verifying the module built for %s", model->cls->class_path);
  return AD_OK;
}

static ad_status_t check_and_build(checker_t *k, ir_module_t **out_module, fe_job_t *out_job) {
  const fe_config_t *c = k->c;
  fe_job_t job;
  memset(&job, 0, sizeof job);
  static const char *const top[] = {"seed_everything", "trainer", "model", "optimizer", "data"};
  const fe_node_t *sec[5] = {0};
  const fe_node_t *root = c->root;
  for (uint32_t i = 0; i < root->n; i++) {
    size_t j = 0;
    while (j < 5 && strcmp(root->keys[i], top[j]) != 0) j++;
    if (j < 5) {
      sec[j] = root->items[i];
      continue;
    }
    char hint[512] = "";
    const char *best = fe_closest(root->keys[i], top, 5);
    if (best) snprintf(hint, sizeof hint, " (did you mean '%s'?)", best);
    warn_key(k, root, i, "top-level key '%s' is not used by aidomm; ignored%s", root->keys[i],
             hint);
  }

  if (sec[0]) AD_RETURN_IF_ERROR(parse_seed(sec[0], &job.seed));
  AD_RETURN_IF_ERROR(parse_trainer(k, sec[1], &job));
  fe_resolved_t model, optim, data;
  AD_RETURN_IF_ERROR(resolve_class(k, "model", "model", sec[2], NULL, "optimizer", &model));
  if (!model.cls->build)
    return fe_error_at(sec[2], "model: class '%s' cannot be built", model.cls->class_path);
  /* ModelGenerator tasks take their optimizer as model.init_args.optimizer (hence the users'
   * `--model.optimizer.lr`); a top-level optimizer section is accepted too, not both. */
  const fe_node_t *opt = sec[3];
  const char *opt_path = "optimizer";
  int64_t mi = fe_map_find(sec[2], "init_args");
  const fe_node_t *minit = mi >= 0 ? sec[2]->items[mi] : NULL;
  int64_t oi = fe_map_find(minit, "optimizer");
  if (oi >= 0) {
    if (opt) {
      const char *tf;
      int tl, tc;
      fe_key_place(root, (uint32_t)fe_map_find(root, "optimizer"), &tf, &tl, &tc);
      return fe_error_at_key(minit, (uint32_t)oi,
                             "optimizer given twice: in model.init_args and at the top level "
                             "(%s:%d:%d)",
                             tf, tl, tc);
    }
    opt = minit->items[oi];
    opt_path = "model.init_args.optimizer";
  }
  AD_RETURN_IF_ERROR(
      resolve_class(k, "optimizer", opt_path, opt, "torch.optim.AdamW", NULL, &optim));
  AD_RETURN_IF_ERROR(resolve_class(k, "data", "data", sec[4], NULL, NULL, &data));

  job.lr = optim.args[ADAMW_LR].f;
  job.beta1 = 0.9;
  job.beta2 = 0.999;
  if (optim.args[ADAMW_BETAS].list) {
    const fe_node_t *b = optim.args[ADAMW_BETAS].list;
    (void)fe_scalar_float(b->items[0], &job.beta1); /* validated by adamw_check */
    (void)fe_scalar_float(b->items[1], &job.beta2);
  }
  job.eps = optim.args[ADAMW_EPS].f;
  job.weight_decay = optim.args[ADAMW_WD].f;
  job.batch_size = data.args[DATA_BATCH].i;
  job.max_length = data.args[DATA_MAXLEN].i;

  ir_module_t *m = ir_module_create();
  ad_status_t st = build_module(c, &model, &job, m);
  if (st) {
    ir_module_free(m);
    return st;
  }
  *out_module = m;
  if (out_job) *out_job = job;
  return AD_OK;
}

ad_status_t fe_build_module(const fe_config_t *c, ir_module_t **out_module, fe_job_t *out_job) {
  *out_module = NULL;
  if (!c || !c->root || c->root->kind != FE_NODE_MAP)
    return ad_status_make(AD_STATUS_INTERNAL, "fe_build_module: no config loaded");
  checker_t k = {.c = c};
  ad_status_t st = check_and_build(&k, out_module, out_job);
  flush_warnings(&k);
  return st;
}
