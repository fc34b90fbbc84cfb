/* The IR verifier: valid modules pass; each broken invariant (use before definition, duplicate
 * names, state_out before a reader, two state_outs, wrong types, arity, attributes, undeclared
 * scalars and slots, module-level duplicates) is one error naming the program and the node. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/test_util.h"

static ir_module_t *parse(const char *text) {
  ir_module_t *m;
  tu_ok(ir_parse_module(text, strlen(text), "v.air", &m));
  return m;
}

/* x -> relu -> tanh -> output, one slot read, scaled and written back after its readers. */
static const char *k_base =
    "aidomm-ir 1\n"
    "symbol B <= 2\n"
    "scalar \"lr\": f64 = 0.1\n"
    "slot \"w\": f32[4] {param, trainable} init \"zeros\"\n"
    "program \"p\" {\n"
    "  %0: f32[B,4] = input \"x\"\n"
    "  %1: f32[B,4] = relu \"r\" (%0)\n"
    "  %2: f32[B,4] = tanh \"t\" (%1)\n"
    "  %3: f32[4] = state_in \"w.read\" {slot = \"w\"}\n"
    "  %4: f32[B,4] = mul \"wx\" (%2, %3)\n"
    "  %5: f32[4] = scale \"w.new\" (%3) {alpha = 0.5, beta = 0.0}\n"
    "  state_out \"w.write\" (%5) {slot = \"w\"}\n"
    "  %6: f64[] = scalar \"lr\"\n"
    "  output \"y\" (%4)\n"
    "  output \"lr.out\" (%6)\n"
    "}\n";

static void verify_file(const char *path, const char *name, void *ctx) {
  (void)name, (void)ctx;
  size_t n;
  char *buf = tu_read_file(path, &n);
  ir_module_t *mm;
  tu_ok(ir_parse_module(buf, n, path, &mm));
  tu_ok(ir_verify_module(mm));
  ir_module_free(mm);
  free(buf);
}

START_TEST(test_valid_modules) {
  ir_module_t *m = parse(k_base);
  tu_ok(ir_verify_module(m));
  tu_ok(ir_verify_graph(m->programs[0]));
  ir_module_free(m);
  /* Every example file verifies. */
  ck_assert_int_ge(tu_for_each_file(tu_source_path("tests/ir"), ".air", verify_file, NULL), 3);
  /* The empty module and an empty program. */
  m = ir_module_create();
  tu_ok(ir_verify_module(m));
  ir_module_add_program(m, "empty");
  tu_ok(ir_verify_module(m));
  ir_module_free(m);
}
END_TEST

static ir_node_t *node_named(ir_graph_t *g, const char *name) {
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
  ck_abort_msg("no node '%s'", name);
  return NULL;
}

/* Graphs are edited by hand below, as a buggy pass would; arrays come from the module arena. */
static void set_inputs(ir_module_t *m, ir_node_t *n, uint32_t a) {
  uint32_t *ins = ad_arena_alloc(&m->arena, sizeof *ins);
  ins[0] = a;
  n->inputs = ins;
}

START_TEST(test_use_before_def) {
  ir_module_t *m = parse(k_base);
  ir_graph_t *g = m->programs[0];
  set_inputs(m, node_named(g, "r"), 2); /* relu reads tanh's output, defined after it */
  tu_expect_invalid(ir_verify_module(m), "program 'p', node #1 'r' (relu)",
              "input 0 uses value %2 before it is defined (by node #2)");
  set_inputs(m, node_named(g, "r"), 1); /* its own output */
  tu_expect_invalid(ir_verify_graph(g), "node #1 'r' (relu)", "uses value %1 before it is defined");
  set_inputs(m, node_named(g, "r"), 99);
  tu_expect_invalid(ir_verify_graph(g), "node #1 'r' (relu)",
                    "refers to value %99, beyond the 7 values");
  ir_module_free(m);
}
END_TEST

START_TEST(test_duplicate_names) {
  ir_module_t *m = parse(k_base);
  ir_graph_t *g = m->programs[0];
  node_named(g, "t")->name = "r";
  tu_expect_invalid(ir_verify_module(m), "program 'p', node #2 'r' (tanh)",
                    "duplicate node name (also node #1)");
  ir_module_free(m);

  m = parse(k_base);
  g = m->programs[0];
  node_named(g, "lr.out")->name = "y";
  tu_expect_invalid(ir_verify_module(m), "node #9 'y' (output)",
                    "duplicate output name (also node #8)");
  ir_module_free(m);
}
END_TEST

/* Built through ir_build, which does not order state effects: the verifier must. */
START_TEST(test_state_order) {
  ir_module_t *m = parse(
      "aidomm-ir 1\nslot \"w\": f32[4] init \"zeros\"\nprogram \"p\" {\n"
      "  %0: f32[4] = state_in \"w.read\" {slot = \"w\"}\n"
      "  %1: f32[4] = neg \"w.neg\" (%0)\n"
      "  state_out \"w.write\" (%1) {slot = \"w\"}\n"
      "  %2: f32[4] = relu \"late.reader\" (%0)\n"
      "  output \"y\" (%2)\n}\n");
  tu_expect_invalid(ir_verify_module(m), "program 'p', node #3 'late.reader' (relu)",
              "reads state slot 'w' (through node 'w.read') after its state_out 'w.write'");
  ir_module_free(m);

  /* A second state_in after the write is read after the write too. */
  m = parse(
      "aidomm-ir 1\nslot \"w\": f32[4] init \"zeros\"\nprogram \"p\" {\n"
      "  %0: f32[4] = state_in \"w.read\" {slot = \"w\"}\n"
      "  state_out \"w.write\" (%0) {slot = \"w\"}\n"
      "  %1: f32[4] = state_in \"w.read2\" {slot = \"w\"}\n"
      "  output \"y\" (%1)\n}\n");
  tu_expect_invalid(ir_verify_module(m), "node #3 'y' (output)", "after its state_out 'w.write'");
  ir_module_free(m);

  /* Writing a slot with its own read is fine; two writes are not. */
  m = parse(
      "aidomm-ir 1\nslot \"w\": f32[4] init \"zeros\"\nprogram \"p\" {\n"
      "  %0: f32[4] = state_in \"w.read\" {slot = \"w\"}\n"
      "  state_out \"w.write\" (%0) {slot = \"w\"}\n}\n");
  tu_ok(ir_verify_module(m));
  ir_module_free(m);
  m = parse(
      "aidomm-ir 1\nslot \"w\": f32[4] init \"zeros\"\nprogram \"p\" {\n"
      "  %0: f32[4] = input \"x\"\n"
      "  state_out \"w.write\" (%0) {slot = \"w\"}\n"
      "  state_out \"w.write2\" (%0) {slot = \"w\"}\n}\n");
  tu_expect_invalid(ir_verify_module(m), "node #2 'w.write2' (state_out)",
              "second state_out for slot 'w' (the first is 'w.write')");
  ir_module_free(m);

  /* Each program may write each slot once. */
  m = parse(
      "aidomm-ir 1\nslot \"w\": f32[4] init \"zeros\"\n"
      "program \"a\" {\n  %0: f32[4] = input \"x\"\n  state_out \"w.write\" (%0) {slot = \"w\"}\n}\n"
      "program \"b\" {\n  %0: f32[4] = input \"x\"\n  state_out \"w.write\" (%0) {slot = \"w\"}\n}\n");
  tu_ok(ir_verify_module(m));
  ir_module_free(m);
}
END_TEST

START_TEST(test_wrong_types) {
  ir_module_t *m = parse(k_base);
  ir_graph_t *g = m->programs[0];
  g->values[2].type.dtype = IR_DTYPE_F64; /* tanh's output */
  tu_expect_invalid(ir_verify_module(m), "program 'p', node #2 't' (tanh)",
              "output 0 has type f64[B,4], expected f32[B,4]");
  ir_module_free(m);

  /* A changed shape is caught at the node whose inference disagrees. */
  m = parse(k_base);
  g = m->programs[0];
  g->values[2].type.dims[1] = ir_dim_const(5);
  tu_expect_invalid(ir_verify_module(m), "node #2 't' (tanh)", "f32[B,5], expected f32[B,4]");
  ir_module_free(m);

  /* A state_in whose value no longer has the slot's type. */
  m = parse(k_base);
  g = m->programs[0];
  g->values[3].type.dims[0] = ir_dim_const(3);
  tu_expect_invalid(ir_verify_module(m), "node #3 'w.read' (state_in)", "f32[3], expected f32[4]");
  ir_module_free(m);

  /* Types that are not types at all. */
  m = parse(k_base);
  g = m->programs[0];
  g->values[1].type.rank = 9;
  tu_expect_invalid(ir_verify_module(m), "node #1 'r' (relu)", "output 0 has an invalid rank");
  g->values[1].type.rank = 2;
  g->values[1].type.dims[0].terms[0].sym_a = 5;
  tu_expect_invalid(ir_verify_module(m), "node #1 'r' (relu)", "undeclared symbol");
  ir_module_free(m);

  /* A scalar node whose declaration changed dtype. */
  m = parse(k_base);
  m->scalars[0].dtype = IR_DTYPE_F32;
  tu_expect_invalid(ir_verify_module(m), "node #7 'lr' (scalar)", "f64[], expected f32[]");
  ir_module_free(m);
}
END_TEST

START_TEST(test_structure) {
  /* Arity against the registry. */
  ir_module_t *m = parse(k_base);
  ir_graph_t *g = m->programs[0];
  node_named(g, "t")->ninputs = 0;
  tu_expect_invalid(ir_verify_module(m), "node #2 't' (tanh)", "takes 1..1 inputs, has 0");
  ir_module_free(m);

  /* Output bookkeeping. */
  m = parse(k_base);
  g = m->programs[0];
  g->values[2].index = 1;
  tu_expect_invalid(ir_verify_module(m), "node #2 't' (tanh)", "recorded as output 1 of node #2");
  ir_module_free(m);
  m = parse(k_base);
  g = m->programs[0];
  g->nvalues--; /* the last value (the scalar's) vanishes */
  tu_expect_invalid(ir_verify_module(m), "node #7 'lr' (scalar)", "beyond the 6 values");
  ir_module_free(m);

  /* Attributes must stay sorted with unique keys. */
  m = parse(k_base);
  g = m->programs[0];
  ir_node_t *s = node_named(g, "w.new");
  ir_attr_t *attrs = ad_arena_alloc(&m->arena, 2 * sizeof *attrs);
  attrs[0] = s->attrs[1];
  attrs[1] = s->attrs[0];
  s->attrs = attrs;
  tu_expect_invalid(ir_verify_module(m), "node #5 'w.new' (scale)", "not sorted by key");
  attrs[0] = attrs[1];
  tu_expect_invalid(ir_verify_module(m), "node #5 'w.new' (scale)", "('alpha' then 'alpha')");
  ir_module_free(m);

  /* Undeclared scalars and slots; a bad op id. */
  m = parse(k_base);
  g = m->programs[0];
  node_named(g, "lr")->name = "learning_rate";
  tu_expect_invalid(ir_verify_module(m), "'learning_rate'", "is not declared");
  ir_module_free(m);
  m = parse(k_base);
  g = m->programs[0];
  ir_attr_t *sa = ad_arena_alloc(&m->arena, sizeof *sa);
  *sa = IR_ATTR_S("slot", "nosuch");
  node_named(g, "w.write")->attrs = sa;
  tu_expect_invalid(ir_verify_module(m), "w.write", "'nosuch'");
  node_named(g, "w.write")->op = IR_OP_COUNT;
  tu_expect_invalid(ir_verify_module(m), "node #6 'w.write'", "invalid op id");
  ir_module_free(m);

  /* A pending builder error. */
  m = parse(k_base);
  g = m->programs[0];
  ir_node_desc_t d = {.op = IR_OP_RELU, .name = "bad", .inputs = (uint32_t[]){42}, .ninputs = 1};
  ir_build(g, &d);
  tu_expect_invalid(ir_verify_module(m), "program 'p' holds a builder error", "undefined value");
  ir_module_free(m);
}
END_TEST

START_TEST(test_module_rules) {
  ir_module_t *m = parse(k_base);
  ir_module_add_program(m, "p"); /* the module API does not refuse it; the verifier does */
  tu_expect_invalid(ir_verify_module(m), "program 'p' is defined twice", NULL);
  ir_module_free(m);

  m = parse(k_base);
  m->slots[0].type.dims[0] = ir_dim_sym(0);
  tu_expect_invalid(ir_verify_module(m), "state slot 'w' must have a static shape", NULL);
  ir_module_free(m);

  m = parse(k_base);
  m->symbols[0].bound = 0;
  tu_expect_invalid(ir_verify_module(m), "symbol 'B' has bound 0", NULL);
  ir_module_free(m);

  m = parse(
      "aidomm-ir 1\nslot \"a\": f32[1] init \"zeros\"\nslot \"b\": f32[1] init \"zeros\"\n");
  m->slots[1].name = m->slots[0].name;
  tu_expect_invalid(ir_verify_module(m), "state slot 'a' is declared twice", NULL);
  ir_module_free(m);

  m = parse("aidomm-ir 1\nscalar \"a\": f32 = 0\nscalar \"b\": f32 = 0\n");
  m->scalars[1].name = "a";
  tu_expect_invalid(ir_verify_module(m), "runtime scalar 'a' is declared twice", NULL);
  ir_module_free(m);

  /* A program from another module. */
  m = parse(k_base);
  ir_module_t *other = ir_module_create();
  m->programs[0]->module = other;
  tu_expect_invalid(ir_verify_module(m), "program 'p' belongs to another module", NULL);
  m->programs[0]->module = m;
  ir_module_free(other);
  ir_module_free(m);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ir_verify");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_valid_modules);
  tcase_add_test(tc, test_use_before_def);
  tcase_add_test(tc, test_duplicate_names);
  tcase_add_test(tc, test_state_order);
  tcase_add_test(tc, test_wrong_types);
  tcase_add_test(tc, test_structure);
  tcase_add_test(tc, test_module_rules);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(suite()); }
