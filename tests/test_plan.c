/* The plan container: a hand-made plan round-trips byte for byte, and every kind of damage
 * (empty, foreign, truncated, flipped bytes, newer version, bad section table) is rejected
 * with one line that names the file and the reason. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ir/ir.h"
#include "plan/plan.h"
#include "tests/support/test_util.h"

/* ---- fixtures --------------------------------------------------------------------------- */

static ir_type_t type2(ir_dtype_t dt, ir_dim_t a, ir_dim_t b) {
  ir_type_t t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = 2;
  t.dims[0] = a;
  t.dims[1] = b;
  return t;
}

/* forward/eval: pred = 2*(x + w) + 1 over x: [B, 4], w: [1, 4] (a trainable slot). */
static void build_program(ir_module_t *m, const char *name, int bsym) {
  ir_graph_t *g = ir_module_add_program(m, name);
  ck_assert_ptr_nonnull(g);
  ir_type_t xt = type2(IR_DTYPE_F32, ir_dim_sym(bsym), ir_dim_const(4));
  uint32_t x = ir_build(g, &(ir_node_desc_t){.op = IR_OP_INPUT, .name = "x", .out_types = &xt,
                                             .nout_types = 1});
  ir_attr_t slot = IR_ATTR_S("slot", "head.weight");
  uint32_t w = ir_build(g, &(ir_node_desc_t){.op = IR_OP_STATE_IN, .name = "head.weight.read",
                                             .attrs = &slot, .nattrs = 1});
  uint32_t ins[2] = {x, w};
  ir_push_scope(g, "head");
  uint32_t s = ir_build(g, &(ir_node_desc_t){.op = IR_OP_ADD, .inputs = ins, .ninputs = 2});
  ir_attr_t ab[2] = {IR_ATTR_F("alpha", 2.0), IR_ATTR_F("beta", 1.0)};
  uint32_t y = ir_build(g, &(ir_node_desc_t){.op = IR_OP_SCALE, .inputs = &s, .ninputs = 1,
                                             .attrs = ab, .nattrs = 2});
  ir_pop_scope(g);
  ir_build(g, &(ir_node_desc_t){.op = IR_OP_OUTPUT, .name = "pred", .inputs = &y, .ninputs = 1});
  tu_ok(ir_graph_take_error(g));
}

static ir_module_t *small_module(void) {
  ir_module_t *m = ir_module_create();
  int b;
  tu_ok(ir_module_add_symbol(m, "B", 2, &b));
  tu_ok(ir_module_add_scalar(m, "lr", IR_DTYPE_F64, 1e-3));
  ir_type_t wt = type2(IR_DTYPE_F32, ir_dim_const(1), ir_dim_const(4));
  tu_ok(ir_module_add_slot(m, "head.weight", &wt, IR_SLOT_PARAM | IR_SLOT_TRAINABLE,
                        "normal(0,0.02)", NULL));
  build_program(m, "forward", b);
  build_program(m, "eval", b);
  tu_ok(ir_verify_module(m));
  return m;
}

/* A memory plan laid out by hand (the container does not care how it was made): every value
 * in its own 64-byte-aligned range, state reads without storage. */
static void hand_memplan(plan_t *p) {
  const ir_module_t *m = p->module;
  p->nmemplans = m->nprograms;
  p->memplans = ad_arena_alloc(&p->arena, m->nprograms * sizeof *p->memplans);
  int64_t bounds[IR_MAX_SYMBOLS];
  ir_module_bounds(m, bounds);
  for (uint32_t i = 0; i < m->nprograms; i++) {
    const ir_graph_t *g = m->programs[i];
    plan_memplan_t *mp = &p->memplans[i];
    mp->program = g->name;
    mp->reuse = 1;
    mp->nvalues = g->nvalues;
    mp->offset = ad_arena_alloc(&p->arena, g->nvalues * sizeof(int64_t));
    mp->size = ad_arena_alloc(&p->arena, g->nvalues * sizeof(int64_t));
    int64_t pos = 0;
    for (uint32_t v = 0; v < g->nvalues; v++) {
      ir_shape_t s = ir_type_shape(&g->values[v].type, bounds);
      mp->size[v] = ir_shape_numel(&s) * (int64_t)ir_dtype_size(g->values[v].type.dtype);
      if (g->nodes[g->values[v].node].op == IR_OP_STATE_IN) {
        mp->offset[v] = -1;
      } else {
        mp->offset[v] = pos;
        pos += (mp->size[v] + 63) / 64 * 64;
      }
    }
    mp->peak_bytes = pos;
    mp->total_bytes = pos;
  }
}

/* Config text of odd length so that a padding gap follows it. */
static const char g_yaml[] = "model:\n  class_path: tiny\n  init_args: {hidden: 4}\n";

static plan_t *small_plan(void) {
  plan_t *p = plan_create();
  ck_assert_ptr_nonnull(p);
  plan_set_module(p, small_module());
  plan_set_config(p, g_yaml, strlen(g_yaml));
  p->job = (plan_job_t){.kind = PLAN_JOB_VALIDATE, .seed = 42, .max_steps = 7, .batch_size = 2,
                        .max_length = 9, .dtype = IR_DTYPE_F64, .lr = 3e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                        .weight_decay = 0.1};
  hand_memplan(p);
  return p;
}

static void encode(const plan_t *p, ad_buf_t *b) { tu_ok(plan_encode(p, b)); }

static uint32_t rd32(const uint8_t *b) {
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static uint64_t rd64(const uint8_t *b) { return rd32(b) | (uint64_t)rd32(b + 4) << 32; }
static void wr32(uint8_t *b, uint32_t v) {
  for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *b, uint64_t v) {
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}

/* What a forger would do: make the checksum agree again after an edit. */
static void fix_crc(uint8_t *d, size_t n) {
  wr32(d + PLAN_OFF_CRC, 0);
  wr32(d + PLAN_OFF_CRC, (uint32_t)crc32_z(crc32_z(0, Z_NULL, 0), d, n));
}

/* Table entry of a section kind. */
static uint8_t *entry_of(uint8_t *d, uint32_t kind) {
  uint32_t count = rd32(d + PLAN_OFF_SECTION_COUNT);
  for (uint32_t i = 0; i < count; i++) {
    uint8_t *e = d + PLAN_HEADER_SIZE + i * PLAN_SECTION_ENTRY_SIZE;
    if (rd32(e) == kind) return e;
  }
  ck_abort_msg("no section of kind %u", kind);
  return NULL;
}

/* Reads `path`, expects failure with `code`, a message naming the file and containing `why`,
 * printed as exactly one line. */
static void expect_reject_file(const char *path, ad_status_code_t code, const char *why) {
  plan_t *p = (plan_t *)1;
  ad_status_t st = plan_read(path, &p);
  ck_assert_msg(st != NULL, "%s: accepted, expected '%s'", path, why);
  ck_assert_ptr_null(p);
  const char *msg = ad_status_message(st);
  ck_assert_msg(ad_status_code(st) == code, "%s: code %d, expected %d: %s", path,
                (int)ad_status_code(st), (int)code, msg);
  ck_assert_msg(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
  ck_assert_msg(strstr(msg, why) != NULL, "expected '%s' in: %s", why, msg);
  ck_assert_int_eq(ad_status_exit_code(st), 2);
  char *line = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&line, &len);
  ad_status_print(st, "aidomm-rt", f);
  fclose(f);
  int newlines = 0;
  for (size_t i = 0; i < len; i++) newlines += line[i] == '\n';
  ck_assert_msg(newlines == 1 && len > 0 && line[len - 1] == '\n', "not one line: %s", line);
  ck_assert_msg(strncmp(line, path, strlen(path)) == 0, "line does not start with the file: %s",
                line);
  free(line);
  ad_status_free(st);
}

static void expect_reject(const uint8_t *d, size_t n, const char *fname, ad_status_code_t code,
                          const char *why) {
  const char *path = tu_tmpdir_path(fname);
  tu_write_file(path, d, n);
  expect_reject_file(path, code, why);
}

/* ---- round trip --------------------------------------------------------------------------- */

START_TEST(test_round_trip) {
  tu_tmpdir_create("plan");
  plan_t *p = small_plan();
  p->code_len = 5;
  p->code = (const uint8_t *)"\x01\x02\x03\x04\x05";
  const char *path = tu_tmpdir_path("small.plan");
  tu_ok(plan_write(p, path));

  plan_t *q = NULL;
  tu_ok(plan_read(path, &q));
  ck_assert_str_eq(q->meta.aidomm_version, AIDOMM_VERSION);
  ck_assert_uint_eq(q->meta.format_version, PLAN_FORMAT_VERSION);
  ck_assert_str_eq(q->meta.created_by, "aidommc");
  ck_assert_str_eq(q->meta.target_cpu, "host");
  ck_assert_str_eq(q->meta.llvm_version, "none");
  ck_assert_str_eq(q->meta.nvrtc_version, "none");
  ck_assert_int_eq(q->job.kind, PLAN_JOB_VALIDATE);
  ck_assert_int_eq(q->job.seed, 42);
  ck_assert_int_eq(q->job.max_steps, 7);
  ck_assert_int_eq(q->job.batch_size, 2);
  ck_assert_int_eq(q->job.max_length, 9);
  ck_assert_int_eq(q->job.dtype, IR_DTYPE_F64);
  /* Doubles survive the JSON text exactly. */
  ck_assert(q->job.lr == 3e-4 && q->job.beta1 == 0.9 && q->job.beta2 == 0.95 &&
            q->job.eps == 1e-8 && q->job.weight_decay == 0.1);
  ck_assert_uint_eq(q->config_len, strlen(g_yaml));
  ck_assert_str_eq(q->config_yaml, g_yaml);
  ck_assert_uint_eq(q->code_len, 5);
  ck_assert_int_eq(memcmp(q->code, "\x01\x02\x03\x04\x05", 5), 0);

  ck_assert_uint_eq(q->module->nprograms, 2);
  ck_assert_str_eq(q->module->programs[1]->name, "eval");
  ck_assert_int_ge(ir_module_find_slot(q->module, "head.weight"), 0);
  ad_buf_t m1 = {0}, m2 = {0};
  ir_serialize_module(p->module, &m1);
  ir_serialize_module(q->module, &m2);
  ck_assert_uint_eq(m1.len, m2.len);
  ck_assert_int_eq(memcmp(m1.data, m2.data, m1.len), 0);

  ck_assert_uint_eq(q->nmemplans, 2);
  for (uint32_t i = 0; i < 2; i++) {
    const plan_memplan_t *a = &p->memplans[i], *b = plan_find_memplan(q, a->program);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(b->reuse, 1);
    ck_assert_uint_eq(b->nvalues, a->nvalues);
    ck_assert_int_eq(b->peak_bytes, a->peak_bytes);
    ck_assert_int_eq(b->total_bytes, a->total_bytes);
    for (uint32_t v = 0; v < a->nvalues; v++) {
      ck_assert_int_eq(b->offset[v], a->offset[v]);
      ck_assert_int_eq(b->size[v], a->size[v]);
    }
  }
  ck_assert_ptr_null(plan_find_memplan(q, "train_step"));

  /* Same plan, same bytes: the file, and the re-encoding of what was read. */
  size_t n;
  uint8_t *file = (uint8_t *)tu_read_file(path, &n);
  ad_buf_t e1 = {0}, e2 = {0};
  encode(p, &e1);
  encode(q, &e2);
  ck_assert_uint_eq(e1.len, n);
  ck_assert_int_eq(memcmp(e1.data, file, n), 0);
  ck_assert_uint_eq(e2.len, n);
  ck_assert_int_eq(memcmp(e2.data, file, n), 0);

  /* Layout promises: the header says the size, sections are aligned, padding is zero. */
  ck_assert_int_eq(memcmp(file, PLAN_MAGIC, 8), 0);
  ck_assert_uint_eq(rd32(file + PLAN_OFF_VERSION), 1);
  ck_assert_uint_eq(rd32(file + PLAN_OFF_HEADER_SIZE), PLAN_HEADER_SIZE);
  ck_assert_uint_eq(rd64(file + PLAN_OFF_FILE_SIZE), n);
  ck_assert_uint_eq(rd32(file + PLAN_OFF_SECTION_COUNT), 6);
  for (uint32_t k = 1; k <= PLAN_SECTION_KIND_MAX; k++)
    ck_assert_uint_eq(rd64(entry_of(file, k) + 8) % 8, 0);

  free(file);
  ad_buf_free(&m1);
  ad_buf_free(&m2);
  ad_buf_free(&e1);
  ad_buf_free(&e2);
  plan_free(q);
  p->code = NULL;
  p->code_len = 0;
  plan_free(p);
  tu_tmpdir_remove();
}
END_TEST

START_TEST(test_write_is_atomic_and_leaves_no_temp) {
  tu_tmpdir_create("plan");
  plan_t *p = small_plan();
  const char *path = tu_tmpdir_path("a.plan");
  tu_write_file(path, (const uint8_t *)"old", 3);
  tu_ok(plan_write(p, path));
  tu_ok(plan_write(p, path)); /* overwriting an existing plan */
  DIR *d = opendir(tu_tmpdir());
  int entries = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      entries++;
      ck_assert_str_eq(e->d_name, "a.plan");
    }
  closedir(d);
  ck_assert_int_eq(entries, 1);
  struct stat sb;
  ck_assert_int_eq(stat(path, &sb), 0);
  ck_assert_int_gt(sb.st_size, 200);

  /* An unwritable destination fails cleanly (I/O: exit code 1) and names the file. */
  const char *bad = tu_tmpdir_path("no/such/dir/x.plan");
  ad_status_t st = plan_write(p, bad);
  ck_assert_ptr_nonnull(st);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_IO);
  ck_assert_ptr_nonnull(strstr(ad_status_message(st), bad));
  ad_status_free(st);
  plan_free(p);
  tu_tmpdir_remove();
}
END_TEST

START_TEST(test_encode_rejects_bad_plans) {
  plan_t *p = small_plan();
  ad_buf_t b = {0};
  p->job.lr = NAN;
  ad_status_t st = plan_encode(p, &b);
  ck_assert_ptr_nonnull(st);
  ck_assert_ptr_nonnull(strstr(ad_status_message(st), "learning rate"));
  ad_status_free(st);
  p->job.lr = 1e-3;
  p->job.batch_size = 0;
  st = plan_encode(p, &b);
  ck_assert_ptr_nonnull(st);
  ck_assert_ptr_nonnull(strstr(ad_status_message(st), "batch_size"));
  ad_status_free(st);
  p->job.batch_size = 1;
  p->nmemplans = 1; /* one plan for two programs */
  st = plan_encode(p, &b);
  ck_assert_ptr_nonnull(st);
  ad_status_free(st);
  ad_buf_free(&b);
  plan_free(p);
}
END_TEST

/* ---- rejection ---------------------------------------------------------------------------- */

START_TEST(test_reject_missing_empty_foreign) {
  tu_tmpdir_create("plan");
  expect_reject_file(tu_tmpdir_path("does-not-exist.plan"), AD_STATUS_INVALID_ARGUMENT,
                     "cannot open plan");
  expect_reject_file(tu_tmpdir(), AD_STATUS_INVALID_ARGUMENT, "is a directory");
  expect_reject(NULL, 0, "empty.plan", AD_STATUS_INVALID_ARGUMENT, "not an aidomm plan");
  static const char text[] =
      "model:\n  class_path: modelgenerator.tasks.SequenceRegression\n  init_args:\n"
      "    backbone: tiny\n";
  expect_reject((const uint8_t *)text, strlen(text), "config.yaml", AD_STATUS_INVALID_ARGUMENT,
                "not an aidomm plan");
  expect_reject((const uint8_t *)"AIDX", 4, "short.plan", AD_STATUS_INVALID_ARGUMENT,
                "not an aidomm plan");
  tu_tmpdir_remove();
}
END_TEST

START_TEST(test_reject_truncated) {
  tu_tmpdir_create("plan");
  plan_t *p = small_plan();
  ad_buf_t b = {0};
  encode(p, &b);
  uint8_t *d = b.data;
  size_t n = b.len;
  const uint8_t *mod = entry_of(d, PLAN_SECTION_MODULE);
  size_t mid_module = (size_t)(rd64(mod + 8) + rd64(mod + 16) / 2);
  size_t table_mid = PLAN_HEADER_SIZE + 30;
  size_t lens[] = {3, 8, 20, PLAN_HEADER_SIZE - 1, PLAN_HEADER_SIZE, table_mid, mid_module,
                   n - 1};
  for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
    char name[64];
    snprintf(name, sizeof name, "cut-%zu.plan", lens[i]);
    expect_reject(d, lens[i], name, AD_STATUS_DATA_LOSS, "plan is truncated");
  }
  /* A plan with bytes appended is damaged too, though not truncated. */
  uint8_t *longer = calloc(n + 8, 1);
  memcpy(longer, d, n);
  expect_reject(longer, n + 8, "appended.plan", AD_STATUS_DATA_LOSS, "but the file has");
  free(longer);
  ad_buf_free(&b);
  plan_free(p);
  tu_tmpdir_remove();
}
END_TEST

START_TEST(test_reject_flipped_bytes) {
  tu_tmpdir_create("plan");
  plan_t *p = small_plan();
  ad_buf_t b = {0};
  encode(p, &b);
  size_t n = b.len;
  uint8_t *d = malloc(n);

  size_t offs[64];
  int noffs = 0;
  /* header fields other than magic/version/size (those have their own, earlier checks) */
  offs[noffs++] = PLAN_OFF_HEADER_SIZE;
  offs[noffs++] = PLAN_OFF_SECTION_COUNT;
  offs[noffs++] = PLAN_OFF_CRC + 2;
  offs[noffs++] = 40; /* reserved */
  offs[noffs++] = PLAN_HEADER_SIZE - 1;
  /* section table: a kind, a flags word, an offset, a size, the last byte */
  offs[noffs++] = PLAN_HEADER_SIZE;
  offs[noffs++] = PLAN_HEADER_SIZE + 4;
  offs[noffs++] = PLAN_HEADER_SIZE + PLAN_SECTION_ENTRY_SIZE + 8;
  offs[noffs++] = PLAN_HEADER_SIZE + 2 * PLAN_SECTION_ENTRY_SIZE + 16;
  offs[noffs++] = PLAN_HEADER_SIZE + 6 * PLAN_SECTION_ENTRY_SIZE - 1;
  /* each non-empty payload (first, middle, last byte) and every padding gap */
  int npad = 0;
  for (uint32_t k = 1; k <= PLAN_SECTION_KIND_MAX; k++) {
    const uint8_t *e = entry_of(b.data, k);
    size_t off = (size_t)rd64(e + 8), size = (size_t)rd64(e + 16);
    if (size) {
      offs[noffs++] = off;
      offs[noffs++] = off + size / 2;
      offs[noffs++] = off + size - 1;
    }
    if (off + size < n && (off + size) % 8) {
      offs[noffs++] = off + size; /* padding after this section */
      npad++;
    }
  }
  ck_assert_msg(npad >= 1, "the test plan has no padding between sections");
  for (int i = 0; i < noffs; i++) {
    memcpy(d, b.data, n);
    d[offs[i]] ^= 0x5a;
    char name[64];
    snprintf(name, sizeof name, "flip-%zu.plan", offs[i]);
    expect_reject(d, n, name, AD_STATUS_DATA_LOSS, "plan is corrupt: checksum mismatch");
  }

  /* Flips in the first fields hit the earlier checks, each with its own reason. */
  memcpy(d, b.data, n);
  d[3] ^= 0x20;
  expect_reject(d, n, "flip-magic.plan", AD_STATUS_INVALID_ARGUMENT, "not an aidomm plan");
  memcpy(d, b.data, n);
  d[PLAN_OFF_FILE_SIZE + 1] ^= 0x01;
  expect_reject(d, n, "flip-size.plan", AD_STATUS_DATA_LOSS, "but the file has");
  memcpy(d, b.data, n);
  d[PLAN_OFF_VERSION] ^= 0x01; /* version 1 -> 0 */
  expect_reject(d, n, "flip-version.plan", AD_STATUS_DATA_LOSS, "format version 0");
  free(d);
  ad_buf_free(&b);
  plan_free(p);
  tu_tmpdir_remove();
}
END_TEST

START_TEST(test_reject_newer_version) {
  tu_tmpdir_create("plan");
  plan_t *p = small_plan();
  ad_buf_t b = {0};
  encode(p, &b);
  wr32(b.data + PLAN_OFF_VERSION, 2);
  fix_crc(b.data, b.len);
  expect_reject(b.data, b.len, "v2.plan", AD_STATUS_INVALID_ARGUMENT,
                "plan format version 2 is newer than this aidomm supports (1)");
  ad_buf_free(&b);
  plan_free(p);
  tu_tmpdir_remove();
}
END_TEST

/* Damage that keeps a valid checksum: only the structural checks can catch it. */
START_TEST(test_reject_forged_tables) {
  tu_tmpdir_create("plan");
  plan_t *p = small_plan();
  ad_buf_t b = {0};
  encode(p, &b);
  size_t n = b.len;
  uint8_t *d = malloc(n);
#define FORGE(stmt, fname, why)       \
  do {                                \
    memcpy(d, b.data, n);             \
    stmt;                             \
    fix_crc(d, n);                    \
    expect_reject(d, n, fname, AD_STATUS_DATA_LOSS, why); \
  } while (0)

  FORGE(wr64(entry_of(d, PLAN_SECTION_MODULE) + 16, n), "past-eof-size.plan",
        "extends past the end of the file");
  FORGE(wr64(entry_of(d, PLAN_SECTION_CODE) + 8, n + 64), "past-eof-offset.plan",
        "extends past the end of the file");
  FORGE(wr64(entry_of(d, PLAN_SECTION_JOB) + 16, UINT64_MAX - 4), "past-eof-wrap.plan",
        "extends past the end of the file");
  FORGE(wr64(entry_of(d, PLAN_SECTION_MEMPLAN) + 8, rd64(entry_of(d, PLAN_SECTION_MODULE) + 8)),
        "overlap.plan", "overlap");
  FORGE(wr64(entry_of(d, PLAN_SECTION_META) + 8, 8), "into-header.plan",
        "overlaps the header or section table");
  FORGE(wr64(entry_of(d, PLAN_SECTION_CONFIG) + 8, rd64(entry_of(d, PLAN_SECTION_CONFIG) + 8) + 4),
        "unaligned.plan", "not 8-byte aligned");
  FORGE(wr32(entry_of(d, PLAN_SECTION_CODE), 99), "unknown-kind.plan", "unknown kind 99");
  FORGE(wr32(entry_of(d, PLAN_SECTION_CODE), PLAN_SECTION_JOB), "duplicate.plan", "appears twice");
  FORGE(wr32(entry_of(d, PLAN_SECTION_CODE) + 4, 1), "flags.plan", "unknown flags");
  FORGE(wr32(d + PLAN_OFF_SECTION_COUNT, 5), "missing.plan", "the CODE section is missing");
  FORGE(wr32(d + PLAN_OFF_SECTION_COUNT, 1000000), "count.plan", "section count");
  FORGE(wr32(d + PLAN_OFF_HEADER_SIZE, 128), "hsize.plan", "header size 128");
  FORGE(d[50] = 1, "reserved.plan", "reserved header bytes");
  {
    const uint8_t *e = entry_of(b.data, PLAN_SECTION_CONFIG);
    size_t gap = (size_t)(rd64(e + 8) + rd64(e + 16));
    ck_assert_msg(gap % 8 != 0, "the CONFIG section is not followed by padding");
    FORGE(d[gap] = 0xff, "padding.plan", "nonzero padding");
  }
  {
    /* Valid container, broken payloads. */
    const uint8_t *e = entry_of(b.data, PLAN_SECTION_JOB);
    size_t off = (size_t)rd64(e + 8);
    FORGE(d[off] = '[', "job-json.plan", "JOB section: invalid JSON");
    e = entry_of(b.data, PLAN_SECTION_META);
    off = (size_t)rd64(e + 8);
    FORGE(d[off] = 'x', "meta-json.plan", "META section: invalid JSON");
    e = entry_of(b.data, PLAN_SECTION_CONFIG);
    off = (size_t)rd64(e + 8);
    FORGE(d[off + 3] = 0, "config-nul.plan", "CONFIG section: NUL byte");
    e = entry_of(b.data, PLAN_SECTION_MEMPLAN);
    off = (size_t)rd64(e + 8);
    FORGE(wr32(d + off, 3), "memplan-count.plan", "MEMPLAN section");
    /* META and JOB disagreeing about the job (same length, still valid JSON). */
    e = entry_of(b.data, PLAN_SECTION_META);
    off = (size_t)rd64(e + 8);
    size_t mlen = (size_t)rd64(e + 16);
    const char *key = "\"job\": \"validate\"";
    uint8_t *hit = memmem(b.data + off, mlen, key, strlen(key));
    ck_assert_ptr_nonnull(hit);
    FORGE(memcpy(d + (hit - b.data), "\"job\": \"test\"    ", strlen(key)), "meta-job.plan",
          "META says job 'test' but JOB says 'validate'");
  }
#undef FORGE
  free(d);
  ad_buf_free(&b);
  plan_free(p);
  tu_tmpdir_remove();
}
END_TEST

/* A memory plan that contradicts the module is a compiler bug when writing (INTERNAL: exit
 * code 1, nothing written) and corruption when reading. */
START_TEST(test_reject_inconsistent_memplan) {
  tu_tmpdir_create("plan");
  plan_t *p = small_plan();
  ad_buf_t b = {0};
  p->memplans[1].nvalues -= 1;
  ad_status_t st = plan_write(p, tu_tmpdir_path("bad.plan"));
  ck_assert_ptr_nonnull(st);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_INTERNAL);
  ck_assert_msg(strstr(ad_status_message(st), "memory plan of 'eval' has"), "%s",
                ad_status_message(st));
  ad_status_free(st);
  ck_assert_int_ne(access(tu_tmpdir_path("bad.plan"), F_OK), 0);
  p->memplans[1].nvalues += 1;
  int64_t saved = p->memplans[0].offset[0];
  p->memplans[0].offset[0] = p->memplans[0].peak_bytes; /* past the arena */
  st = plan_encode(p, &b);
  ck_assert_ptr_nonnull(st);
  ck_assert_msg(strstr(ad_status_message(st), "outside the"), "%s", ad_status_message(st));
  ad_status_free(st);
  p->memplans[0].offset[0] = saved;

  /* The same contradictions forged into a valid file. MEMPLAN starts: u32 count, then
   * program 0: u32 name length, name, u32 reuse, u32 nvalues, i64 peak, i64 total, values. */
  b.len = 0;
  encode(p, &b);
  size_t n = b.len;
  uint8_t *d = malloc(n);
  size_t off = (size_t)rd64(entry_of(b.data, PLAN_SECTION_MEMPLAN) + 8);
  size_t name_len = rd32(b.data + off + 4);
  ck_assert_uint_eq(name_len, strlen("forward"));
  ck_assert_int_eq(memcmp(b.data + off + 8, "forward", name_len), 0);
  memcpy(d, b.data, n);
  d[off + 8] = 'b'; /* "borward" */
  fix_crc(d, n);
  expect_reject(d, n, "renamed.plan", AD_STATUS_DATA_LOSS,
                "memory plan 0 is for 'borward' but program 0 is 'forward'");
  size_t value0 = off + 8 + name_len + 4 + 4 + 8 + 8;
  memcpy(d, b.data, n);
  wr64(d + value0, (uint64_t)p->memplans[0].peak_bytes);
  fix_crc(d, n);
  expect_reject(d, n, "outside.plan", AD_STATUS_DATA_LOSS, "lies outside the");
  memcpy(d, b.data, n);
  wr32(d + off + 8 + name_len + 4, p->memplans[0].nvalues - 1);
  fix_crc(d, n);
  expect_reject(d, n, "nvalues.plan", AD_STATUS_DATA_LOSS, "MEMPLAN section");
  free(d);
  ad_buf_free(&b);
  plan_free(p);
  tu_tmpdir_remove();
}
END_TEST

/* A forger who fixes the checksum after changing any bit still gets a clean error (or, where
 * the change is harmless, such as a float attribute, a valid plan): never a crash. */
START_TEST(test_forged_bit_flips_never_crash) {
  plan_t *p = small_plan();
  ad_buf_t b = {0};
  encode(p, &b);
  uint8_t *d = malloc(b.len);
  int rejected = 0;
  for (size_t i = 0; i < b.len; i++) {
    memcpy(d, b.data, b.len);
    d[i] ^= (uint8_t)(1u << (i % 8));
    fix_crc(d, b.len);
    plan_t *q = NULL;
    ad_status_t st = plan_decode(d, b.len, "forged.plan", &q);
    if (st) {
      rejected++;
      const char *msg = ad_status_message(st);
      ck_assert_ptr_null(q);
      ck_assert_msg(strncmp(msg, "forged.plan", 11) == 0 && !strchr(msg, '\n'),
                    "byte %zu: not one line naming the file: %s", i, msg);
      ck_assert_int_eq(ad_status_exit_code(st), 2);
      ad_status_free(st);
    } else {
      plan_free(q);
    }
  }
  /* Most bytes are structure: the bulk of the changes must be caught. */
  ck_assert_int_gt(rejected, (int)b.len / 2);
  free(d);
  ad_buf_free(&b);
  plan_free(p);
}
END_TEST

static Suite *plan_suite(void) {
  Suite *s = suite_create("plan");
  TCase *tc = tcase_create("container");
  tcase_add_test(tc, test_round_trip);
  tcase_add_test(tc, test_write_is_atomic_and_leaves_no_temp);
  tcase_add_test(tc, test_encode_rejects_bad_plans);
  tcase_add_test(tc, test_reject_missing_empty_foreign);
  tcase_add_test(tc, test_reject_truncated);
  tcase_add_test(tc, test_reject_flipped_bytes);
  tcase_add_test(tc, test_reject_newer_version);
  tcase_add_test(tc, test_reject_forged_tables);
  tcase_add_test(tc, test_reject_inconsistent_memplan);
  tcase_add_test(tc, test_forged_bit_flips_never_crash);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(plan_suite()); }
