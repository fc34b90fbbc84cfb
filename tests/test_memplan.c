/* pass_memplan: on random DAGs and on a forward+backward graph, every pair of simultaneously
 * live values gets disjoint byte ranges (liveness recomputed here independently), reuse=0 gives
 * pairwise disjoint ranges with peak == total, reuse lowers the peak, state reads get no
 * storage, sizes are the bound sizes aligned to 64 bytes. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ops/ops_internal.h" /* ir_emit helpers */
#include "passes/passes.h"
#include "tests/support/test_util.h"

static uint32_t g_rng = 12345;
static uint32_t rnd(uint32_t n) {
  g_rng = g_rng * 1664525u + 1013904223u;
  return (g_rng >> 8) % n;
}

/* Live interval of every value: [producer, last consumer], OUTPUT consumers extend to the end. */
static void live_ranges(const ir_graph_t *g, uint32_t *b, uint32_t *e) {
  for (uint32_t v = 0; v < g->nvalues; v++) b[v] = e[v] = g->values[v].node;
  for (uint32_t i = 0; i < g->nnodes; i++)
    for (uint32_t j = 0; j < g->nodes[i].ninputs; j++) {
      uint32_t v = g->nodes[i].inputs[j];
      uint32_t end = g->nodes[i].op == IR_OP_OUTPUT ? g->nnodes - 1 : i;
      if (end > e[v]) e[v] = end;
    }
}

/* Checks every invariant of a plan; returns the number of conflicting pairs checked. */
static uint64_t check_plan(const ir_graph_t *g, const pass_memplan_t *p, int reuse) {
  ck_assert_uint_eq(p->nvalues, g->nvalues);
  int64_t bounds[IR_MAX_SYMBOLS];
  ir_module_bounds(g->module, bounds);
  uint32_t *b = malloc(sizeof *b * g->nvalues), *e = malloc(sizeof *e * g->nvalues);
  live_ranges(g, b, e);
  int64_t total = 0, top = 0;
  for (uint32_t v = 0; v < g->nvalues; v++) {
    const ir_type_t *t = &g->values[v].type;
    ir_shape_t s = ir_type_shape(t, bounds);
    int64_t bytes = ir_shape_numel(&s) * (int64_t)ir_dtype_size(t->dtype);
    ck_assert_int_ge(p->size[v], bytes);
    ck_assert_int_lt(p->size[v], bytes + 64);
    ck_assert_int_eq(p->size[v] % 64, 0);
    if (g->nodes[g->values[v].node].op == IR_OP_STATE_IN) {
      ck_assert_int_eq(p->offset[v], -1);
      continue;
    }
    ck_assert_int_ge(p->offset[v], 0);
    ck_assert_int_eq(p->offset[v] % 64, 0);
    total += p->size[v];
    if (p->offset[v] + p->size[v] > top) top = p->offset[v] + p->size[v];
  }
  ck_assert_int_eq(p->total_bytes, total);
  ck_assert_int_eq(p->peak_bytes, top);
  uint64_t conflicts = 0;
  for (uint32_t u = 0; u < g->nvalues; u++) {
    if (p->offset[u] < 0 || p->size[u] == 0) continue;
    for (uint32_t v = u + 1; v < g->nvalues; v++) {
      if (p->offset[v] < 0 || p->size[v] == 0) continue;
      bool live_together = b[u] <= e[v] && b[v] <= e[u];
      if (!live_together && reuse) continue;
      conflicts++;
      bool disjoint = p->offset[u] + p->size[u] <= p->offset[v] ||
                      p->offset[v] + p->size[v] <= p->offset[u];
      ck_assert_msg(disjoint,
                    "values %%%u [%u,%u] and %%%u [%u,%u] overlap: [%lld,+%lld) [%lld,+%lld)",
                    u, b[u], e[u], v, b[v], e[v], (long long)p->offset[u], (long long)p->size[u],
                    (long long)p->offset[v], (long long)p->size[v]);
    }
  }
  free(b);
  free(e);
  return conflicts;
}

/* A random DAG of elementwise ops over three shape classes of different sizes and dtypes,
 * with a parameter read per class and a few outputs. */
static ir_module_t *random_dag(uint32_t nnodes) {
  ir_module_t *m = ir_module_create();
  tu_ok(ir_module_add_symbol(m, "B", 4, NULL));
  tu_ok(ir_module_add_symbol(m, "L", 10, NULL));
  ir_graph_t *g = ir_module_add_program(m, "forward");
  static const char *const types[3] = {"f32[B,16]", "f64[B,L,16]", "f32[L,3]"};
  static const char *const ptypes[3] = {"f32[16]", "f64[16]", "f32[3]"};
  uint32_t *vals[3];
  uint32_t nv[3] = {0, 0, 0};
  for (int c = 0; c < 3; c++) {
    vals[c] = malloc(sizeof(uint32_t) * (nnodes + 2));
    char name[32];
    snprintf(name, sizeof name, "in%d", c);
    ir_type_t t = tu_type(m, types[c]);
    ir_node_desc_t d = {.op = IR_OP_INPUT, .name = name, .out_types = &t, .nout_types = 1};
    vals[c][nv[c]++] = ir_build(g, &d);
    snprintf(name, sizeof name, "p%d", c);
    ir_type_t pt = tu_type(m, ptypes[c]);
    tu_ok(ir_module_add_slot(m, name, &pt, IR_SLOT_PARAM | IR_SLOT_TRAINABLE, "zeros", NULL));
    ir_attr_t a = IR_ATTR_S("slot", name);
    ir_node_desc_t sd = {.op = IR_OP_STATE_IN, .name = name, .attrs = &a, .nattrs = 1};
    vals[c][nv[c]++] = ir_build(g, &sd);
  }
  static const ir_op_t unary[3] = {IR_OP_TANH, IR_OP_EXP, IR_OP_NEG};
  static const ir_op_t binary[3] = {IR_OP_ADD, IR_OP_MUL, IR_OP_SUB};
  for (uint32_t i = 0; i < nnodes; i++) {
    int c = (int)rnd(3);
    /* Mostly recent values, sometimes old ones: long and short lifetimes. */
    uint32_t a = nv[c] - 1 - rnd(nv[c] < 4 ? nv[c] : 4);
    uint32_t b = rnd(nv[c]);
    uint32_t v;
    if (rnd(2))
      v = ir_emit1(g, unary[rnd(3)], vals[c][a]);
    else
      v = ir_emit2(g, binary[rnd(3)], vals[c][a], vals[c][b]);
    vals[c][nv[c]++] = v;
    if (rnd(10) == 0) {
      char name[32];
      snprintf(name, sizeof name, "out%u", i);
      ir_node_desc_t d = {.op = IR_OP_OUTPUT, .name = name, .inputs = &v, .ninputs = 1};
      ir_build(g, &d);
    }
  }
  for (int c = 0; c < 3; c++) {
    char name[32];
    snprintf(name, sizeof name, "final%d", c);
    ir_node_desc_t d = {.op = IR_OP_OUTPUT, .name = name, .inputs = &vals[c][nv[c] - 1],
                        .ninputs = 1};
    ir_build(g, &d);
    free(vals[c]);
  }
  tu_ok(ir_graph_take_error(g));
  return m;
}

START_TEST(test_random_dags_no_overlap) {
  uint64_t pairs = 0;
  for (int trial = 0; trial < 20; trial++) {
    ir_module_t *m = random_dag(40 + (uint32_t)trial * 10);
    ir_graph_t *g = m->programs[0];
    pass_memplan_t p;
    tu_ok(pass_memplan(g, 1, &p));
    pairs += check_plan(g, &p, 1);
    ck_assert_int_lt(p.peak_bytes, p.total_bytes);
    pass_memplan_t q;
    tu_ok(pass_memplan(g, 0, &q));
    check_plan(g, &q, 0);
    ck_assert_int_eq(q.peak_bytes, q.total_bytes);
    ck_assert_int_eq(q.total_bytes, p.total_bytes);
    pass_memplan_free(&p);
    pass_memplan_free(&q);
    ir_module_free(m);
  }
  printf("memplan: %llu simultaneously-live pairs checked disjoint over 20 random DAGs\n",
         (unsigned long long)pairs);
}
END_TEST

/* A forward + backward graph (many values live from the forward into the backward). */
START_TEST(test_backward_graph) {
  ir_module_t *m = ir_module_create();
  tu_ok(ir_module_add_symbol(m, "B", 8, NULL));
  ir_graph_t *g = ir_module_add_program(m, "forward");
  ir_type_t xt = tu_type(m, "f64[B,32]");
  ir_node_desc_t d = {.op = IR_OP_INPUT, .name = "x", .out_types = &xt, .nout_types = 1};
  uint32_t h = ir_build(g, &d);
  uint32_t wrt[6];
  for (int l = 0; l < 6; l++) {
    char name[32];
    snprintf(name, sizeof name, "layers.%d.scale", l);
    ir_type_t pt = tu_type(m, "f64[32]");
    tu_ok(ir_module_add_slot(m, name, &pt, IR_SLOT_PARAM | IR_SLOT_TRAINABLE, "ones", NULL));
    ir_attr_t a = IR_ATTR_S("slot", name);
    ir_node_desc_t sd = {.op = IR_OP_STATE_IN, .name = name, .attrs = &a, .nattrs = 1};
    wrt[l] = ir_build(g, &sd);
    uint32_t y = ir_emit2(g, IR_OP_MUL, h, wrt[l]);
    h = ir_emit2(g, IR_OP_ADD, ir_emit1(g, IR_OP_TANH, y), h);
  }
  static const int64_t axes[2] = {0, 1};
  ir_attr_t ra[2] = {IR_ATTR_INTS("axes", axes, 2), IR_ATTR_I("keepdim", 0)};
  uint32_t loss = ir_emit(g, IR_OP_REDUCE_MEAN, &h, 1, ra, 2);
  ir_node_desc_t od = {.op = IR_OP_OUTPUT, .name = "loss", .inputs = &loss, .ninputs = 1};
  ir_build(g, &od);
  tu_ok(ir_graph_take_error(g));
  uint32_t grads[6];
  tu_ok(pass_autodiff(g, loss, wrt, 6, grads));
  for (int l = 0; l < 6; l++) {
    char name[32];
    snprintf(name, sizeof name, "grad:%d", l);
    ir_node_desc_t gd = {.op = IR_OP_OUTPUT, .name = name, .inputs = &grads[l], .ninputs = 1};
    ir_build(g, &gd);
  }
  tu_ok(ir_graph_take_error(g));
  pass_memplan_t p, q;
  tu_ok(pass_memplan(g, 1, &p));
  tu_ok(pass_memplan(g, 0, &q));
  check_plan(g, &p, 1);
  check_plan(g, &q, 0);
  ck_assert_int_lt(p.peak_bytes, p.total_bytes);
  ck_assert_int_eq(q.peak_bytes, q.total_bytes);
  printf("memplan forward+backward (%u values): peak %lld of %lld bytes\n", g->nvalues,
         (long long)p.peak_bytes, (long long)p.total_bytes);

  ad_buf_t b = {0};
  pass_memplan_print(g, &p, &b);
  ad_buf_put_u8(&b, 0);
  const char *text = (const char *)b.data;
  char head[128];
  snprintf(head, sizeof head,
           "; memory plan of program 'forward': peak %lld bytes, %lld without reuse",
           (long long)p.peak_bytes, (long long)p.total_bytes);
  ck_assert_msg(strncmp(text, head, strlen(head)) == 0, "%.200s", text);
  int lines = 0;
  for (const char *c = text; *c; c++) lines += *c == '\n';
  ck_assert_int_eq(lines, (int)g->nvalues + 2);
  ck_assert_msg(strstr(text, "slot") && strstr(text, "layers.0.scale"), "%.300s", text);
  ad_buf_free(&b);
  pass_memplan_free(&p);
  pass_memplan_free(&q);
  ir_module_free(m);
}
END_TEST

/* A chain a -> b -> c -> d of equal sizes needs two buffers, not four. */
START_TEST(test_chain_reuses_two_buffers) {
  ir_module_t *m = ir_module_create();
  ir_graph_t *g = ir_module_add_program(m, "forward");
  ir_type_t t = tu_type(m, "f32[1000]");
  ir_node_desc_t d = {.op = IR_OP_INPUT, .name = "x", .out_types = &t, .nout_types = 1};
  uint32_t v = ir_build(g, &d);
  for (int i = 0; i < 5; i++) v = ir_emit1(g, IR_OP_TANH, v);
  ir_node_desc_t od = {.op = IR_OP_OUTPUT, .name = "y", .inputs = &v, .ninputs = 1};
  ir_build(g, &od);
  tu_ok(ir_graph_take_error(g));
  pass_memplan_t p;
  tu_ok(pass_memplan(g, 1, &p));
  check_plan(g, &p, 1);
  ck_assert_int_eq(p.size[0], 4032); /* 4000 bytes aligned up to 64 */
  ck_assert_int_eq(p.peak_bytes, 2 * 4032);
  ck_assert_int_eq(p.total_bytes, 6 * 4032);
  pass_memplan_free(&p);
  ir_module_free(m);
}
END_TEST

static Suite *memplan_suite(void) {
  Suite *s = suite_create("memplan");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_random_dags_no_overlap);
  tcase_add_test(tc, test_backward_graph);
  tcase_add_test(tc, test_chain_reuses_two_buffers);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(memplan_suite()); }
