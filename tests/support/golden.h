/* Helpers for tests that read golden fixtures (tests/golden/ops_GROUP.safetensors and the
 * like, written by the generators in tools/golden/). */
#ifndef AIDOMM_TESTS_GOLDEN_H
#define AIDOMM_TESTS_GOLDEN_H

#include <stdbool.h>

#include "ir/ir.h"

/* $AIDOMM_SOURCE_DIR/relpath, or relpath itself (relative to the cwd) when the variable is unset
 * or empty. Absolute paths are returned unchanged. The result is malloc'd. */
char *golden_path(const char *relpath);

/* max|a-b| / max|b| over all elements, each converted to double (f32, f64 and the integer
 * dtypes; bf16/f16 are not compared here). When max|b| is 0 the absolute error max|a-b| is
 * returned. Matching NaNs and equal infinities count as equal; any other NaN/inf mismatch or a
 * shape or dtype-class mismatch gives INFINITY. */
double golden_rel_error(const ir_tensor_t *a, const ir_tensor_t *b);

/* golden_rel_error(got, want); when it exceeds tol (or is not finite) prints
 * "FAIL <name> error <e> > <tol>" (or the shape mismatch) to stdout. Returns the error. */
double golden_compare(const char *name, const ir_tensor_t *got, const ir_tensor_t *want,
                      double tol);

#endif
