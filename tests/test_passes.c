/* IR-in/IR-out tests of the graph passes: each tests/passes/NAME.air is parsed, the pass runs
 * on every program, and the printed module must equal NAME.expected.air byte for byte. Plus
 * the rules that must never bend (CSE and folding leave dropout and state effects alone) and
 * the pass manager's printing. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

static void ok(ad_status_t st) {
  ck_assert_msg(st == AD_OK, "%s", st ? ad_status_message(st) : "");
}

static char *read_file(const char *rel, size_t *len) {
  const char *root = getenv("AIDOMM_SOURCE_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", root ? root : ".", rel);
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  rewind(f);
  char *buf = malloc((size_t)n + 1);
  ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = 0;
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static ir_module_t *parse_file(const char *rel) {
  size_t len;
  char *text = read_file(rel, &len);
  ir_module_t *m = NULL;
  ad_status_t st = ir_parse_module(text, len, rel, &m);
  ck_assert_msg(st == AD_OK, "parsing %s: %s", rel, st ? ad_status_message(st) : "");
  free(text);
  return m;
}

static char *print_module(const ir_module_t *m) {
  ad_buf_t b = {0};
  ir_print_module(m, &b);
  ad_buf_put_u8(&b, 0);
  return (char *)b.data;
}

/* Fails naming the first differing line of the two texts. */
static void assert_same_text(const char *got, const char *want, const char *what) {
  if (strcmp(got, want) == 0) return;
  int line = 1;
  const char *g = got, *w = want;
  while (*g && *g == *w) {
    if (*g == '\n') line++;
    g++, w++;
  }
  const char *gl = g, *wl = w;
  while (gl > got && gl[-1] != '\n') gl--;
  while (wl > want && wl[-1] != '\n') wl--;
  int gn = (int)strcspn(gl, "\n"), wn = (int)strcspn(wl, "\n");
  ck_abort_msg("%s differs at line %d:\n  got:  %.*s\n  want: %.*s", what, line, gn, gl, wn, wl);
}

typedef ad_status_t (*graph_pass_fn)(ir_graph_t **);

/* Runs `pass` over every program of tests/passes/NAME.air and compares with the expected file
 * (which must itself round-trip through the parser unchanged). */
static void run_case(const char *name, graph_pass_fn pass) {
  char in[256], exp[256];
  snprintf(in, sizeof in, "tests/passes/%s.air", name);
  snprintf(exp, sizeof exp, "tests/passes/%s.expected.air", name);
  ir_module_t *m = parse_file(in);
  for (uint32_t i = 0; i < m->nprograms; i++) {
    ir_graph_t *g = m->programs[i];
    ok(pass(&g));
    ck_assert_ptr_eq(m->programs[i], g);
    ok(ir_verify_graph(g));
  }
  char *got = print_module(m);
  size_t len;
  char *want = read_file(exp, &len);
  assert_same_text(got, want, exp);
  ir_module_t *m2 = parse_file(exp);
  char *again = print_module(m2);
  assert_same_text(again, want, "the expected file after a parse/print round trip");
  free(again);
  free(got);
  free(want);
  ir_module_free(m2);
  ir_module_free(m);
}

static int count_op(const ir_graph_t *g, ir_op_t o) {
  int c = 0;
  for (uint32_t i = 0; i < g->nnodes; i++) c += g->nodes[i].op == o;
  return c;
}

START_TEST(test_dce_basic) { run_case("dce_basic", pass_dce); }
END_TEST

START_TEST(test_cse_basic) { run_case("cse_basic", pass_cse); }
END_TEST

START_TEST(test_cse_effects) {
  run_case("cse_effects", pass_cse);
  /* The same property stated directly: both dropouts and all state effects survive. */
  ir_module_t *m = parse_file("tests/passes/cse_effects.air");
  ir_graph_t *g = m->programs[0];
  int drop = count_op(g, IR_OP_DROPOUT), sin = count_op(g, IR_OP_STATE_IN),
      sout = count_op(g, IR_OP_STATE_OUT), inputs = count_op(g, IR_OP_INPUT);
  ok(pass_cse(&g));
  ck_assert_int_eq(count_op(g, IR_OP_DROPOUT), drop);
  ck_assert_int_eq(count_op(g, IR_OP_STATE_IN), sin);
  ck_assert_int_eq(count_op(g, IR_OP_STATE_OUT), sout);
  ck_assert_int_eq(count_op(g, IR_OP_INPUT), inputs);
  ck_assert_int_ge(drop, 2);
  ir_module_free(m);
}
END_TEST

START_TEST(test_constfold_chain) { run_case("constfold_chain", pass_constfold); }
END_TEST

START_TEST(test_constfold_never_random_or_state) {
  run_case("constfold_effects", pass_constfold);
  ir_module_t *m = parse_file("tests/passes/constfold_effects.air");
  ir_graph_t *g = m->programs[0];
  int drop = count_op(g, IR_OP_DROPOUT);
  ok(pass_constfold(&g));
  ck_assert_int_eq(count_op(g, IR_OP_DROPOUT), drop);
  ck_assert_int_ge(drop, 1);
  ir_module_free(m);
}
END_TEST

START_TEST(test_passes_are_idempotent) {
  static const char *const files[] = {"dce_basic", "cse_basic", "constfold_chain"};
  static const graph_pass_fn fns[] = {pass_dce, pass_cse, pass_constfold};
  for (int k = 0; k < 3; k++) {
    char exp[256];
    snprintf(exp, sizeof exp, "tests/passes/%s.expected.air", files[k]);
    ir_module_t *m = parse_file(exp);
    char *before = print_module(m);
    ir_graph_t *g = m->programs[0];
    ok(fns[k](&g));
    char *after = print_module(m);
    assert_same_text(after, before, exp);
    free(before);
    free(after);
    ir_module_free(m);
  }
}
END_TEST

START_TEST(test_pipeline) {
  ir_module_t *m = parse_file("tests/passes/pipeline_basic.air");
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  pass_pipeline_options_t o = {.print_before = "cse", .print_after = "all", .print_stream = f};
  ok(pass_run_pipeline(m, &o));
  fclose(f);
  /* Headers in order: after verify, before cse, after dce, after cse, ... */
  static const char *const want[] = {"; *** IR after verify ***\n", "; *** IR after dce ***\n",
                                     "; *** IR before cse ***\n", "; *** IR after cse ***\n",
                                     "; *** IR after constfold ***\n",
                                     "; *** IR after verify ***\n"};
  const char *at = buf;
  for (int k = 0; k < 6; k++) {
    const char *h = strstr(at, want[k]);
    ck_assert_msg(h != NULL, "missing header %d '%s' in:\n%s", k, want[k], buf);
    at = h + strlen(want[k]);
    ck_assert_msg(strncmp(at, "aidomm-ir 1\n", 12) == 0, "header %d not followed by a module", k);
  }
  ck_assert_ptr_null(strstr(at, "; ***"));
  /* The last dump is the final module, and it equals the expected pipeline result. */
  char *final = print_module(m);
  ck_assert_str_eq(at, final);
  size_t elen;
  char *want_text = read_file("tests/passes/pipeline_basic.expected.air", &elen);
  assert_same_text(final, want_text, "pipeline_basic.expected.air");
  free(want_text);
  free(final);
  free(buf);
  ir_module_free(m);

  /* Nothing printed without a selection; every name is known. */
  m = parse_file("tests/passes/pipeline_basic.air");
  buf = NULL;
  f = open_memstream(&buf, &len);
  o = (pass_pipeline_options_t){.print_after = "dce", .print_stream = f};
  ok(pass_run_pipeline(m, &o));
  fclose(f);
  ck_assert_msg(strncmp(buf, "; *** IR after dce ***\naidomm-ir 1\n", 35) == 0, "%s", buf);
  ck_assert_ptr_null(strstr(buf + 1, "; ***"));
  free(buf);
  ir_module_free(m);
  const char *const *names = pass_names();
  static const char *const expect[] = {"verify", "dce", "cse", "constfold", "lower-training"};
  for (int k = 0; k < 5; k++) {
    bool found = false;
    for (const char *const *n = names; *n; n++) found |= strcmp(*n, expect[k]) == 0;
    ck_assert_msg(found, "pass name %s not registered", expect[k]);
  }
}
END_TEST

/* A verifier failure stops the pipeline with a message naming the stage. */
START_TEST(test_pipeline_reports_errors) {
  ir_module_t *m = parse_file("tests/passes/pipeline_basic.air");
  ir_graph_t *g = m->programs[0];
  /* Break the order invariant behind the builder's back: a node reading a later value. */
  ir_node_t *n = NULL;
  for (uint32_t i = 0; i < g->nnodes && !n; i++)
    if (g->nodes[i].ninputs > 0) n = &g->nodes[i];
  ck_assert_ptr_nonnull(n);
  uint32_t *ins = (uint32_t *)n->inputs;
  uint32_t saved = ins[0];
  ins[0] = g->nvalues - 1;
  ad_status_t st = pass_run_pipeline(m, NULL);
  ck_assert_ptr_nonnull(st);
  ck_assert_msg(strstr(ad_status_message(st), "verifying the input module") != NULL, "%s",
                ad_status_message(st));
  ad_status_free(st);
  ins[0] = saved;
  ir_module_free(m);
}
END_TEST

static Suite *passes_suite(void) {
  Suite *s = suite_create("passes");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_dce_basic);
  tcase_add_test(tc, test_cse_basic);
  tcase_add_test(tc, test_cse_effects);
  tcase_add_test(tc, test_constfold_chain);
  tcase_add_test(tc, test_constfold_never_random_or_state);
  tcase_add_test(tc, test_passes_are_idempotent);
  tcase_add_test(tc, test_pipeline);
  tcase_add_test(tc, test_pipeline_reports_errors);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(passes_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
