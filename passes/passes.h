/* Graph-to-graph passes and the pass manager. Passes know nothing of devices or YAML. */
#ifndef AIDOMM_PASSES_PASSES_H
#define AIDOMM_PASSES_PASSES_H

#include "ir/ir.h"

/* ---- individual passes (each file starts with its one-line contract) ---- */
ad_status_t pass_dce(ir_graph_t **g);       /* replaces *g with a graph without dead nodes */
ad_status_t pass_cse(ir_graph_t **g);       /* never merges params, state effects, dropout */
ad_status_t pass_constfold(ir_graph_t **g); /* folds CONST-only subgraphs, never random/state */

/* Reverse-mode autodiff: appends to g the nodes computing d(loss)/d(wrt[i]) for a scalar
 * loss value; out_grads[i] = value id or IR_NONE when wrt[i] does not reach the loss. */
ad_status_t pass_autodiff(ir_graph_t *g, uint32_t loss, const uint32_t *wrt, uint32_t nwrt,
                          uint32_t *out_grads);

/* LoRA (PEFT 0.13.2 semantics; passes/lora.c): every LINEAR of g whose weight is the slot
 * "<prefix>.encoder.base_model.model.<module>.weight", with <module> equal to a target or ending
 * in ".<target>", becomes
 *   base_layer(x) + (alpha / r) * lora_B(lora_A(dropout_p(x)))
 * with its weight/bias slots renamed "<module>.base_layer.weight/bias" and new trainable slots
 * "<module>.lora_A.default.weight" [r, in] (kaiming-uniform a = sqrt(5)) and
 * "<module>.lora_B.default.weight" [out, r] (zeros); every other parameter under
 * "<prefix>.encoder." loses IR_SLOT_TRAINABLE (PEFT freezes the base). g is rewritten in place
 * (same pointer). Values produced before the first rewritten layer keep their ids; the caller's
 * other held ids, values[0..nvalues), are updated. No match at all is an error, as in PEFT. */
typedef struct pass_lora_options {
  const char *prefix;          /* "backbone1" */
  const char *const *targets;  /* module names ("query", "value") */
  uint32_t ntargets;
  int64_t r;
  double alpha;
  double dropout;              /* lora_dropout: a DROPOUT node on the LoRA input when > 0 */
} pass_lora_options_t;
ad_status_t pass_lora(ir_module_t *m, ir_graph_t *g, const pass_lora_options_t *o,
                      uint32_t *values, uint32_t nvalues, uint32_t *nreplaced);

/* Freezing (passes/freeze.c): clears IR_SLOT_TRAINABLE on the parameter slots "<prefix>" and
 * "<prefix>.*"; *nfrozen (may be NULL) = how many were trainable. No slot under prefix is an
 * error. Order: builder -> lora -> freeze -> autodiff. */
ad_status_t pass_freeze(ir_module_t *m, const char *prefix, uint32_t *nfrozen);

/* Job lowering: from the module's "forward" program builds
 *   "train_step": forward + backward + AdamW into state (params, moments, step counter),
 *                 outputs "loss", and for tests/grad checks "grad:<slot>" outputs when asked;
 *   "eval":       forward with dropout removed, outputs "pred" and "loss". */
typedef struct pass_train_options {
  double beta1, beta2, eps, weight_decay;
  int emit_grad_outputs; /* add an OUTPUT "grad:<slot name>" per trainable parameter */
  /* Also build the two halves of train_step for gradient accumulation (Lightning's
   * accumulate_grad_batches):
   *   "grad_step":  forward + backward of loss * loss_scale (runtime scalar, 1/k), OUTPUTs
   *                 "loss" and "grad:<slot>" per updated parameter; BatchNorm state writes kept;
   *   "apply_step": INPUTs "grad:<slot>" (the summed gradients), the global norm, clipping and
   *                 AdamW into state, OUTPUT "grad_norm". */
  int emit_accumulation;
} pass_train_options_t;
ad_status_t pass_lower_training(ir_module_t *m, const pass_train_options_t *opts);

/* ---- memory planning ---- */
typedef struct pass_memplan {
  uint32_t nvalues;
  int64_t *offset;    /* per value: byte offset in the arena, or -1 (state alias / no storage) */
  int64_t *size;      /* per value: bytes at the bound */
  int64_t peak_bytes; /* arena size */
  int64_t total_bytes;/* sum of sizes: the peak without reuse */
} pass_memplan_t;
/* reuse=0 gives every value its own range (the debug switch). Caller frees with
 * pass_memplan_free. */
ad_status_t pass_memplan(const ir_graph_t *g, int reuse, pass_memplan_t *out);
void pass_memplan_free(pass_memplan_t *p);
/* Human-readable plan (per value: offset, bytes, live node range, producer, type) for
 * `aidommc inspect`. */
void pass_memplan_print(const ir_graph_t *g, const pass_memplan_t *p, ad_buf_t *out);

/* ---- pass manager ---- */
typedef struct pass_pipeline_options {
  const char *print_before; /* pass name or "all" or NULL */
  const char *print_after;
  void *print_stream;       /* FILE*; stderr when NULL */
} pass_pipeline_options_t;
/* Runs the standard pipeline on every program: verify, dce, cse, constfold, verify. */
ad_status_t pass_run_pipeline(ir_module_t *m, const pass_pipeline_options_t *o);
/* Names of the registered passes, NULL-terminated (for --print-after validation). */
const char *const *pass_names(void);
/* Prints the module to o->print_stream with the header "; *** IR before|after <pass> ***" when
 * o asks for it (pass name or "all"); for passes the compiler runs itself ("lower-training"). */
void pass_print_if(const pass_pipeline_options_t *o, const char *pass, int after,
                   const ir_module_t *m);

#endif
