/* The binary form of a module (little-endian, embedded in plan files).
 *
 *   module  := magic "AIDOMMIR" u32 version
 *              u32 nsymbols  { str name, i64 bound }
 *              u32 nscalars  { str name, u8 dtype, f64 default }
 *              u32 nslots    { str name, type, u32 flags, str init }
 *              u32 nprograms { str name, u32 nnodes { node } }
 *   node    := u32 op, str name, u32 ninputs { u32 value id }, u32 noutputs { type },
 *              u32 nattrs { str key, u8 kind, payload }
 *   payload := INT i64 | FLOAT f64 | STRING str | INTS u32 n { i64 } | FLOATS u32 n { f64 }
 *   type    := u8 dtype, u8 rank { i64 cst, i64 div, u8 nterms { i64 coef, u8 sym_a, u8 sym_b } }
 *   str     := u32 length, bytes (no NUL inside; the NULL encoding 0xffffffff is refused)
 *
 * Output value ids are implied (values are numbered in node order). Deserializing validates
 * every count against the bytes left before allocating, every id and enum against its range
 * and every dim against the canonical form the dim arithmetic builds, then rebuilds each node
 * through ir_build so inference re-checks it, and verifies the module (ir_verify_module).
 * Any defect is a DATA_LOSS status. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

#define IR_BIN_MAGIC "AIDOMMIR"
#define IR_BIN_VERSION 1u
#define IR_BIN_NO_SYM 0xffu
/* Raw dim fields above this are corrupt; it keeps the dim arithmetic far from overflow. */
#define IR_BIN_DIM_LIMIT (INT64_C(1) << 40)

/* ---- writing --------------------------------------------------------------------------- */

static void put_type(ad_buf_t *b, const ir_type_t *t) {
  ad_buf_put_u8(b, (uint8_t)t->dtype);
  ad_buf_put_u8(b, (uint8_t)t->rank);
  for (int d = 0; d < t->rank; d++) {
    const ir_dim_t *dim = &t->dims[d];
    ad_buf_put_i64(b, dim->cst);
    ad_buf_put_i64(b, dim->div);
    ad_buf_put_u8(b, (uint8_t)dim->nterms);
    for (int k = 0; k < dim->nterms; k++) {
      ad_buf_put_i64(b, dim->terms[k].coef);
      ad_buf_put_u8(b, (uint8_t)dim->terms[k].sym_a);
      ad_buf_put_u8(b, dim->terms[k].sym_b < 0 ? IR_BIN_NO_SYM : (uint8_t)dim->terms[k].sym_b);
    }
  }
}

static void put_attr(ad_buf_t *b, const ir_attr_t *a) {
  ad_buf_put_str(b, a->key);
  ad_buf_put_u8(b, (uint8_t)a->kind);
  switch (a->kind) {
    case IR_ATTR_INT: ad_buf_put_i64(b, a->i); break;
    case IR_ATTR_FLOAT: ad_buf_put_f64(b, a->f); break;
    case IR_ATTR_STRING: ad_buf_put_str(b, a->s ? a->s : ""); break;
    case IR_ATTR_INTS:
      ad_buf_put_u32(b, a->n);
      for (uint32_t k = 0; k < a->n; k++) ad_buf_put_i64(b, a->ints[k]);
      break;
    case IR_ATTR_FLOATS:
      ad_buf_put_u32(b, a->n);
      for (uint32_t k = 0; k < a->n; k++) ad_buf_put_f64(b, a->floats[k]);
      break;
  }
}

void ir_serialize_module(const ir_module_t *m, ad_buf_t *out) {
  ad_buf_append(out, IR_BIN_MAGIC, 8);
  ad_buf_put_u32(out, IR_BIN_VERSION);
  ad_buf_put_u32(out, m->nsymbols);
  for (uint32_t i = 0; i < m->nsymbols; i++) {
    ad_buf_put_str(out, m->symbols[i].name);
    ad_buf_put_i64(out, m->symbols[i].bound);
  }
  ad_buf_put_u32(out, m->nscalars);
  for (uint32_t i = 0; i < m->nscalars; i++) {
    ad_buf_put_str(out, m->scalars[i].name);
    ad_buf_put_u8(out, (uint8_t)m->scalars[i].dtype);
    ad_buf_put_f64(out, m->scalars[i].dflt);
  }
  ad_buf_put_u32(out, m->nslots);
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *s = &m->slots[i];
    ad_buf_put_str(out, s->name);
    put_type(out, &s->type);
    ad_buf_put_u32(out, s->flags);
    ad_buf_put_str(out, s->init);
  }
  ad_buf_put_u32(out, m->nprograms);
  for (uint32_t p = 0; p < m->nprograms; p++) {
    const ir_graph_t *g = m->programs[p];
    ad_buf_put_str(out, g->name);
    ad_buf_put_u32(out, g->nnodes);
    for (uint32_t i = 0; i < g->nnodes; i++) {
      const ir_node_t *n = &g->nodes[i];
      ad_buf_put_u32(out, (uint32_t)n->op);
      ad_buf_put_str(out, n->name);
      ad_buf_put_u32(out, n->ninputs);
      for (uint32_t k = 0; k < n->ninputs; k++) ad_buf_put_u32(out, n->inputs[k]);
      ad_buf_put_u32(out, n->noutputs);
      for (uint32_t k = 0; k < n->noutputs; k++) put_type(out, &g->values[n->output0 + k].type);
      ad_buf_put_u32(out, n->nattrs);
      for (uint32_t k = 0; k < n->nattrs; k++) put_attr(out, &n->attrs[k]);
    }
  }
}

/* ---- reading --------------------------------------------------------------------------- */

typedef struct reader {
  ad_reader_t r;
  const uint8_t *base;
  ir_module_t *m;
  ad_arena_t tmp; /* strings and arrays until the builder has copied them */
  ad_status_t err;
  const char *where;     /* what is being read, for messages */
  const char *program;   /* while reading nodes: the program's name and the node's index */
  uint32_t node;
} reader_t;

static bool corrupt(reader_t *rd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool corrupt(reader_t *rd, const char *fmt, ...) {
  if (rd->err) return false;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  size_t off = rd->r.p ? (size_t)(rd->r.p - rd->base) : 0;
  if (rd->program)
    rd->err = ad_status_make(AD_STATUS_DATA_LOSS,
                             "corrupt IR module at byte %zu (program '%.100s', node %" PRIu32
                             "): %s", off, rd->program, rd->node, msg);
  else
    rd->err = ad_status_make(AD_STATUS_DATA_LOSS, "corrupt IR module at byte %zu (%s): %s", off,
                             rd->where, msg);
  return false;
}

static size_t remaining(const reader_t *rd) { return (size_t)(rd->r.end - rd->r.p); }

/* Every read below checks `bad` before using what it read. */
static bool ok(reader_t *rd) {
  if (rd->err) return false;
  if (rd->r.bad) return corrupt(rd, "truncated");
  return true;
}

/* A count of items taking at least min_bytes each must fit in what is left. */
static bool read_count(reader_t *rd, size_t min_bytes, const char *what, uint32_t *n) {
  *n = ad_read_u32(&rd->r);
  if (!ok(rd)) return false;
  if ((uint64_t)*n * min_bytes > remaining(rd))
    return corrupt(rd, "%" PRIu32 " %s cannot fit in the %zu bytes left", *n, what, remaining(rd));
  return true;
}

static bool read_str(reader_t *rd, const char *what, const char **out) {
  uint32_t len;
  int isnull;
  const char *s = ad_read_str(&rd->r, &len, &isnull);
  if (!ok(rd)) return false;
  if (isnull) return corrupt(rd, "%s is missing", what);
  if (memchr(s, 0, len)) return corrupt(rd, "%s holds a NUL byte", what);
  *out = ad_arena_strndup(&rd->tmp, s, len);
  return true;
}

static bool read_dtype(reader_t *rd, ir_dtype_t *out) {
  uint8_t v = ad_read_u8(&rd->r);
  if (!ok(rd)) return false;
  if (v >= IR_DTYPE_COUNT) return corrupt(rd, "dtype %u out of range", v);
  *out = (ir_dtype_t)v;
  return true;
}

static bool read_sym(reader_t *rd, bool optional, int8_t *out) {
  uint8_t v = ad_read_u8(&rd->r);
  if (!ok(rd)) return false;
  if (optional && v == IR_BIN_NO_SYM) {
    *out = -1;
    return true;
  }
  if (v >= rd->m->nsymbols) return corrupt(rd, "symbol index %u out of range", v);
  *out = (int8_t)v;
  return true;
}

/* Rebuilds the dim through the dim arithmetic: a stored dim must be in the canonical form it
 * produces, which is what makes type equality structural. */
static bool canonical_dim(const ir_dim_t *d) {
  ir_dim_t r = ir_dim_const(0);
  for (int k = 0; k < d->nterms; k++) {
    ir_dim_t t = ir_dim_sym(d->terms[k].sym_a);
    if (d->terms[k].sym_b >= 0 && !ir_dim_mul(t, ir_dim_sym(d->terms[k].sym_b), &t)) return false;
    if (!ir_dim_mul(t, ir_dim_const(d->terms[k].coef), &t)) return false;
    if (!ir_dim_add(r, t, &r)) return false;
  }
  if (!ir_dim_add_const(r, d->cst, &r)) return false;
  if (!ir_dim_div(r, d->div, &r)) return false;
  return ir_dim_equal(r, *d);
}

static bool read_type(reader_t *rd, ir_type_t *t) {
  memset(t, 0, sizeof *t);
  if (!read_dtype(rd, &t->dtype)) return false;
  uint8_t rank = ad_read_u8(&rd->r);
  if (!ok(rd)) return false;
  if (rank > IR_MAX_RANK) return corrupt(rd, "rank %u above the maximum %d", rank, IR_MAX_RANK);
  t->rank = rank;
  for (int i = 0; i < rank; i++) {
    ir_dim_t *d = &t->dims[i];
    d->cst = ad_read_i64(&rd->r);
    d->div = ad_read_i64(&rd->r);
    uint8_t nterms = ad_read_u8(&rd->r);
    if (!ok(rd)) return false;
    if (d->cst > IR_BIN_DIM_LIMIT || d->cst < -IR_BIN_DIM_LIMIT || d->div < 1 ||
        d->div > IR_BIN_DIM_LIMIT || nterms > IR_DIM_MAX_TERMS)
      return corrupt(rd, "dimension %d out of range", i);
    d->nterms = (int8_t)nterms;
    for (int k = 0; k < nterms; k++) {
      d->terms[k].coef = ad_read_i64(&rd->r);
      if (!ok(rd)) return false;
      if (d->terms[k].coef < 1 || d->terms[k].coef > IR_BIN_DIM_LIMIT)
        return corrupt(rd, "dimension %d has coefficient %" PRId64, i, d->terms[k].coef);
      if (!read_sym(rd, false, &d->terms[k].sym_a) || !read_sym(rd, true, &d->terms[k].sym_b))
        return false;
    }
    if (!canonical_dim(d)) return corrupt(rd, "dimension %d is not in canonical form", i);
  }
  if (!ir_type_fits(rd->m, t)) return corrupt(rd, "type too large at the symbol bounds");
  return true;
}

static bool read_attr(reader_t *rd, ir_attr_t *a) {
  memset(a, 0, sizeof *a);
  if (!read_str(rd, "attribute key", &a->key)) return false;
  uint8_t kind = ad_read_u8(&rd->r);
  if (!ok(rd)) return false;
  switch (kind) {
    case IR_ATTR_INT:
      a->i = ad_read_i64(&rd->r);
      a->kind = IR_ATTR_INT;
      return ok(rd);
    case IR_ATTR_FLOAT:
      a->f = ad_read_f64(&rd->r);
      a->kind = IR_ATTR_FLOAT;
      return ok(rd);
    case IR_ATTR_STRING: a->kind = IR_ATTR_STRING; return read_str(rd, "string attribute", &a->s);
    case IR_ATTR_INTS: {
      uint32_t n;
      if (!read_count(rd, 8, "list elements", &n)) return false;
      int64_t *v = ad_arena_alloc(&rd->tmp, sizeof *v * n);
      for (uint32_t k = 0; k < n; k++) v[k] = ad_read_i64(&rd->r);
      a->kind = IR_ATTR_INTS;
      a->n = n;
      a->ints = v;
      return ok(rd);
    }
    case IR_ATTR_FLOATS: {
      uint32_t n;
      if (!read_count(rd, 8, "list elements", &n)) return false;
      double *v = ad_arena_alloc(&rd->tmp, sizeof *v * n);
      for (uint32_t k = 0; k < n; k++) v[k] = ad_read_f64(&rd->r);
      a->kind = IR_ATTR_FLOATS;
      a->n = n;
      a->floats = v;
      return ok(rd);
    }
    default: return corrupt(rd, "attribute kind %u out of range", kind);
  }
}

static bool module_call(reader_t *rd, ad_status_t st) {
  if (!st) return true;
  corrupt(rd, "%s", ad_status_message(st));
  ad_status_free(st);
  return false;
}

/* Smallest encodings, for bounding counts by the bytes left. */
enum {
  MIN_SCALAR = 4 + 1 + 8,
  MIN_SLOT = 4 + 2 + 4 + 4,
  MIN_PROGRAM = 4 + 4,
  MIN_NODE = 4 + 4 + 4 + 4 + 4,
  MIN_ATTR = 4 + 1 + 4,
  MIN_TYPE = 2,
};

static bool read_node(reader_t *rd, ir_graph_t *g) {
  ir_node_desc_t d;
  memset(&d, 0, sizeof d);
  uint32_t op = ad_read_u32(&rd->r);
  if (!ok(rd)) return false;
  if (op >= IR_OP_COUNT) return corrupt(rd, "op id %" PRIu32 " out of range", op);
  d.op = (ir_op_t)op;
  if (!read_str(rd, "node name", &d.name)) return false;
  const ir_op_info_t *info = ir_op_info(d.op);
  if (!read_count(rd, 4, "inputs", &d.ninputs)) return false;
  if ((int64_t)d.ninputs < info->min_inputs ||
      (info->max_inputs >= 0 && (int64_t)d.ninputs > info->max_inputs))
    return corrupt(rd, "node '%s' (%s) has %" PRIu32 " inputs", d.name, ir_op_name(d.op),
                   d.ninputs);
  uint32_t *ins = ad_arena_alloc(&rd->tmp, sizeof *ins * (d.ninputs ? d.ninputs : 1));
  for (uint32_t k = 0; k < d.ninputs; k++) {
    ins[k] = ad_read_u32(&rd->r);
    if (!ok(rd)) return false;
    if (ins[k] >= g->nvalues)
      return corrupt(rd, "node '%s' input %" PRIu32 " refers to value %" PRIu32
                     ", not defined before it", d.name, k, ins[k]);
  }
  d.inputs = ins;
  uint32_t nouts = ad_read_u32(&rd->r);
  if (!ok(rd)) return false;
  if (nouts > IR_MAX_OUTPUTS || (info->noutputs >= 0 && nouts != (uint32_t)info->noutputs))
    return corrupt(rd, "node '%s' (%s) has %" PRIu32 " outputs", d.name, ir_op_name(d.op), nouts);
  ir_type_t types[IR_MAX_OUTPUTS];
  for (uint32_t k = 0; k < nouts; k++)
    if (!read_type(rd, &types[k])) return false;
  if (!read_count(rd, MIN_ATTR, "attributes", &d.nattrs)) return false;
  ir_attr_t *attrs = ad_arena_alloc(&rd->tmp, sizeof *attrs * (d.nattrs ? d.nattrs : 1));
  for (uint32_t k = 0; k < d.nattrs; k++) {
    if (!read_attr(rd, &attrs[k])) return false;
    /* Written sorted by key; anything else was not written by the serializer. */
    if (k && strcmp(attrs[k - 1].key, attrs[k].key) >= 0)
      return corrupt(rd, "node '%s' attributes are not sorted by unique key", d.name);
  }
  d.attrs = attrs;
  if (info->flags & IR_OP_FLAG_EXPLICIT_TYPE) {
    d.out_types = types;
    d.nout_types = nouts;
  }
  uint32_t before = g->nnodes;
  ir_build(g, &d);
  ad_status_t st = ir_graph_take_error(g);
  if (st) return module_call(rd, st);
  if (g->nnodes != before + 1) return corrupt(rd, "node '%s' was not rebuilt", d.name);
  const ir_node_t *n = &g->nodes[before];
  if (n->noutputs != nouts)
    return corrupt(rd, "node '%s' (%s) rebuilds with %" PRIu32 " outputs, %" PRIu32 " stored",
                   d.name, ir_op_name(d.op), n->noutputs, nouts);
  for (uint32_t k = 0; k < nouts; k++)
    if (!ir_type_equal(&g->values[n->output0 + k].type, &types[k]))
      return corrupt(rd, "node '%s' (%s) output %" PRIu32 " type differs from inference", d.name,
                     ir_op_name(d.op), k);
  return true;
}

static bool read_module(reader_t *rd) {
  ir_module_t *m = rd->m;
  rd->where = "header";
  const uint8_t *magic = ad_read_bytes(&rd->r, 8);
  if (!ok(rd)) return false;
  if (memcmp(magic, IR_BIN_MAGIC, 8) != 0) return corrupt(rd, "not an aidomm IR module (bad magic)");
  uint32_t version = ad_read_u32(&rd->r);
  if (!ok(rd)) return false;
  if (version != IR_BIN_VERSION)
    return corrupt(rd, "format version %" PRIu32 " is not supported (this build reads %u)",
                   version, IR_BIN_VERSION);

  rd->where = "symbols";
  uint32_t n;
  if (!read_count(rd, 12, "symbols", &n)) return false;
  if (n > IR_MAX_SYMBOLS) return corrupt(rd, "%" PRIu32 " symbols, at most %d", n, IR_MAX_SYMBOLS);
  for (uint32_t i = 0; i < n; i++) {
    const char *name;
    if (!read_str(rd, "symbol name", &name)) return false;
    int64_t bound = ad_read_i64(&rd->r);
    if (!ok(rd)) return false;
    if (bound > IR_BIN_DIM_LIMIT) return corrupt(rd, "symbol '%s' bound out of range", name);
    if (!module_call(rd, ir_module_add_symbol(m, name, bound, NULL))) return false;
  }

  rd->where = "runtime scalars";
  if (!read_count(rd, MIN_SCALAR, "scalars", &n)) return false;
  for (uint32_t i = 0; i < n; i++) {
    const char *name;
    ir_dtype_t dt = IR_DTYPE_F32;
    if (!read_str(rd, "scalar name", &name) || !read_dtype(rd, &dt)) return false;
    double dflt = ad_read_f64(&rd->r);
    if (!ok(rd)) return false;
    if (!module_call(rd, ir_module_add_scalar(m, name, dt, dflt))) return false;
  }

  rd->where = "state slots";
  if (!read_count(rd, MIN_SLOT, "slots", &n)) return false;
  for (uint32_t i = 0; i < n; i++) {
    const char *name, *init;
    ir_type_t t;
    if (!read_str(rd, "slot name", &name) || !read_type(rd, &t)) return false;
    uint32_t flags = ad_read_u32(&rd->r);
    if (!ok(rd) || !read_str(rd, "slot init rule", &init)) return false;
    if (!module_call(rd, ir_module_add_slot(m, name, &t, flags, init, NULL))) return false;
  }

  rd->where = "programs";
  if (!read_count(rd, MIN_PROGRAM, "programs", &n)) return false;
  for (uint32_t p = 0; p < n; p++) {
    const char *name;
    if (!read_str(rd, "program name", &name)) return false;
    if (ir_module_find_program(m, name)) return corrupt(rd, "program '%s' appears twice", name);
    ir_graph_t *g = ir_module_add_program(m, name);
    uint32_t nnodes;
    if (!read_count(rd, MIN_NODE, "nodes", &nnodes)) return false;
    rd->program = g->name;
    for (uint32_t i = 0; i < nnodes; i++) {
      rd->node = i;
      if (!read_node(rd, g)) return false;
    }
    rd->program = NULL;
  }
  rd->where = "end";
  if (remaining(rd)) return corrupt(rd, "%zu trailing bytes", remaining(rd));
  /* The builder checked each node; the rules across nodes (state order, unique outputs) and
   * across programs are the verifier's. */
  rd->where = "verification";
  return module_call(rd, ir_verify_module(m));
}

ad_status_t ir_deserialize_module(const uint8_t *data, size_t len, ir_module_t **out) {
  *out = NULL;
  reader_t rd;
  memset(&rd, 0, sizeof rd);
  rd.r.p = rd.base = data;
  rd.r.end = data + len;
  rd.where = "header";
  rd.m = ir_module_create();
  if (!rd.m) return ad_status_make(AD_STATUS_RESOURCE, "out of memory creating a module");
  ad_arena_init(&rd.tmp, 16 * 1024);
  read_module(&rd);
  ad_arena_free(&rd.tmp);
  if (rd.err) {
    ir_module_free(rd.m);
    return rd.err;
  }
  *out = rd.m;
  return AD_OK;
}
