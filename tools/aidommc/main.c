/* aidommc: compiles a ModelGenerator-style config into a plan file, and reports what a plan
 * holds (per-layer shapes, FLOPs, memory) before anything runs.
 *
 * Exit codes: 0 ok; 2 usage and input errors (bad flags, config, corrupt plan); 1 runtime
 * failures (I/O, out of memory, internal errors). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver/compile.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "plan/plan.h"
#include "support/cli.h"

#ifndef AIDOMM_VERSION
#define AIDOMM_VERSION "unknown"
#endif

#define TOOL "aidommc"

/* Above this many rows the inspect table folds repeated layers (see fold_rows). */
#define INSPECT_FOLD_THRESHOLD 64

static const char g_usage[] =
    "usage: aidommc compile CONFIG -o PLAN [options] [--key.path VALUE ...]\n"
    "       aidommc compile --config CONFIG [--config MORE ...] --print_config [--key.path VALUE ...]\n"
    "       aidommc inspect PLAN [--full]\n"
    "       aidommc --help | --version\n"
    "\n"
    "compile options:\n"
    "  -o, --output PLAN       where to write the plan (written atomically)\n"
    "  --config FILE           a config file; repeat it to layer files (later ones override\n"
    "                          earlier ones key by key, as mgen does); a bare CONFIG is the first\n"
    "  --print_config          print the resolved config (every default filled in) and stop\n"
    "  --job KIND              fit (default), validate, test or predict\n"
    "  --print-before=PASS     print the IR to stdout before PASS runs (or 'all')\n"
    "  --print-after=PASS      print the IR to stdout after PASS runs (or 'all')\n"
    "  --no-reuse              plan every buffer in its own memory (debugging)\n"
    "  --key.path VALUE        override a config value, e.g. --data.batch_size 16\n"
    "                          (also --key.path=VALUE, and --seed_everything N)\n"
    "\n"
    "inspect options:\n"
    "  --full                  list every node (large graphs are folded by default)\n"
    "\n"
    "exit status: 0 success, 2 usage or input error, 1 runtime failure\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, TOOL ": error: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (see 'aidommc --help')\n");
  return 2;
}

static int fail(ad_status_t st) { return ad_status_report(st, TOOL); }


static bool pass_name_known(const char *s) {
  if (strcmp(s, "all") == 0) return true;
  for (const char *const *p = pass_names(); p && *p; p++)
    if (strcmp(*p, s) == 0) return true;
  return false;
}

static int unknown_pass(const char *flag, const char *s) {
  fprintf(stderr, TOOL ": error: unknown pass '%s' for %s (known: all", s, flag);
  for (const char *const *p = pass_names(); p && *p; p++) fprintf(stderr, ", %s", *p);
  fprintf(stderr, ")\n");
  return 2;
}

/* ---- compile ---------------------------------------------------------------------------- */

typedef struct compile_args {
  const char *config, *output, *print_before, *print_after;
  plan_job_kind_t job;
  int reuse;
  int print_config;
  int nconfigs;
  const char **configs; /* every config file, in order (the positional one first) */
  int noverrides;
  char **overrides; /* the override arguments as given, for fe_config_load */
} compile_args_t;

/* Top-level config keys that take an override without a dot (as `mgen fit` accepts them). */
static bool is_toplevel_key(const char *k, size_t n) {
  static const char *const keys[] = {"seed_everything", "ckpt_path", "model",
                                     "data",            "optimizer", "lr_scheduler"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
    if (strlen(keys[i]) == n && strncmp(keys[i], k, n) == 0) return true;
  return false;
}

static int parse_compile(int argc, char **argv, compile_args_t *a) {
  a->job = PLAN_JOB_FIT;
  a->reuse = 1;
  a->overrides = calloc((size_t)argc + 1, sizeof *a->overrides);
  a->configs = calloc((size_t)argc + 1, sizeof *a->configs);
  if (!a->overrides || !a->configs) return usage_error("%s", "out of memory");
  for (int i = 2; i < argc; i++) {
    const char *arg = argv[i], *v;
    int missing;
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      fputs(g_usage, stdout);
      return 0;
    }
    if ((v = ad_cli_flag_value(argc, argv, &i, "-o", &missing)) ||
        (!missing && (v = ad_cli_flag_value(argc, argv, &i, "--output", &missing)))) {
      a->output = v;
    } else if (!missing && (v = ad_cli_flag_value(argc, argv, &i, "--config", &missing))) {
      a->configs[a->nconfigs++] = v;
      if (!a->config) a->config = v;
    } else if (!missing && (strcmp(arg, "--print_config") == 0 ||
                            strcmp(arg, "--print-config") == 0)) {
      a->print_config = 1;
    } else if (!missing && (v = ad_cli_flag_value(argc, argv, &i, "--job", &missing))) {
      if (!plan_job_kind_from_name(v, &a->job))
        return usage_error("unknown job '%s' (expected fit, validate, test or predict)", v);
    } else if (!missing && (v = ad_cli_flag_value(argc, argv, &i, "--print-after", &missing))) {
      if (!pass_name_known(v)) return unknown_pass("--print-after", v);
      a->print_after = v;
    } else if (!missing && (v = ad_cli_flag_value(argc, argv, &i, "--print-before", &missing))) {
      if (!pass_name_known(v)) return unknown_pass("--print-before", v);
      a->print_before = v;
    } else if (missing) {
      return usage_error("option '%s' needs a value", arg);
    } else if (strcmp(arg, "--no-reuse") == 0) {
      a->reuse = 0;
    } else if (strncmp(arg, "--", 2) == 0 && arg[2]) {
      const char *key = arg + 2, *eq = strchr(key, '=');
      size_t klen = eq ? (size_t)(eq - key) : strlen(key);
      if (!memchr(key, '.', klen) && !is_toplevel_key(key, klen))
        return usage_error("unknown option '%s'", arg);
      a->overrides[a->noverrides++] = argv[i];
      if (!eq) {
        if (i + 1 >= argc) return usage_error("override '%s' needs a value", arg);
        a->overrides[a->noverrides++] = argv[++i];
      }
    } else if (arg[0] == '-' && arg[1]) {
      return usage_error("unknown option '%s'", arg);
    } else if (!a->config) {
      a->config = arg;
      /* The positional CONFIG comes first, before any --config. */
      memmove(a->configs + 1, a->configs, sizeof *a->configs * (size_t)a->nconfigs);
      a->configs[0] = arg;
      a->nconfigs++;
    } else {
      return usage_error("unexpected argument '%s' (one CONFIG; more with --config)", arg);
    }
  }
  if (!a->config) return usage_error("%s", "compile needs a CONFIG file");
  if (!a->output && !a->print_config)
    return usage_error("%s", "compile needs an output plan: -o PLAN");
  return -1; /* go on */
}

static ad_status_t compile(const compile_args_t *a) {
  /* IR dumps go to stdout so they can be piped into files for IR-in/IR-out tests. */
  drv_compile_request_t req = {.nconfigs = a->nconfigs, .configs = a->configs,
                               .noverrides = a->noverrides, .overrides = a->overrides,
                               .job = a->job, .reuse = a->reuse,
                               .print_before = a->print_before, .print_after = a->print_after,
                               .print_stream = stdout, .created_by = TOOL};
  fe_config_t *cfg = NULL;
  plan_t *p = NULL;
  ad_status_t st = drv_load_config(&req, &cfg);
  if (!st && a->print_config) {
    ad_buf_t yaml = {0};
    st = fe_config_print(cfg, &yaml);
    if (!st && (fwrite(yaml.data, 1, yaml.len, stdout) != yaml.len || fflush(stdout) != 0))
      st = ad_status_make(AD_STATUS_IO, "cannot write the config to stdout");
    ad_buf_free(&yaml);
  } else if (!st) {
    st = drv_compile_config(&req, cfg, &p);
    if (!st) st = plan_write(p, a->output);
  }
  plan_free(p);
  fe_config_free(cfg);
  return st;
}

/* ---- inspect ---------------------------------------------------------------------------- */

static void fmt_bytes(char *s, size_t n, double b) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(s, n, "%.0f B", b);
  else
    snprintf(s, n, "%.2f %s", b, units[u]);
}

static void fmt_count(char *s, size_t n, double c) {
  static const char *const units[] = {"", "K", "M", "G", "T", "P"};
  int u = 0;
  while (c >= 1000 && u < 5) {
    c /= 1000;
    u++;
  }
  if (u == 0)
    snprintf(s, n, "%.0f", c);
  else
    snprintf(s, n, "%.2f%s", c, units[u]);
}

/* 1234567 -> "1,234,567" */
static void fmt_grouped(char *s, size_t n, uint64_t v) {
  char digits[32];
  int len = snprintf(digits, sizeof digits, "%" PRIu64, v), o = 0;
  for (int i = 0; i < len && (size_t)o + 2 < n; i++) {
    if (i && (len - i) % 3 == 0) s[o++] = ',';
    s[o++] = digits[i];
  }
  s[o] = '\0';
}

typedef struct row {
  char *name;    /* node name, or the folded pattern */
  const char *op;
  char *shape;   /* at the bound, "[2,16,64]" */
  char *sym;     /* "f32[B,L,64]" */
  uint32_t extra_outputs;
  uint64_t flops; /* per sample */
  uint64_t bytes; /* activations at the bound */
  uint32_t count; /* nodes folded into the row */
} row_t;

static bool is_table_node(ir_op_t op) {
  /* Parameters, scalars and constants are state or inputs, summarised elsewhere; sinks
   * compute nothing. Data inputs stay: they are the activations the batch brings in. */
  return op != IR_OP_STATE_IN && op != IR_OP_STATE_OUT && op != IR_OP_SCALAR &&
         op != IR_OP_CONST && op != IR_OP_OUTPUT;
}

/* "backbone.layer.11.attn.q" -> "backbone.layer.*.attn.q": names of repeated layers agree. */
static char *name_pattern(const char *name) {
  size_t n = strlen(name);
  char *out = malloc(n + 1);
  if (!out) return NULL;
  size_t o = 0;
  const char *p = name;
  while (*p) {
    const char *e = p;
    while (*e && *e != '.') e++;
    bool digits = e > p;
    for (const char *q = p; q < e; q++)
      if (*q < '0' || *q > '9') digits = false;
    if (digits) {
      out[o++] = '*';
    } else {
      memcpy(out + o, p, (size_t)(e - p));
      o += (size_t)(e - p);
    }
    if (*e == '.') out[o++] = *e++;
    p = e;
  }
  out[o] = '\0';
  return out;
}

/* Merges rows whose names differ only in numeric path components and which agree in op,
 * shape and cost: a 12-layer encoder prints as one layer with "x12". Order of first
 * appearance is kept. Quadratic in the number of distinct rows, which is a few hundred. */
static uint32_t fold_rows(row_t *rows, uint32_t n) {
  uint32_t out = 0;
  for (uint32_t i = 0; i < n; i++) {
    char *pat = name_pattern(rows[i].name);
    if (!pat) pat = strdup(rows[i].name);
    uint32_t j;
    for (j = 0; j < out; j++) {
      row_t *r = &rows[j];
      if (strcmp(r->name, pat) == 0 && r->op == rows[i].op && strcmp(r->sym, rows[i].sym) == 0 &&
          r->flops == rows[i].flops && r->bytes == rows[i].bytes)
        break;
    }
    if (j < out) {
      rows[j].count++;
      free(pat);
      free(rows[i].name);
      free(rows[i].shape);
      free(rows[i].sym);
    } else {
      row_t r = rows[i];
      free(r.name);
      r.name = pat;
      rows[out++] = r;
    }
  }
  return out;
}

static const ir_graph_t *inspect_program(const ir_module_t *m) {
  static const char *const prefs[] = {"eval", "forward", "predict"};
  for (size_t i = 0; i < sizeof prefs / sizeof *prefs; i++) {
    const ir_graph_t *g = ir_module_find_program(m, prefs[i]);
    if (g) return g;
  }
  return m->nprograms ? m->programs[0] : NULL;
}

/* Per-sample symbol values: the batch symbol at 1, every other symbol at its bound. */
static int per_sample_symvals(const ir_module_t *m, int64_t *symvals) {
  ir_module_bounds(m, symvals);
  int b = ir_module_find_symbol(m, "B");
  if (b >= 0) symvals[b] = 1;
  return b;
}

static uint64_t program_flops(const ir_graph_t *g, const int64_t *symvals) {
  uint64_t f = 0;
  for (uint32_t i = 0; i < g->nnodes; i++) f += ir_node_cost(g, &g->nodes[i], symvals).flops;
  return f;
}

static void print_layer_table(const ir_module_t *m, const ir_graph_t *g, bool full) {
  int64_t bounds[IR_MAX_SYMBOLS], per_sample[IR_MAX_SYMBOLS];
  ir_module_bounds(m, bounds);
  int bsym = per_sample_symvals(m, per_sample);

  row_t *rows = calloc(g->nnodes + 1, sizeof *rows);
  if (!rows) return;
  uint32_t nrows = 0;
  uint64_t tot_flops = 0, tot_bytes = 0;
  ad_buf_t b = {0};
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (!is_table_node(n->op)) continue;
    row_t *r = &rows[nrows++];
    r->name = strdup(n->name ? n->name : "?");
    r->op = ir_op_name(n->op);
    r->count = 1;
    r->flops = ir_node_cost(g, n, per_sample).flops;
    r->extra_outputs = n->noutputs ? n->noutputs - 1 : 0;
    for (uint32_t o = 0; o < n->noutputs; o++) {
      const ir_type_t *t = &g->values[n->output0 + o].type;
      ir_shape_t s = ir_type_shape(t, bounds);
      r->bytes += (uint64_t)ir_shape_numel(&s) * ir_dtype_size(t->dtype);
    }
    if (n->noutputs) {
      const ir_type_t *t = &g->values[n->output0].type;
      ir_shape_t s = ir_type_shape(t, bounds);
      b.len = 0;
      ad_buf_put_u8(&b, '[');
      for (int d = 0; d < s.rank; d++) ad_buf_printf(&b, "%s%" PRId64, d ? "," : "", s.dims[d]);
      ad_buf_put_u8(&b, ']');
      ad_buf_put_u8(&b, 0);
      r->shape = strdup((const char *)b.data);
      b.len = 0;
      ir_print_type(m, t, &b);
      ad_buf_put_u8(&b, 0);
      r->sym = strdup((const char *)b.data);
    } else {
      r->shape = strdup("-");
      r->sym = strdup("-");
    }
    tot_flops += r->flops;
    tot_bytes += r->bytes;
  }
  ad_buf_free(&b);

  bool folded = !full && nrows > INSPECT_FOLD_THRESHOLD;
  uint32_t nnodes_listed = nrows;
  if (folded) nrows = fold_rows(rows, nrows);

  printf("\nprogram '%s': %u nodes, %u listed", g->name, g->nnodes, nnodes_listed);
  if (folded)
    printf(" in %u rows: repeated layers are folded ('*' stands for the layer index, values are "
           "per instance, the total counts all; --full lists every node)",
           nrows);
  printf("\n");
  printf("FLOPs are per sample (%s); shapes and activation bytes are at the bound",
         bsym >= 0 ? "batch symbol B = 1, other symbols at their bounds" : "no batch symbol: at the bound");
  printf("\n\n");

  int wname = 4, wop = 2, wshape = 11, wsym = 8;
  for (uint32_t i = 0; i < nrows; i++) {
    int l = (int)strlen(rows[i].name);
    if (l > wname) wname = l;
    if ((int)strlen(rows[i].op) > wop) wop = (int)strlen(rows[i].op);
    if ((int)strlen(rows[i].shape) > wshape) wshape = (int)strlen(rows[i].shape);
    int ls = (int)strlen(rows[i].sym) + (rows[i].extra_outputs ? 5 : 0);
    if (ls > wsym) wsym = ls;
  }
  if (wname > 72) wname = 72;
  printf("%-*s  %-*s  %-*s  %-*s  %12s  %12s%s\n", wname, "node", wop, "op", wshape, "shape@bound",
         wsym, "symbolic", "FLOPs/sample", "activations", folded ? "  count" : "");
  for (uint32_t i = 0; i < nrows; i++) {
    const row_t *r = &rows[i];
    char fl[32], by[32], sym[256];
    fmt_count(fl, sizeof fl, (double)r->flops);
    fmt_bytes(by, sizeof by, (double)r->bytes);
    if (r->extra_outputs)
      snprintf(sym, sizeof sym, "%s (+%u)", r->sym, r->extra_outputs);
    else
      snprintf(sym, sizeof sym, "%s", r->sym);
    /* Long names keep their tail, which says what the node is. */
    int l = (int)strlen(r->name);
    const char *nm = r->name;
    char clipped[80];
    if (l > wname) {
      snprintf(clipped, sizeof clipped, "...%s", r->name + l - (wname - 3));
      nm = clipped;
    }
    printf("%-*s  %-*s  %-*s  %-*s  %12s  %12s", wname, nm, wop, r->op, wshape, r->shape, wsym,
           sym, fl, by);
    if (folded) printf("  x%u", r->count);
    printf("\n");
  }
  char fl[32], by[32];
  fmt_count(fl, sizeof fl, (double)tot_flops);
  fmt_bytes(by, sizeof by, (double)tot_bytes);
  printf("%-*s  %-*s  %-*s  %-*s  %12s  %12s\n", wname, "total", wop, "", wshape, "", wsym, "", fl,
         by);
  for (uint32_t i = 0; i < nrows; i++) {
    free(rows[i].name);
    free(rows[i].shape);
    free(rows[i].sym);
  }
  free(rows);
}

static void print_state_summary(const ir_module_t *m) {
  uint64_t ptensors = 0, pcount = 0, ptrain = 0, pbytes = 0, punused = 0;
  uint64_t btensors = 0, bbytes = 0, otensors = 0, obytes = 0;
  int64_t none[IR_MAX_SYMBOLS] = {0};
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *s = &m->slots[i];
    ir_shape_t sh = ir_type_shape(&s->type, none);
    uint64_t numel = (uint64_t)ir_shape_numel(&sh), bytes = numel * ir_dtype_size(s->type.dtype);
    if (s->flags & IR_SLOT_PARAM) {
      ptensors++;
      pcount += numel;
      pbytes += bytes;
      if (s->flags & IR_SLOT_TRAINABLE) ptrain += numel;
      if (s->flags & IR_SLOT_UNUSED) punused += numel;
    } else if (s->flags & IR_SLOT_OPTIM) {
      otensors++;
      obytes += bytes;
    } else {
      btensors++;
      bbytes += bytes;
    }
  }
  char g1[32], g2[32], g3[32], c1[32], c2[32], by[32];
  fmt_grouped(g1, sizeof g1, pcount);
  fmt_grouped(g2, sizeof g2, ptrain);
  fmt_grouped(g3, sizeof g3, punused);
  fmt_count(c1, sizeof c1, (double)pcount);
  fmt_count(c2, sizeof c2, (double)ptrain);
  fmt_bytes(by, sizeof by, (double)pbytes);
  printf("\nparameters: %s (%s) in %" PRIu64 " tensors, %s; trainable %s (%s)", g1, c1, ptensors,
         by, g2, c2);
  if (punused) printf("; unused by the forward %s", g3);
  printf("\n");
  fmt_bytes(by, sizeof by, (double)bbytes);
  printf("buffers:    %" PRIu64 " tensors, %s\n", btensors, by);
  fmt_bytes(by, sizeof by, (double)obytes);
  printf("optimizer:  %" PRIu64 " tensors, %s\n", otensors, by);
}

static void print_memory_summary(const plan_t *p) {
  const ir_module_t *m = p->module;
  int64_t per_sample[IR_MAX_SYMBOLS];
  per_sample_symvals(m, per_sample);
  int w = 7;
  for (uint32_t i = 0; i < m->nprograms; i++)
    if ((int)strlen(m->programs[i]->name) > w) w = (int)strlen(m->programs[i]->name);
  printf("\nplanned memory per program (arena at the bound; state lives outside it):\n");
  printf("%-*s  %7s  %12s  %14s  %14s\n", w, "program", "nodes", "FLOPs/sample", "peak (reuse)",
         "peak (no reuse)");
  for (uint32_t i = 0; i < m->nprograms; i++) {
    const ir_graph_t *g = m->programs[i];
    const plan_memplan_t *mp = plan_find_memplan(p, g->name);
    char fl[32], pk[32], tot[32];
    fmt_count(fl, sizeof fl, (double)program_flops(g, per_sample));
    if (mp && mp->reuse) {
      fmt_bytes(pk, sizeof pk, (double)mp->peak_bytes);
    } else {
      snprintf(pk, sizeof pk, "%s", mp ? "off" : "-");
    }
    fmt_bytes(tot, sizeof tot, mp ? (double)mp->total_bytes : 0);
    printf("%-*s  %7u  %12s  %14s  %14s\n", w, g->name, g->nnodes, fl, pk, mp ? tot : "-");
  }
}

static int inspect(int argc, char **argv) {
  const char *path = NULL;
  bool full = false;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      fputs(g_usage, stdout);
      return 0;
    } else if (strcmp(argv[i], "--full") == 0) {
      full = true;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      return usage_error("unknown option '%s'", argv[i]);
    } else if (!path) {
      path = argv[i];
    } else {
      return usage_error("unexpected argument '%s' (only one PLAN)", argv[i]);
    }
  }
  if (!path) return usage_error("%s", "inspect needs a PLAN file");
  plan_t *p = NULL;
  ad_status_t st = plan_read(path, &p);
  if (st) return fail(st);
  const ir_module_t *m = p->module;

  printf("plan %s: format %u, aidomm %s, created by %s, target cpu %s, LLVM %s, NVRTC %s\n", path,
         p->meta.format_version, p->meta.aidomm_version, p->meta.created_by, p->meta.target_cpu,
         p->meta.llvm_version, p->meta.nvrtc_version);
  const plan_job_t *j = &p->job;
  printf("job %s: seed %" PRId64 ", max_steps %" PRId64 ", batch_size %" PRId64
         ", max_length %" PRId64 ", %s; adamw lr %g betas (%g, %g) eps %g weight_decay %g\n",
         plan_job_kind_name(j->kind), j->seed, j->max_steps, j->batch_size, j->max_length,
         ir_dtype_name(j->dtype), j->lr, j->beta1, j->beta2, j->eps, j->weight_decay);
  printf("symbols:");
  for (uint32_t i = 0; i < m->nsymbols; i++)
    printf("%s %s <= %" PRId64, i ? "," : "", m->symbols[i].name, m->symbols[i].bound);
  printf("%s\nprograms:", m->nsymbols ? "" : " none");
  for (uint32_t i = 0; i < m->nprograms; i++) printf(" %s", m->programs[i]->name);
  printf("\n");

  const ir_graph_t *g = inspect_program(m);
  if (g) print_layer_table(m, g, full);
  print_state_summary(m);
  print_memory_summary(p);
  plan_free(p);
  if (fflush(stdout) != 0) {
    fprintf(stderr, TOOL ": error: cannot write to stdout\n");
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(g_usage, stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
    fputs(g_usage, stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("aidommc %s (plan format %u)\n", AIDOMM_VERSION, PLAN_FORMAT_VERSION);
    return 0;
  }
  if (strcmp(cmd, "compile") == 0) {
    compile_args_t a;
    memset(&a, 0, sizeof a);
    int rc = parse_compile(argc, argv, &a);
    if (rc < 0) {
      ad_status_t st = compile(&a);
      rc = st ? fail(st) : 0;
    }
    free(a.overrides);
    free(a.configs);
    return rc;
  }
  if (strcmp(cmd, "inspect") == 0) return inspect(argc, argv);
  if (cmd[0] == '-') return usage_error("unknown option '%s'", cmd);
  return usage_error("unknown command '%s' (expected compile or inspect)", cmd);
}
