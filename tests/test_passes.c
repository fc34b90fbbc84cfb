/* IR-in/IR-out tests of the graph passes: each tests/passes/NAME.air is parsed, the pass runs
 * on every program, and the printed module must equal NAME.expected.air byte for byte. Plus
 * the rules that must never bend (CSE and folding leave dropout and state effects alone) and
 * the pass manager's printing. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"
#include "tests/support/test_util.h"

static ir_module_t *parse_file(const char *rel) {
  size_t len;
  char *text = tu_read_file(tu_source_path(rel), &len);
  ir_module_t *m = NULL;
  ad_status_t st = ir_parse_module(text, len, rel, &m);
  ck_assert_msg(st == AD_OK, "parsing %s: %s", rel, st ? ad_status_message(st) : "");
  free(text);
  return m;
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
    tu_ok(pass(&g));
    ck_assert_ptr_eq(m->programs[i], g);
    tu_ok(ir_verify_graph(g));
  }
  char *got = tu_print_module(m, NULL);
  size_t len;
  char *want = tu_read_file(tu_source_path(exp), &len);
  assert_same_text(got, want, exp);
  ir_module_t *m2 = parse_file(exp);
  char *again = tu_print_module(m2, NULL);
  assert_same_text(again, want, "the expected file after a parse/print round trip");
  free(again);
  free(got);
  free(want);
  ir_module_free(m2);
  ir_module_free(m);
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
  int drop = tu_count_op(g, 0, IR_OP_DROPOUT), sin = tu_count_op(g, 0, IR_OP_STATE_IN),
      sout = tu_count_op(g, 0, IR_OP_STATE_OUT), inputs = tu_count_op(g, 0, IR_OP_INPUT);
  tu_ok(pass_cse(&g));
  ck_assert_int_eq(tu_count_op(g, 0, IR_OP_DROPOUT), drop);
  ck_assert_int_eq(tu_count_op(g, 0, IR_OP_STATE_IN), sin);
  ck_assert_int_eq(tu_count_op(g, 0, IR_OP_STATE_OUT), sout);
  ck_assert_int_eq(tu_count_op(g, 0, IR_OP_INPUT), inputs);
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
  int drop = tu_count_op(g, 0, IR_OP_DROPOUT);
  tu_ok(pass_constfold(&g));
  ck_assert_int_eq(tu_count_op(g, 0, IR_OP_DROPOUT), drop);
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
    char *before = tu_print_module(m, NULL);
    ir_graph_t *g = m->programs[0];
    tu_ok(fns[k](&g));
    char *after = tu_print_module(m, NULL);
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
  tu_ok(pass_run_pipeline(m, &o));
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
  char *final = tu_print_module(m, NULL);
  ck_assert_str_eq(at, final);
  size_t elen;
  char *want_text = tu_read_file(tu_source_path("tests/passes/pipeline_basic.expected.air"), &elen);
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
  tu_ok(pass_run_pipeline(m, &o));
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

int main(void) { return tu_run_suite(passes_suite()); }
