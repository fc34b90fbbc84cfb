/* The class table: every class_path the frontend understands. One line per class; each class
 * lives in its own file. */
#include <string.h>

#include "frontend/fe_internal.h"

static const fe_class_t *const k_classes[] = {
    &fe_class_tiny_transformer,
    &fe_class_adamw,
    &fe_class_synthetic_data,
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
