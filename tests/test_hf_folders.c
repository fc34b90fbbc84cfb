/* Hugging Face folders written by the peers' own save_pretrained (tools/golden/hf_folders.py:
 * tests/golden/hf/<name>/{config.json,model.safetensors}) load into the matching aidomm backbone
 * with rt_weights_load_hf_folder and reproduce the peer's eval-mode last_hidden_state on fixed
 * inputs (tests/golden/hf/<name>_io.safetensors), f32 <= 1e-5 relative: ESM2 (transformers
 * EsmModel), AIDO.RNA (RNABertModel) and Enformer (the vendored enformer_pytorch, embeddings). The load report must be
 * clean: every file key loaded, no missing or unexpected keys. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/fe_check.h"
#include "passes/passes.h"
#include "runtime/exec.h"
#include "runtime/interp.h"
#include "runtime/safetensors.h"
#include "runtime/weights.h"
#include "support/golden.h"

#define OK(expr)                                                     \
  do {                                                               \
    ad_status_t st__ = (expr);                                       \
    ck_assert_msg(!st__, "%s", st__ ? ad_status_message(st__) : ""); \
  } while (0)

typedef struct built {
  fe_config_t cfg;
  fe_checker_t k;
  fe_resolved_t r;
  ir_module_t *m;
  ir_graph_t *g;
  fe_seq_t out;
  int sb;
} built_t;

/* Builds "{class_path: modelgenerator.backbones.<cls>, init_args: {<init>}}" as backbone
 * "backbone" for `omic`, with outputs "last_hidden_state" and loss = sum(last_hidden_state),
 * and lowers it for training: the peer's outputs are eval-mode (BatchNorm running statistics,
 * no dropout), which is the lowered "eval" program; "forward" is the training-mode graph. */
static void build(built_t *b, const char *cls, const char *init, const char *omic) {
  memset(b, 0, sizeof *b);
  ad_arena_init(&b->cfg.arena, 4096);
  fe_checker_init(&b->k, &b->cfg);
  char *text = ad_arena_printf(&b->cfg.arena,
                               "{class_path: modelgenerator.backbones.%s, init_args: {%s}}", cls,
                               init);
  fe_node_t *sec = fe_node_parse_text(&b->cfg.arena, text);
  ck_assert_msg(sec != NULL, "does not parse: %s", text);
  OK(fe_resolve_class(&b->k, FE_CLASS_BACKBONE, "model.init_args.backbone", sec, NULL, NULL,
                      &b->r));
  ck_assert_int_eq(b->r.cls->kind, FE_CLASS_BACKBONE);
  b->m = ir_module_create();
  OK(ir_module_add_symbol(b->m, "B", 4, &b->sb));
  OK(ir_module_add_scalar(b->m, "seed", IR_DTYPE_I64, 7.0));
  OK(ir_module_add_scalar(b->m, "step", IR_DTYPE_I64, 0.0));
  b->g = ir_module_add_program(b->m, "forward");
  fe_build_ctx_t ctx = {.config = &b->cfg, .module = b->m, .forward = b->g,
                        .dtype = IR_DTYPE_F32, .sym_batch = b->sb, .sym_len = -1,
                        .cls = b->r.cls, .args = b->r.args, .section = sec};
  fe_component_ctx_t cc = {.b = &ctx, .prefix = "backbone", .cls = b->r.cls, .args = b->r.args};
  OK(b->r.cls->backbone->build(&cc, omic, &b->out));
  ir_node_desc_t od = {.op = IR_OP_OUTPUT, .name = "last_hidden_state", .inputs = &b->out.hidden,
                       .ninputs = 1};
  ir_build(b->g, &od);
  const int64_t axes[3] = {0, 1, 2};
  ir_attr_t ra[2] = {IR_ATTR_INTS("axes", axes, 3), IR_ATTR_I("keepdim", 0)};
  ir_node_desc_t rd = {.op = IR_OP_REDUCE_SUM, .name = "loss.sum", .inputs = &b->out.hidden,
                       .ninputs = 1, .attrs = ra, .nattrs = 2};
  uint32_t loss = ir_build(b->g, &rd);
  ir_node_desc_t ld = {.op = IR_OP_OUTPUT, .name = "loss", .inputs = &loss, .ninputs = 1};
  ir_build(b->g, &ld);
  OK(ir_graph_take_error(b->g));
  pass_train_options_t o = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
  OK(pass_lower_training(b->m, &o));
  b->g = ir_module_find_program(b->m, "eval");
  ck_assert(b->g != NULL);
}

static void built_free(built_t *b) {
  fe_checker_flush(&b->k);
  ir_module_free(b->m);
  ad_arena_free(&b->cfg.arena);
}

/* Whether the forward reads slot `name` (UNUSED slots, such as ESM's pooler, it does not). */
static bool graph_reads(const ir_graph_t *g, const char *name) {
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (n->op != IR_OP_STATE_IN) continue;
    const ir_attr_t *a = ir_node_attr(n, "slot");
    if (a && strcmp(a->s, name) == 0) return true;
  }
  return false;
}

static const rt_st_tensor_t *st_get(const rt_st_file_t *f, const char *key) {
  const rt_st_tensor_t *t = rt_st_find(f, key);
  ck_assert_msg(t != NULL, "fixture lacks %s", key);
  return t;
}

/* Runs the eval program on case "a" of `io` with the state's values; returns the relative
 * error of last_hidden_state against the peer's (printing it under `label` past 1e-5). */
static double run_eval(const built_t *b, const rt_state_t *s, const rt_st_file_t *io,
                       const char *omic, const char *label) {
  /* Enformer takes one-hot DNA [B, L, 4] at its compiled length; the others token ids and a
   * mask [B, L] at a symbolic length. */
  const rt_st_tensor_t *oh = rt_st_find(io, "a/one_hot");
  const rt_st_tensor_t *ids = oh ? NULL : st_get(io, "a/input_ids");
  const rt_st_tensor_t *mask = oh ? NULL : st_get(io, "a/attention_mask");
  const rt_st_tensor_t *want = st_get(io, "a/out");
  int64_t sym[IR_MAX_SYMBOLS] = {0};
  sym[b->sb] = oh ? oh->shape[0] : ids->shape[0];
  if (!oh) sym[b->out.len_sym] = ids->shape[1];
  rt_interp_t *it;
  OK(rt_interp_create(b->g, sym, &it));
  char in[64];
  if (oh) {
    snprintf(in, sizeof in, "%s_one_hot", omic);
    OK(rt_interp_set_input(it, in, oh->data, oh->nbytes));
  } else {
    snprintf(in, sizeof in, "%s_input_ids", omic);
    OK(rt_interp_set_input(it, in, ids->data, ids->nbytes));
    snprintf(in, sizeof in, "%s_attention_mask", omic);
    OK(rt_interp_set_input(it, in, mask->data, mask->nbytes));
  }
  for (uint32_t i = 0; i < b->m->nslots; i++) {
    const char *sl = b->m->slots[i].name;
    if (!graph_reads(b->g, sl)) continue;
    ad_status_t st = rt_interp_bind_state(it, sl, s->data[i], s->bytes[i]);
    ck_assert_msg(!st, "%s: %s", sl, ad_status_message(st));
  }
  OK(rt_interp_run(it, NULL));
  const ir_tensor_t *got = rt_interp_output(it, "last_hidden_state");
  ck_assert(got != NULL);
  ir_tensor_t w;
  ck_assert(rt_st_as_ir_tensor(want, &w));
  double e = label ? golden_compare(label, got, &w, 1e-5) : golden_rel_error(got, &w);
  rt_interp_free(it);
  return e;
}

/* Loads tests/golden/hf/<name> into a state seeded with other values, runs case "a" of
 * <name>_io.safetensors in eval mode and compares with the peer's output. */
static void check_folder(const char *name, const char *cls, const char *init, const char *omic) {
  built_t b;
  build(&b, cls, init, omic);
  rt_state_t *s;
  OK(rt_state_create(b.m, &s));
  OK(rt_state_init(s, 99));

  char rel[256];
  snprintf(rel, sizeof rel, "tests/golden/hf/%s_io.safetensors", name);
  char *iopath = golden_path(rel);
  rt_st_file_t *io;
  OK(rt_st_open(iopath, &io));
  free(iopath);
  /* The comparison tells weights apart: aidomm's own initialization is far off the peer. */
  double e0 = run_eval(&b, s, io, omic, NULL);
  ck_assert_msg(e0 > 1e-2, "%s: initialized weights already match (error %g)", name, e0);

  snprintf(rel, sizeof rel, "tests/golden/hf/%s", name);
  char *folder = golden_path(rel);
  rt_weights_report_t rep;
  OK(rt_weights_load_hf_folder(s, "backbone", folder, NULL, &rep));
  free(folder);
  for (size_t i = 0; i < rep.nmissing; i++)
    ck_assert_msg(0, "%s: slot %s missing from the folder", name, rep.missing[i]);
  for (size_t i = 0; i < rep.nunexpected; i++)
    ck_assert_msg(0, "%s: unexpected key %s", name, rep.unexpected[i]);
  ck_assert_uint_eq(rep.naliases, 0);
  size_t nloaded = rep.nloaded;
  rt_weights_report_free(&rep);

  /* Every tensor of the folder became a slot: count them in the file itself. */
  snprintf(rel, sizeof rel, "tests/golden/hf/%s/model.safetensors", name);
  char *mpath = golden_path(rel);
  rt_st_file_t *mf;
  OK(rt_st_open(mpath, &mf));
  free(mpath);
  ck_assert_uint_eq(nloaded, rt_st_count(mf));
  rt_st_close(mf);

  char label[128];
  snprintf(label, sizeof label, "%s last_hidden_state", name);
  double e = run_eval(&b, s, io, omic, label);
  ck_assert_msg(e <= 1e-5, "%s: relative error %g > 1e-5", label, e);
  printf("%s: %zu tensors loaded, last_hidden_state rel error %.3g (before loading %.3g)\n",
         name, nloaded, e, e0);

  rt_st_close(io);
  rt_state_free(s);
  built_free(&b);
}

START_TEST(test_esm2_tiny) {
  check_folder("esm2_tiny", "esm2_8m",
               "max_length: 12, config_overwrites: {num_hidden_layers: 2, hidden_size: 16, "
               "num_attention_heads: 2, intermediate_size: 32}",
               "protein_seq");
}
END_TEST

START_TEST(test_rnabert_tiny) {
  check_folder("rnabert_tiny", "aido_rna_650m",
               "max_length: 16, config_overwrites: {vocab_size: 16, hidden_size: 32, "
               "num_attention_heads: 4, num_hidden_layers: 2, intermediate_size: 48}",
               "rna_seq");
}
END_TEST

/* The folder holds each tensor once: save_pretrained drops the _trunk.* aliases of the tied
 * modules, and the _heads (never read by the backbone) load into their UNUSED slots. */
START_TEST(test_enformer_tiny) {
  check_folder("enformer_tiny", "enformer",
               "max_length: 256, config_overwrites: {dim: 48, depth: 2, heads: 2, "
               "attn_dim_key: 8, num_downsamples: 3, dim_divisible_by: 8, target_length: 16, "
               "dropout_rate: 0, attn_dropout: 0, pos_dropout: 0, "
               "output_heads: {human: 8, mouse: 4}}",
               "dna_seq");
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("hf_folders");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_esm2_tiny);
  tcase_add_test(tc, test_rnabert_tiny);
  tcase_add_test(tc, test_enformer_tiny);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
