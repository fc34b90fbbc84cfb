/* Contract: replaces *g; nodes whose inputs are all CONST become CONSTs of their values. */
/* Folding uses the op's reference kernel, only at static shapes of <= 64k elements, never for
 * random, stateful, no-fold or side-effect ops. CONSTs that folding leaves without consumers
 * are dropped; a folded node's CONST keeps its name. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"
#include "passes/passes.h"

/* Folding keeps the IR text small and the compile fast: larger constant subgraphs stay in the
 * program and run once per step. */
#define CONSTFOLD_MAX_ELEMS 65536

static bool static_numel(const ir_type_t *t, int64_t *numel) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) {
    int64_t d;
    if (!ir_dim_is_const(t->dims[i], &d) || d < 0) return false;
    n *= d;
    if (n > CONSTFOLD_MAX_ELEMS) return false;
  }
  *numel = n;
  return true;
}

/* dtypes a CONST can carry exactly through its double-valued attribute. */
static bool foldable_dtype(ir_dtype_t t) {
  return t == IR_DTYPE_F32 || t == IR_DTYPE_F64 || t == IR_DTYPE_I32 || t == IR_DTYPE_I64 ||
         t == IR_DTYPE_U8;
}

static bool foldable_op(const ir_node_t *n) {
  const ir_op_info_t *info = ir_op_info(n->op);
  if (n->op == IR_OP_CONST || !info->kernel || n->ninputs == 0 || n->noutputs == 0) return false;
  return !(info->flags & (IR_OP_FLAG_RANDOM | IR_OP_FLAG_STATEFUL | IR_OP_FLAG_NO_FOLD |
                          IR_OP_FLAG_SIDE_EFFECT));
}

static ir_tensor_t tensor_of(const ir_type_t *t) {
  ir_tensor_t x;
  memset(&x, 0, sizeof x);
  int64_t sym[IR_MAX_SYMBOLS] = {0}; /* static: symbols do not occur */
  ir_shape_t s = ir_type_shape(t, sym);
  x.dtype = t->dtype;
  x.rank = s.rank;
  memcpy(x.dims, s.dims, sizeof x.dims);
  return x;
}

/* Materialises a CONST node's value (splat or full) into a fresh buffer of its dtype. */
static void *materialise(const ir_node_t *c, const ir_tensor_t *t) {
  const ir_attr_t *v = ir_node_attr(c, "value");
  int64_t n = ir_tensor_numel(t);
  void *p = calloc((size_t)(n ? n : 1), ir_dtype_size(t->dtype));
  if (!p) return NULL;
  for (int64_t i = 0; i < n; i++) {
    double x = v->floats[v->n == 1 ? 0 : i];
    switch (t->dtype) {
      case IR_DTYPE_F32: ((float *)p)[i] = (float)x; break;
      case IR_DTYPE_F64: ((double *)p)[i] = x; break;
      case IR_DTYPE_I32: ((int32_t *)p)[i] = (int32_t)x; break;
      case IR_DTYPE_I64: ((int64_t *)p)[i] = (int64_t)x; break;
      case IR_DTYPE_U8: ((uint8_t *)p)[i] = (uint8_t)x; break;
      default: break;
    }
  }
  return p;
}

/* Reads a kernel result back as doubles; false when an i64 exceeds the exact range of a
 * double (the CONST could not reproduce it). */
static bool to_doubles(const ir_tensor_t *t, double *out) {
  int64_t n = ir_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    switch (t->dtype) {
      case IR_DTYPE_F32: out[i] = ((const float *)t->data)[i]; break;
      case IR_DTYPE_F64: out[i] = ((const double *)t->data)[i]; break;
      case IR_DTYPE_I32: out[i] = ((const int32_t *)t->data)[i]; break;
      case IR_DTYPE_I64: {
        int64_t x = ((const int64_t *)t->data)[i];
        if (x > (INT64_C(1) << 53) || x < -(INT64_C(1) << 53)) return false;
        out[i] = (double)x;
        break;
      }
      case IR_DTYPE_U8: out[i] = ((const uint8_t *)t->data)[i]; break;
      default: return false;
    }
  }
  return true;
}

typedef struct fold_result {
  uint32_t nout;
  double *vals[IR_MAX_OUTPUTS]; /* per output, numel doubles (or 1 for a splat) */
  uint32_t nvals[IR_MAX_OUTPUTS];
} fold_result_t;

static void fold_result_free(fold_result_t *r) {
  for (uint32_t o = 0; o < r->nout; o++) free(r->vals[o]);
  memset(r, 0, sizeof *r);
}

/* Evaluates node n of g (whose inputs are the CONST nodes ng has for them). Returns
 * *folded=false (and AD_OK) when the node turns out not to be foldable; a kernel error is a
 * real error since the same kernel would fail at run time. */
static ad_status_t evaluate(const ir_graph_t *g, const ir_node_t *n, const ir_graph_t *ng,
                            const uint32_t *ins, fold_result_t *r, bool *folded) {
  *folded = false;
  memset(r, 0, sizeof *r);
  if (n->noutputs > IR_MAX_OUTPUTS) return AD_OK;
  for (uint32_t o = 0; o < n->noutputs; o++) {
    const ir_type_t *t = &g->values[n->output0 + o].type;
    int64_t numel;
    if (!foldable_dtype(t->dtype) || !static_numel(t, &numel)) return AD_OK;
  }
  ir_tensor_t *in = calloc(n->ninputs, sizeof *in);
  ir_tensor_t out[IR_MAX_OUTPUTS];
  memset(out, 0, sizeof out);
  ad_status_t st = AD_OK;
  bool ok = in != NULL;
  for (uint32_t j = 0; ok && j < n->ninputs; j++) {
    const ir_type_t *t = &ng->values[ins[j]].type;
    int64_t numel;
    if (!foldable_dtype(t->dtype) || !static_numel(t, &numel)) {
      ok = false;
      break;
    }
    in[j] = tensor_of(t);
    in[j].data = materialise(&ng->nodes[ng->values[ins[j]].node], &in[j]);
    if (!in[j].data) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory"), ok = false;
  }
  for (uint32_t o = 0; ok && o < n->noutputs; o++) {
    out[o] = tensor_of(&g->values[n->output0 + o].type);
    int64_t numel = ir_tensor_numel(&out[o]);
    out[o].data = calloc((size_t)(numel ? numel : 1), ir_dtype_size(out[o].dtype));
    if (!out[o].data) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory"), ok = false;
  }
  if (ok) {
    ir_kernel_args_t a = {.node = n, .in = in, .nin = n->ninputs, .out = out,
                          .nout = n->noutputs, .par = NULL};
    st = ir_op_info(n->op)->kernel(&a);
    ok = st == AD_OK;
  }
  r->nout = n->noutputs;
  for (uint32_t o = 0; ok && o < n->noutputs; o++) {
    int64_t numel = ir_tensor_numel(&out[o]);
    r->vals[o] = malloc(sizeof(double) * (size_t)(numel ? numel : 1));
    if (!r->vals[o]) {
      st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
      ok = false;
      break;
    }
    if (!to_doubles(&out[o], r->vals[o])) {
      ok = false;
      break;
    }
    /* A uniform result is stored as a splat: the common case (constants built from splats)
     * stays one number in the text form. Bitwise comparison keeps -0.0 and NaN payloads. */
    bool uniform = numel > 0;
    for (int64_t i = 1; uniform && i < numel; i++)
      uniform = memcmp(&r->vals[o][i], &r->vals[o][0], sizeof(double)) == 0;
    r->nvals[o] = uniform ? 1u : (uint32_t)numel;
    if (numel == 0) ok = false; /* an empty CONST has no valid attribute */
  }
  for (uint32_t j = 0; in && j < n->ninputs; j++) free(in[j].data);
  free(in);
  for (uint32_t o = 0; o < n->noutputs && o < IR_MAX_OUTPUTS; o++) free(out[o].data);
  if (!ok) fold_result_free(r);
  *folded = ok;
  return st ? ad_status_annotate(st, "folding node '%s'", n->name) : AD_OK;
}

static const char *output_name(ir_graph_t *ng, pass_strset_t *names, const ir_node_t *n,
                               uint32_t o) {
  if (o == 0) return n->name;
  /* Secondary outputs get "<node>.out<k>", made unique against every name of the program. */
  const char *base = ad_arena_printf(&ng->module->arena, "%s.out%u", n->name, o);
  const char *s = base;
  for (int k = 1; pass_strset_has(names, s); k++)
    s = ad_arena_printf(&ng->module->arena, "%s#%d", base, k);
  pass_strset_add(names, s);
  return s;
}

ad_status_t pass_constfold(ir_graph_t **gp) {
  const ir_graph_t *g = *gp;
  uint32_t *map = malloc(sizeof *map * (g->nvalues ? g->nvalues : 1));
  uint32_t *uses = pass_use_counts(g);
  pass_strset_t names = {0};
  if (!map || !uses || !pass_strset_add_names(&names, g)) {
    free(map);
    free(uses);
    pass_strset_free(&names);
    return ad_status_make(AD_STATUS_RESOURCE, "pass constfold: out of memory");
  }
  for (uint32_t v = 0; v < g->nvalues; v++) map[v] = IR_NONE;

  ir_graph_t *ng = pass_graph_begin(g);
  pass_ids_t ins = {0};
  ad_status_t st = AD_OK;
  /* folded_uses[v]: consumers of source value v that were folded away. A CONST whose every
   * consumer folded is dead because of this pass and is removed afterwards. */
  uint32_t *folded_uses = calloc(g->nvalues ? g->nvalues : 1, sizeof *folded_uses);
  if (!folded_uses) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  for (uint32_t i = 0; i < g->nnodes && !st; i++) {
    const ir_node_t *n = &g->nodes[i];
    st = pass_map_inputs(g, n, map, &ins);
    if (st) break;
    bool all_const = foldable_op(n);
    for (uint32_t j = 0; all_const && j < n->ninputs; j++)
      all_const = ng->nodes[ng->values[ins.v[j]].node].op == IR_OP_CONST;
    if (all_const) {
      fold_result_t r;
      bool folded;
      st = evaluate(g, n, ng, ins.v, &r, &folded);
      if (st) break;
      if (folded) {
        for (uint32_t o = 0; o < n->noutputs; o++) {
          const ir_type_t *t = &g->values[n->output0 + o].type;
          ir_attr_t a = IR_ATTR_FLOATS("value", r.vals[o], r.nvals[o]);
          map[n->output0 + o] =
              pass_build_named(ng, IR_OP_CONST, output_name(ng, &names, n, o), NULL, 0, &a, 1, t);
        }
        fold_result_free(&r);
        for (uint32_t j = 0; j < n->ninputs; j++) folded_uses[n->inputs[j]]++;
        if (ng->error) break;
        continue;
      }
    }
    uint32_t v0 = ir_clone_node(ng, g, n, ins.v);
    if (ng->error) break;
    for (uint32_t o = 0; o < n->noutputs; o++) map[n->output0 + o] = v0 + o;
  }
  pass_ids_free(&ins);
  pass_strset_free(&names);

  /* Second sweep: drop the CONSTs that folding made dead (in the new graph, a CONST whose
   * source value had uses, all of them folded). The graph is rebuilt once more so value ids
   * stay dense. */
  if (!st && !ng->error) {
    uint32_t *nuses = pass_use_counts(ng);
    bool any_dead = false;
    uint8_t *drop = calloc(ng->nnodes ? ng->nnodes : 1, 1);
    if (!nuses || !drop) {
      st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
    } else {
      for (uint32_t v = 0; v < g->nvalues; v++) {
        if (!uses[v] || folded_uses[v] != uses[v] || map[v] == IR_NONE) continue;
        uint32_t nv = map[v], node = ng->values[nv].node;
        if (ng->nodes[node].op == IR_OP_CONST && nuses[nv] == 0) drop[node] = 1, any_dead = true;
      }
    }
    if (!st && any_dead) {
      ir_graph_t *ng2 = pass_graph_begin(ng);
      uint32_t *map2 = malloc(sizeof *map2 * (ng->nvalues ? ng->nvalues : 1));
      if (!map2) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
      for (uint32_t v = 0; !st && v < ng->nvalues; v++) map2[v] = IR_NONE;
      for (uint32_t i = 0; !st && i < ng->nnodes; i++) {
        const ir_node_t *n = &ng->nodes[i];
        if (drop[i]) continue;
        st = pass_map_inputs(ng, n, map2, &ins);
        if (st) break;
        uint32_t v0 = ir_clone_node(ng2, ng, n, ins.v);
        if (ng2->error) break;
        for (uint32_t o = 0; o < n->noutputs; o++) map2[n->output0 + o] = v0 + o;
      }
      free(map2);
      pass_ids_free(&ins);
      if (st) {
        pass_graph_discard(ng2);
      } else {
        st = ir_graph_take_error(ng2);
        if (st) {
          pass_graph_discard(ng2);
        } else {
          /* ng2 replaces ng, which never was a listed program in *gp's place. */
          ng2->name = ng->name;
          pass_graph_discard(ng);
          ng = ng2;
        }
      }
    }
    free(nuses);
    free(drop);
  }
  free(folded_uses);
  free(map);
  free(uses);
  if (st) {
    pass_graph_discard(ng);
    return ad_status_annotate(st, "pass constfold");
  }
  st = pass_graph_commit(gp, ng);
  return st ? ad_status_annotate(st, "pass constfold") : AD_OK;
}
