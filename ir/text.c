/* The stable text form of the IR: printer and parser. parse(print(m)) prints byte-identically,
 * so pass tests are IR-in/IR-out files and `--print-after=PASS` output can be fed back in.
 *
 * Grammar (whitespace, newlines included, separates tokens; `#` starts a comment to the end
 * of the line; the printer emits one declaration or node per line and no comments):
 *
 *   module   := 'aidomm-ir' INT decl*                      INT: format version (1)
 *   decl     := symbol | scalar | slot | program
 *   symbol   := 'symbol' NAME '<=' INT                     bounded size symbol
 *   scalar   := 'scalar' STRING ':' DTYPE '=' NUMBER       runtime scalar and its default
 *   slot     := 'slot' STRING ':' type [ '{' flag {',' flag} '}' ] [ 'init' STRING ]
 *   flag     := 'param' | 'trainable' | 'unused' | 'buffer' | 'optim' | INT (other bits)
 *   program  := 'program' STRING '{' node* '}'
 *   node     := [ out {',' out} '=' ] OP STRING [ '(' [ VALUE {',' VALUE} ] ')' ]
 *               [ '{' attr {',' attr} '}' ]
 *   out      := VALUE ':' type
 *   attr     := NAME '=' avalue                            printed sorted by key
 *   avalue   := INT | FLOAT | STRING | list
 *   list     := [ 'ints' | 'floats' ] '[' [ NUMBER {',' NUMBER} ] ']'
 *   type     := DTYPE '[' [ dim {',' dim} ] ']'            f32[B,L+2,8], i64[]
 *   dim      := sum ;  sum := prod {('+'|'-') prod} ;  prod := unary {('*'|'/') unary}
 *   unary    := '-' unary | INT | NAME | '(' sum ')'       '/' is floor division by a constant
 *
 *   NAME     := IDENT | STRING        IDENT := [A-Za-z_][A-Za-z0-9_]*
 *   VALUE    := '%' INT               a label: the printer writes value ids, the parser maps
 *                                     labels to the ids the rebuilt graph assigns
 *   STRING   := '"' ... '"'           escapes \" \\ \n \t \r \xHH; every other byte below
 *                                     0x20 or from 0x7f up is written \xHH (NUL is not allowed)
 *   NUMBER   := INT | FLOAT
 *   INT      := ['-'] DIGITS
 *   FLOAT    := ['-'] DIGITS ( '.' DIGITS* | [.DIGITS*] ('e'|'E') ['+'|'-'] DIGITS )
 *             | ['-'] 'inf' | ['-'] 'nan' | 'nan(0x' 16 HEX ')'
 *
 * Floats print with %.17g (exact for every finite double) plus ".0" where %.17g would look like
 * an integer, so an attribute's kind is visible in its text; inf, -inf, the two default NaNs
 * (nan, -nan) and every other NaN by its bit pattern, so -0.0 and NaN payloads survive. A list
 * holding any FLOAT is a float list; an empty float list is written `floats[]`. Scalar defaults
 * are numbers of either form. Node output types are checked against shape inference (ops with
 * explicit types take them from the text). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

#define IR_TEXT_VERSION 1
#define IR_TEXT_MAGIC "aidomm-ir"

/* ---- printing ------------------------------------------------------------------------ */

static bool is_ident_start(int c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_ident_char(int c) { return is_ident_start(c) || is_digit(c); }

static bool is_ident(const char *s) {
  if (!s || !is_ident_start((unsigned char)s[0])) return false;
  for (const char *p = s + 1; *p; p++)
    if (!is_ident_char((unsigned char)*p)) return false;
  return true;
}

static void print_quoted(ad_buf_t *out, const char *s) {
  ad_buf_put_u8(out, '"');
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    switch (*p) {
      case '"': ad_buf_append(out, "\\\"", 2); break;
      case '\\': ad_buf_append(out, "\\\\", 2); break;
      case '\n': ad_buf_append(out, "\\n", 2); break;
      case '\t': ad_buf_append(out, "\\t", 2); break;
      case '\r': ad_buf_append(out, "\\r", 2); break;
      default:
        if (*p < 0x20 || *p >= 0x7f)
          ad_buf_printf(out, "\\x%02x", *p);
        else
          ad_buf_put_u8(out, *p);
    }
  }
  ad_buf_put_u8(out, '"');
}

/* Symbol names and attribute keys print bare when they are identifiers. */
static void print_name(ad_buf_t *out, const char *s) {
  if (is_ident(s))
    ad_buf_append(out, s, strlen(s));
  else
    print_quoted(out, s);
}

#define IR_NAN_POS 0x7ff8000000000000ull
#define IR_NAN_NEG 0xfff8000000000000ull

/* mark_float: append ".0" when %.17g looks like an integer ("1", "-0", "100000"). */
static void print_double(ad_buf_t *out, double v, bool mark_float) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  if (isnan(v)) {
    if (bits == IR_NAN_POS)
      ad_buf_printf(out, "nan");
    else if (bits == IR_NAN_NEG)
      ad_buf_printf(out, "-nan");
    else
      ad_buf_printf(out, "nan(0x%016" PRIx64 ")", bits);
    return;
  }
  if (isinf(v)) {
    ad_buf_printf(out, v > 0 ? "inf" : "-inf");
    return;
  }
  char tmp[64];
  snprintf(tmp, sizeof tmp, "%.17g", v);
  bool intlike = true;
  for (const char *p = tmp; *p; p++)
    if (!is_digit((unsigned char)*p) && *p != '-') intlike = false;
  ad_buf_printf(out, "%s%s", tmp, (mark_float && intlike) ? ".0" : "");
}

static void print_symbol(ad_buf_t *out, const ir_module_t *m, int sym) {
  if (m && sym >= 0 && (uint32_t)sym < m->nsymbols)
    print_name(out, m->symbols[sym].name);
  else
    ad_buf_printf(out, "$%d", sym); /* not parseable on purpose: the type is broken */
}

static void print_dim(ad_buf_t *out, const ir_module_t *m, const ir_dim_t *d) {
  int parts = d->nterms + (d->cst != 0);
  bool paren = d->div > 1 && parts > 1;
  if (paren) ad_buf_put_u8(out, '(');
  for (int k = 0; k < d->nterms; k++) {
    const ir_dim_term_t *t = &d->terms[k];
    if (k > 0) ad_buf_put_u8(out, '+');
    if (t->coef != 1) ad_buf_printf(out, "%" PRId64 "*", t->coef);
    print_symbol(out, m, t->sym_a);
    if (t->sym_b >= 0) {
      ad_buf_put_u8(out, '*');
      print_symbol(out, m, t->sym_b);
    }
  }
  if (d->nterms == 0)
    ad_buf_printf(out, "%" PRId64, d->cst);
  else if (d->cst > 0)
    ad_buf_printf(out, "+%" PRId64, d->cst);
  else if (d->cst < 0)
    ad_buf_printf(out, "%" PRId64, d->cst);
  if (paren) ad_buf_put_u8(out, ')');
  if (d->div > 1) ad_buf_printf(out, "/%" PRId64, d->div);
}

void ir_print_type(const ir_module_t *m, const ir_type_t *t, ad_buf_t *out) {
  ad_buf_printf(out, "%s[", ir_dtype_name(t->dtype));
  for (int i = 0; i < t->rank && i < IR_MAX_RANK; i++) {
    if (i) ad_buf_put_u8(out, ',');
    print_dim(out, m, &t->dims[i]);
  }
  ad_buf_put_u8(out, ']');
}

static void print_attr(ad_buf_t *out, const ir_attr_t *a) {
  print_name(out, a->key);
  ad_buf_append(out, " = ", 3);
  switch (a->kind) {
    case IR_ATTR_INT: ad_buf_printf(out, "%" PRId64, a->i); break;
    case IR_ATTR_FLOAT: print_double(out, a->f, true); break;
    case IR_ATTR_STRING: print_quoted(out, a->s); break;
    case IR_ATTR_INTS:
      ad_buf_put_u8(out, '[');
      for (uint32_t k = 0; k < a->n; k++) ad_buf_printf(out, k ? ", %" PRId64 : "%" PRId64, a->ints[k]);
      ad_buf_put_u8(out, ']');
      break;
    case IR_ATTR_FLOATS:
      if (a->n == 0) ad_buf_printf(out, "floats");
      ad_buf_put_u8(out, '[');
      for (uint32_t k = 0; k < a->n; k++) {
        if (k) ad_buf_append(out, ", ", 2);
        print_double(out, a->floats[k], true);
      }
      ad_buf_put_u8(out, ']');
      break;
  }
}

static void print_node(ad_buf_t *out, const ir_graph_t *g, const ir_node_t *n) {
  ad_buf_append(out, "  ", 2);
  for (uint32_t k = 0; k < n->noutputs; k++) {
    uint32_t v = n->output0 + k;
    ad_buf_printf(out, k ? ", %%%" PRIu32 ": " : "%%%" PRIu32 ": ", v);
    if (v < g->nvalues)
      ir_print_type(g->module, &g->values[v].type, out);
    else
      ad_buf_printf(out, "<bad value>");
  }
  if (n->noutputs) ad_buf_append(out, " = ", 3);
  ad_buf_printf(out, "%s ", ir_op_name(n->op));
  print_quoted(out, n->name);
  if (n->ninputs) {
    ad_buf_append(out, " (", 2);
    for (uint32_t k = 0; k < n->ninputs; k++)
      ad_buf_printf(out, k ? ", %%%" PRIu32 : "%%%" PRIu32, n->inputs[k]);
    ad_buf_put_u8(out, ')');
  }
  if (n->nattrs) {
    ad_buf_append(out, " {", 2);
    for (uint32_t k = 0; k < n->nattrs; k++) {
      if (k) ad_buf_append(out, ", ", 2);
      print_attr(out, &n->attrs[k]);
    }
    ad_buf_put_u8(out, '}');
  }
  ad_buf_put_u8(out, '\n');
}

void ir_print_graph(const ir_graph_t *g, ad_buf_t *out) {
  ad_buf_printf(out, "program ");
  print_quoted(out, g->name);
  ad_buf_printf(out, " {\n");
  for (uint32_t i = 0; i < g->nnodes; i++) print_node(out, g, &g->nodes[i]);
  ad_buf_printf(out, "}\n");
}

static const struct {
  uint32_t bit;
  const char *name;
} g_slot_flags[] = {
    {IR_SLOT_PARAM, "param"},   {IR_SLOT_TRAINABLE, "trainable"}, {IR_SLOT_UNUSED, "unused"},
    {IR_SLOT_BUFFER, "buffer"}, {IR_SLOT_OPTIM, "optim"},
};
#define IR_NSLOT_FLAGS (sizeof g_slot_flags / sizeof g_slot_flags[0])

void ir_print_module(const ir_module_t *m, ad_buf_t *out) {
  ad_buf_printf(out, "%s %d\n", IR_TEXT_MAGIC, IR_TEXT_VERSION);
  for (uint32_t i = 0; i < m->nsymbols; i++) {
    ad_buf_printf(out, "symbol ");
    print_name(out, m->symbols[i].name);
    ad_buf_printf(out, " <= %" PRId64 "\n", m->symbols[i].bound);
  }
  for (uint32_t i = 0; i < m->nscalars; i++) {
    const ir_scalar_decl_t *s = &m->scalars[i];
    ad_buf_printf(out, "scalar ");
    print_quoted(out, s->name);
    ad_buf_printf(out, ": %s = ", ir_dtype_name(s->dtype));
    print_double(out, s->dflt, false);
    ad_buf_put_u8(out, '\n');
  }
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *s = &m->slots[i];
    ad_buf_printf(out, "slot ");
    print_quoted(out, s->name);
    ad_buf_append(out, ": ", 2);
    ir_print_type(m, &s->type, out);
    if (s->flags) {
      uint32_t rest = s->flags;
      const char *sep = " {";
      for (size_t k = 0; k < IR_NSLOT_FLAGS; k++)
        if (rest & g_slot_flags[k].bit) {
          ad_buf_printf(out, "%s%s", sep, g_slot_flags[k].name);
          rest &= ~g_slot_flags[k].bit;
          sep = ", ";
        }
      if (rest) ad_buf_printf(out, "%s%" PRIu32, sep, rest);
      ad_buf_put_u8(out, '}');
    }
    if (s->init) {
      ad_buf_printf(out, " init ");
      print_quoted(out, s->init);
    }
    ad_buf_put_u8(out, '\n');
  }
  for (uint32_t i = 0; i < m->nprograms; i++) {
    ad_buf_put_u8(out, '\n');
    ir_print_graph(m->programs[i], out);
  }
}

/* ---- parsing ------------------------------------------------------------------------- */

typedef struct parser {
  const char *p, *end, *line_start;
  int line;
  const char *file;
  const char *type_text; /* ir_parse_type: the whole string, for messages without a place */
  ir_module_t *m;
  ad_arena_t tmp;        /* strings and attr arrays until the builder has copied them */
  ad_status_t err;       /* first error */
} parser_t;

typedef struct place {
  int line, col;
} place_t;

static place_t here(const parser_t *ps) {
  return (place_t){ps->line, (int)(ps->p - ps->line_start) + 1};
}

static bool fail_atv(parser_t *ps, place_t at, const char *fmt, va_list ap) {
  if (ps->err) return false;
  char small[256];
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  char *msg = small;
  if (n >= (int)sizeof small && (msg = malloc((size_t)n + 1)) != NULL)
    vsnprintf(msg, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  if (!msg) msg = small;
  if (ps->type_text)
    ps->err = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "in type '%s' at column %d: %s",
                             ps->type_text, at.col, msg);
  else
    ps->err = ad_status_at(AD_STATUS_INVALID_ARGUMENT, ps->file, at.line, at.col, "%s", msg);
  if (msg != small) free(msg);
  return false;
}

static bool fail_at(parser_t *ps, place_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail_at(parser_t *ps, place_t at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fail_atv(ps, at, fmt, ap);
  va_end(ap);
  return false;
}

static bool fail(parser_t *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(parser_t *ps, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fail_atv(ps, here(ps), fmt, ap);
  va_end(ap);
  return false;
}

static void skip_ws(parser_t *ps) {
  while (ps->p < ps->end) {
    char c = *ps->p;
    if (c == '\n') {
      ps->p++;
      ps->line++;
      ps->line_start = ps->p;
    } else if (c == ' ' || c == '\t' || c == '\r') {
      ps->p++;
    } else if (c == '#') {
      while (ps->p < ps->end && *ps->p != '\n') ps->p++;
    } else {
      break;
    }
  }
}

/* Next significant character, or 0 at the end. */
static int peek(parser_t *ps) {
  skip_ws(ps);
  return ps->p < ps->end ? (unsigned char)*ps->p : 0;
}

static bool at_eof(parser_t *ps) {
  skip_ws(ps);
  return ps->p >= ps->end;
}

/* Describes the token at the cursor for "expected X, found Y" messages. */
static const char *found(parser_t *ps, char *buf, size_t n) {
  if (at_eof(ps)) return "end of input";
  unsigned char c = (unsigned char)*ps->p;
  if (c < 0x20 || c >= 0x7f)
    snprintf(buf, n, "byte 0x%02x", c);
  else if (is_ident_char(c)) {
    size_t k = 0;
    while (ps->p + k < ps->end && is_ident_char((unsigned char)ps->p[k]) && k < 32) k++;
    snprintf(buf, n, "'%.*s'", (int)k, ps->p);
  } else
    snprintf(buf, n, "'%c'", c);
  return buf;
}

static bool expect(parser_t *ps, char c) {
  if (peek(ps) == (unsigned char)c) {
    ps->p++;
    return true;
  }
  char b[64];
  return fail(ps, "expected '%c', found %s", c, found(ps, b, sizeof b));
}

static bool accept(parser_t *ps, char c) {
  if (peek(ps) == (unsigned char)c) {
    ps->p++;
    return true;
  }
  return false;
}

/* Identifier at the cursor (not consumed when it does not match). */
static size_t ident_len(parser_t *ps) {
  if (peek(ps) == 0 || !is_ident_start((unsigned char)*ps->p)) return 0;
  size_t k = 1;
  while (ps->p + k < ps->end && is_ident_char((unsigned char)ps->p[k])) k++;
  return k;
}

static bool accept_word(parser_t *ps, const char *w) {
  size_t k = ident_len(ps);
  if (k && k == strlen(w) && memcmp(ps->p, w, k) == 0) {
    ps->p += k;
    return true;
  }
  return false;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* A quoted string, unescaped into the scratch arena. */
static bool parse_string(parser_t *ps, const char **out) {
  if (peek(ps) != '"') {
    char b[64];
    return fail(ps, "expected a quoted string, found %s", found(ps, b, sizeof b));
  }
  place_t start = here(ps);
  ps->p++;
  /* The unescaped text is never longer than the escaped one. */
  size_t cap = 0;
  while (ps->p + cap < ps->end && ps->p[cap] != '"') cap += (ps->p[cap] == '\\') ? 2 : 1;
  char *s = ad_arena_alloc(&ps->tmp, cap + 1);
  size_t n = 0;
  for (;;) {
    if (ps->p >= ps->end) return fail_at(ps, start, "unterminated string");
    unsigned char c = (unsigned char)*ps->p;
    if (c == '"') {
      ps->p++;
      break;
    }
    if (c == '\n') return fail_at(ps, start, "unterminated string (newline inside quotes)");
    if (c == 0) return fail(ps, "NUL byte inside a string");
    if (c != '\\') {
      s[n++] = (char)c;
      ps->p++;
      continue;
    }
    if (ps->p + 1 >= ps->end) return fail_at(ps, start, "unterminated string");
    char e = ps->p[1];
    switch (e) {
      case '"': s[n++] = '"'; ps->p += 2; break;
      case '\\': s[n++] = '\\'; ps->p += 2; break;
      case 'n': s[n++] = '\n'; ps->p += 2; break;
      case 't': s[n++] = '\t'; ps->p += 2; break;
      case 'r': s[n++] = '\r'; ps->p += 2; break;
      case 'x': {
        int hi = ps->p + 2 < ps->end ? hexval((unsigned char)ps->p[2]) : -1;
        int lo = ps->p + 3 < ps->end ? hexval((unsigned char)ps->p[3]) : -1;
        if (hi < 0 || lo < 0) return fail(ps, "\\x needs two hex digits");
        if (hi == 0 && lo == 0) return fail(ps, "\\x00 is not allowed in a string");
        s[n++] = (char)(hi * 16 + lo);
        ps->p += 4;
        break;
      }
      default: return fail(ps, "unknown escape '\\%c'", (e >= 0x20 && e < 0x7f) ? e : '?');
    }
  }
  s[n] = 0;
  *out = s;
  return true;
}

/* NAME := IDENT | STRING */
static bool parse_name(parser_t *ps, const char **out) {
  size_t k = ident_len(ps);
  if (k) {
    *out = ad_arena_strndup(&ps->tmp, ps->p, k);
    ps->p += k;
    return true;
  }
  if (peek(ps) == '"') return parse_string(ps, out);
  char b[64];
  return fail(ps, "expected a name, found %s", found(ps, b, sizeof b));
}

/* A number token. *is_float tells whether it has a fraction, exponent, inf or nan. *iv is
 * valid when *iv_ok; *fv always holds the value as a double (±inf only for inf tokens). */
static bool parse_number(parser_t *ps, bool *is_float, int64_t *iv, bool *iv_ok, double *fv) {
  skip_ws(ps);
  place_t start = here(ps);
  const char *q = ps->p, *e = ps->end;
  bool neg = q < e && *q == '-';
  if (neg) q++;
  *iv_ok = false;
  *is_float = true;
  size_t wl = 0;
  while (q + wl < e && is_ident_char((unsigned char)q[wl])) wl++;
  if (wl == 3 && memcmp(q, "inf", 3) == 0) {
    *fv = neg ? -INFINITY : INFINITY;
    ps->p = q + 3;
    return true;
  }
  if (wl == 3 && memcmp(q, "nan", 3) == 0) {
    uint64_t bits = neg ? IR_NAN_NEG : IR_NAN_POS;
    q += 3;
    if (q < e && *q == '(') {
      if (neg) return fail_at(ps, start, "a NaN with a bit pattern takes no sign");
      if (e - q < 21 || q[1] != '0' || q[2] != 'x' || q[19] != ')')
        return fail_at(ps, start, "expected nan(0x<16 hex digits>)");
      bits = 0;
      for (int k = 0; k < 16; k++) {
        int h = hexval((unsigned char)q[3 + k]);
        if (h < 0) return fail_at(ps, start, "expected nan(0x<16 hex digits>)");
        bits = bits << 4 | (uint64_t)h;
      }
      q += 20;
    }
    double d;
    memcpy(&d, &bits, sizeof d);
    if (!isnan(d)) return fail_at(ps, start, "bit pattern 0x%016" PRIx64 " is not a NaN", bits);
    *fv = d;
    ps->p = q;
    return true;
  }
  const char *digits = q;
  while (q < e && is_digit((unsigned char)*q)) q++;
  if (q == digits) {
    char b[64];
    return fail(ps, "expected a number, found %s", found(ps, b, sizeof b));
  }
  bool flt = false;
  if (q < e && *q == '.') {
    flt = true;
    q++;
    while (q < e && is_digit((unsigned char)*q)) q++;
  }
  if (q < e && (*q == 'e' || *q == 'E')) {
    flt = true;
    q++;
    if (q < e && (*q == '+' || *q == '-')) q++;
    const char *ed = q;
    while (q < e && is_digit((unsigned char)*q)) q++;
    if (q == ed) return fail_at(ps, start, "malformed exponent");
  }
  if (q < e && (is_ident_char((unsigned char)*q) || *q == '.'))
    return fail_at(ps, start, "malformed number");
  size_t len = (size_t)(q - ps->p);
  if (len > 400) return fail_at(ps, start, "number too long");
  char tok[404];
  memcpy(tok, ps->p, len);
  tok[len] = 0;
  errno = 0;
  double d = strtod(tok, NULL);
  /* ERANGE also flags exact subnormals; only an overflow to infinity loses the value. */
  if (isinf(d)) return fail_at(ps, start, "number %s is out of range of a double", tok);
  *fv = d;
  *is_float = flt;
  if (!flt) {
    errno = 0;
    long long v = strtoll(tok, NULL, 10);
    if (errno != ERANGE) {
      *iv = (int64_t)v;
      *iv_ok = true;
    }
  }
  ps->p = q;
  return true;
}

static bool parse_int(parser_t *ps, int64_t *out) {
  skip_ws(ps);
  place_t start = here(ps);
  bool is_float, ok;
  double fv;
  if (!parse_number(ps, &is_float, out, &ok, &fv)) return false;
  if (is_float) return fail_at(ps, start, "expected an integer");
  if (!ok) return fail_at(ps, start, "integer out of range of int64");
  return true;
}

/* ---- dims ---- */

static bool parse_dim_sum(parser_t *ps, ir_dim_t *out);

static bool dim_unrepresentable(parser_t *ps, place_t at) {
  return fail_at(ps, at,
                 "dimension is not representable (at most %d terms of at most two symbols with "
                 "positive coefficients, floor division by a positive constant last)",
                 IR_DIM_MAX_TERMS);
}

/* The dim arithmetic of ir/dims.c does not check for int64 overflow; operands whose
 * magnitudes multiply past 2^60 are refused here so hand-written text cannot reach it. */
static uint64_t dim_mag(const ir_dim_t *d) {
  uint64_t m = d->cst < 0 ? (uint64_t)0 - (uint64_t)d->cst : (uint64_t)d->cst;
  if ((uint64_t)d->div > m) m = (uint64_t)d->div;
  for (int k = 0; k < d->nterms; k++)
    if ((uint64_t)d->terms[k].coef > m) m = (uint64_t)d->terms[k].coef;
  return m ? m : 1;
}

static bool dim_safe(parser_t *ps, place_t at, const ir_dim_t *a, const ir_dim_t *b) {
  uint64_t p;
  if (!__builtin_mul_overflow(dim_mag(a), dim_mag(b), &p) && p <= (1ull << 60)) return true;
  return fail_at(ps, at, "dimension arithmetic overflows");
}

static bool parse_dim_unary(parser_t *ps, ir_dim_t *out) {
  int c = peek(ps);
  place_t at = here(ps);
  if (c == '-') {
    /* A literal is negated while lexing so that INT64_MIN parses. */
    if (ps->p + 1 < ps->end && is_digit((unsigned char)ps->p[1])) {
      int64_t v;
      if (!parse_int(ps, &v)) return false;
      *out = ir_dim_const(v);
      return true;
    }
    ps->p++;
    ir_dim_t x;
    if (!parse_dim_unary(ps, &x)) return false;
    if (!ir_dim_mul(ir_dim_const(-1), x, out)) return dim_unrepresentable(ps, at);
    return true;
  }
  if (is_digit(c)) {
    int64_t v;
    if (!parse_int(ps, &v)) return false;
    *out = ir_dim_const(v);
    return true;
  }
  if (c == '(') {
    ps->p++;
    if (!parse_dim_sum(ps, out)) return false;
    return expect(ps, ')');
  }
  if (is_ident_start(c) || c == '"') {
    const char *name;
    if (!parse_name(ps, &name)) return false;
    int sym = ps->m ? ir_module_find_symbol(ps->m, name) : -1;
    if (sym < 0) return fail_at(ps, at, "unknown symbol '%s'", name);
    *out = ir_dim_sym(sym);
    return true;
  }
  char b[64];
  return fail(ps, "expected a dimension, found %s", found(ps, b, sizeof b));
}

static bool parse_dim_prod(parser_t *ps, ir_dim_t *out) {
  if (!parse_dim_unary(ps, out)) return false;
  for (;;) {
    int c = peek(ps);
    if (c != '*' && c != '/') return true;
    place_t at = here(ps);
    ps->p++;
    ir_dim_t rhs;
    if (!parse_dim_unary(ps, &rhs)) return false;
    if (!dim_safe(ps, at, out, &rhs)) return false;
    if (c == '*') {
      if (!ir_dim_mul(*out, rhs, out)) return dim_unrepresentable(ps, at);
    } else {
      int64_t d;
      if (!ir_dim_is_const(rhs, &d) || d < 1)
        return fail_at(ps, at, "'/' divides by a positive integer constant only");
      if (!ir_dim_div(*out, d, out)) return dim_unrepresentable(ps, at);
    }
  }
}

static bool parse_dim_sum(parser_t *ps, ir_dim_t *out) {
  if (!parse_dim_prod(ps, out)) return false;
  for (;;) {
    int c = peek(ps);
    if (c != '+' && c != '-') return true;
    place_t at = here(ps);
    ps->p++;
    ir_dim_t rhs;
    if (!parse_dim_prod(ps, &rhs)) return false;
    if (c == '-') {
      int64_t k;
      if (!ir_dim_is_const(rhs, &k) || k == INT64_MIN)
        return fail_at(ps, at, "only a constant can be subtracted in a dimension");
      rhs = ir_dim_const(-k);
    }
    if (!dim_safe(ps, at, out, &rhs)) return false;
    if (!ir_dim_add(*out, rhs, out)) return dim_unrepresentable(ps, at);
  }
}

static bool parse_dtype(parser_t *ps, ir_dtype_t *out) {
  size_t k = ident_len(ps);
  char name[16];
  if (k == 0 || k >= sizeof name) {
    char b[64];
    return fail(ps, "expected a dtype, found %s", found(ps, b, sizeof b));
  }
  memcpy(name, ps->p, k);
  name[k] = 0;
  if (!ir_dtype_from_name(name, out))
    return fail(ps, "unknown dtype '%s' (f32, f64, bf16, f16, i32, i64, u8)", name);
  ps->p += k;
  return true;
}

static bool parse_type_dims(parser_t *ps, ir_type_t *out) {
  memset(out, 0, sizeof *out);
  if (!parse_dtype(ps, &out->dtype)) return false;
  if (!expect(ps, '[')) return false;
  if (accept(ps, ']')) return true;
  for (;;) {
    if (out->rank == IR_MAX_RANK) return fail(ps, "rank above the maximum %d", IR_MAX_RANK);
    if (!parse_dim_sum(ps, &out->dims[out->rank])) return false;
    out->rank++;
    if (accept(ps, ']')) return true;
    if (!accept(ps, ',')) {
      char b[64];
      return fail(ps, "expected ',' or ']' in a type, found %s", found(ps, b, sizeof b));
    }
  }
}

static bool parse_type_p(parser_t *ps, ir_type_t *out) {
  skip_ws(ps);
  place_t at = here(ps);
  if (!parse_type_dims(ps, out)) return false;
  if (!ir_type_fits(ps->m, out))
    return fail_at(ps, at, "type too large: its element count at the symbol bounds passes 2^56");
  return true;
}

static void parser_init(parser_t *ps, const char *text, size_t len, const char *file,
                        ir_module_t *m) {
  memset(ps, 0, sizeof *ps);
  ps->p = ps->line_start = text;
  ps->end = text + len;
  ps->line = 1;
  ps->file = file ? file : "<input>";
  ps->m = m;
  ad_arena_init(&ps->tmp, 16 * 1024);
}

ad_status_t ir_parse_type(const ir_module_t *m, const char *s, ir_type_t *out) {
  parser_t ps;
  /* The parser only reads the module (symbol lookup). */
  parser_init(&ps, s, strlen(s), "<type>", (ir_module_t *)m);
  ps.type_text = s;
  ir_type_t t;
  if (parse_type_p(&ps, &t) && !at_eof(&ps)) {
    char b[64];
    fail(&ps, "unexpected %s after the type", found(&ps, b, sizeof b));
  }
  ad_arena_free(&ps.tmp);
  if (ps.err) return ps.err;
  *out = t;
  return AD_OK;
}

/* ---- attributes ---- */

/* A growable array in the scratch arena (old blocks are left to the arena). */
static void *grow(parser_t *ps, void *old, uint32_t n, uint32_t *cap, size_t elem) {
  if (n < *cap) return old;
  uint32_t nc = *cap ? *cap * 2 : 8;
  void *p = ad_arena_alloc(&ps->tmp, (size_t)nc * elem);
  if (n) memcpy(p, old, (size_t)n * elem);
  *cap = nc;
  return p;
}

static bool parse_list(parser_t *ps, ir_attr_t *a, int forced /* 0 none, 1 ints, 2 floats */) {
  place_t start = here(ps);
  if (!expect(ps, '[')) return false;
  int64_t *ints = NULL;
  double *floats = NULL;
  uint32_t n = 0, cap_i = 0, cap_f = 0;
  bool any_float = false, all_int_ok = true;
  if (!accept(ps, ']')) {
    for (;;) {
      bool is_float, iv_ok;
      int64_t iv = 0;
      double fv;
      if (!parse_number(ps, &is_float, &iv, &iv_ok, &fv)) return false;
      ints = grow(ps, ints, n, &cap_i, sizeof *ints);
      floats = grow(ps, floats, n, &cap_f, sizeof *floats);
      ints[n] = iv;
      floats[n] = fv;
      any_float |= is_float;
      all_int_ok &= iv_ok || is_float;
      n++;
      if (accept(ps, ']')) break;
      if (!expect(ps, ',')) return false;
    }
  }
  bool as_floats = forced == 2 || (forced == 0 && any_float);
  if (as_floats) {
    a->kind = IR_ATTR_FLOATS;
    a->floats = floats;
  } else {
    if (any_float) return fail_at(ps, start, "an 'ints' list holds a float");
    if (!all_int_ok) return fail_at(ps, start, "integer out of range of int64 in a list");
    a->kind = IR_ATTR_INTS;
    a->ints = ints;
  }
  a->n = n;
  return true;
}

static bool parse_attr(parser_t *ps, ir_attr_t *a) {
  memset(a, 0, sizeof *a);
  if (!parse_name(ps, &a->key)) return false;
  if (!expect(ps, '=')) return false;
  int c = peek(ps);
  if (c == '"') {
    a->kind = IR_ATTR_STRING;
    return parse_string(ps, &a->s);
  }
  if (c == '[') return parse_list(ps, a, 0);
  if (accept_word(ps, "ints")) return parse_list(ps, a, 1);
  if (accept_word(ps, "floats")) return parse_list(ps, a, 2);
  place_t at = here(ps);
  bool is_float, iv_ok;
  if (!parse_number(ps, &is_float, &a->i, &iv_ok, &a->f)) return false;
  if (is_float) {
    a->kind = IR_ATTR_FLOAT;
    a->i = 0;
  } else {
    if (!iv_ok) return fail_at(ps, at, "integer out of range of int64");
    a->kind = IR_ATTR_INT;
    a->f = 0;
  }
  return true;
}

/* ---- value labels: %N in the text -> value id in the rebuilt graph ---- */

typedef struct label_map {
  uint32_t *keys, *vals; /* open addressing; key IR_NONE = empty */
  uint32_t cap, n;
} label_map_t;

static uint32_t label_hash(uint32_t k) { return k * 2654435761u; }

static void label_map_free(label_map_t *lm) {
  free(lm->keys);
  free(lm->vals);
  memset(lm, 0, sizeof *lm);
}

static uint32_t label_find(const label_map_t *lm, uint32_t k) {
  if (!lm->cap) return IR_NONE;
  for (uint32_t h = label_hash(k) & (lm->cap - 1);; h = (h + 1) & (lm->cap - 1)) {
    if (lm->keys[h] == IR_NONE) return IR_NONE;
    if (lm->keys[h] == k) return lm->vals[h];
  }
}

static void label_put(label_map_t *lm, uint32_t k, uint32_t v) {
  if ((lm->n + 1) * 2 > lm->cap) {
    uint32_t nc = lm->cap ? lm->cap * 2 : 64;
    uint32_t *nk = malloc(nc * sizeof *nk), *nv = malloc(nc * sizeof *nv);
    if (!nk || !nv) {
      /* Compile-time OOM is fatal everywhere else too (see support/arena.c). */
      fputs("aidomm: fatal: out of memory parsing IR text\n", stderr);
      abort();
    }
    memset(nk, 0xff, nc * sizeof *nk);
    for (uint32_t i = 0; i < lm->cap; i++)
      if (lm->keys[i] != IR_NONE) {
        uint32_t h = label_hash(lm->keys[i]) & (nc - 1);
        while (nk[h] != IR_NONE) h = (h + 1) & (nc - 1);
        nk[h] = lm->keys[i];
        nv[h] = lm->vals[i];
      }
    free(lm->keys);
    free(lm->vals);
    lm->keys = nk;
    lm->vals = nv;
    lm->cap = nc;
  }
  uint32_t h = label_hash(k) & (lm->cap - 1);
  while (lm->keys[h] != IR_NONE) h = (h + 1) & (lm->cap - 1);
  lm->keys[h] = k;
  lm->vals[h] = v;
  lm->n++;
}

static bool parse_label(parser_t *ps, uint32_t *out) {
  place_t at = here(ps);
  if (!expect(ps, '%')) return false;
  if (ps->p >= ps->end || !is_digit((unsigned char)*ps->p))
    return fail_at(ps, at, "expected a value number after '%%'");
  uint64_t v = 0;
  while (ps->p < ps->end && is_digit((unsigned char)*ps->p)) {
    v = v * 10 + (uint64_t)(*ps->p - '0');
    if (v >= IR_NONE) return fail_at(ps, at, "value number too large");
    ps->p++;
  }
  *out = (uint32_t)v;
  return true;
}

/* ---- nodes and programs ---- */

/* Builder errors carry their own context ("node 'x' (add): ..."); the place is the node's. */
static bool fail_status(parser_t *ps, place_t at, ad_status_t st) {
  fail_at(ps, at, "%s", ad_status_message(st));
  ad_status_free(st);
  return false;
}

static bool parse_node(parser_t *ps, ir_graph_t *g, label_map_t *lm) {
  place_t node_at = here(ps);
  uint32_t nouts = 0, cap_outs = 0;
  uint32_t *out_labels = NULL;
  ir_type_t *out_types = NULL;
  uint32_t cap_types = 0;
  place_t *out_places = NULL;
  uint32_t cap_places = 0;
  if (peek(ps) == '%') {
    for (;;) {
      out_labels = grow(ps, out_labels, nouts, &cap_outs, sizeof *out_labels);
      out_types = grow(ps, out_types, nouts, &cap_types, sizeof *out_types);
      out_places = grow(ps, out_places, nouts, &cap_places, sizeof *out_places);
      skip_ws(ps);
      out_places[nouts] = here(ps);
      if (!parse_label(ps, &out_labels[nouts])) return false;
      if (label_find(lm, out_labels[nouts]) != IR_NONE)
        return fail_at(ps, out_places[nouts], "value %%%" PRIu32 " is defined twice",
                       out_labels[nouts]);
      for (uint32_t k = 0; k < nouts; k++)
        if (out_labels[k] == out_labels[nouts])
          return fail_at(ps, out_places[nouts], "value %%%" PRIu32 " is defined twice",
                         out_labels[nouts]);
      if (!expect(ps, ':')) return false;
      if (!parse_type_p(ps, &out_types[nouts])) return false;
      nouts++;
      if (accept(ps, '=')) break;
      if (!expect(ps, ',')) return false;
    }
  }
  skip_ws(ps);
  place_t op_at = here(ps);
  size_t k = ident_len(ps);
  char opname[64];
  if (k == 0 || k >= sizeof opname) {
    char b[64];
    return fail(ps, "expected an op name, found %s", found(ps, b, sizeof b));
  }
  memcpy(opname, ps->p, k);
  opname[k] = 0;
  ir_node_desc_t d = {0};
  if (!ir_op_from_name(opname, &d.op)) return fail(ps, "unknown op '%s'", opname);
  ps->p += k;
  if (!parse_string(ps, &d.name)) return false;
  uint32_t *inputs = NULL, cap_in = 0;
  if (accept(ps, '(')) {
    if (!accept(ps, ')')) {
      for (;;) {
        skip_ws(ps);
        place_t at = here(ps);
        uint32_t label;
        if (!parse_label(ps, &label)) return false;
        uint32_t v = label_find(lm, label);
        if (v == IR_NONE) return fail_at(ps, at, "value %%%" PRIu32 " is not defined before use", label);
        inputs = grow(ps, inputs, d.ninputs, &cap_in, sizeof *inputs);
        inputs[d.ninputs++] = v;
        if (accept(ps, ')')) break;
        if (!expect(ps, ',')) return false;
      }
    }
  }
  ir_attr_t *attrs = NULL;
  uint32_t cap_attrs = 0;
  if (accept(ps, '{')) {
    for (;;) {
      skip_ws(ps);
      place_t at = here(ps);
      attrs = grow(ps, attrs, d.nattrs, &cap_attrs, sizeof *attrs);
      if (!parse_attr(ps, &attrs[d.nattrs])) return false;
      for (uint32_t j = 0; j < d.nattrs; j++)
        if (strcmp(attrs[j].key, attrs[d.nattrs].key) == 0)
          return fail_at(ps, at, "attribute '%s' is given twice", attrs[j].key);
      d.nattrs++;
      if (accept(ps, '}')) break;
      if (!expect(ps, ',')) return false;
    }
  }
  d.inputs = inputs;
  d.attrs = attrs;
  const ir_op_info_t *info = ir_op_info(d.op);
  if (info && (info->flags & IR_OP_FLAG_EXPLICIT_TYPE)) {
    d.out_types = out_types;
    d.nout_types = nouts;
  }
  uint32_t before = g->nnodes;
  ir_build(g, &d);
  ad_status_t st = ir_graph_take_error(g);
  if (st) return fail_status(ps, op_at, st);
  if (g->nnodes != before + 1)
    return fail_at(ps, op_at, "node '%s' (%s) was not added to the graph", d.name, opname);
  const ir_node_t *n = &g->nodes[before];
  if (n->noutputs != nouts)
    return fail_at(ps, node_at, "node '%s' (%s) has %" PRIu32 " outputs but %" PRIu32
                   " are written", d.name, opname, n->noutputs, nouts);
  for (uint32_t i = 0; i < nouts; i++) {
    const ir_type_t *t = &g->values[n->output0 + i].type;
    if (!ir_type_equal(t, &out_types[i])) {
      ad_buf_t a = {0}, b = {0};
      ir_print_type(g->module, &out_types[i], &a);
      ir_print_type(g->module, t, &b);
      fail_at(ps, out_places[i], "node '%s' (%s): output %" PRIu32 " is written %.*s but "
              "inference gives %.*s", d.name, opname, i, (int)a.len, (const char *)a.data,
              (int)b.len, (const char *)b.data);
      ad_buf_free(&a);
      ad_buf_free(&b);
      return false;
    }
    label_put(lm, out_labels[i], n->output0 + i);
  }
  return true;
}

static bool parse_program(parser_t *ps) {
  skip_ws(ps);
  place_t at = here(ps);
  const char *name;
  if (!parse_string(ps, &name)) return false;
  if (ir_module_find_program(ps->m, name)) return fail_at(ps, at, "program '%s' is defined twice", name);
  ir_graph_t *g = ir_module_add_program(ps->m, name);
  if (!g) return fail_at(ps, at, "cannot add program '%s'", name);
  if (!expect(ps, '{')) return false;
  label_map_t lm = {0};
  bool ok = true;
  while (ok && !accept(ps, '}')) {
    if (at_eof(ps)) {
      ok = fail_at(ps, at, "program '%s' is not closed with '}'", name);
      break;
    }
    ok = parse_node(ps, g, &lm);
  }
  label_map_free(&lm);
  return ok;
}

static bool module_status(parser_t *ps, place_t at, ad_status_t st) {
  if (!st) return true;
  return fail_status(ps, at, st);
}

static bool parse_decl(parser_t *ps) {
  skip_ws(ps);
  place_t at = here(ps);
  if (accept_word(ps, "symbol")) {
    const char *name;
    int64_t bound;
    if (!parse_name(ps, &name) || !expect(ps, '<') || !expect(ps, '=') || !parse_int(ps, &bound))
      return false;
    return module_status(ps, at, ir_module_add_symbol(ps->m, name, bound, NULL));
  }
  if (accept_word(ps, "scalar")) {
    const char *name;
    ir_dtype_t dt = IR_DTYPE_F32;
    if (!parse_string(ps, &name) || !expect(ps, ':') || !parse_dtype(ps, &dt) || !expect(ps, '='))
      return false;
    bool is_float, iv_ok;
    int64_t iv;
    double fv;
    if (!parse_number(ps, &is_float, &iv, &iv_ok, &fv)) return false;
    return module_status(ps, at, ir_module_add_scalar(ps->m, name, dt, fv));
  }
  if (accept_word(ps, "slot")) {
    const char *name, *init = NULL;
    ir_type_t t;
    uint32_t flags = 0;
    if (!parse_string(ps, &name) || !expect(ps, ':') || !parse_type_p(ps, &t)) return false;
    if (accept(ps, '{')) {
      for (;;) {
        bool known = false;
        for (size_t k = 0; k < IR_NSLOT_FLAGS && !known; k++)
          if (accept_word(ps, g_slot_flags[k].name)) {
            flags |= g_slot_flags[k].bit;
            known = true;
          }
        if (!known) {
          if (!is_digit(peek(ps))) {
            char b[64];
            return fail(ps, "expected a slot flag (param, trainable, unused, buffer, optim or "
                        "a number), found %s", found(ps, b, sizeof b));
          }
          int64_t v;
          skip_ws(ps);
          place_t fat = here(ps);
          if (!parse_int(ps, &v)) return false;
          if (v < 0 || v > (int64_t)UINT32_MAX) return fail_at(ps, fat, "slot flags out of range");
          flags |= (uint32_t)v;
        }
        if (accept(ps, '}')) break;
        if (!expect(ps, ',')) return false;
      }
    }
    if (accept_word(ps, "init") && !parse_string(ps, &init)) return false;
    return module_status(ps, at, ir_module_add_slot(ps->m, name, &t, flags, init, NULL));
  }
  if (accept_word(ps, "program")) return parse_program(ps);
  char b[64];
  return fail(ps, "expected 'symbol', 'scalar', 'slot' or 'program', found %s",
              found(ps, b, sizeof b));
}

ad_status_t ir_parse_module(const char *text, size_t len, const char *filename, ir_module_t **out) {
  *out = NULL;
  ir_module_t *m = ir_module_create();
  if (!m) return ad_status_make(AD_STATUS_RESOURCE, "out of memory creating a module");
  parser_t ps;
  parser_init(&ps, text, len, filename, m);
  skip_ws(&ps);
  place_t at = here(&ps);
  size_t ml = strlen(IR_TEXT_MAGIC);
  int64_t version = 0;
  if ((size_t)(ps.end - ps.p) < ml || memcmp(ps.p, IR_TEXT_MAGIC, ml) != 0 ||
      (ps.p + ml < ps.end && is_ident_char((unsigned char)ps.p[ml]))) {
    fail(&ps, "expected the header '%s %d'", IR_TEXT_MAGIC, IR_TEXT_VERSION);
  } else {
    ps.p += ml;
    if (parse_int(&ps, &version) && version != IR_TEXT_VERSION)
      fail_at(&ps, at, "IR text version %" PRId64 " is not supported (this build reads %d)",
              version, IR_TEXT_VERSION);
  }
  while (!ps.err && !at_eof(&ps)) parse_decl(&ps);
  ad_arena_free(&ps.tmp);
  if (ps.err) {
    ir_module_free(m);
    return ps.err;
  }
  *out = m;
  return AD_OK;
}
