/* The splits of an IsoformExpression-style dataset: which files make each split, their row
 * indexes (runtime/tsv.h), and the label z-scoring of modelgenerator.md §6.
 *
 * Files: data.init_args.path is a local folder, or a hub id looked up as $AIDOMM_DATA/<path>;
 * each split's pattern (train_split_files "train_*.tsv", valid_split_files "validation.tsv",
 * test_split_files "test.tsv") is expanded with glob(3) in that folder, sorted by name, and the
 * matching files are concatenated in that order. A pattern matching nothing is an error naming
 * the folder and the pattern.
 *
 * Rows are numbered 0..N-1 across the split's files. Labels are the y columns (labels_0..29)
 * as read; rt_zscore_* give the peer's normalisation: mean and population std over train +
 * validation, labels -> (y - mean) / std. */
#ifndef AIDOMM_RUNTIME_DATASET_H
#define AIDOMM_RUNTIME_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "frontend/frontend.h"
#include "runtime/tsv.h"

typedef enum rt_split_kind {
  RT_SPLIT_TRAIN = 0,
  RT_SPLIT_VALID,
  RT_SPLIT_TEST,
  RT_SPLIT_COUNT
} rt_split_kind_t;

const char *rt_split_name(rt_split_kind_t s); /* "train", "validation", "test" */

typedef struct rt_dataset rt_dataset_t;

typedef struct rt_dataset_options {
  const char *cache_dir; /* sidecar placement (rt_tsv_options_t.cache_dir); NULL beside the data */
  bool no_cache;
  size_t max_line;       /* 0: the default cap */
  /* predict: files without the label columns are accepted (the peer's predict stage does not
   * require "labels"); their rows read as labels of 0 */
  bool labels_optional;
} rt_dataset_options_t;

/* The folder the job's data path names (malloc'd), or an error naming the places searched. */
ad_status_t rt_dataset_folder(const fe_job_t *job, char **out);

/* Opens one split: every file matching its pattern, indexed with the job's x and y columns. */
ad_status_t rt_dataset_open(const fe_job_t *job, rt_split_kind_t split,
                            const rt_dataset_options_t *opt, rt_dataset_t **out);
void rt_dataset_close(rt_dataset_t *ds);

rt_split_kind_t rt_dataset_split(const rt_dataset_t *ds);
int64_t rt_dataset_rows(const rt_dataset_t *ds);
size_t rt_dataset_num_labels(const rt_dataset_t *ds);
size_t rt_dataset_num_files(const rt_dataset_t *ds);
const rt_tsv_index_t *rt_dataset_file(const rt_dataset_t *ds, size_t f);
/* Row i of the split: its file's index and the row within that file. */
void rt_dataset_locate(const rt_dataset_t *ds, int64_t i, const rt_tsv_index_t **idx,
                       int64_t *local);
/* Whether the split's files carry no label columns (labels_optional). */
bool rt_dataset_unlabeled(const rt_dataset_t *ds);
/* The raw labels of row i: [K] (zeros for an unlabeled split). */
const double *rt_dataset_labels(const rt_dataset_t *ds, int64_t i);
/* The x column named `name` after renaming (e.g. "dna_seq_sequences"), or -1. */
int64_t rt_dataset_x_by_name(const rt_dataset_t *ds, const char *name);
/* The header field of transcript_id in row i's file, or -1 when that file has none. */
int64_t rt_dataset_id_field(const rt_dataset_t *ds, int64_t i);
/* The 0-based header field of a column named `header` (e.g. "transcript_id"), or -1. */
int64_t rt_dataset_header_field(const rt_dataset_t *ds, const char *header);

/* z-score statistics: mean and population std per label column, [K] each. */
typedef struct rt_zscore {
  size_t k;
  double *mean, *std;
} rt_zscore_t;

/* Over the concatenation of the given splits (train, validation). A column with std 0 is an
 * error: the peer divides by it and trains on NaN. */
ad_status_t rt_zscore_compute(const rt_dataset_t *const *ds, size_t n, rt_zscore_t *out);
void rt_zscore_free(rt_zscore_t *z);
/* As JSON text ({"mean": [...], "std": [...]}, round-trip exact) for checkpoint metadata, and
 * back. */
char *rt_zscore_to_json(const rt_zscore_t *z);
ad_status_t rt_zscore_from_json(const char *text, rt_zscore_t *out);

#endif
