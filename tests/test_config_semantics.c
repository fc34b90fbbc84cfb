/* ModelGenerator config semantics: nested classes (class_path/init_args, bare and short class
 * names, per-class defaults, errors at the offending node), every override class taking effect
 * (compile-time, bound-changing, runtime) or refused with the tool that takes it, repeated
 * --config layering, --print_config round trips, the seed configs' trainer/logger/strategy/
 * callback/scheduler/data sections and their warnings, the configs/ files, and malformed
 * configs through the aidommc binary (one GCC-style error, exit code 2). Cases that need the
 * task and backbone classes run once those classes are registered. */
#include <check.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frontend/fe_check.h"
#include "frontend/frontend.h"

#define SEM "tests/configs/semantics/"

/* ---- helpers ------------------------------------------------------------------------------ */
static char *src_path(const char *rel) {
  const char *root = getenv("AIDOMM_SOURCE_DIR");
  if (!root || !root[0]) root = ".";
  size_t n = strlen(root) + strlen(rel) + 2;
  char *p = malloc(n);
  snprintf(p, n, "%s/%s", root, rel);
  return p;
}

/* Loads config files (NULL-terminated relative paths) with overrides; warnings captured. */
typedef struct loaded {
  fe_config_t *c;
  char *warn;
  size_t warn_len;
  FILE *ws;
} loaded_t;

static ad_status_t load_files(loaded_t *L, const char *const *rels, int nov, char *const *ov) {
  const char *paths[8] = {0};
  int n = 0;
  for (; rels[n] && n < 8; n++) paths[n] = src_path(rels[n]);
  memset(L, 0, sizeof *L);
  ad_status_t st = fe_config_load_files(n, paths, nov, ov, &L->c);
  for (int i = 0; i < n; i++) free((void *)paths[i]);
  if (!st) {
    L->ws = open_memstream(&L->warn, &L->warn_len);
    L->c->warn_stream = L->ws;
  }
  return st;
}

static void load_ok(loaded_t *L, const char *const *rels, int nov, char *const *ov) {
  ad_status_t st = load_files(L, rels, nov, ov);
  ck_assert_msg(!st, "%s", ad_status_message(st));
}

/* Flushes the warning stream so L->warn holds everything so far. */
static const char *warnings(loaded_t *L) {
  fflush(L->ws);
  return L->warn ? L->warn : "";
}

static void unload(loaded_t *L) {
  if (L->ws) fclose(L->ws);
  free(L->warn);
  fe_config_free(L->c);
  memset(L, 0, sizeof *L);
}

static ir_module_t *build_ok(loaded_t *L, fe_job_t *job) {
  ir_module_t *m = NULL;
  ad_status_t st = fe_build_module(L->c, &m, job);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  return m;
}

static const ir_state_slot_t *slot(const ir_module_t *m, const char *name) {
  int64_t i = ir_module_find_slot(m, name);
  ck_assert_msg(i >= 0, "no slot %s", name);
  return &m->slots[i];
}

static int64_t dim(const ir_state_slot_t *s, int d) {
  int64_t v = -1;
  ck_assert(ir_dim_is_const(s->type.dims[d], &v));
  return v;
}

static int64_t bound(const ir_module_t *m, const char *sym) {
  int i = ir_module_find_symbol(m, sym);
  ck_assert_msg(i >= 0, "no symbol %s", sym);
  return m->symbols[i].bound;
}

static char *print_config(const fe_config_t *c) {
  ad_buf_t b = {0};
  ad_status_t st = fe_config_print(c, &b);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  char *s = malloc(b.len + 1);
  memcpy(s, b.data, b.len);
  s[b.len] = 0;
  ad_buf_free(&b);
  return s;
}

/* ---- the aidommc binary --------------------------------------------------------------------- */
static char g_dir[64];

static void setup(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/aidomm_test_semantics.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void rm_rf_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
}

static char *tmp_path(const char *name) {
  static char buf[8][256];
  static int k;
  char *p = buf[k++ & 7];
  snprintf(p, 256, "%s/%s", g_dir, name);
  return p;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = 0;
  fclose(f);
  *len = (size_t)n;
  return s;
}

typedef struct run_result {
  int code;
  char *out, *err;
  size_t out_len, err_len;
} run_result_t;

/* Runs aidommc with a NULL-terminated argument list (cwd = the source dir). */
static run_result_t run_aidommc(const char *arg0, ...) {
  const char *bin = getenv("AIDOMM_BIN_DIR");
  char exe[1024];
  snprintf(exe, sizeof exe, "%s/aidommc", bin ? bin : "build/bin");
  const char *argv[64];
  int argc = 0;
  argv[argc++] = exe;
  va_list ap;
  va_start(ap, arg0);
  for (const char *a = arg0; a && argc < 63; a = va_arg(ap, const char *)) argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;
  char *outp = tmp_path(".out"), *errp = tmp_path(".err");
  const char *root = getenv("AIDOMM_SOURCE_DIR");
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0 || (root && chdir(root) != 0)) _exit(126);
    dup2(o, 1);
    dup2(e, 2);
    execv(exe, (char *const *)argv);
    _exit(127);
  }
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  run_result_t r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  ck_assert_msg(r.code != 126 && r.code != 127, "cannot run %s", exe);
  r.out = slurp(outp, &r.out_len);
  r.err = slurp(errp, &r.err_len);
  return r;
}

static void run_free(run_result_t *r) {
  free(r->out);
  free(r->err);
}

/* `aidommc compile REL -o x.plan` fails with exit code 2 and exactly one line on stderr,
 * "REL:LINE:COL: error: ...needle...". line 0: any place (the builder's choice of node). */
static void expect_bad(const char *rel, int line, int col, const char *needle) {
  run_result_t r = run_aidommc("compile", rel, "-o", tmp_path("bad.plan"), NULL);
  ck_assert_msg(r.code == 2, "%s: exit code %d (expected 2); stderr: %s", rel, r.code, r.err);
  int lines = 0;
  for (size_t i = 0; i < r.err_len; i++) lines += r.err[i] == '\n';
  ck_assert_msg(lines == 1, "%s: expected one line on stderr, got:\n%s", rel, r.err);
  char want[512];
  if (line > 0) {
    snprintf(want, sizeof want, "%s:%d:%d: error: ", rel, line, col);
    ck_assert_msg(strncmp(r.err, want, strlen(want)) == 0, "%s:\n got  %s want %s...", rel,
                  r.err, want);
  } else {
    int l = 0, c = 0, used = 0;
    snprintf(want, sizeof want, "%s:%%d:%%d: error: %%n", rel);
    ck_assert_msg(sscanf(r.err, want, &l, &c, &used) == 2 && used > 0 && l > 0 && c > 0,
                  "%s: no FILE:LINE:COL place in: %s", rel, r.err);
  }
  ck_assert_msg(strstr(r.err, needle) != NULL, "%s: '%s' lacks '%s'", rel, r.err, needle);
  ck_assert_int_ne(access(tmp_path("bad.plan"), F_OK), 0);
  run_free(&r);
}

static bool have_class(const char *path) { return fe_find_class(path) != NULL; }

/* ---- nested classes -------------------------------------------------------------------------- */
static ad_status_t resolve_node(loaded_t *L, const char *key, fe_resolved_t *r) {
  fe_checker_t k;
  fe_checker_init(&k, L->c);
  ad_status_t st = fe_resolve_class(&k, FE_CLASS_ADAPTER, key, fe_config_get(L->c, key), NULL,
                                    NULL, r);
  fe_checker_flush(&k);
  return st;
}

static void expect_resolve_error(loaded_t *L, const char *key, int line, int col,
                                 const char *needle) {
  fe_resolved_t r;
  ad_status_t st = resolve_node(L, key, &r);
  ck_assert_msg(st != NULL, "%s: expected an error", key);
  const char *msg = ad_status_message(st);
  char want[64];
  snprintf(want, sizeof want, "nested_adapter.yaml:%d:%d: error: ", line, col);
  ck_assert_msg(strstr(msg, want) != NULL, "%s: got '%s', want place %s", key, msg, want);
  ck_assert_msg(strstr(msg, needle) != NULL, "%s: '%s' lacks '%s'", key, msg, needle);
  ck_assert_int_eq(ad_status_exit_code(st), 2);
  ad_status_free(st);
}

START_TEST(test_nested_classes) {
  const fe_class_t *seq = fe_find_class("modelgenerator.adapters.MMFusionSeqAdapter");
  const fe_class_t *tok = fe_find_class("modelgenerator.adapters.MMFusionTokenAdapter");
  const fe_class_t *ca = fe_find_class("modelgenerator.adapters.fusion.CrossAttentionFusion");
  const fe_class_t *mlp = fe_find_class("modelgenerator.adapters.MLPAdapter");
  const fe_class_t *pool = fe_find_class("modelgenerator.adapters.MLPPoolAdapter");
  const fe_class_t *concat = fe_find_class("modelgenerator.adapters.fusion.ConcatFusion");
  if (!seq || !tok || !ca || !mlp || !pool || !concat) {
    fprintf(stderr, "test_nested_classes: fusion/adapter classes not registered yet; skipped\n");
    return;
  }
  const char *files[] = {SEM "nested_adapter.yaml", NULL};
  loaded_t L;
  load_ok(&L, files, 0, NULL);
  int fi = fe_class_arg_index(seq, "fusion"), ai = fe_class_arg_index(seq, "adapter");
  ck_assert_int_ge(fi, 0);
  ck_assert_int_ge(ai, 0);

  /* Fully written: the nested classes and their typed arguments, defaults filled in. */
  fe_resolved_t r;
  ad_status_t st = resolve_node(&L, "given", &r);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ck_assert_ptr_eq(r.cls, seq);
  ck_assert_ptr_eq(r.args[fi].cls, ca);
  int heads = fe_class_arg_index(ca, "num_attention_heads");
  ck_assert_int_eq(r.args[fi].args[heads].i, 4);
  ck_assert_ptr_nonnull(r.args[fi].args[heads].node); /* given: it has a place */
  ck_assert_ptr_eq(r.args[ai].cls, pool);
  int hs = fe_class_arg_index(pool, "hidden_sizes"), dr = fe_class_arg_index(pool, "dropout"),
      bias = fe_class_arg_index(pool, "bias");
  ck_assert_uint_eq(r.args[ai].args[hs].list->n, 1);
  ck_assert(r.args[ai].args[dr].f == 0.1);
  ck_assert(r.args[ai].args[bias].b);               /* MLPPoolAdapter's default */
  ck_assert_ptr_null(r.args[ai].args[bias].node); /* defaulted: no place */

  /* A bare class_path string takes the class's defaults, nested defaults included. */
  st = resolve_node(&L, "bare", &r);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ck_assert_ptr_eq(r.cls, tok);
  ck_assert_ptr_eq(r.args[fe_class_arg_index(tok, "fusion")].cls, concat);
  ck_assert_ptr_eq(r.args[fe_class_arg_index(tok, "adapter")].cls, mlp);
  int ps = fe_class_arg_index(concat, "project_size");
  ck_assert_int_eq(r.args[fe_class_arg_index(tok, "fusion")].args[ps].i, 512);

  /* Short class names resolve within the expected kind, as jsonargparse does; keys written
   * beside class_path are init_args (the shorthand overrides produce). */
  st = resolve_node(&L, "short_name", &r);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ck_assert_ptr_eq(r.cls, seq);
  ck_assert_ptr_eq(r.args[ai].cls, mlp);
  ck_assert_ptr_eq(r.args[fi].cls, ca); /* MMFusionSeqAdapter's default fusion */
  st = resolve_node(&L, "flat", &r);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ck_assert_ptr_eq(r.args[ai].cls, mlp);

  /* Errors at the offending node. */
  expect_resolve_error(&L, "wrong_kind", 28, 19,
                       "wrong_kind.init_args.fusion.class_path: "
                       "'modelgenerator.adapters.MLPAdapter' is an adapter class, not a fusion "
                       "class");
  expect_resolve_error(&L, "unknown_nested", 33, 19,
                       "unknown class 'modelgenerator.adapters.fusion.CrossAttentionFusin'; did "
                       "you mean 'modelgenerator.adapters.fusion.CrossAttentionFusion'?");
  expect_resolve_error(&L, "misspelt_nested", 40, 9,
                       "unknown key 'hiden_sizes' in misspelt_nested.init_args.adapter.init_args "
                       "of modelgenerator.adapters.MLPAdapter; did you mean 'hidden_sizes'?");
  expect_resolve_error(&L, "wrong_type_nested", 47, 30,
                       "wrong_type_nested.init_args.fusion.init_args.num_attention_heads: "
                       "expected an integer, got 'many'");
  expect_resolve_error(&L, "list_for_class", 51, 13, "expected a fusion class");
  unload(&L);
}
END_TEST

/* ---- override classes ---------------------------------------------------------------------- */
START_TEST(test_override_classes_take_effect) {
  const char *files[] = {SEM "seed_tiny.yaml", NULL};
  loaded_t L;
  fe_job_t job;

  /* Baseline. */
  load_ok(&L, files, 0, NULL);
  ir_module_t *m = build_ok(&L, &job);
  ck_assert_int_eq(dim(slot(m, "embeddings.word_embeddings.weight"), 1), 32);
  ck_assert_int_eq(bound(m, "B"), 2);
  ck_assert_int_eq(bound(m, "L"), 12);
  ck_assert(job.lr == 0.0004 && job.max_steps == -1 && job.seed == 42);
  ir_module_free(m);
  unload(&L);

  /* Compile-time keys change the graph: with and without init_args, and precision. */
  char *c1[] = {"--model.init_args.hidden_size", "64", "--model.num_attention_heads=8",
                "--trainer.precision", "64"};
  load_ok(&L, files, 5, c1);
  m = build_ok(&L, &job);
  ck_assert_int_eq(dim(slot(m, "embeddings.word_embeddings.weight"), 1), 64);
  ck_assert_int_eq(slot(m, "embeddings.word_embeddings.weight")->type.dtype, IR_DTYPE_F64);
  ck_assert_int_eq(job.dtype, IR_DTYPE_F64);
  ck_assert_int_eq(fe_key_class("model.init_args.hidden_size"), FE_KEY_COMPILE);
  ck_assert_int_eq(fe_key_class("--trainer.precision=64"), FE_KEY_COMPILE);
  ir_module_free(m);
  unload(&L);

  /* Bound-changing keys change symbol bounds, not the graph's structure. */
  char *c2[] = {"--data.batch_size", "1", "--data.init_args.max_length=20"};
  load_ok(&L, files, 3, c2);
  m = build_ok(&L, &job);
  ck_assert_int_eq(bound(m, "B"), 1);
  ck_assert_int_eq(bound(m, "L"), 20);
  ck_assert_int_eq(job.batch_size, 1);
  ck_assert_int_eq(dim(slot(m, "embeddings.word_embeddings.weight"), 1), 32);
  ck_assert_int_eq(fe_key_class("data.batch_size"), FE_KEY_BOUND);
  ck_assert_int_eq(fe_key_class("data.init_args.dna_window"), FE_KEY_BOUND);
  ir_module_free(m);
  unload(&L);

  /* Runtime keys reach the job: the seed launch script's overrides, list elements, flow
   * values and the seed. */
  char *c3[] = {"--model.optimizer.lr",
                "1e-4",
                "--trainer.callbacks.dirpath",
                "/ckpt/run1",
                "--trainer.callbacks.0.init_args.save_top_k=3",
                "--trainer.logger.name",
                "run1",
                "--trainer.max_steps",
                "5",
                "--model.optimizer.init_args.betas=[0.8, 0.9]",
                "--seed_everything",
                "7",
                "--model.lr_scheduler.num_warmup_steps",
                "11",
                "--trainer.accumulate_grad_batches",
                "4",
                "--ckpt_path",
                "last.ckpt"};
  load_ok(&L, files, 18, c3);
  m = build_ok(&L, &job);
  ck_assert(job.lr == 1e-4 && job.beta1 == 0.8 && job.beta2 == 0.9);
  ck_assert_str_eq(job.ckpt_dirpath, "/ckpt/run1");
  ck_assert_int_eq(job.ckpt_save_top_k, 3);
  ck_assert_str_eq(job.logger_name, "run1");
  ck_assert_int_eq(job.max_steps, 5);
  ck_assert_int_eq(job.seed, 7);
  ck_assert_int_eq(job.num_warmup_steps, 11);
  ck_assert(job.warmup_ratio == 0.01);
  ck_assert_int_eq(job.accumulate_grad_batches, 4);
  ck_assert_str_eq(job.ckpt_path, "last.ckpt");
  ck_assert_int_eq(fe_key_class("model.optimizer.lr"), FE_KEY_RUNTIME);
  ck_assert_int_eq(fe_key_class("model.init_args.optimizer.init_args.lr"), FE_KEY_RUNTIME);
  ck_assert_int_eq(fe_key_class("trainer.callbacks.dirpath"), FE_KEY_RUNTIME);
  ck_assert_int_eq(fe_key_class("trainer.max_steps"), FE_KEY_RUNTIME);
  ck_assert_int_eq(fe_key_class("seed_everything"), FE_KEY_RUNTIME);
  ck_assert_int_eq(fe_key_class("ckpt_path"), FE_KEY_RUNTIME);
  ck_assert_int_eq(fe_key_class("model.lr_scheduler.init_args.warmup_ratio"), FE_KEY_RUNTIME);
  /* betas are constants of the lowered train step */
  ck_assert_int_eq(fe_key_class("model.optimizer.betas"), FE_KEY_COMPILE);
  ir_module_free(m);
  unload(&L);

  /* A class_path override keeps the init_args the new class takes (jsonargparse). */
  char *c5[] = {"--data.class_path", "modelgenerator.data.IsoformExpression",
                "--data.dna_window", "512"};
  load_ok(&L, files, 4, c5);
  ck_assert_ptr_null(fe_config_get(L.c, "data.init_args.max_length"));
  ck_assert_str_eq(fe_config_get(L.c, "data.init_args.batch_size")->scalar, "2");
  char *t = print_config(L.c);
  ck_assert_ptr_nonnull(strstr(t, "    dna_window: 512\n"));
  ck_assert_ptr_nonnull(strstr(t, "    path: genbio-ai/transcript_isoform_expression_prediction\n"));
  free(t);
  unload(&L);

  /* The README's baseline command form: classes by bare name, then their init_args. */
  if (have_class("modelgenerator.tasks.SequenceRegression") &&
      have_class("modelgenerator.backbones.aido_rna_1b600m")) {
    const char *rna[] = {"configs/tiny_isoform_expression_rna_only.yaml", NULL};
    char *c6[] = {"--model", "SequenceRegression", "--model.backbone", "aido_rna_1b600m",
                  "--model.backbone.from_scratch", "true", "--model.backbone.max_length", "16",
                  "--model.backbone.config_overwrites",
                  "{hidden_size: 16, num_attention_heads: 2, intermediate_size: 24, "
                  "num_hidden_layers: 1}",
                  "--model.adapter", "MLPPoolAdapter", "--model.num_outputs", "30"};
    load_ok(&L, rna, 14, c6);
    ck_assert_str_eq(fe_config_get(L.c, "model.init_args.backbone.class_path")->scalar,
                     "aido_rna_1b600m");
    m = build_ok(&L, &job);
    bool head30 = false; /* the head's last layer maps to the 30 outputs */
    for (uint32_t i = 0; i < m->nslots; i++)
      if (!strncmp(m->slots[i].name, "adapter.", 8) && m->slots[i].type.rank == 2)
        head30 |= dim(&m->slots[i], 0) == 30;
    ck_assert(head30);
    ck_assert_int_eq(dim(slot(m, "backbone.encoder.embeddings.word_embeddings.weight"), 1), 16);
    ir_module_free(m);
    unload(&L);
  }

  /* The eval script's overrides: logger off as null (Lightning's default logger, no W&B). */
  char *c4[] = {"--trainer.logger", "null", "--data.batch_size", "16"};
  load_ok(&L, files, 4, c4);
  m = build_ok(&L, &job);
  ck_assert_ptr_null(strstr(warnings(&L), "Weights & Biases"));
  ck_assert_str_eq(job.logger_name, "lightning_logs");
  ck_assert_int_eq(bound(m, "B"), 16);
  ir_module_free(m);
  unload(&L);
}
END_TEST

START_TEST(test_key_classes_and_tools) {
  /* Refused by the runtime tool with the tool that takes them. */
  ad_status_t st = fe_key_check("--model.init_args.hidden_size", FE_TOOL_RUNTIME, 3);
  ck_assert_ptr_nonnull(st);
  ck_assert_str_eq(ad_status_message(st),
                   "<command line>:1:3: error: --model.init_args.hidden_size changes the compiled "
                   "graph; give it to aidommc compile");
  ck_assert_int_eq(ad_status_exit_code(st), 2);
  ad_status_free(st);
  st = fe_key_check("--trainer.precision=64", FE_TOOL_RUNTIME, 1);
  ck_assert_ptr_nonnull(strstr(ad_status_message(st),
                               "--trainer.precision changes the compiled graph; give it to "
                               "aidommc compile"));
  ad_status_free(st);
  /* Any key of a model class changes the graph, even of a class this build lacks. */
  st = fe_key_check("model.init_args.backbone.init_args.use_peft", FE_TOOL_RUNTIME, 1);
  ck_assert_ptr_nonnull(st);
  ad_status_free(st);
  st = fe_key_check("--trainer.bogus", FE_TOOL_RUNTIME, 2);
  ck_assert_ptr_nonnull(strstr(ad_status_message(st), "unknown config key '--trainer.bogus'"));
  ad_status_free(st);
  /* Runtime and bound keys reach the runtime; the compiler takes every key. */
  ck_assert_ptr_null(fe_key_check("--model.optimizer.lr", FE_TOOL_RUNTIME, 1));
  ck_assert_ptr_null(fe_key_check("--trainer.max_steps", FE_TOOL_RUNTIME, 1));
  ck_assert_ptr_null(fe_key_check("--data.batch_size", FE_TOOL_RUNTIME, 1));
  ck_assert_ptr_null(fe_key_check("--model.init_args.hidden_size", FE_TOOL_COMPILE, 1));
  ck_assert_ptr_null(fe_key_check("--trainer.max_steps", FE_TOOL_COMPILE, 1));

  ck_assert_int_eq(fe_key_class("trainer.logger.init_args.project"), FE_KEY_RUNTIME);
  ck_assert_int_eq(fe_key_class("data.init_args.path"), FE_KEY_RUNTIME);
  ck_assert_int_eq(fe_key_class("data.class_path"), FE_KEY_COMPILE);
  ck_assert_int_eq(fe_key_class("nonsense.key"), FE_KEY_UNKNOWN);
  ck_assert_int_eq(fe_key_class("trainer..max_steps"), FE_KEY_UNKNOWN);
  ck_assert_str_eq(fe_key_class_name(FE_KEY_BOUND), "bound-changing");
  if (have_class("modelgenerator.backbones.esm2_150m")) {
    /* ModelGenerator's `max_length` bounds a length symbol in every backbone. */
    ck_assert_int_eq(fe_key_class("model.init_args.backbone2.init_args.max_length"),
                     FE_KEY_BOUND);
    ck_assert_int_eq(fe_key_class("model.backbone1.lora_r"), FE_KEY_COMPILE);
  }
  if (have_class("modelgenerator.tasks.MMSequenceRegression") &&
      have_class("modelgenerator.backbones.enformer")) {
    ck_assert_int_eq(fe_key_class("model.init_args.backbone.init_args.max_length"), FE_KEY_BOUND);
    ck_assert_int_eq(fe_key_class("model.backbone.frozen"), FE_KEY_COMPILE);
    ck_assert_int_eq(fe_key_class("model.backbone1.init_args.config_overwrites.hidden_size"),
                     FE_KEY_COMPILE);
    ck_assert_int_eq(fe_key_class("model.init_args.backbone_order"), FE_KEY_COMPILE);
    ck_assert_int_eq(fe_key_class("model.backbone2"), FE_KEY_COMPILE);
    /* The README's evaluation command reaches the runtime tool whole. */
    const char *eval[] = {"--data.batch_size", "--trainer.logger", "--model.strict_loading",
                          "--model.reset_optimizer_states", "--ckpt_path"};
    for (size_t i = 0; i < sizeof eval / sizeof *eval; i++) {
      ad_status_t e = fe_key_check(eval[i], FE_TOOL_RUNTIME, 1);
      ck_assert_msg(e == NULL, "%s: %s", eval[i], ad_status_message(e));
    }
  }
  if (have_class("modelgenerator.adapters.MMFusionSeqAdapter"))
    ck_assert_int_eq(fe_key_class("model.adapter.init_args.fusion.init_args.num_attention_heads"),
                     FE_KEY_COMPILE);

  /* The table lists every init_args key of every registered class. */
  ad_buf_t b = {0};
  fe_key_table(&b);
  ad_buf_put_u8(&b, 0);
  const char *t = (const char *)b.data;
  ck_assert_ptr_nonnull(strstr(t, "torch.optim.AdamW\tinit_args.lr\truntime\n"));
  ck_assert_ptr_nonnull(strstr(t, "torch.optim.AdamW\tinit_args.betas\tcompile-time\n"));
  ck_assert_ptr_nonnull(
      strstr(t, "modelgenerator.data.IsoformExpression\tinit_args.dna_window\tbound-changing\n"));
  ck_assert_ptr_nonnull(strstr(t, "trainer\ttrainer.precision\tcompile-time\n"));
  ck_assert_ptr_nonnull(
      strstr(t, "aidomm.testing.TinyTransformer\tinit_args.hidden_size\tcompile-time\n"));
  size_t lines = 0, want = 2 + fe_ntrainer_keys;
  for (const char *p = t; *p; p++) lines += *p == '\n';
  for (size_t i = 0; i < fe_class_count(); i++) want += fe_class_at(i)->nargs;
  ck_assert_uint_eq(lines, want);
  ad_buf_free(&b);
}
END_TEST

/* ---- repeated --config ----------------------------------------------------------------------- */
START_TEST(test_repeated_config) {
  const char *files[] = {SEM "seed_tiny.yaml", SEM "layer_override.yaml", NULL};
  loaded_t L;
  fe_job_t job;
  load_ok(&L, files, 0, NULL);
  ir_module_t *m = build_ok(&L, &job);
  /* Later files override scalars, and maps merge key by key: the heads stay from the first. */
  ck_assert_int_eq(dim(slot(m, "embeddings.word_embeddings.weight"), 1), 64);
  ck_assert_int_eq(job.max_steps, 7);
  ck_assert(job.lr == 0.002 && job.weight_decay == 0.01);
  ck_assert_int_eq(job.batch_size, 3);
  ck_assert_int_eq(bound(m, "L"), 12);
  const fe_node_t *n = fe_config_get(L.c, "model.init_args.hidden_size");
  ck_assert_ptr_nonnull(strstr(n->file, "layer_override.yaml"));
  ck_assert_int_eq(n->line, 6);
  n = fe_config_get(L.c, "model.init_args.num_attention_heads");
  ck_assert_ptr_nonnull(strstr(n->file, "seed_tiny.yaml"));
  ir_module_free(m);
  unload(&L);

  /* Overrides apply after every file. */
  char *ov[] = {"--trainer.max_steps", "9"};
  load_ok(&L, files, 2, ov);
  m = build_ok(&L, &job);
  ck_assert_int_eq(job.max_steps, 9);
  ir_module_free(m);
  unload(&L);

  /* A class_path change replaces the node whole (the old init_args would not fit). */
  const char *swap[] = {SEM "seed_tiny.yaml", SEM "layer_swap_data.yaml", NULL};
  load_ok(&L, swap, 0, NULL);
  ck_assert_ptr_null(fe_config_get(L.c, "data.init_args.max_length"));
  char *text = print_config(L.c);
  ck_assert_ptr_nonnull(strstr(text, "  class_path: modelgenerator.data.IsoformExpression\n"));
  ck_assert_ptr_nonnull(strstr(text, "    batch_size: 5\n"));
  ck_assert_ptr_nonnull(strstr(text, "    dna_window: 1024\n"));
  free(text);
  unload(&L);

  /* Errors and warnings point into the file that holds the key. */
  const char *bad[] = {SEM "seed_tiny.yaml", SEM "layer_bad.yaml", NULL};
  load_ok(&L, bad, 0, NULL);
  ir_module_t *m2 = NULL;
  ad_status_t st = fe_build_module(L.c, &m2, &job);
  ck_assert_ptr_nonnull(st);
  ck_assert_msg(strstr(ad_status_message(st), "layer_bad.yaml:4:5: error: unknown key "
                                              "'hiden_size' in model.init_args of "
                                              "aidomm.testing.TinyTransformer; did you mean "
                                              "'hidden_size'?"),
                "%s", ad_status_message(st));
  ad_status_free(st);
  unload(&L);
  const char *nk[] = {SEM "seed_tiny.yaml", SEM "layer_new_key.yaml", NULL};
  load_ok(&L, nk, 0, NULL);
  m = build_ok(&L, &job);
  ck_assert_msg(strstr(warnings(&L), "layer_new_key.yaml:3:3: warning: "
                                     "trainer.num_sanity_val_steps is ignored"),
                "%s", warnings(&L));
  ir_module_free(m);
  unload(&L);

  /* Through the binary: --config twice, the positional CONFIG first. */
  run_result_t r = run_aidommc("compile", "--config", SEM "seed_tiny.yaml", "--config",
                               SEM "layer_override.yaml", "--print_config", NULL);
  ck_assert_msg(r.code == 0, "%s", r.err);
  ck_assert_ptr_nonnull(strstr(r.out, "    hidden_size: 64\n"));
  run_free(&r);
  r = run_aidommc("compile", SEM "seed_tiny.yaml", "--config", SEM "layer_override.yaml",
                  "--print_config", "--trainer.max_steps", "8", NULL);
  ck_assert_msg(r.code == 0, "%s", r.err);
  ck_assert_ptr_nonnull(strstr(r.out, "  max_steps: 8\n"));
  ck_assert_ptr_nonnull(strstr(r.out, "        lr: 0.002\n"));
  run_free(&r);
}
END_TEST

/* ---- --print_config ---------------------------------------------------------------------------- */
static void print_roundtrip(const char *const *files, int nov, char *const *ov) {
  loaded_t L;
  load_ok(&L, files, nov, ov);
  char *a = print_config(L.c);
  fe_job_t j1, j2;
  ir_module_t *m1 = build_ok(&L, &j1);
  unload(&L);

  char *path = tmp_path("printed.yaml");
  FILE *f = fopen(path, "w");
  fputs(a, f);
  fclose(f);
  fe_config_t *c2 = NULL;
  ad_status_t st = fe_config_load(path, 0, NULL, &c2);
  ck_assert_msg(!st, "%s\n--- printed:\n%s", ad_status_message(st), a);
  c2->warn_stream = NULL;
  char *b = print_config(c2);
  ck_assert_msg(strcmp(a, b) == 0, "print_config is not stable:\n%s\n---\n%s", a, b);
  /* The printed config compiles to the same module. */
  ir_module_t *m2 = NULL;
  st = fe_build_module(c2, &m2, &j2);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ad_buf_t s1 = {0}, s2 = {0};
  ir_serialize_module(m1, &s1);
  ir_serialize_module(m2, &s2);
  ck_assert_uint_eq(s1.len, s2.len);
  ck_assert_int_eq(memcmp(s1.data, s2.data, s1.len), 0);
  ck_assert(j1.lr == j2.lr && j1.max_steps == j2.max_steps && j1.batch_size == j2.batch_size &&
            j1.seed == j2.seed && j1.gradient_clip_val == j2.gradient_clip_val &&
            j1.ckpt_save_top_k == j2.ckpt_save_top_k);
  ad_buf_free(&s1);
  ad_buf_free(&s2);
  ir_module_free(m1);
  ir_module_free(m2);
  fe_config_free(c2);
  free(a);
  free(b);
}

START_TEST(test_print_config) {
  const char *tiny[] = {"configs/tiny_transformer.yaml", NULL};
  const char *seed[] = {SEM "seed_tiny.yaml", NULL};
  const char *layered[] = {SEM "seed_tiny.yaml", SEM "layer_override.yaml", NULL};
  print_roundtrip(tiny, 0, NULL);
  print_roundtrip(seed, 0, NULL);
  char *ov[] = {"--model.optimizer.lr", "1e-4", "--trainer.callbacks.dirpath", "x y/z"};
  print_roundtrip(layered, 4, ov);
  if (have_class("modelgenerator.tasks.MMSequenceRegression") &&
      have_class("modelgenerator.backbones.enformer")) {
    const char *mm[] = {"configs/tiny_isoform_expression_dna_rna_prot_concat.yaml", NULL};
    print_roundtrip(mm, 0, NULL);
  }

  /* Defaults are filled in, nested classes too; nothing the user wrote disappears. */
  loaded_t L;
  load_ok(&L, seed, 0, NULL);
  char *t = print_config(L.c);
  const char *want[] = {
      "seed_everything: 42\n",
      "    num_hidden_layers: 2\n",     /* TinyTransformer's default */
      "        amsgrad: false\n",       /* AdamW's default, under model.init_args.optimizer */
      "      enable_version_counter: true\n", /* ModelCheckpoint's default */
      "    class_path: lightning.pytorch.loggers.WandbLogger\n",
      "        verbose: deprecated\n",
      "      filename: \"best_val:{step}-{val_spearman:.3f}-{val_r2:.3f}\"\n",
      "  max_epochs: 3\n",
      "ckpt_path: null\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    ck_assert_msg(strstr(t, want[i]) != NULL, "'%s' missing from:\n%s", want[i], t);
  ck_assert_ptr_null(strstr(t, "\noptimizer:")); /* stays under model.init_args */
  free(t);
  unload(&L);

  /* Through the binary: no plan needed, stdout is the YAML. */
  run_result_t r = run_aidommc("compile", "configs/tiny_transformer.yaml", "--print_config", NULL);
  ck_assert_msg(r.code == 0, "%s", r.err);
  ck_assert_uint_eq(r.err_len, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "    differentiable: false\n"));
  run_free(&r);
  /* An invalid config prints nothing and fails like compile. */
  r = run_aidommc("compile", "tests/configs/bad/misspelt_key.yaml", "--print_config", NULL);
  ck_assert_int_eq(r.code, 2);
  ck_assert_uint_eq(r.out_len, 0);
  run_free(&r);
}
END_TEST

/* ---- the seed sections and their warnings --------------------------------------------------- */
START_TEST(test_seed_sections) {
  const char *seed[] = {SEM "seed_tiny.yaml", NULL};
  loaded_t L;
  fe_job_t job;
  load_ok(&L, seed, 0, NULL);
  ir_module_t *m = build_ok(&L, &job);
  /* What later issues need, from every section. */
  ck_assert_int_eq(job.max_epochs, 3);
  ck_assert_int_eq(job.val_check_interval, 499);
  ck_assert_int_eq(job.check_val_every_n_epoch, -1);
  ck_assert_int_eq(job.log_every_n_steps, 1);
  ck_assert_int_eq(job.accumulate_grad_batches, 1);
  ck_assert(job.gradient_clip_val == 0.1);
  ck_assert(job.limit_train_batches == 1.0 && !job.limit_is_count[0]);
  ck_assert_str_eq(job.default_root_dir, "logs");
  ck_assert(job.has_scheduler && job.warmup_ratio == 0.01 && job.num_warmup_steps == -1);
  ck_assert(job.has_checkpoint && job.ckpt_mode_max && job.ckpt_save_last &&
            job.ckpt_save_on_train_epoch_end);
  ck_assert_str_eq(job.ckpt_monitor, "val_spearman");
  ck_assert_str_eq(job.ckpt_filename, "best_val:{step}-{val_spearman:.3f}-{val_r2:.3f}");
  ck_assert_int_eq(job.ckpt_every_n_train_steps, 500);
  ck_assert_int_eq(job.ckpt_every_n_epochs, -1);
  ck_assert_str_eq(job.logger_dir, "logs");
  ck_assert_ptr_null(job.ckpt_path);

  /* Warnings by name, at their places: W&B maps to CSV, DDP runs single-process, keys the
   * runtime does not act on yet. */
  const char *w = warnings(&L);
  const char *want[] = {
      "seed_tiny.yaml:5:3: warning: trainer.accelerator is ignored (aidomm does not use it yet)\n",
      "seed_tiny.yaml:7:17: warning: trainer.strategy: DDPStrategy runs as a single process",
      "seed_tiny.yaml:14:17: warning: trainer.logger: Weights & Biases is not available in "
      "aidomm; metrics go to the CSV logger instead (logs/lightning_logs/metrics.csv)\n",
      "seed_tiny.yaml:10:3: warning: trainer.devices is ignored",
      "seed_tiny.yaml:60:9: warning: model.init_args.lr_scheduler.init_args.verbose is ignored "
      "by aidomm",
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    ck_assert_msg(strstr(w, want[i]) != NULL, "'%s' missing from:\n%s", want[i], w);
  /* Keys the runtime acts on are not warned about; the W&B and DDP keys only once. */
  ck_assert_ptr_null(strstr(w, "trainer.max_steps"));
  ck_assert_ptr_null(strstr(w, "trainer.max_epochs")); /* acted on by fit */
  ck_assert_ptr_null(strstr(w, "lr_scheduler is ignored"));
  ck_assert_ptr_null(strstr(w, "callbacks is ignored"));
  ck_assert_ptr_null(strstr(w, "accumulate_grad_batches"));
  ck_assert_ptr_null(strstr(w, "gradient_clip_val"));
  ck_assert_ptr_null(strstr(w, "ckpt_path")); /* read by the runtime */
  ck_assert_ptr_null(strstr(w, "trainer.precision"));
  ck_assert_ptr_null(strstr(w, "trainer.logger is ignored"));
  ck_assert_ptr_null(strstr(w, "trainer.strategy is ignored"));
  ir_module_free(m);
  unload(&L);

  /* A misspelt trainer key is a warning with a suggestion (Lightning keys are many). */
  char *ov[] = {"--trainer.max_step", "3"};
  load_ok(&L, seed, 2, ov);
  m = build_ok(&L, &job);
  ck_assert_msg(strstr(warnings(&L), "<command line>:1:1: warning: trainer.max_step is not a "
                                     "Lightning Trainer argument aidomm knows; ignored (did you "
                                     "mean 'max_steps'?)"),
                "%s", warnings(&L));
  ir_module_free(m);
  unload(&L);
}
END_TEST

/* ---- configs/ ------------------------------------------------------------------------------------ */
static const char *const k_configs[] = {
    "isoform_expression_dna_rna_attention",      "isoform_expression_dna_rna_concat",
    "isoform_expression_dna_rna_prot_attention", "isoform_expression_dna_rna_prot_concat",
    "isoform_expression_rna_only",               "isoform_expression_dna_only",
};

/* Resolves every registered class node of the tree on its own (unregistered ones are walked
 * through), so the parts that exist are type-checked whatever is still missing. */
static int check_known_classes(fe_checker_t *k, const fe_node_t *n, const char *path) {
  int checked = 0;
  if (n->kind == FE_NODE_MAP) {
    int64_t ci = fe_map_find(n, "class_path");
    const fe_class_t *cls =
        ci >= 0 && n->items[ci]->kind == FE_NODE_SCALAR ? fe_find_class(n->items[ci]->scalar) : NULL;
    if (cls) {
      static const char *const skip[] = {"optimizer", "lr_scheduler", NULL};
      fe_resolved_t r;
      ad_status_t st = fe_resolve_class(k, cls->kind, path, n, NULL,
                                        cls->kind == FE_CLASS_TASK ? skip : NULL, &r);
      ck_assert_msg(!st, "%s", ad_status_message(st));
      checked++;
    }
    if (!cls || cls->kind == FE_CLASS_TASK)
      for (uint32_t i = 0; i < n->n; i++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.%s", path, n->keys[i]);
        checked += check_known_classes(k, n->items[i], sub);
      }
  } else if (n->kind == FE_NODE_SEQ) {
    for (uint32_t i = 0; i < n->n; i++) checked += check_known_classes(k, n->items[i], path);
  }
  return checked;
}

START_TEST(test_configs_dir) {
  bool task = have_class("modelgenerator.tasks.MMSequenceRegression") &&
              have_class("modelgenerator.tasks.SequenceRegression") &&
              have_class("modelgenerator.backbones.enformer");
  for (size_t i = 0; i < sizeof k_configs / sizeof *k_configs; i++)
    for (int tiny = 0; tiny < 2; tiny++) {
      char rel[256];
      snprintf(rel, sizeof rel, "configs/%s%s.yaml", tiny ? "tiny_" : "", k_configs[i]);
      const char *files[] = {rel, NULL};
      loaded_t L;
      load_ok(&L, files, 0, NULL);
      /* Every registered class in it types (optimizer, scheduler, data, trainer callbacks,
       * logger, strategy, and the components that exist so far). */
      fe_checker_t k;
      fe_checker_init(&k, L.c);
      int n = check_known_classes(&k, L.c->root, "");
      fe_checker_flush(&k);
      ck_assert_msg(n >= 6, "%s: only %d classes checked", rel, n);
      /* Values equal to a default are not warned about (`sampler: null`); others are. */
      ck_assert_msg(!strstr(warnings(&L), "sampler"), "%s", warnings(&L));
      ck_assert_msg(strstr(warnings(&L), "lr_scheduler.init_args.verbose is ignored by aidomm"),
                    "%s", warnings(&L));
      /* The trainer and data sections, with the model swapped for a class this build has. */
      const char *layered[] = {rel, SEM "layer_swap_data.yaml", NULL};
      unload(&L);
      char *ov[] = {"--model", "aidomm.testing.TinyTransformer"};
      load_ok(&L, layered, 2, ov);
      char *t = print_config(L.c);
      ck_assert_ptr_nonnull(strstr(warnings(&L), "Weights & Biases"));
      free(t);
      unload(&L);
      if (!task) continue;
      /* Compiles once the task and backbone classes exist: in the tests' time budget only the
       * tiny ones build here (the full-size compile is the acceptance run's). */
      if (tiny) {
        run_result_t r = run_aidommc("compile", rel, "-o", tmp_path("c.plan"), NULL);
        ck_assert_msg(r.code == 0, "%s: %s", rel, r.err);
        run_free(&r);
      } else {
        run_result_t r = run_aidommc("compile", rel, "--print_config", NULL);
        ck_assert_msg(r.code == 0, "%s: %s", rel, r.err);
        run_free(&r);
      }
    }
  if (!task) fprintf(stderr, "test_configs_dir: task/backbone classes not registered yet: "
                             "type-checked the registered parts only\n");
}
END_TEST

/* ---- malformed configs through the binary ---------------------------------------------------- */
START_TEST(test_malformed_configs) {
  /* Syntax and encoding. */
  expect_bad("tests/configs/bad/bad_indent.yaml", 6, 4, "check the indentation");
  expect_bad("tests/configs/bad/empty.yaml", 1, 1, "empty YAML");
  expect_bad("tests/configs/bad/binary.yaml", 1, 1, "not a YAML text file");
  expect_bad("tests/configs/bad/alias_bomb.yaml", 1, 4, "anchors and aliases are not supported");
  /* Schema. */
  expect_bad(SEM "bad/unknown_data_class.yaml", 4, 15,
             "data.class_path: unknown class 'modelgenerator.data.IsoformExpresion'; did you "
             "mean 'modelgenerator.data.IsoformExpression'?");
  expect_bad(SEM "bad/callback_misspelt.yaml", 6, 7,
             "unknown key 'monitr' in trainer.callbacks.0.init_args of "
             "lightning.pytorch.callbacks.ModelCheckpoint; did you mean 'monitor'?");
  expect_bad(SEM "bad/callback_wrong_type.yaml", 5, 19,
             "trainer.callbacks.0.init_args.save_top_k: expected an integer, got 'three'");
  expect_bad("tests/configs/bad/wrong_type.yaml", 4, 18,
             "model.init_args.hidden_size: expected an integer, got 'thirty-two'");
  expect_bad("tests/configs/bad/misspelt_key.yaml", 5, 5, "did you mean 'hidden_size'?");
  expect_bad("tests/configs/bad/heads_not_dividing.yaml", 5, 26,
             "num_attention_heads (4) must divide hidden_size (30)");
  expect_bad(SEM "bad/negative_window.yaml", 7, 17,
             "data.init_args.dna_window must be positive, got -5");
  expect_bad("tests/configs/bad/negative_length.yaml", 7, 17,
             "data.init_args.max_length must be positive, got -3");
  expect_bad(SEM "bad/scheduler_no_warmup.yaml", 5, 7,
             "model.init_args.lr_scheduler: CosineWithWarmup needs warmup_ratio or "
             "num_warmup_steps");
  expect_bad(SEM "bad/logger_not_a_logger.yaml", 3, 17,
             "trainer.logger: 'lightning.pytorch.callbacks.ModelCheckpoint' is not a logger");
  expect_bad(SEM "bad/val_check_fraction.yaml", 2, 23,
             "trainer.val_check_interval: a fraction must be in [0, 1], got 1.5");
  expect_bad(SEM "bad/rename_cols_list.yaml", 6, 18,
             "data.init_args.rename_cols: expected a map, got a list");
  expect_bad(SEM "bad/wrong_section_nested.yaml", 5, 19,
             "model.init_args.optimizer.class_path: "
             "'modelgenerator.lr_schedulers.CosineWithWarmup' is a scheduler class, not an "
             "optimizer class");
  expect_bad(SEM "bad/scheduler_twice.yaml", 4, 5,
             "lr_scheduler given twice: in model.init_args and at the top level");

  /* The task builders' checks, reported at the offending node: they run once those classes
   * are registered. */
  bool mm = have_class("modelgenerator.tasks.MMSequenceRegression") &&
            have_class("modelgenerator.backbones.enformer") &&
            have_class("modelgenerator.backbones.aido_rna_650m");
  if (mm) {
    expect_bad(SEM "bad/missing_backbone1.yaml", 4, 5, "missing required key 'backbone1'");
    expect_bad(SEM "bad/order_mismatch.yaml", 15, 21,
               "backbone_order names 3 modalities but 2 backbones are given");
    expect_bad(SEM "bad/lora_enformer.yaml", 9, 19, "use_peft is not supported for enformer");
    if (have_class("modelgenerator.adapters.fusion.CrossAttentionFusion"))
      expect_bad(SEM "bad/fusion_heads.yaml", 21, 34, "not divisible by 7 heads");
  } else {
    fprintf(stderr, "test_malformed_configs: MMSequenceRegression/enformer not registered yet: "
                    "4 task-level cases skipped\n");
  }
}
END_TEST

static Suite *semantics_suite(void) {
  Suite *s = suite_create("config_semantics");
  TCase *tc = tcase_create("semantics");
  tcase_add_checked_fixture(tc, setup, rm_rf_dir);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_nested_classes);
  tcase_add_test(tc, test_override_classes_take_effect);
  tcase_add_test(tc, test_key_classes_and_tools);
  tcase_add_test(tc, test_repeated_config);
  tcase_add_test(tc, test_print_config);
  tcase_add_test(tc, test_seed_sections);
  tcase_add_test(tc, test_configs_dir);
  tcase_add_test(tc, test_malformed_configs);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(semantics_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
