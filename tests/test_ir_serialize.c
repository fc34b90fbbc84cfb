/* The binary IR form: modules round-trip byte-identically (and print the same text), and
 * damaged input (every byte flipped in turn, every truncation, hand-made corruptions of each
 * field) is a DATA_LOSS status or a module that verifies, never a crash or a huge allocation
 * (the suite runs under ASan in CI). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/test_util.h"

static ir_module_t *load_air(const char *name) {
  char rel[512];
  snprintf(rel, sizeof rel, "tests/ir/%s", name);
  const char *path = tu_source_path(rel);
  size_t len;
  char *text = tu_read_file(path, &len);
  ir_module_t *m;
  tu_ok(ir_parse_module(text, len, path, &m));
  free(text);
  return m;
}

static ad_buf_t serialize(const ir_module_t *m) {
  ad_buf_t b = {0};
  ir_serialize_module(m, &b);
  return b;
}

static ad_buf_t text_of(const ir_module_t *m) {
  ad_buf_t b = {0};
  ir_print_module(m, &b);
  return b;
}

static bool buf_eq(const ad_buf_t *a, const ad_buf_t *b) {
  return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* serialize(deserialize(serialize(m))) == serialize(m), and the text forms agree. */
static void check_round_trip(const ir_module_t *m) {
  ad_buf_t b1 = serialize(m);
  ir_module_t *m2;
  tu_ok(ir_deserialize_module(b1.data, b1.len, &m2));
  ad_buf_t b2 = serialize(m2);
  ck_assert_msg(buf_eq(&b1, &b2), "binary round trip differs (%zu vs %zu bytes)", b1.len, b2.len);
  ad_buf_t t1 = text_of(m), t2 = text_of(m2);
  ck_assert_msg(buf_eq(&t1, &t2), "deserialized module prints differently");
  ad_buf_free(&b1);
  ad_buf_free(&b2);
  ad_buf_free(&t1);
  ad_buf_free(&t2);
  ir_module_free(m2);
}

/* A module built through the API: every attribute kind, exact float bits, odd strings. */
static ir_module_t *build_module(void) {
  ir_module_t *m = ir_module_create();
  tu_ok(ir_module_add_symbol(m, "B", 4, NULL));
  tu_ok(ir_module_add_symbol(m, "L", 16, NULL));
  tu_ok(ir_module_add_scalar(m, "lr", IR_DTYPE_F64, 1e-3));
  tu_ok(ir_module_add_scalar(m, "snan", IR_DTYPE_F64, tu_f64_from_bits(0x7ff0000000000001ull)));
  ir_type_t w = tu_type(m, "f32[4,4]");
  tu_ok(ir_module_add_slot(m, "w\xff\x01", &w, IR_SLOT_PARAM | IR_SLOT_TRAINABLE | (1u << 31),
                        "normal(0,0.02)", NULL));
  ir_graph_t *g = ir_module_add_program(m, "fwd");
  static const int64_t ints[] = {INT64_MIN, -1, 0, INT64_MAX};
  const double floats[] = {-0.0, INFINITY, -NAN, tu_f64_from_bits(0xfff0000000000abcull), 5e-324};
  char odd[256];
  for (int i = 1; i < 256; i++) odd[i - 1] = (char)i;
  odd[255] = 0;
  const ir_attr_t attrs[] = {
      IR_ATTR_I("i", INT64_MIN),   IR_ATTR_F("f", tu_f64_from_bits(0x7ff8dead00000000ull)),
      IR_ATTR_S("s", odd),         IR_ATTR_S("s_empty", ""),
      IR_ATTR_INTS("ints", ints, 4), IR_ATTR_INTS("ints_empty", NULL, 0),
      IR_ATTR_FLOATS("floats", floats, 5), IR_ATTR_FLOATS("floats_empty", NULL, 0),
  };
  ir_type_t tx = tu_type(m, "f32[B,(L+3)/4,4]");
  uint32_t x = tu_node_ok(g, IR_OP_INPUT, odd, NULL, 0, attrs, 8, &tx);
  ir_attr_t slot = IR_ATTR_S("slot", "w\xff\x01");
  uint32_t wv = tu_node_ok(g, IR_OP_STATE_IN, "w.read", NULL, 0, &slot, 1, NULL);
  uint32_t mm = tu_node_ok(g, IR_OP_MATMUL, "mm", (uint32_t[]){x, wv}, 2, NULL, 0, NULL);
  ir_attr_t eps = IR_ATTR_F("eps", 1e-6);
  uint32_t ln = tu_node_ok(g, IR_OP_LAYERNORM, "ln", &mm, 1, &eps, 1, NULL);
  tu_node_ok(g, IR_OP_OUTPUT, "y", &ln, 1, NULL, 0, NULL);
  tu_node_ok(g, IR_OP_OUTPUT, "rstd", (uint32_t[]){ln + 2}, 1, NULL, 0, NULL);
  uint32_t w2 = tu_node_ok(g, IR_OP_NEG, "w.neg", &wv, 1, NULL, 0, NULL);
  tu_node_ok(g, IR_OP_STATE_OUT, "w.write", &w2, 1, &slot, 1, NULL);
  ir_module_add_program(m, "empty");
  tu_ok(ir_verify_module(m));
  return m;
}

START_TEST(test_round_trip_built) {
  ir_module_t *m = build_module();
  check_round_trip(m);
  /* The deserialized module holds the exact float bits and strings. */
  ad_buf_t b = serialize(m);
  ir_module_t *m2;
  tu_ok(ir_deserialize_module(b.data, b.len, &m2));
  ck_assert_int_eq(memcmp(&m2->scalars[1].dflt, &m->scalars[1].dflt, 8), 0);
  ck_assert_str_eq(m2->programs[0]->nodes[0].name, m->programs[0]->nodes[0].name);
  const ir_attr_t *f = ir_node_attr(&m2->programs[0]->nodes[0], "floats");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(memcmp(f->floats, ir_node_attr(&m->programs[0]->nodes[0], "floats")->floats, 40), 0);
  ck_assert_uint_eq(m2->slots[0].flags, m->slots[0].flags);
  ck_assert_uint_eq(m2->nprograms, 2);
  ck_assert_uint_eq(m2->programs[1]->nnodes, 0);
  ir_module_free(m2);
  ad_buf_free(&b);
  ir_module_free(m);
}
END_TEST

static void round_trip_file(const char *path, const char *name, void *ctx) {
  (void)path, (void)ctx;
  ir_module_t *m = load_air(name);
  check_round_trip(m);
  ir_module_free(m);
}

START_TEST(test_round_trip_files) {
  ck_assert_int_ge(tu_for_each_file(tu_source_path("tests/ir"), ".air", round_trip_file, NULL), 3);
  /* The empty module too. */
  ir_module_t *m = ir_module_create();
  check_round_trip(m);
  ir_module_free(m);
}
END_TEST

/* Damaged input: an error must be DATA_LOSS; an accepted module must verify and round-trip. */
static int try_damaged(const uint8_t *data, size_t len) {
  ir_module_t *m = (ir_module_t *)1;
  ad_status_t st = ir_deserialize_module(data, len, &m);
  if (st) {
    ck_assert_msg(ad_status_code(st) == AD_STATUS_DATA_LOSS, "code %d: %s", ad_status_code(st),
                  ad_status_message(st));
    ck_assert_msg(strstr(ad_status_message(st), "corrupt IR module at byte ") != NULL, "%s",
                  ad_status_message(st));
    ck_assert_ptr_null(m);
    ad_status_free(st);
    return 0;
  }
  tu_ok(ir_verify_module(m));
  check_round_trip(m);
  ir_module_free(m);
  return 1;
}

/* Every byte (or, past max_positions, an even spread of them) XORed with each mask. */
static void flip_bytes(const ir_module_t *m, size_t max_positions, int *accepted, int *tried) {
  ad_buf_t b = serialize(m);
  uint8_t *copy = malloc(b.len);
  ck_assert_ptr_nonnull(copy);
  size_t step = b.len > max_positions ? (b.len + max_positions - 1) / max_positions : 1;
  /* All bits of a byte, and its lowest (a count or an id off by one). */
  static const uint8_t masks[] = {0xff, 0x01};
  for (size_t i = 0; i < b.len; i += step)
    for (size_t k = 0; k < sizeof masks; k++) {
      memcpy(copy, b.data, b.len);
      copy[i] ^= masks[k];
      *accepted += try_damaged(copy, b.len);
      (*tried)++;
    }
  free(copy);
  ad_buf_free(&b);
}

START_TEST(test_flipped_bytes) {
  const char *files[] = {"full.air", "encoder_layer.air"};
  int accepted = 0, tried = 0;
  for (size_t f = 0; f < 2; f++) {
    ir_module_t *m = load_air(files[f]);
    flip_bytes(m, 2000, &accepted, &tried);
    ir_module_free(m);
  }
  ir_module_t *m = build_module();
  flip_bytes(m, 2000, &accepted, &tried);
  ir_module_free(m);
  /* Flips inside names and float payloads give other valid modules; most flips must not. */
  ck_assert_int_gt(accepted, 0);
  ck_assert_int_lt(accepted, tried);
}
END_TEST

START_TEST(test_truncations) {
  const char *files[] = {"full.air", NULL};
  for (size_t f = 0; f < 2; f++) {
    ir_module_t *m = files[f] ? load_air(files[f]) : build_module();
    ad_buf_t b = serialize(m);
    for (size_t len = 0; len < b.len; len++) {
      /* A copy of exactly len bytes, so ASan sees any read past the end. */
      uint8_t *cut = malloc(len ? len : 1);
      memcpy(cut, b.data, len);
      ck_assert_msg(try_damaged(cut, len) == 0, "%s cut to %zu of %zu bytes was accepted",
                    files[f] ? files[f] : "the built module", len, b.len);
      free(cut);
    }
    /* One byte too many is damage too. */
    ad_buf_put_u8(&b, 0);
    ck_assert_int_eq(try_damaged(b.data, b.len), 0);
    ad_buf_free(&b);
    ir_module_free(m);
  }
}
END_TEST

/* ---- hand-made corruptions of a tiny module ------------------------------------------- */

/* symbols B<=2; no scalars or slots; program "p" with nnodes nodes to follow (tiny_full:
 * %0: f32[B] = input "x", %1 = relu "r" (%0), output "y" (%1)). */
static ad_buf_t tiny(uint32_t nnodes) {
  ad_buf_t b = {0};
  ad_buf_append(&b, "AIDOMMIR", 8);
  ad_buf_put_u32(&b, 1);
  ad_buf_put_u32(&b, 1); /* symbols */
  ad_buf_put_str(&b, "B");
  ad_buf_put_i64(&b, 2);
  ad_buf_put_u32(&b, 0); /* scalars */
  ad_buf_put_u32(&b, 0); /* slots */
  ad_buf_put_u32(&b, 1); /* programs */
  ad_buf_put_str(&b, "p");
  ad_buf_put_u32(&b, nnodes);
  return b;
}

enum { TINY_NNODES = 8 + 4 + 4 + 5 + 8 + 4 + 4 + 4 + 5 };

/* Offsets from the end of a node just written by put_input or put_relu (one output of rank 1
 * with the dim "B", no attributes). */
enum {
  AT_SYM_B = 5,
  AT_SYM_A = 6,
  AT_COEF = 14,
  AT_DIV = 23,
  AT_CST = 31,
  AT_RANK = 32,
  AT_DTYPE = 33,
  AT_RELU_NAME = 46,
};

static void put_dim_b(ad_buf_t *b) { /* the dim "B": cst 0, div 1, one term 1*B */
  ad_buf_put_i64(b, 0);
  ad_buf_put_i64(b, 1);
  ad_buf_put_u8(b, 1);
  ad_buf_put_i64(b, 1);
  ad_buf_put_u8(b, 0);
  ad_buf_put_u8(b, 0xff);
}

static void put_input(ad_buf_t *b) {
  ad_buf_put_u32(b, IR_OP_INPUT);
  ad_buf_put_str(b, "x");
  ad_buf_put_u32(b, 0);
  ad_buf_put_u32(b, 1);
  ad_buf_put_u8(b, IR_DTYPE_F32);
  ad_buf_put_u8(b, 1);
  put_dim_b(b);
  ad_buf_put_u32(b, 0);
}

static void put_relu(ad_buf_t *b, uint32_t input) {
  ad_buf_put_u32(b, IR_OP_RELU);
  ad_buf_put_str(b, "r");
  ad_buf_put_u32(b, 1);
  ad_buf_put_u32(b, input);
  ad_buf_put_u32(b, 1);
  ad_buf_put_u8(b, IR_DTYPE_F32);
  ad_buf_put_u8(b, 1);
  put_dim_b(b);
  ad_buf_put_u32(b, 0);
}

static void put_output(ad_buf_t *b) {
  ad_buf_put_u32(b, IR_OP_OUTPUT);
  ad_buf_put_str(b, "y");
  ad_buf_put_u32(b, 1);
  ad_buf_put_u32(b, 1);
  ad_buf_put_u32(b, 0);
  ad_buf_put_u32(b, 0);
}

static ad_buf_t tiny_full(void) {
  ad_buf_t b = tiny(3);
  put_input(&b);
  put_relu(&b, 0);
  put_output(&b);
  return b;
}

/* Bytes after a damaged spot, so that the counts before it still fit. */
static void pad(ad_buf_t *b) {
  for (int i = 0; i < 32; i++) ad_buf_put_u8(b, 0);
}

static void put_u32_at(ad_buf_t *b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; i++) b->data[off + (size_t)i] = (uint8_t)(v >> (8 * i));
}

static void expect_loss(const ad_buf_t *b, const char *what) {
  ir_module_t *m = (ir_module_t *)1;
  ad_status_t st = ir_deserialize_module(b->data, b->len, &m);
  ck_assert_msg(st != NULL, "accepted; expected '%s'", what);
  ck_assert_ptr_null(m);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_DATA_LOSS);
  ck_assert_msg(strstr(ad_status_message(st), what) != NULL, "'%s' lacks '%s'",
                ad_status_message(st), what);
  ad_status_free(st);
}

START_TEST(test_corruptions) {
  ad_buf_t b = tiny_full();
  ir_module_t *m;
  tu_ok(ir_deserialize_module(b.data, b.len, &m));
  ck_assert_uint_eq(m->programs[0]->nnodes, 3);
  ad_buf_t again = serialize(m);
  ck_assert(buf_eq(&b, &again)); /* the hand-written layout is the format */
  ad_buf_free(&again);
  ir_module_free(m);
  ad_buf_free(&b);

  b = tiny_full();
  b.data[0] = 'X';
  expect_loss(&b, "bad magic");
  ad_buf_free(&b);

  b = tiny_full();
  put_u32_at(&b, 8, 2);
  expect_loss(&b, "format version 2 is not supported");
  ad_buf_free(&b);

  b = tiny_full();
  put_u32_at(&b, 12, 17);
  for (int i = 0; i < 300; i++) ad_buf_put_u8(&b, 0); /* so that 17 symbols could fit */
  expect_loss(&b, "17 symbols, at most 16");
  ad_buf_free(&b);

  /* Huge counts are refused before anything is allocated. */
  b = tiny_full();
  put_u32_at(&b, TINY_NNODES, 0xfffffffeu);
  expect_loss(&b, "4294967294 nodes cannot fit");
  ad_buf_free(&b);
  b = tiny_full();
  put_u32_at(&b, 8 + 4 + 4 + 5 + 8, 0x40000000u);
  expect_loss(&b, "scalars cannot fit");
  ad_buf_free(&b);

  b = tiny(1);
  ad_buf_put_u32(&b, IR_OP_COUNT);
  pad(&b);
  expect_loss(&b, "op id");
  ad_buf_free(&b);

  b = tiny(3);
  put_input(&b);
  put_relu(&b, 1); /* its own output: not defined before it */
  put_output(&b);
  expect_loss(&b, "refers to value 1, not defined before it");
  ad_buf_free(&b);

  b = tiny(3);
  put_input(&b);
  put_relu(&b, 0);
  b.data[b.len - AT_DTYPE] = IR_DTYPE_COUNT; /* relu's output dtype */
  put_output(&b);
  expect_loss(&b, "dtype 7 out of range");
  ad_buf_free(&b);

  b = tiny(1);
  put_input(&b);
  b.data[b.len - AT_RANK] = IR_MAX_RANK + 1;
  expect_loss(&b, "rank 7 above the maximum 6");
  ad_buf_free(&b);

  b = tiny(1);
  put_input(&b);
  b.data[b.len - AT_SYM_A] = 1; /* symbol 1 of 1 */
  expect_loss(&b, "symbol index 1 out of range");
  ad_buf_free(&b);

  b = tiny(1);
  put_input(&b);
  b.data[b.len - AT_SYM_B] = 0; /* B*B is fine, so the program must go on to fail later */
  b.data[b.len - AT_SYM_A] = 0xff;
  expect_loss(&b, "symbol index 255 out of range");
  ad_buf_free(&b);

  b = tiny(3);
  put_input(&b);
  b.data[b.len - AT_DIV] = 4; /* x: f32[B/4], canonical */
  put_relu(&b, 0);            /* stored as f32[B], but relu of B/4 is B/4 */
  put_output(&b);
  expect_loss(&b, "output 0 type differs from inference");
  ad_buf_free(&b);

  b = tiny(1);
  put_input(&b);
  b.data[b.len - AT_COEF] = 0;
  expect_loss(&b, "has coefficient 0");
  ad_buf_free(&b);

  b = tiny(1);
  put_input(&b);
  b.data[b.len - AT_CST + 7] = 0x40; /* cst = 2^62: beyond the dim limit */
  expect_loss(&b, "dimension 0 out of range");
  ad_buf_free(&b);

  /* A constant dim with a divisor is not what the dim arithmetic makes (it folds). */
  b = tiny(1);
  ad_buf_put_u32(&b, IR_OP_INPUT);
  ad_buf_put_str(&b, "x");
  ad_buf_put_u32(&b, 0);
  ad_buf_put_u32(&b, 1);
  ad_buf_put_u8(&b, IR_DTYPE_F32);
  ad_buf_put_u8(&b, 1);
  ad_buf_put_i64(&b, 8);
  ad_buf_put_i64(&b, 2);
  ad_buf_put_u8(&b, 0);
  ad_buf_put_u32(&b, 0);
  expect_loss(&b, "not in canonical form");
  ad_buf_free(&b);

  /* A name with a NUL inside, and a missing (NULL-encoded) name. */
  b = tiny(1);
  ad_buf_put_u32(&b, IR_OP_INPUT);
  ad_buf_put_u32(&b, 3);
  ad_buf_append(&b, "a\0b", 3);
  pad(&b);
  expect_loss(&b, "node name holds a NUL byte");
  ad_buf_free(&b);
  b = tiny(1);
  ad_buf_put_u32(&b, IR_OP_INPUT);
  ad_buf_put_u32(&b, 0xffffffffu);
  pad(&b);
  expect_loss(&b, "node name is missing");
  ad_buf_free(&b);

  /* A string running past the end. */
  b = tiny(1);
  ad_buf_put_u32(&b, IR_OP_INPUT);
  ad_buf_put_u32(&b, 1000);
  ad_buf_append(&b, "abc", 3);
  pad(&b);
  expect_loss(&b, "truncated");
  ad_buf_free(&b);

  /* Arity against the registry. */
  b = tiny(2);
  put_input(&b);
  ad_buf_put_u32(&b, IR_OP_RELU);
  ad_buf_put_str(&b, "r");
  ad_buf_put_u32(&b, 0);
  pad(&b);
  expect_loss(&b, "node 'r' (relu) has 0 inputs");
  ad_buf_free(&b);

  /* Attributes: bad kind, unsorted keys. */
  b = tiny(1);
  put_input(&b);
  b.len -= 4;
  ad_buf_put_u32(&b, 1);
  ad_buf_put_str(&b, "k");
  ad_buf_put_u8(&b, 9);
  ad_buf_put_i64(&b, 0);
  expect_loss(&b, "attribute kind 9 out of range");
  ad_buf_free(&b);
  b = tiny(1);
  put_input(&b);
  b.len -= 4;
  ad_buf_put_u32(&b, 2);
  ad_buf_put_str(&b, "z");
  ad_buf_put_u8(&b, IR_ATTR_INT);
  ad_buf_put_i64(&b, 1);
  ad_buf_put_str(&b, "a");
  ad_buf_put_u8(&b, IR_ATTR_INT);
  ad_buf_put_i64(&b, 2);
  expect_loss(&b, "not sorted");
  ad_buf_free(&b);

  /* Trailing bytes. */
  b = tiny_full();
  ad_buf_put_u8(&b, 0);
  expect_loss(&b, "1 trailing bytes");
  ad_buf_free(&b);

  /* Builder errors (a duplicate name) and verifier errors (two outputs "y" would be a
   * duplicate name too) become DATA_LOSS. */
  b = tiny(3);
  put_input(&b);
  put_relu(&b, 0);
  b.data[b.len - AT_RELU_NAME] = 'x'; /* relu renamed "x" */
  put_output(&b);
  expect_loss(&b, "duplicate node name 'x'");
  ad_buf_free(&b);

  /* Empty and NULL input. */
  expect_loss(&(ad_buf_t){0}, "truncated");
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ir_serialize");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_round_trip_built);
  tcase_add_test(tc, test_round_trip_files);
  tcase_add_test(tc, test_flipped_bytes);
  tcase_add_test(tc, test_truncations);
  tcase_add_test(tc, test_corruptions);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(suite()); }
