/* Strict safetensors reader and atomic writer (checkpoints, pretrained weights, golden fixtures).
 *
 * Format: u64 little-endian header length N, N bytes of JSON header, then the data area.
 * The header is an object: "__metadata__" (optional) maps strings to strings; every other key
 * is a tensor {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} with offsets
 * relative to the data area. The reader rejects, with AD_STATUS_DATA_LOSS naming the file and
 * the problem: a short file, a header length past the end, a header that is not a JSON object,
 * duplicate keys, unknown fields or dtypes, negative or non-integer dims, offsets outside the
 * data area, a byte size that is not numel * dtype size, and overlapping tensors, gaps or
 * trailing bytes (the reference Rust implementation requires the tensors to tile the data area
 * exactly, so we do too). Nothing in a corrupt file can crash the reader.
 *
 * Tensor data pointers are aligned to their dtype size: when a file's layout leaves a tensor
 * misaligned (header length not a multiple of 8), the data area is copied into aligned memory. */
#ifndef AIDOMM_RUNTIME_SAFETENSORS_H
#define AIDOMM_RUNTIME_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"
#include "support/status.h"

#define RT_ST_MAX_RANK 8

typedef enum rt_st_dtype {
  RT_ST_F64 = 0,
  RT_ST_F32,
  RT_ST_BF16,
  RT_ST_F16,
  RT_ST_I64,
  RT_ST_I32,
  RT_ST_U8,
  RT_ST_BOOL,
  RT_ST_DTYPE_COUNT
} rt_st_dtype_t;

const char *rt_st_dtype_name(rt_st_dtype_t t); /* "F64", "F32", ... as in the header */
bool rt_st_dtype_from_name(const char *s, rt_st_dtype_t *out);
size_t rt_st_dtype_size(rt_st_dtype_t t);
/* BOOL has no IR dtype. */
bool rt_st_dtype_to_ir(rt_st_dtype_t t, ir_dtype_t *out);
bool rt_st_dtype_from_ir(ir_dtype_t t, rt_st_dtype_t *out);

/* One tensor; for the reader every pointer is owned by the file handle. */
typedef struct rt_st_tensor {
  const char *name;
  rt_st_dtype_t dtype;
  int32_t rank;
  int64_t shape[RT_ST_MAX_RANK];
  const void *data;
  size_t nbytes;
} rt_st_tensor_t;

int64_t rt_st_numel(const rt_st_tensor_t *t);
/* A read-only view as an IR tensor (false for BOOL or rank > IR_MAX_RANK). */
bool rt_st_as_ir_tensor(const rt_st_tensor_t *t, ir_tensor_t *out);

typedef struct rt_st_kv {
  const char *key;
  const char *value;
} rt_st_kv_t;

typedef struct rt_st_file rt_st_file_t;

/* Maps (or reads) and validates the whole file. */
ad_status_t rt_st_open(const char *path, rt_st_file_t **out);
/* Validates a buffer in memory; it is borrowed (must outlive the handle) unless it needs
 * realigning. `label` names the buffer in errors. */
ad_status_t rt_st_open_memory(const void *data, size_t len, const char *label, rt_st_file_t **out);
void rt_st_close(rt_st_file_t *f);

const char *rt_st_path(const rt_st_file_t *f);
/* Tensors sorted by name (strcmp order). */
size_t rt_st_count(const rt_st_file_t *f);
const rt_st_tensor_t *rt_st_at(const rt_st_file_t *f, size_t i);
/* NULL when absent. */
const rt_st_tensor_t *rt_st_find(const rt_st_file_t *f, const char *name);
/* __metadata__ value, or NULL. */
const char *rt_st_metadata(const rt_st_file_t *f, const char *key);
size_t rt_st_metadata_count(const rt_st_file_t *f);
const rt_st_kv_t *rt_st_metadata_at(const rt_st_file_t *f, size_t i); /* sorted by key */

/* Writes tensors (data taken from each .data, .nbytes ignored) and metadata atomically: a temp
 * file in the destination directory, fsync, rename over `path`, fsync of the directory. The
 * data area is 8-byte aligned (the header is padded with spaces) and holds the tensors widest
 * dtype first, then by name, as Python's safetensors does, so every tensor is aligned.
 * Duplicate names, negative dims and a "__metadata__" tensor name are INVALID_ARGUMENT. */
ad_status_t rt_st_write(const char *path, const rt_st_tensor_t *tensors, size_t ntensors,
                        const rt_st_kv_t *meta, size_t nmeta);

#endif
