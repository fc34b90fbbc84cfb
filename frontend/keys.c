/* Key classes: what changing a config key takes (compile-time, bound-changing, runtime), and
 * which tool may be given it. The table is generated from the class registry rather than kept
 * per key: an init_args key takes its class from the argument's FE_ARG_KEY_* flag, else from a
 * few argument names whose meaning is the same in every class (ModelGenerator's `max_length`
 * sets a length bound; TaskInterface's checkpoint-loading switches are read at run time), else
 * from its class's kind (model components and optimizers: compile-time; schedulers, data,
 * callbacks, loggers: runtime). Trainer keys come from fe_trainer_keys (sections.c). */
#include <stdlib.h>
#include <string.h>

#include "frontend/fe_check.h"

static const char *const k_bound_names[] = {"max_length", "batch_size", "dna_window"};
static const char *const k_runtime_names[] = {"strict_loading", "reset_optimizer_states",
                                              "save_peft_only"};

static bool in_list(const char *s, const char *const *l, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(s, l[i])) return true;
  return false;
}

static fe_key_class_t kind_default(fe_class_kind_t k) {
  switch (k) {
    case FE_CLASS_TASK:
    case FE_CLASS_BACKBONE:
    case FE_CLASS_FUSION:
    case FE_CLASS_ADAPTER:
    case FE_CLASS_OPTIMIZER: return FE_KEY_COMPILE;
    default: return FE_KEY_RUNTIME;
  }
}

fe_key_class_t fe_arg_key_class(const fe_class_t *cls, const fe_arg_spec_t *spec) {
  if (spec->flags & FE_ARG_KEY_COMPILE) return FE_KEY_COMPILE;
  if (spec->flags & FE_ARG_KEY_BOUND) return FE_KEY_BOUND;
  if (spec->flags & FE_ARG_KEY_RUNTIME) return FE_KEY_RUNTIME;
  if (in_list(spec->name, k_bound_names, sizeof k_bound_names / sizeof *k_bound_names))
    return FE_KEY_BOUND;
  if (cls->kind == FE_CLASS_TASK &&
      in_list(spec->name, k_runtime_names, sizeof k_runtime_names / sizeof *k_runtime_names))
    return FE_KEY_RUNTIME;
  if (cls->kind == FE_CLASS_BACKBONE && !strcmp(spec->name, "save_peft_only"))
    return FE_KEY_RUNTIME; /* decides what a checkpoint holds, not what runs */
  return kind_default(cls->kind);
}

const char *fe_key_class_name(fe_key_class_t k) {
  switch (k) {
    case FE_KEY_COMPILE: return "compile-time";
    case FE_KEY_BOUND: return "bound-changing";
    case FE_KEY_RUNTIME: return "runtime";
    default: return "unknown";
  }
}

/* The strongest class wins when classes of a kind disagree about an argument name: a key that
 * changes the graph in one class must go to the compiler. */
static fe_key_class_t stronger(fe_key_class_t a, fe_key_class_t b) {
  static const int rank[] = {[FE_KEY_UNKNOWN] = 0, [FE_KEY_RUNTIME] = 1, [FE_KEY_BOUND] = 2,
                             [FE_KEY_COMPILE] = 3};
  return rank[a] >= rank[b] ? a : b;
}

static bool is_number(const char *s) {
  if (!*s) return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9') return false;
  return true;
}

/* Walks segs[i..n) from a node of class kind `kind`. */
static fe_key_class_t walk(fe_class_kind_t kind, char **segs, int i, int n, int depth) {
  while (i < n && (!strcmp(segs[i], "init_args") || is_number(segs[i]))) i++;
  if (i == n || depth > 16) /* the whole class node */
    return kind == FE_CLASS_SCHEDULER || kind == FE_CLASS_OTHER ? FE_KEY_RUNTIME : FE_KEY_COMPILE;
  const char *seg = segs[i];
  if (!strcmp(seg, "class_path"))
    return kind == FE_CLASS_SCHEDULER || kind == FE_CLASS_OTHER ? FE_KEY_RUNTIME : FE_KEY_COMPILE;
  if (kind == FE_CLASS_TASK && !strcmp(seg, "optimizer"))
    return walk(FE_CLASS_OPTIMIZER, segs, i + 1, n, depth + 1);
  if (kind == FE_CLASS_TASK && !strcmp(seg, "lr_scheduler"))
    return walk(FE_CLASS_SCHEDULER, segs, i + 1, n, depth + 1);
  fe_key_class_t best = FE_KEY_UNKNOWN;
  for (size_t c = 0; c < fe_class_count(); c++) {
    const fe_class_t *cls = fe_class_at(c);
    if (cls->kind != kind) continue;
    int a = fe_class_arg_index(cls, seg);
    if (a < 0) continue;
    const fe_arg_spec_t *spec = &cls->args[a];
    fe_key_class_t kc;
    if (spec->type == FE_ARG_CLASS && i + 1 < n)
      kc = walk(spec->kind, segs, i + 1, n, depth + 1);
    else if (spec->type == FE_ARG_CLASS)
      kc = kind_default(kind) == FE_KEY_COMPILE ? FE_KEY_COMPILE : FE_KEY_RUNTIME;
    else
      kc = fe_arg_key_class(cls, spec);
    best = stronger(best, kc);
  }
  /* Any model key changes the graph, also one of a class this build lacks. */
  if (best == FE_KEY_UNKNOWN && kind != FE_CLASS_SCHEDULER && kind != FE_CLASS_OTHER &&
      kind != FE_CLASS_DATA)
    return FE_KEY_COMPILE;
  return best;
}

fe_key_class_t fe_key_class(const char *dotted) {
  if (!dotted) return FE_KEY_UNKNOWN;
  if (!strncmp(dotted, "--", 2)) dotted += 2;
  size_t len = strcspn(dotted, "=");
  if (len == 0 || len > 511) return FE_KEY_UNKNOWN;
  char buf[512];
  memcpy(buf, dotted, len);
  buf[len] = 0;
  char *segs[64];
  int n = 0;
  for (char *p = buf; n < 64;) {
    segs[n++] = p;
    char *dot = strchr(p, '.');
    if (!dot) break;
    *dot = 0;
    p = dot + 1;
  }
  for (int i = 0; i < n; i++)
    if (!segs[i][0]) return FE_KEY_UNKNOWN;
  const char *top = segs[0];
  if (!strcmp(top, "seed_everything") || !strcmp(top, "ckpt_path"))
    return n == 1 ? FE_KEY_RUNTIME : FE_KEY_UNKNOWN;
  if (!strcmp(top, "trainer")) {
    if (n == 1) return FE_KEY_COMPILE; /* the whole trainer includes precision */
    for (size_t i = 0; i < fe_ntrainer_keys; i++)
      if (!strcmp(fe_trainer_keys[i].name, segs[1])) return fe_trainer_keys[i].kc;
    return FE_KEY_UNKNOWN;
  }
  if (!strcmp(top, "model")) return walk(FE_CLASS_TASK, segs, 1, n, 0);
  if (!strcmp(top, "optimizer")) return walk(FE_CLASS_OPTIMIZER, segs, 1, n, 0);
  if (!strcmp(top, "lr_scheduler")) return walk(FE_CLASS_SCHEDULER, segs, 1, n, 0);
  if (!strcmp(top, "data")) {
    if (n == 1) return FE_KEY_COMPILE; /* a different data class can change the inputs */
    return walk(FE_CLASS_DATA, segs, 1, n, 0);
  }
  return FE_KEY_UNKNOWN;
}

ad_status_t fe_key_check(const char *dotted, fe_tool_t tool, int argpos) {
  fe_key_class_t kc = fe_key_class(dotted);
  if (!strncmp(dotted, "--", 2)) dotted += 2;
  int len = (int)strcspn(dotted, "=");
  if (kc == FE_KEY_UNKNOWN)
    return fe_status_at(AD_STATUS_INVALID_ARGUMENT, FE_CMDLINE_FILE, 1, argpos,
                        "unknown config key '--%.*s'", len, dotted);
  if (tool == FE_TOOL_RUNTIME && kc == FE_KEY_COMPILE)
    return fe_status_at(AD_STATUS_INVALID_ARGUMENT, FE_CMDLINE_FILE, 1, argpos,
                        "--%.*s changes the compiled graph; give it to aidommc compile", len,
                        dotted);
  /* Bound-changing keys reach the runtime, which takes values within the plan's bounds and
   * names aidommc compile for larger ones; every key reaches the compiler. */
  return AD_OK;
}

void fe_key_table(ad_buf_t *out) {
  ad_buf_printf(out, "seed_everything\tseed_everything\t%s\n", fe_key_class_name(FE_KEY_RUNTIME));
  ad_buf_printf(out, "ckpt_path\tckpt_path\t%s\n", fe_key_class_name(FE_KEY_RUNTIME));
  for (size_t i = 0; i < fe_ntrainer_keys; i++)
    ad_buf_printf(out, "trainer\ttrainer.%s\t%s\n", fe_trainer_keys[i].name,
                  fe_key_class_name(fe_trainer_keys[i].kc));
  for (size_t c = 0; c < fe_class_count(); c++) {
    const fe_class_t *cls = fe_class_at(c);
    for (uint32_t a = 0; a < cls->nargs; a++) {
      const fe_arg_spec_t *s = &cls->args[a];
      fe_key_class_t kc = s->type == FE_ARG_CLASS ? kind_default(cls->kind)
                                                  : fe_arg_key_class(cls, s);
      ad_buf_printf(out, "%s\tinit_args.%s\t%s\n", cls->class_path, s->name,
                    fe_key_class_name(kc));
    }
  }
}
