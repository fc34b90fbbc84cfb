/* Frontend: YAML loading with places, dotted overrides, emission round trip, schema errors
 * (one GCC-style line each, exit code 2), and the TinyTransformer module (slots, names, types,
 * verification, and a forward run on the reference interpreter where padding must not change
 * any valid result). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/interp.h"
#include "runtime/safetensors.h"
#include "support/golden.h"

/* ---- helpers ------------------------------------------------------------------------------ */
static char *src_path(const char *rel) {
  const char *root = getenv("AIDOMM_SOURCE_DIR");
  if (!root || !root[0]) root = ".";
  size_t n = strlen(root) + strlen(rel) + 2;
  char *p = malloc(n);
  snprintf(p, n, "%s/%s", root, rel);
  return p;
}

static fe_config_t *load_ok(const char *rel, int nov, char *const *ov) {
  char *path = src_path(rel);
  fe_config_t *c = NULL;
  ad_status_t st = fe_config_load(path, nov, ov, &c);
  free(path);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ck_assert_ptr_nonnull(c);
  c->warn_stream = NULL;
  return c;
}

static const fe_node_t *get(const fe_config_t *c, const char *dotted) {
  const fe_node_t *n = fe_config_get(c, dotted);
  ck_assert_msg(n != NULL, "missing %s", dotted);
  return n;
}

static void expect_scalar(const fe_config_t *c, const char *dotted, const char *text) {
  const fe_node_t *n = get(c, dotted);
  ck_assert_int_eq(n->kind, FE_NODE_SCALAR);
  ck_assert_str_eq(n->scalar, text);
}

static void expect_place(const fe_node_t *n, const char *file_suffix, int line, int col) {
  size_t lf = strlen(n->file), ls = strlen(file_suffix);
  ck_assert_msg(lf >= ls && strcmp(n->file + lf - ls, file_suffix) == 0, "file %s, want *%s",
                n->file, file_suffix);
  ck_assert_int_eq(n->line, line);
  ck_assert_int_eq(n->col, col);
}

/* Loads (and when loading succeeds, builds) a config that must fail with one placed error. */
static void expect_error(const char *rel, int nov, char *const *ov, int line, int col,
                         const char *needle, ad_status_code_t code) {
  char *path = src_path(rel);
  fe_config_t *c = NULL;
  ir_module_t *m = NULL;
  fe_job_t job;
  ad_status_t st = fe_config_load(path, nov, ov, &c);
  if (!st) {
    c->warn_stream = NULL;
    st = fe_build_module(c, &m, &job);
  }
  ck_assert_msg(st != NULL, "%s: expected an error", rel);
  const char *msg = ad_status_message(st);
  char prefix[1024];
  snprintf(prefix, sizeof prefix, "%s:%d:%d: error: ", line > 0 ? path : "<command line>", line,
           col);
  if (line == -1) /* errors placed on the command line */
    snprintf(prefix, sizeof prefix, "<command line>:1:%d: error: ", col);
  ck_assert_msg(strncmp(msg, prefix, strlen(prefix)) == 0, "%s:\n got  '%s'\n want '%s...'", rel,
                msg, prefix);
  ck_assert_msg(strchr(msg, '\n') == NULL, "%s: more than one line: %s", rel, msg);
  ck_assert_msg(strstr(msg, needle) != NULL, "%s: '%s' lacks '%s'", rel, msg, needle);
  ck_assert_msg(ad_status_code(st) == code, "%s: code %d, want %d (%s)", rel,
                (int)ad_status_code(st), (int)code, msg);
  ck_assert_int_eq(ad_status_exit_code(st), 2);
  ad_status_free(st);
  ir_module_free(m);
  fe_config_free(c);
  free(path);
}

/* ---- loading with places -------------------------------------------------------------------- */
START_TEST(test_load_places) {
  fe_config_t *c = load_ok("tests/configs/lightning_style.yaml", 0, NULL);
  const fe_node_t *root = c->root;
  ck_assert_int_eq(root->kind, FE_NODE_MAP);
  ck_assert_uint_eq(root->n, 6);
  ck_assert_str_eq(root->keys[0], "seed_everything");
  ck_assert_int_eq(root->key_line[0], 2);
  ck_assert_int_eq(root->key_col[0], 1);
  ck_assert_str_eq(root->keys[5], "ckpt_path");
  ck_assert_int_eq(root->key_line[5], 36);

  expect_scalar(c, "seed_everything", "42");
  expect_place(get(c, "seed_everything"), "lightning_style.yaml", 2, 18);
  const fe_node_t *cbs = get(c, "trainer.callbacks");
  ck_assert_int_eq(cbs->kind, FE_NODE_SEQ);
  ck_assert_uint_eq(cbs->n, 2);
  expect_place(cbs, "lightning_style.yaml", 10, 3);
  expect_place(get(c, "trainer.callbacks.0"), "lightning_style.yaml", 10, 5);
  expect_place(get(c, "trainer.callbacks.0.init_args.dirpath"), "lightning_style.yaml", 12, 16);
  expect_scalar(c, "trainer.callbacks.1.class_path",
                "lightning.pytorch.callbacks.LearningRateMonitor");
  const fe_node_t *betas = get(c, "optimizer.init_args.betas");
  ck_assert_int_eq(betas->kind, FE_NODE_SEQ);
  expect_place(betas, "lightning_style.yaml", 28, 12);
  expect_place(get(c, "optimizer.init_args.betas.1"), "lightning_style.yaml", 28, 18);
  expect_scalar(c, "optimizer.init_args.betas.1", "0.95");
  const fe_node_t *init = get(c, "model.init_args");
  ck_assert_str_eq(init->keys[1], "num_attention_heads");
  ck_assert_int_eq(init->key_line[1], 20);
  ck_assert_int_eq(init->key_col[1], 5);
  ck_assert_ptr_null(fe_config_get(c, "model.init_args.nope"));
  ck_assert_ptr_null(fe_config_get(c, "trainer.callbacks.2"));
  ck_assert_ptr_null(fe_config_get(c, "seed_everything.x"));
  ck_assert_ptr_null(fe_config_get(c, "model..init_args"));
  fe_config_free(c);
}
END_TEST

START_TEST(test_scalar_styles) {
  fe_config_t *c = load_ok("tests/configs/emit_roundtrip.yaml", 0, NULL);
  ck_assert_int_eq(get(c, "quoted_number")->quoted, 1);
  ck_assert_int_eq(get(c, "leading_dash")->quoted, 0);
  expect_scalar(c, "single_quoted", "it's");
  expect_scalar(c, "multiline", "line one\nline two\n");
  expect_scalar(c, "folded", "folded text\n");
  expect_scalar(c, "empty_value", "");
  expect_scalar(c, "unicode", "caf\xc3\xa9 \xe2\x9c\x93");
  expect_scalar(c, "32", "numeric key");
  expect_scalar(c, "deep.a.b.c.1.d", "2");
  expect_scalar(c, "list_of_maps.1.items.0", "x");
  fe_config_free(c);
}
END_TEST

/* ---- overrides ----------------------------------------------------------------------------- */
START_TEST(test_overrides) {
  char *ov[] = {
      "--model.init_args.hidden_size", "64",                 /* scalar, space form */
      "--trainer.max_steps=5",                                /* '=' form */
      "--trainer.callbacks.0.init_args.dirpath", "runs/x",   /* list element by index */
      "--trainer.profiler.init_args.depth", "3",             /* new nested keys */
      "--data.batch_size", "3",                               /* init_args skipped (jsonargparse) */
      "--trainer.callbacks.logging_interval=step",           /* non-index: the last element */
      "--optimizer.init_args.betas", "[0.8, 0.85]",          /* a flow list value */
      "--ckpt_path.dir", "ck",                                /* null becomes a mapping */
      "--model.init_args.layer_norm_eps=",                   /* empty value: null */
  };
  int n = (int)(sizeof ov / sizeof ov[0]);
  fe_config_t *c = load_ok("tests/configs/lightning_style.yaml", n, ov);
  expect_scalar(c, "model.init_args.hidden_size", "64");
  const fe_node_t *h = get(c, "model.init_args.hidden_size");
  ck_assert_str_eq(h->file, "<command line>");
  ck_assert_int_eq(h->line, 1);
  ck_assert_int_eq(h->col, 1);
  expect_scalar(c, "trainer.max_steps", "5");
  ck_assert_int_eq(get(c, "trainer.max_steps")->col, 3);
  expect_scalar(c, "trainer.callbacks.0.init_args.dirpath", "runs/x");
  expect_scalar(c, "trainer.callbacks.0.init_args.monitor", "val_spearman"); /* untouched */
  expect_scalar(c, "trainer.profiler.init_args.depth", "3");
  ck_assert_int_eq(get(c, "trainer.profiler")->kind, FE_NODE_MAP);
  expect_scalar(c, "data.init_args.batch_size", "3");
  ck_assert_ptr_null(fe_config_get(c, "data.batch_size"));
  expect_scalar(c, "trainer.callbacks.1.init_args.logging_interval", "step");
  const fe_node_t *b = get(c, "optimizer.init_args.betas");
  ck_assert_int_eq(b->kind, FE_NODE_SEQ);
  ck_assert_uint_eq(b->n, 2);
  expect_scalar(c, "optimizer.init_args.betas.0", "0.8");
  expect_scalar(c, "ckpt_path.dir", "ck");
  expect_scalar(c, "model.init_args.layer_norm_eps", "");
  /* A new key records the command line as its place. */
  const fe_node_t *tr = get(c, "trainer");
  ck_assert_str_eq(tr->keys[tr->n - 1], "profiler");
  ck_assert_int_eq(tr->key_line[tr->n - 1], 0);
  ck_assert_int_eq(tr->key_col[tr->n - 1], 6);
  fe_config_free(c);

  /* Overrides take effect in the job. */
  char *ov2[] = {"--data.init_args.batch_size", "3", "--optimizer.init_args.lr=0.25",
                 "--seed_everything", "9", "--trainer.max_steps", "17"};
  c = load_ok("tests/configs/lightning_style.yaml", 7, ov2);
  ir_module_t *m = NULL;
  fe_job_t job;
  ad_status_t st = fe_build_module(c, &m, &job);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ck_assert_int_eq(job.batch_size, 3);
  ck_assert_int_eq(job.max_length, 6);
  ck_assert_int_eq(job.seed, 9);
  ck_assert_int_eq(job.max_steps, 17);
  ck_assert(job.lr == 0.25);
  ck_assert(job.beta1 == 0.9 && job.beta2 == 0.95);
  ck_assert(job.eps == 1e-8 && job.weight_decay == 0.0);
  ck_assert_int_eq(m->symbols[ir_module_find_symbol(m, "B")].bound, 3);
  ck_assert(ir_module_find_scalar(m, "lr")->dflt == 0.25);
  ck_assert(ir_module_find_scalar(m, "seed")->dflt == 9.0);
  ir_module_free(m);
  fe_config_free(c);
}
END_TEST

START_TEST(test_override_errors) {
  const char *cfg = "tests/configs/bad/override_through_scalar.yaml";
  char *through[] = {"--seed_everything.value", "3"};
  expect_error(cfg, 2, through, 1, 18, "override '--seed_everything.value'",
               AD_STATUS_INVALID_ARGUMENT);
  char *deep[] = {"--model.class_path.x=1"};
  expect_error(cfg, 1, deep, 3, 15, "'model.class_path' is a scalar", AD_STATUS_INVALID_ARGUMENT);
  char *novalue[] = {"--trainer.max_steps=3", "--model.init_args.hidden_size"};
  expect_error(cfg, 2, novalue, -1, 2, "needs a value", AD_STATUS_INVALID_ARGUMENT);
  char *nodash[] = {"trainer.max_steps", "3"};
  expect_error(cfg, 2, nodash, -1, 1, "expected an override", AD_STATUS_INVALID_ARGUMENT);
  char *badval[] = {"--trainer.max_steps", "[1, 2"};
  expect_error(cfg, 2, badval, -1, 1, "invalid value '[1, 2'", AD_STATUS_INVALID_ARGUMENT);
  char *twodocs[] = {"--trainer.max_steps", "---\n---"}; /* quoted text stays on one line */
  expect_error(cfg, 2, twodocs, -1, 1, "invalid value '---\\n---'", AD_STATUS_INVALID_ARGUMENT);
  char *emptyseg[] = {"--model..x=1"};
  expect_error(cfg, 1, emptyseg, -1, 1, "empty key segment", AD_STATUS_INVALID_ARGUMENT);
  char *range[] = {"--data.init_args.max_length.0", "1"};
  expect_error(cfg, 2, range, 7, 17, "is a scalar", AD_STATUS_INVALID_ARGUMENT);
  /* An override's value is checked like the file's, and placed on the command line. */
  char *typed[] = {"--trainer.max_steps=3", "--model.init_args.hidden_size", "big"};
  expect_error(cfg, 3, typed, -1, 2, "model.init_args.hidden_size: expected an integer, got 'big'",
               AD_STATUS_INVALID_ARGUMENT);
  char *newkey[] = {"--model.init_args.hiden_size=8"};
  expect_error(cfg, 1, newkey, -1, 1, "did you mean 'hidden_size'?", AD_STATUS_INVALID_ARGUMENT);
  char *idx[] = {"--trainer.callbacks.5.init_args.dirpath", "x"};
  expect_error("tests/configs/lightning_style.yaml", 2, idx, 10, 3, "index 5 is out of range",
               AD_STATUS_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_nested_optimizer) {
  /* ModelGenerator's layout and its launch scripts' override `--model.optimizer.lr`. */
  char *ov[] = {"--model.optimizer.lr", "1e-4"};
  fe_config_t *c = load_ok("tests/configs/nested_optimizer.yaml", 2, ov);
  expect_scalar(c, "model.init_args.optimizer.init_args.lr", "1e-4");
  ir_module_t *m = NULL;
  fe_job_t job;
  ad_status_t st = fe_build_module(c, &m, &job);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ck_assert(job.lr == 1e-4 && job.weight_decay == 0.05 && job.beta2 == 0.999);
  ck_assert_int_eq(job.seed, 5);
  ir_module_free(m);
  fe_config_free(c);
  char *bad[] = {"--model.optimizer.init_args.betas=[0.9]"};
  expect_error("tests/configs/nested_optimizer.yaml", 1, bad, -1, 1,
               "model.init_args.optimizer.init_args.betas: expected a list of two floats",
               AD_STATUS_INVALID_ARGUMENT);
  expect_error("tests/configs/bad/optimizer_twice.yaml", 0, NULL, 4, 5,
               "optimizer given twice: in model.init_args and at the top level (",
               AD_STATUS_INVALID_ARGUMENT);
  expect_error("tests/configs/bad/optimizer_twice.yaml", 0, NULL, 4, 5,
               "optimizer_twice.yaml:6:1)", AD_STATUS_INVALID_ARGUMENT);
}
END_TEST

/* ---- emission -------------------------------------------------------------------------------- */
static char *emit_to_string(const fe_config_t *c) {
  ad_buf_t b = {0};
  fe_config_emit_yaml(c, &b);
  char *s = malloc(b.len + 1);
  memcpy(s, b.data, b.len);
  s[b.len] = 0;
  ad_buf_free(&b);
  return s;
}

static void roundtrip(const char *rel, int nov, char *const *ov) {
  fe_config_t *c = load_ok(rel, nov, ov);
  char *a = emit_to_string(c);
  char tmp[] = "/tmp/aidomm_fe_XXXXXX";
  int fd = mkstemp(tmp);
  ck_assert_int_ge(fd, 0);
  FILE *f = fdopen(fd, "w");
  fputs(a, f);
  fclose(f);
  fe_config_t *c2 = NULL;
  ad_status_t st = fe_config_load(tmp, 0, NULL, &c2);
  ck_assert_msg(!st, "%s\n--- emitted:\n%s", ad_status_message(st), a);
  char *b = emit_to_string(c2);
  ck_assert_msg(strcmp(a, b) == 0, "emission is not stable:\n%s\n---\n%s", a, b);
  unlink(tmp);
  free(a);
  free(b);
  fe_config_free(c);
  fe_config_free(c2);
}

START_TEST(test_emit_roundtrip) {
  roundtrip("tests/configs/emit_roundtrip.yaml", 0, NULL);
  roundtrip("configs/tiny_transformer.yaml", 0, NULL);
  char *ov[] = {"--trainer.new.list", "[1, {a: b}]", "--model.init_args.x=\"quoted: yes\""};
  roundtrip("tests/configs/lightning_style.yaml", 3, ov);

  /* Values survive with their kinds and quoting. */
  fe_config_t *c = load_ok("tests/configs/emit_roundtrip.yaml", 0, NULL);
  char *text = emit_to_string(c);
  ck_assert_ptr_nonnull(strstr(text, "quoted_number: \"32\"\n"));
  ck_assert_ptr_nonnull(strstr(text, "leading_dash: -5\n"));
  ck_assert_ptr_nonnull(strstr(text, "empty_value:\n"));
  ck_assert_ptr_nonnull(strstr(text, "empty_string: \"\"\n"));
  ck_assert_ptr_nonnull(strstr(text, "multiline: \"line one\\nline two\\n\"\n"));
  ck_assert_ptr_nonnull(strstr(text, "\"key with space\": 1\n"));
  ck_assert_ptr_nonnull(strstr(text, "list_of_maps:\n- name: first\n  value: 1\n"));
  ck_assert_ptr_nonnull(strstr(text, "empty_map: {}\n"));
  free(text);
  fe_config_free(c);
}
END_TEST

/* ---- malformed configs ------------------------------------------------------------------ */
START_TEST(test_bad_configs) {
  const ad_status_code_t INV = AD_STATUS_INVALID_ARGUMENT;
  expect_error("tests/configs/bad/bad_indent.yaml", 0, NULL, 6, 4, "check the indentation", INV);
  expect_error("tests/configs/bad/unknown_class.yaml", 0, NULL, 2, 15,
               "unknown class 'aidomm.testing.TinyTransfomer'; did you mean "
               "'aidomm.testing.TinyTransformer'?",
               INV);
  expect_error("tests/configs/bad/misspelt_key.yaml", 0, NULL, 5, 5,
               "unknown key 'hiden_size' in model.init_args of aidomm.testing.TinyTransformer; "
               "did you mean 'hidden_size'?",
               INV);
  expect_error("tests/configs/bad/wrong_type.yaml", 0, NULL, 4, 18,
               "model.init_args.hidden_size: expected an integer, got 'thirty-two'", INV);
  expect_error("tests/configs/bad/negative_length.yaml", 0, NULL, 7, 17,
               "data.init_args.max_length must be positive, got -3", INV);
  expect_error("tests/configs/bad/heads_not_dividing.yaml", 0, NULL, 5, 26,
               "num_attention_heads (4) must divide hidden_size (30)", INV);
  expect_error("tests/configs/bad/empty.yaml", 0, NULL, 1, 1, "empty YAML", INV);
  expect_error("tests/configs/bad/binary.yaml", 0, NULL, 1, 1,
               "not a YAML text file: control character 0x7f", INV);
  expect_error("tests/configs/bad/alias_bomb.yaml", 0, NULL, 1, 4,
               "anchors and aliases are not supported (anchor '&a')", INV);
  expect_error("tests/configs/bad/duplicate_key.yaml", 0, NULL, 5, 3,
               "duplicate key 'max_steps' (first given at line 3, column 3)", INV);
  expect_error("tests/configs/bad/tab_indent.yaml", 0, NULL, 4, 1,
               "tab character in indentation", INV);
  char *through[] = {"--seed_everything.value", "3"};
  expect_error("tests/configs/bad/override_through_scalar.yaml", 2, through, 1, 18,
               "override '--seed_everything.value': 'seed_everything' is a scalar ('7')", INV);
  expect_error("tests/configs/bad/zero_layers.yaml", 0, NULL, 4, 24,
               "model.init_args.num_hidden_layers must be positive, got 0", INV);
  expect_error("tests/configs/bad/missing_required.yaml", 0, NULL, 6, 5,
               "missing required key 'max_length' (an integer) for aidomm.testing.SyntheticData",
               INV);
  expect_error("tests/configs/bad/wrong_section_class.yaml", 0, NULL, 4, 15,
               "optimizer.class_path: 'aidomm.testing.TinyTransformer' is a model class, not an "
               "optimizer class", INV);
  expect_error("tests/configs/bad/unsupported_precision.yaml", 0, NULL, 2, 14,
               "'bf16-mixed' is not supported yet", AD_STATUS_UNIMPLEMENTED);
  expect_error("tests/configs/bad/not_a_mapping.yaml", 0, NULL, 1, 1,
               "a config is a mapping of top-level keys", INV);
  expect_error("tests/configs/bad/two_documents.yaml", 0, NULL, 2, 1,
               "found a second one", INV);
  expect_error("tests/configs/bad/quoted_number.yaml", 0, NULL, 4, 18,
               "expected an integer, got the quoted string \"4\"", INV);
  expect_error("tests/configs/bad/betas_length.yaml", 0, NULL, 7, 12,
               "expected a list of two floats [beta1, beta2], got 3 items", INV);
  expect_error("tests/configs/bad/invalid_utf8.yaml", 0, NULL, 1, 25,
               "invalid UTF-8 byte 0xe9", INV);
  expect_error("tests/configs/bad/missing_model.yaml", 0, NULL, 1, 1,
               "missing required section 'model'", INV);
  expect_error("tests/configs/bad/optimizer_unknown_key.yaml", 0, NULL, 6, 5,
               "unknown key 'learning_rate' in optimizer.init_args of torch.optim.AdamW (known "
               "keys: lr, betas",
               INV);
  expect_error("tests/configs/bad/max_steps_zero.yaml", 0, NULL, 2, 14,
               "trainer.max_steps must be positive (or -1 for no limit), got 0", INV);
  /* A missing file has no place but is still an input error. */
  fe_config_t *c = NULL;
  ad_status_t st = fe_config_load("tests/configs/bad/does_not_exist.yaml", 0, NULL, &c);
  ck_assert_ptr_nonnull(st);
  ck_assert_ptr_null(c);
  ck_assert_int_eq(ad_status_exit_code(st), 2);
  ad_status_free(st);
}
END_TEST

/* ---- warnings ------------------------------------------------------------------------------ */
START_TEST(test_warnings) {
  fe_config_t *c = load_ok("tests/configs/lightning_style.yaml", 0, NULL);
  char *buf = NULL;
  size_t len = 0;
  c->warn_stream = open_memstream(&buf, &len);
  ir_module_t *m = NULL;
  fe_job_t job;
  ad_status_t st = fe_build_module(c, &m, &job);
  fclose(c->warn_stream);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  char *path = src_path("tests/configs/lightning_style.yaml");
  char want[1024];
  snprintf(want, sizeof want,
           "%s:4:3: warning: trainer.accelerator is ignored (aidomm does not use it yet)\n", path);
  ck_assert_msg(strstr(buf, want) != NULL, "got:\n%s", buf);
  ck_assert_msg(strstr(buf, "callbacks is ignored") == NULL, "got:\n%s", buf);
  ck_assert_msg(strstr(buf, "ckpt_path") == NULL, "ckpt_path is read by the runtime:\n%s", buf);
  ck_assert_ptr_null(strstr(buf, "max_steps"));
  /* In file order, whatever order the sections are checked in. */
  ck_assert(strstr(buf, ":4:3: warning") < strstr(buf, ":5:3: warning"));
  ck_assert_ptr_null(strstr(buf, "fused")); /* null is the default: nothing to warn about */
  int lines = 0;
  for (char *p = buf; *p; p++) lines += *p == '\n';
  ck_assert_int_eq(lines, 2); /* accelerator, devices */
  free(buf);
  free(path);
  ir_module_free(m);
  fe_config_free(c);
}
END_TEST

/* ---- the TinyTransformer module ------------------------------------------------------------ */
static const ir_node_t *find_node(const ir_graph_t *g, const char *name) {
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
  return NULL;
}

static int count_op(const ir_graph_t *g, ir_op_t op) {
  int n = 0;
  for (uint32_t i = 0; i < g->nnodes; i++) n += g->nodes[i].op == op;
  return n;
}

static void expect_dims(const ir_type_t *t, ir_dtype_t dt, int rank, const int64_t *dims) {
  ck_assert_int_eq(t->dtype, dt);
  ck_assert_int_eq(t->rank, rank);
  for (int i = 0; i < rank; i++) {
    int64_t v = -1;
    ck_assert(ir_dim_is_const(t->dims[i], &v));
    ck_assert_int_eq(v, dims[i]);
  }
}

static ir_module_t *build_tiny(int nov, char *const *ov, fe_job_t *job) {
  fe_config_t *c = load_ok("configs/tiny_transformer.yaml", nov, ov);
  ir_module_t *m = NULL;
  ad_status_t st = fe_build_module(c, &m, job);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  fe_config_free(c); /* the module owns its strings */
  return m;
}

START_TEST(test_tiny_module) {
  fe_job_t job;
  ir_module_t *m = build_tiny(0, NULL, &job);
  ck_assert_msg(!ir_verify_module(m), "module does not verify");
  ck_assert_int_eq(job.seed, 42);
  ck_assert_int_eq(job.max_steps, 20);
  ck_assert_int_eq(job.batch_size, 4);
  ck_assert_int_eq(job.max_length, 12);
  ck_assert_int_eq(job.dtype, IR_DTYPE_F32);
  ck_assert(job.lr == 0.001 && job.beta1 == 0.9 && job.beta2 == 0.999);
  ck_assert(job.eps == 1e-8 && job.weight_decay == 0.01);

  ck_assert_uint_eq(m->nsymbols, 2);
  ck_assert_str_eq(m->symbols[0].name, "B");
  ck_assert_int_eq(m->symbols[0].bound, 4);
  ck_assert_str_eq(m->symbols[1].name, "L");
  ck_assert_int_eq(m->symbols[1].bound, 12);
  ck_assert_int_eq(ir_module_find_scalar(m, "seed")->dtype, IR_DTYPE_I64);
  ck_assert(ir_module_find_scalar(m, "seed")->dflt == 42.0);
  ck_assert_int_eq(ir_module_find_scalar(m, "step")->dtype, IR_DTYPE_I64);
  ck_assert_int_eq(ir_module_find_scalar(m, "lr")->dtype, IR_DTYPE_F64);
  ck_assert(ir_module_find_scalar(m, "lr")->dflt == 0.001);

  /* Slots: HF-style names in module order, 18 per layer + embeddings + final LN + head. */
  static const char *const per_layer[] = {
      "attention.ln.weight",         "attention.ln.bias",
      "attention.self.query.weight", "attention.self.query.bias",
      "attention.self.key.weight",   "attention.self.key.bias",
      "attention.self.value.weight", "attention.self.value.bias",
      "attention.output.dense.weight", "attention.output.dense.bias",
      "mlp.ln.weight",               "mlp.ln.bias",
      "mlp.gate_proj.weight",        "mlp.gate_proj.bias",
      "mlp.up_proj.weight",          "mlp.up_proj.bias",
      "mlp.down_proj.weight",        "mlp.down_proj.bias"};
  ck_assert_uint_eq(m->nslots, 1 + 2 * 18 + 4);
  ck_assert_str_eq(m->slots[0].name, "embeddings.word_embeddings.weight");
  for (int l = 0; l < 2; l++)
    for (int k = 0; k < 18; k++) {
      char want[128];
      snprintf(want, sizeof want, "encoder.layer.%d.%s", l, per_layer[k]);
      ck_assert_str_eq(m->slots[1 + 18 * l + k].name, want);
    }
  ck_assert_str_eq(m->slots[37].name, "encoder.ln.weight");
  ck_assert_str_eq(m->slots[38].name, "encoder.ln.bias");
  ck_assert_str_eq(m->slots[39].name, "head.weight");
  ck_assert_str_eq(m->slots[40].name, "head.bias");
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *s = &m->slots[i];
    ck_assert_uint_eq(s->flags, IR_SLOT_PARAM | IR_SLOT_TRAINABLE);
    size_t n = strlen(s->name);
    bool is_bias = n > 5 && strcmp(s->name + n - 5, ".bias") == 0;
    bool is_ln = strstr(s->name, "ln.weight") != NULL;
    ck_assert_str_eq(s->init, is_bias ? "zeros" : is_ln ? "ones" : "normal(0,0.02)");
  }
  expect_dims(&m->slots[0].type, IR_DTYPE_F32, 2, (const int64_t[]){16, 32});
  expect_dims(&m->slots[ir_module_find_slot(m, "encoder.layer.1.mlp.gate_proj.weight")].type,
              IR_DTYPE_F32, 2, (const int64_t[]){48, 32});
  expect_dims(&m->slots[ir_module_find_slot(m, "encoder.layer.0.mlp.down_proj.weight")].type,
              IR_DTYPE_F32, 2, (const int64_t[]){32, 48});
  expect_dims(&m->slots[39].type, IR_DTYPE_F32, 2, (const int64_t[]){4, 32});
  expect_dims(&m->slots[40].type, IR_DTYPE_F32, 1, (const int64_t[]){4});

  ck_assert_uint_eq(m->nprograms, 1);
  const ir_graph_t *g = ir_module_find_program(m, "forward");
  ck_assert_ptr_nonnull(g);
  const ir_node_t *ids = find_node(g, "input_ids");
  ck_assert_int_eq(ids->op, IR_OP_INPUT);
  const ir_type_t *it = &g->values[ids->output0].type;
  ck_assert_int_eq(it->dtype, IR_DTYPE_I64);
  ck_assert_int_eq(it->rank, 2);
  ck_assert(ir_dim_equal(it->dims[0], ir_dim_sym(0)) && ir_dim_equal(it->dims[1], ir_dim_sym(1)));
  ck_assert_int_eq(g->values[find_node(g, "attention_mask")->output0].type.dtype, IR_DTYPE_F32);
  const ir_type_t *lt = &g->values[find_node(g, "labels")->output0].type;
  ck_assert(ir_dim_equal(lt->dims[0], ir_dim_sym(0)));
  ck_assert(ir_dim_equal(lt->dims[1], ir_dim_const(4)));
  ck_assert_int_eq(find_node(g, "pred")->op, IR_OP_OUTPUT);
  ck_assert_int_eq(find_node(g, "loss")->op, IR_OP_OUTPUT);
  const ir_type_t *pt = &g->values[find_node(g, "pred")->inputs[0]].type;
  ck_assert_int_eq(pt->rank, 2);
  ck_assert(ir_dim_equal(pt->dims[1], ir_dim_const(4)));
  ck_assert_int_eq(g->values[find_node(g, "loss")->inputs[0]].type.rank, 0);

  /* Node names are the module paths. */
  ck_assert_int_eq(find_node(g, "encoder.layer.1.attention.self.query")->op, IR_OP_LINEAR);
  ck_assert_int_eq(find_node(g, "encoder.layer.0.attention.self.attention")->op,
                   IR_OP_ATTENTION);
  ck_assert_int_eq(find_node(g, "encoder.layer.0.mlp.down_proj")->op, IR_OP_LINEAR);
  ck_assert_int_eq(find_node(g, "encoder.ln")->op, IR_OP_LAYERNORM);
  ck_assert_int_eq(find_node(g, "head")->op, IR_OP_LINEAR);
  ck_assert_int_eq(find_node(g, "pooler")->op, IR_OP_MASKED_MEAN_POOL);
  const ir_node_t *w = find_node(g, "encoder.layer.0.attention.self.key.weight");
  ck_assert_int_eq(w->op, IR_OP_STATE_IN);
  ck_assert_str_eq(ir_node_attr_string(w, "slot", ""), "encoder.layer.0.attention.self.key.weight");
  ck_assert_int_eq(count_op(g, IR_OP_STATE_IN), 41);
  ck_assert_int_eq(count_op(g, IR_OP_ROTARY), 4);
  ck_assert_int_eq(count_op(g, IR_OP_LAYERNORM), 5);
  const ir_node_t *att = find_node(g, "encoder.layer.1.attention.self.attention");
  ck_assert(fabs(ir_node_attr_float(att, "scale", 0) - 1.0 / sqrt(8.0)) < 1e-15);
  ck_assert_uint_eq(att->ninputs, 4);
  const ir_type_t *mt = &g->values[att->inputs[3]].type; /* additive mask [B, 1, 1, L] */
  ck_assert_int_eq(mt->rank, 4);
  ck_assert(ir_dim_equal(mt->dims[1], ir_dim_const(1)) && ir_dim_equal(mt->dims[3], ir_dim_sym(1)));

  /* Dropout: embeddings + 2 per layer, keyed by their own names, fed by seed and step. */
  ck_assert_int_eq(count_op(g, IR_OP_DROPOUT), 5);
  const ir_node_t *d = find_node(g, "encoder.layer.1.mlp.dropout");
  ck_assert_int_eq(d->op, IR_OP_DROPOUT);
  ck_assert_str_eq(ir_node_attr_string(d, "key", ""), d->name);
  ck_assert(ir_node_attr_float(d, "p", 0) == 0.1);
  ck_assert_str_eq(ir_value_producer(g, d->inputs[1])->name, "seed");
  ck_assert_str_eq(ir_value_producer(g, d->inputs[2])->name, "step");
  ck_assert_int_eq(ir_value_producer(g, d->inputs[1])->op, IR_OP_SCALAR);
  ir_module_free(m);

  /* precision 64 builds everything in f64; p = 0 emits no dropout; more layers, more slots. */
  char *ov[] = {"--trainer.precision", "64", "--model.init_args.hidden_dropout_prob=0.0",
                "--model.init_args.num_hidden_layers", "3"};
  m = build_tiny(5, ov, &job);
  ck_assert_int_eq(job.dtype, IR_DTYPE_F64);
  ck_assert_uint_eq(m->nslots, 1 + 3 * 18 + 4);
  for (uint32_t i = 0; i < m->nslots; i++) ck_assert_int_eq(m->slots[i].type.dtype, IR_DTYPE_F64);
  g = ir_module_find_program(m, "forward");
  ck_assert_int_eq(count_op(g, IR_OP_DROPOUT), 0);
  ck_assert_int_eq(g->values[find_node(g, "attention_mask")->output0].type.dtype, IR_DTYPE_F64);
  ck_assert_int_eq(g->values[find_node(g, "loss")->inputs[0]].type.dtype, IR_DTYPE_F64);
  const ir_node_t *ext = find_node(g, "extended_attention_mask");
  ck_assert(ir_node_attr_float(ext, "beta", 0) == -1.7976931348623157e308);
  ck_assert_ptr_nonnull(find_node(g, "encoder.layer.2.mlp.residual"));
  ck_assert_msg(!ir_verify_module(m), "f64 module does not verify");
  ir_module_free(m);
}
END_TEST

/* ---- a forward run: valid results never depend on padding ------------------------------------ */
static uint64_t g_rng = 88172645463325252ull;
static double urand(void) { /* xorshift64: deterministic test data */
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (double)(g_rng >> 11) * 0x1p-53;
}

typedef struct fwd {
  const ir_module_t *m;
  void **state;
} fwd_t;

/* pred [B, 4] for the given ids / mask at actual sizes B x L. */
static void run_forward_at(const fwd_t *f, int64_t B, int64_t L, const int64_t *ids,
                           const float *mask, int64_t step, float *pred_out, float *loss_out) {
  const ir_graph_t *g = ir_module_find_program(f->m, "forward");
  int64_t sym[2] = {B, L};
  rt_interp_t *it = NULL;
  ad_status_t st = rt_interp_create(g, sym, &it);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  float labels[64];
  for (int i = 0; i < 64; i++) labels[i] = (float)(i % 5) * 0.25f;
  ck_assert(!rt_interp_set_input(it, "input_ids", ids, sizeof(int64_t) * (size_t)(B * L)));
  ck_assert(!rt_interp_set_input(it, "attention_mask", mask, sizeof(float) * (size_t)(B * L)));
  ck_assert(!rt_interp_set_input(it, "labels", labels, sizeof(float) * (size_t)(B * 4)));
  if (step >= 0) { /* dropout on: the runtime scalars feed its RNG */
    int64_t seed = 1234;
    ck_assert(!rt_interp_set_input(it, "seed", &seed, sizeof seed));
    ck_assert(!rt_interp_set_input(it, "step", &step, sizeof step));
  }
  for (uint32_t i = 0; i < f->m->nslots; i++) {
    int64_t bounds[2] = {4, 12};
    ir_shape_t sh = ir_type_shape(&f->m->slots[i].type, bounds);
    st = rt_interp_bind_state(it, f->m->slots[i].name, f->state[i],
                              sizeof(float) * (size_t)ir_shape_numel(&sh));
    ck_assert_msg(!st, "%s", ad_status_message(st));
  }
  st = rt_interp_run(it, NULL);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  const ir_tensor_t *p = rt_interp_output(it, "pred");
  ck_assert_ptr_nonnull(p);
  ck_assert_int_eq(p->rank, 2);
  ck_assert_int_eq(p->dims[0], B);
  ck_assert_int_eq(p->dims[1], 4);
  memcpy(pred_out, p->data, sizeof(float) * (size_t)(B * 4));
  const ir_tensor_t *l = rt_interp_output(it, "loss");
  ck_assert_ptr_nonnull(l);
  ck_assert_int_eq(l->rank, 0);
  *loss_out = *(const float *)l->data;
  rt_interp_free(it);
}

static void run_forward(const fwd_t *f, int64_t B, int64_t L, const int64_t *ids,
                        const float *mask, float *pred_out, float *loss_out) {
  run_forward_at(f, B, L, ids, mask, -1, pred_out, loss_out);
}

static void **random_state(const ir_module_t *m) {
  void **state = calloc(m->nslots, sizeof *state);
  for (uint32_t i = 0; i < m->nslots; i++) {
    int64_t bounds[2] = {4, 12};
    ir_shape_t sh = ir_type_shape(&m->slots[i].type, bounds);
    int64_t n = ir_shape_numel(&sh);
    float *p = malloc(sizeof(float) * (size_t)n);
    bool ones = strcmp(m->slots[i].init, "ones") == 0;
    for (int64_t k = 0; k < n; k++) p[k] = (float)((ones ? 1.0 : 0.0) + 0.4 * (urand() - 0.5));
    state[i] = p;
  }
  return state;
}

static void free_state(const ir_module_t *m, void **state) {
  for (uint32_t i = 0; i < m->nslots; i++) free(state[i]);
  free(state);
}

START_TEST(test_tiny_forward_dropout) {
  /* The config's p = 0.1: the mask follows (seed, step), so a step repeats exactly and the
   * next step differs. */
  fe_job_t job;
  ir_module_t *m = build_tiny(0, NULL, &job);
  void **state = random_state(m);
  fwd_t f = {m, state};
  int64_t ids[48];
  float mask[48];
  for (int i = 0; i < 48; i++) {
    ids[i] = i % 16;
    mask[i] = 1.0f;
  }
  float a[16], b[16], c[16], la, lb, lc;
  run_forward_at(&f, 4, 12, ids, mask, 1, a, &la);
  run_forward_at(&f, 4, 12, ids, mask, 1, b, &lb);
  run_forward_at(&f, 4, 12, ids, mask, 2, c, &lc);
  ck_assert(memcmp(a, b, sizeof a) == 0 && la == lb);
  ck_assert(memcmp(a, c, sizeof a) != 0);
  free_state(m, state);
  ir_module_free(m);
}
END_TEST

START_TEST(test_tiny_forward_padding) {
  fe_job_t job;
  char *ov[] = {"--model.init_args.hidden_dropout_prob", "0"};
  ir_module_t *m = build_tiny(2, ov, &job);
  void **state = random_state(m);
  fwd_t f = {m, state};
  /* Actual sizes below the bounds: B = 3 of 4, L = 9 of 12; row 1 pads after 5 tokens. */
  const int64_t B = 3, L = 9;
  int64_t ids[27], ids2[27];
  float mask[27];
  for (int64_t i = 0; i < B * L; i++) {
    ids[i] = (int64_t)(urand() * 16) % 16;
    int64_t r = i / L, c = i % L;
    mask[i] = (r == 1 && c >= 5) || (r == 2 && c >= 8) ? 0.0f : 1.0f;
  }
  float pred[12], pred2[12], loss, loss2;
  run_forward(&f, B, L, ids, mask, pred, &loss);
  ck_assert(isfinite(loss) && loss > 0);
  for (int i = 0; i < 12; i++) ck_assert(isfinite(pred[i]));
  /* Changing padded tokens changes nothing... */
  memcpy(ids2, ids, sizeof ids);
  for (int64_t i = 0; i < B * L; i++)
    if (mask[i] == 0.0f) ids2[i] = (ids[i] + 7) % 16;
  run_forward(&f, B, L, ids2, mask, pred2, &loss2);
  for (int i = 0; i < 12; i++)
    ck_assert_msg(fabsf(pred[i] - pred2[i]) <= 1e-6f * (1 + fabsf(pred[i])),
                  "pred[%d] %g vs %g: padding leaked", i, pred[i], pred2[i]);
  /* ...while changing a valid token of row 1 changes row 1 only. */
  memcpy(ids2, ids, sizeof ids);
  ids2[1 * L + 2] = (ids[1 * L + 2] + 3) % 16;
  run_forward(&f, B, L, ids2, mask, pred2, &loss2);
  float moved = 0;
  for (int j = 0; j < 4; j++) {
    moved += fabsf(pred[4 + j] - pred2[4 + j]);
    ck_assert(pred[j] == pred2[j] && pred[8 + j] == pred2[8 + j]);
  }
  ck_assert_msg(moved > 1e-6f, "a valid token had no effect");
  free_state(m, state);
  ir_module_free(m);
}
END_TEST

/* ---- against PyTorch: tools/golden/tiny_transformer.py ----------------------------------- */
typedef struct golden_run {
  rt_st_file_t *f;
  ir_module_t *m;
  rt_interp_t *it;
  uint32_t nparams;
} golden_run_t;

static const rt_st_tensor_t *st_get(const rt_st_file_t *f, const char *prefix, const char *name) {
  char key[256];
  snprintf(key, sizeof key, "%s%s", prefix, name);
  const rt_st_tensor_t *t = rt_st_find(f, key);
  ck_assert_msg(t != NULL, "fixture lacks %s", key);
  return t;
}

/* Builds the f64, dropout-free module, optionally appends gradient outputs (pass_autodiff), and
 * runs it on the fixture's parameters and batch (B = 3, L = 9 below the bounds 4, 12). */
static void golden_run(golden_run_t *r, bool grads) {
  char *path = golden_path("tests/golden/tiny_transformer.safetensors");
  ad_status_t st = rt_st_open(path, &r->f);
  free(path);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  fe_job_t job;
  char *ov[] = {"--trainer.precision", "64", "--model.init_args.hidden_dropout_prob", "0"};
  r->m = build_tiny(4, ov, &job);
  ir_graph_t *g = ir_module_find_program(r->m, "forward");
  r->nparams = 0;
  for (size_t i = 0; i < rt_st_count(r->f); i++)
    r->nparams += strncmp(rt_st_at(r->f, i)->name, "params/", 7) == 0;
  ck_assert_uint_eq(r->nparams, r->m->nslots);
  if (grads) {
    uint32_t *wrt = calloc(r->m->nslots, sizeof *wrt), *dw = calloc(r->m->nslots, sizeof *dw);
    for (uint32_t i = 0; i < r->m->nslots; i++) {
      const ir_node_t *n = find_node(g, r->m->slots[i].name);
      ck_assert_ptr_nonnull(n);
      wrt[i] = n->output0;
    }
    st = pass_autodiff(g, find_node(g, "loss")->inputs[0], wrt, r->m->nslots, dw);
    ck_assert_msg(!st, "%s", ad_status_message(st));
    for (uint32_t i = 0; i < r->m->nslots; i++) {
      ck_assert_msg(dw[i] != IR_NONE, "no gradient for %s", r->m->slots[i].name);
      char name[256];
      snprintf(name, sizeof name, "grad:%s", r->m->slots[i].name);
      ir_node_desc_t d = {.op = IR_OP_OUTPUT, .name = name, .inputs = &dw[i], .ninputs = 1};
      ir_build(g, &d);
    }
    st = ir_graph_take_error(g);
    ck_assert_msg(!st, "%s", ad_status_message(st));
    free(wrt);
    free(dw);
  }
  int64_t sym[2] = {3, 9};
  st = rt_interp_create(g, sym, &r->it);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  static const char *const inputs[] = {"input_ids", "attention_mask", "labels"};
  for (int i = 0; i < 3; i++) {
    const rt_st_tensor_t *t = st_get(r->f, "", inputs[i]);
    st = rt_interp_set_input(r->it, inputs[i], t->data, t->nbytes);
    ck_assert_msg(!st, "%s", ad_status_message(st));
  }
  for (uint32_t i = 0; i < r->m->nslots; i++) {
    const rt_st_tensor_t *t = st_get(r->f, "params/", r->m->slots[i].name);
    ck_assert_int_eq(t->dtype, RT_ST_F64);
    ck_assert_int_eq(t->rank, r->m->slots[i].type.rank);
    st = rt_interp_bind_state(r->it, r->m->slots[i].name, (void *)t->data, t->nbytes);
    ck_assert_msg(!st, "%s", ad_status_message(st));
  }
  st = rt_interp_run(r->it, NULL);
  ck_assert_msg(!st, "%s", ad_status_message(st));
}

static void golden_free(golden_run_t *r) {
  rt_interp_free(r->it);
  ir_module_free(r->m);
  rt_st_close(r->f);
}

static void golden_check(const rt_interp_t *it, const char *output, const rt_st_tensor_t *want,
                         double tol) {
  const ir_tensor_t *got = rt_interp_output(it, output);
  ck_assert_msg(got != NULL, "no output %s", output);
  ir_tensor_t w;
  ck_assert(rt_st_as_ir_tensor(want, &w));
  double e = golden_compare(output, got, &w, tol);
  ck_assert_msg(e <= tol, "%s: relative error %g > %g", output, e, tol);
}

START_TEST(test_tiny_golden_forward) {
  golden_run_t r;
  golden_run(&r, false);
  golden_check(r.it, "pred", st_get(r.f, "", "pred"), 1e-10);
  golden_check(r.it, "loss", st_get(r.f, "", "loss"), 1e-10);
  golden_free(&r);
}
END_TEST

START_TEST(test_tiny_golden_grads) {
  golden_run_t r;
  golden_run(&r, true);
  golden_check(r.it, "loss", st_get(r.f, "", "loss"), 1e-10);
  for (uint32_t i = 0; i < r.m->nslots; i++) {
    char out[256];
    snprintf(out, sizeof out, "grad:%s", r.m->slots[i].name);
    golden_check(r.it, out, st_get(r.f, "grads/", r.m->slots[i].name), 1e-9);
  }
  golden_free(&r);
}
END_TEST

static Suite *frontend_suite(void) {
  Suite *s = suite_create("frontend");
  TCase *tc = tcase_create("config");
  tcase_add_test(tc, test_load_places);
  tcase_add_test(tc, test_scalar_styles);
  tcase_add_test(tc, test_overrides);
  tcase_add_test(tc, test_override_errors);
  tcase_add_test(tc, test_nested_optimizer);
  tcase_add_test(tc, test_emit_roundtrip);
  tcase_add_test(tc, test_bad_configs);
  tcase_add_test(tc, test_warnings);
  suite_add_tcase(s, tc);
  TCase *tm = tcase_create("module");
  tcase_add_test(tm, test_tiny_module);
  tcase_add_test(tm, test_tiny_forward_padding);
  tcase_add_test(tm, test_tiny_forward_dropout);
  tcase_add_test(tm, test_tiny_golden_forward);
  tcase_add_test(tm, test_tiny_golden_grads);
  suite_add_tcase(s, tm);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(frontend_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
