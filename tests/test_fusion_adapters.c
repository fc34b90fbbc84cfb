/* Fusions and adapters against the peer's modules (tools/golden/fusion_adapters.py): each case
 * builds the component on INPUT nodes standing in for the backbones' outputs, through the
 * class's own ops with hand-filled arguments, loads the fixture's parameters into the state
 * slots, runs forward and reverse mode on the reference interpreter and compares the output,
 * the fused embedding, and the gradients w.r.t. every parameter and every hidden input (f64 to
 * 1e-10; f32 forward 1e-5, gradients 1e-4). Also: slot names and shapes equal the peer's keys,
 * dropout nodes where the peer has Dropout, and the configuration errors. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/fe_internal.h"
#include "passes/passes.h"
#include "runtime/interp.h"
#include "runtime/safetensors.h"
#include "support/golden.h"

/* ---- hand-filled arguments --------------------------------------------------------------- */
static fe_node_t g_section = {.kind = FE_NODE_MAP, .file = "<test>", .line = 1, .col = 1};

/* Argument storage for one class: typed defaults, then "name=value" settings. Lists are
 * "a,b,c" (ints). Everything lives in static pools (tests are single-threaded). */
static fe_node_t g_nodes[256];
static fe_node_t *g_items[256];
static int g_nnodes, g_nitems;

static fe_node_t *scalar_node(const char *text) {
  ck_assert_int_lt(g_nnodes, 256);
  fe_node_t *n = &g_nodes[g_nnodes++];
  *n = (fe_node_t){.kind = FE_NODE_SCALAR, .file = "<test>", .line = 2, .col = 3, .scalar = text};
  return n;
}

static void set_value(const fe_arg_spec_t *s, fe_arg_value_t *v, const char *text) {
  memset(v, 0, sizeof *v);
  fe_node_t *n = scalar_node(text);
  v->node = n;
  switch (s->type) {
    case FE_ARG_INT: ck_assert(fe_scalar_int(n, &v->i)); break;
    case FE_ARG_FLOAT: ck_assert(fe_scalar_float(n, &v->f)); break;
    case FE_ARG_BOOL: ck_assert(fe_scalar_bool(n, &v->b)); break;
    case FE_ARG_STRING: v->s = text; break;
    case FE_ARG_LIST: {
      fe_node_t *seq = &g_nodes[g_nnodes++];
      *seq = (fe_node_t){.kind = FE_NODE_SEQ, .file = "<test>", .line = 2, .col = 3};
      seq->items = &g_items[g_nitems];
      char *copy = strdup(text), *save = NULL;
      for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        g_items[g_nitems++] = scalar_node(strdup(tok)); /* leaked on purpose: test lifetime */
        seq->n++;
      }
      free(copy);
      v->list = seq;
      v->node = seq;
      break;
    }
    default: ck_abort_msg("argument type not settable here");
  }
}

static void defaults(const fe_class_t *cls, fe_arg_value_t *a) {
  for (uint32_t i = 0; i < cls->nargs; i++) {
    memset(&a[i], 0, sizeof a[i]);
    if (cls->args[i].dflt && cls->args[i].type != FE_ARG_CLASS) {
      set_value(&cls->args[i], &a[i], cls->args[i].dflt);
      a[i].node = NULL; /* defaulted: no place */
    }
  }
}

/* args: defaults of cls with "k=v" settings separated by ';'. */
static fe_arg_value_t *make_args(const fe_class_t *cls, const char *settings) {
  fe_arg_value_t *a = calloc(FE_MAX_ARGS, sizeof *a);
  defaults(cls, a);
  if (!settings) return a;
  char *copy = strdup(settings), *save = NULL;
  for (char *kv = strtok_r(copy, ";", &save); kv; kv = strtok_r(NULL, ";", &save)) {
    char *eq = strchr(kv, '=');
    ck_assert_ptr_nonnull(eq);
    *eq = 0;
    int i = fe_class_arg_index(cls, kv);
    ck_assert_msg(i >= 0, "%s has no argument %s", cls->class_path, kv);
    set_value(&cls->args[i], &a[i], strdup(eq + 1));
  }
  free(copy);
  return a;
}

static const fe_class_t *cls_of(const char *path) {
  const fe_class_t *c = fe_find_class(path);
  ck_assert_msg(c != NULL, "class %s is not registered", path);
  return c;
}

/* ---- the component cases -------------------------------------------------------------------- */
typedef enum kind { K_FUSION, K_MM, K_HEAD } kind_t;

typedef struct tcase_def {
  const char *name;
  kind_t kind;
  const char *cls;
  const char *settings;
  const char *inner_fusion, *fusion_settings; /* K_MM */
  const char *inner_adapter, *adapter_settings;
  uint32_t n; /* modalities (K_FUSION / K_MM); heads: 1 */
  bool pooled_in; /* heads: the input is [B, H] without a mask */
  int64_t out_features;
} tcase_def_t;

#define FUS "modelgenerator.adapters.fusion."
#define ADA "modelgenerator.adapters."
static const tcase_def_t k_fusion_cases[] = {
    {"cross2", K_FUSION, FUS "CrossAttentionFusion", "num_attention_heads=4", .n = 2},
    {"concat2", K_FUSION, FUS "ConcatFusion", "project_size=8", .n = 2},
    {"concat3", K_FUSION, FUS "ConcatFusion", "project_size=8", .n = 3},
    {"concat3_cls", K_FUSION, FUS "ConcatFusion", "project_size=8;pooling=cls_pooling", .n = 3},
};
static const tcase_def_t k_adapter_cases[] = {
    {"mmseq2", K_MM, ADA "MMFusionSeqAdapter", NULL, FUS "CrossAttentionFusion",
     "num_attention_heads=4", ADA "MLPPoolAdapter",
     "pooling=mean_pooling;hidden_sizes=8;dropout=0.0;dropout_in_middle=false", 2, false, 30},
    {"mmtoken2", K_MM, ADA "MMFusionTokenAdapter", NULL, FUS "ConcatFusion", "project_size=8",
     ADA "MLPAdapter", "hidden_sizes=16;dropout=0.0;dropout_in_middle=false", 2, false, 30},
    {"mmtoken3", K_MM, ADA "MMFusionTokenAdapter", NULL, FUS "ConcatFusion", "project_size=8",
     ADA "MLPAdapter", "hidden_sizes=16;dropout=0.0;dropout_in_middle=false", 3, false, 30},
    {"mlp", K_HEAD, ADA "MLPAdapter", "hidden_sizes=10,6;dropout_in_middle=true", .n = 1,
     .pooled_in = true, .out_features = 5},
    {"mlp_nobias_relu", K_HEAD, ADA "MLPAdapter",
     "hidden_sizes=9;bias=false;activation_layer=torch.nn.ReLU;dropout_in_middle=false", .n = 1,
     .pooled_in = true, .out_features = 5},
    {"linear", K_HEAD, ADA "LinearAdapter", NULL, .n = 1, .pooled_in = true, .out_features = 5},
    {"mlppool_mean", K_HEAD, ADA "MLPPoolAdapter", "hidden_sizes=8", .n = 1, .out_features = 5},
    {"mlppool_cls", K_HEAD, ADA "MLPPoolAdapter", "pooling=cls_pooling;hidden_sizes=8", .n = 1,
     .out_features = 5},
    {"linear_cls", K_HEAD, ADA "LinearCLSAdapter", NULL, .n = 1, .out_features = 5},
    {"linear_mean", K_HEAD, ADA "LinearMeanPoolAdapter", NULL, .n = 1, .out_features = 5},
    {"linear_max", K_HEAD, ADA "LinearMaxPoolAdapter", NULL, .n = 1, .out_features = 5},
};
static const tcase_def_t k_mmseq3_case = {"mmseq3",
                                          K_MM,
                                          ADA "MMFusionSeqAdapter",
                                          NULL,
                                          FUS "CrossAttentionFusion",
                                          "num_attention_heads=4",
                                          ADA "MLPPoolAdapter",
                                          "pooling=mean_pooling;hidden_sizes=8;dropout=0.0;"
                                          "dropout_in_middle=false",
                                          3,
                                          false,
                                          30};

typedef struct built {
  ir_module_t *m;
  ir_graph_t *g;
  fe_build_ctx_t b;
  uint32_t h[3], mask[3];
  uint32_t out, fused;
  fe_arg_value_t *args, *inner[2];
} built_t;

static const rt_st_tensor_t *fx(const rt_st_file_t *f, const char *fmt, const char *a,
                                const char *b) {
  char key[512];
  snprintf(key, sizeof key, fmt, a, b);
  const rt_st_tensor_t *t = rt_st_find(f, key);
  ck_assert_msg(t != NULL, "fixture lacks %s", key);
  return t;
}

static const char *const k_hnames[3] = {"h0", "h1", "h2"};
static const char *const k_mnames[3] = {"m0", "m1", "m2"};

/* Builds the component over INPUT nodes whose static sizes H come from the fixture; length
 * and batch symbols have bounds above the actual sizes. Returns the build status. */
static ad_status_t build_case(const tcase_def_t *c, const rt_st_file_t *f, ir_dtype_t dt,
                              double dropout_p, built_t *o) {
  memset(o, 0, sizeof *o);
  o->m = ir_module_create();
  int sb = -1, sl[3] = {-1, -1, -1};
  ck_assert(!ir_module_add_symbol(o->m, "B", 3, &sb));
  o->g = ir_module_add_program(o->m, "forward");
  o->b = (fe_build_ctx_t){.module = o->m,
                          .forward = o->g,
                          .dtype = dt,
                          .sym_batch = sb,
                          .sym_len = -1,
                          .section = &g_section};
  fe_seq_t ins[3];
  for (uint32_t i = 0; i < c->n; i++) {
    const rt_st_tensor_t *h = fx(f, "%s/in/%s", c->name, k_hnames[i]);
    char sym[16];
    snprintf(sym, sizeof sym, "L%u", i);
    ir_type_t ht;
    memset(&ht, 0, sizeof ht);
    ht.dtype = dt;
    ht.rank = h->rank;
    ht.dims[0] = ir_dim_sym(sb);
    if (h->rank == 3) {
      ck_assert(!ir_module_add_symbol(o->m, sym, h->shape[1] + 3, &sl[i]));
      ht.dims[1] = ir_dim_sym(sl[i]);
    }
    ht.dims[h->rank - 1] = ir_dim_const(h->shape[h->rank - 1]);
    ir_node_desc_t d = {.op = IR_OP_INPUT, .name = k_hnames[i], .out_types = &ht, .nout_types = 1};
    o->h[i] = ir_build(o->g, &d);
    o->mask[i] = IR_NONE;
    if (h->rank == 3 && !c->pooled_in) {
      char key[64];
      snprintf(key, sizeof key, "%s/in/%s", c->name, k_mnames[i]);
      if (rt_st_find(f, key)) {
        ir_type_t mt = ht;
        mt.rank = 2;
        ir_node_desc_t dm = {
            .op = IR_OP_INPUT, .name = k_mnames[i], .out_types = &mt, .nout_types = 1};
        o->mask[i] = ir_build(o->g, &dm);
      }
    }
    ins[i] = (fe_seq_t){.hidden = o->h[i],
                        .mask = o->mask[i],
                        .size = h->shape[h->rank - 1],
                        .len_sym = sl[i]};
  }
  const fe_class_t *cls = cls_of(c->cls);
  char set[512];
  ad_status_t st = NULL;
  if (c->kind == K_FUSION) {
    o->args = make_args(cls, c->settings);
    fe_component_ctx_t cc = {
        .b = &o->b, .prefix = "adapter.fusion_module", .cls = cls, .args = o->args};
    fe_seq_t out;
    st = cls->fusion->build(&cc, ins, c->n, &out);
    o->out = o->fused = out.hidden;
  } else if (c->kind == K_MM) {
    const fe_class_t *fc = cls_of(c->inner_fusion), *ac = cls_of(c->inner_adapter);
    o->inner[0] = make_args(fc, c->fusion_settings);
    snprintf(set, sizeof set, "%s", c->adapter_settings);
    if (dropout_p > 0) { /* the seed configs' dropout */
      char *d = strstr(set, "dropout=0.0");
      if (d) memcpy(d, "dropout=0.1", 11);
    }
    o->inner[1] = make_args(ac, set);
    o->args = calloc(FE_MAX_ARGS, sizeof *o->args);
    o->args[0] = (fe_arg_value_t){.node = &g_section, .cls = fc, .args = o->inner[0]};
    o->args[1] = (fe_arg_value_t){.node = &g_section, .cls = ac, .args = o->inner[1]};
    fe_component_ctx_t cc = {.b = &o->b, .prefix = "adapter", .cls = cls, .args = o->args};
    st = cls->adapter->build_mm(&cc, ins, c->n, c->out_features, &o->out);
    o->fused = IR_NONE;
    for (uint32_t i = 0; i < o->g->nnodes; i++) { /* the fusion module's last node */
      const char *nm = o->g->nodes[i].name;
      if (strncmp(nm, "adapter.fusion_module.", 22) == 0 && o->g->nodes[i].op != IR_OP_STATE_IN)
        o->fused = o->g->nodes[i].output0;
    }
  } else {
    o->args = make_args(cls, c->settings);
    fe_component_ctx_t cc = {.b = &o->b, .prefix = "adapter", .cls = cls, .args = o->args};
    st = cls->adapter->build(&cc, &ins[0], c->out_features, &o->out);
    o->fused = IR_NONE;
  }
  if (!st) st = ir_graph_take_error(o->g);
  return st;
}

static void free_built(built_t *o) {
  free(o->args);
  free(o->inner[0]);
  free(o->inner[1]);
  ir_module_free(o->m);
}

static const ir_node_t *find_node(const ir_graph_t *g, const char *name) {
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
  return NULL;
}

static uint32_t emit(ir_graph_t *g, ir_op_t op, const char *name, const uint32_t *ins, uint32_t n,
                     const ir_attr_t *at, uint32_t na, const ir_type_t *ty) {
  ir_node_desc_t d = {.op = op,
                      .name = name,
                      .inputs = ins,
                      .ninputs = n,
                      .attrs = at,
                      .nattrs = na,
                      .out_types = ty,
                      .nout_types = ty ? 1 : 0};
  return ir_build(g, &d);
}

/* A buffer of `t`'s values converted to dt (fixtures store parameters and inputs as f32). */
static void *convert(const rt_st_tensor_t *t, ir_dtype_t dt, size_t *bytes) {
  int64_t n = rt_st_numel(t);
  *bytes = (size_t)n * ir_dtype_size(dt);
  void *p = malloc(*bytes ? *bytes : 1);
  for (int64_t i = 0; i < n; i++) {
    double v = t->dtype == RT_ST_F32 ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
    if (dt == IR_DTYPE_F32)
      ((float *)p)[i] = (float)v;
    else
      ((double *)p)[i] = v;
  }
  return p;
}

static void check_out(const rt_interp_t *it, const char *output, const rt_st_tensor_t *want,
                      double tol, const char *cname) {
  const ir_tensor_t *got = rt_interp_output(it, output);
  ck_assert_msg(got != NULL, "%s: no output %s", cname, output);
  ir_tensor_t w;
  ck_assert(rt_st_as_ir_tensor(want, &w));
  char label[512];
  snprintf(label, sizeof label, "%s %s", cname, output);
  double e = golden_compare(label, got, &w, tol);
  ck_assert_msg(e <= tol, "%s: relative error %g > %g", label, e, tol);
}

static void run_golden(const tcase_def_t *c, const char *file) {
  char *path = golden_path(file);
  rt_st_file_t *f = NULL;
  ad_status_t st = rt_st_open(path, &f);
  free(path);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  const char *dts = rt_st_metadata(f, "dtype");
  ck_assert_ptr_nonnull(dts);
  ir_dtype_t dt = strcmp(dts, "f64") == 0 ? IR_DTYPE_F64 : IR_DTYPE_F32;
  double tol_f = dt == IR_DTYPE_F64 ? 1e-10 : 1e-5, tol_g = dt == IR_DTYPE_F64 ? 1e-10 : 1e-4;
  built_t o;
  st = build_case(c, f, dt, 0.0, &o);
  ck_assert_msg(!st, "%s: %s", c->name, ad_status_message(st));

  /* The slots are exactly the peer's parameters, with its shapes. */
  char pfx[128];
  snprintf(pfx, sizeof pfx, "%s/p/", c->name);
  uint32_t nparams = 0;
  for (size_t i = 0; i < rt_st_count(f); i++) {
    const rt_st_tensor_t *t = rt_st_at(f, i);
    if (strncmp(t->name, pfx, strlen(pfx)) != 0) continue;
    nparams++;
    int64_t s = ir_module_find_slot(o.m, t->name + strlen(pfx));
    ck_assert_msg(s >= 0, "%s: no slot for the peer's %s", c->name, t->name + strlen(pfx));
    const ir_type_t *ty = &o.m->slots[s].type;
    ck_assert_int_eq(ty->rank, t->rank);
    for (int d = 0; d < ty->rank; d++) {
      int64_t v = -1;
      ck_assert(ir_dim_is_const(ty->dims[d], &v));
      ck_assert_msg(v == t->shape[d], "%s: %s dim %d is %lld, peer %lld", c->name, t->name, d,
                    (long long)v, (long long)t->shape[d]);
    }
    ck_assert_uint_eq(o.m->slots[s].flags, IR_SLOT_PARAM | IR_SLOT_TRAINABLE);
  }
  ck_assert_msg(nparams == o.m->nslots, "%s: %u slots, the peer has %u parameters", c->name,
                o.m->nslots, nparams);

  /* loss = sum(out * cot); gradients w.r.t. every parameter and hidden input. */
  ir_graph_t *g = o.g;
  const rt_st_tensor_t *cot = fx(f, "%s/cot%s", c->name, "");
  ir_type_t ct = *ir_value_type(g, o.out);
  uint32_t cv = emit(g, IR_OP_INPUT, "cot", NULL, 0, NULL, 0, &ct);
  uint32_t oc[2] = {o.out, cv};
  uint32_t prod = emit(g, IR_OP_MUL, "loss.mul", oc, 2, NULL, 0, NULL);
  int64_t axes[IR_MAX_RANK];
  for (int i = 0; i < ct.rank; i++) axes[i] = i;
  ir_attr_t ra[2] = {IR_ATTR_INTS("axes", axes, ct.rank), IR_ATTR_I("keepdim", 0)};
  uint32_t loss = emit(g, IR_OP_REDUCE_SUM, "loss", &prod, 1, ra, 2, NULL);
  emit(g, IR_OP_OUTPUT, "out", &o.out, 1, NULL, 0, NULL);
  if (o.fused != IR_NONE && o.fused != o.out)
    emit(g, IR_OP_OUTPUT, "fused", &o.fused, 1, NULL, 0, NULL);
  uint32_t nw = o.m->nslots + c->n;
  uint32_t *wrt = calloc(nw, sizeof *wrt), *dw = calloc(nw, sizeof *dw);
  for (uint32_t i = 0; i < o.m->nslots; i++) {
    const ir_node_t *n = find_node(g, o.m->slots[i].name);
    ck_assert_ptr_nonnull(n);
    wrt[i] = n->output0;
  }
  for (uint32_t i = 0; i < c->n; i++) wrt[o.m->nslots + i] = o.h[i];
  st = pass_autodiff(g, loss, wrt, nw, dw);
  ck_assert_msg(!st, "%s: %s", c->name, ad_status_message(st));
  for (uint32_t i = 0; i < nw; i++) {
    char name[300];
    if (i < o.m->nslots)
      snprintf(name, sizeof name, "g:%s", o.m->slots[i].name);
    else
      snprintf(name, sizeof name, "gin:%s", k_hnames[i - o.m->nslots]);
    ck_assert_msg(dw[i] != IR_NONE, "%s: no gradient for %s", c->name, name);
    emit(g, IR_OP_OUTPUT, name, &dw[i], 1, NULL, 0, NULL);
  }
  st = ir_graph_take_error(g);
  ck_assert_msg(!st, "%s: %s", c->name, ad_status_message(st));
  ck_assert_msg(!ir_verify_module(o.m), "%s: module does not verify", c->name);

  /* Run at the fixture's actual sizes. */
  int64_t sym[IR_MAX_SYMBOLS] = {0};
  const rt_st_tensor_t *h0 = fx(f, "%s/in/%s", c->name, "h0");
  sym[0] = h0->shape[0];
  for (uint32_t i = 0; i < c->n; i++) {
    const rt_st_tensor_t *h = fx(f, "%s/in/%s", c->name, k_hnames[i]);
    char sn[16];
    snprintf(sn, sizeof sn, "L%u", i);
    int s = ir_module_find_symbol(o.m, sn);
    if (s >= 0) sym[s] = h->shape[1];
  }
  rt_interp_t *it = NULL;
  st = rt_interp_create(g, sym, &it);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  void *bufs[64];
  int nb = 0;
  size_t bytes;
  for (uint32_t i = 0; i < c->n; i++) {
    bufs[nb] = convert(fx(f, "%s/in/%s", c->name, k_hnames[i]), dt, &bytes);
    ck_assert(!rt_interp_set_input(it, k_hnames[i], bufs[nb++], bytes));
    if (o.mask[i] != IR_NONE) {
      bufs[nb] = convert(fx(f, "%s/in/%s", c->name, k_mnames[i]), dt, &bytes);
      ck_assert(!rt_interp_set_input(it, k_mnames[i], bufs[nb++], bytes));
    }
  }
  bufs[nb] = convert(cot, dt, &bytes);
  ck_assert(!rt_interp_set_input(it, "cot", bufs[nb++], bytes));
  void **state = calloc(o.m->nslots, sizeof *state);
  for (uint32_t i = 0; i < o.m->nslots; i++) {
    state[i] = convert(fx(f, "%s/p/%s", c->name, o.m->slots[i].name), dt, &bytes);
    st = rt_interp_bind_state(it, o.m->slots[i].name, state[i], bytes);
    ck_assert_msg(!st, "%s", ad_status_message(st));
  }
  st = rt_interp_run(it, NULL);
  ck_assert_msg(!st, "%s: %s", c->name, ad_status_message(st));

  check_out(it, "out", fx(f, "%s/out%s", c->name, ""), tol_f, c->name);
  if (o.fused != IR_NONE && o.fused != o.out)
    check_out(it, "fused", fx(f, "%s/fused%s", c->name, ""), tol_f, c->name);
  for (uint32_t i = 0; i < nw; i++) {
    char name[300];
    const rt_st_tensor_t *want;
    if (i < o.m->nslots) {
      snprintf(name, sizeof name, "g:%s", o.m->slots[i].name);
      want = fx(f, "%s/g/%s", c->name, o.m->slots[i].name);
    } else {
      snprintf(name, sizeof name, "gin:%s", k_hnames[i - o.m->nslots]);
      want = fx(f, "%s/gin/%s", c->name, k_hnames[i - o.m->nslots]);
    }
    size_t ln = strlen(name);
    if (ln > 9 && strcmp(name + ln - 9, ".key.bias") == 0 && strstr(name, "cross_attention")) {
      /* Softmax is shift-invariant along a row, so the key bias gets an analytically zero
       * gradient: both sides are round-off; bound ours at the key weight gradient's scale. */
      char wname[300];
      snprintf(wname, sizeof wname, "%.*sweight", (int)(ln - 4 - strlen("g:")), name + 2);
      ir_tensor_t w;
      ck_assert(rt_st_as_ir_tensor(fx(f, "%s/g/%s", c->name, wname), &w));
      const ir_tensor_t *got = rt_interp_output(it, name);
      double scale = 0, mx = 0;
      for (int64_t k = 0; k < ir_tensor_numel(&w); k++) {
        double v = dt == IR_DTYPE_F64 ? ((double *)w.data)[k] : ((float *)w.data)[k];
        scale = fmax(scale, fabs(v));
      }
      for (int64_t k = 0; k < ir_tensor_numel(got); k++) {
        double v = dt == IR_DTYPE_F64 ? ((double *)got->data)[k] : ((float *)got->data)[k];
        mx = fmax(mx, fabs(v));
      }
      ck_assert_msg(mx <= tol_g * scale, "%s %s: %g is not round-off of 0 (scale %g)", c->name,
                    name, mx, scale);
      continue;
    }
    check_out(it, name, want, tol_g, c->name);
  }
  rt_interp_free(it);
  for (int i = 0; i < nb; i++) free(bufs[i]);
  for (uint32_t i = 0; i < o.m->nslots; i++) free(state[i]);
  free(state);
  free(wrt);
  free(dw);
  free_built(&o);
  rt_st_close(f);
}

START_TEST(test_fusion_f64) {
  run_golden(&k_fusion_cases[_i], "tests/golden/fusion_f64.safetensors");
}
END_TEST
START_TEST(test_fusion_f32) {
  run_golden(&k_fusion_cases[_i], "tests/golden/fusion_f32.safetensors");
}
END_TEST
START_TEST(test_adapters_f64) {
  run_golden(&k_adapter_cases[_i], "tests/golden/adapters_f64.safetensors");
}
END_TEST
START_TEST(test_adapters_f32) {
  run_golden(&k_adapter_cases[_i], "tests/golden/adapters_f32.safetensors");
}
END_TEST
START_TEST(test_mmseq3) {
  run_golden(&k_mmseq3_case, _i ? "tests/golden/adapters_mmseq3_f32.safetensors"
                                : "tests/golden/adapters_mmseq3_f64.safetensors");
}
END_TEST

/* ---- structure: dropout placement, defaults, full-size parameter counts ------------------- */
static int count_op(const ir_graph_t *g, ir_op_t op) {
  int n = 0;
  for (uint32_t i = 0; i < g->nnodes; i++) n += g->nodes[i].op == op;
  return n;
}

static uint64_t param_count(const ir_module_t *m, const char *prefix) {
  uint64_t n = 0;
  for (uint32_t i = 0; i < m->nslots; i++) {
    if (prefix && strncmp(m->slots[i].name, prefix, strlen(prefix)) != 0) continue;
    uint64_t k = 1;
    for (int d = 0; d < m->slots[i].type.rank; d++) {
      int64_t v = 0;
      ck_assert(ir_dim_is_const(m->slots[i].type.dims[d], &v));
      k *= (uint64_t)v;
    }
    n += k;
  }
  return n;
}

START_TEST(test_dropout_nodes) {
  /* The configs' dropout 0.1: Dropout at index 0 of the MLP (MLPAdapter: adapter.adapter.0;
   * MLPPoolAdapter: adapter.adapter.mlp.0), keyed by its own name, fed by seed and step. */
  char *path = golden_path("tests/golden/adapters_f32.safetensors");
  rt_st_file_t *f = NULL;
  ck_assert(!rt_st_open(path, &f));
  free(path);
  built_t o;
  ad_status_t st = build_case(&k_adapter_cases[1], f, IR_DTYPE_F32, 0.1, &o);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  const ir_node_t *d = find_node(o.g, "adapter.adapter.0");
  ck_assert_ptr_nonnull(d);
  ck_assert_int_eq(d->op, IR_OP_DROPOUT);
  ck_assert(ir_node_attr_float(d, "p", 0) == 0.1);
  ck_assert_str_eq(ir_node_attr_string(d, "key", ""), "adapter.adapter.0");
  ck_assert_str_eq(ir_value_producer(o.g, d->inputs[1])->name, "seed");
  ck_assert_str_eq(ir_value_producer(o.g, d->inputs[2])->name, "step");
  ck_assert_ptr_nonnull(ir_module_find_scalar(o.m, "seed"));
  ck_assert_int_eq(count_op(o.g, IR_OP_DROPOUT), 1); /* dropout_in_middle false */
  ck_assert_int_eq(count_op(o.g, IR_OP_SCALAR), 2);
  ck_assert_int_ge(ir_module_find_slot(o.m, "adapter.adapter.1.weight"), 0);
  ck_assert_int_ge(ir_module_find_slot(o.m, "adapter.adapter.3.bias"), 0);
  free_built(&o);
  st = build_case(&k_adapter_cases[0], f, IR_DTYPE_F32, 0.1, &o);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  d = find_node(o.g, "adapter.adapter.mlp.0");
  ck_assert_ptr_nonnull(d);
  ck_assert_int_eq(d->op, IR_OP_DROPOUT);
  const ir_node_t *att = find_node(o.g, "adapter.fusion_module.cross_attention_layer_01.attention");
  ck_assert_ptr_nonnull(att);
  ck_assert_str_eq(ir_node_attr_string(att, "mask_mode", ""), "fill");
  ck_assert(fabs(ir_node_attr_float(att, "scale", 0) - 1.0 / sqrt(24.0)) < 1e-15);
  free_built(&o);
  rt_st_close(f);
}
END_TEST

/* INPUT-only build context at a full-size shape: [B, L, H] per modality. */
static ad_status_t build_sized(built_t *o, const int64_t *H, const int64_t *L, uint32_t n,
                               const char *mm, const char *fusion, const char *fset,
                               const char *adapter, const char *aset, ir_dtype_t dt) {
  memset(o, 0, sizeof *o);
  o->m = ir_module_create();
  int sb;
  ck_assert(!ir_module_add_symbol(o->m, "B", 1, &sb));
  o->g = ir_module_add_program(o->m, "forward");
  o->b = (fe_build_ctx_t){.module = o->m, .forward = o->g, .dtype = dt, .sym_batch = sb,
                          .sym_len = -1, .section = &g_section};
  fe_seq_t ins[3];
  for (uint32_t i = 0; i < n; i++) {
    ir_type_t t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.rank = 3;
    t.dims[0] = ir_dim_sym(sb);
    t.dims[1] = ir_dim_const(L[i]);
    t.dims[2] = ir_dim_const(H[i]);
    o->h[i] = emit(o->g, IR_OP_INPUT, k_hnames[i], NULL, 0, NULL, 0, &t);
    t.rank = 2;
    o->mask[i] = emit(o->g, IR_OP_INPUT, k_mnames[i], NULL, 0, NULL, 0, &t);
    ins[i] = (fe_seq_t){o->h[i], o->mask[i], H[i], -1};
  }
  const fe_class_t *cls = cls_of(mm), *fc = cls_of(fusion), *ac = cls_of(adapter);
  o->inner[0] = make_args(fc, fset);
  o->inner[1] = make_args(ac, aset);
  o->args = calloc(FE_MAX_ARGS, sizeof *o->args);
  o->args[0] = (fe_arg_value_t){.node = &g_section, .cls = fc, .args = o->inner[0]};
  o->args[1] = (fe_arg_value_t){.node = &g_section, .cls = ac, .args = o->inner[1]};
  fe_component_ctx_t cc = {.b = &o->b, .prefix = "adapter", .cls = cls, .args = o->args};
  ad_status_t st = cls->adapter->build_mm(&cc, ins, n, 30, &o->out);
  if (!st) st = ir_graph_take_error(o->g);
  return st;
}

START_TEST(test_full_size_counts) {
  /* modelgenerator.md 2.2, 2.3, 3: the seed configs' fusion and head parameter counts. */
  built_t o;
  const int64_t H[3] = {3072, 1280, 640}, L[3] = {896, 1024, 1024};
  ad_status_t st = build_sized(&o, H, L, 3, ADA "MMFusionSeqAdapter", FUS "CrossAttentionFusion",
                               "num_attention_heads=16", ADA "MLPPoolAdapter",
                               "hidden_sizes=128;dropout=0.1;dropout_in_middle=false",
                               IR_DTYPE_F32);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ck_assert_uint_eq(param_count(o.m, "adapter.fusion_module.cross_attention_layer_01."), 26750976);
  ck_assert_uint_eq(param_count(o.m, "adapter.fusion_module.cross_attention_layer_02."), 22818816);
  ck_assert_uint_eq(param_count(o.m, "adapter.adapter.mlp."), 397214);
  free_built(&o);
  const int64_t H2[3] = {3072, 2048, 640};
  st = build_sized(&o, H2, L, 3, ADA "MMFusionTokenAdapter", FUS "ConcatFusion",
                   "project_size=1024", ADA "MLPAdapter",
                   "hidden_sizes=1024;dropout=0.1;dropout_in_middle=false", IR_DTYPE_F32);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ck_assert_uint_eq(param_count(o.m, "adapter.fusion_module.project."), 3146752);
  ck_assert_uint_eq(param_count(o.m, "adapter.fusion_module.project_1."), 2098176);
  ck_assert_uint_eq(param_count(o.m, "adapter.fusion_module.project_2."), 656384);
  ck_assert_uint_eq(param_count(o.m, "adapter.adapter."), 3072 * 1024 + 1024 + 1024 * 30 + 30);
  free_built(&o);
}
END_TEST

static void expect_build_error(ad_status_t st, const char *needle) {
  ck_assert_msg(st != NULL, "expected an error containing '%s'", needle);
  const char *msg = ad_status_message(st);
  ck_assert_msg(strstr(msg, needle) != NULL, "'%s' lacks '%s'", msg, needle);
  ck_assert_msg(strstr(msg, "<test>:") == msg, "'%s' is not placed", msg);
  ad_status_free(st);
}

START_TEST(test_errors) {
  built_t o;
  const int64_t H[3] = {96, 32, 16}, L[3] = {16, 10, 5};
  /* 96 is not divisible by 5 heads: placed at the num_attention_heads node. */
  ad_status_t st = build_sized(&o, H, L, 2, ADA "MMFusionSeqAdapter", FUS "CrossAttentionFusion",
                               "num_attention_heads=5", ADA "MLPPoolAdapter", NULL, IR_DTYPE_F32);
  expect_build_error(st, "hidden size 96 of the query modality (backbone_order[0]) is not "
                         "divisible by 5 heads");
  free_built(&o);
  /* ConcatFusion pools: a sequence head after it is refused. */
  st = build_sized(&o, H, L, 2, ADA "MMFusionSeqAdapter", FUS "ConcatFusion", NULL,
                   ADA "MLPPoolAdapter", NULL, IR_DTYPE_F32);
  expect_build_error(st, "MLPPoolAdapter pools a sequence [B, L, H], but its input is already "
                         "pooled");
  free_built(&o);
  /* CrossAttentionFusion keeps the sequence: a token MLP after it would predict per token. */
  st = build_sized(&o, H, L, 3, ADA "MMFusionTokenAdapter", FUS "CrossAttentionFusion", NULL,
                   ADA "MLPAdapter", NULL, IR_DTYPE_F32);
  expect_build_error(st, "MLPAdapter maps every token");
  free_built(&o);
  /* The class checks: a bad pooling name and an unsupported activation. */
  const fe_class_t *cf = cls_of(FUS "ConcatFusion");
  fe_arg_value_t *a = make_args(cf, "pooling=max_pooling");
  expect_build_error(cf->check(cf, "model.init_args.adapter.init_args.fusion", a, &g_section),
                     "'max_pooling' is not a pooling of ConcatFusion");
  free(a);
  const fe_class_t *mp = cls_of(ADA "MLPPoolAdapter");
  a = make_args(mp, "activation_layer=torch.nn.Mish");
  expect_build_error(mp->check(mp, "model.init_args.adapter.init_args.adapter", a, &g_section),
                     "activation_layer: 'torch.nn.Mish' is not supported");
  free(a);
  a = make_args(mp, "hidden_sizes=8,0");
  expect_build_error(mp->check(mp, "x", a, &g_section), "x.init_args.hidden_sizes.1");
  free(a);
  /* Aliases the peer also accepts. */
  ck_assert_ptr_eq(fe_find_class("modelgenerator.adapters.fusion.MMFusionSeqAdapter"),
                   cls_of(ADA "MMFusionSeqAdapter"));
  ck_assert_ptr_eq(fe_find_class("modelgenerator.adapters.adapters.LinearCLSAdapter"),
                   cls_of(ADA "LinearCLSAdapter"));
}
END_TEST

START_TEST(test_mm_defaults) {
  /* No fusion/adapter given: MMFusionSeqAdapter = CrossAttentionFusion(16) + LinearCLSAdapter,
   * MMFusionTokenAdapter = ConcatFusion(512, mean) + MLPAdapter([]) . */
  built_t o;
  memset(&o, 0, sizeof o);
  o.m = ir_module_create();
  int sb;
  ck_assert(!ir_module_add_symbol(o.m, "B", 2, &sb));
  o.g = ir_module_add_program(o.m, "forward");
  o.b = (fe_build_ctx_t){.module = o.m, .forward = o.g, .dtype = IR_DTYPE_F32, .sym_batch = sb,
                         .sym_len = -1, .section = &g_section};
  fe_seq_t ins[2];
  const int64_t H[2] = {64, 32};
  for (int i = 0; i < 2; i++) {
    ir_type_t t = {.dtype = IR_DTYPE_F32, .rank = 3};
    t.dims[0] = ir_dim_sym(sb);
    t.dims[1] = ir_dim_const(6);
    t.dims[2] = ir_dim_const(H[i]);
    uint32_t h = emit(o.g, IR_OP_INPUT, k_hnames[i], NULL, 0, NULL, 0, &t);
    t.rank = 2;
    uint32_t m = emit(o.g, IR_OP_INPUT, k_mnames[i], NULL, 0, NULL, 0, &t);
    ins[i] = (fe_seq_t){h, m, H[i], -1};
  }
  const fe_class_t *seq = cls_of(ADA "MMFusionSeqAdapter");
  fe_component_ctx_t cc = {.b = &o.b, .prefix = "adapter", .cls = seq, .args = NULL};
  uint32_t pred;
  ad_status_t st = seq->adapter->build_mm(&cc, ins, 2, 3, &pred);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  ck_assert_int_ge(ir_module_find_slot(o.m, "adapter.adapter.linear.weight"), 0);
  const ir_node_t *att = find_node(o.g, "adapter.fusion_module.cross_attention_layer_01.attention");
  ck_assert(fabs(ir_node_attr_float(att, "scale", 0) - 0.5) < 1e-15); /* d = 64/16 = 4 */
  const fe_class_t *tok = cls_of(ADA "MMFusionTokenAdapter");
  cc.cls = tok;
  cc.prefix = "adapter2";
  st = tok->adapter->build_mm(&cc, ins, 2, 3, &pred);
  ck_assert_msg(!st, "%s", ad_status_message(st));
  int64_t s = ir_module_find_slot(o.m, "adapter2.fusion_module.project_1.weight");
  ck_assert_int_ge(s, 0);
  int64_t v;
  ck_assert(ir_dim_is_const(o.m->slots[s].type.dims[0], &v) && v == 512);
  s = ir_module_find_slot(o.m, "adapter2.adapter.1.weight"); /* MLPAdapter([]): Linear at 1 */
  ck_assert(s >= 0 && ir_dim_is_const(o.m->slots[s].type.dims[1], &v) && v == 1024);
  ck_assert(!ir_graph_take_error(o.g));
  ir_module_free(o.m);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("fusion_adapters");
  TCase *tg = tcase_create("golden");
  tcase_set_timeout(tg, 60);
  int nf = (int)(sizeof k_fusion_cases / sizeof k_fusion_cases[0]);
  int na = (int)(sizeof k_adapter_cases / sizeof k_adapter_cases[0]);
  tcase_add_loop_test(tg, test_fusion_f64, 0, nf);
  tcase_add_loop_test(tg, test_fusion_f32, 0, nf);
  tcase_add_loop_test(tg, test_adapters_f64, 0, na);
  tcase_add_loop_test(tg, test_adapters_f32, 0, na);
  tcase_add_loop_test(tg, test_mmseq3, 0, 2);
  suite_add_tcase(s, tg);
  TCase *ts = tcase_create("structure");
  tcase_add_test(ts, test_dropout_nodes);
  tcase_add_test(ts, test_full_size_counts);
  tcase_add_test(ts, test_errors);
  tcase_add_test(ts, test_mm_defaults);
  suite_add_tcase(s, ts);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
