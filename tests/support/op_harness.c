/* Golden op harness (see tests/support/op_harness.h and tools/golden/fixture.py). */
#include "tests/support/op_harness.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "runtime/interp.h"
#include "runtime/safetensors.h"
#include "tests/support/golden.h"

op_harness_tol_t op_harness_default_tol(void) {
  return (op_harness_tol_t){
      .fwd_f64 = 1e-10, .fwd_f32 = 1e-6, .vjp_f64 = 1e-10, .vjp_f32 = 1e-5, .fd = 1e-6};
}

#define H_MAX_IO 16

/* Everything one case owns; released by case_free. */
typedef struct h_case {
  const char *name;
  ir_module_t *m;
  ir_graph_t *g;
  rt_interp_t *it;
  int64_t symvals[IR_MAX_SYMBOLS];
  uint32_t nin, nout;
  ir_type_t in_types[H_MAX_IO];
  const rt_st_tensor_t *in_data[H_MAX_IO];
  bool nondiff[H_MAX_IO];
  uint32_t out_vals[H_MAX_IO];         /* forward outputs (value ids) */
  const rt_st_tensor_t *cot[H_MAX_IO]; /* stored cotangent per output, or NULL */
  uint32_t in_grads[H_MAX_IO];         /* VJP results (IR_NONE where the rule gave none) */
  bool ran_vjp;
} h_case_t;

static void case_free(h_case_t *c) {
  rt_interp_free(c->it);
  ir_module_free(c->m);
}

static double tol_for(ir_dtype_t dt, double f64, double f32) {
  if (dt == IR_DTYPE_F64) return f64;
  if (dt == IR_DTYPE_F32) return f32;
  return 0.0; /* integers must match exactly */
}

/* One line, "FAIL <case>: <what>", for failures that are not a tensor comparison. */
static int case_fail(const char *cname, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int case_fail(const char *cname, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL %s: ", cname);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  return 1;
}

static int status_fail(const char *cname, const char *what, ad_status_t st) {
  int r = case_fail(cname, "%s: %s", what, ad_status_message(st));
  ad_status_free(st);
  return r;
}

static const rt_st_tensor_t *find_tensor(const rt_st_file_t *f, const char *cname,
                                         const char *part) {
  char key[512];
  snprintf(key, sizeof key, "%s/%s", cname, part);
  return rt_st_find(f, key);
}

/* The stored tensor must be exactly the IR type at the actual sizes. */
static bool tensor_matches_type(const rt_st_tensor_t *t, const ir_type_t *ty,
                                const int64_t *symvals) {
  ir_dtype_t dt;
  if (!rt_st_dtype_to_ir(t->dtype, &dt) || dt != ty->dtype) return false;
  ir_shape_t s = ir_type_shape(ty, symvals);
  if (s.rank != t->rank) return false;
  for (int32_t d = 0; d < s.rank; d++)
    if (s.dims[d] != t->shape[d]) return false;
  return true;
}

/* JSON attrs -> IR attrs (arrays live in the module arena). */
static bool parse_attrs(ir_module_t *m, json_t *jattrs, ir_attr_t *attrs, uint32_t *nattrs,
                        const char **bad) {
  *nattrs = 0;
  if (!jattrs) return true;
  if (!json_is_object(jattrs)) return false;
  const char *key;
  json_t *v;
  json_object_foreach(jattrs, key, v) {
    if (*nattrs >= 32) return false;
    ir_attr_t *a = &attrs[(*nattrs)++];
    memset(a, 0, sizeof *a);
    a->key = ad_arena_strdup(&m->arena, key);
    *bad = key;
    if (json_is_integer(v)) {
      a->kind = IR_ATTR_INT;
      a->i = json_integer_value(v);
    } else if (json_is_boolean(v)) {
      a->kind = IR_ATTR_INT;
      a->i = json_is_true(v) ? 1 : 0;
    } else if (json_is_real(v)) {
      a->kind = IR_ATTR_FLOAT;
      a->f = json_real_value(v);
    } else if (json_is_string(v)) {
      a->kind = IR_ATTR_STRING;
      a->s = ad_arena_strdup(&m->arena, json_string_value(v));
    } else if (json_is_array(v)) {
      size_t n = json_array_size(v);
      bool any_real = false;
      for (size_t k = 0; k < n; k++) {
        json_t *e = json_array_get(v, k);
        if (json_is_real(e))
          any_real = true;
        else if (!json_is_integer(e))
          return false;
      }
      a->n = (uint32_t)n;
      if (any_real) {
        double *f = ad_arena_alloc(&m->arena, sizeof(double) * (n ? n : 1));
        for (size_t k = 0; k < n; k++) f[k] = json_number_value(json_array_get(v, k));
        a->kind = IR_ATTR_FLOATS;
        a->floats = f;
      } else {
        int64_t *iv = ad_arena_alloc(&m->arena, sizeof(int64_t) * (n ? n : 1));
        for (size_t k = 0; k < n; k++) iv[k] = json_integer_value(json_array_get(v, k));
        a->kind = IR_ATTR_INTS;
        a->ints = iv;
      }
    } else {
      return false;
    }
  }
  return true;
}

static uint32_t add_input(ir_graph_t *g, const char *name, const ir_type_t *t) {
  ir_node_desc_t d = {.op = IR_OP_INPUT, .name = name, .out_types = t, .nout_types = 1};
  return ir_build(g, &d);
}

static void add_output(ir_graph_t *g, const char *name, uint32_t v) {
  ir_node_desc_t d = {.op = IR_OP_OUTPUT, .name = name, .inputs = &v, .ninputs = 1};
  ir_build(g, &d);
}

/* Builds module, program, op, VJP. Returns the failure count (0 or 1). */
static int build_case(h_case_t *c, json_t *jc, const rt_st_file_t *f) {
  const char *cn = c->name;
  c->m = ir_module_create();
  json_t *jsyms = json_object_get(jc, "symbols");
  const char *sk;
  json_t *sv;
  json_object_foreach(jsyms, sk, sv) {
    if (!json_is_array(sv) || json_array_size(sv) != 2)
      return case_fail(cn, "symbol '%s' is not [bound, actual]", sk);
    int idx = -1;
    ad_status_t st =
        ir_module_add_symbol(c->m, sk, json_integer_value(json_array_get(sv, 0)), &idx);
    if (st) return status_fail(cn, "adding a symbol", st);
    c->symvals[idx] = json_integer_value(json_array_get(sv, 1));
  }
  c->g = ir_module_add_program(c->m, "case");
  json_t *jins = json_object_get(jc, "inputs");
  c->nin = (uint32_t)json_array_size(jins);
  if (c->nin == 0 || c->nin > H_MAX_IO) return case_fail(cn, "bad input count %u", c->nin);
  json_t *jnd = json_object_get(jc, "nondiff");
  for (size_t k = 0; k < json_array_size(jnd); k++) {
    json_int_t i = json_integer_value(json_array_get(jnd, k));
    if (i >= 0 && i < (json_int_t)c->nin) c->nondiff[i] = true;
  }
  uint32_t in_vals[H_MAX_IO];
  for (uint32_t i = 0; i < c->nin; i++) {
    const char *ts = json_string_value(json_array_get(jins, i));
    if (!ts) return case_fail(cn, "input %u type is not a string", i);
    ad_status_t st = ir_parse_type(c->m, ts, &c->in_types[i]);
    if (st) return status_fail(cn, "parsing an input type", st);
    char part[16];
    snprintf(part, sizeof part, "in%u", i);
    c->in_data[i] = find_tensor(f, cn, part);
    if (!c->in_data[i]) return case_fail(cn, "missing tensor %s/%s", cn, part);
    if (!tensor_matches_type(c->in_data[i], &c->in_types[i], c->symvals))
      return case_fail(cn, "tensor %s/%s does not match type %s at the actual sizes", cn, part, ts);
    in_vals[i] = add_input(c->g, part, &c->in_types[i]);
  }
  ir_op_t op;
  const char *opname = json_string_value(json_object_get(jc, "op"));
  if (!opname || !ir_op_from_name(opname, &op))
    return case_fail(cn, "unknown op '%s'", opname ? opname : "?");
  ir_attr_t attrs[32];
  uint32_t nattrs = 0;
  const char *badattr = "";
  if (!parse_attrs(c->m, json_object_get(jc, "attrs"), attrs, &nattrs, &badattr))
    return case_fail(cn, "attribute '%s' has an unsupported JSON type", badattr);
  /* Explicit-type ops (reshape) take their output types from the case's "outputs". */
  ir_type_t out_types[H_MAX_IO];
  json_t *jouts = json_object_get(jc, "outputs");
  uint32_t nout_types = (uint32_t)json_array_size(jouts);
  if (nout_types > H_MAX_IO) return case_fail(cn, "too many output types");
  for (uint32_t j = 0; j < nout_types; j++) {
    const char *ts = json_string_value(json_array_get(jouts, j));
    if (!ts) return case_fail(cn, "output %u type is not a string", j);
    ad_status_t st = ir_parse_type(c->m, ts, &out_types[j]);
    if (st) return status_fail(cn, "parsing an output type", st);
  }
  ir_node_desc_t d = {.op = op,
                      .name = "op",
                      .inputs = in_vals,
                      .ninputs = c->nin,
                      .attrs = attrs,
                      .nattrs = nattrs,
                      .out_types = nout_types ? out_types : NULL,
                      .nout_types = nout_types};
  uint32_t v0 = ir_build(c->g, &d);
  if (c->g->error) return status_fail(cn, "building the op", ir_graph_take_error(c->g));
  ir_node_t node = c->g->nodes[c->g->nnodes - 1];
  c->nout = node.noutputs;
  if (c->nout > H_MAX_IO) return case_fail(cn, "too many outputs (%u)", c->nout);
  for (uint32_t j = 0; j < c->nout; j++) {
    c->out_vals[j] = v0 + j;
    char part[16];
    snprintf(part, sizeof part, "out%u", j);
    add_output(c->g, part, c->out_vals[j]);
    snprintf(part, sizeof part, "cot%u", j);
    const ir_type_t *ot = ir_value_type(c->g, c->out_vals[j]);
    const rt_st_tensor_t *cot = ir_dtype_is_float(ot->dtype) ? find_tensor(f, cn, part) : NULL;
    if (cot && !tensor_matches_type(cot, ot, c->symvals))
      return case_fail(cn, "cotangent %s/%s does not match output %u's type", cn, part, j);
    c->cot[j] = cot;
  }
  for (uint32_t i = 0; i < H_MAX_IO; i++) c->in_grads[i] = IR_NONE;
  bool any_cot = false;
  for (uint32_t j = 0; j < c->nout; j++) any_cot |= c->cot[j] != NULL;
  if (any_cot) {
    const ir_op_info_t *info = ir_op_info(op);
    if (!info->vjp) return case_fail(cn, "op '%s' has cotangents but no VJP rule", opname);
    uint32_t out_grads[H_MAX_IO];
    for (uint32_t j = 0; j < c->nout; j++) {
      out_grads[j] = IR_NONE;
      if (!c->cot[j]) continue;
      char part[16];
      snprintf(part, sizeof part, "cot%u", j);
      ir_type_t ot = *ir_value_type(c->g, c->out_vals[j]); /* g->values may move */
      out_grads[j] = add_input(c->g, part, &ot);
    }
    if (c->g->error) return status_fail(cn, "adding cotangent inputs", ir_graph_take_error(c->g));
    ir_vjp_ctx_t ctx = {.g = c->g, .node = node, .out_grads = out_grads, .in_grads = c->in_grads};
    ad_status_t st = info->vjp(&ctx);
    if (st) return status_fail(cn, "VJP rule", st);
    if (c->g->error) return status_fail(cn, "VJP rule", ir_graph_take_error(c->g));
    for (uint32_t i = 0; i < c->nin; i++) {
      if (c->in_grads[i] == IR_NONE) continue;
      if (!ir_type_equal(ir_value_type(c->g, c->in_grads[i]), &c->in_types[i]))
        return case_fail(cn, "VJP gradient of input %u has the wrong type", i);
      char part[16];
      snprintf(part, sizeof part, "grad%u", i);
      add_output(c->g, part, c->in_grads[i]);
    }
    c->ran_vjp = true;
  }
  if (c->g->error) return status_fail(cn, "adding outputs", ir_graph_take_error(c->g));
  ad_status_t st = rt_interp_create(c->g, c->symvals, &c->it);
  if (st) return status_fail(cn, "creating the interpreter", st);
  return 0;
}

static ad_status_t set_named(rt_interp_t *it, const char *name, const rt_st_tensor_t *t) {
  return rt_interp_set_input(it, name, t->data, t->nbytes);
}

static ad_status_t set_all_inputs(h_case_t *c) {
  for (uint32_t i = 0; i < c->nin; i++) {
    char part[16];
    snprintf(part, sizeof part, "in%u", i);
    AD_RETURN_IF_ERROR(set_named(c->it, part, c->in_data[i]));
  }
  for (uint32_t j = 0; j < c->nout; j++) {
    if (!c->cot[j]) continue;
    char part[16];
    snprintf(part, sizeof part, "cot%u", j);
    AD_RETURN_IF_ERROR(set_named(c->it, part, c->cot[j]));
  }
  return AD_OK;
}

/* L = sum_j <out_j, cot_j> at the interpreter's current outputs (f64 cases only). */
static double loss_of(const h_case_t *c) {
  double L = 0.0;
  for (uint32_t j = 0; j < c->nout; j++) {
    if (!c->cot[j]) continue;
    char part[16];
    snprintf(part, sizeof part, "out%u", j);
    const ir_tensor_t *o = rt_interp_output(c->it, part);
    const double *od = o->data, *cd = c->cot[j]->data;
    int64_t n = ir_tensor_numel(o);
    for (int64_t k = 0; k < n; k++) L += od[k] * cd[k];
  }
  return L;
}

/* Deterministic standard normals for FD directions (splitmix64 + Box-Muller). */
static double h_normal(uint64_t *s) {
  double u[2];
  for (int k = 0; k < 2; k++) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    u[k] = ((double)(z >> 11) + 0.5) * 0x1p-53;
  }
  return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* Directional-derivative check; *err receives the relative error. Returns failures. */
static int fd_check(h_case_t *c, double *err) {
  const char *cn = c->name;
  double *u[H_MAX_IO] = {0}, *x[H_MAX_IO] = {0};
  double maxabs = 0.0, dd = 0.0;
  int fails = 0;
  uint64_t rng = 0x5eed0fd0ull;
  /* The analytic directional derivative <grad, u> uses the VJP result of this same run. */
  for (uint32_t i = 0; i < c->nin; i++) {
    if (c->nondiff[i] || c->in_types[i].dtype != IR_DTYPE_F64) continue;
    int64_t n = rt_st_numel(c->in_data[i]);
    u[i] = malloc(sizeof(double) * (size_t)(n ? n : 1));
    x[i] = malloc(sizeof(double) * (size_t)(n ? n : 1));
    const double *xd = c->in_data[i]->data;
    const double *gd = NULL;
    if (c->in_grads[i] != IR_NONE) {
      char part[16];
      snprintf(part, sizeof part, "grad%u", i);
      gd = rt_interp_output(c->it, part)->data;
    }
    for (int64_t k = 0; k < n; k++) {
      u[i][k] = h_normal(&rng);
      if (fabs(xd[k]) > maxabs) maxabs = fabs(xd[k]);
      if (gd) dd += gd[k] * u[i][k];
    }
  }
  double h = 1e-6 * (1.0 + maxabs);
  double L[2] = {0, 0};
  for (int side = 0; side < 2 && !fails; side++) {
    double sgn = side == 0 ? 1.0 : -1.0;
    for (uint32_t i = 0; i < c->nin && !fails; i++) {
      if (!u[i]) continue;
      int64_t n = rt_st_numel(c->in_data[i]);
      const double *xd = c->in_data[i]->data;
      for (int64_t k = 0; k < n; k++) x[i][k] = xd[k] + sgn * h * u[i][k];
      char part[16];
      snprintf(part, sizeof part, "in%u", i);
      ad_status_t st = rt_interp_set_input(c->it, part, x[i], c->in_data[i]->nbytes);
      if (st) fails += status_fail(cn, "FD input", st);
    }
    if (!fails) {
      ad_status_t st = rt_interp_run(c->it, NULL);
      if (st)
        fails += status_fail(cn, "FD run", st);
      else
        L[side] = loss_of(c);
    }
  }
  for (uint32_t i = 0; i < c->nin; i++) {
    free(u[i]);
    free(x[i]);
  }
  if (fails) return fails;
  double fd = (L[0] - L[1]) / (2.0 * h);
  /* Relative to the larger of the two; below 1e-8 in both the check is absolute. */
  double denom = fmax(fmax(fabs(dd), fabs(fd)), 1e-8);
  *err = fabs(fd - dd) / denom;
  return 0;
}

static void fmt_err(char *buf, size_t n, bool have, double e) {
  if (have)
    snprintf(buf, n, "%.2e", e);
  else
    snprintf(buf, n, "-");
}

static int run_case(json_t *jc, const rt_st_file_t *f, const op_harness_tol_t *tol) {
  h_case_t c;
  memset(&c, 0, sizeof c);
  c.name = json_string_value(json_object_get(jc, "name"));
  if (!c.name) return case_fail("<unnamed>", "case has no name");
  const char *cn = c.name;
  int fails = build_case(&c, jc, f);
  ad_status_t st = AD_OK;
  if (!fails) st = set_all_inputs(&c);
  if (!fails && !st) st = rt_interp_run(c.it, NULL);
  if (st) fails += status_fail(cn, "running", st);
  double fwd_err = 0.0, vjp_err = 0.0, fd_err = 0.0;
  bool have_vjp = false, have_fd = false;
  char label[600];
  for (uint32_t j = 0; !fails && j < c.nout; j++) {
    char part[16];
    snprintf(part, sizeof part, "out%u", j);
    const rt_st_tensor_t *want = find_tensor(f, cn, part);
    ir_tensor_t wt;
    if (!want || !rt_st_as_ir_tensor(want, &wt)) {
      fails += case_fail(cn, "missing or unreadable tensor %s/%s", cn, part);
      break;
    }
    const ir_tensor_t *got = rt_interp_output(c.it, part);
    double t = tol_for(got->dtype, tol->fwd_f64, tol->fwd_f32);
    snprintf(label, sizeof label, "%s: %s", cn, part);
    double e = golden_compare(label, got, &wt, t);
    if (!(e <= t)) fails++;
    if (e > fwd_err || isnan(e)) fwd_err = e;
  }
  for (uint32_t i = 0; !fails && i < c.nin; i++) {
    char part[16];
    snprintf(part, sizeof part, "grad%u", i);
    const rt_st_tensor_t *want = find_tensor(f, cn, part);
    if (!want) continue;
    if (!c.ran_vjp || c.in_grads[i] == IR_NONE) {
      fails += case_fail(cn, "%s: the VJP gave no gradient for input %u", part, i);
      continue;
    }
    ir_tensor_t wt;
    if (!rt_st_as_ir_tensor(want, &wt)) {
      fails += case_fail(cn, "unreadable tensor %s/%s", cn, part);
      continue;
    }
    const ir_tensor_t *got = rt_interp_output(c.it, part);
    double t = tol_for(got->dtype, tol->vjp_f64, tol->vjp_f32);
    snprintf(label, sizeof label, "%s: %s", cn, part);
    double e = golden_compare(label, got, &wt, t);
    if (!(e <= t)) fails++;
    if (e > vjp_err || isnan(e)) vjp_err = e;
    have_vjp = true;
  }
  json_t *jfd = json_object_get(jc, "fd");
  const char *dts = json_string_value(json_object_get(jc, "dtype"));
  if (!fails && json_is_true(jfd) && dts && strcmp(dts, "f64") == 0 && c.ran_vjp) {
    fails += fd_check(&c, &fd_err);
    have_fd = !fails;
    if (have_fd && !(fd_err <= tol->fd)) {
      printf("FAIL %s: finite-difference error %.3g > %.3g\n", cn, fd_err, tol->fd);
      fails++;
    }
  }
  if (!fails) {
    char a[32], b[32], d[32];
    fmt_err(a, sizeof a, true, fwd_err);
    fmt_err(b, sizeof b, have_vjp, vjp_err);
    fmt_err(d, sizeof d, have_fd, fd_err);
    printf("  ok  %s fwd=%s vjp=%s fd=%s\n", cn, a, b, d);
  }
  case_free(&c);
  return fails ? 1 : 0;
}

int op_harness_run_file(const char *relpath, const op_harness_tol_t *tol) {
  op_harness_tol_t dflt = op_harness_default_tol();
  if (!tol) tol = &dflt;
  char *path = golden_path(relpath);
  rt_st_file_t *f = NULL;
  ad_status_t st = rt_st_open(path, &f);
  if (st) {
    printf("FAIL %s: %s\n", relpath, ad_status_message(st));
    ad_status_free(st);
    free(path);
    return 1;
  }
  int failed = 0;
  const char *cases_text = rt_st_metadata(f, "cases");
  json_error_t jerr;
  json_t *cases = cases_text ? json_loads(cases_text, 0, &jerr) : NULL;
  if (!cases || !json_is_array(cases) || json_array_size(cases) == 0) {
    printf("FAIL %s: no cases in __metadata__[\"cases\"]\n", path);
    failed = 1;
  } else {
    size_t n = json_array_size(cases);
    for (size_t k = 0; k < n; k++) failed += run_case(json_array_get(cases, k), f, tol);
    printf("%s: %zu cases, %d failed\n", relpath, n, failed);
  }
  json_decref(cases);
  rt_st_close(f);
  free(path);
  return failed;
}
