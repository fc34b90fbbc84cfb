/* passes/lora.c and passes/freeze.c on small hand-built programs: PEFT's target matching and
 * naming, the LoRA arithmetic (checked against a direct computation), trainability, value ids
 * held by the caller, failure leaving the module untouched, and freezing by prefix. The same
 * passes against the peer's own PEFT model are in tests/test_rnabert.c. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"
#include "runtime/interp.h"

#define IN 16
#define OUT 8
#define R 2

typedef struct prog {
  ir_module_t *m;
  ir_graph_t *g;
  uint32_t x, early, y_q, y_k, out;
} prog_t;

static ir_type_t f64_type(int rank, const int64_t *dims) {
  ir_type_t t;
  memset(&t, 0, sizeof t);
  t.dtype = IR_DTYPE_F64;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = ir_dim_const(dims[i]);
  return t;
}

static uint32_t param(prog_t *p, const char *name, int rank, const int64_t *dims) {
  ir_type_t t = f64_type(rank, dims);
  ck_assert(!ir_module_add_slot(p->m, name, &t, IR_SLOT_PARAM | IR_SLOT_TRAINABLE, "zeros", NULL));
  ir_attr_t a = IR_ATTR_S("slot", name);
  ir_node_desc_t d = {.op = IR_OP_STATE_IN, .name = name, .attrs = &a, .nattrs = 1,
                      .out_types = &t, .nout_types = 1};
  return ir_build(p->g, &d);
}

static uint32_t linear(prog_t *p, const char *name, uint32_t x, uint32_t w, uint32_t b) {
  uint32_t ins[3] = {x, w, b};
  ir_node_desc_t d = {.op = IR_OP_LINEAR, .name = name, .inputs = ins,
                      .ninputs = b == IR_NONE ? 2 : 3};
  return ir_build(p->g, &d);
}

/* x [3, IN] -> query (with bias) and self_key (no bias) of "bb", plus a layer of "other" named
 * query too; out = query(x) + self_key(x) + other.query(x). */
static void make(prog_t *p) {
  p->m = ir_module_create();
  p->g = ir_module_add_program(p->m, "forward");
  ir_type_t xt = f64_type(2, (const int64_t[]){3, IN});
  ir_node_desc_t in = {.op = IR_OP_INPUT, .name = "x", .out_types = &xt, .nout_types = 1};
  p->x = ir_build(p->g, &in);
  ir_attr_t sc[2] = {IR_ATTR_F("alpha", 1.0), IR_ATTR_F("beta", 0.0)};
  ir_node_desc_t e = {.op = IR_OP_SCALE, .name = "early", .inputs = &p->x, .ninputs = 1,
                      .attrs = sc, .nattrs = 2};
  p->early = ir_build(p->g, &e);
  const int64_t wd[2] = {OUT, IN}, bd[1] = {OUT};
  uint32_t wq = param(p, "bb.encoder.base_model.model.l.0.attn.query.weight", 2, wd);
  uint32_t bq = param(p, "bb.encoder.base_model.model.l.0.attn.query.bias", 1, bd);
  uint32_t wk = param(p, "bb.encoder.base_model.model.l.0.attn.self_key.weight", 2, wd);
  uint32_t wo = param(p, "other.encoder.base_model.model.query.weight", 2, wd);
  p->y_q = linear(p, "bb.encoder.base_model.model.l.0.attn.query", p->early, wq, bq);
  p->y_k = linear(p, "bb.encoder.base_model.model.l.0.attn.self_key", p->x, wk, IR_NONE);
  uint32_t y_o = linear(p, "other.query", p->x, wo, IR_NONE);
  uint32_t a1[2] = {p->y_q, p->y_k};
  ir_node_desc_t s1 = {.op = IR_OP_ADD, .name = "sum1", .inputs = a1, .ninputs = 2};
  uint32_t s = ir_build(p->g, &s1);
  uint32_t a2[2] = {s, y_o};
  ir_node_desc_t s2 = {.op = IR_OP_ADD, .name = "sum2", .inputs = a2, .ninputs = 2};
  p->out = ir_build(p->g, &s2);
  ir_node_desc_t o = {.op = IR_OP_OUTPUT, .name = "out", .inputs = &p->out, .ninputs = 1};
  ir_build(p->g, &o);
  ck_assert(!ir_graph_take_error(p->g));
}

static uint32_t slot_flags(const ir_module_t *m, const char *name) {
  int64_t i = ir_module_find_slot(m, name);
  ck_assert_msg(i >= 0, "no slot %s", name);
  return m->slots[i].flags;
}

START_TEST(test_lora_rewrite) {
  prog_t p;
  make(&p);
  ir_graph_t *g0 = p.g;
  const char *targets[1] = {"query"};
  pass_lora_options_t o = {.prefix = "bb", .targets = targets, .ntargets = 1, .r = R,
                           .alpha = 4.0, .dropout = 0.0};
  uint32_t held[2] = {p.early, p.out}, n = 0;
  ad_status_t st = pass_lora(p.m, p.g, &o, held, 2, &n);
  ck_assert_msg(!st, "%s", st ? ad_status_message(st) : "");
  ck_assert_uint_eq(n, 1); /* "other.*" is another backbone: untouched */
  ck_assert_ptr_eq(ir_module_find_program(p.m, "forward"), g0);
  ck_assert_uint_eq(p.m->nprograms, 1);
  ck_assert_uint_eq(held[0], p.early); /* produced before the first rewrite: same id */
  ck_assert_uint_ne(held[1], p.out);
  ck_assert(!ir_verify_module(p.m));
  const char *A = "bb.encoder.base_model.model.l.0.attn.query.lora_A.default.weight";
  const char *B = "bb.encoder.base_model.model.l.0.attn.query.lora_B.default.weight";
  ck_assert_int_lt(ir_module_find_slot(p.m, "bb.encoder.base_model.model.l.0.attn.query.weight"), 0);
  ck_assert_uint_eq(slot_flags(p.m, "bb.encoder.base_model.model.l.0.attn.query.base_layer.weight"),
                    IR_SLOT_PARAM);
  ck_assert_uint_eq(slot_flags(p.m, "bb.encoder.base_model.model.l.0.attn.query.base_layer.bias"),
                    IR_SLOT_PARAM);
  ck_assert_uint_eq(slot_flags(p.m, "bb.encoder.base_model.model.l.0.attn.self_key.weight"),
                    IR_SLOT_PARAM); /* PEFT freezes every non-LoRA parameter of the model */
  ck_assert_uint_eq(slot_flags(p.m, "other.encoder.base_model.model.query.weight"),
                    IR_SLOT_PARAM | IR_SLOT_TRAINABLE);
  ck_assert_uint_eq(slot_flags(p.m, A), IR_SLOT_PARAM | IR_SLOT_TRAINABLE);
  ck_assert_uint_eq(slot_flags(p.m, B), IR_SLOT_PARAM | IR_SLOT_TRAINABLE);
  const ir_state_slot_t *sa = &p.m->slots[ir_module_find_slot(p.m, A)];
  const ir_state_slot_t *sb = &p.m->slots[ir_module_find_slot(p.m, B)];
  int64_t d0, d1;
  ck_assert(ir_dim_is_const(sa->type.dims[0], &d0) && ir_dim_is_const(sa->type.dims[1], &d1));
  ck_assert(d0 == R && d1 == IN);
  ck_assert(ir_dim_is_const(sb->type.dims[0], &d0) && ir_dim_is_const(sb->type.dims[1], &d1));
  ck_assert(d0 == OUT && d1 == R);
  ck_assert_str_eq(sa->init, "uniform(-0.25,0.25)"); /* kaiming_uniform(a=sqrt 5): 1/sqrt(16) */
  ck_assert_str_eq(sb->init, "zeros");

  /* out = (W e + b) + 2 * B A e + K x + O x with e = x, checked numerically. */
  double x[3 * IN], wq[OUT * IN], bq[OUT], wk[OUT * IN], wo[OUT * IN], a[R * IN], bm[OUT * R];
  srand(3);
#define FILL(arr) \
  for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) arr[i] = rand() / (double)RAND_MAX - 0.5
  FILL(x);
  FILL(wq);
  FILL(bq);
  FILL(wk);
  FILL(wo);
  FILL(a);
  FILL(bm);
  int64_t sym[IR_MAX_SYMBOLS] = {0};
  rt_interp_t *it = NULL;
  ck_assert(!rt_interp_create(p.g, sym, &it));
  ck_assert(!rt_interp_set_input(it, "x", x, sizeof x));
  ck_assert(!rt_interp_bind_state(it, "bb.encoder.base_model.model.l.0.attn.query.base_layer.weight",
                                  wq, sizeof wq));
  ck_assert(!rt_interp_bind_state(it, "bb.encoder.base_model.model.l.0.attn.query.base_layer.bias",
                                  bq, sizeof bq));
  ck_assert(!rt_interp_bind_state(it, "bb.encoder.base_model.model.l.0.attn.self_key.weight", wk,
                                  sizeof wk));
  ck_assert(!rt_interp_bind_state(it, "other.encoder.base_model.model.query.weight", wo, sizeof wo));
  ck_assert(!rt_interp_bind_state(it, A, a, sizeof a));
  ck_assert(!rt_interp_bind_state(it, B, bm, sizeof bm));
  ck_assert(!rt_interp_run(it, NULL));
  const ir_tensor_t *out = rt_interp_output(it, "out");
  ck_assert_ptr_nonnull(out);
  const double *got = out->data;
  double worst = 0;
  for (int n3 = 0; n3 < 3; n3++)
    for (int o2 = 0; o2 < OUT; o2++) {
      double ax[R] = {0}, want = bq[o2], lora = 0;
      for (int i = 0; i < IN; i++) {
        want += wq[o2 * IN + i] * x[n3 * IN + i] + wk[o2 * IN + i] * x[n3 * IN + i] +
                wo[o2 * IN + i] * x[n3 * IN + i];
        for (int r = 0; r < R; r++) ax[r] += a[r * IN + i] * x[n3 * IN + i];
      }
      for (int r = 0; r < R; r++) lora += bm[o2 * R + r] * ax[r];
      want += 2.0 * lora;
      worst = fmax(worst, fabs(got[n3 * OUT + o2] - want));
    }
  ck_assert_msg(worst < 1e-13, "lora forward off by %g", worst);
  rt_interp_free(it);
  ir_module_free(p.m);
}
END_TEST

/* PEFT matches the whole name or a ".<target>" suffix, never a bare substring. */
START_TEST(test_lora_matching) {
  static const struct {
    const char *target;
    uint32_t hits;
  } cases[] = {{"attn.query", 1}, {"l.0.attn.self_key", 1}, {"key", 0}, {"uery", 0},
               {"bb.encoder.base_model.model.l.0.attn.query", 0}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    prog_t p;
    make(&p);
    const char *targets[1] = {cases[c].target};
    pass_lora_options_t o = {.prefix = "bb", .targets = targets, .ntargets = 1, .r = R,
                             .alpha = 8.0, .dropout = 0.1};
    uint32_t n = 0, nslots = p.m->nslots;
    ad_status_t st = pass_lora(p.m, p.g, &o, NULL, 0, &n);
    if (cases[c].hits) {
      ck_assert_msg(!st, "%s: %s", cases[c].target, st ? ad_status_message(st) : "");
      ck_assert_uint_eq(n, cases[c].hits);
      ck_assert(!ir_verify_module(p.m));
      /* dropout on the LoRA input, keyed by its node name, with the module's seed/step */
      uint32_t nd = 0;
      for (uint32_t i = 0; i < p.g->nnodes; i++)
        if (p.g->nodes[i].op == IR_OP_DROPOUT) {
          nd++;
          ck_assert_str_eq(ir_node_attr_string(&p.g->nodes[i], "key", ""), p.g->nodes[i].name);
          ck_assert(strstr(p.g->nodes[i].name, ".lora_dropout.default"));
        }
      ck_assert_uint_eq(nd, 1);
      ck_assert_ptr_nonnull(ir_module_find_scalar(p.m, "seed"));
    } else {
      ck_assert_msg(st != NULL, "%s matched", cases[c].target);
      ck_assert_msg(strstr(ad_status_message(st), "not found in the base model"), "%s",
                    ad_status_message(st));
      ad_status_free(st);
      /* failure leaves the module as it was */
      ck_assert_uint_eq(p.m->nslots, nslots);
      ck_assert_uint_eq(p.m->nprograms, 1);
      ck_assert_int_ge(ir_module_find_slot(p.m, "bb.encoder.base_model.model.l.0.attn.query.weight"), 0);
      ck_assert(p.m->slots[0].flags & IR_SLOT_TRAINABLE);
    }
    ir_module_free(p.m);
  }
}
END_TEST

START_TEST(test_lora_bad_options) {
  prog_t p;
  make(&p);
  const char *targets[1] = {"query"};
  pass_lora_options_t o = {.prefix = "bb", .targets = targets, .ntargets = 1, .r = 0,
                           .alpha = 8.0, .dropout = 0.0};
  ad_status_t st = pass_lora(p.m, p.g, &o, NULL, 0, NULL);
  ck_assert(st != NULL);
  ad_status_free(st);
  o.r = 2;
  o.dropout = 1.0;
  st = pass_lora(p.m, p.g, &o, NULL, 0, NULL);
  ck_assert(st != NULL);
  ad_status_free(st);
  ir_module_free(p.m);
}
END_TEST

START_TEST(test_freeze) {
  prog_t p;
  make(&p);
  /* a slot whose name merely starts with the prefix text is not under it */
  ir_type_t t = f64_type(1, (const int64_t[]){2});
  ck_assert(!ir_module_add_slot(p.m, "bbx.w", &t, IR_SLOT_PARAM | IR_SLOT_TRAINABLE, "zeros",
                                NULL));
  uint32_t n = 0;
  ck_assert(!pass_freeze(p.m, "bb.encoder", &n));
  ck_assert_uint_eq(n, 3);
  ck_assert_uint_eq(slot_flags(p.m, "bb.encoder.base_model.model.l.0.attn.query.weight"),
                    IR_SLOT_PARAM);
  ck_assert_uint_eq(slot_flags(p.m, "bbx.w"), IR_SLOT_PARAM | IR_SLOT_TRAINABLE);
  ck_assert_uint_eq(slot_flags(p.m, "other.encoder.base_model.model.query.weight"),
                    IR_SLOT_PARAM | IR_SLOT_TRAINABLE);
  ck_assert(!pass_freeze(p.m, "bb.encoder", &n)); /* idempotent */
  ck_assert_uint_eq(n, 0);
  ad_status_t st = pass_freeze(p.m, "b", NULL);
  ck_assert(st != NULL);
  ck_assert(strstr(ad_status_message(st), "no parameter slot under 'b'"));
  ad_status_free(st);
  ir_module_free(p.m);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("lora");
  TCase *tc = tcase_create("passes");
  tcase_add_test(tc, test_lora_rewrite);
  tcase_add_test(tc, test_lora_matching);
  tcase_add_test(tc, test_lora_bad_options);
  tcase_add_test(tc, test_freeze);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
