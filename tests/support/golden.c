/* Golden-fixture helpers; see tests/support/golden.h. */
#include "tests/support/golden.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *golden_path(const char *relpath) {
  const char *root = getenv("AIDOMM_SOURCE_DIR");
  size_t rl = strlen(relpath);
  if (relpath[0] == '/' || !root || !root[0]) {
    char *p = malloc(rl + 1);
    if (p) memcpy(p, relpath, rl + 1);
    return p;
  }
  size_t n = strlen(root);
  char *p = malloc(n + rl + 2);
  if (!p) return NULL;
  memcpy(p, root, n);
  p[n] = '/';
  memcpy(p + n + 1, relpath, rl + 1);
  return p;
}

static bool elem_as_double(const ir_tensor_t *t, int64_t i, double *out) {
  switch (t->dtype) {
    case IR_DTYPE_F32: *out = ((const float *)t->data)[i]; return true;
    case IR_DTYPE_F64: *out = ((const double *)t->data)[i]; return true;
    case IR_DTYPE_I32: *out = ((const int32_t *)t->data)[i]; return true;
    case IR_DTYPE_I64: *out = (double)((const int64_t *)t->data)[i]; return true;
    case IR_DTYPE_U8: *out = ((const uint8_t *)t->data)[i]; return true;
    default: return false;
  }
}

double golden_rel_error(const ir_tensor_t *a, const ir_tensor_t *b) {
  if (!a || !b || a->rank != b->rank) return INFINITY;
  for (int32_t d = 0; d < a->rank; d++)
    if (a->dims[d] != b->dims[d]) return INFINITY;
  if (ir_dtype_is_float(a->dtype) != ir_dtype_is_float(b->dtype)) return INFINITY;
  int64_t n = ir_tensor_numel(a);
  double maxdiff = 0.0, maxref = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double x, y;
    if (!elem_as_double(a, i, &x) || !elem_as_double(b, i, &y)) return INFINITY;
    if (isnan(x) || isnan(y)) {
      if (isnan(x) && isnan(y)) continue;
      return INFINITY;
    }
    if (isinf(x) || isinf(y)) {
      if (x == y) continue;
      return INFINITY;
    }
    double d = fabs(x - y);
    if (d > maxdiff) maxdiff = d;
    if (fabs(y) > maxref) maxref = fabs(y);
  }
  return maxref > 0.0 ? maxdiff / maxref : maxdiff;
}

static void print_shape(const ir_tensor_t *t) {
  printf("%s[", t ? ir_dtype_name(t->dtype) : "null");
  for (int32_t d = 0; t && d < t->rank; d++) printf("%s%lld", d ? "," : "", (long long)t->dims[d]);
  printf("]");
}

double golden_compare(const char *name, const ir_tensor_t *got, const ir_tensor_t *want,
                      double tol) {
  bool same_shape = got && want && got->rank == want->rank;
  for (int32_t d = 0; same_shape && d < got->rank; d++)
    if (got->dims[d] != want->dims[d]) same_shape = false;
  if (!same_shape) {
    printf("FAIL %s: shape mismatch: got ", name);
    print_shape(got);
    printf(", want ");
    print_shape(want);
    printf("\n");
    return INFINITY;
  }
  double e = golden_rel_error(got, want);
  if (!(e <= tol)) printf("FAIL %s error %.3g > %.3g\n", name, e, tol);
  return e;
}
