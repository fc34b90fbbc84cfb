/* Helpers shared by the test suites (tests/test_*.c): one implementation each of the 2-thread
 * ir_parallel_t, one-node graph fixtures, tensor allocation, status expectations, file and
 * temporary-directory handling and running the command-line tools. Every helper fails the
 * running Check test (ck_assert / ck_abort) instead of returning an error. */
#ifndef AIDOMM_TESTS_TEST_UTIL_H
#define AIDOMM_TESTS_TEST_UTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"

/* ---- suites and statuses ------------------------------------------------------------------ */

/* Runs the suite (CK_NORMAL) and returns main's exit status. */
int tu_run_suite(Suite *s);

/* Fails the test with the message when st is an error. */
void tu_ok(ad_status_t st);

/* Expects an error whose message contains n1 and, when n2 is not NULL, n2; frees it. */
void tu_expect_msg(ad_status_t st, const char *n1, const char *n2);
/* tu_expect_msg, and the code must be AD_STATUS_INVALID_ARGUMENT (bad graphs and text). */
void tu_expect_invalid(ad_status_t st, const char *n1, const char *n2);

/* ---- threads and random numbers ----------------------------------------------------------- */

/* A 2-thread ir_parallel_t: every range of 2 or more items is split unevenly (a third on the
 * caller, the rest on a fresh thread) so that any dependence on the split shows; `splits`
 * counts the ranges it split, so a test can assert that the parallel path actually ran. */
typedef struct tu_two_threads {
  ir_parallel_t base;
  int splits;
} tu_two_threads_t;

tu_two_threads_t tu_two_threads(void);

/* xorshift64 step of *state (each suite keeps its own seed). */
uint64_t tu_xorshift64(uint64_t *state);
/* Uniform in [-1, 1) from the top 53 bits of the next xorshift64 value. */
double tu_urand(uint64_t *state);

/* The double with IEEE-754 bits b (NaN payloads, signed zeros). */
double tu_f64_from_bits(uint64_t b);

/* ---- tensors (compact row-major, f32 or f64 unless said otherwise) ----------------------- */

/* Zero-filled tensor of the given static shape (any dtype). */
ir_tensor_t tu_tensor(ir_dtype_t dt, int rank, const int64_t *dims);
double tu_get(const ir_tensor_t *t, int64_t i);
void tu_set(ir_tensor_t *t, int64_t i, double v);
/* Element i = offset + scale * tu_urand(rng), in element order. */
void tu_fill(ir_tensor_t *t, uint64_t *rng, double scale, double offset);
/* Same dtype, element count and bytes. */
bool tu_same_bits(const ir_tensor_t *a, const ir_tensor_t *b);
void tu_free_tensors(ir_tensor_t *t, int n);

/* Runs op's kernel on a bare node named `name` (no graph) and returns its status. */
ad_status_t tu_try_kernel(ir_op_t op, const char *name, const ir_attr_t *attrs, uint32_t nattrs,
                          const ir_tensor_t *in, uint32_t nin, ir_tensor_t *out, uint32_t nout,
                          ir_parallel_t *par);
/* tu_try_kernel; fails the test when the kernel fails. */
void tu_run_kernel(ir_op_t op, const char *name, const ir_attr_t *attrs, uint32_t nattrs,
                   const ir_tensor_t *in, uint32_t nin, ir_tensor_t *out, uint32_t nout,
                   ir_parallel_t *par);

/* ---- graphs --------------------------------------------------------------------------------- */

/* Parses a type such as "f32[B,L,8]" against m's symbols; fails the test when it does not parse. */
ir_type_t tu_type(const ir_module_t *m, const char *text);
ir_type_t tu_static_type(ir_dtype_t dt, int rank, const int64_t *dims);

/* ir_build of one node; out (may be NULL) gives its single output type. Returns IR_NONE on a
 * rejected node, the error staying in the graph. */
uint32_t tu_node(ir_graph_t *g, ir_op_t op, const char *name, const uint32_t *ins, uint32_t nin,
                 const ir_attr_t *attrs, uint32_t nattrs, const ir_type_t *out);
/* tu_node with the output type as text (NULL: inferred). */
uint32_t tu_node_text(ir_graph_t *g, ir_op_t op, const char *name, const uint32_t *ins,
                      uint32_t nin, const ir_attr_t *attrs, uint32_t nattrs, const char *out);
/* tu_node; fails the test when the graph holds an error afterwards. */
uint32_t tu_node_ok(ir_graph_t *g, ir_op_t op, const char *name, const uint32_t *ins,
                    uint32_t nin, const ir_attr_t *attrs, uint32_t nattrs, const ir_type_t *out);
/* An INPUT node; fails the test when it is rejected. */
uint32_t tu_input(ir_graph_t *g, const char *name, const ir_type_t *t);
uint32_t tu_input_text(ir_graph_t *g, const char *name, const char *type);
/* An OUTPUT node `name` of v; fails the test when the graph holds an error afterwards. */
void tu_output(ir_graph_t *g, const char *name, uint32_t v);

/* v must be IR_NONE and the graph's error tu_expect_invalid(n1, n2). */
void tu_expect_build_error(ir_graph_t *g, uint32_t v, const char *n1, const char *n2);

/* Nodes of op among g's nodes from index `from` on. */
int tu_count_op(const ir_graph_t *g, uint32_t from, ir_op_t op);
/* Printed text of m, NUL-terminated (malloc'd); *len (if not NULL) excludes the NUL. */
char *tu_print_module(const ir_module_t *m, size_t *len);

/* A module with one program, for one-node graphs. */
typedef struct tu_fx {
  ir_module_t *m;
  ir_graph_t *g;
} tu_fx_t;

/* Program "test", no symbols. */
tu_fx_t tu_fx_new(void);
/* Symbols B <= 4 and L <= 8, then program "main". */
tu_fx_t tu_fx_new_sym(void);
uint32_t tu_fx_input(tu_fx_t *f, const char *name, ir_dtype_t dt, int rank, const int64_t *dims);
uint32_t tu_fx_op(tu_fx_t *f, ir_op_t op, const char *name, const uint32_t *ins, uint32_t nin,
                  const ir_attr_t *attrs, uint32_t nattrs);
/* Builds op as node `name`, which must be rejected with a message naming the node and
 * containing needle (tu_expect_build_error). */
void tu_fx_expect_error(tu_fx_t *f, ir_op_t op, const char *name, const uint32_t *ins,
                        uint32_t nin, const ir_attr_t *attrs, uint32_t nattrs, const char *needle);
/* A zeroed tensor for value v (static shapes only). */
ir_tensor_t tu_tensor_of(const tu_fx_t *f, uint32_t v);
/* Runs the kernel of the node producing v on in[] into out (one output, shape preset). */
void tu_run_node(const tu_fx_t *f, uint32_t v, ir_tensor_t *in, uint32_t nin, ir_tensor_t *out,
                 ir_parallel_t *par);

/* ---- files ---------------------------------------------------------------------------------- */

/* $AIDOMM_SOURCE_DIR, or "." when unset. */
const char *tu_source_dir(void);
/* tu_source_dir()/rel in one of 8 rotating static buffers. */
const char *tu_source_path(const char *rel);
/* The whole file, NUL-terminated (malloc'd); fails the test when it cannot be read. */
char *tu_read_file(const char *path, size_t *len);
/* tu_read_file of tu_source_path(rel), for texts that hold no NUL bytes. */
char *tu_read_source(const char *rel);
/* The value of a lowercase hexadecimal digit; -1 for any other character. */
int tu_hexval(char c);
void tu_write_file(const char *path, const void *data, size_t n);
/* Calls fn(path, name, ctx) for each entry of dir whose name is longer than and ends with
 * suffix (directory order); fails the test when dir cannot be opened. Returns the count. */
int tu_for_each_file(const char *dir, const char *suffix,
                     void (*fn)(const char *path, const char *name, void *ctx), void *ctx);

/* One temporary directory per process: /tmp/aidomm_test_TAG.XXXXXX. */
const char *tu_tmpdir_create(const char *tag);
/* The directory tu_tmpdir_create made. */
const char *tu_tmpdir(void);
/* Removes its files and itself (nothing when it does not exist). */
void tu_tmpdir_remove(void);
/* tmpdir/name in one of 8 rotating static buffers. */
char *tu_tmpdir_path(const char *name);

/* ---- tools ---------------------------------------------------------------------------------- */

/* Writes $AIDOMM_BIN_DIR/tool (build/bin/tool when the variable is unset) into buf. */
void tu_bin_path(char *buf, size_t size, const char *tool);

typedef struct tu_proc {
  int code; /* exit status, or 128+signal */
  char *out, *err;
  size_t out_len, err_len;
} tu_proc_t;

/* Runs bin with the NULL-terminated arguments; stdout and stderr are captured through files
 * in the temporary directory (no pipe deadlock on big outputs). */
tu_proc_t tu_run_tool(const char *bin, const char *arg0, ...);
void tu_proc_free(tu_proc_t *r);
int tu_count_lines(const char *s, size_t n);

#endif
