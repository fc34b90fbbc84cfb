/* The top-level sections of a ModelGenerator/LightningCLI config: seed_everything, trainer
 * (with its callbacks, logger and strategy), model (the task class), optimizer and
 * lr_scheduler (under model.init_args, as ModelGenerator's tasks take them, or at the top
 * level), data and ckpt_path; the classes that only these sections use; the job settings for
 * the runtime (fe_job_t); and `--print_config`.
 *
 * What is acted on and what is warned about: every key of the seed configs is accepted and
 * type-checked. Keys the runtime does not act on yet are warned about by name when given
 * (fe_trainer_keys[].acted says which; flip it when the runtime honours the key). A W&B logger
 * maps to the CSV logger and DDPStrategy runs single-process, each with its own warning.
 *
 * aidomm extension: data.init_args.dna_window (IsoformExpression) centre-crops each DNA
 * sequence to that many bases before tokenisation, so reduced-size configs (configs/tiny_*)
 * can run Enformer-shaped models on the seed's 196,608-bp windows. The crop keeps the window
 * [(n - w) / 2, (n - w) / 2 + w) of a sequence of n >= w bases (the TSS sits at the centre of
 * the seed data's windows); shorter sequences are left whole. It must not exceed the DNA
 * backbone's max_length. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/fe_check.h"

/* ---- lightning callbacks, loggers, strategies -------------------------------------------- */
static const fe_arg_spec_t k_ckpt_args[] = {
    {"dirpath", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"filename", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"monitor", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"verbose", FE_ARG_BOOL, 0, "false"},
    {"save_last", FE_ARG_ANY, FE_ARG_NULLABLE, "null"}, /* bool or "link" */
    {"save_top_k", FE_ARG_INT, 0, "1"},
    {"save_weights_only", FE_ARG_BOOL, 0, "false"},
    {"mode", FE_ARG_STRING, 0, "min"},
    {"auto_insert_metric_name", FE_ARG_BOOL, 0, "true"},
    {"every_n_train_steps", FE_ARG_INT, FE_ARG_NULLABLE | FE_ARG_NONNEG, "null"},
    {"train_time_interval", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"every_n_epochs", FE_ARG_INT, FE_ARG_NULLABLE | FE_ARG_NONNEG, "null"},
    {"save_on_train_epoch_end", FE_ARG_BOOL, FE_ARG_NULLABLE, "null"},
    {"enable_version_counter", FE_ARG_BOOL, 0, "true"},
};
enum {
  CK_DIRPATH, CK_FILENAME, CK_MONITOR, CK_VERBOSE, CK_SAVE_LAST, CK_TOP_K, CK_WEIGHTS_ONLY,
  CK_MODE, CK_AUTO_INSERT, CK_EVERY_STEPS, CK_TIME_INTERVAL, CK_EVERY_EPOCHS, CK_ON_EPOCH_END,
  CK_VERSION_COUNTER
};

static ad_status_t ckpt_check(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                              const fe_node_t *section) {
  (void)cls;
  (void)section;
  const fe_arg_value_t *mode = &a[CK_MODE];
  if (mode->node && strcmp(mode->s, "min") != 0 && strcmp(mode->s, "max") != 0)
    return fe_error_at(mode->node, "%s.init_args.mode: expected 'min' or 'max', got '%s'", path,
                       mode->s);
  if (a[CK_TOP_K].node && a[CK_TOP_K].i < -1)
    return fe_error_at(a[CK_TOP_K].node,
                       "%s.init_args.save_top_k must be -1 (keep all), 0 or positive, got %lld",
                       path, (long long)a[CK_TOP_K].i);
  const fe_node_t *sl = a[CK_SAVE_LAST].list;
  bool b;
  if (sl && !fe_scalar_is_null(sl) && !fe_scalar_bool(sl, &b) &&
      !(sl->kind == FE_NODE_SCALAR && strcmp(sl->scalar, "link") == 0)) {
    char buf[96];
    return fe_error_at(sl, "%s.init_args.save_last: expected true, false, 'link' or null, got %s",
                       path, fe_describe(sl, buf, sizeof buf));
  }
  return AD_OK;
}

static const char *const k_ckpt_aliases[] = {
    "pytorch_lightning.callbacks.ModelCheckpoint",
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint", NULL};
const fe_class_t fe_class_model_checkpoint = {
    .class_path = "lightning.pytorch.callbacks.ModelCheckpoint",
    .section = "trainer",
    .args = k_ckpt_args,
    .nargs = sizeof k_ckpt_args / sizeof k_ckpt_args[0],
    .check = ckpt_check,
    .kind = FE_CLASS_OTHER,
    .aliases = k_ckpt_aliases,
};

static const fe_arg_spec_t k_lrmon_args[] = {
    {"logging_interval", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"log_momentum", FE_ARG_BOOL, 0, "false"},
    {"log_weight_decay", FE_ARG_BOOL, 0, "false"},
};
static const char *const k_lrmon_aliases[] = {"pytorch_lightning.callbacks.LearningRateMonitor",
                                              NULL};
const fe_class_t fe_class_lr_monitor = {
    .class_path = "lightning.pytorch.callbacks.LearningRateMonitor",
    .section = "trainer",
    .args = k_lrmon_args,
    .nargs = sizeof k_lrmon_args / sizeof k_lrmon_args[0],
    .kind = FE_CLASS_OTHER,
    .aliases = k_lrmon_aliases,
};

static const fe_arg_spec_t k_wandb_args[] = {
    {"name", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"save_dir", FE_ARG_STRING, 0, "."},
    {"version", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"offline", FE_ARG_BOOL, 0, "false"},
    {"dir", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"id", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"anonymous", FE_ARG_BOOL, FE_ARG_NULLABLE, "null"},
    {"project", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"log_model", FE_ARG_ANY, 0, "false"},
    {"experiment", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"prefix", FE_ARG_STRING, 0, ""},
    {"checkpoint_name", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    /* wandb.init keyword arguments the users' configs carry */
    {"entity", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"group", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"tags", FE_ARG_LIST, FE_ARG_NULLABLE, "null"},
    {"job_type", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"notes", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"mode", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"resume", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"config", FE_ARG_MAP, FE_ARG_NULLABLE, "null"},
};
enum { WB_NAME, WB_SAVE_DIR };
static const char *const k_wandb_aliases[] = {"pytorch_lightning.loggers.WandbLogger",
                                              "lightning.pytorch.loggers.wandb.WandbLogger", NULL};
const fe_class_t fe_class_wandb_logger = {
    .class_path = "lightning.pytorch.loggers.WandbLogger",
    .section = "trainer",
    .args = k_wandb_args,
    .nargs = sizeof k_wandb_args / sizeof k_wandb_args[0],
    .kind = FE_CLASS_OTHER,
    .aliases = k_wandb_aliases,
};

static const fe_arg_spec_t k_csv_args[] = {
    {"save_dir", FE_ARG_STRING, FE_ARG_REQUIRED, NULL},
    {"name", FE_ARG_STRING, FE_ARG_NULLABLE, "lightning_logs"},
    {"version", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"prefix", FE_ARG_STRING, 0, ""},
    {"flush_logs_every_n_steps", FE_ARG_INT, FE_ARG_POSITIVE, "100"},
};
enum { CSV_SAVE_DIR, CSV_NAME };
static const char *const k_csv_aliases[] = {"pytorch_lightning.loggers.CSVLogger",
                                            "lightning.pytorch.loggers.csv_logs.CSVLogger", NULL};
const fe_class_t fe_class_csv_logger = {
    .class_path = "lightning.pytorch.loggers.CSVLogger",
    .section = "trainer",
    .args = k_csv_args,
    .nargs = sizeof k_csv_args / sizeof k_csv_args[0],
    .kind = FE_CLASS_OTHER,
    .aliases = k_csv_aliases,
};

static const fe_arg_spec_t k_tb_args[] = {
    {"save_dir", FE_ARG_STRING, FE_ARG_REQUIRED, NULL},
    {"name", FE_ARG_STRING, FE_ARG_NULLABLE, "lightning_logs"},
    {"version", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"log_graph", FE_ARG_BOOL, 0, "false"},
    {"default_hp_metric", FE_ARG_BOOL, 0, "true"},
    {"prefix", FE_ARG_STRING, 0, ""},
    {"sub_dir", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
};
static const char *const k_tb_aliases[] = {"pytorch_lightning.loggers.TensorBoardLogger", NULL};
const fe_class_t fe_class_tensorboard_logger = {
    .class_path = "lightning.pytorch.loggers.TensorBoardLogger",
    .section = "trainer",
    .args = k_tb_args,
    .nargs = sizeof k_tb_args / sizeof k_tb_args[0],
    .kind = FE_CLASS_OTHER,
    .aliases = k_tb_aliases,
};

static const fe_arg_spec_t k_ddp_args[] = {
    {"find_unused_parameters", FE_ARG_BOOL, 0, "false"},
    {"static_graph", FE_ARG_BOOL, 0, "false"},
    {"gradient_as_bucket_view", FE_ARG_BOOL, 0, "false"},
    {"broadcast_buffers", FE_ARG_BOOL, 0, "true"},
    {"bucket_cap_mb", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"process_group_backend", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"timeout", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"start_method", FE_ARG_STRING, 0, "popen"},
    {"accelerator", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"parallel_devices", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"cluster_environment", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"checkpoint_io", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"precision_plugin", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"ddp_comm_state", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"ddp_comm_hook", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"ddp_comm_wrapper", FE_ARG_ANY, FE_ARG_NULLABLE, "null"},
    {"model_averaging_period", FE_ARG_INT, FE_ARG_NULLABLE | FE_ARG_POSITIVE, "null"},
};
static const char *const k_ddp_aliases[] = {"pytorch_lightning.strategies.DDPStrategy",
                                            "lightning.pytorch.strategies.ddp.DDPStrategy", NULL};
const fe_class_t fe_class_ddp_strategy = {
    .class_path = "lightning.pytorch.strategies.DDPStrategy",
    .section = "trainer",
    .args = k_ddp_args,
    .nargs = sizeof k_ddp_args / sizeof k_ddp_args[0],
    .kind = FE_CLASS_OTHER,
    .aliases = k_ddp_aliases,
};

/* ---- lr scheduler -------------------------------------------------------------------------- */
static const fe_arg_spec_t k_cosine_args[] = {
    {"warmup_ratio", FE_ARG_FLOAT, FE_ARG_NULLABLE | FE_ARG_PROB, "null"},
    {"num_warmup_steps", FE_ARG_INT, FE_ARG_NULLABLE | FE_ARG_NONNEG, "null"},
    {"last_epoch", FE_ARG_INT, 0, "-1"},
    /* The seed configs pass `verbose: deprecated`, which the peer's HEAD no longer takes
     * (modelgenerator.md section 10 #2): accepted and warned about. */
    {"verbose", FE_ARG_ANY, FE_ARG_NULLABLE | FE_ARG_IGNORED, "null"},
};
enum { CW_RATIO, CW_STEPS, CW_LAST_EPOCH, CW_VERBOSE };

static ad_status_t cosine_check(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                                const fe_node_t *section) {
  (void)cls;
  if (a[CW_RATIO].is_null && a[CW_STEPS].is_null)
    return fe_error_at(section,
                       "%s: CosineWithWarmup needs warmup_ratio or num_warmup_steps (as in "
                       "ModelGenerator)",
                       path);
  if (a[CW_LAST_EPOCH].node && a[CW_LAST_EPOCH].i != -1)
    return fe_status_at(AD_STATUS_UNIMPLEMENTED, a[CW_LAST_EPOCH].node->file,
                        a[CW_LAST_EPOCH].node->line, a[CW_LAST_EPOCH].node->col,
                        "%s.init_args.last_epoch: only -1 is supported (resume from a "
                        "checkpoint restores the schedule)",
                        path);
  return AD_OK;
}

static const char *const k_cosine_aliases[] = {"modelgenerator.lr_schedulers.lr_schedulers."
                                               "CosineWithWarmup",
                                               NULL};
const fe_class_t fe_class_cosine_with_warmup = {
    .class_path = "modelgenerator.lr_schedulers.CosineWithWarmup",
    .section = "lr_scheduler",
    .args = k_cosine_args,
    .nargs = sizeof k_cosine_args / sizeof k_cosine_args[0],
    .check = cosine_check,
    .kind = FE_CLASS_SCHEDULER,
    .aliases = k_cosine_aliases,
};

/* ---- data: modelgenerator.data.IsoformExpression --------------------------------------------
 * The signature is IsoformExpression's own plus the keyword arguments it forwards to
 * SequenceRegressionDataModule and DataInterface (modelgenerator 0.1.3), plus dna_window. */
static const fe_arg_spec_t k_iso_args[] = {
    {"path", FE_ARG_STRING, 0, "genbio-ai/transcript_isoform_expression_prediction"},
    {"config_name", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"x_col", FE_ARG_ANY, 0, "[dna_seq, rna_seq, protein_seq]"},
    {"rename_cols", FE_ARG_MAP, FE_ARG_NULLABLE,
     "{dna_seq: dna_sequences, rna_seq: rna_sequences, protein_seq: protein_sequences}"},
    {"valid_split_name", FE_ARG_STRING, FE_ARG_NULLABLE, "valid"},
    {"train_split_files", FE_ARG_ANY, FE_ARG_NULLABLE, "train_*.tsv"},
    {"test_split_files", FE_ARG_ANY, FE_ARG_NULLABLE, "test.tsv"},
    {"valid_split_files", FE_ARG_ANY, FE_ARG_NULLABLE, "validation.tsv"},
    {"normalize", FE_ARG_BOOL, 0, "true"},
    {"generate_uid", FE_ARG_BOOL, 0, "false"},
    {"train_split_name", FE_ARG_STRING, FE_ARG_NULLABLE, "train"},
    {"test_split_name", FE_ARG_STRING, FE_ARG_NULLABLE, "test"},
    {"test_split_size", FE_ARG_FLOAT, FE_ARG_PROB, "0.2"},
    {"valid_split_size", FE_ARG_FLOAT, FE_ARG_PROB, "0.1"},
    {"random_seed", FE_ARG_INT, 0, "42"},
    {"extra_reader_kwargs", FE_ARG_MAP, FE_ARG_NULLABLE, "null"},
    {"batch_size", FE_ARG_INT, FE_ARG_POSITIVE | FE_ARG_KEY_BOUND, "128"},
    {"shuffle", FE_ARG_BOOL, 0, "true"},
    {"sampler", FE_ARG_ANY, FE_ARG_NULLABLE | FE_ARG_IGNORED, "null"},
    {"num_workers", FE_ARG_INT, FE_ARG_NONNEG | FE_ARG_IGNORED, "0"},
    {"collate_fn", FE_ARG_ANY, FE_ARG_NULLABLE | FE_ARG_IGNORED, "null"},
    {"pin_memory", FE_ARG_BOOL, FE_ARG_IGNORED, "true"},
    {"persistent_workers", FE_ARG_BOOL, FE_ARG_IGNORED, "false"},
    {"cv_num_folds", FE_ARG_INT, FE_ARG_POSITIVE, "1"},
    {"cv_test_fold_id", FE_ARG_INT, FE_ARG_NONNEG, "0"},
    {"cv_enable_val_fold", FE_ARG_BOOL, 0, "true"},
    {"cv_replace_val_fold_as_test_fold", FE_ARG_BOOL, 0, "false"},
    {"cv_fold_id_col", FE_ARG_STRING, FE_ARG_NULLABLE, "null"},
    {"cv_val_offset", FE_ARG_INT, 0, "1"},
    /* aidomm extension (see the top of this file) */
    {"dna_window", FE_ARG_INT, FE_ARG_NULLABLE | FE_ARG_POSITIVE | FE_ARG_KEY_BOUND, "null"},
};
enum {
  ISO_PATH, ISO_CONFIG_NAME, ISO_X_COL, ISO_RENAME, ISO_VALID_NAME, ISO_TRAIN_FILES,
  ISO_TEST_FILES, ISO_VALID_FILES, ISO_NORMALIZE, ISO_UID, ISO_TRAIN_NAME, ISO_TEST_NAME,
  ISO_TEST_SIZE, ISO_VALID_SIZE, ISO_SEED, ISO_READER_KW, ISO_BATCH, ISO_SHUFFLE, ISO_SAMPLER,
  ISO_WORKERS, ISO_COLLATE, ISO_PIN, ISO_PERSIST, ISO_CV_FOLDS, ISO_CV_TEST, ISO_CV_VAL,
  ISO_CV_REPLACE, ISO_CV_COL, ISO_CV_OFFSET, ISO_DNA_WINDOW
};

/* A string, or a list of strings (jsonargparse's `str | list[str]`). */
static ad_status_t check_str_or_list(const char *path, const char *name, const fe_node_t *n) {
  if (!n || fe_scalar_is_null(n)) return AD_OK;
  char buf[96];
  if (n->kind == FE_NODE_SCALAR) return AD_OK;
  if (n->kind == FE_NODE_SEQ) {
    for (uint32_t i = 0; i < n->n; i++)
      if (n->items[i]->kind != FE_NODE_SCALAR || fe_scalar_is_null(n->items[i]))
        return fe_error_at(n->items[i], "%s.init_args.%s.%u: expected a string, got %s", path,
                           name, i, fe_describe(n->items[i], buf, sizeof buf));
    return AD_OK;
  }
  return fe_error_at(n, "%s.init_args.%s: expected a string or a list of strings, got %s", path,
                     name, fe_node_kind_name(n));
}

static ad_status_t iso_check(const fe_class_t *cls, const char *path, const fe_arg_value_t *a,
                             const fe_node_t *section) {
  (void)cls;
  (void)section;
  AD_RETURN_IF_ERROR(check_str_or_list(path, "x_col", a[ISO_X_COL].list));
  AD_RETURN_IF_ERROR(check_str_or_list(path, "train_split_files", a[ISO_TRAIN_FILES].list));
  AD_RETURN_IF_ERROR(check_str_or_list(path, "test_split_files", a[ISO_TEST_FILES].list));
  AD_RETURN_IF_ERROR(check_str_or_list(path, "valid_split_files", a[ISO_VALID_FILES].list));
  const fe_node_t *r = a[ISO_RENAME].list;
  for (uint32_t i = 0; r && i < r->n; i++)
    if (r->items[i]->kind != FE_NODE_SCALAR || fe_scalar_is_null(r->items[i])) {
      char buf[96];
      return fe_error_at(r->items[i], "%s.init_args.rename_cols.%s: expected a column name, got %s",
                         path, r->keys[i], fe_describe(r->items[i], buf, sizeof buf));
    }
  if (a[ISO_CV_TEST].node && a[ISO_CV_TEST].i >= a[ISO_CV_FOLDS].i)
    return fe_error_at(a[ISO_CV_TEST].node,
                       "%s.init_args.cv_test_fold_id (%lld) must be below cv_num_folds (%lld)",
                       path, (long long)a[ISO_CV_TEST].i, (long long)a[ISO_CV_FOLDS].i);
  return AD_OK;
}

static const char *const k_iso_aliases[] = {"modelgenerator.data.data.IsoformExpression", NULL};
const fe_class_t fe_class_isoform_expression = {
    .class_path = "modelgenerator.data.IsoformExpression",
    .section = "data",
    .args = k_iso_args,
    .nargs = sizeof k_iso_args / sizeof k_iso_args[0],
    .check = iso_check,
    .kind = FE_CLASS_DATA,
    .aliases = k_iso_aliases,
};

/* ---- trainer -------------------------------------------------------------------------------- */
/* Lightning 2.x Trainer arguments in signature order, with their defaults. */
const fe_trainer_key_t fe_trainer_keys[] = {
    {"accelerator", "auto", FE_KEY_RUNTIME, false},
    {"strategy", "auto", FE_KEY_RUNTIME, false},
    {"devices", "auto", FE_KEY_RUNTIME, false},
    {"num_nodes", "1", FE_KEY_RUNTIME, false},
    {"precision", "32-true", FE_KEY_COMPILE, true},
    {"logger", "null", FE_KEY_RUNTIME, false},
    {"callbacks", "null", FE_KEY_RUNTIME, true},
    {"fast_dev_run", "false", FE_KEY_RUNTIME, false},
    {"max_epochs", "null", FE_KEY_RUNTIME, true},
    {"min_epochs", "null", FE_KEY_RUNTIME, false},
    {"max_steps", "-1", FE_KEY_RUNTIME, true},
    {"min_steps", "null", FE_KEY_RUNTIME, false},
    {"max_time", "null", FE_KEY_RUNTIME, false},
    {"limit_train_batches", "null", FE_KEY_RUNTIME, true},
    {"limit_val_batches", "null", FE_KEY_RUNTIME, true},
    {"limit_test_batches", "null", FE_KEY_RUNTIME, true},
    {"limit_predict_batches", "null", FE_KEY_RUNTIME, true},
    {"overfit_batches", "0.0", FE_KEY_RUNTIME, false},
    {"val_check_interval", "null", FE_KEY_RUNTIME, true},
    {"check_val_every_n_epoch", "1", FE_KEY_RUNTIME, true},
    {"num_sanity_val_steps", "null", FE_KEY_RUNTIME, false},
    {"log_every_n_steps", "null", FE_KEY_RUNTIME, true},
    {"enable_checkpointing", "null", FE_KEY_RUNTIME, false},
    {"enable_progress_bar", "null", FE_KEY_RUNTIME, false},
    {"enable_model_summary", "null", FE_KEY_RUNTIME, false},
    {"accumulate_grad_batches", "1", FE_KEY_BOUND, true},
    {"gradient_clip_val", "null", FE_KEY_RUNTIME, true},
    {"gradient_clip_algorithm", "null", FE_KEY_RUNTIME, true},
    {"deterministic", "null", FE_KEY_RUNTIME, false},
    {"benchmark", "null", FE_KEY_RUNTIME, false},
    {"inference_mode", "true", FE_KEY_RUNTIME, false},
    {"use_distributed_sampler", "true", FE_KEY_RUNTIME, false},
    {"profiler", "null", FE_KEY_RUNTIME, false},
    {"detect_anomaly", "false", FE_KEY_RUNTIME, false},
    {"barebones", "false", FE_KEY_RUNTIME, false},
    {"plugins", "null", FE_KEY_RUNTIME, false},
    {"sync_batchnorm", "false", FE_KEY_RUNTIME, false},
    {"reload_dataloaders_every_n_epochs", "0", FE_KEY_RUNTIME, false},
    {"default_root_dir", "null", FE_KEY_RUNTIME, true},
};
const size_t fe_ntrainer_keys = sizeof fe_trainer_keys / sizeof fe_trainer_keys[0];

const char *const fe_top_keys[] = {"seed_everything", "trainer", "model",    "optimizer",
                                   "lr_scheduler",    "data",    "ckpt_path"};
const size_t fe_ntop_keys = sizeof fe_top_keys / sizeof fe_top_keys[0];
enum { TOP_SEED, TOP_TRAINER, TOP_MODEL, TOP_OPTIM, TOP_SCHED, TOP_DATA, TOP_CKPT, TOP_N };

static ad_status_t parse_precision(const fe_node_t *n, ir_dtype_t *out) {
  if (n->kind != FE_NODE_SCALAR || fe_scalar_is_null(n))
    return fe_error_at(n, "trainer.precision: expected 32 or 64, got %s",
                       fe_scalar_is_null(n) ? "null" : fe_node_kind_name(n));
  const char *s = n->scalar;
  if (!strcmp(s, "32") || !strcmp(s, "32-true")) {
    *out = IR_DTYPE_F32;
    return AD_OK;
  }
  if (!strcmp(s, "64") || !strcmp(s, "64-true")) {
    *out = IR_DTYPE_F64;
    return AD_OK;
  }
  static const char *const later[] = {"16",         "16-mixed",  "16-true",           "bf16",
                                      "bf16-mixed", "bf16-true", "transformer-engine"};
  for (size_t i = 0; i < sizeof later / sizeof later[0]; i++)
    if (!strcmp(s, later[i]))
      return fe_status_at(AD_STATUS_UNIMPLEMENTED, n->file, n->line, n->col,
                          "trainer.precision: '%s' is not supported yet (use 32 or 64)", s);
  return fe_error_at(n, "trainer.precision: expected 32 or 64, got '%s'", s);
}

/* An integer >= lo, or null (-> *out unchanged). */
static ad_status_t trainer_int(const char *key, const fe_node_t *v, int64_t lo, int64_t *out) {
  char buf[96];
  if (fe_scalar_is_null(v)) return AD_OK;
  int64_t x;
  if (!fe_scalar_int(v, &x))
    return fe_error_at(v, "trainer.%s: expected an integer, got %s", key,
                       fe_describe(v, buf, sizeof buf));
  if (x < lo) return fe_error_at(v, "trainer.%s must be >= %lld, got %lld", key, (long long)lo,
                                 (long long)x);
  *out = x;
  return AD_OK;
}

/* Lightning's `int | float`: an integer counts batches, a float in [0, 1] is a fraction. */
static ad_status_t trainer_count_or_fraction(const char *key, const fe_node_t *v, double *value,
                                             bool *is_count) {
  char buf[96];
  if (fe_scalar_is_null(v)) return AD_OK;
  int64_t i;
  double f;
  if (fe_scalar_int(v, &i)) {
    if (i < 0) return fe_error_at(v, "trainer.%s must not be negative, got %lld", key,
                                  (long long)i);
    *value = (double)i;
    *is_count = true;
    return AD_OK;
  }
  if (!fe_scalar_float(v, &f))
    return fe_error_at(v, "trainer.%s: expected a number of batches or a fraction, got %s", key,
                       fe_describe(v, buf, sizeof buf));
  if (!(f >= 0 && f <= 1))
    return fe_error_at(v, "trainer.%s: a fraction must be in [0, 1], got %g", key, f);
  *value = f;
  *is_count = false;
  return AD_OK;
}

static const char *str_or_empty(const fe_arg_value_t *v) {
  return v->is_null || !v->s ? "" : v->s;
}

/* One logger class (or true/null for Lightning's default logger). */
static ad_status_t parse_logger_class(fe_checker_t *k, const char *path, const fe_node_t *n,
                                      fe_job_t *job, bool *warned) {
  fe_resolved_t r;
  AD_RETURN_IF_ERROR(fe_resolve_class(k, FE_CLASS_OTHER, path, n, NULL, NULL, &r));
  const fe_node_t *cp = n->kind == FE_NODE_SCALAR ? n : n->items[fe_map_find(n, "class_path")];
  if (r.cls == &fe_class_wandb_logger) {
    job->logger_dir = r.args[WB_SAVE_DIR].s;
    job->logger_name = r.args[WB_NAME].is_null ? "" : r.args[WB_NAME].s;
    fe_warn_node(k, cp,
                 "%s: Weights & Biases is not available in aidomm; metrics go to the CSV "
                 "logger instead (%s/%s/metrics.csv)",
                 path, job->logger_dir, job->logger_name[0] ? job->logger_name : "lightning_logs");
    *warned = true;
  } else if (r.cls == &fe_class_csv_logger) {
    job->logger_dir = r.args[CSV_SAVE_DIR].s;
    job->logger_name = str_or_empty(&r.args[CSV_NAME]);
  } else if (r.cls == &fe_class_tensorboard_logger) {
    job->logger_dir = r.args[CSV_SAVE_DIR].s;
    job->logger_name = str_or_empty(&r.args[CSV_NAME]);
    fe_warn_node(k, cp,
                 "%s: TensorBoard is not available in aidomm; metrics go to the CSV logger "
                 "instead",
                 path);
    *warned = true;
  } else {
    return fe_error_at(cp, "%s: '%s' is not a logger", path, r.cls->class_path);
  }
  return AD_OK;
}

static ad_status_t parse_logger(fe_checker_t *k, const fe_node_t *v, fe_job_t *job, bool *warned) {
  bool b;
  if (fe_scalar_is_null(v)) return AD_OK; /* Lightning: None is the default logger */
  if (fe_scalar_bool(v, &b)) {
    if (!b) job->logger_dir = job->logger_name = NULL;
    return AD_OK;
  }
  if (v->kind == FE_NODE_SEQ) {
    /* Several loggers: aidomm writes one CSV log, configured by the first. */
    for (uint32_t i = 0; i < v->n; i++) {
      char path[64];
      snprintf(path, sizeof path, "trainer.logger.%u", i);
      fe_job_t scratch = *job;
      AD_RETURN_IF_ERROR(parse_logger_class(k, path, v->items[i], i ? &scratch : job, warned));
    }
    return AD_OK;
  }
  return parse_logger_class(k, "trainer.logger", v, job, warned);
}

static ad_status_t parse_callback(fe_checker_t *k, const char *path, const fe_node_t *n,
                                  fe_job_t *job) {
  fe_resolved_t r;
  AD_RETURN_IF_ERROR(fe_resolve_class(k, FE_CLASS_OTHER, path, n, NULL, NULL, &r));
  if (r.cls == &fe_class_model_checkpoint) {
    const fe_arg_value_t *a = r.args;
    job->has_checkpoint = true;
    job->ckpt_dirpath = str_or_empty(&a[CK_DIRPATH]);
    job->ckpt_filename = str_or_empty(&a[CK_FILENAME]);
    job->ckpt_monitor = str_or_empty(&a[CK_MONITOR]);
    job->ckpt_mode_max = strcmp(a[CK_MODE].s, "max") == 0;
    bool b = false;
    const fe_node_t *sl = a[CK_SAVE_LAST].list;
    job->ckpt_save_last =
        sl && ((fe_scalar_bool(sl, &b) && b) || (sl->kind == FE_NODE_SCALAR && !strcmp(sl->scalar, "link")));
    job->ckpt_save_top_k = a[CK_TOP_K].i;
    job->ckpt_every_n_train_steps = a[CK_EVERY_STEPS].is_null ? -1 : a[CK_EVERY_STEPS].i;
    job->ckpt_every_n_epochs = a[CK_EVERY_EPOCHS].is_null ? -1 : a[CK_EVERY_EPOCHS].i;
    /* Lightning's None is resolved by the runtime from the trainer's validation settings. */
    job->ckpt_save_on_train_epoch_end = !a[CK_ON_EPOCH_END].is_null && a[CK_ON_EPOCH_END].b;
    job->ckpt_save_on_train_epoch_end_tri =
        a[CK_ON_EPOCH_END].is_null ? -1 : a[CK_ON_EPOCH_END].b ? 1 : 0;
    job->ckpt_save_last_link = sl && sl->kind == FE_NODE_SCALAR && !strcmp(sl->scalar, "link");
    return AD_OK;
  }
  if (r.cls == &fe_class_lr_monitor) return AD_OK;
  const fe_node_t *cp = n->kind == FE_NODE_SCALAR ? n : n->items[fe_map_find(n, "class_path")];
  return fe_error_at(cp, "%s: '%s' is not a callback", path, r.cls->class_path);
}

static ad_status_t parse_strategy(fe_checker_t *k, const fe_node_t *v, bool *warned) {
  if (fe_scalar_is_null(v)) return AD_OK;
  if (v->kind == FE_NODE_SCALAR && !v->quoted && !strchr(v->scalar, '.')) {
    /* Lightning's registry names: "auto", "ddp", "single_device", ... */
    if (strcmp(v->scalar, "auto") && strcmp(v->scalar, "single_device")) {
      fe_warn_node(k, v,
                   "trainer.strategy '%s': aidomm runs as a single process; the strategy is "
                   "ignored",
                   v->scalar);
      *warned = true;
    }
    return AD_OK;
  }
  fe_resolved_t r;
  AD_RETURN_IF_ERROR(fe_resolve_class(k, FE_CLASS_OTHER, "trainer.strategy", v, NULL, NULL, &r));
  const fe_node_t *cp = v->kind == FE_NODE_SCALAR ? v : v->items[fe_map_find(v, "class_path")];
  if (r.cls != &fe_class_ddp_strategy)
    return fe_error_at(cp, "trainer.strategy: '%s' is not a strategy", r.cls->class_path);
  fe_warn_node(k, cp,
               "trainer.strategy: DDPStrategy runs as a single process in aidomm (one device, "
               "no gradient all-reduce); its arguments are ignored");
  *warned = true;
  return AD_OK;
}

static ad_status_t parse_trainer_key(fe_checker_t *k, const char *key, const fe_node_t *v,
                                     fe_job_t *job, bool *warned) {
  char buf[96];
  if (!strcmp(key, "max_steps")) {
    int64_t s;
    if (!fe_scalar_int(v, &s))
      return fe_error_at(v, "trainer.max_steps: expected an integer, got %s",
                         fe_describe(v, buf, sizeof buf));
    if (s == 0 || s < -1)
      return fe_error_at(v, "trainer.max_steps must be positive (or -1 for no limit), got %lld",
                         (long long)s);
    job->max_steps = s;
  } else if (!strcmp(key, "precision")) {
    AD_RETURN_IF_ERROR(parse_precision(v, &job->dtype));
  } else if (!strcmp(key, "max_epochs")) {
    AD_RETURN_IF_ERROR(trainer_int(key, v, -1, &job->max_epochs));
  } else if (!strcmp(key, "check_val_every_n_epoch")) {
    if (fe_scalar_is_null(v)) job->check_val_every_n_epoch = -1;
    AD_RETURN_IF_ERROR(trainer_int(key, v, 1, &job->check_val_every_n_epoch));
  } else if (!strcmp(key, "log_every_n_steps")) {
    AD_RETURN_IF_ERROR(trainer_int(key, v, 1, &job->log_every_n_steps));
  } else if (!strcmp(key, "accumulate_grad_batches")) {
    AD_RETURN_IF_ERROR(trainer_int(key, v, 1, &job->accumulate_grad_batches));
  } else if (!strcmp(key, "val_check_interval")) {
    double x = 1.0;
    bool count = false;
    AD_RETURN_IF_ERROR(trainer_count_or_fraction(key, v, &x, &count));
    if (count && x == 0)
      return fe_error_at(v, "trainer.val_check_interval must be positive, got 0");
    job->val_check_interval = count ? (int64_t)x : 0;
    job->val_check_fraction = count ? 0 : x;
  } else if (!strncmp(key, "limit_", 6)) {
    static const char *const which[] = {"limit_train_batches", "limit_val_batches",
                                        "limit_test_batches", "limit_predict_batches"};
    double *dst[] = {&job->limit_train_batches, &job->limit_val_batches, &job->limit_test_batches,
                     &job->limit_predict_batches};
    for (int i = 0; i < 4; i++)
      if (!strcmp(key, which[i]))
        AD_RETURN_IF_ERROR(trainer_count_or_fraction(key, v, dst[i], &job->limit_is_count[i]));
  } else if (!strcmp(key, "gradient_clip_val")) {
    double f;
    if (!fe_scalar_is_null(v)) {
      if (!fe_scalar_float(v, &f))
        return fe_error_at(v, "trainer.gradient_clip_val: expected a number, got %s",
                           fe_describe(v, buf, sizeof buf));
      if (f < 0)
        return fe_error_at(v, "trainer.gradient_clip_val must not be negative, got %g", f);
      job->gradient_clip_val = f;
    }
  } else if (!strcmp(key, "gradient_clip_algorithm")) {
    if (!fe_scalar_is_null(v) &&
        (v->kind != FE_NODE_SCALAR || (strcmp(v->scalar, "norm") && strcmp(v->scalar, "value"))))
      return fe_error_at(v, "trainer.gradient_clip_algorithm: expected 'norm' or 'value', got %s",
                         fe_describe(v, buf, sizeof buf));
    if (!fe_scalar_is_null(v) && !strcmp(v->scalar, "value"))
      return fe_status_at(AD_STATUS_UNIMPLEMENTED, v->file, v->line, v->col,
                          "trainer.gradient_clip_algorithm: 'value' is not supported yet "
                          "(aidomm clips the global L2 norm)");
  } else if (!strcmp(key, "default_root_dir")) {
    if (!fe_scalar_is_null(v)) {
      if (v->kind != FE_NODE_SCALAR)
        return fe_error_at(v, "trainer.default_root_dir: expected a directory, got %s",
                           fe_node_kind_name(v));
      job->default_root_dir = v->scalar;
    }
  } else if (!strcmp(key, "logger")) {
    AD_RETURN_IF_ERROR(parse_logger(k, v, job, warned));
  } else if (!strcmp(key, "callbacks")) {
    if (v->kind == FE_NODE_SEQ) {
      for (uint32_t i = 0; i < v->n; i++) {
        char path[64];
        snprintf(path, sizeof path, "trainer.callbacks.%u", i);
        AD_RETURN_IF_ERROR(parse_callback(k, path, v->items[i], job));
      }
    } else if (!fe_scalar_is_null(v)) {
      AD_RETURN_IF_ERROR(parse_callback(k, "trainer.callbacks", v, job));
    }
  } else if (!strcmp(key, "strategy")) {
    AD_RETURN_IF_ERROR(parse_strategy(k, v, warned));
  }
  return AD_OK;
}

static const fe_trainer_key_t *trainer_key(const char *name) {
  for (size_t i = 0; i < fe_ntrainer_keys; i++)
    if (!strcmp(fe_trainer_keys[i].name, name)) return &fe_trainer_keys[i];
  return NULL;
}

static ad_status_t parse_trainer(fe_checker_t *k, const fe_node_t *t, fe_job_t *job) {
  if (!t || fe_scalar_is_null(t)) return AD_OK;
  if (t->kind != FE_NODE_MAP)
    return fe_error_at(t, "trainer: expected a mapping, got %s", fe_node_kind_name(t));
  const char *names[64];
  for (size_t i = 0; i < fe_ntrainer_keys && i < 64; i++) names[i] = fe_trainer_keys[i].name;
  for (uint32_t i = 0; i < t->n; i++) {
    const char *key = t->keys[i];
    const fe_trainer_key_t *tk = trainer_key(key);
    if (!tk) {
      char hint[128] = "";
      const char *best = fe_closest(key, names, fe_ntrainer_keys);
      if (best) snprintf(hint, sizeof hint, " (did you mean '%s'?)", best);
      fe_warn_key(k, t, i, "trainer.%s is not a Lightning Trainer argument aidomm knows; "
                           "ignored%s",
                  key, hint);
      continue;
    }
    bool warned = false;
    AD_RETURN_IF_ERROR(parse_trainer_key(k, key, t->items[i], job, &warned));
    if (!tk->acted && !warned)
      fe_warn_key(k, t, i, "trainer.%s is ignored (aidomm does not use it yet)", key);
  }
  return AD_OK;
}

static ad_status_t parse_seed(const fe_node_t *n, int64_t *seed) {
  char buf[96];
  if (fe_scalar_is_null(n)) return AD_OK;
  if (!fe_scalar_int(n, seed))
    return fe_error_at(n, "seed_everything: expected an integer seed, got %s",
                       fe_describe(n, buf, sizeof buf));
  /* Lightning's accepted range (numpy seeds are 32-bit). */
  if (*seed < 0 || *seed > 4294967295LL)
    return fe_error_at(n, "seed_everything must be in [0, 4294967295], got %lld", (long long)*seed);
  return AD_OK;
}

/* ---- the DNA window against the DNA backbone ---------------------------------------------- */
/* Finds Enformer anywhere in the resolved model (it is the DNA backbone of the seed configs). */
static const fe_arg_value_t *find_enformer(const fe_class_t *cls, const fe_arg_value_t *args,
                                           int depth) {
  if (!cls || depth > 16) return NULL;
  if (!strcmp(cls->class_path, "modelgenerator.backbones.enformer")) return args;
  for (uint32_t i = 0; i < cls->nargs; i++)
    if (cls->args[i].type == FE_ARG_CLASS && args[i].cls) {
      const fe_arg_value_t *e = find_enformer(args[i].cls, args[i].args, depth + 1);
      if (e) return e;
    }
  return NULL;
}

static ad_status_t check_dna_window(const fe_sections_t *s, const fe_arg_value_t *win) {
  const fe_arg_value_t *e = find_enformer(s->model.cls, s->model.args, 0);
  if (!e) return AD_OK;
  const fe_class_t *ecls = fe_find_class("modelgenerator.backbones.enformer");
  int ml = ecls ? fe_class_arg_index(ecls, "max_length") : -1;
  if (ml < 0 || e[ml].is_null) return AD_OK;
  if (win->i > e[ml].i)
    return fe_error_at(win->node,
                       "data.init_args.dna_window (%lld) is longer than the Enformer backbone's "
                       "max_length (%lld)",
                       (long long)win->i, (long long)e[ml].i);
  return AD_OK;
}

/* ---- all sections ---------------------------------------------------------------------------- */
static void job_defaults(fe_job_t *job) {
  memset(job, 0, sizeof *job);
  job->max_steps = -1; /* Lightning's default: no step limit */
  job->dtype = IR_DTYPE_F32;
  job->max_epochs = -1;
  job->val_check_fraction = 1.0;
  job->check_val_every_n_epoch = 1;
  job->log_every_n_steps = 50;
  job->accumulate_grad_batches = 1;
  job->limit_train_batches = job->limit_val_batches = job->limit_test_batches =
      job->limit_predict_batches = 1.0;
  job->default_root_dir = "";
  job->warmup_ratio = -1;
  job->num_warmup_steps = -1;
  job->ckpt_dirpath = job->ckpt_filename = job->ckpt_monitor = "";
  job->ckpt_save_top_k = 1;
  job->ckpt_every_n_train_steps = job->ckpt_every_n_epochs = -1;
  job->ckpt_save_on_train_epoch_end_tri = -1;
  job->logger_dir = ""; /* Lightning's default logger under default_root_dir */
  job->logger_name = "lightning_logs";
  job->data_path = "";
  job->strict_loading = true;
}

/* x_col (a string or a list), rename_cols applied to it, and IsoformExpression's fixed label
 * columns labels_0..labels_29. */
static ad_status_t data_columns(fe_checker_t *k, const fe_arg_value_t *d, fe_job_t *job) {
  const fe_node_t *x = d[ISO_X_COL].list ? d[ISO_X_COL].list : d[ISO_X_COL].node;
  fe_node_t *dflt = NULL;
  if (!x) x = dflt = fe_node_parse_text(k->arena, "[dna_seq, rna_seq, protein_seq]");
  uint32_t n = x && x->kind == FE_NODE_SEQ ? x->n : 1;
  if (n > FE_MAX_DATA_COLS)
    return fe_error_at(x, "data.init_args.x_col: at most %d columns", FE_MAX_DATA_COLS);
  const fe_node_t *r = d[ISO_RENAME].is_null ? NULL : d[ISO_RENAME].list;
  fe_node_t *rdflt = NULL;
  if (!r && !d[ISO_RENAME].is_null && !d[ISO_RENAME].node)
    r = rdflt = fe_node_parse_text(
        k->arena, "{dna_seq: dna_sequences, rna_seq: rna_sequences, protein_seq: protein_sequences}");
  job->n_x = 0;
  for (uint32_t i = 0; i < n; i++) {
    const fe_node_t *it = x->kind == FE_NODE_SEQ ? x->items[i] : x;
    if (it->kind != FE_NODE_SCALAR) continue;
    job->x_cols[job->n_x] = it->scalar;
    int64_t ri = fe_map_find(r, it->scalar);
    job->x_names[job->n_x] = ri >= 0 ? r->items[ri]->scalar : it->scalar;
    job->n_x++;
  }
  static const char *const k_labels[30] = {
      "labels_0", "labels_1", "labels_2", "labels_3", "labels_4", "labels_5", "labels_6",
      "labels_7", "labels_8", "labels_9", "labels_10", "labels_11", "labels_12", "labels_13",
      "labels_14", "labels_15", "labels_16", "labels_17", "labels_18", "labels_19", "labels_20",
      "labels_21", "labels_22", "labels_23", "labels_24", "labels_25", "labels_26", "labels_27",
      "labels_28", "labels_29"};
  for (uint32_t i = 0; i < 30; i++) job->y_cols[i] = k_labels[i];
  job->n_y = 30;
  return AD_OK;
}

/* A section given both under model.init_args and at the top level. */
static ad_status_t given_twice(const fe_node_t *root, const fe_node_t *minit, int64_t mi,
                               const char *what) {
  const char *tf;
  int tl, tc;
  fe_key_place(root, (uint32_t)fe_map_find(root, what), &tf, &tl, &tc);
  return fe_error_at_key(minit, (uint32_t)mi,
                         "%s given twice: in model.init_args and at the top level (%s:%d:%d)",
                         what, tf, tl, tc);
}

ad_status_t fe_check_sections(fe_checker_t *k, fe_sections_t *s, fe_job_t *job) {
  const fe_config_t *c = k->c;
  memset(s, 0, sizeof *s);
  job_defaults(job);
  const fe_node_t *sec[TOP_N] = {0};
  const fe_node_t *root = c->root;
  for (uint32_t i = 0; i < root->n; i++) {
    size_t j = 0;
    while (j < TOP_N && strcmp(root->keys[i], fe_top_keys[j]) != 0) j++;
    if (j < TOP_N) {
      sec[j] = root->items[i];
      continue;
    }
    char hint[512] = "";
    const char *best = fe_closest(root->keys[i], fe_top_keys, TOP_N);
    if (best) snprintf(hint, sizeof hint, " (did you mean '%s'?)", best);
    fe_warn_key(k, root, i, "top-level key '%s' is not used by aidomm; ignored%s", root->keys[i],
                hint);
  }
  s->seed = sec[TOP_SEED];
  s->trainer = sec[TOP_TRAINER];
  s->ckpt_path = sec[TOP_CKPT];

  if (sec[TOP_SEED]) AD_RETURN_IF_ERROR(parse_seed(sec[TOP_SEED], &job->seed));
  AD_RETURN_IF_ERROR(parse_trainer(k, sec[TOP_TRAINER], job));

  /* ModelGenerator tasks take optimizer and lr_scheduler as model.init_args (hence the users'
   * `--model.optimizer.lr`); top-level sections are accepted too, not both. */
  static const char *const model_skip[] = {"optimizer", "lr_scheduler", NULL};
  AD_RETURN_IF_ERROR(
      fe_resolve_class(k, FE_CLASS_TASK, "model", sec[TOP_MODEL], NULL, model_skip, &s->model));
  int64_t mi = fe_map_find(sec[TOP_MODEL], "init_args");
  const fe_node_t *minit = mi >= 0 ? sec[TOP_MODEL]->items[mi] : NULL;

  const fe_node_t *opt = sec[TOP_OPTIM], *sched = sec[TOP_SCHED];
  s->optim_path = "optimizer";
  s->sched_path = "lr_scheduler";
  /* Under init_args, or beside class_path (the shorthand fe_resolve_class accepts). */
  const fe_node_t *omap = minit, *smap = minit;
  int64_t oi = fe_map_find(minit, "optimizer");
  if (oi < 0) oi = fe_map_find(omap = sec[TOP_MODEL], "optimizer");
  if (oi >= 0) {
    if (opt) return given_twice(root, omap, oi, "optimizer");
    opt = omap->items[oi];
    s->optim_path = "model.init_args.optimizer";
  }
  int64_t si = fe_map_find(minit, "lr_scheduler");
  if (si < 0) si = fe_map_find(smap = sec[TOP_MODEL], "lr_scheduler");
  if (si >= 0) {
    if (sched) return given_twice(root, smap, si, "lr_scheduler");
    sched = smap->items[si];
    s->sched_path = "model.init_args.lr_scheduler";
  }
  AD_RETURN_IF_ERROR(fe_resolve_class(k, FE_CLASS_OPTIMIZER, s->optim_path, opt,
                                      "torch.optim.AdamW", NULL, &s->optim));
  if (sched && !fe_scalar_is_null(sched)) {
    AD_RETURN_IF_ERROR(
        fe_resolve_class(k, FE_CLASS_SCHEDULER, s->sched_path, sched, NULL, NULL, &s->sched));
    job->has_scheduler = true;
    job->warmup_ratio = s->sched.args[CW_RATIO].is_null ? -1 : s->sched.args[CW_RATIO].f;
    job->num_warmup_steps = s->sched.args[CW_STEPS].is_null ? -1 : s->sched.args[CW_STEPS].i;
  }
  AD_RETURN_IF_ERROR(fe_resolve_class(k, FE_CLASS_DATA, "data", sec[TOP_DATA], NULL, NULL, &s->data));

  const fe_arg_value_t *o = s->optim.args;
  job->lr = o[FE_ADAMW_LR].f;
  job->beta1 = 0.9;
  job->beta2 = 0.999;
  if (o[FE_ADAMW_BETAS].list) {
    const fe_node_t *b = o[FE_ADAMW_BETAS].list;
    (void)fe_scalar_float(b->items[0], &job->beta1); /* validated by adamw_check */
    (void)fe_scalar_float(b->items[1], &job->beta2);
  }
  job->eps = o[FE_ADAMW_EPS].f;
  job->weight_decay = o[FE_ADAMW_WD].f;

  const fe_arg_value_t *d = s->data.args;
  if (s->data.cls == &fe_class_synthetic_data) {
    job->batch_size = d[FE_SYNTH_BATCH].i;
    job->max_length = d[FE_SYNTH_MAXLEN].i;
  } else if (s->data.cls == &fe_class_isoform_expression) {
    job->batch_size = d[ISO_BATCH].i;
    job->data_path = d[ISO_PATH].s;
    const fe_node_t *pl[3] = {d[ISO_TRAIN_FILES].list, d[ISO_VALID_FILES].list,
                              d[ISO_TEST_FILES].list};
    for (int k = 0; k < 3; k++) {
      const fe_node_t *n = pl[k];
      job->nsplit_patterns[k] = 0;
      if (!n || fe_scalar_is_null(n)) continue;
      uint32_t cnt = n->kind == FE_NODE_SEQ ? n->n : 1;
      if (cnt > FE_MAX_SPLIT_PATTERNS)
        return fe_error_at(n, "data.init_args: at most %d file patterns per split",
                           FE_MAX_SPLIT_PATTERNS);
      for (uint32_t i = 0; i < cnt; i++) {
        const char *pat = n->kind == FE_NODE_SEQ ? n->items[i]->scalar : n->scalar;
        if (pat[0]) job->split_patterns[k][job->nsplit_patterns[k]++] = pat; /* "": the default */
      }
    }
    job->data_normalize = d[ISO_NORMALIZE].b;
    job->data_shuffle = d[ISO_SHUFFLE].b;
    job->data_random_seed = d[ISO_SEED].i;
    if (!d[ISO_DNA_WINDOW].is_null) {
      job->dna_window = d[ISO_DNA_WINDOW].i;
      if (d[ISO_DNA_WINDOW].node) AD_RETURN_IF_ERROR(check_dna_window(s, &d[ISO_DNA_WINDOW]));
    }
    AD_RETURN_IF_ERROR(data_columns(k, d, job));
  } else {
    /* A data class of another file: the batch size is its batch_size argument. */
    int bi = fe_class_arg_index(s->data.cls, "batch_size");
    job->batch_size = bi >= 0 && !d[bi].is_null ? d[bi].i : 1;
  }
  fe_task_backbones(s->model.cls, s->model.args, job);
  if (sec[TOP_CKPT] && !fe_scalar_is_null(sec[TOP_CKPT])) {
    if (sec[TOP_CKPT]->kind != FE_NODE_SCALAR)
      return fe_error_at(sec[TOP_CKPT], "ckpt_path: expected a file path, got %s",
                         fe_node_kind_name(sec[TOP_CKPT]));
    job->ckpt_path = sec[TOP_CKPT]->scalar;
  }
  return AD_OK;
}

/* ---- --print_config -------------------------------------------------------------------------- */
static fe_node_t *emit_class(ad_arena_t *a, const fe_class_t *cls, const fe_arg_value_t *args,
                             const fe_node_t *const *extra_vals, const char *const *extra_keys,
                             int nextra);

static fe_node_t *emit_default(ad_arena_t *a, const fe_arg_spec_t *s) {
  if (!s->dflt) return (s->flags & FE_ARG_NULLABLE) ? fe_node_new_scalar(a, "null", false) : NULL;
  if (s->type == FE_ARG_STRING) {
    /* A string default that reads as another type ("null" aside) keeps its meaning quoted. */
    fe_node_t probe = {.kind = FE_NODE_SCALAR, .scalar = s->dflt};
    double f;
    bool b;
    bool other = fe_scalar_float(&probe, &f) || fe_scalar_bool(&probe, &b) || !s->dflt[0];
    if (s->dflt[0] && fe_scalar_is_null(&probe)) other = false; /* "null": no string */
    return fe_node_new_scalar(a, s->dflt, other);
  }
  if (s->type == FE_ARG_LIST || s->type == FE_ARG_MAP || s->type == FE_ARG_ANY) {
    fe_node_t *n = fe_node_parse_text(a, s->dflt);
    if (n) return n;
  }
  return fe_node_new_scalar(a, s->dflt, false);
}

static fe_node_t *emit_arg(ad_arena_t *a, const fe_arg_spec_t *s, const fe_arg_value_t *v) {
  if (s->type == FE_ARG_CLASS) {
    if (v->cls) return emit_class(a, v->cls, v->args, NULL, NULL, 0);
    return fe_node_new_scalar(a, "null", false);
  }
  if (v->node) return (fe_node_t *)v->node;
  return emit_default(a, s);
}

static fe_node_t *emit_class(ad_arena_t *a, const fe_class_t *cls, const fe_arg_value_t *args,
                             const fe_node_t *const *extra_vals, const char *const *extra_keys,
                             int nextra) {
  fe_node_t *m = fe_node_new_map(a);
  fe_node_map_put(a, m, "class_path", fe_node_new_scalar(a, cls->class_path, false));
  fe_node_t *init = fe_node_new_map(a);
  for (uint32_t i = 0; i < cls->nargs; i++) {
    fe_node_t *v = emit_arg(a, &cls->args[i], &args[i]);
    if (v) fe_node_map_put(a, init, cls->args[i].name, v);
  }
  for (int i = 0; i < nextra; i++)
    if (extra_vals[i]) fe_node_map_put(a, init, extra_keys[i], (fe_node_t *)extra_vals[i]);
  fe_node_map_put(a, m, "init_args", init);
  return m;
}

/* Trainer values that are classes come out resolved; the rest as given. */
static fe_node_t *emit_trainer_value(fe_checker_t *k, const char *key, const fe_node_t *v) {
  ad_arena_t *a = k->arena;
  bool b;
  bool is_class_key = !strcmp(key, "logger") || !strcmp(key, "callbacks") ||
                      !strcmp(key, "strategy");
  if (!is_class_key || fe_scalar_is_null(v) || fe_scalar_bool(v, &b)) return (fe_node_t *)v;
  if (!strcmp(key, "strategy") && v->kind == FE_NODE_SCALAR && !strchr(v->scalar, '.'))
    return (fe_node_t *)v;
  const fe_node_t *one = v;
  uint32_t n = v->kind == FE_NODE_SEQ ? v->n : 1;
  fe_node_t *seq = NULL;
  if (v->kind == FE_NODE_SEQ) {
    seq = ad_arena_alloc(a, sizeof *seq);
    memset(seq, 0, sizeof *seq);
    seq->kind = FE_NODE_SEQ;
    seq->file = "<resolved>";
    seq->items = ad_arena_alloc(a, sizeof *seq->items * (n ? n : 1));
  }
  for (uint32_t i = 0; i < n; i++) {
    if (seq) one = v->items[i];
    fe_resolved_t r;
    /* Already checked: this cannot fail. */
    if (fe_resolve_class(k, FE_CLASS_OTHER, key, one, NULL, NULL, &r)) return (fe_node_t *)v;
    fe_node_t *out = emit_class(a, r.cls, r.args, NULL, NULL, 0);
    if (!seq) return out;
    seq->items[seq->n++] = out;
  }
  return seq;
}

ad_status_t fe_config_print(const fe_config_t *c, ad_buf_t *out) {
  if (!c || !c->root || c->root->kind != FE_NODE_MAP)
    return ad_status_make(AD_STATUS_INTERNAL, "fe_config_print: no config loaded");
  fe_checker_t k;
  fe_checker_init(&k, c);
  fe_sections_t s;
  fe_job_t job;
  ad_status_t st = fe_check_sections(&k, &s, &job);
  if (st) {
    fe_checker_flush(&k);
    return st;
  }
  ad_arena_t *a = k.arena;
  fe_node_t *root = fe_node_new_map(a);
  char num[32];
  snprintf(num, sizeof num, "%lld", (long long)job.seed);
  fe_node_map_put(a, root, "seed_everything",
                  s.seed ? (fe_node_t *)s.seed : fe_node_new_scalar(a, num, false));

  /* trainer: what was given (classes resolved), plus the defaults of the keys aidomm acts on;
   * defaults of keys it does not act on would only add warnings when the output is loaded. */
  fe_node_t *tr = fe_node_new_map(a);
  const fe_node_t *t = s.trainer && s.trainer->kind == FE_NODE_MAP ? s.trainer : NULL;
  for (size_t i = 0; i < fe_ntrainer_keys; i++) {
    const fe_trainer_key_t *tk = &fe_trainer_keys[i];
    int64_t j = fe_map_find(t, tk->name);
    if (j >= 0)
      fe_node_map_put(a, tr, tk->name, emit_trainer_value(&k, tk->name, t->items[j]));
    else if (tk->acted)
      fe_node_map_put(a, tr, tk->name, fe_node_parse_text(a, tk->dflt));
  }
  for (uint32_t i = 0; t && i < t->n; i++)
    if (!trainer_key(t->keys[i])) fe_node_map_put(a, tr, t->keys[i], t->items[i]);
  fe_node_map_put(a, root, "trainer", tr);

  bool opt_in_model = !strcmp(s.optim_path, "model.init_args.optimizer");
  bool sched_in_model = !strcmp(s.sched_path, "model.init_args.lr_scheduler");
  fe_node_t *opt = emit_class(a, s.optim.cls, s.optim.args, NULL, NULL, 0);
  fe_node_t *sched = s.sched.cls ? emit_class(a, s.sched.cls, s.sched.args, NULL, NULL, 0) : NULL;
  const fe_node_t *extra[2] = {opt_in_model ? opt : NULL, sched_in_model ? sched : NULL};
  static const char *const extra_keys[2] = {"optimizer", "lr_scheduler"};
  fe_node_map_put(a, root, "model", emit_class(a, s.model.cls, s.model.args, extra, extra_keys, 2));
  if (!opt_in_model) fe_node_map_put(a, root, "optimizer", opt);
  if (sched && !sched_in_model) fe_node_map_put(a, root, "lr_scheduler", sched);
  fe_node_map_put(a, root, "data", emit_class(a, s.data.cls, s.data.args, NULL, NULL, 0));
  if (s.ckpt_path) fe_node_map_put(a, root, "ckpt_path", (fe_node_t *)s.ckpt_path);
  /* Keys aidomm does not know stay, so that nothing the user wrote disappears. */
  for (uint32_t i = 0; i < c->root->n; i++) {
    bool known = false;
    for (size_t j = 0; j < fe_ntop_keys; j++) known |= !strcmp(c->root->keys[i], fe_top_keys[j]);
    if (!known) fe_node_map_put(a, root, c->root->keys[i], c->root->items[i]);
  }
  fe_checker_flush(&k);
  fe_node_emit_yaml(root, out);
  return AD_OK;
}
