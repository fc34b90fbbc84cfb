/* Helpers for the suites that replay the peer's own training runs (tests/test_trajectory.c,
 * tests/test_trajectory_accum.c, fixtures of tools/golden/trajectory_peer.py): reading fixture
 * tensors and metadata, the peer's starting weights, and batches fed from a fixture. Every
 * helper fails the running Check test instead of returning an error. */
#ifndef AIDOMM_TESTS_PEER_RUN_H
#define AIDOMM_TESTS_PEER_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "frontend/frontend.h"
#include "runtime/exec.h"
#include "runtime/safetensors.h"
#include "runtime/train.h"

/* The tensor `name` of f (fails the test when absent). */
const rt_st_tensor_t *pr_need(const rt_st_file_t *f, const char *name);
/* Element i of the f64 tensor `name`. */
double pr_f64_at(const rt_st_file_t *f, const char *name, int64_t i);
/* The integer metadata `key`. */
int64_t pr_meta_int(const rt_st_file_t *f, const char *key);

/* The job of a config (source-relative path), warnings off; the config owns the job's strings. */
fe_config_t *pr_load_job(const char *rel_config, fe_job_t *job);

/* The peer's start: the seed's init, every backbone from its Hugging Face folder under
 * tests/golden/predict/models ($AIDOMM_MODELS is set to it), then
 * tests/golden/predict/rest.safetensors non-strictly (LoRA, fusion, head). */
void pr_load_start(rt_state_t *s, const fe_job_t *job);

/* A slot of the model's state_dict: a parameter or buffer, not optimizer state. */
bool pr_model_slot(const ir_state_slot_t *sl);

/* State slot i as a tensor view (slots have static shapes). */
ir_tensor_t pr_slot_tensor(const rt_state_t *s, int64_t i);

/* Every fixture entry `prefix`<key> (e.g. "final/") names an aidomm model slot and every model
 * slot has one; also equal to the fixture's "n_final" metadata. Returns the count. */
uint32_t pr_check_entry_set(const ir_module_t *m, const rt_st_file_t *f, const char *prefix);

/* The worst of the comparisons of pr_compare_entries. */
typedef struct pr_worst {
  double err;
  char key[256];
  uint32_t n, bad;
} pr_worst_t;

/* Every `prefix`<key> tensor of f against the state slot <key> (golden_rel_error), each above
 * tol printed as "  <what> <key>: rel error e". */
void pr_compare_entries(const rt_state_t *s, const rt_st_file_t *f, const char *prefix,
                        const char *what, double tol, pr_worst_t *w);

/* Feeds for every INPUT of g from the fixture's batch/<k>/<input name> tensors, the symbol values
 * (B and the per-modality lengths) from their shapes, as runtime/loader.c sets them; every shape
 * is checked against the program. The feeds borrow the file's data: free b->feeds only. */
void pr_golden_batch(const ir_graph_t *g, const rt_st_file_t *f, int k, rt_batch_t *b);

#endif
