/* The IR text form: types print canonically and parse back; modules (the hand-written files
 * in tests/ir/ and modules built here) print, parse and print again byte-identically, with
 * every attribute kind, odd names and exact floats (inf, NaN payloads, -0.0, subnormals);
 * malformed text is one "FILE:LINE:COL: error: ..." status at the right place. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/test_util.h"

/* print(parse(text)) == print(parse(print(parse(text)))); returns the first print. */
static char *round_trip(const char *text, size_t len, const char *file) {
  ir_module_t *m;
  tu_ok(ir_parse_module(text, len, file, &m));
  tu_ok(ir_verify_module(m));
  size_t n1, n2;
  char *p1 = tu_print_module(m, &n1);
  ir_module_free(m);
  tu_ok(ir_parse_module(p1, n1, "<printed>", &m));
  char *p2 = tu_print_module(m, &n2);
  ir_module_free(m);
  if (n1 != n2 || memcmp(p1, p2, n1) != 0)
    ck_abort_msg("%s: second print differs:\n--- first\n%s\n--- second\n%s", file, p1, p2);
  free(p2);
  return p1;
}

/* ---- types ---------------------------------------------------------------------------- */

static ir_module_t *symbols_module(void) {
  ir_module_t *m = ir_module_create();
  tu_ok(ir_module_add_symbol(m, "B", 4, NULL));
  tu_ok(ir_module_add_symbol(m, "L", 512, NULL));
  tu_ok(ir_module_add_symbol(m, "H", 64, NULL));
  tu_ok(ir_module_add_symbol(m, "seq len", 8, NULL)); /* not an identifier: printed quoted */
  return m;
}

static char *type_text(const ir_module_t *m, const ir_type_t *t) {
  ad_buf_t b = {0};
  ir_print_type(m, t, &b);
  ad_buf_put_u8(&b, 0);
  return (char *)b.data;
}

START_TEST(test_type_canonical) {
  ir_module_t *m = symbols_module();
  static const char *const cases[][2] = {
      {"f32[B,L+2,8]", "f32[B,L+2,8]"},
      {"i64[]", "i64[]"},
      {" f64 [ B , L ] ", "f64[B,L]"},
      {"f32[2+L]", "f32[L+2]"},
      {"f32[L*B]", "f32[B*L]"},
      {"f32[B*L]", "f32[B*L]"},
      {"f32[2*L+1]", "f32[2*L+1]"},
      {"f32[L+L+1]", "f32[2*L+1]"},
      {"f32[(L+2)/128]", "f32[(L+2)/128]"},
      {"f32[L/128]", "f32[L/128]"},
      {"f32[(2*L)/4]", "f32[2*L/4]"},
      {"f32[(4*L+8)/4]", "f32[L+2]"},
      {"f32[L/2/2]", "f32[L/4]"},
      {"f32[L/(2*2)]", "f32[L/4]"},
      {"f32[(L+2)/2+2]", "f32[(L+6)/2]"},
      {"f32[L-1]", "f32[L-1]"},
      {"f32[L+-1]", "f32[L-1]"},
      {"f32[8/2]", "f32[4]"},
      {"f32[7/2]", "f32[3]"},
      {"f32[-3]", "f32[-3]"},
      {"f32[-(3)]", "f32[-3]"},
      {"f32[0]", "f32[0]"},
      {"f32[B*L*2+H]", "f32[2*B*L+H]"},
      {"f32[(B+1)*(L+1)]", "f32[B+B*L+L+1]"},
      {"f32[L*L]", "f32[L*L]"},
      {"f32[\"seq len\"*B]", "f32[B*\"seq len\"]"},
      {"f32[-72057594037927936]", "f32[-72057594037927936]"},
      {"f32[72057594037927936]", "f32[72057594037927936]"},
      {"bf16[1,2,3,4,5,6]", "bf16[1,2,3,4,5,6]"},
      {"u8[B] # a comment", "u8[B]"},
      {"i32[H]", "i32[H]"},
      {"f16[H*2]", "f16[2*H]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ir_type_t t, t2;
    ad_status_t st = ir_parse_type(m, cases[i][0], &t);
    if (st) ck_abort_msg("'%s': %s", cases[i][0], ad_status_message(st));
    char *s = type_text(m, &t);
    ck_assert_msg(strcmp(s, cases[i][1]) == 0, "'%s' printed '%s', expected '%s'", cases[i][0], s,
                  cases[i][1]);
    tu_ok(ir_parse_type(m, s, &t2));
    ck_assert(ir_type_equal(&t, &t2));
    char *s2 = type_text(m, &t2);
    ck_assert_str_eq(s, s2);
    free(s);
    free(s2);
  }
  ir_module_free(m);
}
END_TEST

START_TEST(test_type_errors) {
  ir_module_t *m = symbols_module();
  static const char *const cases[][2] = {
      {"f32[B,Q]", "column 7: unknown symbol 'Q'"},
      {"f33[2]", "unknown dtype 'f33'"},
      {"f32[1,2,3,4,5,6,7]", "rank above the maximum 6"},
      {"f32[L/B]", "divides by a positive integer constant only"},
      {"f32[L/0]", "divides by a positive integer constant only"},
      {"f32[L*L*L]", "not representable"},
      {"f32[B*L+L*L+B*B+H]", "not representable"},
      {"f32[2-L]", "only a constant can be subtracted"},
      {"f32[-L]", "not representable"},
      {"f32[B", "expected ',' or ']'"},
      {"f32[B] x", "unexpected 'x' after the type"},
      {"f32[1099511627776*1099511627776*4]", "overflows"},
      {"f32[99999999999999999999]", "out of range"},
      {"f32[-9223372036854775808]", "type too large"},
      {"f32[72057594037927937]", "type too large"},
      {"f32[L*L,L*L,L*L,L*L]", "type too large"},
      {"f32[65536,65536,65536,65536]", "type too large"},
      {"f32[1.5]", "expected an integer"},
      {"[B]", "expected a dtype"},
      {"", "expected a dtype"},
      {"f32[B,]", "expected a dimension"},
      {"f32[\"seq len]", "unterminated string"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ir_type_t t;
    ad_status_t st = ir_parse_type(m, cases[i][0], &t);
    ck_assert_msg(st != NULL, "'%s' parsed", cases[i][0]);
    ck_assert_int_eq(ad_status_code(st), AD_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(strstr(ad_status_message(st), cases[i][1]) != NULL, "'%s': message '%s' lacks '%s'",
                  cases[i][0], ad_status_message(st), cases[i][1]);
    ck_assert_msg(strstr(ad_status_message(st), cases[i][0]) != NULL, "message names the type");
    ad_status_free(st);
  }
  /* Without a module only constant dims parse. */
  ir_type_t t;
  tu_ok(ir_parse_type(NULL, "f32[2,3]", &t));
  ck_assert_int_eq(t.rank, 2);
  ad_status_t st = ir_parse_type(NULL, "f32[B]", &t);
  ck_assert_ptr_nonnull(st);
  ad_status_free(st);
  ir_module_free(m);
}
END_TEST

/* Random dims built with the dim arithmetic print and parse back to equal dims. */
START_TEST(test_type_random_round_trip) {
  ir_module_t *m = symbols_module();
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  int tried = 0, made = 0;
  while (made < 3000 && tried < 100000) {
    tried++;
    ir_type_t t;
    memset(&t, 0, sizeof t);
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    t.dtype = (ir_dtype_t)((seed >> 33) % IR_DTYPE_COUNT);
    t.rank = (int)((seed >> 40) % (IR_MAX_RANK + 1));
    bool good = true;
    for (int d = 0; d < t.rank && good; d++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      ir_dim_t x = (seed >> 60) & 1 ? ir_dim_sym((int)((seed >> 50) % 4))
                                    : ir_dim_const((int64_t)((seed >> 44) % 40) - 5);
      int nops = (int)((seed >> 20) % 4);
      for (int k = 0; k < nops && good; k++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int64_t c = (int64_t)((seed >> 30) % 9) + 1;
        ir_dim_t s = ir_dim_sym((int)((seed >> 50) % 4));
        switch ((seed >> 58) % 5) {
          case 0: good = ir_dim_add_const(x, c - 3, &x); break;
          case 1: good = ir_dim_add(x, s, &x); break;
          case 2: good = ir_dim_mul(x, ir_dim_const(c), &x); break;
          case 3: good = ir_dim_mul(x, s, &x); break;
          default: good = ir_dim_div(x, c, &x); break;
        }
      }
      t.dims[d] = x;
    }
    if (!good) continue;
    char *s = type_text(m, &t);
    ir_type_t t2;
    ad_status_t st = ir_parse_type(m, s, &t2);
    if (st && strstr(ad_status_message(st), "type too large")) { /* L*L*L*L... past 2^56 */
      ad_status_free(st);
      free(s);
      continue;
    }
    if (st) ck_abort_msg("'%s' does not parse: %s", s, ad_status_message(st));
    made++;
    ck_assert_msg(ir_type_equal(&t, &t2), "'%s' parses to a different type", s);
    char *s2 = type_text(m, &t2);
    ck_assert_str_eq(s, s2);
    free(s);
    free(s2);
  }
  ck_assert_int_eq(made, 3000);
  ir_module_free(m);
}
END_TEST

/* ---- modules -------------------------------------------------------------------------- */

/* Every .air file in tests/ir is canonical except those named *.loose.air, which are written
 * freely (comments, spacing, labels that are not value ids) and must print canonically. */
static void check_file(const char *path, const char *name, void *ctx) {
  (void)ctx;
  size_t len, nl = strlen(name);
  char *text = tu_read_file(path, &len);
  char *printed = round_trip(text, len, path);
  bool loose = nl > 10 && strcmp(name + nl - 10, ".loose.air") == 0;
  if (!loose && strcmp(printed, text) != 0)
    ck_abort_msg("%s is not in canonical form; it prints as:\n%s", path, printed);
  if (loose) ck_assert_msg(strcmp(printed, text) != 0, "%s is canonical; rename it", path);
  free(printed);
  free(text);
}

START_TEST(test_files_round_trip) {
  ck_assert_int_ge(tu_for_each_file(tu_source_path("tests/ir"), ".air", check_file, NULL), 3);
}
END_TEST

static const char *all_bytes_name(void) {
  static char s[256];
  for (int i = 1; i < 256; i++) s[i - 1] = (char)i;
  s[255] = 0;
  return s;
}

/* Symbols, scalars, slots, three programs, every attribute kind and odd strings. */
static ir_module_t *build_module(void) {
  ir_module_t *m = ir_module_create();
  tu_ok(ir_module_add_symbol(m, "B", 4, NULL));
  tu_ok(ir_module_add_symbol(m, "L", 16, NULL));
  tu_ok(ir_module_add_symbol(m, "odd sym\t\"x\"", 3, NULL));
  tu_ok(ir_module_add_scalar(m, "lr", IR_DTYPE_F64, 1e-3));
  tu_ok(ir_module_add_scalar(m, "step", IR_DTYPE_I64, 0.0));
  tu_ok(ir_module_add_scalar(m, "neg zero", IR_DTYPE_F32, -0.0));
  tu_ok(ir_module_add_scalar(m, "nan payload", IR_DTYPE_F64,
                             tu_f64_from_bits(0x7ff4000000000123ull)));
  tu_ok(ir_module_add_scalar(m, "big", IR_DTYPE_F64, 1e16));
  tu_ok(ir_module_add_scalar(m, "inf", IR_DTYPE_F64, -INFINITY));
  ir_type_t w8 = tu_type(m, "f32[8,8]"), v8 = tu_type(m, "f32[8]");
  tu_ok(ir_module_add_slot(m, "enc.w", &w8, IR_SLOT_PARAM | IR_SLOT_TRAINABLE, "normal(0,0.02)",
                           NULL));
  tu_ok(ir_module_add_slot(m, "enc.b", &v8, IR_SLOT_PARAM | IR_SLOT_TRAINABLE | IR_SLOT_UNUSED,
                           "zeros", NULL));
  tu_ok(ir_module_add_slot(m, "bn.mean", &v8, IR_SLOT_BUFFER, "zeros", NULL));
  tu_ok(ir_module_add_slot(m, "adam.m\\enc.w\n", &w8, IR_SLOT_OPTIM | (1u << 9), "", NULL));
  tu_ok(ir_module_add_slot(m, "plain", &v8, 0, "ones", NULL));

  ir_graph_t *g = ir_module_add_program(m, "train step");
  static const int64_t ints[] = {1, -2, INT64_MAX, INT64_MIN, 0};
  const double floats[] = {1.0,    -0.0,         INFINITY,   -INFINITY, NAN, -NAN,
                           tu_f64_from_bits(0x7ff0000000000001ull),
                           tu_f64_from_bits(0xfff0000000000abcull), 4.9406564584124654e-324,
                           1.7976931348623157e308, 0.1, 1e16, -2.5e-300, 123456789.0};
  const ir_attr_t kinds[] = {
      IR_ATTR_I("i", -7),
      IR_ATTR_I("i_min", INT64_MIN),
      IR_ATTR_F("f", 2.5),
      IR_ATTR_F("f_int", 3.0),
      IR_ATTR_F("f_negzero", -0.0),
      IR_ATTR_F("f_nan", tu_f64_from_bits(0x7ff8000000000001ull)),
      IR_ATTR_S("s", "tab\there \"quoted\" back\\slash\nnew\r\x01\x7f\x80\xff end"),
      IR_ATTR_S("empty", ""),
      IR_ATTR_INTS("ints", ints, 5),
      IR_ATTR_INTS("ints_empty", NULL, 0),
      IR_ATTR_FLOATS("floats", floats, sizeof floats / sizeof floats[0]),
      IR_ATTR_FLOATS("floats_empty", NULL, 0),
      IR_ATTR_FLOATS("floats_one", floats + 2, 1),
      IR_ATTR_S("key with space", "k"),
      IR_ATTR_S("", "empty key"),
  };
  ir_type_t tx = tu_type(m, "f32[B,L,8]");
  uint32_t x = tu_node_ok(g, IR_OP_INPUT, all_bytes_name(), NULL, 0, kinds,
                          sizeof kinds / sizeof kinds[0], &tx);
  ir_type_t tq = tu_type(m, "f32[B,\"odd sym\\t\\\"x\\\"\"*L+1,(L+2)/4]");
  uint32_t q = tu_node_ok(g, IR_OP_INPUT, "q", NULL, 0, NULL, 0, &tq);
  uint32_t lr = tu_node_ok(g, IR_OP_SCALAR, "lr", NULL, 0, NULL, 0, NULL);
  (void)lr;
  ir_attr_t slot_w = IR_ATTR_S("slot", "enc.w"), slot_b = IR_ATTR_S("slot", "enc.b");
  uint32_t w = tu_node_ok(g, IR_OP_STATE_IN, "enc.w", NULL, 0, &slot_w, 1, NULL);
  uint32_t b = tu_node_ok(g, IR_OP_STATE_IN, "enc.b", NULL, 0, &slot_b, 1, NULL);
  uint32_t lin_in[] = {x, w, b};
  uint32_t y = tu_node_ok(g, IR_OP_LINEAR, "enc.linear", lin_in, 3, NULL, 0, NULL);
  ir_attr_t eps = IR_ATTR_F("eps", 1e-5);
  uint32_t ln = tu_node_ok(g, IR_OP_LAYERNORM, "enc.ln", &y, 1, &eps, 1, NULL);
  uint32_t sm = tu_node_ok(g, IR_OP_SOFTMAX, "enc.softmax", &ln, 1, NULL, 0, NULL);
  static const int64_t axes[] = {-1};
  ir_attr_t red[] = {IR_ATTR_INTS("axes", axes, 1), IR_ATTR_I("keepdim", 0)};
  uint32_t r = tu_node_ok(g, IR_OP_REDUCE_SUM, "enc.sum", &sm, 1, red, 2, NULL);
  ir_attr_t sc[] = {IR_ATTR_F("alpha", 0.5), IR_ATTR_F("beta", -1.0)};
  uint32_t s = tu_node_ok(g, IR_OP_SCALE, "enc.scale", &r, 1, sc, 2, NULL);
  ir_type_t flat = tu_type(m, "f32[B*L]");
  uint32_t fl = tu_node_ok(g, IR_OP_RESHAPE, "enc.flat", &s, 1, NULL, 0, &flat);
  uint32_t wn = tu_node_ok(g, IR_OP_SCALE, "w.new", &w, 1, sc, 2, NULL);
  tu_node_ok(g, IR_OP_STATE_OUT, "w.write", &wn, 1, &slot_w, 1, NULL);
  tu_node_ok(g, IR_OP_OUTPUT, "loss \"quoted\"", &fl, 1, NULL, 0, NULL);
  tu_node_ok(g, IR_OP_OUTPUT, "q.out", &q, 1, NULL, 0, NULL);
  (void)ln;

  ir_graph_t *e = ir_module_add_program(m, "eval");
  ir_type_t t3 = tu_type(m, "f64[3]");
  const double cv[] = {0.25, -1.5, 1e-310};
  ir_attr_t val = IR_ATTR_FLOATS("value", cv, 3);
  uint32_t c = tu_node_ok(e, IR_OP_CONST, "c", NULL, 0, &val, 1, &t3);
  uint32_t c2 = tu_node_ok(e, IR_OP_MUL, "c.sq", (uint32_t[]){c, c}, 2, NULL, 0, NULL);
  tu_node_ok(e, IR_OP_OUTPUT, "out", &c2, 1, NULL, 0, NULL);

  ir_module_add_program(m, ""); /* an empty program with an empty name */
  tu_ok(ir_verify_module(m));
  return m;
}

START_TEST(test_built_module_round_trip) {
  ir_module_t *m = build_module();
  size_t n;
  char *p = tu_print_module(m, &n);
  ck_assert_uint_eq(strlen(p), n); /* no NUL escaped into the text */
  for (size_t i = 0; i < n; i++)
    ck_assert_msg(p[i] == '\n' || ((unsigned char)p[i] >= 0x20 && (unsigned char)p[i] < 0x7f),
                  "byte 0x%02x at %zu is not printable ASCII", (unsigned char)p[i], i);
  char *p2 = round_trip(p, n, "<built>");
  ck_assert_str_eq(p, p2);

  /* The parsed module holds exactly the same values, bit for bit. */
  ir_module_t *m2;
  tu_ok(ir_parse_module(p, n, "<built>", &m2));
  ck_assert_uint_eq(m2->nprograms, m->nprograms);
  ck_assert_uint_eq(m2->nscalars, m->nscalars);
  for (uint32_t i = 0; i < m->nscalars; i++) {
    ck_assert_str_eq(m2->scalars[i].name, m->scalars[i].name);
    ck_assert_int_eq(memcmp(&m2->scalars[i].dflt, &m->scalars[i].dflt, 8), 0);
  }
  for (uint32_t i = 0; i < m->nslots; i++) {
    ck_assert_str_eq(m2->slots[i].name, m->slots[i].name);
    ck_assert_uint_eq(m2->slots[i].flags, m->slots[i].flags);
    ck_assert_str_eq(m2->slots[i].init, m->slots[i].init);
  }
  const ir_graph_t *g = m->programs[0], *g2 = m2->programs[0];
  ck_assert_uint_eq(g2->nnodes, g->nnodes);
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *a = &g->nodes[i], *b = &g2->nodes[i];
    ck_assert_str_eq(a->name, b->name);
    ck_assert_int_eq(a->op, b->op);
    ck_assert_uint_eq(a->nattrs, b->nattrs);
    for (uint32_t k = 0; k < a->nattrs; k++) {
      const ir_attr_t *x = &a->attrs[k], *y = &b->attrs[k];
      ck_assert_str_eq(x->key, y->key);
      ck_assert_int_eq(x->kind, y->kind);
      ck_assert_uint_eq(x->n, y->n);
      if (x->kind == IR_ATTR_INT) ck_assert(x->i == y->i);
      if (x->kind == IR_ATTR_FLOAT) ck_assert_int_eq(memcmp(&x->f, &y->f, 8), 0);
      if (x->kind == IR_ATTR_STRING) ck_assert_str_eq(x->s, y->s);
      if (x->kind == IR_ATTR_INTS && x->n)
        ck_assert_int_eq(memcmp(x->ints, y->ints, 8 * x->n), 0);
      if (x->kind == IR_ATTR_FLOATS && x->n)
        ck_assert_int_eq(memcmp(x->floats, y->floats, 8 * x->n), 0);
    }
  }
  for (uint32_t v = 0; v < g->nvalues; v++) ck_assert(ir_type_equal(&g->values[v].type, &g2->values[v].type));

  /* The graph printer prints the program block of the module printer. */
  ad_buf_t gb = {0};
  ir_print_graph(m->programs[1], &gb);
  ad_buf_put_u8(&gb, 0);
  ck_assert_ptr_nonnull(strstr(p, (const char *)gb.data));
  ck_assert_ptr_nonnull(strstr((const char *)gb.data, "program \"eval\" {\n"));
  ck_assert_ptr_nonnull(strstr(p, "%0: f32[B,L,8] = input \"\\x01\\x02"));
  ck_assert_ptr_nonnull(strstr(p, "f_int = 3.0, f_nan = nan(0x7ff8000000000001)"));
  ck_assert_ptr_nonnull(strstr(p, "floats_empty = floats[]"));
  ck_assert_ptr_nonnull(strstr(p, "ints_empty = []"));
  ck_assert_ptr_nonnull(strstr(p, "scalar \"neg zero\": f32 = -0\n"));
  ad_buf_free(&gb);
  ir_module_free(m2);
  free(p);
  free(p2);
  ir_module_free(m);
}
END_TEST

/* Labels are only labels: a file numbered freely parses to the same module. */
START_TEST(test_labels_are_remapped) {
  const char *text =
      "aidomm-ir 1\nsymbol B <= 2\nprogram \"p\" {\n"
      "  %7: f32[B] = input \"a\"\n  %3: f32[B] = input \"b\"\n"
      "  %100: f32[B] = add \"s\" (%3, %7)\n  output \"o\" (%100)\n}\n";
  ir_module_t *m;
  tu_ok(ir_parse_module(text, strlen(text), "t.air", &m));
  const ir_node_t *s = &m->programs[0]->nodes[2];
  ck_assert_uint_eq(s->inputs[0], 1);
  ck_assert_uint_eq(s->inputs[1], 0);
  size_t n;
  char *p = tu_print_module(m, &n);
  ck_assert_ptr_nonnull(strstr(p, "%2: f32[B] = add \"s\" (%1, %0)\n  output \"o\" (%2)\n"));
  free(p);
  ir_module_free(m);
}
END_TEST

/* ---- errors --------------------------------------------------------------------------- */

static void expect_error(const char *body, const char *place, const char *what) {
  char text[4096];
  snprintf(text, sizeof text,
           "aidomm-ir 1\nsymbol B <= 2\nslot \"w\": f32[4] init \"zeros\"\n%s", body);
  ir_module_t *m = (ir_module_t *)1;
  ad_status_t st = ir_parse_module(text, strlen(text), "t.air", &m);
  ck_assert_msg(st != NULL, "parsed:\n%s", text);
  ck_assert_ptr_null(m);
  const char *msg = ad_status_message(st);
  char prefix[64];
  snprintf(prefix, sizeof prefix, "t.air:%s: error: ", place);
  ck_assert_msg(strncmp(msg, prefix, strlen(prefix)) == 0, "message '%s' does not start with '%s'",
                msg, prefix);
  ck_assert_msg(strstr(msg, what) != NULL, "message '%s' lacks '%s'", msg, what);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_INVALID_ARGUMENT);
  ad_status_free(st);
}

START_TEST(test_parse_errors) {
  expect_error("program \"p\" {\n  %0: f32[B] = nosuch \"x\"\n}\n", "5:16", "unknown op 'nosuch'");
  expect_error("program \"p\" {\n  output \"o\" (%3)\n}\n", "5:15", "%3 is not defined before use");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"x\"\n  %0: f32[B] = input \"y\"\n}\n",
               "6:3", "%0 is defined twice");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"x\"\n  %1: f32[B,1] = relu \"r\" (%0)\n}\n",
               "6:3", "is written f32[B,1] but inference gives f32[B]");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"x\"\n  %1: f32[B] = input \"x\"\n}\n",
               "6:16", "duplicate node name 'x'");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"a\\q\"\n}\n", "5:24", "unknown escape");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"abc\n}\n", "5:22", "unterminated string");
  expect_error("program \"p\" {\n  %0: f32[C] = input \"x\"\n}\n", "5:11", "unknown symbol 'C'");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"x\" {a = 1, a = 2}\n}\n", "5:34",
               "attribute 'a' is given twice");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"x\" {a = 1e999}\n}\n", "5:31",
               "out of range of a double");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"x\" {a = ints[1.5]}\n}\n", "5:35",
               "'ints' list holds a float");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"x\" {a = nan(0x7ff0000000000000)}\n}\n",
               "5:31", "is not a NaN");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"x\" {a = \"\\x00\"}\n}\n", "5:32",
               "\\x00 is not allowed");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"x\"\n", "4:9", "is not closed");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"x\"\n}\nprogram \"p\" {\n}\n", "7:9",
               "program 'p' is defined twice");
  expect_error("symbol B <= 3\n", "4:1", "symbol 'B' declared twice");
  expect_error("slot \"v\": f32[B] init \"zeros\"\n", "4:1", "static shape");
  expect_error("scalar \"s\": f32 = 1\nprogram \"p\" {\n  %0: f64[] = scalar \"s\"\n}\n", "6:3",
               "is written f64[] but inference gives f32[]");
  expect_error("program \"p\" {\n  %0: f32[B] = scalar \"t\"\n}\n", "5:16", "not declared");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"x\"\n  state_out \"s\" (%0) {slot = \"w\"}\n}\n",
               "6:3", "differs from slot 'w'");
  expect_error("program \"p\" {\n  %0: f32[B], %1: f32[B] = input \"x\"\n}\n", "5:28",
               "needs 1 explicit output type");
  expect_error("program \"p\" {\n  %0: f32[B] = input \"x\"\n  %1: f32[B], %2: f32[B] = relu \"r\" (%0)\n}\n",
               "6:3", "has 1 outputs but 2 are written");
  expect_error("program \"p\" {\n  input \"x\"\n}\n", "5:3", "explicit output type");
  expect_error("frobnicate\n", "4:1", "expected 'symbol', 'scalar', 'slot' or 'program'");
  expect_error("slot \"v\": f32[2] {param, sticky}\n", "4:26", "expected a slot flag");

  /* The header. */
  ir_module_t *m;
  ad_status_t st = ir_parse_module("aidomm-ir 2\n", 12, "h.air", &m);
  ck_assert_ptr_nonnull(st);
  ck_assert_ptr_nonnull(strstr(ad_status_message(st), "h.air:1:1: error: IR text version 2"));
  ad_status_free(st);
  st = ir_parse_module("program \"p\" {}\n", 15, "h.air", &m);
  ck_assert_ptr_nonnull(st);
  ck_assert_ptr_nonnull(strstr(ad_status_message(st), "h.air:1:1: error: expected the header"));
  ad_status_free(st);
  /* A NUL byte inside the given length is an error, not the end of the text. */
  static const char nul[] = "aidomm-ir 1\nsymbol B <= 2\0symbol L <= 3\n";
  st = ir_parse_module(nul, sizeof nul - 1, "n.air", &m);
  ck_assert_ptr_nonnull(st);
  ck_assert_ptr_nonnull(strstr(ad_status_message(st), "n.air:2:14: error: "));
  ad_status_free(st);
  /* The empty module. */
  tu_ok(ir_parse_module("aidomm-ir 1", 11, "e.air", &m));
  size_t n;
  char *p = tu_print_module(m, &n);
  ck_assert_str_eq(p, "aidomm-ir 1\n");
  free(p);
  ir_module_free(m);
}
END_TEST

/* Every prefix of a valid file either parses or fails with a placed error, never crashes. */
START_TEST(test_truncations) {
  ir_module_t *m = build_module();
  size_t n;
  char *p = tu_print_module(m, &n);
  ir_module_free(m);
  int parsed = 0;
  for (size_t len = 0; len <= n; len++) {
    ir_module_t *mm;
    ad_status_t st = ir_parse_module(p, len, "cut.air", &mm);
    if (st) {
      ck_assert_msg(strncmp(ad_status_message(st), "cut.air:", 8) == 0, "%s",
                    ad_status_message(st));
      ad_status_free(st);
    } else {
      parsed++;
      ir_module_free(mm);
    }
  }
  ck_assert_int_ge(parsed, 1);
  free(p);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ir_text");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_type_canonical);
  tcase_add_test(tc, test_type_errors);
  tcase_add_test(tc, test_type_random_round_trip);
  tcase_add_test(tc, test_files_round_trip);
  tcase_add_test(tc, test_built_module_round_trip);
  tcase_add_test(tc, test_labels_are_remapped);
  tcase_add_test(tc, test_parse_errors);
  tcase_add_test(tc, test_truncations);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(suite()); }
