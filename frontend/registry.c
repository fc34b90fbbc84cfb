/* The class table: every class_path the frontend understands. One line per class; each class
 * lives in its own file. */
#include <string.h>

#include "frontend/fe_internal.h"

static const fe_class_t *const k_classes[] = {
    &fe_class_tiny_transformer,
    &fe_class_aido_rna_650m,
    &fe_class_aido_rna_1b600m,
    &fe_class_aido_rna_1b600m_cds,
    &fe_class_esm2_8m,
    &fe_class_esm2_35m,
    &fe_class_esm2_150m,
    &fe_class_esm2_650m,
    &fe_class_adamw,
    &fe_class_synthetic_data,
    &fe_class_isoform_expression, &fe_class_cosine_with_warmup, &fe_class_model_checkpoint,
    &fe_class_lr_monitor, &fe_class_wandb_logger, &fe_class_csv_logger,
    &fe_class_tensorboard_logger, &fe_class_ddp_strategy,
    &fe_class_cross_attention_fusion,
    &fe_class_concat_fusion,
    &fe_class_mm_fusion_seq_adapter,
    &fe_class_mm_fusion_token_adapter,
    &fe_class_mlp_adapter,
    &fe_class_mlp_pool_adapter,
    &fe_class_linear_adapter,
    &fe_class_linear_cls_adapter,
    &fe_class_linear_mean_pool_adapter,
    &fe_class_linear_max_pool_adapter,
    &fe_class_enformer,
    &fe_class_mm_sequence_regression,
    &fe_class_sequence_regression,
};
#define NCLASSES (sizeof k_classes / sizeof k_classes[0])

const fe_class_t *fe_find_class(const char *class_path) {
  for (size_t i = 0; i < NCLASSES; i++) {
    if (strcmp(k_classes[i]->class_path, class_path) == 0) return k_classes[i];
    for (const char *const *a = k_classes[i]->aliases; a && *a; a++)
      if (strcmp(*a, class_path) == 0) return k_classes[i];
  }
  return NULL;
}

size_t fe_class_count(void) { return NCLASSES; }
const fe_class_t *fe_class_at(size_t i) { return i < NCLASSES ? k_classes[i] : NULL; }
