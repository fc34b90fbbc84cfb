/* pass_autodiff and pass_lower_training: gradients of small f64 graphs against central finite
 * differences (Richardson-extrapolated) along random directions, run on rt_interp at actual
 * sizes below the bounds; explicit accumulation; no gradient where none is due; the AdamW
 * update and the eval program of the training lowering. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"
#include "runtime/interp.h"
#include "tests/support/test_util.h"

/* ---- building helpers ------------------------------------------------------------------ */

/* A trainable parameter slot and its read. */
static uint32_t param(ir_graph_t *g, const char *name, const char *type) {
  ir_type_t t = tu_type(g->module, type);
  ad_status_t st = ir_module_add_slot(g->module, name, &t, IR_SLOT_PARAM | IR_SLOT_TRAINABLE,
                                     "normal(0,0.02)", NULL);
  ck_assert_msg(st == AD_OK, "%s", ad_status_message(st));
  ir_attr_t a = IR_ATTR_S("slot", name);
  ir_node_desc_t d = {.op = IR_OP_STATE_IN, .name = name, .attrs = &a, .nattrs = 1};
  return ir_build(g, &d);
}

static uint32_t reshape(ir_graph_t *g, const char *name, uint32_t x, const char *type) {
  return tu_node_text(g, IR_OP_RESHAPE, name, &x, 1, NULL, 0, type);
}

static uint32_t permute(ir_graph_t *g, const char *name, uint32_t x) {
  static const int64_t perm[4] = {0, 2, 1, 3};
  ir_attr_t a = IR_ATTR_INTS("perm", perm, 4);
  return tu_node(g, IR_OP_PERMUTE, name, &x, 1, &a, 1, NULL);
}

static void output(ir_graph_t *g, const char *name, uint32_t v) {
  tu_node(g, IR_OP_OUTPUT, name, &v, 1, NULL, 0, NULL);
}

static void check_graph(ir_graph_t *g) {
  ad_status_t st = ir_graph_take_error(g);
  ck_assert_msg(st == AD_OK, "building: %s", ad_status_message(st));
}

/* ---- numbers ---------------------------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* splitmix64 -> [0, 1) */
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}
static double nrand(void) {
  double u = urand() + 1e-12, v = urand();
  return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* The module's parameter values, one buffer per slot, and their binding to an interpreter. */
typedef struct params {
  uint32_t n;
  double **val;
  size_t *numel;
} params_t;

static params_t params_init(const ir_module_t *m, double scale) {
  params_t p = {m->nslots, calloc(m->nslots, sizeof(double *)), calloc(m->nslots, sizeof(size_t))};
  int64_t sym[IR_MAX_SYMBOLS] = {0};
  for (uint32_t s = 0; s < m->nslots; s++) {
    ck_assert(m->slots[s].type.dtype == IR_DTYPE_F64);
    ir_shape_t sh = ir_type_shape(&m->slots[s].type, sym);
    p.numel[s] = (size_t)ir_shape_numel(&sh);
    p.val[s] = calloc(p.numel[s] ? p.numel[s] : 1, sizeof(double));
    if (!(m->slots[s].flags & IR_SLOT_OPTIM))
      for (size_t i = 0; i < p.numel[s]; i++) p.val[s][i] = scale * nrand();
  }
  return p;
}

static void params_free(params_t *p) {
  for (uint32_t s = 0; s < p->n; s++) free(p->val[s]);
  free(p->val);
  free(p->numel);
}

static void bind_all(rt_interp_t *it, const ir_module_t *m, params_t *p) {
  for (uint32_t s = 0; s < m->nslots; s++)
    tu_ok(rt_interp_bind_state(it, m->slots[s].name, p->val[s], p->numel[s] * sizeof(double)));
}

static double run_loss(rt_interp_t *it) {
  tu_ok(rt_interp_run(it, NULL));
  const ir_tensor_t *l = rt_interp_output(it, "loss");
  ck_assert_ptr_nonnull(l);
  return *(const double *)l->data;
}

/* d/dt loss(p + t*dir) at t=0 by central differences, Richardson-extrapolated:
 * (4 D(h/2) - D(h)) / 3 has truncation error O(h^4). */
static double fd_directional(rt_interp_t *it, double *p, const double *dir, size_t n, double h) {
  double *p0 = malloc(sizeof(double) * n);
  memcpy(p0, p, sizeof(double) * n);
  double d[2];
  for (int k = 0; k < 2; k++) {
    double hk = k ? h / 2 : h;
    for (size_t i = 0; i < n; i++) p[i] = p0[i] + hk * dir[i];
    double lp = run_loss(it);
    for (size_t i = 0; i < n; i++) p[i] = p0[i] - hk * dir[i];
    double lm = run_loss(it);
    d[k] = (lp - lm) / (2 * hk);
  }
  memcpy(p, p0, sizeof(double) * n);
  free(p0);
  return (4 * d[1] - d[0]) / 3;
}

static const ir_node_t *node_named(const ir_graph_t *g, const char *name) {
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
  return NULL;
}

/* ---- the model: linear -> tanh -> layernorm -> attention (+residual) -> masked mean pool ->
 *      linear head -> mse, in f64 over B <= 2, L <= 4 (run at B=2, L=3) -------------------- */

#define D_MODEL 4
#define N_OUT 3

typedef struct model {
  ir_module_t *m;
  ir_graph_t *g;
  uint32_t loss;
  uint32_t wrt[16];
  const char *wrt_name[16];
  uint32_t nwrt;
  uint32_t ln_out; /* four consumers: q, k, v projections and the residual */
} model_t;

static void add_wrt(model_t *md, const char *name, uint32_t v) {
  md->wrt_name[md->nwrt] = name;
  md->wrt[md->nwrt++] = v;
}

static model_t build_model(void) {
  model_t md = {0};
  md.m = ir_module_create();
  tu_ok(ir_module_add_symbol(md.m, "B", 2, NULL));
  tu_ok(ir_module_add_symbol(md.m, "L", 4, NULL));
  ir_graph_t *g = md.g = ir_module_add_program(md.m, "forward");
  uint32_t x = tu_input_text(g, "x", "f64[B,L,4]");
  uint32_t pmask = tu_input_text(g, "pool_mask", "f64[B,L]");
  uint32_t amask = tu_input_text(g, "attn_mask", "f64[B,1,1,L]");
  uint32_t target = tu_input_text(g, "target", "f64[B,3]");

  uint32_t w1 = param(g, "enc.dense.weight", "f64[4,4]");
  uint32_t b1 = param(g, "enc.dense.bias", "f64[4]");
  uint32_t lnw = param(g, "enc.ln.weight", "f64[4]");
  uint32_t lnb = param(g, "enc.ln.bias", "f64[4]");
  uint32_t wq = param(g, "attn.q.weight", "f64[4,4]");
  uint32_t wk = param(g, "attn.k.weight", "f64[4,4]");
  uint32_t wv = param(g, "attn.v.weight", "f64[4,4]");
  uint32_t bv = param(g, "attn.v.bias", "f64[4]");
  uint32_t wh = param(g, "head.weight", "f64[3,4]");
  uint32_t bh = param(g, "head.bias", "f64[3]");
  uint32_t unused = param(g, "aux.weight", "f64[4]");
  add_wrt(&md, "enc.dense.weight", w1);
  add_wrt(&md, "enc.dense.bias", b1);
  add_wrt(&md, "enc.ln.weight", lnw);
  add_wrt(&md, "enc.ln.bias", lnb);
  add_wrt(&md, "attn.q.weight", wq);
  add_wrt(&md, "attn.k.weight", wk);
  add_wrt(&md, "attn.v.weight", wv);
  add_wrt(&md, "attn.v.bias", bv);
  add_wrt(&md, "head.weight", wh);
  add_wrt(&md, "head.bias", bh);
  add_wrt(&md, "aux.weight", unused);

  uint32_t in3[3] = {x, w1, b1};
  uint32_t h = tu_node(g, IR_OP_LINEAR, "enc.dense", in3, 3, NULL, 0, NULL);
  h = tu_node(g, IR_OP_TANH, "enc.act", &h, 1, NULL, 0, NULL);
  ir_attr_t eps = IR_ATTR_F("eps", 1e-5);
  uint32_t lnin[3] = {h, lnw, lnb};
  uint32_t ln = md.ln_out = tu_node(g, IR_OP_LAYERNORM, "enc.ln", lnin, 3, &eps, 1, NULL);
  uint32_t q2[2] = {ln, wq}, k2[2] = {ln, wk}, v3[3] = {ln, wv, bv};
  uint32_t q = tu_node(g, IR_OP_LINEAR, "attn.q", q2, 2, NULL, 0, NULL);
  uint32_t k = tu_node(g, IR_OP_LINEAR, "attn.k", k2, 2, NULL, 0, NULL);
  uint32_t v = tu_node(g, IR_OP_LINEAR, "attn.v", v3, 3, NULL, 0, NULL);
  q = permute(g, "attn.q.heads", reshape(g, "attn.q.split", q, "f64[B,L,2,2]"));
  k = permute(g, "attn.k.heads", reshape(g, "attn.k.split", k, "f64[B,L,2,2]"));
  v = permute(g, "attn.v.heads", reshape(g, "attn.v.split", v, "f64[B,L,2,2]"));
  ir_attr_t scale = IR_ATTR_F("scale", 1.0 / sqrt(2.0));
  uint32_t qkvm[4] = {q, k, v, amask};
  uint32_t o = tu_node(g, IR_OP_ATTENTION, "attn.core", qkvm, 4, &scale, 1, NULL);
  o = reshape(g, "attn.merge", permute(g, "attn.unheads", o), "f64[B,L,4]");
  uint32_t res[2] = {o, ln};
  uint32_t r = tu_node(g, IR_OP_ADD, "attn.residual", res, 2, NULL, 0, NULL);
  uint32_t pool[2] = {r, pmask};
  uint32_t pooled = tu_node(g, IR_OP_MASKED_MEAN_POOL, "pool", pool, 2, NULL, 0, NULL);
  uint32_t hd[3] = {pooled, wh, bh};
  uint32_t pred = tu_node(g, IR_OP_LINEAR, "head", hd, 3, NULL, 0, NULL);
  uint32_t mse[2] = {pred, target};
  md.loss = tu_node(g, IR_OP_MSE, "loss_fn", mse, 2, NULL, 0, NULL);
  output(g, "pred", pred);
  output(g, "loss", md.loss);
  /* aux.weight reaches an output but not the loss. */
  uint32_t aux[2] = {pooled, unused};
  output(g, "aux", tu_node(g, IR_OP_MUL, "aux.mul", aux, 2, NULL, 0, NULL));
  check_graph(g);
  return md;
}

enum { TB = 2, TL = 3 }; /* actual sizes, below the bounds */

static void set_model_inputs(rt_interp_t *it) {
  double x[TB * TL * D_MODEL], pm[TB * TL], am[TB * TL], tg[TB * N_OUT];
  for (int i = 0; i < TB * TL * D_MODEL; i++) x[i] = nrand();
  for (int i = 0; i < TB * N_OUT; i++) tg[i] = nrand();
  /* Sample 1 has two valid positions: its last key is masked with finfo(f64).min. */
  for (int b = 0; b < TB; b++)
    for (int t = 0; t < TL; t++) {
      bool valid = b == 0 || t < 2;
      pm[b * TL + t] = valid ? 1.0 : 0.0;
      am[b * TL + t] = valid ? 0.0 : -DBL_MAX;
    }
  tu_ok(rt_interp_set_input(it, "x", x, sizeof x));
  tu_ok(rt_interp_set_input(it, "pool_mask", pm, sizeof pm));
  tu_ok(rt_interp_set_input(it, "attn_mask", am, sizeof am));
  tu_ok(rt_interp_set_input(it, "target", tg, sizeof tg));
}

START_TEST(test_model_gradients_match_finite_differences) {
  model_t md = build_model();
  ir_graph_t *g = md.g;
  uint32_t grads[16];
  uint32_t nodes_before = g->nnodes;
  tu_ok(pass_autodiff(g, md.loss, md.wrt, md.nwrt, grads));
  ck_assert_uint_gt(g->nnodes, nodes_before);
  for (uint32_t i = 0; i < md.nwrt; i++) {
    if (strcmp(md.wrt_name[i], "aux.weight") == 0) {
      ck_assert_msg(grads[i] == IR_NONE, "aux.weight does not reach the loss but got a gradient");
      continue;
    }
    ck_assert_msg(grads[i] != IR_NONE, "no gradient for %s", md.wrt_name[i]);
    ck_assert(ir_type_equal(&g->values[grads[i]].type, &g->values[md.wrt[i]].type));
    char name[128];
    snprintf(name, sizeof name, "grad:%s", md.wrt_name[i]);
    output(g, name, grads[i]);
  }
  check_graph(g);
  tu_ok(ir_verify_graph(g));
  /* The layernorm output feeds four nodes: three explicit accumulations, stably named. */
  for (int k = 1; k <= 3; k++) {
    char name[64];
    snprintf(name, sizeof name, "grad.enc.ln.acc%d", k);
    const ir_node_t *n = node_named(g, name);
    ck_assert_msg(n && n->op == IR_OP_ADD, "missing accumulation %s", name);
  }
  ck_assert_ptr_null(node_named(g, "grad.enc.ln.acc4"));
  /* Backward nodes are named after their forward node under "grad.". */
  for (uint32_t i = nodes_before; i < g->nnodes; i++) {
    if (g->nodes[i].op == IR_OP_OUTPUT) continue;
    ck_assert_msg(strncmp(g->nodes[i].name, "grad.", 5) == 0, "backward node '%s'",
                  g->nodes[i].name);
  }

  int64_t sym[2] = {TB, TL};
  rt_interp_t *it;
  tu_ok(rt_interp_create(g, sym, &it));
  g_rng = 42;
  set_model_inputs(it);
  params_t p = params_init(md.m, 0.5);
  bind_all(it, md.m, &p);
  double loss = run_loss(it);
  ck_assert(isfinite(loss) && loss > 0);
  /* Copy every gradient before the finite-difference runs overwrite the interpreter's values. */
  double *gcopy[16] = {0};
  for (uint32_t i = 0; i < md.nwrt; i++) {
    if (grads[i] == IR_NONE) continue;
    const ir_tensor_t *gt = rt_interp_value(it, grads[i]);
    size_t n = (size_t)ir_tensor_numel(gt);
    gcopy[i] = malloc(sizeof(double) * n);
    memcpy(gcopy[i], gt->data, sizeof(double) * n);
  }
  double worst = 0;
  for (uint32_t i = 0; i < md.nwrt; i++) {
    if (grads[i] == IR_NONE) continue;
    int64_t s = ir_module_find_slot(md.m, md.wrt_name[i]);
    ck_assert_int_ge(s, 0);
    size_t n = p.numel[s];
    const double *gv = gcopy[i];
    for (int dir_k = 0; dir_k < 2; dir_k++) {
      double *dir = malloc(sizeof(double) * n);
      double ad = 0;
      for (size_t j = 0; j < n; j++) {
        dir[j] = nrand();
        ad += gv[j] * dir[j];
      }
      double fd = fd_directional(it, p.val[s], dir, n, 1e-3);
      double rel = fabs(fd - ad) / fmax(fabs(ad), 1e-8);
      if (rel > worst) worst = rel;
      ck_assert_msg(rel < 1e-7,
                    "%s direction %d: autodiff %.15g, finite differences %.15g (rel %.3g)",
                    md.wrt_name[i], dir_k, ad, fd, rel);
      free(dir);
    }
    free(gcopy[i]);
  }
  printf("autodiff vs finite differences (linear/tanh/layernorm/attention/pool/mse, f64): "
         "worst relative error %.3g over %u parameters\n",
         worst, md.nwrt - 1);
  rt_interp_free(it);
  params_free(&p);
  ir_module_free(md.m);
}
END_TEST

/* One node reading a value twice, and that value read by a second node: both contributions
 * go through explicit ADDs, and the result still matches finite differences. */
START_TEST(test_accumulation_is_explicit) {
  ir_module_t *m = ir_module_create();
  tu_ok(ir_module_add_symbol(m, "B", 3, NULL));
  ir_graph_t *g = ir_module_add_program(m, "forward");
  uint32_t x = tu_input_text(g, "x", "f64[B,5]");
  uint32_t w = param(g, "w", "f64[5]");
  uint32_t ww[2] = {w, w};
  uint32_t sq = tu_node(g, IR_OP_MUL, "square", ww, 2, NULL, 0, NULL);
  uint32_t th = tu_node(g, IR_OP_TANH, "act", &w, 1, NULL, 0, NULL);
  uint32_t s2[2] = {sq, th};
  uint32_t s = tu_node(g, IR_OP_ADD, "sum", s2, 2, NULL, 0, NULL);
  uint32_t xs[2] = {x, s};
  uint32_t y = tu_node(g, IR_OP_MUL, "scaled", xs, 2, NULL, 0, NULL);
  static const int64_t axes[2] = {0, 1};
  ir_attr_t ra[2] = {IR_ATTR_INTS("axes", axes, 2), IR_ATTR_I("keepdim", 0)};
  uint32_t loss = tu_node(g, IR_OP_REDUCE_MEAN, "mean", &y, 1, ra, 2, NULL);
  output(g, "loss", loss);
  check_graph(g);

  uint32_t grad;
  tu_ok(pass_autodiff(g, loss, &w, 1, &grad));
  ck_assert(grad != IR_NONE);
  /* "w" has three contributions (square twice, act once): two accumulating ADDs. */
  const ir_node_t *a1 = node_named(g, "grad.w.acc1"), *a2 = node_named(g, "grad.w.acc2");
  ck_assert_msg(a1 && a1->op == IR_OP_ADD, "no explicit accumulation grad.w.acc1");
  ck_assert_msg(a2 && a2->op == IR_OP_ADD, "no explicit accumulation grad.w.acc2");
  ck_assert_ptr_null(node_named(g, "grad.w.acc3"));
  ck_assert_uint_eq(grad, a2->output0);
  ck_assert_uint_eq(a2->inputs[0], a1->output0);
  output(g, "grad:w", grad);
  check_graph(g);
  tu_ok(ir_verify_graph(g));

  int64_t sym[1] = {2};
  rt_interp_t *it;
  tu_ok(rt_interp_create(g, sym, &it));
  double xv[10];
  g_rng = 7;
  for (int i = 0; i < 10; i++) xv[i] = nrand();
  tu_ok(rt_interp_set_input(it, "x", xv, sizeof xv));
  double wv[5];
  for (int i = 0; i < 5; i++) wv[i] = nrand();
  tu_ok(rt_interp_bind_state(it, "w", wv, sizeof wv));
  tu_ok(rt_interp_run(it, NULL));
  const double *gv = rt_interp_output(it, "grad:w")->data;
  /* d/dw_j mean_{b,j}(x_bj (w_j^2 + tanh w_j)) = mean_b(x_bj) (2 w_j + 1 - tanh^2 w_j) / 5 */
  for (int j = 0; j < 5; j++) {
    double want = (xv[j] + xv[5 + j]) / 2 * (2 * wv[j] + 1 - tanh(wv[j]) * tanh(wv[j])) / 5;
    ck_assert_msg(fabs(gv[j] - want) <= 1e-14 * fmax(1, fabs(want)), "grad[%d] %.17g vs %.17g", j,
                  gv[j], want);
  }
  rt_interp_free(it);
  ir_module_free(m);
}
END_TEST

START_TEST(test_no_gradient_where_none_is_due) {
  ir_module_t *m = ir_module_create();
  ir_graph_t *g = ir_module_add_program(m, "forward");
  uint32_t x = tu_input_text(g, "x", "f64[4]");
  uint32_t ids = tu_input_text(g, "ids", "i64[2]");
  uint32_t table = param(g, "emb", "f64[6,4]");
  uint32_t lone = param(g, "lone", "f64[4]");
  uint32_t ti[2] = {table, ids};
  uint32_t e = tu_node(g, IR_OP_EMBEDDING, "embed", ti, 2, NULL, 0, NULL);
  uint32_t ex[2] = {e, x};
  uint32_t y = tu_node(g, IR_OP_MUL, "mul", ex, 2, NULL, 0, NULL);
  static const int64_t axes[2] = {0, 1};
  ir_attr_t ra[2] = {IR_ATTR_INTS("axes", axes, 2), IR_ATTR_I("keepdim", 0)};
  uint32_t loss = tu_node(g, IR_OP_REDUCE_SUM, "sum", &y, 1, ra, 2, NULL);
  uint32_t side = tu_node(g, IR_OP_TANH, "side.tanh", &lone, 1, NULL, 0, NULL);
  output(g, "loss", loss);
  output(g, "side", side);
  check_graph(g);

  uint32_t wrt[4] = {table, ids, x, lone}, grads[4];
  tu_ok(pass_autodiff(g, loss, wrt, 4, grads));
  ck_assert(grads[0] != IR_NONE); /* the table */
  ck_assert(grads[1] == IR_NONE); /* integer ids never get a gradient */
  ck_assert(grads[2] != IR_NONE); /* a float data input may be differentiated */
  ck_assert(grads[3] == IR_NONE); /* does not reach the loss */
  /* Nothing was emitted for the unrelated branch. */
  for (uint32_t i = 0; i < g->nnodes; i++)
    ck_assert_msg(strstr(g->nodes[i].name, "grad.side.tanh") == NULL, "node %s", g->nodes[i].name);
  tu_ok(ir_verify_graph(g));

  /* Nothing reaching the loss: no gradients and no nodes at all. */
  uint32_t before = g->nnodes, gl;
  tu_ok(pass_autodiff(g, loss, &lone, 1, &gl));
  ck_assert(gl == IR_NONE);
  ck_assert_uint_eq(g->nnodes, before);

  /* The loss must be a rank-0 float. */
  ad_status_t st = pass_autodiff(g, y, &table, 1, &gl);
  ck_assert_ptr_nonnull(st);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_INVALID_ARGUMENT);
  ck_assert_msg(strstr(ad_status_message(st), "rank-0") != NULL, "%s", ad_status_message(st));
  ad_status_free(st);
  ir_module_free(m);
}
END_TEST

/* ---- training lowering ----------------------------------------------------------------- */

static ir_module_t *build_train_module(void) {
  ir_module_t *m = ir_module_create();
  tu_ok(ir_module_add_symbol(m, "B", 4, NULL));
  tu_ok(ir_module_add_scalar(m, "seed", IR_DTYPE_I64, 0));
  tu_ok(ir_module_add_scalar(m, "step", IR_DTYPE_I64, 1));
  tu_ok(ir_module_add_scalar(m, "lr", IR_DTYPE_F64, 0.01));
  ir_graph_t *g = ir_module_add_program(m, "forward");
  uint32_t x = tu_input_text(g, "x", "f64[B,4]");
  uint32_t target = tu_input_text(g, "target", "f64[B,2]");
  ir_node_desc_t sd = {.op = IR_OP_SCALAR, .name = "seed"};
  uint32_t seed = ir_build(g, &sd);
  sd.name = "step";
  uint32_t step = ir_build(g, &sd);
  uint32_t w = param(g, "lin.weight", "f64[2,4]");
  uint32_t b = param(g, "lin.bias", "f64[2]");
  /* A parameter the forward never reads, and a frozen one it does read. */
  ir_type_t t4 = tu_type(m, "f64[4]");
  tu_ok(ir_module_add_slot(m, "pooler.weight", &t4, IR_SLOT_PARAM | IR_SLOT_TRAINABLE, "zeros",
                           NULL));
  tu_ok(ir_module_add_slot(m, "frozen.scale", &t4, IR_SLOT_PARAM, "ones", NULL));
  ir_attr_t fa = IR_ATTR_S("slot", "frozen.scale");
  ir_node_desc_t fd = {.op = IR_OP_STATE_IN, .name = "frozen.scale", .attrs = &fa, .nattrs = 1};
  uint32_t frozen = ir_build(g, &fd);
  uint32_t xf[2] = {x, frozen};
  uint32_t h = tu_node(g, IR_OP_MUL, "scale_in", xf, 2, NULL, 0, NULL);
  ir_attr_t da[2] = {IR_ATTR_S("key", "drop"), IR_ATTR_F("p", 0.25)};
  uint32_t dins[3] = {h, seed, step};
  h = tu_node(g, IR_OP_DROPOUT, "drop", dins, 3, da, 2, NULL);
  uint32_t lin[3] = {h, w, b};
  uint32_t pred = tu_node(g, IR_OP_LINEAR, "lin", lin, 3, NULL, 0, NULL);
  uint32_t mse[2] = {pred, target};
  uint32_t loss = tu_node(g, IR_OP_MSE, "loss_fn", mse, 2, NULL, 0, NULL);
  output(g, "pred", pred);
  output(g, "loss", loss);
  check_graph(g);
  return m;
}

START_TEST(test_lower_training_structure) {
  ir_module_t *m = build_train_module();
  pass_train_options_t o = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01,
                            .emit_grad_outputs = 1};
  tu_ok(pass_lower_training(m, &o));
  tu_ok(ir_verify_module(m));
  ir_graph_t *fwd = ir_module_find_program(m, "forward");
  ir_graph_t *ts = ir_module_find_program(m, "train_step");
  ir_graph_t *ev = ir_module_find_program(m, "eval");
  ck_assert_ptr_nonnull(fwd);
  ck_assert_ptr_nonnull(ts);
  ck_assert_ptr_nonnull(ev);

  /* Two trainable, read parameters: two AdamW updates and three state writes each. */
  ck_assert_int_eq(tu_count_op(ts, 0, IR_OP_ADAMW), 2);
  ck_assert_int_eq(tu_count_op(ts, 0, IR_OP_STATE_OUT), 6);
  ck_assert_ptr_nonnull(node_named(ts, "grad:lin.weight"));
  ck_assert_ptr_nonnull(node_named(ts, "grad:lin.bias"));
  ck_assert_ptr_null(node_named(ts, "grad:pooler.weight"));
  ck_assert_ptr_null(node_named(ts, "grad:frozen.scale"));
  ck_assert_ptr_nonnull(node_named(ts, "loss"));
  const char *moments[] = {"lin.weight.exp_avg", "lin.weight.exp_avg_sq", "lin.bias.exp_avg",
                           "lin.bias.exp_avg_sq"};
  for (int i = 0; i < 4; i++) {
    int64_t s = ir_module_find_slot(m, moments[i]);
    ck_assert_msg(s >= 0, "no slot %s", moments[i]);
    ck_assert_uint_eq(m->slots[s].flags, IR_SLOT_OPTIM);
    ck_assert_str_eq(m->slots[s].init, "zeros");
  }
  ck_assert_int_lt(ir_module_find_slot(m, "pooler.weight.exp_avg"), 0);
  ck_assert_int_lt(ir_module_find_slot(m, "frozen.scale.exp_avg"), 0);
  ck_assert_int_lt(ir_module_find_slot(m, "optimizer.step"), 0);
  ck_assert(m->slots[ir_module_find_slot(m, "pooler.weight")].flags & IR_SLOT_UNUSED);
  ck_assert(!(m->slots[ir_module_find_slot(m, "lin.weight")].flags & IR_SLOT_UNUSED));
  /* eval: no dropout, no state writes, same outputs. */
  ck_assert_int_eq(tu_count_op(ev, 0, IR_OP_DROPOUT), 0);
  ck_assert_int_eq(tu_count_op(ev, 0, IR_OP_STATE_OUT), 0);
  ck_assert_ptr_nonnull(node_named(ev, "loss"));
  ck_assert_ptr_nonnull(node_named(ev, "pred"));
  ck_assert_int_eq(tu_count_op(fwd, 0, IR_OP_DROPOUT), 1);

  /* Lowering twice is an error that names the program. */
  ad_status_t st = pass_lower_training(m, &o);
  ck_assert_ptr_nonnull(st);
  ck_assert_msg(strstr(ad_status_message(st), "train_step") != NULL, "%s", ad_status_message(st));
  ad_status_free(st);
  ir_module_free(m);

  ir_module_t *empty = ir_module_create();
  st = pass_lower_training(empty, &o);
  ck_assert_ptr_nonnull(st);
  ck_assert_msg(strstr(ad_status_message(st), "forward") != NULL, "%s", ad_status_message(st));
  ad_status_free(st);
  ir_module_free(empty);
}
END_TEST

/* train_step's gradients match finite differences of the same step's loss (dropout's mask is
 * a function of seed, step and key, so it is fixed across the evaluations), and the parameters
 * move by exactly torch's AdamW rule at step 1. */
START_TEST(test_train_step_numerics) {
  ir_module_t *m = build_train_module();
  pass_train_options_t o = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01,
                            .emit_grad_outputs = 1};
  tu_ok(pass_lower_training(m, &o));
  ir_graph_t *ts = ir_module_find_program(m, "train_step");
  ir_graph_t *fwd = ir_module_find_program(m, "forward");
  int64_t sym[1] = {3};
  g_rng = 99;
  double x[12], tg[6];
  for (int i = 0; i < 12; i++) x[i] = nrand();
  for (int i = 0; i < 6; i++) tg[i] = nrand();
  int64_t seed = 1234, step = 1;
  double lr = 0.05;
  params_t p = params_init(m, 0.7);
  params_t p0 = params_init(m, 0.0);
  for (uint32_t s = 0; s < m->nslots; s++)
    memcpy(p0.val[s], p.val[s], p.numel[s] * sizeof(double));

  /* Finite differences on the forward program (no state writes). */
  rt_interp_t *fit;
  tu_ok(rt_interp_create(fwd, sym, &fit));
  tu_ok(rt_interp_set_input(fit, "x", x, sizeof x));
  tu_ok(rt_interp_set_input(fit, "target", tg, sizeof tg));
  tu_ok(rt_interp_set_input(fit, "seed", &seed, sizeof seed));
  tu_ok(rt_interp_set_input(fit, "step", &step, sizeof step));
  bind_all(fit, m, &p0); /* train_step writes p; the forward keeps reading the old values */

  rt_interp_t *it;
  tu_ok(rt_interp_create(ts, sym, &it));
  tu_ok(rt_interp_set_input(it, "x", x, sizeof x));
  tu_ok(rt_interp_set_input(it, "target", tg, sizeof tg));
  tu_ok(rt_interp_set_input(it, "seed", &seed, sizeof seed));
  tu_ok(rt_interp_set_input(it, "step", &step, sizeof step));
  tu_ok(rt_interp_set_input(it, "lr", &lr, sizeof lr));
  bind_all(it, m, &p);
  tu_ok(rt_interp_run(it, NULL));
  double loss_ts = *(const double *)rt_interp_output(it, "loss")->data;
  ck_assert_double_eq(loss_ts, run_loss(fit));

  const char *names[2] = {"lin.weight", "lin.bias"};
  for (int k = 0; k < 2; k++) {
    char gname[64];
    snprintf(gname, sizeof gname, "grad:%s", names[k]);
    const ir_tensor_t *gt = rt_interp_output(it, gname);
    ck_assert_ptr_nonnull(gt);
    int64_t s = ir_module_find_slot(m, names[k]);
    size_t n = p.numel[s];
    const double *gv = gt->data;
    double *dir = malloc(sizeof(double) * n), ad = 0;
    for (size_t j = 0; j < n; j++) {
      dir[j] = nrand();
      ad += gv[j] * dir[j];
    }
    double fd = fd_directional(fit, p0.val[s], dir, n, 1e-3);
    ck_assert_msg(fabs(fd - ad) <= 1e-7 * fmax(fabs(ad), 1e-8), "%s: autodiff %.15g, fd %.15g",
                  names[k], ad, fd);
    free(dir);
    /* AdamW (torch.optim.AdamW) at step 1 from zero moments. */
    int64_t sm = ir_module_find_slot(m, ad_arena_printf(&m->arena, "%s.exp_avg", names[k]));
    int64_t sv = ir_module_find_slot(m, ad_arena_printf(&m->arena, "%s.exp_avg_sq", names[k]));
    for (size_t j = 0; j < n; j++) {
      double g = gv[j];
      double mj = (1 - o.beta1) * g, vj = (1 - o.beta2) * g * g;
      double mhat = mj / (1 - o.beta1), vhat = vj / (1 - o.beta2);
      double want = p0.val[s][j] * (1 - lr * o.weight_decay) - lr * mhat / (sqrt(vhat) + o.eps);
      ck_assert_msg(fabs(p.val[s][j] - want) <= 1e-12 * fmax(1, fabs(want)),
                    "%s[%zu]: %.17g, want %.17g", names[k], j, p.val[s][j], want);
      ck_assert_msg(fabs(p.val[sm][j] - mj) <= 1e-14 * fabs(mj) + 1e-300,
                    "exp_avg %.17g vs %.17g", p.val[sm][j], mj);
      ck_assert_msg(fabs(p.val[sv][j] - vj) <= 1e-14 * fabs(vj) + 1e-300, "exp_avg_sq");
    }
  }
  /* Frozen and unused parameters are untouched. */
  for (uint32_t s = 0; s < m->nslots; s++) {
    const char *nm = m->slots[s].name;
    if (strcmp(nm, "pooler.weight") && strcmp(nm, "frozen.scale")) continue;
    ck_assert(memcmp(p.val[s], p0.val[s], p.numel[s] * sizeof(double)) == 0);
  }
  rt_interp_free(it);
  rt_interp_free(fit);
  params_free(&p);
  params_free(&p0);
  ir_module_free(m);
}
END_TEST

static Suite *autodiff_suite(void) {
  Suite *s = suite_create("autodiff");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_model_gradients_match_finite_differences);
  tcase_add_test(tc, test_accumulation_is_explicit);
  tcase_add_test(tc, test_no_gradient_where_none_is_due);
  tcase_add_test(tc, test_lower_training_structure);
  tcase_add_test(tc, test_train_step_numerics);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(autodiff_suite()); }
