/* Dims as small polynomials over bounded symbols, and dtypes/types/shapes. Canonical forms
 * make equality structural, which shape inference and the text round trip rely on. */
#include <string.h>

#include "ir/ir.h"

static const struct {
  const char *name;
  size_t size;
  bool is_float;
} g_dtypes[IR_DTYPE_COUNT] = {
    [IR_DTYPE_F32] = {"f32", 4, true},  [IR_DTYPE_F64] = {"f64", 8, true},
    [IR_DTYPE_BF16] = {"bf16", 2, true}, [IR_DTYPE_F16] = {"f16", 2, true},
    [IR_DTYPE_I32] = {"i32", 4, false}, [IR_DTYPE_I64] = {"i64", 8, false},
    [IR_DTYPE_U8] = {"u8", 1, false},
};

size_t ir_dtype_size(ir_dtype_t t) { return (unsigned)t < IR_DTYPE_COUNT ? g_dtypes[t].size : 0; }
const char *ir_dtype_name(ir_dtype_t t) {
  return (unsigned)t < IR_DTYPE_COUNT ? g_dtypes[t].name : "<bad-dtype>";
}
bool ir_dtype_is_float(ir_dtype_t t) { return (unsigned)t < IR_DTYPE_COUNT && g_dtypes[t].is_float; }
bool ir_dtype_from_name(const char *s, ir_dtype_t *out) {
  for (int i = 0; i < IR_DTYPE_COUNT; i++)
    if (strcmp(s, g_dtypes[i].name) == 0) {
      *out = (ir_dtype_t)i;
      return true;
    }
  return false;
}

ir_dim_t ir_dim_const(int64_t n) {
  ir_dim_t d;
  memset(&d, 0, sizeof d);
  d.cst = n;
  d.div = 1;
  return d;
}

ir_dim_t ir_dim_sym(int sym) {
  ir_dim_t d = ir_dim_const(0);
  d.nterms = 1;
  d.terms[0].coef = 1;
  d.terms[0].sym_a = (int8_t)sym;
  d.terms[0].sym_b = -1;
  return d;
}

static int term_cmp(const ir_dim_term_t *a, const ir_dim_term_t *b) {
  if (a->sym_a != b->sym_a) return a->sym_a < b->sym_a ? -1 : 1;
  if (a->sym_b != b->sym_b) return a->sym_b < b->sym_b ? -1 : 1;
  return 0;
}

/* Adds coef*sym_a*sym_b into a term list kept sorted and merged; false on overflow of slots. */
static bool add_term(ir_dim_term_t *terms, int *n, int64_t coef, int8_t a, int8_t b) {
  if (b >= 0 && b < a) {
    int8_t t = a;
    a = b;
    b = t;
  }
  ir_dim_term_t t = {coef, a, b};
  int i = 0;
  while (i < *n && term_cmp(&terms[i], &t) < 0) i++;
  if (i < *n && term_cmp(&terms[i], &t) == 0) {
    terms[i].coef += coef;
    if (terms[i].coef == 0) {
      memmove(&terms[i], &terms[i + 1], sizeof(ir_dim_term_t) * (size_t)(*n - i - 1));
      (*n)--;
    }
    return true;
  }
  if (coef == 0) return true;
  if (*n >= IR_DIM_MAX_TERMS) return false;
  memmove(&terms[i + 1], &terms[i], sizeof(ir_dim_term_t) * (size_t)(*n - i));
  terms[i] = t;
  (*n)++;
  return true;
}

static bool valid_result(const ir_dim_term_t *terms, int n) {
  for (int i = 0; i < n; i++)
    if (terms[i].coef < 0) return false; /* dims must grow with their symbols */
  return true;
}

bool ir_dim_add(ir_dim_t a, ir_dim_t b, ir_dim_t *out) {
  if (a.div != 1 || b.div != 1) {
    /* (x)/k + c stays representable only for a constant addend divisible by k */
    int64_t c;
    if (b.div == 1 && ir_dim_is_const(b, &c)) return ir_dim_add_const(a, c, out);
    if (a.div == 1 && ir_dim_is_const(a, &c)) return ir_dim_add_const(b, c, out);
    return false;
  }
  ir_dim_t r = ir_dim_const(a.cst + b.cst);
  ir_dim_term_t terms[IR_DIM_MAX_TERMS];
  int n = 0;
  for (int i = 0; i < a.nterms; i++)
    if (!add_term(terms, &n, a.terms[i].coef, a.terms[i].sym_a, a.terms[i].sym_b)) return false;
  for (int i = 0; i < b.nterms; i++)
    if (!add_term(terms, &n, b.terms[i].coef, b.terms[i].sym_a, b.terms[i].sym_b)) return false;
  if (!valid_result(terms, n)) return false;
  r.nterms = (int8_t)n;
  memcpy(r.terms, terms, sizeof(ir_dim_term_t) * (size_t)n);
  *out = r;
  return true;
}

bool ir_dim_add_const(ir_dim_t a, int64_t c, ir_dim_t *out) {
  if (a.div != 1) {
    a.cst += c * a.div; /* floor(x/k) + c == floor((x + c k)/k) */
  } else {
    a.cst += c;
  }
  *out = a;
  return true;
}

bool ir_dim_mul(ir_dim_t a, ir_dim_t b, ir_dim_t *out) {
  int64_t c;
  if (ir_dim_is_const(b, &c) && b.div == 1) {
    if (c < 0) return false;
    if (c == 0) {
      *out = ir_dim_const(0);
      return true;
    }
    /* floor(x/k)*c is not a polynomial in x (floor(3/2)*2 != 3): keep such dims atomic */
    if (a.div != 1 && c != 1) return false;
    a.cst *= c;
    for (int i = 0; i < a.nterms; i++) a.terms[i].coef *= c;
    *out = a;
    return true;
  }
  if (ir_dim_is_const(a, &c) && a.div == 1) return ir_dim_mul(b, a, out);
  if (a.div != 1 || b.div != 1) return false;
  ir_dim_term_t terms[IR_DIM_MAX_TERMS];
  int n = 0;
  ir_dim_t r = ir_dim_const(a.cst * b.cst);
  for (int i = 0; i < a.nterms; i++) {
    if (a.terms[i].sym_b >= 0 && b.nterms) return false; /* degree > 2 */
    for (int j = 0; j < b.nterms; j++) {
      if (b.terms[j].sym_b >= 0) return false;
      if (!add_term(terms, &n, a.terms[i].coef * b.terms[j].coef, a.terms[i].sym_a,
                    b.terms[j].sym_a))
        return false;
    }
    if (b.cst && !add_term(terms, &n, a.terms[i].coef * b.cst, a.terms[i].sym_a, a.terms[i].sym_b))
      return false;
  }
  for (int j = 0; j < b.nterms; j++)
    if (a.cst && !add_term(terms, &n, b.terms[j].coef * a.cst, b.terms[j].sym_a, b.terms[j].sym_b))
      return false;
  if (!valid_result(terms, n)) return false;
  r.nterms = (int8_t)n;
  memcpy(r.terms, terms, sizeof(ir_dim_term_t) * (size_t)n);
  *out = r;
  return true;
}

bool ir_dim_div(ir_dim_t a, int64_t d, ir_dim_t *out) {
  if (d <= 0) return false;
  if (d == 1) {
    *out = a;
    return true;
  }
  /* Exact division of every coefficient keeps the form simple. */
  bool exact = a.div == 1 && a.cst % d == 0;
  for (int i = 0; exact && i < a.nterms; i++) exact = a.terms[i].coef % d == 0;
  if (exact) {
    a.cst /= d;
    for (int i = 0; i < a.nterms; i++) a.terms[i].coef /= d;
    *out = a;
    return true;
  }
  int64_t c;
  if (ir_dim_is_const(a, &c)) {
    *out = ir_dim_const(c / d);
    return true;
  }
  a.div *= d; /* floor(floor(x/k)/d) == floor(x/(k d)) for x >= 0 */
  *out = a;
  return true;
}

bool ir_dim_equal(ir_dim_t a, ir_dim_t b) {
  if (a.cst != b.cst || a.div != b.div || a.nterms != b.nterms) return false;
  for (int i = 0; i < a.nterms; i++)
    if (a.terms[i].coef != b.terms[i].coef || term_cmp(&a.terms[i], &b.terms[i]) != 0) return false;
  return true;
}

bool ir_dim_is_const(ir_dim_t a, int64_t *value) {
  if (a.nterms) return false;
  if (value) *value = a.div > 1 ? a.cst / a.div : a.cst;
  return true;
}

int ir_dim_symbol(ir_dim_t a) {
  if (a.nterms == 1 && a.cst == 0 && a.div == 1 && a.terms[0].coef == 1 && a.terms[0].sym_b < 0)
    return a.terms[0].sym_a;
  return -1;
}

int64_t ir_dim_eval(ir_dim_t a, const int64_t *symvals) {
  int64_t v = a.cst;
  for (int i = 0; i < a.nterms; i++) {
    int64_t t = a.terms[i].coef * symvals[a.terms[i].sym_a];
    if (a.terms[i].sym_b >= 0) t *= symvals[a.terms[i].sym_b];
    v += t;
  }
  return a.div > 1 ? (v >= 0 ? v / a.div : -((-v + a.div - 1) / a.div)) : v;
}

bool ir_type_equal(const ir_type_t *a, const ir_type_t *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (!ir_dim_equal(a->dims[i], b->dims[i])) return false;
  return true;
}

ir_shape_t ir_type_shape(const ir_type_t *t, const int64_t *symvals) {
  ir_shape_t s;
  memset(&s, 0, sizeof s);
  s.rank = t->rank;
  for (int i = 0; i < t->rank; i++) s.dims[i] = ir_dim_eval(t->dims[i], symvals);
  return s;
}

int64_t ir_shape_numel(const ir_shape_t *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}

/* magnitude(d) bounds |d| for every symbol value in 1..bound (coefficients are >= 0). */
static bool dim_magnitude(const ir_module_t *m, const ir_dim_t *d, uint64_t *out) {
  uint64_t v = d->cst < 0 ? (uint64_t)0 - (uint64_t)d->cst : (uint64_t)d->cst;
  for (int k = 0; k < d->nterms; k++) {
    uint64_t t;
    if (__builtin_mul_overflow((uint64_t)d->terms[k].coef,
                               (uint64_t)m->symbols[d->terms[k].sym_a].bound, &t))
      return false;
    if (d->terms[k].sym_b >= 0 &&
        __builtin_mul_overflow(t, (uint64_t)m->symbols[d->terms[k].sym_b].bound, &t))
      return false;
    if (__builtin_add_overflow(v, t, &v)) return false;
  }
  *out = v;
  return v <= IR_NUMEL_LIMIT;
}

bool ir_type_fits(const ir_module_t *m, const ir_type_t *t) {
  uint64_t n = 1;
  for (int i = 0; i < t->rank; i++) {
    uint64_t v;
    if (!dim_magnitude(m, &t->dims[i], &v)) return false;
    if (__builtin_mul_overflow(n, v ? v : 1, &n) || n > IR_NUMEL_LIMIT) return false;
  }
  return true;
}

int64_t ir_tensor_numel(const ir_tensor_t *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->dims[i];
  return n;
}

void ir_parallel_for(ir_parallel_t *par, int64_t n, int64_t grain, ir_range_fn fn, void *ctx) {
  if (n <= 0) return;
  if (!par || n <= grain) {
    fn(ctx, 0, n);
    return;
  }
  par->run(par, n, grain < 1 ? 1 : grain, fn, ctx);
}
