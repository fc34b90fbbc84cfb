/* runtime/weights.c: aidomm checkpoints (round trip, torch strict semantics, save_peft_only
 * pruning, corrupt and pickle files refused) and Hugging Face folders (single file, sharded
 * index, *ForMaskedLM prefixes, tied/alias keys, holes), all on the tiny 3-modality config
 * (Enformer + AIDO.RNA with LoRA + ESM2 with LoRA) and a small hand-built module. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "runtime/exec.h"
#include "runtime/weights.h"
#include "support/golden.h"

static char g_dir[64];

static void make_dir(void) {
  strcpy(g_dir, "/tmp/aidomm_weights_XXXXXX");
  ck_assert(mkdtemp(g_dir));
}

static void remove_tree(const char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}

static char *in_dir(const char *name) {
  static char buf[8][512];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, 512, "%s/%s", g_dir, name);
  return p;
}

#define OK(expr)                                                   \
  do {                                                             \
    ad_status_t st__ = (expr);                                     \
    ck_assert_msg(!st__, "%s", st__ ? ad_status_message(st__) : ""); \
  } while (0)

/* Expects an error whose message holds every given fragment. */
static void expect_error(ad_status_t st, const char *const *frags, size_t n) {
  ck_assert_msg(st, "expected an error");
  const char *msg = ad_status_message(st);
  for (size_t i = 0; i < n; i++)
    ck_assert_msg(strstr(msg, frags[i]), "message lacks \"%s\": %s", frags[i], msg);
  ad_status_free(st);
}
#define EXPECT_ERROR(st, ...)                                                     \
  do {                                                                            \
    const char *fr__[] = {__VA_ARGS__};                                           \
    expect_error((st), fr__, sizeof fr__ / sizeof *fr__);                         \
  } while (0)

typedef struct model {
  fe_config_t *cfg;
  ir_module_t *m;
  rt_state_t *s;
} model_t;

static void model_load(model_t *md, uint64_t seed) {
  char *path = golden_path("configs/tiny_isoform_expression_dna_rna_prot_concat.yaml");
  OK(fe_config_load(path, 0, NULL, &md->cfg));
  free(path);
  md->cfg->warn_stream = NULL;
  fe_job_t job;
  OK(fe_build_module(md->cfg, &md->m, &job));
  OK(rt_state_create(md->m, &md->s));
  OK(rt_state_init(md->s, seed));
}

static void model_free(model_t *md) {
  rt_state_free(md->s);
  ir_module_free(md->m);
  fe_config_free(md->cfg);
}

static bool is_model(uint32_t fl) { return (fl & (IR_SLOT_PARAM | IR_SLOT_BUFFER)) != 0; }

static int64_t slot_or_die(const rt_state_t *s, const char *name) {
  int64_t i = rt_state_find(s, name);
  ck_assert_msg(i >= 0, "no slot %s", name);
  return i;
}

/* ---- checkpoints ---------------------------------------------------------------------- */

START_TEST(test_round_trip_and_peft_pruning) {
  make_dir();
  model_t a, b;
  model_load(&a, 1);
  model_load(&b, 2);
  const char *ck = in_dir("last.safetensors");
  rt_st_kv_t meta[1] = {{"format", "aidomm"}};
  OK(rt_weights_save_checkpoint(a.s, ck, meta, 1));

  rt_st_file_t *f;
  OK(rt_st_open(ck, &f));
  ck_assert_str_eq(rt_st_metadata(f, "format"), "aidomm");
  size_t nsaved = 0, nnosave = 0;
  for (uint32_t i = 0; i < a.m->nslots; i++) {
    const ir_state_slot_t *sl = &a.m->slots[i];
    bool in_file = rt_st_find(f, sl->name) != NULL;
    bool want = is_model(sl->flags) && !(sl->flags & IR_SLOT_NOSAVE);
    ck_assert_msg(in_file == want, "slot %s in file: %d", sl->name, in_file);
    nsaved += want;
    nnosave += is_model(sl->flags) && (sl->flags & IR_SLOT_NOSAVE);
  }
  ck_assert_uint_eq(rt_st_count(f), nsaved);
  /* save_peft_only: the frozen AIDO.RNA/ESM2 base weights are left out, LoRA ones kept. */
  ck_assert_uint_gt(nnosave, 10);
  ck_assert(!rt_st_find(f, "backbone1.encoder.base_model.model.encoder.layer.0.attention.self."
                           "query.base_layer.weight"));
  ck_assert(rt_st_find(f, "backbone1.encoder.base_model.model.encoder.layer.0.attention.self."
                          "query.lora_A.default.weight"));
  rt_st_close(f);

  /* strict load: every saved slot bit-identical; NOSAVE slots keep b's own (base) weights. */
  rt_weights_report_t rep;
  OK(rt_weights_load_checkpoint(b.s, ck, true, &rep));
  ck_assert_uint_eq(rep.nloaded, nsaved);
  ck_assert_uint_eq(rep.nmissing + rep.nunexpected, 0);
  rt_weights_report_free(&rep);
  model_t c;
  model_load(&c, 2);
  for (uint32_t i = 0; i < a.m->nslots; i++) {
    const ir_state_slot_t *sl = &a.m->slots[i];
    if (!is_model(sl->flags)) continue;
    const rt_state_t *want = (sl->flags & IR_SLOT_NOSAVE) ? c.s : a.s;
    ck_assert_msg(memcmp(b.s->data[i], want->data[i], b.s->bytes[i]) == 0, "slot %s", sl->name);
  }
  /* a and c (seeds 1, 2) differ, so the comparison above can fail. */
  int64_t q =
      slot_or_die(a.s, "backbone2.encoder.base_model.model.embeddings.word_embeddings.weight");
  ck_assert(memcmp(a.s->data[q], c.s->data[q], a.s->bytes[q]) != 0);
  model_free(&a);
  model_free(&b);
  model_free(&c);
  remove_tree(g_dir);
}
END_TEST

/* A two-slot f32 module for the strict cases. */
static ir_module_t *small_module(ir_dtype_t dt) {
  ir_module_t *m = ir_module_create();
  ir_type_t t = {.dtype = dt, .rank = 2};
  t.dims[0] = ir_dim_const(2);
  t.dims[1] = ir_dim_const(3);
  ck_assert(!ir_module_add_slot(m, "head.weight", &t, IR_SLOT_PARAM | IR_SLOT_TRAINABLE,
                                "normal(0,1)", NULL));
  ir_type_t v = {.dtype = dt, .rank = 1};
  v.dims[0] = ir_dim_const(2);
  ck_assert(!ir_module_add_slot(m, "head.bias", &v, IR_SLOT_PARAM | IR_SLOT_TRAINABLE,
                                "normal(0,1)", NULL));
  ck_assert(!ir_module_add_slot(m, "head.weight.exp_avg", &t, IR_SLOT_OPTIM, "zeros", NULL));
  return m;
}

static void write_file(const char *path, const rt_st_tensor_t *ts, size_t n) {
  OK(rt_st_write(path, ts, n, NULL, 0));
}

START_TEST(test_strict_semantics) {
  make_dir();
  ir_module_t *m = small_module(IR_DTYPE_F32);
  rt_state_t *s;
  OK(rt_state_create(m, &s));
  OK(rt_state_init(s, 3));
  float w[6] = {1, 2, 3, 4, 5, 6}, bias[2] = {7, 8}, other[3] = {9, 9, 9};
  rt_st_tensor_t tw = {.name = "head.weight", .dtype = RT_ST_F32, .rank = 2, .shape = {2, 3},
                       .data = w};
  rt_st_tensor_t tb = {.name = "head.bias", .dtype = RT_ST_F32, .rank = 1, .shape = {2},
                       .data = bias};
  rt_st_tensor_t tx = {.name = "head.extra", .dtype = RT_ST_F32, .rank = 1, .shape = {3},
                       .data = other};
  float before[2];
  memcpy(before, s->data[1], sizeof before);

  /* missing: strict lists it, nothing is written; non-strict loads the rest. */
  write_file(in_dir("miss.safetensors"), &tw, 1);
  EXPECT_ERROR(rt_weights_load_checkpoint(s, in_dir("miss.safetensors"), true, NULL),
               "Missing key(s) in state_dict", "\"head.bias\"", "miss.safetensors");
  ck_assert(memcmp(s->data[0], w, sizeof w) != 0);
  rt_weights_report_t rep;
  OK(rt_weights_load_checkpoint(s, in_dir("miss.safetensors"), false, &rep));
  ck_assert_uint_eq(rep.nmissing, 1);
  ck_assert_str_eq(rep.missing[0], "head.bias");
  rt_weights_report_free(&rep);
  ck_assert(memcmp(s->data[0], w, sizeof w) == 0);
  ck_assert(memcmp(s->data[1], before, sizeof before) == 0);

  /* unexpected (an unknown key, and an optimizer slot, which is no model key) */
  rt_st_tensor_t all3[4] = {tw, tb, tx, tw};
  all3[3].name = "head.weight.exp_avg";
  write_file(in_dir("extra.safetensors"), all3, 4);
  EXPECT_ERROR(rt_weights_load_checkpoint(s, in_dir("extra.safetensors"), true, NULL),
               "Unexpected key(s) in state_dict", "\"head.extra\"", "\"head.weight.exp_avg\"");
  OK(rt_weights_load_checkpoint(s, in_dir("extra.safetensors"), false, &rep));
  ck_assert_uint_eq(rep.nunexpected, 2);
  ck_assert_uint_eq(rep.nloaded, 2);
  rt_weights_report_free(&rep);
  ck_assert(memcmp(s->data[1], bias, sizeof bias) == 0);

  /* shape mismatch: an error strict or not, naming key, file and both shapes */
  rt_st_tensor_t bad = tw;
  bad.shape[0] = 3;
  bad.shape[1] = 2;
  write_file(in_dir("shape.safetensors"), &bad, 1);
  EXPECT_ERROR(rt_weights_load_checkpoint(s, in_dir("shape.safetensors"), false, NULL),
               "size mismatch for head.weight", "shape.safetensors", "[3, 2]", "[2, 3]");

  /* f64 file into f32 slots converts */
  double wd[6] = {0.5, 1.5, 2.5, 3.5, 4.5, 5.5}, bd[2] = {-1, -2};
  rt_st_tensor_t d2[2] = {tw, tb};
  d2[0].dtype = d2[1].dtype = RT_ST_F64;
  d2[0].data = wd;
  d2[1].data = bd;
  write_file(in_dir("f64.safetensors"), d2, 2);
  OK(rt_weights_load_checkpoint(s, in_dir("f64.safetensors"), true, NULL));
  for (int i = 0; i < 6; i++) ck_assert(((float *)s->data[0])[i] == (float)wd[i]);

  /* an f32 checkpoint into an f64 model of the same keys */
  OK(rt_weights_save_checkpoint(s, in_dir("f32.safetensors"), NULL, 0));
  ir_module_t *m64 = small_module(IR_DTYPE_F64);
  rt_state_t *s64;
  OK(rt_state_create(m64, &s64));
  OK(rt_weights_load_checkpoint(s64, in_dir("f32.safetensors"), true, NULL));
  for (int i = 0; i < 6; i++) ck_assert(((double *)s64->data[0])[i] == wd[i]);
  rt_state_free(s64);
  ir_module_free(m64);
  rt_state_free(s);
  ir_module_free(m);
  remove_tree(g_dir);
}
END_TEST

static void write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert(f);
  ck_assert_uint_eq(fwrite(p, 1, n, f), n);
  fclose(f);
}

START_TEST(test_corrupt_and_pickle_refused) {
  make_dir();
  ir_module_t *m = small_module(IR_DTYPE_F32);
  rt_state_t *s;
  OK(rt_state_create(m, &s));
  OK(rt_state_init(s, 4));
  const char *ck = in_dir("ok.safetensors");
  OK(rt_weights_save_checkpoint(s, ck, NULL, 0));
  FILE *f = fopen(ck, "rb");
  ck_assert(f);
  unsigned char buf[4096];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  ck_assert_uint_gt(n, 16);
  float keep[6];
  memcpy(keep, s->data[0], sizeof keep);

  unsigned char bad[4096];
  memcpy(bad, buf, n);
  bad[0] = 0xff; /* header length past the end */
  write_bytes(in_dir("hdr.safetensors"), bad, n);
  ad_status_t st = rt_weights_load_checkpoint(s, in_dir("hdr.safetensors"), false, NULL);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_DATA_LOSS);
  ad_status_free(st);
  write_bytes(in_dir("short.safetensors"), buf, n - 4); /* truncated data */
  st = rt_weights_load_checkpoint(s, in_dir("short.safetensors"), false, NULL);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_DATA_LOSS);
  ad_status_free(st);
  ck_assert(memcmp(s->data[0], keep, sizeof keep) == 0);

  /* pickle: by extension, zip magic and protocol opcode, whatever the name says */
  write_bytes(in_dir("model.ckpt"), buf, n);
  EXPECT_ERROR(rt_weights_load_checkpoint(s, in_dir("model.ckpt"), false, NULL),
               "pickle", "tools/convert_checkpoint.py", "model.ckpt");
  write_bytes(in_dir("zip.safetensors"), "PK\x03\x04rest", 8);
  EXPECT_ERROR(rt_weights_load_checkpoint(s, in_dir("zip.safetensors"), false, NULL),
               "zip archive", "tools/convert_checkpoint.py");
  write_bytes(in_dir("pkl.safetensors"), "\x80\x02}q\x00.", 6);
  EXPECT_ERROR(rt_weights_load_checkpoint(s, in_dir("pkl.safetensors"), false, NULL),
               "pickle stream", "tools/convert_checkpoint.py");
  ck_assert(memcmp(s->data[0], keep, sizeof keep) == 0);
  rt_state_free(s);
  ir_module_free(m);
  remove_tree(g_dir);
}
END_TEST

/* ---- Hugging Face folders ------------------------------------------------------------- */

/* The HF name a test writes for a slot, spelled out independently of the loader: strip
 * "<prefix>.encoder.", PEFT's "base_model.model." and LoRA's "base_layer."; NULL for slots the
 * HF model lacks. */
static char *hf_name(const char *slot, const char *prefix, const char *lead) {
  char root[64];
  snprintf(root, sizeof root, "%s.encoder.", prefix);
  if (strncmp(slot, root, strlen(root)) != 0 || strstr(slot, "lora_")) return NULL;
  const char *rel = slot + strlen(root);
  if (strncmp(rel, "base_model.model.", 17) == 0) rel += 17;
  char out[512];
  snprintf(out, sizeof out, "%s%s", lead, rel);
  char *bl = strstr(out, ".base_layer.");
  if (bl) memmove(bl, bl + 11, strlen(bl + 11) + 1);
  return strdup(out);
}

typedef struct hf_set {
  rt_st_tensor_t t[512];
  char *names[512];
  void *data[512];
  int64_t slot[512];
  size_t n;
} hf_set_t;

/* One tensor per encoder slot of `prefix`, values 1000*k + i (distinct from any init). */
static void hf_collect(hf_set_t *h, const rt_state_t *s, const char *prefix, const char *lead) {
  memset(h, 0, sizeof *h);
  for (uint32_t i = 0; i < s->module->nslots; i++) {
    const ir_state_slot_t *sl = &s->module->slots[i];
    char *name = is_model(sl->flags) ? hf_name(sl->name, prefix, lead) : NULL;
    if (!name) continue;
    ck_assert(h->n < 512);
    rt_st_tensor_t *t = &h->t[h->n];
    int64_t zeros[IR_MAX_SYMBOLS] = {0};
    ir_shape_t sh = ir_type_shape(&sl->type, zeros);
    int64_t numel = ir_shape_numel(&sh);
    ck_assert(rt_st_dtype_from_ir(sl->type.dtype, &t->dtype));
    /* float slots get 1000*k + e; others (BatchNorm's num_batches_tracked, i64) k + e */
    void *d = malloc((size_t)(numel ? numel : 1) * 8);
    for (int64_t e = 0; e < numel; e++) {
      if (sl->type.dtype == IR_DTYPE_F32)
        ((float *)d)[e] = (float)(1000 * (double)h->n + (double)e);
      else if (sl->type.dtype == IR_DTYPE_F64) ((double *)d)[e] = 1000 * (double)h->n + (double)e;
      else if (sl->type.dtype == IR_DTYPE_I64) ((int64_t *)d)[e] = (int64_t)h->n + e;
      else ck_abort_msg("slot %s: unexpected dtype", sl->name);
    }
    t->name = name;
    t->rank = sh.rank;
    for (int32_t k = 0; k < sh.rank; k++) t->shape[k] = sh.dims[k];
    t->data = d;
    h->names[h->n] = name;
    h->data[h->n] = d;
    h->slot[h->n] = i;
    h->n++;
  }
  ck_assert_uint_gt(h->n, 10);
}

static void hf_free(hf_set_t *h) {
  for (size_t i = 0; i < h->n; i++) {
    free(h->names[i]);
    free(h->data[i]);
  }
}

static void check_loaded(const hf_set_t *h, const rt_state_t *s) {
  for (size_t i = 0; i < h->n; i++)
    ck_assert_msg(memcmp(s->data[h->slot[i]], h->data[i], s->bytes[h->slot[i]]) == 0,
                  "slot %s", s->module->slots[h->slot[i]].name);
}

static void write_config(const char *dir) {
  char p[1024];
  snprintf(p, sizeof p, "%s/config.json", dir);
  write_bytes(p, "{}\n", 3);
}

START_TEST(test_hf_folder_rna_single_file) {
  make_dir();
  model_t md;
  model_load(&md, 5);
  hf_set_t h;
  hf_collect(&h, md.s, "backbone1", "");
  /* A key the model lacks that aliases a loaded tensor (tied head), and one that does not. */
  size_t n = h.n;
  rt_st_tensor_t extra[2];
  int64_t we = -1;
  for (size_t i = 0; i < n; i++)
    if (strcmp(h.names[i], "embeddings.word_embeddings.weight") == 0) we = (int64_t)i;
  ck_assert(we >= 0);
  extra[0] = h.t[we];
  extra[0].name = "lm_head.decoder.weight";
  float lmb[3] = {1, 2, 3};
  extra[1] = (rt_st_tensor_t){.name = "lm_head.bias", .dtype = RT_ST_F32, .rank = 1,
                              .shape = {3}, .data = lmb};
  rt_st_tensor_t all[514];
  memcpy(all, h.t, n * sizeof *all);
  all[n] = extra[0];
  all[n + 1] = extra[1];
  write_config(g_dir);
  OK(rt_st_write(in_dir("model.safetensors"), all, n + 2, NULL, 0));

  int64_t lora = slot_or_die(md.s, "backbone1.encoder.base_model.model.encoder.layer.0.attention."
                                   "self.query.lora_A.default.weight");
  float lora_before[4];
  memcpy(lora_before, md.s->data[lora], sizeof lora_before);
  rt_weights_report_t rep;
  OK(rt_weights_load_hf_folder(md.s, "backbone1", g_dir, NULL, &rep));
  ck_assert_uint_eq(rep.nloaded, n);
  ck_assert_uint_eq(rep.naliases, 1);
  ck_assert_uint_eq(rep.nunexpected, 1);
  ck_assert_str_eq(rep.unexpected[0], "lm_head.bias");
  rt_weights_report_free(&rep);
  check_loaded(&h, md.s);
  /* the LoRA-wrapped query gets the HF query weight; adapters are untouched */
  int64_t q = slot_or_die(md.s, "backbone1.encoder.base_model.model.encoder.layer.0.attention."
                                "self.query.base_layer.weight");
  size_t qi = 0;
  while (qi < n && strcmp(h.names[qi], "encoder.layer.0.attention.self.query.weight") != 0) qi++;
  ck_assert_uint_lt(qi, n);
  ck_assert(memcmp(md.s->data[q], h.data[qi], md.s->bytes[q]) == 0);
  ck_assert(memcmp(md.s->data[lora], lora_before, sizeof lora_before) == 0);

  /* a hole is an error naming the key; nothing else changes */
  rt_st_tensor_t holed[512];
  size_t nh = 0;
  for (size_t i = 0; i < n; i++)
    if (i != qi) holed[nh++] = h.t[i];
  OK(rt_st_write(in_dir("model.safetensors"), holed, nh, NULL, 0));
  EXPECT_ERROR(rt_weights_load_hf_folder(md.s, "backbone1", g_dir, NULL, NULL),
               "lacks weights", "\"encoder.layer.0.attention.self.query.weight\"", "backbone1");
  /* a wrong shape names key, file and both shapes */
  float tiny[1] = {0};
  holed[nh] = (rt_st_tensor_t){.name = "encoder.layer.0.attention.self.query.weight",
                               .dtype = RT_ST_F32, .rank = 1, .shape = {1}, .data = tiny};
  OK(rt_st_write(in_dir("model.safetensors"), holed, nh + 1, NULL, 0));
  EXPECT_ERROR(rt_weights_load_hf_folder(md.s, "backbone1", g_dir, NULL, NULL),
               "size mismatch for encoder.layer.0.attention.self.query.weight",
               "model.safetensors", "[1]");
  /* only a pickle: refused with the converter named */
  unlink(in_dir("model.safetensors"));
  write_bytes(in_dir("pytorch_model.bin"), "PK\x03\x04", 4);
  EXPECT_ERROR(rt_weights_load_hf_folder(md.s, "backbone1", g_dir, NULL, NULL),
               "tools/convert_checkpoint.py");
  hf_free(&h);
  model_free(&md);
  remove_tree(g_dir);
}
END_TEST

static void write_index(const hf_set_t *h, size_t split, const char *shard_a,
                        const char *shard_b) {
  FILE *f = fopen(in_dir("model.safetensors.index.json"), "w");
  ck_assert(f);
  fprintf(f, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
  for (size_t i = 0; i < h->n; i++)
    fprintf(f, "%s\"%s\": \"%s\"", i ? ", " : "", h->t[i].name, i < split ? shard_a : shard_b);
  fprintf(f, "}}\n");
  fclose(f);
}

START_TEST(test_hf_folder_esm_sharded) {
  make_dir();
  model_t md;
  model_load(&md, 6);
  hf_set_t h;
  /* EsmForMaskedLM.save_pretrained names the encoder "esm." */
  hf_collect(&h, md.s, "backbone2", "esm.");
  write_config(g_dir);
  size_t split = h.n / 2;
  OK(rt_st_write(in_dir("model-00001-of-00002.safetensors"), h.t, split, NULL, 0));
  OK(rt_st_write(in_dir("model-00002-of-00002.safetensors"), h.t + split, h.n - split, NULL, 0));
  write_index(&h, split, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
  rt_weights_report_t rep;
  OK(rt_weights_load_hf_folder(md.s, "backbone2", g_dir, NULL, &rep));
  ck_assert_uint_eq(rep.nloaded, h.n);
  ck_assert_uint_eq(rep.nunexpected, 0);
  rt_weights_report_free(&rep);
  check_loaded(&h, md.s);

  /* an index that puts a key in the wrong shard is corrupt */
  write_index(&h, split + 1, "model-00001-of-00002.safetensors",
              "model-00002-of-00002.safetensors");
  ad_status_t st = rt_weights_load_hf_folder(md.s, "backbone2", g_dir, NULL, NULL);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_DATA_LOSS);
  ad_status_free(st);
  /* a shard name leaving the folder is refused */
  write_index(&h, split, "../x.safetensors", "model-00002-of-00002.safetensors");
  EXPECT_ERROR(rt_weights_load_hf_folder(md.s, "backbone2", g_dir, NULL, NULL),
               "not a file name in the folder");
  hf_free(&h);
  model_free(&md);
  remove_tree(g_dir);
}
END_TEST

START_TEST(test_hf_folder_enformer_key_map_and_aliases) {
  make_dir();
  model_t md;
  model_load(&md, 7);
  hf_set_t h;
  hf_collect(&h, md.s, "backbone", "");
  /* Enformer's save_pretrained also writes "_trunk.*" names for the same tensors; and here the
   * stem is saved under an older name that a key_map rule renames. */
  rt_st_tensor_t all[1024];
  size_t n = 0;
  char *renamed[512] = {0};
  size_t nstem = 0;
  for (size_t i = 0; i < h.n; i++) {
    all[n] = h.t[i];
    if (strncmp(h.names[i], "stem.", 5) == 0) {
      renamed[i] = malloc(strlen(h.names[i]) + 8);
      sprintf(renamed[i], "old_stem.%s", h.names[i] + 5);
      all[n].name = renamed[i];
      nstem++;
    }
    n++;
  }
  ck_assert_uint_gt(nstem, 0);
  char *trunk[512] = {0};
  for (size_t i = 0; i < h.n; i++) {
    /* as enformer_pytorch's _trunk Sequential numbers its children: no name to match */
    trunk[i] = malloc(strlen(h.names[i]) + 32);
    sprintf(trunk[i], "_trunk.%zu.%s", i, h.names[i]);
    all[n] = h.t[i];
    all[n].name = trunk[i];
    n++;
  }
  write_config(g_dir);
  OK(rt_st_write(in_dir("model.safetensors"), all, n, NULL, 0));
  rt_weights_key_rule_t rule = {"old_stem.", "stem."};
  rt_weights_key_map_t km = {&rule, 1};
  rt_weights_report_t rep;
  OK(rt_weights_load_hf_folder(md.s, "backbone", g_dir, &km, &rep));
  /* one-element copies (num_batches_tracked) prove nothing by their bytes: unexpected */
  size_t nscalar = 0;
  for (size_t i = 0; i < h.n; i++) nscalar += rt_st_numel(&h.t[i]) == 1;
  ck_assert_uint_gt(nscalar, 0);
  ck_assert_uint_eq(rep.nloaded, h.n);
  ck_assert_uint_eq(rep.naliases, h.n - nscalar);
  ck_assert_uint_eq(rep.nunexpected, nscalar);
  ck_assert(strstr(rep.unexpected[0], "num_batches_tracked"));
  rt_weights_report_free(&rep);
  check_loaded(&h, md.s);
  /* without the rule the stem is a hole */
  EXPECT_ERROR(rt_weights_load_hf_folder(md.s, "backbone", g_dir, NULL, NULL), "\"stem.");
  for (size_t i = 0; i < h.n; i++) {
    free(renamed[i]);
    free(trunk[i]);
  }
  hf_free(&h);
  model_free(&md);
  remove_tree(g_dir);
}
END_TEST

START_TEST(test_find_hf_folder) {
  make_dir();
  char models[128], home[128];
  snprintf(models, sizeof models, "%s/models", g_dir);
  snprintf(home, sizeof home, "%s/home", g_dir);
  setenv("AIDOMM_MODELS", models, 1);
  setenv("HOME", home, 1);
  char *out = NULL;
  EXPECT_ERROR(rt_weights_find_hf_folder("genbio-ai/AIDO.RNA-650M", &out),
               "genbio-ai/AIDO.RNA-650M", "/models/genbio-ai/AIDO.RNA-650M",
               "/home/genbio_models/genbio-ai/AIDO.RNA-650M", "config.json", "model.safetensors",
               "model.safetensors.index.json");
  ck_assert_ptr_null(out);
  char d[256];
  snprintf(d, sizeof d, "%s/genbio_models/genbio-ai/AIDO.RNA-650M", home);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s/genbio-ai/AIDO.RNA-650M'", d, models);
  ck_assert_int_eq(system(cmd), 0);
  write_config(d);
  char p[600];
  snprintf(p, sizeof p, "%s/model.safetensors", d);
  write_bytes(p, "x", 1);
  /* $AIDOMM_MODELS has the folder but no weights in it: the home copy is found */
  OK(rt_weights_find_hf_folder("genbio-ai/AIDO.RNA-650M", &out));
  ck_assert_str_eq(out, d);
  free(out);
  EXPECT_ERROR(rt_weights_find_hf_folder("../etc", &out), "hub id");
  unsetenv("AIDOMM_MODELS");
  remove_tree(g_dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("weights");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_round_trip_and_peft_pruning);
  tcase_add_test(tc, test_strict_semantics);
  tcase_add_test(tc, test_corrupt_and_pickle_refused);
  tcase_add_test(tc, test_hf_folder_rna_single_file);
  tcase_add_test(tc, test_hf_folder_esm_sharded);
  tcase_add_test(tc, test_hf_folder_enformer_key_map_and_aliases);
  tcase_add_test(tc, test_find_hf_folder);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
