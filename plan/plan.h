/* The plan file: everything aidommc decided, in one versioned, checksummed container that the
 * runtime loads without re-deriving anything.
 *
 * Layout (all integers little-endian, offsets 64-bit):
 *
 *   0   header, PLAN_HEADER_SIZE (64) bytes
 *         [0,8)   magic "AIDOMMPL"
 *         [8,12)  u32 format version (PLAN_FORMAT_VERSION)
 *         [12,16) u32 header size (64)
 *         [16,24) u64 file size
 *         [24,28) u32 section count
 *         [28,32) u32 crc32 (zlib) of the whole file computed with these 4 bytes zeroed
 *         [32,64) reserved, zero
 *   64  section table: count x { u32 kind, u32 flags (0), u64 offset, u64 size }
 *       section payloads, each 8-byte aligned; the padding between them is zero and, like every
 *       other byte, covered by the checksum.
 *
 * Sections (each exactly once):
 *   META     JSON {aidomm_version, format_version, created_by, target_cpu, llvm_version,
 *                  nvrtc_version, job}
 *   CONFIG   the resolved YAML text
 *   MODULE   ir_serialize_module bytes
 *   MEMPLAN  per program: name, reuse flag, value count, per value (offset, size), peak, total
 *   JOB      JSON {kind, seed, max_steps, batch_size, max_length, dtype, optimizer {name, lr,
 *                  beta1, beta2, eps, weight_decay}}
 *   CODE     code blobs (empty until codegen lands; always present)
 *
 * plan_read rejects anything malformed with one line naming the file and the reason, as a
 * DATA_LOSS (corrupt, truncated) or INVALID_ARGUMENT (not a plan, unreadable, newer format)
 * status; it never crashes on hostile input. */
#ifndef AIDOMM_PLAN_PLAN_H
#define AIDOMM_PLAN_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"
#include "passes/passes.h"
#include "support/arena.h"
#include "support/buf.h"
#include "support/status.h"

#define PLAN_MAGIC "AIDOMMPL"
#define PLAN_FORMAT_VERSION 1u
#define PLAN_HEADER_SIZE 64u
#define PLAN_SECTION_ENTRY_SIZE 24u
#define PLAN_ALIGN 8u
/* Byte offsets of header fields, shared with the tests that forge plans. */
#define PLAN_OFF_VERSION 8u
#define PLAN_OFF_HEADER_SIZE 12u
#define PLAN_OFF_FILE_SIZE 16u
#define PLAN_OFF_SECTION_COUNT 24u
#define PLAN_OFF_CRC 28u

typedef enum plan_section_kind {
  PLAN_SECTION_META = 1,
  PLAN_SECTION_CONFIG = 2,
  PLAN_SECTION_MODULE = 3,
  PLAN_SECTION_MEMPLAN = 4,
  PLAN_SECTION_JOB = 5,
  PLAN_SECTION_CODE = 6,
} plan_section_kind_t;
#define PLAN_SECTION_KIND_MAX 6

/* "META", "CONFIG", ... ; "?" for unknown kinds. */
const char *plan_section_name(uint32_t kind);

typedef enum plan_job_kind {
  PLAN_JOB_FIT = 0,
  PLAN_JOB_VALIDATE,
  PLAN_JOB_TEST,
  PLAN_JOB_PREDICT,
  PLAN_JOB_COUNT
} plan_job_kind_t;

const char *plan_job_kind_name(plan_job_kind_t k); /* "fit", "validate", "test", "predict" */
bool plan_job_kind_from_name(const char *s, plan_job_kind_t *out);

/* What the runtime should do with the plan, resolved from the config (fe_job_t) + --job. */
typedef struct plan_job {
  plan_job_kind_t kind;
  int64_t seed;
  int64_t max_steps;
  int64_t batch_size;   /* the bound of the batch symbol */
  int64_t max_length;   /* the bound of the length symbol (data max_length) */
  ir_dtype_t dtype;     /* compute precision (trainer.precision): f32 or f64 */
  /* AdamW; finite values only (JSON has no NaN/inf) */
  double lr, beta1, beta2, eps, weight_decay;
} plan_job_t;

/* Provenance. Strings live in the plan's arena. */
typedef struct plan_meta {
  const char *aidomm_version; /* AIDOMM_VERSION of the writer */
  uint32_t format_version;    /* PLAN_FORMAT_VERSION after a read */
  const char *created_by;     /* "aidommc" */
  const char *target_cpu;     /* "host" until codegen picks one */
  const char *llvm_version;   /* "none" until codegen */
  const char *nvrtc_version;  /* "none" until codegen */
} plan_meta_t;

/* One program's memory plan (see pass_memplan): offsets/sizes in bytes at the bound. */
typedef struct plan_memplan {
  const char *program; /* name of the module program it belongs to */
  int reuse;           /* 1: buffers reuse arena space by liveness; 0: the debug layout */
  uint32_t nvalues;
  int64_t *offset;     /* [nvalues]: arena offset or -1 (no storage / state alias) */
  int64_t *size;       /* [nvalues] */
  int64_t peak_bytes;  /* arena size for this program */
  int64_t total_bytes; /* the peak without reuse */
} plan_memplan_t;

typedef struct plan {
  ad_arena_t arena; /* strings, config text, memplan arrays, code bytes */
  plan_meta_t meta;
  plan_job_t job;
  const char *config_yaml; /* NUL-terminated; config_len excludes the NUL */
  size_t config_len;
  ir_module_t *module;     /* owned */
  plan_memplan_t *memplans;/* one per module program, in program order (arena) */
  uint32_t nmemplans;
  const uint8_t *code;     /* (arena) */
  size_t code_len;
} plan_t;

/* An empty plan with default meta (this aidomm's version, created_by "aidommc", target "host",
 * compiler versions "none") and a fit job. */
plan_t *plan_create(void);
void plan_free(plan_t *p);

/* Copies the YAML text into the plan. */
void plan_set_config(plan_t *p, const char *yaml, size_t len);
/* The plan takes ownership of m (freeing any previous module and its memory plans). */
void plan_set_module(plan_t *p, ir_module_t *m);
void plan_set_meta(plan_t *p, const char *created_by, const char *target_cpu);
/* Runs pass_memplan(reuse) over every program of p->module and stores the results. */
ad_status_t plan_plan_memory(plan_t *p, int reuse);
/* The memory plan of a program, or NULL. */
const plan_memplan_t *plan_find_memplan(const plan_t *p, const char *program);

/* Serialises the plan (deterministic: the same plan gives the same bytes). Fails on a plan
 * that cannot be represented (no module, non-finite optimizer settings, ...). */
ad_status_t plan_encode(const plan_t *p, ad_buf_t *out);
/* Decodes and validates plan bytes; `name` (the file name) starts every error message. */
ad_status_t plan_decode(const uint8_t *data, size_t len, const char *name, plan_t **out);

/* Writes atomically: temp file in the same directory, fsync, rename, fsync of the directory.
 * On failure the destination is untouched and no temp file is left behind. */
ad_status_t plan_write(const plan_t *p, const char *path);
ad_status_t plan_read(const char *path, plan_t **out);

#endif
