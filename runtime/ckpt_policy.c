/* Lightning's ModelCheckpoint decisions without I/O; semantics in ckpt_policy.h. The code
 * follows lightning/pytorch/callbacks/model_checkpoint.py (2.6) function by function, with the
 * Python names in the comments, so a difference can be checked line against line. */
#include "runtime/ckpt_policy.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/buf.h"

/* ---- small containers ------------------------------------------------------------------- */

static char *xstrdup(const char *s) {
  if (!s) s = "";
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (!d) abort(); /* the module's allocations are tiny; OOM here is not recoverable */
  memcpy(d, s, n);
  return d;
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) abort();
  return q;
}

static void set_str(char **dst, const char *s) {
  char *d = xstrdup(s);
  free(*dst);
  *dst = d;
}

typedef struct strv {
  char **v;
  size_t n, cap;
} strv_t;

static ptrdiff_t strv_find(const strv_t *s, const char *x) {
  for (size_t i = 0; i < s->n; i++)
    if (!strcmp(s->v[i], x)) return (ptrdiff_t)i;
  return -1;
}
static void strv_add(strv_t *s, const char *x) {
  if (strv_find(s, x) >= 0) return;
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 8;
    s->v = xrealloc(s->v, s->cap * sizeof *s->v);
  }
  s->v[s->n++] = xstrdup(x);
}
static void strv_del(strv_t *s, const char *x) {
  ptrdiff_t i = strv_find(s, x);
  if (i < 0) return;
  free(s->v[i]);
  memmove(s->v + i, s->v + i + 1, (s->n - (size_t)i - 1) * sizeof *s->v);
  s->n--;
}
static void strv_free(strv_t *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
  memset(s, 0, sizeof *s);
}

/* An insertion-ordered name -> double map (callback metrics, best_k_models): assignment to an
 * existing key keeps its position, as a Python dict does. */
typedef struct kv {
  char *k;
  double v;
} kv_t;
typedef struct kvmap {
  kv_t *e;
  size_t n, cap;
} kvmap_t;

static kv_t *kv_find(const kvmap_t *m, const char *k) {
  for (size_t i = 0; i < m->n; i++)
    if (!strcmp(m->e[i].k, k)) return &m->e[i];
  return NULL;
}
static void kv_set(kvmap_t *m, const char *k, double v) {
  kv_t *e = kv_find(m, k);
  if (e) {
    e->v = v;
    return;
  }
  if (m->n == m->cap) {
    m->cap = m->cap ? 2 * m->cap : 8;
    m->e = xrealloc(m->e, m->cap * sizeof *m->e);
  }
  m->e[m->n++] = (kv_t){xstrdup(k), v};
}
static bool kv_pop(kvmap_t *m, const char *k) {
  kv_t *e = kv_find(m, k);
  if (!e) return false;
  size_t i = (size_t)(e - m->e);
  free(e->k);
  memmove(m->e + i, m->e + i + 1, (m->n - i - 1) * sizeof *m->e);
  m->n--;
  return true;
}
static void kv_clear(kvmap_t *m) {
  for (size_t i = 0; i < m->n; i++) free(m->e[i].k);
  m->n = 0;
}
static void kv_free(kvmap_t *m) {
  kv_clear(m);
  free(m->e);
  memset(m, 0, sizeof *m);
}

/* ---- the policy ------------------------------------------------------------------------- */

struct rt_ckpt_policy {
  rt_ckpt_settings_t s; /* string fields point at the owned copies below */
  char *dirpath, *filename, *monitor, *ext, *resume;
  int64_t every_steps, every_epochs; /* __init_triggers */
  bool soe;                          /* _should_save_on_train_epoch_end */
  /* Lightning's state_dict */
  char *best_model_path, *kth_best_model_path, *last_model_path;
  bool has_best_score, has_current_score;
  double best_model_score, current_score, kth_value;
  kvmap_t best_k;
  /* the callback's other attributes and the trainer state it reads */
  int64_t last_global_step_saved;
  char *last_checkpoint_saved;
  bool defer;       /* _defer_save_until_validation */
  bool val_has_run; /* fit_loop.epoch_loop.val_loop._has_run */
  kvmap_t metrics;  /* trainer.callback_metrics */
  strv_t files;     /* what exists, as far as this policy knows */
  strv_t warned;    /* WarningCache */
};

typedef struct ev {
  int64_t step, epoch;
  rt_ckpt_actions_t *out;
} ev_t;

rt_ckpt_settings_t rt_ckpt_settings_default(void) {
  return (rt_ckpt_settings_t){.save_top_k = 1,
                              .every_n_train_steps = -1,
                              .every_n_epochs = -1,
                              .save_on_train_epoch_end = -1,
                              .auto_insert_metric_name = true,
                              .enable_version_counter = true,
                              .check_val_every_n_epoch = 1,
                              .val_check_interval_is_one = true,
                              .has_validation = true};
}

bool rt_ckpt_resolve_save_on_train_epoch_end(int setting, int64_t check_val_every_n_epoch,
                                             bool val_check_interval_is_one, bool has_validation) {
  if (setting >= 0) return setting != 0;
  if (check_val_every_n_epoch != 1) return false; /* null counts as != 1 */
  if (!has_validation) return true;
  return val_check_interval_is_one;
}

ad_status_t rt_ckpt_policy_create(const rt_ckpt_settings_t *s, rt_ckpt_policy_t **out) {
  *out = NULL;
  bool has_monitor = s->monitor && s->monitor[0];
  /* __validate_init_configuration, with -1 standing for None */
  if (s->save_top_k < -1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "Invalid value for save_top_k=%lld. Must be >= -1",
                          (long long)s->save_top_k);
  if (s->every_n_train_steps < -1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "Invalid value for every_n_train_steps=%lld. Must be >= 0",
                          (long long)s->every_n_train_steps);
  if (s->every_n_epochs < -1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "Invalid value for every_n_epochs=%lld. Must be >= 0",
                          (long long)s->every_n_epochs);
  int64_t steps = s->every_n_train_steps, epochs = s->every_n_epochs;
  if (steps < 0 && epochs < 0) { /* __init_triggers: neither given -> once per epoch */
    epochs = 1;
    steps = 0;
  } else {
    if (steps < 0) steps = 0;
    if (epochs < 0) epochs = 0;
  }
  if (steps >= 1 && epochs >= 1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "Combination of parameters every_n_train_steps=%lld, every_n_epochs=%lld "
                          "and train_time_interval=None should be mutually exclusive.",
                          (long long)steps, (long long)epochs);
  if (!has_monitor && s->save_top_k != -1 && s->save_top_k != 0 && s->save_top_k != 1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "ModelCheckpoint(save_top_k=%lld, monitor=None) is not a valid "
                          "configuration. No quantity for top_k to track.",
                          (long long)s->save_top_k);
  rt_ckpt_policy_t *p = calloc(1, sizeof *p);
  if (!p) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  p->s = *s;
  p->dirpath = xstrdup(s->dirpath);
  p->filename = xstrdup(s->filename);
  p->monitor = has_monitor ? xstrdup(s->monitor) : NULL;
  p->ext = xstrdup(s->extension ? s->extension : ".safetensors");
  p->resume = s->resume_path && s->resume_path[0] ? xstrdup(s->resume_path) : NULL;
  p->s.dirpath = p->dirpath;
  p->s.filename = p->filename;
  p->s.monitor = p->monitor;
  p->s.extension = p->ext;
  p->s.resume_path = p->resume;
  p->every_steps = steps;
  p->every_epochs = epochs;
  p->soe = rt_ckpt_resolve_save_on_train_epoch_end(s->save_on_train_epoch_end,
                                                   s->check_val_every_n_epoch,
                                                   s->val_check_interval_is_one, s->has_validation);
  p->best_model_path = xstrdup("");
  p->kth_best_model_path = xstrdup("");
  p->last_model_path = xstrdup("");
  p->last_checkpoint_saved = xstrdup("");
  p->kth_value = s->mode_max ? -INFINITY : INFINITY; /* __init_monitor_mode */
  *out = p;
  return AD_OK;
}

void rt_ckpt_policy_free(rt_ckpt_policy_t *p) {
  if (!p) return;
  free(p->dirpath);
  free(p->filename);
  free(p->monitor);
  free(p->ext);
  free(p->resume);
  free(p->best_model_path);
  free(p->kth_best_model_path);
  free(p->last_model_path);
  free(p->last_checkpoint_saved);
  kv_free(&p->best_k);
  kv_free(&p->metrics);
  strv_free(&p->files);
  strv_free(&p->warned);
  free(p);
}

void rt_ckpt_policy_note_existing(rt_ckpt_policy_t *p, const char *path) {
  strv_add(&p->files, path);
}

void rt_ckpt_policy_log(rt_ckpt_policy_t *p, const rt_ckpt_metric_t *m, size_t n) {
  for (size_t i = 0; i < n; i++) kv_set(&p->metrics, m[i].name, m[i].value);
}

void rt_ckpt_policy_reset_metrics(rt_ckpt_policy_t *p) { kv_clear(&p->metrics); }

void rt_ckpt_actions_clear(rt_ckpt_actions_t *a) {
  for (size_t i = 0; i < a->n; i++) {
    free(a->items[i].path);
    free(a->items[i].target);
    free(a->items[i].message);
  }
  a->n = 0;
}

void rt_ckpt_actions_free(rt_ckpt_actions_t *a) {
  rt_ckpt_actions_clear(a);
  free(a->items);
  memset(a, 0, sizeof *a);
}

static void push_action(rt_ckpt_actions_t *a, rt_ckpt_action_kind_t kind, const char *path,
                        const char *target, const char *message) {
  if (a->n == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 8;
    a->items = xrealloc(a->items, a->cap * sizeof *a->items);
  }
  a->items[a->n++] = (rt_ckpt_action_t){kind, path ? xstrdup(path) : NULL,
                                        target ? xstrdup(target) : NULL,
                                        message ? xstrdup(message) : NULL};
}

/* ---- monitor candidates (_monitor_candidates) ------------------------------------------- */

/* "epoch" and "step" are the trainer's unless logged (then cast with .int(), truncating). */
static bool cand_get(const rt_ckpt_policy_t *p, const ev_t *e, const char *name, double *v,
                     bool *is_int) {
  const kv_t *m = kv_find(&p->metrics, name);
  bool is_epoch = !strcmp(name, "epoch"), is_step = !strcmp(name, "step");
  *is_int = is_epoch || is_step;
  if (m) {
    *v = *is_int ? trunc(m->v) : m->v;
    return true;
  }
  if (is_epoch || is_step) {
    *v = (double)(is_epoch ? e->epoch : e->step);
    return true;
  }
  return false;
}

/* Python's repr of a str, for the messages (ASCII names; quotes as Python picks them). */
static void py_repr_str(ad_buf_t *b, const char *s) {
  char q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
  ad_buf_append(b, &q, 1);
  for (const char *c = s; *c; c++) {
    if (*c == '\\' || *c == q) ad_buf_append(b, "\\", 1);
    ad_buf_append(b, c, 1);
  }
  ad_buf_append(b, &q, 1);
}

static char *buf_cstr(ad_buf_t *b) {
  ad_buf_append(b, "", 1);
  char *s = (char *)b->data;
  b->data = NULL;
  b->len = b->cap = 0;
  return s;
}

/* The message of _save_topk_checkpoint for a monitor not among the candidates. */
static char *missing_monitor_message(const rt_ckpt_policy_t *p) {
  ad_buf_t b = {0};
  ad_buf_printf(&b, "`ModelCheckpoint(monitor=");
  py_repr_str(&b, p->monitor);
  ad_buf_printf(&b, ")` could not find the monitored key in the returned metrics: [");
  for (size_t i = 0; i < p->metrics.n; i++) {
    if (i) ad_buf_printf(&b, ", ");
    py_repr_str(&b, p->metrics.e[i].k);
  }
  static const char *const extra[] = {"epoch", "step"};
  for (int i = 0; i < 2; i++) {
    if (kv_find(&p->metrics, extra[i])) continue;
    if (p->metrics.n || i) ad_buf_printf(&b, ", ");
    py_repr_str(&b, extra[i]);
  }
  ad_buf_printf(&b, "]. HINT: Did you call `log(");
  py_repr_str(&b, p->monitor);
  ad_buf_printf(&b, ", value)` in the `LightningModule`?");
  return buf_cstr(&b);
}

/* ---- Python's format() for int and float ------------------------------------------------ */

typedef struct fspec {
  char fill, align, sign, type;
  bool z, alt, zero;
  int width, prec; /* -1: not given */
} fspec_t;

static ad_status_t parse_spec(const char *spec, fspec_t *f) {
  *f = (fspec_t){.fill = ' ', .width = -1, .prec = -1};
  const char *c = spec;
  size_t n = strlen(spec);
  if (n >= 2 && strchr("<>=^", c[1])) {
    f->fill = c[0];
    f->align = c[1];
    c += 2;
  } else if (n >= 1 && strchr("<>=^", c[0])) {
    f->align = c[0];
    c++;
  }
  if (*c == '+' || *c == '-' || *c == ' ') f->sign = *c++;
  if (*c == 'z') f->z = true, c++;
  if (*c == '#') f->alt = true, c++;
  if (*c == '0') f->zero = true, c++;
  if (*c >= '0' && *c <= '9') {
    f->width = 0;
    while (*c >= '0' && *c <= '9' && f->width <= 4096) f->width = f->width * 10 + (*c++ - '0');
    if (f->width > 4096)
      return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                            "checkpoint filename: format spec '%s': width above 4096", spec);
  }
  if (*c == ',' || *c == '_')
    return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                          "checkpoint filename: format spec '%s': grouping is not supported", spec);
  if (*c == '.') {
    c++;
    if (!(*c >= '0' && *c <= '9'))
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "checkpoint filename: format spec '%s': missing precision", spec);
    f->prec = 0;
    while (*c >= '0' && *c <= '9' && f->prec <= 100) f->prec = f->prec * 10 + (*c++ - '0');
    if (f->prec > 100)
      return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                            "checkpoint filename: format spec '%s': precision above 100", spec);
  }
  if (*c) f->type = *c++;
  if (*c)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "checkpoint filename: invalid format specifier '%s'", spec);
  if (f->zero && !f->align) { /* '0' without an alignment: sign-aware zero padding */
    f->fill = '0';
    f->align = '=';
  }
  return AD_OK;
}

/* repr(float): the shortest digits that round-trip, laid out as CPython's 'r' format. */
static void py_float_repr_abs(double x, ad_buf_t *b) {
  char tmp[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
    if (strtod(tmp, NULL) == x) break;
  }
  char digits[24];
  size_t nd = 0;
  const char *c = tmp;
  for (; *c && *c != 'e'; c++)
    if (*c >= '0' && *c <= '9') digits[nd++] = *c;
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  digits[nd] = 0;
  int exp10 = atoi(c + 1);
  int decpt = exp10 + 1;
  if (x == 0) {
    ad_buf_printf(b, "0.0");
  } else if (decpt <= -4 || decpt > 16) {
    ad_buf_printf(b, "%c", digits[0]);
    if (nd > 1) ad_buf_printf(b, ".%s", digits + 1);
    ad_buf_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
  } else if (decpt <= 0) {
    ad_buf_printf(b, "0.");
    for (int i = 0; i < -decpt; i++) ad_buf_printf(b, "0");
    ad_buf_printf(b, "%s", digits);
  } else if ((size_t)decpt >= nd) {
    ad_buf_printf(b, "%s", digits);
    for (size_t i = nd; i < (size_t)decpt; i++) ad_buf_printf(b, "0");
    ad_buf_printf(b, ".0");
  } else {
    ad_buf_printf(b, "%.*s.%s", decpt, digits, digits + decpt);
  }
}

/* Strips trailing zeros (and a bare '.') from the mantissa of a %e/%f result. */
static void strip_zeros(char *s) {
  char *e = strchr(s, 'e');
  char tail[16] = "";
  if (e) {
    snprintf(tail, sizeof tail, "%s", e);
    *e = 0;
  }
  if (strchr(s, '.')) {
    size_t n = strlen(s);
    while (n && s[n - 1] == '0') s[--n] = 0;
    if (n && s[n - 1] == '.') s[--n] = 0;
  }
  strcat(s, tail);
}

/* The body of format(|x|, spec) for a float (no sign, no padding). */
static ad_status_t float_body(double x, const fspec_t *f, ad_buf_t *b) {
  char type = f->type;
  bool upper = type == 'F' || type == 'E' || type == 'G';
  if (isnan(x) || isinf(x)) {
    ad_buf_printf(b, "%s", isnan(x) ? (upper ? "NAN" : "nan") : (upper ? "INF" : "inf"));
    if (type == '%') ad_buf_printf(b, "%%");
    return AD_OK;
  }
  char tmp[512];
  int prec = f->prec;
  const char *alt = f->alt ? "#" : "";
  char fmt[16];
  switch (type) {
    case 'f': case 'F': case 'e': case 'E': case 'g': case 'G':
      snprintf(fmt, sizeof fmt, "%%%s.*%c", alt, type);
      snprintf(tmp, sizeof tmp, fmt, prec < 0 ? 6 : prec, x);
      ad_buf_printf(b, "%s", tmp);
      return AD_OK;
    case '%':
      snprintf(fmt, sizeof fmt, "%%%s.*f", alt);
      snprintf(tmp, sizeof tmp, fmt, prec < 0 ? 6 : prec, x * 100.0);
      ad_buf_printf(b, "%s%%", tmp);
      return AD_OK;
    case 0:
      if (prec < 0) {
        py_float_repr_abs(x, b);
        return AD_OK;
      }
      {
        /* CPython: 'g' with Py_DTSF_ADD_DOT_0 -- exponent notation when the rounded exponent is
         * < -4 or >= p - 1 (one less than 'g'), and fixed notation keeps a ".0" */
        int p = prec == 0 ? 1 : prec;
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
        int exp10 = atoi(strchr(tmp, 'e') + 1);
        if (exp10 >= -4 && exp10 < p - 1) {
          snprintf(tmp, sizeof tmp, "%.*f", p - 1 - exp10, x);
          if (!f->alt) strip_zeros(tmp);
          if (!strchr(tmp, '.')) strcat(tmp, ".0");
        } else if (!f->alt) {
          strip_zeros(tmp);
        }
        ad_buf_printf(b, "%s", tmp);
        return AD_OK;
      }
    default:
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "checkpoint filename: Unknown format code '%c' for object of type "
                            "'float'",
                            type);
  }
}

/* format(value, spec) as Python does for an int (is_int) or a float. */
static ad_status_t py_format(double v, bool is_int, const char *spec, ad_buf_t *out) {
  fspec_t f;
  AD_RETURN_IF_ERROR(parse_spec(spec, &f));
  ad_buf_t body = {0};
  bool neg;
  ad_status_t st = AD_OK;
  if (is_int && (f.type == 0 || f.type == 'd')) {
    if (f.prec >= 0) {
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "checkpoint filename: Precision not allowed in integer format "
                            "specifier");
    }
    long long i = (long long)v;
    neg = i < 0;
    ad_buf_printf(&body, "%llu", neg ? 0ULL - (unsigned long long)i : (unsigned long long)i);
  } else if (is_int && !strchr("eEfFgG%", f.type)) {
    return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                          "checkpoint filename: format code '%c' for an int is not supported",
                          f.type);
  } else {
    neg = signbit(v) && !isnan(v); /* CPython never prints "-nan" */
    st = float_body(fabs(v), &f, &body);
    if (st) {
      ad_buf_free(&body);
      return st;
    }
    if (neg && f.z && isfinite(v)) { /* 'z': a negative zero after rounding drops its sign */
      bool allzero = true;
      for (size_t i = 0; i < body.len && body.data[i] != 'e' && body.data[i] != 'E'; i++)
        if (body.data[i] >= '1' && body.data[i] <= '9') allzero = false;
      if (allzero) neg = false;
    }
  }
  const char *sign = neg ? "-" : f.sign == '+' ? "+" : f.sign == ' ' ? " " : "";
  size_t len = strlen(sign) + body.len;
  size_t pad = f.width > 0 && (size_t)f.width > len ? (size_t)f.width - len : 0;
  char align = f.align ? f.align : '>';
  size_t left = align == '>' ? pad : align == '^' ? pad / 2 : 0;
  size_t right = align == '<' ? pad : align == '^' ? pad - pad / 2 : 0;
  for (size_t i = 0; i < left; i++) ad_buf_append(out, &f.fill, 1);
  ad_buf_printf(out, "%s", sign);
  if (align == '=')
    for (size_t i = 0; i < pad; i++) ad_buf_append(out, &f.fill, 1);
  ad_buf_append(out, body.data, body.len);
  for (size_t i = 0; i < right; i++) ad_buf_append(out, &f.fill, 1);
  ad_buf_free(&body);
  return AD_OK;
}

/* ---- format_checkpoint_name ------------------------------------------------------------- */

static char *replace_all(const char *s, const char *from, const char *to) {
  ad_buf_t b = {0};
  size_t nf = strlen(from);
  const char *c = s;
  for (const char *hit; (hit = strstr(c, from)) != NULL; c = hit + nf) {
    ad_buf_append(&b, c, (size_t)(hit - c));
    ad_buf_append(&b, to, strlen(to));
  }
  ad_buf_append(&b, c, strlen(c));
  return buf_cstr(&b);
}

/* re.findall(r"(\{.*?)[:\}]", s): '.' does not match a newline. */
static size_t find_groups(const char *s, char ***groups) {
  size_t n = 0, cap = 0;
  *groups = NULL;
  size_t len = strlen(s);
  for (size_t i = 0; i < len;) {
    if (s[i] != '{') {
      i++;
      continue;
    }
    size_t k = i + 1;
    while (k < len && s[k] != ':' && s[k] != '}' && s[k] != '\n') k++;
    if (k >= len || s[k] == '\n') {
      i++; /* no match starting here */
      continue;
    }
    if (n == cap) {
      cap = cap ? 2 * cap : 4;
      *groups = xrealloc(*groups, cap * sizeof **groups);
    }
    (*groups)[n] = malloc(k - i + 1);
    if (!(*groups)[n]) abort();
    memcpy((*groups)[n], s + i, k - i);
    (*groups)[n][k - i] = 0;
    n++;
    i = k + 1;
  }
  return n;
}

/* str.format(metrics) of the rewritten template: fields "{0[name]}" and "{0[name]:spec}",
 * "{{" and "}}" escapes. A name not among the candidates formats as the int 0. */
static ad_status_t str_format(const rt_ckpt_policy_t *p, const ev_t *e, const char *s,
                              ad_buf_t *out) {
  for (const char *c = s; *c;) {
    if (c[0] == '{' && c[1] == '{') {
      ad_buf_append(out, "{", 1);
      c += 2;
      continue;
    }
    if (c[0] == '}') {
      if (c[1] != '}')
        return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                              "checkpoint filename '%s': Single '}' encountered in format string",
                              p->filename);
      ad_buf_append(out, "}", 1);
      c += 2;
      continue;
    }
    if (c[0] != '{') {
      ad_buf_append(out, c, 1);
      c++;
      continue;
    }
    if (strncmp(c, "{0[", 3) != 0)
      return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                            "checkpoint filename '%s': unsupported replacement field at '%s'",
                            p->filename, c);
    const char *key = c + 3, *kend = strchr(key, ']');
    if (!kend)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "checkpoint filename '%s': expected '}' before end of string",
                            p->filename);
    const char *q = kend + 1;
    const char *spec = "";
    size_t nspec = 0;
    if (*q == ':') {
      spec = ++q;
      while (*q && *q != '}' && *q != '{') q++;
      nspec = (size_t)(q - spec);
    }
    if (*q != '}')
      return ad_status_make(*q == '{' || *q == '!' || *q == '.' || *q == '['
                                ? AD_STATUS_UNIMPLEMENTED
                                : AD_STATUS_INVALID_ARGUMENT,
                            "checkpoint filename '%s': unsupported or unterminated field at '%s'",
                            p->filename, c);
    char *name = strndup(key, (size_t)(kend - key));
    char *sp = strndup(spec, nspec);
    if (!name || !sp) abort();
    double v = 0;
    bool is_int = true;
    if (!cand_get(p, e, name, &v, &is_int)) {
      v = 0; /* metrics[name] = torch.tensor(0) */
      is_int = true;
    }
    ad_status_t st = py_format(v, is_int, sp, out);
    free(name);
    free(sp);
    AD_RETURN_IF_ERROR(st);
    c = q + 1;
  }
  return AD_OK;
}

static int cmp_len_desc(const void *a, const void *b) {
  size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
  return la < lb ? 1 : la > lb ? -1 : 0;
}

/* _format_checkpoint_name + format_checkpoint_name(metrics, filename, ver). */
static ad_status_t format_name(const rt_ckpt_policy_t *p, const ev_t *e, const char *filename,
                               int ver, char **out) {
  *out = NULL;
  const char *tmpl = filename && filename[0] ? filename
                     : p->filename[0]       ? p->filename
                                            : "{epoch}-{step}";
  char **groups;
  size_t ng = find_groups(tmpl, &groups);
  /* sorted(groups, key=len, reverse=True) is stable: insertion sort keeps equal lengths in
   * order (qsort would not) */
  for (size_t i = 1; i < ng; i++)
    for (size_t j = i; j > 0 && cmp_len_desc(&groups[j - 1], &groups[j]) > 0; j--) {
      char *t = groups[j];
      groups[j] = groups[j - 1];
      groups[j - 1] = t;
    }
  char *s = xstrdup(tmpl);
  for (size_t i = 0; i < ng; i++) {
    const char *name = groups[i] + 1;
    ad_buf_t b = {0};
    if (p->s.auto_insert_metric_name) {
      ad_buf_printf(&b, "%s={%s", name, name);
      char *to = buf_cstr(&b), *t = replace_all(s, groups[i], to);
      free(to);
      free(s);
      s = t;
    }
    ad_buf_printf(&b, "{0[%s]", name);
    char *to = buf_cstr(&b), *t = replace_all(s, groups[i], to);
    free(to);
    free(s);
    s = t;
  }
  for (size_t i = 0; i < ng; i++) free(groups[i]);
  free(groups);
  ad_buf_t b = {0};
  const char *d = p->dirpath;
  ad_buf_t name = {0};
  ad_status_t st = str_format(p, e, s, &name);
  free(s);
  if (st) {
    ad_buf_free(&name);
    return st;
  }
  if (ver > 0) ad_buf_printf(&name, "-v%d", ver);
  ad_buf_printf(&name, "%s", p->ext);
  char *nm = buf_cstr(&name);
  /* os.path.join(dirpath, name) */
  if (d[0] && nm[0] != '/') {
    ad_buf_printf(&b, "%s", d);
    if (d[strlen(d) - 1] != '/') ad_buf_printf(&b, "/");
  }
  ad_buf_printf(&b, "%s", nm);
  free(nm);
  *out = buf_cstr(&b);
  return AD_OK;
}

ad_status_t rt_ckpt_policy_format_name(const rt_ckpt_policy_t *p, const char *filename,
                                       int64_t step, int64_t epoch, int ver, char **out) {
  ev_t e = {step, epoch, NULL};
  return format_name(p, &e, filename, ver, out);
}

/* ---- saving and removing ---------------------------------------------------------------- */

static bool file_exists(const rt_ckpt_policy_t *p, const char *path) {
  return strv_find(&p->files, path) >= 0;
}

/* _should_remove_checkpoint: not the current file, not the resumed-from file, and under
 * dirpath (Path(dirpath).absolute() in Path(previous).absolute().parents). */
static bool should_remove(const rt_ckpt_policy_t *p, const char *previous, const char *current) {
  if (!strcmp(previous, current)) return false;
  if (p->resume && !strcmp(previous, p->resume)) return false;
  size_t n = strlen(p->dirpath);
  while (n > 1 && p->dirpath[n - 1] == '/') n--;
  if (n == 0) return previous[0] != '/'; /* relative names live under the working directory */
  if (n == 1 && p->dirpath[0] == '/') return previous[0] == '/' && previous[1];
  return !strncmp(previous, p->dirpath, n) && previous[n] == '/' && previous[n + 1];
}

static void do_save(rt_ckpt_policy_t *p, const ev_t *e, const char *path) {
  push_action(e->out, RT_CKPT_SAVE, path, NULL, NULL);
  strv_add(&p->files, path);
  p->last_global_step_saved = e->step;
  set_str(&p->last_checkpoint_saved, path);
}

static void do_remove(rt_ckpt_policy_t *p, const ev_t *e, const char *path) {
  push_action(e->out, RT_CKPT_REMOVE, path, NULL, NULL);
  strv_del(&p->files, path);
}

static void warn_once(rt_ckpt_policy_t *p, const ev_t *e, const char *msg) {
  if (strv_find(&p->warned, msg) >= 0) return;
  strv_add(&p->warned, msg);
  push_action(e->out, RT_CKPT_WARN, NULL, NULL, msg);
}

/* _get_metric_interpolated_filepath_name */
static ad_status_t interpolated_name(const rt_ckpt_policy_t *p, const ev_t *e,
                                     const char *del_filepath, char **out) {
  AD_RETURN_IF_ERROR(format_name(p, e, NULL, 0, out));
  if (!p->s.enable_version_counter) return AD_OK;
  for (int ver = 1; file_exists(p, *out) && (!del_filepath || strcmp(*out, del_filepath)); ver++) {
    free(*out);
    AD_RETURN_IF_ERROR(format_name(p, e, NULL, ver, out));
  }
  return AD_OK;
}

/* _save_last_checkpoint */
static ad_status_t save_last(rt_ckpt_policy_t *p, const ev_t *e) {
  if (p->s.save_last == RT_CKPT_SAVE_LAST_OFF) return AD_OK;
  char *path;
  AD_RETURN_IF_ERROR(format_name(p, e, "last", 0, &path));
  if (p->s.enable_version_counter)
    for (int ver = 1; file_exists(p, path) && strcmp(path, p->last_model_path); ver++) {
      free(path);
      AD_RETURN_IF_ERROR(format_name(p, e, "last", ver, &path));
    }
  char *previous = p->last_model_path;
  p->last_model_path = xstrdup(path);
  if (p->s.save_last == RT_CKPT_SAVE_LAST_LINK && p->last_checkpoint_saved[0] &&
      p->s.save_top_k != 0) {
    /* _link_checkpoint: nothing when both are the same file */
    if (strcmp(p->last_checkpoint_saved, path)) {
      push_action(e->out, RT_CKPT_LINK, path, p->last_checkpoint_saved, NULL);
      strv_add(&p->files, path);
    }
  } else {
    do_save(p, e, path);
  }
  if (previous[0] && should_remove(p, previous, path)) do_remove(p, e, previous);
  free(previous);
  free(path);
  return AD_OK;
}

/* The first entry with the extreme score in dict order (Python's min/max with a key). */
static const kv_t *first_extreme(const kvmap_t *m, bool want_max) {
  const kv_t *best = NULL;
  for (size_t i = 0; i < m->n; i++)
    if (!best || (want_max ? m->e[i].v > best->v : m->e[i].v < best->v)) best = &m->e[i];
  return best;
}

/* _update_best_and_save */
static ad_status_t update_best_and_save(rt_ckpt_policy_t *p, const ev_t *e, double current) {
  size_t k = p->s.save_top_k == -1 ? p->best_k.n + 1 : (size_t)p->s.save_top_k;
  char *del = NULL;
  if (p->best_k.n == k && k > 0) {
    del = xstrdup(p->kth_best_model_path);
    if (!kv_pop(&p->best_k, del)) {
      ad_status_t st = ad_status_make(AD_STATUS_INTERNAL,
                                      "checkpoint policy: kth best '%s' is not among the best "
                                      "k models",
                                      del);
      free(del);
      return st;
    }
  }
  if (isnan(current)) current = p->s.mode_max ? -INFINITY : INFINITY; /* do not save nan */
  char *path;
  ad_status_t st = interpolated_name(p, e, del, &path);
  if (st) {
    free(del);
    return st;
  }
  p->current_score = current;
  p->has_current_score = true;
  kv_set(&p->best_k, path, current);
  if (p->best_k.n == k) {
    const kv_t *kth = first_extreme(&p->best_k, !p->s.mode_max);
    set_str(&p->kth_best_model_path, kth->k);
    p->kth_value = kth->v;
  }
  const kv_t *best = first_extreme(&p->best_k, p->s.mode_max);
  set_str(&p->best_model_path, best->k);
  p->best_model_score = best->v;
  p->has_best_score = true;
  do_save(p, e, path);
  if (del && del[0] && should_remove(p, del, path)) do_remove(p, e, del);
  free(del);
  free(path);
  return AD_OK;
}

/* _save_topk_checkpoint (with _save_monitor_checkpoint, check_monitor_top_k and
 * _save_none_monitor_checkpoint) */
static ad_status_t save_topk(rt_ckpt_policy_t *p, const ev_t *e) {
  if (p->s.save_top_k == 0) return AD_OK;
  if (p->monitor) {
    double current = 0;
    bool is_int;
    bool have = cand_get(p, e, p->monitor, &current, &is_int);
    if (!have) {
      char *m = missing_monitor_message(p);
      if (p->val_has_run) {
        ad_status_t st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s", m);
        free(m);
        return st;
      }
      warn_once(p, e, m);
      free(m);
      return AD_OK; /* check_monitor_top_k(None) is False */
    }
    bool better;
    if (p->s.save_top_k == -1 || p->best_k.n < (size_t)p->s.save_top_k) {
      better = true;
    } else {
      const kv_t *kth = kv_find(&p->best_k, p->kth_best_model_path);
      if (!kth)
        return ad_status_make(AD_STATUS_INTERNAL,
                              "checkpoint policy: kth best '%s' is not among the best k models",
                              p->kth_best_model_path);
      better = p->s.mode_max ? current > kth->v : current < kth->v; /* NaN: false */
    }
    return better ? update_best_and_save(p, e, current) : AD_OK;
  }
  char *path;
  AD_RETURN_IF_ERROR(interpolated_name(p, e, p->best_model_path, &path));
  char *previous = p->best_model_path;
  p->best_model_path = xstrdup(path);
  do_save(p, e, path);
  if (p->s.save_top_k == 1 && previous[0] && should_remove(p, previous, path))
    do_remove(p, e, previous);
  free(previous);
  free(path);
  return AD_OK;
}

/* ---- events ----------------------------------------------------------------------------- */

ad_status_t rt_ckpt_policy_on_train_batch_end(rt_ckpt_policy_t *p, int64_t step, int64_t epoch,
                                              bool is_last_batch, const rt_ckpt_metric_t *logged,
                                              size_t nlogged, rt_ckpt_actions_t *out) {
  ev_t e = {step, epoch, out};
  rt_ckpt_policy_log(p, logged, nlogged);
  bool skip_due_to_state = p->last_global_step_saved == step;
  if (p->every_steps < 1 || step % p->every_steps != 0) return AD_OK;
  double v;
  bool is_int;
  if (p->monitor && !cand_get(p, &e, p->monitor, &v, &is_int)) {
    p->defer = true; /* wait for validation to produce the monitored metric */
    return AD_OK;
  }
  if (p->monitor && !p->soe && is_last_batch) {
    int64_t cve = p->s.check_val_every_n_epoch;
    bool will_run_val = p->s.has_validation && (cve < 0 || (cve > 0 && (epoch + 1) % cve == 0));
    if (will_run_val) {
      p->defer = true; /* use the fresh metrics of the validation that follows */
      return AD_OK;
    }
  }
  if (skip_due_to_state) return AD_OK;
  AD_RETURN_IF_ERROR(save_topk(p, &e));
  return save_last(p, &e);
}

/* The epoch-trigger rule shared by validation end and train epoch end (Lightning's
 * _save_topk_checkpoint when every_n_epochs divides epoch + 1, then _save_last_checkpoint when
 * this step saved, or always for save_last "link" once something was saved). */
static ad_status_t epoch_save(rt_ckpt_policy_t *p, ev_t *e) {
  if (p->every_epochs >= 1 && (e->epoch + 1) % p->every_epochs == 0)
    AD_RETURN_IF_ERROR(save_topk(p, e));
  if (p->last_global_step_saved == e->step ||
      (p->s.save_last == RT_CKPT_SAVE_LAST_LINK && p->last_checkpoint_saved[0]))
    AD_RETURN_IF_ERROR(save_last(p, e));
  return AD_OK;
}

ad_status_t rt_ckpt_policy_on_validation_end(rt_ckpt_policy_t *p, int64_t step, int64_t epoch,
                                             const rt_ckpt_metric_t *logged, size_t nlogged,
                                             rt_ckpt_actions_t *out) {
  ev_t e = {step, epoch, out};
  rt_ckpt_policy_log(p, logged, nlogged);
  p->val_has_run = true;
  if (p->last_global_step_saved == step || p->soe) return AD_OK;
  if (p->defer) {
    AD_RETURN_IF_ERROR(save_topk(p, &e));
    AD_RETURN_IF_ERROR(save_last(p, &e));
    p->defer = false;
    return AD_OK;
  }
  return epoch_save(p, &e);
}

ad_status_t rt_ckpt_policy_on_train_epoch_end(rt_ckpt_policy_t *p, int64_t step, int64_t epoch,
                                              rt_ckpt_actions_t *out) {
  ev_t e = {step, epoch, out};
  if (p->last_global_step_saved == step || !p->soe) return AD_OK;
  return epoch_save(p, &e);
}

ad_status_t rt_ckpt_policy_on_train_end(rt_ckpt_policy_t *p, int64_t step, int64_t epoch,
                                        rt_ckpt_actions_t *out) {
  ev_t e = {step, epoch, out};
  if (p->s.save_last != RT_CKPT_SAVE_LAST_OFF && !p->last_checkpoint_saved[0])
    return save_last(p, &e);
  return AD_OK;
}

/* ---- accessors -------------------------------------------------------------------------- */

const char *rt_ckpt_policy_best_model_path(const rt_ckpt_policy_t *p) {
  return p->best_model_path;
}
bool rt_ckpt_policy_best_model_score(const rt_ckpt_policy_t *p, double *score) {
  if (p->has_best_score) *score = p->best_model_score;
  return p->has_best_score;
}
const char *rt_ckpt_policy_kth_best_model_path(const rt_ckpt_policy_t *p) {
  return p->kth_best_model_path;
}
double rt_ckpt_policy_kth_value(const rt_ckpt_policy_t *p) { return p->kth_value; }
const char *rt_ckpt_policy_last_model_path(const rt_ckpt_policy_t *p) {
  return p->last_model_path;
}
size_t rt_ckpt_policy_best_k_count(const rt_ckpt_policy_t *p) { return p->best_k.n; }
const char *rt_ckpt_policy_best_k(const rt_ckpt_policy_t *p, size_t i, double *score) {
  if (i >= p->best_k.n) return NULL;
  if (score) *score = p->best_k.e[i].v;
  return p->best_k.e[i].k;
}

/* ---- state ------------------------------------------------------------------------------ */

#define STATE_FORMAT "aidomm.ckpt_policy/1"

static json_t *jnum(double v) {
  if (isnan(v)) return json_string("nan");
  if (isinf(v)) return json_string(v > 0 ? "inf" : "-inf");
  return json_real(v);
}

static bool jget_num(const json_t *j, double *v) {
  if (json_is_number(j)) {
    *v = json_number_value(j);
    return true;
  }
  const char *s = json_string_value(j);
  if (!s) return false;
  if (!strcmp(s, "nan")) *v = NAN;
  else if (!strcmp(s, "inf")) *v = INFINITY;
  else if (!strcmp(s, "-inf")) *v = -INFINITY;
  else return false;
  return true;
}

/* ModelCheckpoint.state_key: "ModelCheckpoint" + repr(dict(monitor, mode, every_n_train_steps,
 * every_n_epochs, train_time_interval)). */
static char *state_key(const rt_ckpt_policy_t *p) {
  ad_buf_t b = {0};
  ad_buf_printf(&b, "ModelCheckpoint{'monitor': ");
  if (p->monitor) py_repr_str(&b, p->monitor);
  else ad_buf_printf(&b, "None");
  ad_buf_printf(&b, ", 'mode': '%s', 'every_n_train_steps': %lld, 'every_n_epochs': %lld, "
                    "'train_time_interval': None}",
                p->s.mode_max ? "max" : "min", (long long)p->every_steps,
                (long long)p->every_epochs);
  return buf_cstr(&b);
}

static json_t *jstrv(const strv_t *s) {
  json_t *a = json_array();
  for (size_t i = 0; i < s->n; i++) json_array_append_new(a, json_string(s->v[i]));
  return a;
}

static json_t *jkv(const kvmap_t *m) {
  json_t *a = json_array();
  for (size_t i = 0; i < m->n; i++) {
    json_t *pair = json_array();
    json_array_append_new(pair, json_string(m->e[i].k));
    json_array_append_new(pair, jnum(m->e[i].v));
    json_array_append_new(a, pair);
  }
  return a;
}

ad_status_t rt_ckpt_policy_state_json(const rt_ckpt_policy_t *p, char **out) {
  json_t *o = json_object();
  char *key = state_key(p);
  json_object_set_new(o, "format", json_string(STATE_FORMAT));
  json_object_set_new(o, "state_key", json_string(key));
  free(key);
  json_object_set_new(o, "monitor", p->monitor ? json_string(p->monitor) : json_null());
  json_object_set_new(o, "best_model_score",
                      p->has_best_score ? jnum(p->best_model_score) : json_null());
  json_object_set_new(o, "best_model_path", json_string(p->best_model_path));
  json_object_set_new(o, "current_score",
                      p->has_current_score ? jnum(p->current_score) : json_null());
  json_object_set_new(o, "dirpath", json_string(p->dirpath));
  json_object_set_new(o, "best_k_models", jkv(&p->best_k));
  json_object_set_new(o, "kth_best_model_path", json_string(p->kth_best_model_path));
  json_object_set_new(o, "kth_value", jnum(p->kth_value));
  json_object_set_new(o, "last_model_path", json_string(p->last_model_path));
  json_object_set_new(o, "last_global_step_saved", json_integer(p->last_global_step_saved));
  json_object_set_new(o, "last_checkpoint_saved", json_string(p->last_checkpoint_saved));
  json_object_set_new(o, "defer", json_boolean(p->defer));
  json_object_set_new(o, "val_has_run", json_boolean(p->val_has_run));
  json_object_set_new(o, "callback_metrics", jkv(&p->metrics));
  json_object_set_new(o, "files", jstrv(&p->files));
  json_object_set_new(o, "warned", jstrv(&p->warned));
  *out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
  json_decref(o);
  return *out ? AD_OK : ad_status_make(AD_STATUS_RESOURCE, "out of memory");
}

static ad_status_t bad_state(const char *what) {
  return ad_status_make(AD_STATUS_DATA_LOSS, "checkpoint callback state: %s", what);
}

static ad_status_t read_kv(const json_t *a, kvmap_t *m, const char *what) {
  if (!json_is_array(a)) return bad_state(what);
  kvmap_t t = {0};
  size_t i;
  json_t *e;
  json_array_foreach(a, i, e) {
    double v;
    const char *k = json_string_value(json_array_get(e, 0));
    if (!json_is_array(e) || json_array_size(e) != 2 || !k || !jget_num(json_array_get(e, 1), &v)) {
      kv_free(&t);
      return bad_state(what);
    }
    kv_set(&t, k, v);
  }
  kv_free(m);
  *m = t;
  return AD_OK;
}

static ad_status_t read_strv(const json_t *a, strv_t *s, const char *what) {
  if (!json_is_array(a)) return bad_state(what);
  strv_t t = {0};
  size_t i;
  json_t *e;
  json_array_foreach(a, i, e) {
    if (!json_is_string(e)) {
      strv_free(&t);
      return bad_state(what);
    }
    strv_add(&t, json_string_value(e));
  }
  strv_free(s);
  *s = t;
  return AD_OK;
}

static ad_status_t restore_obj(rt_ckpt_policy_t *p, const json_t *o, bool lightning_only,
                               rt_ckpt_restore_t *how) {
  const char *fmt = json_string_value(json_object_get(o, "format"));
  if (!fmt || strcmp(fmt, STATE_FORMAT)) return bad_state("not aidomm.ckpt_policy/1");
  const char *skey = json_string_value(json_object_get(o, "state_key"));
  const char *dir = json_string_value(json_object_get(o, "dirpath"));
  const char *best = json_string_value(json_object_get(o, "best_model_path"));
  const char *kth = json_string_value(json_object_get(o, "kth_best_model_path"));
  const char *last = json_string_value(json_object_get(o, "last_model_path"));
  const char *lcs = json_string_value(json_object_get(o, "last_checkpoint_saved"));
  const json_t *bscore = json_object_get(o, "best_model_score");
  const json_t *cscore = json_object_get(o, "current_score");
  const json_t *lgs = json_object_get(o, "last_global_step_saved");
  double kth_value, bs = 0, cs = 0;
  if (!skey || !dir || !best || !kth || !last || !lcs || !json_is_integer(lgs) ||
      !jget_num(json_object_get(o, "kth_value"), &kth_value) ||
      !json_is_boolean(json_object_get(o, "defer")) ||
      !json_is_boolean(json_object_get(o, "val_has_run")) ||
      (!json_is_null(bscore) && !jget_num(bscore, &bs)) ||
      (!json_is_null(cscore) && !jget_num(cscore, &cs)))
    return bad_state("missing or mistyped fields");
  kvmap_t bk = {0};
  AD_RETURN_IF_ERROR(read_kv(json_object_get(o, "best_k_models"), &bk, "best_k_models"));
  char *mykey = state_key(p);
  bool same_key = !strcmp(mykey, skey);
  free(mykey);
  if (lightning_only && !same_key) {
    kv_free(&bk);
    *how = RT_CKPT_RESTORED_NOTHING;
    return AD_OK;
  }
  if (lightning_only && strcmp(dir, p->dirpath)) {
    kv_free(&bk);
    set_str(&p->best_model_path, best);
    *how = RT_CKPT_RESTORED_BEST_PATH;
    return AD_OK;
  }
  if (!lightning_only) {
    /* everything else first, so a malformed field leaves the policy as it was */
    kvmap_t m = {0};
    strv_t files = {0}, warned = {0};
    ad_status_t st = read_kv(json_object_get(o, "callback_metrics"), &m, "callback_metrics");
    if (!st) st = read_strv(json_object_get(o, "files"), &files, "files");
    if (!st) st = read_strv(json_object_get(o, "warned"), &warned, "warned");
    if (st) {
      kv_free(&bk);
      kv_free(&m);
      strv_free(&files);
      strv_free(&warned);
      return st;
    }
    kv_free(&p->metrics);
    p->metrics = m;
    strv_free(&p->files);
    p->files = files;
    strv_free(&p->warned);
    p->warned = warned;
    p->last_global_step_saved = json_integer_value(lgs);
    set_str(&p->last_checkpoint_saved, lcs);
    p->defer = json_is_true(json_object_get(o, "defer"));
    p->val_has_run = json_is_true(json_object_get(o, "val_has_run"));
    p->has_current_score = !json_is_null(cscore);
    p->current_score = cs;
  }
  p->has_best_score = !json_is_null(bscore);
  p->best_model_score = bs;
  set_str(&p->best_model_path, best);
  set_str(&p->kth_best_model_path, kth);
  p->kth_value = kth_value;
  set_str(&p->last_model_path, last);
  kv_free(&p->best_k);
  p->best_k = bk;
  *how = RT_CKPT_RESTORED_ALL;
  return AD_OK;
}

ad_status_t rt_ckpt_policy_restore(rt_ckpt_policy_t *p, const char *json, bool lightning_only,
                                   rt_ckpt_restore_t *how) {
  json_error_t err;
  json_t *o = json_loads(json, 0, &err);
  if (!json_is_object(o)) {
    json_decref(o);
    return ad_status_make(AD_STATUS_DATA_LOSS, "checkpoint callback state: %s",
                          o ? "not an object" : err.text);
  }
  rt_ckpt_restore_t dummy;
  ad_status_t st = restore_obj(p, o, lightning_only, how ? how : &dummy);
  json_decref(o);
  return st;
}
