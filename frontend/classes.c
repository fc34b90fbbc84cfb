/* The class registry's typing (class_path -> init_args schema, nested classes resolved
 * recursively, per-class defaults), GCC-style errors at the offending node, the warning
 * collector, and fe_build_module, which drives the model class's builder. The top-level
 * sections live in sections.c.
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

#include "frontend/fe_check.h"

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

void fe_checker_init(fe_checker_t *k, const fe_config_t *c) {
  memset(k, 0, sizeof *k);
  k->c = c;
  /* Resolved nested classes are arena-owned by the config (fe_internal.h), which callers hold
   * as const: the arena is the one part that grows. */
  k->arena = (ad_arena_t *)&c->arena;
}

static void warn_at(fe_checker_t *k, const char *file, int line, int col, const char *msg) {
  if (!k->c->warn_stream) return;
  if (k->nw == k->capw) {
    uint32_t ncap = k->capw ? 2 * k->capw : 16;
    fe_warning_t *nw = realloc(k->w, sizeof *nw * ncap);
    if (!nw) return; /* a lost warning is better than a failed compile */
    k->w = nw;
    k->capw = ncap;
  }
  char *text = strdup(msg);
  if (!text) return;
  k->w[k->nw] = (fe_warning_t){file, line, col, k->nw, text};
  k->nw++;
}

static int warning_cmp(const void *pa, const void *pb) {
  const fe_warning_t *a = pa, *b = pb;
  int f = strcmp(a->file, b->file);
  if (f) return f;
  if (a->line != b->line) return a->line < b->line ? -1 : 1;
  if (a->col != b->col) return a->col < b->col ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

void fe_checker_flush(fe_checker_t *k) {
  if (k->nw) qsort(k->w, k->nw, sizeof *k->w, warning_cmp);
  for (uint32_t i = 0; i < k->nw; i++) {
    /* The same key can be reached twice (e.g. a class given twice by merged files); say it
     * once. */
    if (i > 0 && k->w[i - 1].line == k->w[i].line && k->w[i - 1].col == k->w[i].col &&
        !strcmp(k->w[i - 1].file, k->w[i].file) && !strcmp(k->w[i - 1].text, k->w[i].text)) {
      free(k->w[i].text);
      continue;
    }
    fprintf(k->c->warn_stream, "%s:%d:%d: warning: %s\n", k->w[i].file, k->w[i].line,
            k->w[i].col, k->w[i].text);
    free(k->w[i].text);
  }
  free(k->w);
  k->w = NULL;
  k->nw = k->capw = 0;
}

void fe_warn_key(fe_checker_t *k, const fe_node_t *map, uint32_t i, const char *fmt, ...) {
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

void fe_warn_node(fe_checker_t *k, const fe_node_t *n, const char *fmt, ...) {
  char msg[1024], clean[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fe_one_line(clean, sizeof clean, msg);
  warn_at(k, n->file, n->line, n->col, clean);
}

void fe_suggest(const char *word, const char *const *cands, size_t n, char *buf, size_t cap) {
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
/* lr is a runtime scalar of the plan; betas, eps and weight decay are constants of the lowered
 * train step (pass_lower_training), hence compile-time. */
static const fe_arg_spec_t k_adamw_args[] = {
    {"lr", FE_ARG_FLOAT, FE_ARG_POSITIVE | FE_ARG_KEY_RUNTIME, "0.001"},
    {"betas", FE_ARG_LIST, 0, "[0.9, 0.999]"},
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

static ad_status_t adamw_check(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                               const fe_node_t *section) {
  (void)cls;
  (void)section;
  if (a[FE_ADAMW_AMSGRAD].b)
    return fe_status_at(AD_STATUS_UNIMPLEMENTED, a[FE_ADAMW_AMSGRAD].node->file,
                        a[FE_ADAMW_AMSGRAD].node->line, a[FE_ADAMW_AMSGRAD].node->col,
                        "%s.init_args.amsgrad: true is not supported yet", path);
  if (a[FE_ADAMW_MAXIMIZE].b)
    return fe_status_at(AD_STATUS_UNIMPLEMENTED, a[FE_ADAMW_MAXIMIZE].node->file,
                        a[FE_ADAMW_MAXIMIZE].node->line, a[FE_ADAMW_MAXIMIZE].node->col,
                        "%s.init_args.maximize: true is not supported yet", path);
  const fe_node_t *betas = a[FE_ADAMW_BETAS].list;
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
    .kind = FE_CLASS_OPTIMIZER,
};

static const fe_arg_spec_t k_synthetic_args[] = {
    {"batch_size", FE_ARG_INT, FE_ARG_POSITIVE | FE_ARG_KEY_BOUND, "4"},
    {"max_length", FE_ARG_INT, FE_ARG_POSITIVE | FE_ARG_REQUIRED | FE_ARG_KEY_BOUND, NULL},
};

const fe_class_t fe_class_synthetic_data = {
    .class_path = "aidomm.testing.SyntheticData",
    .section = "data",
    .args = k_synthetic_args,
    .nargs = sizeof k_synthetic_args / sizeof k_synthetic_args[0],
    .kind = FE_CLASS_DATA,
};

int fe_class_arg_index(const fe_class_t *cls, const char *name) {
  for (uint32_t i = 0; i < cls->nargs; i++)
    if (strcmp(cls->args[i].name, name) == 0) return (int)i;
  return -1;
}

const char *fe_kind_name(fe_class_kind_t k) {
  switch (k) {
    case FE_CLASS_TASK: return "model";
    case FE_CLASS_BACKBONE: return "backbone";
    case FE_CLASS_FUSION: return "fusion";
    case FE_CLASS_ADAPTER: return "adapter";
    case FE_CLASS_OPTIMIZER: return "optimizer";
    case FE_CLASS_SCHEDULER: return "scheduler";
    case FE_CLASS_DATA: return "data";
    default: return "callback/logger/strategy";
  }
}

/* ---- typing one argument ------------------------------------------------------------------ */
const char *fe_type_name(fe_arg_type_t t) {
  switch (t) {
    case FE_ARG_INT: return "an integer";
    case FE_ARG_FLOAT: return "a float";
    case FE_ARG_BOOL: return "a boolean (true or false)";
    case FE_ARG_STRING: return "a string";
    case FE_ARG_MAP: return "a map";
    case FE_ARG_CLASS: return "a class (class_path and init_args)";
    case FE_ARG_ANY: return "a value";
    default: return "a list";
  }
}

const char *fe_describe(const fe_node_t *n, char *buf, size_t cap) {
  if (n->kind != FE_NODE_SCALAR) return fe_node_kind_name(n);
  snprintf(buf, cap, n->quoted ? "the quoted string \"%.60s\"" : "'%.60s'", n->scalar);
  return buf;
}

/* Sizes beyond this are typos, and they keep every shape product far from int64 overflow. */
#define FE_MAX_SIZE ((int64_t)1 << 31)

/* Nested classes deeper than this are a config error (real ones nest 3 deep). */
#define FE_MAX_CLASS_DEPTH 16

static ad_status_t resolve_at(fe_checker_t *k, fe_class_kind_t kind, const char *path,
                              const fe_node_t *sec, const char *default_class,
                              const char *const *skip, int depth, fe_resolved_t *out);

static ad_status_t type_class_arg(fe_checker_t *k, const fe_arg_spec_t *s, const char *path,
                                  const fe_node_t *n, int depth, fe_arg_value_t *v) {
  fe_resolved_t *r = ad_arena_alloc(k->arena, sizeof *r);
  AD_RETURN_IF_ERROR(resolve_at(k, s->kind, path, n, s->dflt, NULL, depth + 1, r));
  v->cls = r->cls;
  v->args = r->args;
  return AD_OK;
}

static ad_status_t type_arg(fe_checker_t *k, const fe_arg_spec_t *s, const char *path,
                            const fe_node_t *n, int depth, fe_arg_value_t *v) {
  char buf[96];
  memset(v, 0, sizeof *v);
  v->node = n;
  if (fe_scalar_is_null(n)) {
    if (!(s->flags & FE_ARG_NULLABLE))
      return fe_error_at(n, "%s: expected %s, got null", path, fe_type_name(s->type));
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
    case FE_ARG_ANY: v->list = n; break;
    case FE_ARG_CLASS:
      if (n->kind == FE_NODE_SEQ)
        return fe_error_at(n, "%s: expected %s %s class (a class_path and its init_args), got a "
                              "list",
                           path, strchr("aeiou", fe_kind_name(s->kind)[0]) ? "an" : "a",
                           fe_kind_name(s->kind));
      return type_class_arg(k, s, path, n, depth, v);
  }
  if (!ok)
    return fe_error_at(n, "%s: expected %s, got %s", path, fe_type_name(s->type),
                       fe_describe(n, buf, sizeof buf));
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

/* The default as if written in the config (nothing is placed: defaults are valid). Class
 * defaults are resolved recursively with the class's own defaults. */
static ad_status_t default_arg(fe_checker_t *k, const fe_arg_spec_t *s, const char *path,
                               int depth, fe_arg_value_t *v) {
  memset(v, 0, sizeof *v);
  if (!s->dflt) {
    if (s->type == FE_ARG_CLASS) v->is_null = true; /* an optional class: absent */
    return AD_OK;
  }
  if (s->type == FE_ARG_CLASS) {
    fe_node_t n = {.kind = FE_NODE_SCALAR, .file = "<default>", .scalar = s->dflt};
    if (fe_scalar_is_null(&n)) {
      v->is_null = true;
      return AD_OK;
    }
    if (!fe_find_class(s->dflt))
      return ad_status_make(AD_STATUS_INTERNAL,
                            "%s: the default class '%s' is not registered in this build", path,
                            s->dflt);
    return type_class_arg(k, s, path, NULL, depth, v);
  }
  if (s->type == FE_ARG_LIST || s->type == FE_ARG_MAP || s->type == FE_ARG_ANY) {
    const fe_node_t *n = fe_node_parse_text(k->arena, s->dflt);
    if (n && fe_scalar_is_null(n)) v->is_null = true;
    else v->list = n;
    return AD_OK;
  }
  fe_node_t n = {.kind = FE_NODE_SCALAR, .file = "<default>", .scalar = s->dflt};
  if (fe_scalar_is_null(&n)) {
    v->is_null = true;
    return AD_OK;
  }
  switch (s->type) {
    case FE_ARG_INT: (void)fe_scalar_int(&n, &v->i); break;
    case FE_ARG_FLOAT: (void)fe_scalar_float(&n, &v->f); break;
    case FE_ARG_BOOL: (void)fe_scalar_bool(&n, &v->b); break;
    case FE_ARG_STRING: v->s = s->dflt; break;
    default: break;
  }
  return AD_OK;
}

static bool same_as_default(fe_checker_t *k, const fe_arg_spec_t *s, const fe_arg_value_t *v) {
  fe_arg_value_t d;
  if (s->type == FE_ARG_CLASS || s->type == FE_ARG_LIST || s->type == FE_ARG_MAP)
    return false;
  if (s->type == FE_ARG_ANY) { /* scalars compare by text */
    fe_node_t d = {.kind = FE_NODE_SCALAR, .scalar = s->dflt ? s->dflt : ""};
    if (v->is_null) return fe_scalar_is_null(&d);
    return v->list && v->list->kind == FE_NODE_SCALAR && s->dflt &&
           strcmp(v->list->scalar, s->dflt) == 0;
  }
  if (default_arg(k, s, "", 0, &d)) return false; /* scalars cannot fail */
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
static const char *article(const char *word) { return strchr("aeiou", word[0]) ? "an" : "a"; }

static bool kind_ok(const fe_class_t *cls, fe_class_kind_t kind) {
  if (cls->kind != kind) return false;
  return kind != FE_CLASS_TASK || cls->build != NULL; /* a model section builds the program */
}

static ad_status_t unknown_class(fe_class_kind_t kind, const char *path, const fe_node_t *cp) {
  const char *cands[256];
  size_t n = 0;
  for (size_t i = 0; i < fe_class_count() && n < 256; i++)
    if (kind_ok(fe_class_at(i), kind)) cands[n++] = fe_class_at(i)->class_path;
  const char *want = fe_kind_name(kind);
  const fe_class_t *other = fe_find_class(cp->scalar);
  if (other)
    return fe_error_at(cp, "%s.class_path: '%s' is %s %s class, not %s %s class", path, cp->scalar,
                       article(fe_kind_name(other->kind)), fe_kind_name(other->kind),
                       article(want), want);
  /* jsonargparse resolves a bare class name ("MLPPoolAdapter") within the expected base; so
   * does the suggestion. */
  const char *best = fe_closest(cp->scalar, cands, n);
  for (size_t i = 0; !best && i < n; i++) {
    const char *dot = strrchr(cands[i], '.');
    if (dot && fe_edit_distance(cp->scalar, dot + 1) <= 2) best = cands[i];
  }
  char known[768];
  size_t used = 0;
  known[0] = 0;
  for (size_t i = 0; i < n && used < sizeof known; i++)
    used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", cands[i]);
  if (best)
    return fe_error_at(cp, "%s.class_path: unknown class '%s'; did you mean '%s'?", path,
                       cp->scalar, best);
  return fe_error_at(cp, "%s.class_path: unknown %s class '%s' (known %s classes: %s)", path, want,
                     cp->scalar, want, n ? known : "none in this build");
}

/* A class_path as written: the full path, an alias, or (as jsonargparse accepts for subclass
 * types) the bare class name when exactly one class of the expected kind has it. */
static const fe_class_t *lookup_class(const char *name, fe_class_kind_t kind) {
  const fe_class_t *c = fe_find_class(name);
  if (c || strchr(name, '.')) return c;
  const fe_class_t *found = NULL;
  for (size_t i = 0; i < fe_class_count(); i++) {
    const fe_class_t *x = fe_class_at(i);
    const char *dot = strrchr(x->class_path, '.');
    if (kind_ok(x, kind) && dot && strcmp(dot + 1, name) == 0) {
      if (found) return NULL; /* ambiguous */
      found = x;
    }
  }
  return found;
}

static bool skipped(const char *const *skip, const char *key) {
  for (const char *const *s = skip; s && *s; s++)
    if (strcmp(*s, key) == 0) return true;
  return false;
}

static ad_status_t resolve_at(fe_checker_t *k, fe_class_kind_t kind, const char *path,
                              const fe_node_t *sec, const char *default_class,
                              const char *const *skip, int depth, fe_resolved_t *out) {
  memset(out, 0, sizeof *out);
  if (depth > FE_MAX_CLASS_DEPTH)
    return fe_error_at(sec ? sec : k->c->root, "%s: classes nested more than %d deep", path,
                       FE_MAX_CLASS_DEPTH);
  const fe_node_t *cp = NULL, *init = NULL;
  /* Keys written straight under the class node instead of under init_args: jsonargparse's
   * shorthand when the class is known (overrides such as --model.adapter.dropout create it). */
  const fe_node_t *flat = NULL;
  if (!sec || fe_scalar_is_null(sec)) {
    if (!default_class)
      return fe_error_at(sec ? sec : k->c->root,
                         "missing required section '%s' (a class_path and its init_args)", path);
    out->cls = fe_find_class(default_class);
    if (!out->cls)
      return ad_status_make(AD_STATUS_INTERNAL, "%s: the default class '%s' is not registered",
                            path, default_class);
  } else if (sec->kind == FE_NODE_SCALAR) {
    cp = sec; /* jsonargparse shorthand: `optimizer: torch.optim.AdamW` */
  } else if (sec->kind == FE_NODE_SEQ) {
    return fe_error_at(sec, "%s: expected a mapping with class_path and init_args, got a list",
                       path);
  } else {
    for (uint32_t i = 0; i < sec->n; i++) {
      if (strcmp(sec->keys[i], "class_path") == 0)
        cp = sec->items[i];
      else if (strcmp(sec->keys[i], "init_args") == 0)
        init = sec->items[i];
      else
        flat = sec;
    }
    if (!cp && !default_class) {
      if (flat) {
        for (uint32_t i = 0; i < sec->n; i++)
          if (strcmp(sec->keys[i], "init_args") != 0) {
            static const char *const keys[] = {"class_path", "init_args"};
            char hint[256];
            fe_suggest(sec->keys[i], keys, 2, hint, sizeof hint);
            return fe_error_at_key(sec, i, "unknown key '%s' in %s%s", sec->keys[i], path, hint);
          }
      }
      return fe_error_at(sec, "%s: missing 'class_path'", path);
    }
    if (!cp) {
      out->cls = fe_find_class(default_class);
      if (!out->cls)
        return ad_status_make(AD_STATUS_INTERNAL, "%s: the default class '%s' is not registered",
                              path, default_class);
    }
  }
  if (cp) {
    if (cp->kind != FE_NODE_SCALAR || fe_scalar_is_null(cp))
      return fe_error_at(cp, "%s.class_path: expected a class name, got %s", path,
                         fe_scalar_is_null(cp) ? "null" : fe_node_kind_name(cp));
    out->cls = lookup_class(cp->scalar, kind);
    if (!out->cls || !kind_ok(out->cls, kind)) return unknown_class(kind, path, cp);
  }
  const fe_class_t *cls = out->cls;
  out->section = sec && !fe_scalar_is_null(sec) ? sec : NULL;
  if (init && fe_scalar_is_null(init)) init = NULL;
  if (init && init->kind != FE_NODE_MAP)
    return fe_error_at(init, "%s.init_args: expected a mapping, got %s", path,
                       fe_node_kind_name(init));

  char apath[512];
  for (uint32_t a = 0; a < cls->nargs; a++) {
    snprintf(apath, sizeof apath, "%s.init_args.%s", path, cls->args[a].name);
    AD_RETURN_IF_ERROR(default_arg(k, &cls->args[a], apath, depth, &out->args[a]));
  }
  const char *names[FE_MAX_ARGS];
  for (uint32_t a = 0; a < cls->nargs; a++) names[a] = cls->args[a].name;
  /* init_args first, then the flat keys (which only the shorthand produces). */
  const fe_node_t *maps[2] = {init, flat};
  for (int mi = 0; mi < 2; mi++) {
    const fe_node_t *m = maps[mi];
    for (uint32_t i = 0; m && i < m->n; i++) {
      if (mi == 1 && (!strcmp(m->keys[i], "class_path") || !strcmp(m->keys[i], "init_args")))
        continue;
      if (skipped(skip, m->keys[i])) continue;
      int a = fe_class_arg_index(cls, m->keys[i]);
      if (a < 0 && mi == 1) {
        const char *cands[FE_MAX_ARGS + 2] = {"class_path", "init_args"};
        for (uint32_t j = 0; j < cls->nargs; j++) cands[j + 2] = names[j];
        char hint[768];
        fe_suggest(m->keys[i], cands, cls->nargs + 2, hint, sizeof hint);
        return fe_error_at_key(m, i, "unknown key '%s' in %s%s", m->keys[i], path, hint);
      }
      if (a < 0) {
        char hint[768];
        fe_suggest(m->keys[i], names, cls->nargs, hint, sizeof hint);
        return fe_error_at_key(m, i, "unknown key '%s' in %s.init_args of %s%s", m->keys[i], path,
                               cls->class_path, hint);
      }
      snprintf(apath, sizeof apath, "%s.init_args.%s", path, m->keys[i]);
      AD_RETURN_IF_ERROR(type_arg(k, &cls->args[a], apath, m->items[i], depth, &out->args[a]));
      if ((cls->args[a].flags & FE_ARG_IGNORED) && !same_as_default(k, &cls->args[a], &out->args[a]))
        fe_warn_key(k, m, i, "%s is ignored by aidomm (no effect on the computation)", apath);
    }
  }
  for (uint32_t a = 0; a < cls->nargs; a++)
    if ((cls->args[a].flags & FE_ARG_REQUIRED) && !out->args[a].node) {
      const fe_node_t *where = init ? init : out->section ? out->section : k->c->root;
      return fe_error_at(where, "%s.init_args: missing required key '%s' (%s) for %s", path,
                         cls->args[a].name, fe_type_name(cls->args[a].type), cls->class_path);
    }
  if (cls->check)
    AD_RETURN_IF_ERROR(
        cls->check(cls, path, out->args, out->section ? out->section : k->c->root));
  return AD_OK;
}

ad_status_t fe_resolve_class(fe_checker_t *k, fe_class_kind_t kind, const char *path,
                             const fe_node_t *sec, const char *default_class,
                             const char *const *skip, fe_resolved_t *out) {
  return resolve_at(k, kind, path, sec, default_class, skip, 0, out);
}

/* ---- fe_build_module ------------------------------------------------------------------------ */
static ad_status_t build_module(const fe_config_t *c, const fe_resolved_t *model,
                                const fe_job_t *job, ir_module_t *m) {
  int sb = -1, sl = -1;
  AD_RETURN_IF_ERROR(ir_module_add_symbol(m, "B", job->batch_size, &sb));
  /* Data classes without a max_length (IsoformExpression) leave the lengths to the backbones,
   * which declare one symbol per modality. */
  if (job->max_length > 0) AD_RETURN_IF_ERROR(ir_module_add_symbol(m, "L", job->max_length, &sl));
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
      .section = model->section ? model->section : c->root,
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

ad_status_t fe_config_job(const fe_config_t *c, fe_job_t *out_job) {
  if (!c || !c->root || c->root->kind != FE_NODE_MAP)
    return ad_status_make(AD_STATUS_INTERNAL, "fe_config_job: no config loaded");
  fe_checker_t k;
  fe_checker_init(&k, c);
  fe_sections_t s;
  ad_status_t st = fe_check_sections(&k, &s, out_job);
  fe_checker_flush(&k);
  return st;
}

ad_status_t fe_build_module(const fe_config_t *c, ir_module_t **out_module, fe_job_t *out_job) {
  *out_module = NULL;
  if (!c || !c->root || c->root->kind != FE_NODE_MAP)
    return ad_status_make(AD_STATUS_INTERNAL, "fe_build_module: no config loaded");
  fe_checker_t k;
  fe_checker_init(&k, c);
  fe_sections_t s;
  fe_job_t job;
  ad_status_t st = fe_check_sections(&k, &s, &job);
  if (!st) {
    ir_module_t *m = ir_module_create();
    st = build_module(c, &s.model, &job, m);
    if (st) {
      ir_module_free(m);
    } else {
      /* Without a data max_length the backbones bound their own lengths: the job reports the
       * longest (the plan's length bound must be positive). */
      if (job.max_length <= 0)
        for (uint32_t i = 0; i < m->nsymbols; i++)
          if (strcmp(m->symbols[i].name, "B") != 0 && m->symbols[i].bound > job.max_length)
            job.max_length = m->symbols[i].bound;
      /* Only static lengths (Enformer's fixed window): the longest sequence input. */
      const ir_graph_t *g = ir_module_find_program(m, "forward");
      bool only_static = job.max_length <= 0;
      for (uint32_t i = 0; only_static && g && i < g->nnodes; i++) {
        const ir_node_t *n = &g->nodes[i];
        if (n->op != IR_OP_INPUT || !n->noutputs) continue;
        const ir_type_t *t = &g->values[n->output0].type;
        int64_t len;
        if (t->rank >= 2 && ir_dim_is_const(t->dims[1], &len) && len > job.max_length)
          job.max_length = len;
      }

      *out_module = m;
      if (out_job) *out_job = job;
    }
  }
  fe_checker_flush(&k);
  return st;
}
