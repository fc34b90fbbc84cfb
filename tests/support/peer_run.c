#include "tests/support/peer_run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/weights.h"
#include "tests/support/golden.h"
#include "tests/support/test_util.h"

const rt_st_tensor_t *pr_need(const rt_st_file_t *f, const char *name) {
  const rt_st_tensor_t *t = rt_st_find(f, name);
  ck_assert_msg(t != NULL, "%s lacks '%s'", rt_st_path(f), name);
  return t;
}

double pr_f64_at(const rt_st_file_t *f, const char *name, int64_t i) {
  const rt_st_tensor_t *t = pr_need(f, name);
  ck_assert_int_eq(t->dtype, RT_ST_F64);
  ck_assert_int_lt(i, rt_st_numel(t));
  return ((const double *)t->data)[i];
}

int64_t pr_meta_int(const rt_st_file_t *f, const char *key) {
  const char *v = rt_st_metadata(f, key);
  ck_assert_msg(v != NULL, "%s: no metadata '%s'", rt_st_path(f), key);
  return strtoll(v, NULL, 10);
}

fe_config_t *pr_load_job(const char *rel_config, fe_job_t *job) {
  fe_config_t *c = NULL;
  tu_ok(fe_config_load(tu_source_path(rel_config), 0, NULL, &c));
  c->warn_stream = NULL;
  tu_ok(fe_config_job(c, job));
  return c;
}

void pr_load_start(rt_state_t *s, const fe_job_t *job) {
  char models[4096];
  snprintf(models, sizeof models, "%s", tu_source_path("tests/golden/predict/models"));
  setenv("AIDOMM_MODELS", models, 1);
  tu_ok(rt_state_init(s, (uint64_t)job->seed));
  for (uint32_t i = 0; i < job->nbackbones; i++) {
    const fe_job_backbone_t *b = &job->backbones[i];
    ck_assert_msg(b->pretrained, "%s is not pretrained", b->prefix);
    char *folder = NULL;
    tu_ok(rt_weights_find_hf_folder(b->hub_id, &folder));
    rt_weights_report_t rep;
    memset(&rep, 0, sizeof rep);
    tu_ok(rt_weights_load_hf_folder(s, b->prefix, folder, NULL, &rep));
    ck_assert_uint_gt(rep.nloaded, 0);
    rt_weights_report_free(&rep);
    free(folder);
  }
  rt_weights_report_t rep;
  memset(&rep, 0, sizeof rep);
  tu_ok(rt_weights_load_checkpoint(s, tu_source_path("tests/golden/predict/rest.safetensors"),
                                   false, &rep));
  ck_assert_uint_eq(rep.nunexpected, 0);
  rt_weights_report_free(&rep);
}

bool pr_model_slot(const ir_state_slot_t *sl) {
  return (sl->flags & (IR_SLOT_PARAM | IR_SLOT_BUFFER)) && !(sl->flags & IR_SLOT_OPTIM);
}

ir_tensor_t pr_slot_tensor(const rt_state_t *s, int64_t i) {
  const ir_state_slot_t *sl = &s->module->slots[i];
  int64_t zeros[IR_MAX_SYMBOLS] = {0};
  ir_shape_t sh = ir_type_shape(&sl->type, zeros);
  ir_tensor_t t = {.data = s->data[i], .dtype = sl->type.dtype, .rank = sh.rank};
  memcpy(t.dims, sh.dims, sizeof t.dims);
  return t;
}

void pr_golden_batch(const ir_graph_t *g, const rt_st_file_t *f, int k, rt_batch_t *b) {
  memset(b, 0, sizeof *b);
  ir_module_bounds(g->module, b->symvals);
  b->feeds = calloc(g->nnodes, sizeof *b->feeds);
  const rt_st_tensor_t *ts[64];
  const ir_node_t *ns[64];
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (n->op != IR_OP_INPUT) continue;
    char key[256];
    snprintf(key, sizeof key, "batch/%d/%s", k, n->name);
    const rt_st_tensor_t *t = pr_need(f, key);
    const ir_type_t *ty = ir_value_type(g, n->output0);
    ir_dtype_t dt;
    ck_assert_msg(rt_st_dtype_to_ir(t->dtype, &dt) && dt == ty->dtype, "%s: dtype", key);
    ck_assert_int_eq(t->rank, ty->rank);
    for (int d = 0; d < ty->rank; d++) {
      int s = ir_dim_symbol(ty->dims[d]);
      if (s >= 0) b->symvals[s] = t->shape[d];
    }
    ck_assert_uint_lt(b->nfeeds, 64);
    ts[b->nfeeds] = t;
    ns[b->nfeeds] = n;
    b->feeds[b->nfeeds++] = (rt_feed_t){n->name, t->data, t->nbytes};
  }
  ck_assert_uint_gt(b->nfeeds, 0);
  for (uint32_t i = 0; i < b->nfeeds; i++) {
    ir_shape_t sh = ir_type_shape(ir_value_type(g, ns[i]->output0), b->symvals);
    for (int d = 0; d < sh.rank; d++)
      ck_assert_msg(sh.dims[d] == ts[i]->shape[d], "batch %d: %s dim %d is %lld, the program %lld",
                    k, ns[i]->name, d, (long long)ts[i]->shape[d], (long long)sh.dims[d]);
  }
}

uint32_t pr_check_entry_set(const ir_module_t *m, const rt_st_file_t *f, const char *prefix) {
  uint32_t nmodel = 0, nfix = 0;
  size_t pl = strlen(prefix);
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *sl = &m->slots[i];
    if (!pr_model_slot(sl)) continue;
    nmodel++;
    char key[512];
    snprintf(key, sizeof key, "%s%s", prefix, sl->name);
    ck_assert_msg(rt_st_find(f, key) != NULL, "aidomm slot '%s' is not a peer entry", sl->name);
  }
  for (size_t i = 0; i < rt_st_count(f); i++) nfix += strncmp(rt_st_at(f, i)->name, prefix, pl) == 0;
  ck_assert_uint_eq(nmodel, nfix);
  ck_assert_int_eq(nfix, pr_meta_int(f, "n_final"));
  return nfix;
}

void pr_compare_entries(const rt_state_t *s, const rt_st_file_t *f, const char *prefix,
                        const char *what, double tol, pr_worst_t *w) {
  memset(w, 0, sizeof *w);
  size_t pl = strlen(prefix);
  for (size_t i = 0; i < rt_st_count(f); i++) {
    const rt_st_tensor_t *t = rt_st_at(f, i);
    if (strncmp(t->name, prefix, pl) != 0) continue;
    const char *key = t->name + pl;
    int64_t si = rt_state_find(s, key);
    ck_assert_msg(si >= 0, "%s: no aidomm slot '%s'", what, key);
    ir_tensor_t got = pr_slot_tensor(s, si), want;
    ck_assert(rt_st_as_ir_tensor(t, &want));
    double e = golden_rel_error(&got, &want);
    w->n++;
    if (!(e <= tol)) {
      w->bad++;
      printf("  %s %s: rel error %.3g\n", what, key, e);
    }
    if (!(e <= w->err)) {
      w->err = e;
      snprintf(w->key, sizeof w->key, "%s", key);
    }
  }
}
