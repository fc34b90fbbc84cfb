/* Lightning's ModelCheckpoint as a pure decision module: the training driver reports events
 * (a training batch ended, validation ended, a training epoch ended, training ended) and gets
 * back the file actions Lightning 2.6 would perform, in order: SAVE path, REMOVE path, LINK
 * path -> target, and WARN message (shown once per distinct message). No I/O: the module keeps
 * its own view of which checkpoint files exist (what it saved or linked and did not remove,
 * plus what the caller declares with rt_ckpt_policy_note_existing).
 *
 * Golden: tools/golden/checkpoint_schedule.py runs a real `lightning.Trainer.fit` for each case
 * of tests/golden/checkpoint/schedule.json; tests/test_ckpt_policy.c replays every event and
 * requires the same action sequence (Lightning's ".ckpt" names map by replacing the
 * extension, a setting that defaults to ".safetensors").
 *
 * Semantics: lightning/pytorch/callbacks/model_checkpoint.py 2.6.6 (the golden venv's pin),
 * automatic optimisation. ModelGenerator asks only for lightning >= 2.4, and the schedule
 * changed since: on_train_end's save-last is new in 2.5.3, the deferrals (rules 2 and 3 of
 * on_train_batch_end) in 2.5.5, and before 2.6.0 the validation-end / epoch-end save-last did
 * not require a save at the same step (it saved last.ckpt whenever the hook ran unskipped).
 *
 * Triggers. every_n_train_steps and every_n_epochs both unset (-1): every_n_epochs = 1,
 *   every_n_train_steps = 0; otherwise an unset one is 0. Both >= 1 is an error, as are
 *   save_top_k < -1, and no monitor with save_top_k not in {-1, 0, 1}.
 *   save_on_train_epoch_end unset resolves (rt_ckpt_resolve_save_on_train_epoch_end) to: false
 *   when check_val_every_n_epoch != 1 (including null); true when there is no validation
 *   (0 validation batches); else val_check_interval == 1.0 -- an *int* 1 (validate every
 *   batch) also compares equal, so it resolves to true. NB fe_job_t reports a null
 *   save_on_train_epoch_end as false; the policy needs the tri-state.
 *
 * Callback metrics. The policy keeps trainer.callback_metrics: an insertion-ordered map that
 *   every logged value updates in place (keys keep their first position) and that is never
 *   pruned during fit, so a validation metric stays visible (stale) to later training batches
 *   until the next validation replaces it. Lightning clears it at the start of fit and after the
 *   sanity check (rt_ckpt_policy_reset_metrics); sanity validation must not be reported. The
 *   monitor candidates of an event are the callback metrics plus "epoch" and "step" (the
 *   event's, unless a metric of that name was logged: then its value truncated to an integer).
 *   Metrics logged outside the events (e.g. on_epoch training metrics, visible at the epoch's
 *   end) go through rt_ckpt_policy_log before the event that should see them.
 *   Pass values exactly as the peer logs them (self.log stores float32 tensors, so a float
 *   metric is its float32 value widened to double); comparisons and file names use them as is.
 *
 * on_train_batch_end(step = trainer.global_step after the batch, epoch, is_last_batch) -- call
 *   once per training batch, also for batches that only accumulate gradients (global_step
 *   repeats; a step-0 batch counts: 0 % n == 0):
 *   1. nothing unless every_n_train_steps >= 1 and step % every_n_train_steps == 0;
 *   2. monitor set but absent from the candidates: defer (flag) and return -- nothing saved,
 *      the save happens at the next validation end that is not skipped (below);
 *   3. monitor set, not saving on train epoch end, the epoch's last batch, and validation will
 *      run after it (there are validation batches and check_val_every_n_epoch is null or
 *      divides epoch+1): defer and return. With check_val_every_n_epoch null Lightning assumes
 *      validation follows although it validates by total batch count, so the save moves to
 *      whichever validation comes next, possibly in the next epoch;
 *   4. nothing if a checkpoint was already saved at this global step;
 *   5. top-k save, then save-last.
 *   A step save uses whatever the candidates hold: after a mid-epoch validation the metrics of
 *   that validation (stale for later steps), e.g. the seed schedule saves at step 500 with the
 *   metrics of step 499.
 * on_validation_end(step, epoch, metrics logged by the validation) -- call after every
 *   validation run of fit that had at least one batch, never for the sanity check (it also
 *   records that validation has run, which turns a missing monitor from a warning into an
 *   error). Nothing if saving on train epoch end or already saved at this step (a pending
 *   deferral then stays pending); else a pending deferral does top-k + last and clears the
 *   flag; else top-k when every_n_epochs >= 1 divides epoch+1, then save-last when a checkpoint
 *   was saved at this step (or save_last is "link" and something was ever saved).
 * on_train_epoch_end(step, epoch) -- the same epoch/last rule when saving on train epoch end
 *   and nothing was saved at this step yet.
 * on_train_end(step, epoch) -- save-last when save_last is set and nothing was ever saved.
 *
 * Top-k save (save_top_k 0: nothing). A monitor absent from the candidates is an error
 *   (Lightning's MisconfigurationException, here AD_STATUS_INVALID_ARGUMENT with Lightning's
 *   message) once a validation has run, else a WARN and no save. With a monitor: current =
 *   candidates[monitor]; it is saved when save_top_k == -1, fewer than save_top_k are kept, or
 *   it is strictly better (< for min, > for max) than the kth best -- a NaN current is never
 *   better (it is saved only while fewer than k are kept, with score +inf for min / -inf for
 *   max). When k are kept the kth best is evicted first (its name may be reused by the new
 *   file). best_k_models is insertion-ordered; kth best = first worst, best = first best in that
 *   order (Python max/min). REMOVE of the evicted file comes after the SAVE. Without a monitor:
 *   every trigger saves; the version counter skips taken names except the previous
 *   best_model_path, which is overwritten when the template repeats it (so save_top_k -1 with a
 *   constant name keeps one file); with save_top_k 1 the previous file is removed.
 * Save-last: name "last" (+ "-vN"), overwritten in place; with save_last "link" (and
 *   save_top_k != 0 and a checkpoint saved before) it is a LINK to the last saved file instead
 *   of a SAVE. The previous last file is removed when its name changed.
 * Names (format_checkpoint_name). Template default "{epoch}-{step}". The groups are
 *   Python's re.findall(r"(\{.*?)[:\}]") sorted longest first; each "{name" is replaced (every
 *   occurrence, str.replace) by "name={name" when auto_insert_metric_name, then by "{0[name]",
 *   and the result goes through str.format: "{name}" of an int (epoch, step, a missing key,
 *   which reads 0) prints like Python's int.__format__, of a float like float.__format__ (no
 *   spec: repr, shortest round trip); specs [[fill]align][sign][z][#][0][width][.prec][type]
 *   with types d f F e E g G % (grouping is unimplemented). "-v<N>" goes before the extension;
 *   the name is dirpath/<name><extension> (os.path.join). With enable_version_counter a name
 *   that exists gets -v1, -v2, ... (a top-k name may reuse the evicted file's name, last may
 *   reuse last_model_path).
 * Removal: only files under dirpath (prefix test on the strings; give a normalised dirpath, as
 *   Lightning realpaths it) and never resume_path (trainer.ckpt_path, compared as strings).
 *
 * Not modelled: train_time_interval, save_on_exception, manual optimisation, verbose messages,
 * the "directory exists and is not empty" setup warning, multi-process reductions.
 *
 * State (rt_ckpt_policy_state_json / _restore): JSON with Lightning's state_dict fields
 * (monitor, best_model_score, best_model_path, current_score, dirpath, best_k_models as
 * [[path, score], ...] in order, kth_best_model_path, kth_value, last_model_path; non-finite
 * numbers as "inf"/"-inf"/"nan"; a null score is null) plus aidomm's: state_key (Lightning's
 * callback state key), last_global_step_saved, last_checkpoint_saved, defer, val_has_run,
 * callback metrics, existing files, warned messages. Serialise after an event has returned and
 * store that in every file the event saves. A full restore continues exactly as if never
 * interrupted. A Lightning-style restore mimics `trainer.fit(ckpt_path=...)`: a different
 * state_key restores nothing; a different dirpath restores only best_model_path; otherwise the
 * state_dict fields -- the rest starts fresh (so, as in Lightning, a resumed run has no callback
 * metrics and defers its first step save to the next validation). */
#ifndef AIDOMM_RUNTIME_CKPT_POLICY_H
#define AIDOMM_RUNTIME_CKPT_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/status.h"

typedef enum rt_ckpt_save_last {
  RT_CKPT_SAVE_LAST_OFF = 0,
  RT_CKPT_SAVE_LAST_ON,
  RT_CKPT_SAVE_LAST_LINK, /* save_last: "link" */
} rt_ckpt_save_last_t;

typedef struct rt_ckpt_settings {
  /* ModelCheckpoint arguments */
  const char *dirpath;  /* resolved directory; "" or NULL: bare names */
  const char *filename; /* template; NULL or "": "{epoch}-{step}" */
  const char *monitor;  /* NULL or "": None */
  bool mode_max;
  int64_t save_top_k; /* -1 all, 0 none, k */
  rt_ckpt_save_last_t save_last;
  int64_t every_n_train_steps;     /* -1: null */
  int64_t every_n_epochs;          /* -1: null */
  int save_on_train_epoch_end;     /* -1: null (resolved from the trainer facts), 0, 1 */
  bool auto_insert_metric_name;    /* true */
  bool enable_version_counter;     /* true */
  const char *extension;           /* NULL: ".safetensors" (Lightning: ".ckpt") */
  const char *resume_path;         /* trainer.ckpt_path, never removed; NULL: none */
  /* trainer facts */
  int64_t check_val_every_n_epoch; /* -1: null */
  bool val_check_interval_is_one;  /* val_check_interval == 1.0 (float 1.0 or int 1) */
  bool has_validation;             /* the fit has validation batches */
} rt_ckpt_settings_t;

/* Lightning's defaults (and val_check_interval 1.0, check_val_every_n_epoch 1, validation). */
rt_ckpt_settings_t rt_ckpt_settings_default(void);

/* Lightning's `_should_save_on_train_epoch_end` for a setting of -1/0/1. */
bool rt_ckpt_resolve_save_on_train_epoch_end(int setting, int64_t check_val_every_n_epoch,
                                             bool val_check_interval_is_one, bool has_validation);

typedef struct rt_ckpt_metric {
  const char *name;
  double value;
} rt_ckpt_metric_t;

typedef enum rt_ckpt_action_kind {
  RT_CKPT_SAVE,   /* write a checkpoint to path (overwrite) */
  RT_CKPT_REMOVE, /* delete path */
  RT_CKPT_LINK,   /* replace whatever is at path by a symlink to target (relative to path's dir) */
  RT_CKPT_WARN,   /* show message */
} rt_ckpt_action_kind_t;

typedef struct rt_ckpt_action {
  rt_ckpt_action_kind_t kind;
  char *path;    /* SAVE, REMOVE, LINK */
  char *target;  /* LINK */
  char *message; /* WARN */
} rt_ckpt_action_t;

typedef struct rt_ckpt_actions {
  rt_ckpt_action_t *items;
  size_t n, cap;
} rt_ckpt_actions_t;

/* Empties the list (keeps its storage). */
void rt_ckpt_actions_clear(rt_ckpt_actions_t *a);
void rt_ckpt_actions_free(rt_ckpt_actions_t *a);

typedef struct rt_ckpt_policy rt_ckpt_policy_t;

/* Validates the settings (Lightning's __init__ checks) and copies them. */
ad_status_t rt_ckpt_policy_create(const rt_ckpt_settings_t *s, rt_ckpt_policy_t **out);
void rt_ckpt_policy_free(rt_ckpt_policy_t *p);

/* A file already present (e.g. in dirpath before fit): names that exist get "-vN". */
void rt_ckpt_policy_note_existing(rt_ckpt_policy_t *p, const char *path);
/* Updates the callback metrics (in place, insertion-ordered). */
void rt_ckpt_policy_log(rt_ckpt_policy_t *p, const rt_ckpt_metric_t *m, size_t n);
/* Clears the callback metrics (fit start, after the sanity check). */
void rt_ckpt_policy_reset_metrics(rt_ckpt_policy_t *p);

/* Events. `logged` (may be NULL) is what the step logged, applied before deciding; actions are
 * appended to `out`. An error leaves the bookkeeping as Lightning's exception would. */
ad_status_t rt_ckpt_policy_on_train_batch_end(rt_ckpt_policy_t *p, int64_t step, int64_t epoch,
                                              bool is_last_batch, const rt_ckpt_metric_t *logged,
                                              size_t nlogged, rt_ckpt_actions_t *out);
ad_status_t rt_ckpt_policy_on_validation_end(rt_ckpt_policy_t *p, int64_t step, int64_t epoch,
                                             const rt_ckpt_metric_t *logged, size_t nlogged,
                                             rt_ckpt_actions_t *out);
ad_status_t rt_ckpt_policy_on_train_epoch_end(rt_ckpt_policy_t *p, int64_t step, int64_t epoch,
                                              rt_ckpt_actions_t *out);
ad_status_t rt_ckpt_policy_on_train_end(rt_ckpt_policy_t *p, int64_t step, int64_t epoch,
                                        rt_ckpt_actions_t *out);

/* The checkpoint name for the current callback metrics at (step, epoch): template (NULL: the
 * setting) with version ver (0: none). Malloc'd into *out. */
ad_status_t rt_ckpt_policy_format_name(const rt_ckpt_policy_t *p, const char *filename,
                                       int64_t step, int64_t epoch, int ver, char **out);

/* Bookkeeping, as ModelCheckpoint's attributes ("" when unset). */
const char *rt_ckpt_policy_best_model_path(const rt_ckpt_policy_t *p);
bool rt_ckpt_policy_best_model_score(const rt_ckpt_policy_t *p, double *score); /* false: None */
const char *rt_ckpt_policy_kth_best_model_path(const rt_ckpt_policy_t *p);
double rt_ckpt_policy_kth_value(const rt_ckpt_policy_t *p);
const char *rt_ckpt_policy_last_model_path(const rt_ckpt_policy_t *p);
size_t rt_ckpt_policy_best_k_count(const rt_ckpt_policy_t *p);
/* Entry i of best_k_models in dict order. */
const char *rt_ckpt_policy_best_k(const rt_ckpt_policy_t *p, size_t i, double *score);

/* Serialises the bookkeeping (malloc'd JSON text). */
ad_status_t rt_ckpt_policy_state_json(const rt_ckpt_policy_t *p, char **out);

typedef enum rt_ckpt_restore {
  RT_CKPT_RESTORED_ALL,       /* full restore, or Lightning-style with matching dirpath */
  RT_CKPT_RESTORED_BEST_PATH, /* Lightning-style, dirpath changed: only best_model_path */
  RT_CKPT_RESTORED_NOTHING,   /* Lightning-style, the callback's state key differs */
} rt_ckpt_restore_t;

/* Restores state into a policy created with the run's settings. lightning_only: restore as
 * Lightning's load_state_dict does (see above); else everything. */
ad_status_t rt_ckpt_policy_restore(rt_ckpt_policy_t *p, const char *json, bool lightning_only,
                                   rt_ckpt_restore_t *how);

#endif
