/* Model weights in and out of a state (runtime/exec.h): aidomm checkpoints and Hugging Face
 * folders.
 *
 * aidomm checkpoints are safetensors files keyed by slot name, which is the ModelGenerator /
 * Lightning state_dict key ("backbone1.encoder.encoder.layer.0.attention.self.query.weight").
 * Only PARAM and BUFFER slots are model keys; NOSAVE slots (save_peft_only) are left out when
 * saving. Loading mirrors torch's load_state_dict(strict): a key naming a model slot of another
 * shape is always an error; strict=true also rejects missing and unexpected keys; strict=false
 * ignores both (missing slots keep their values). Nothing is written into the state unless the
 * whole file checks out.
 *
 * Pickle checkpoints (.bin, .ckpt, .pt, .pth, or a file opening with the pickle or zip magic) are
 * refused: unpickling runs arbitrary code. tools/convert_checkpoint.py turns them into
 * safetensors with the golden venv. */
#ifndef AIDOMM_RUNTIME_WEIGHTS_H
#define AIDOMM_RUNTIME_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/exec.h"
#include "runtime/safetensors.h"

/* Every PARAM/BUFFER slot that is not NOSAVE, dtype as the slot, written atomically. */
ad_status_t rt_weights_save_checkpoint(const rt_state_t *state, const char *path,
                                       const rt_st_kv_t *meta, size_t nmeta);

/* Training checkpoints (fit) also hold the optimizer state: every OPTIM slot (AdamW's exp_avg,
 * exp_avg_sq) under the key RT_WEIGHTS_OPTIM_PREFIX + slot name. Loaders skip those keys unless
 * asked for them, so a training checkpoint is also a plain model checkpoint. */
#define RT_WEIGHTS_OPTIM_PREFIX "aidomm.optimizer."
ad_status_t rt_weights_save_training_checkpoint(const rt_state_t *state, const char *path,
                                                const rt_st_kv_t *meta, size_t nmeta);

/* Which model slots a load touched; filled by the loaders when non-NULL (free with
 * rt_weights_report_free). Names are owned by the report. */
typedef struct rt_weights_report {
  size_t nloaded;
  char **missing;    /* model slots the file lacks (kept their values) */
  size_t nmissing;
  char **unexpected; /* file keys that name no model slot (and alias no loaded tensor) */
  size_t nunexpected;
  size_t naliases;   /* file keys skipped as byte-identical copies of a loaded tensor */
} rt_weights_report_t;

void rt_weights_report_free(rt_weights_report_t *r);

/* OK, or an INVALID_ARGUMENT naming the converter when `path` is a pickle checkpoint (by
 * extension or by its first bytes). A missing file is OK here: the opener reports it. */
ad_status_t rt_weights_refuse_pickle(const char *path);

/* Loads an aidomm checkpoint. f32 <-> f64 convert; bf16/f16 widen. */
ad_status_t rt_weights_load_checkpoint(rt_state_t *state, const char *path, bool strict,
                                       rt_weights_report_t *report);
/* rt_weights_load_checkpoint, plus the optimizer state when `optimizer` is true: every OPTIM
 * slot must then be present (a training checkpoint of this plan), else an error. */
ad_status_t rt_weights_load_checkpoint_ex(rt_state_t *state, const char *path, bool strict,
                                          bool optimizer, rt_weights_report_t *report);

/* Optional renames of folder keys before matching: a key starting with `from` has it replaced
 * by `to` (first matching rule wins). */
typedef struct rt_weights_key_rule {
  const char *from, *to;
} rt_weights_key_rule_t;

typedef struct rt_weights_key_map {
  const rt_weights_key_rule_t *rules;
  size_t nrules;
} rt_weights_key_map_t;

/* Loads a Hugging Face-layout folder (config.json plus model.safetensors, or
 * model.safetensors.index.json and its shards) into the backbone under `prefix`
 * ("backbone1"). The folder's keys are the HF model's own names; the slot for key K is derived
 * from the slot names: "<prefix>.encoder.K", "<prefix>.encoder.base_model.model.K" when the
 * backbone uses PEFT, and ".../X.base_layer.W" for a LoRA-wrapped "X.W". A key that matches no
 * slot is retried without its first component (the "esm." / "bert." of a *ForMaskedLM save).
 * Keys with no slot are skipped when byte-identical to a loaded tensor (tied heads, Enformer's
 * _trunk aliases) and reported as unexpected otherwise. Every encoder slot except LoRA
 * adapters and UNUSED slots must be found: a pretrained encoder with random holes is an error.
 * key_map may be NULL. */
ad_status_t rt_weights_load_hf_folder(rt_state_t *state, const char *prefix, const char *folder,
                                      const rt_weights_key_map_t *key_map,
                                      rt_weights_report_t *report);

/* Finds the folder of a hub id ("genbio-ai/AIDO.RNA-650M"): $AIDOMM_MODELS/<id>, then
 * $HOME/genbio_models/<id>; a folder counts when it has config.json and model.safetensors or
 * model.safetensors.index.json. *out is malloc'd. The error names every folder searched and the
 * files expected. */
ad_status_t rt_weights_find_hf_folder(const char *hub_id, char **out);

#endif
