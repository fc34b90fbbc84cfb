/* Runs golden op cases (tools/golden/fixture.py documents the file layout): for each case
 * builds a one-node graph over INPUT nodes, runs it on rt_interp at the actual sizes and
 * compares every output with torch's (max|a-b|/max|b| per tensor), then applies the op's VJP
 * to the stored cotangents and compares with torch autograd, then (f64 cases with "fd")
 * checks the VJP against central finite differences along a random direction.
 * Prints one line per case naming it; every failure names case and tensor. */
#ifndef AIDOMM_TESTS_OP_HARNESS_H
#define AIDOMM_TESTS_OP_HARNESS_H

typedef struct op_harness_tol {
  double fwd_f64, fwd_f32; /* 1e-10, 1e-6 per the acceptance criteria */
  double vjp_f64, vjp_f32; /* gradient vs torch */
  double fd;               /* relative error of the directional derivative */
} op_harness_tol_t;

op_harness_tol_t op_harness_default_tol(void);
/* relpath is relative to $AIDOMM_SOURCE_DIR (or the cwd). Returns the number of failed cases
 * (a missing file or no cases counts as a failure). */
int op_harness_run_file(const char *relpath, const op_harness_tol_t *tol);

#endif
