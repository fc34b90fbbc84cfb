/* Row index and label matrix for the GenBio isoform-expression TSVs (and any tab-separated file
 * with a header row).
 *
 * One streaming pass over the file, in fixed-size chunks, records for every data row its byte
 * offset, byte length (without the line terminator) and 1-based line number, and parses the
 * label columns (selected by header name) into an f64 matrix [N, K]. Memory during the scan is
 * the chunk plus the header line plus one short label field, whatever the file size; the DNA,
 * RNA and protein fields are never held. Rows are read later, one at a time, with pread.
 *
 * Accepted input, as the peer's pandas reader (sep="\t", keep_default_na=False) sees it:
 * - LF or CRLF line ends; a UTF-8 byte order mark before the header; blank lines are skipped;
 *   a final line without a newline is a row.
 * - Every row has exactly as many fields as the header; fewer (a truncated row) or more is an
 *   error naming the file and line. Fields are not quote-processed.
 * - A label field must be a finite decimal number (surrounding spaces allowed); empty, NaN,
 *   inf or other text is an error naming the file, line and column. Sequence fields may be
 *   empty (a non-coding transcript has no protein).
 * - A line longer than `max_line` bytes is an error naming the file and line.
 *
 * The index is cached in a sidecar file keyed by the data file's absolute path, size and
 * modification time (nanoseconds) plus the selection (label names, x columns, renames, line
 * cap). The sidecar is written atomically (temp file, fsync, rename) and carries a checksum; a
 * sidecar whose key differs is rebuilt, and one that is unreadable, truncated or corrupt is
 * ignored and rebuilt, never trusted. */
#ifndef AIDOMM_RUNTIME_TSV_H
#define AIDOMM_RUNTIME_TSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/status.h"

#define RT_TSV_DEFAULT_MAX_LINE ((size_t)8 << 20)   /* DNA 196,608 + RNA + protein fit easily */
#define RT_TSV_DEFAULT_CHUNK ((size_t)1 << 20)
#define RT_TSV_MAX_LABEL_FIELD 64                   /* longest accepted label text, in bytes */

/* rename_cols entry: header column `from` is presented to the model as `to`. */
typedef struct rt_tsv_rename {
  const char *from, *to;
} rt_tsv_rename_t;

typedef struct rt_tsv_options {
  const char *const *y_cols; /* label columns, by header name, in output order */
  size_t n_y;
  const char *const *x_cols; /* input columns, by header name (before renaming) */
  size_t n_x;
  /* Renames apply to x columns only; entries naming a column not in x_cols are ignored, as the
   * peer only hands the selected x columns to the model. */
  const rt_tsv_rename_t *renames;
  size_t n_renames;
  size_t max_line;   /* 0: RT_TSV_DEFAULT_MAX_LINE; must be < 4 GiB */
  size_t chunk_size; /* read size of the scan; 0: RT_TSV_DEFAULT_CHUNK */
  /* Where the sidecar goes: NULL puts ".<name>.aidomm-idx" beside the data file; a directory
   * gets "<name>-<hash of the absolute path>.aidomm-idx". */
  const char *cache_dir;
  bool no_cache; /* neither read nor write a sidecar */
} rt_tsv_options_t;

typedef struct rt_tsv_index rt_tsv_index_t;

/* Opens `path`, reusing a matching sidecar or scanning the file (and then writing the
 * sidecar; failing to write it is not an error, the index is still returned). */
ad_status_t rt_tsv_open(const char *path, const rt_tsv_options_t *opt, rt_tsv_index_t **out);
void rt_tsv_close(rt_tsv_index_t *idx);

const char *rt_tsv_path(const rt_tsv_index_t *idx);
int64_t rt_tsv_rows(const rt_tsv_index_t *idx);
size_t rt_tsv_num_cols(const rt_tsv_index_t *idx); /* fields per row (header width) */
size_t rt_tsv_num_labels(const rt_tsv_index_t *idx);
const char *rt_tsv_label_name(const rt_tsv_index_t *idx, size_t k);
/* labels: [N, K] row-major, as read (not z-scored). */
const double *rt_tsv_labels(const rt_tsv_index_t *idx);
size_t rt_tsv_num_x(const rt_tsv_index_t *idx);
const char *rt_tsv_x_name(const rt_tsv_index_t *idx, size_t j);     /* after renaming */
const char *rt_tsv_x_header(const rt_tsv_index_t *idx, size_t j);   /* as in the header */
size_t rt_tsv_x_column(const rt_tsv_index_t *idx, size_t j);        /* 0-based field index */
uint64_t rt_tsv_row_offset(const rt_tsv_index_t *idx, int64_t i);
uint32_t rt_tsv_row_length(const rt_tsv_index_t *idx, int64_t i);   /* without CR/LF */
uint32_t rt_tsv_row_line(const rt_tsv_index_t *idx, int64_t i);     /* 1-based */

/* Observability for tests and progress: whether this index came from the sidecar (no scan),
 * bytes the scan read (0 when cached), and the high-water mark of the scan's buffers (0 when
 * cached): chunk + header line + one label field, independent of the file size. */
bool rt_tsv_from_cache(const rt_tsv_index_t *idx);
uint64_t rt_tsv_bytes_scanned(const rt_tsv_index_t *idx);
size_t rt_tsv_scan_buffer_peak(const rt_tsv_index_t *idx);
/* The sidecar path this index uses (NULL with no_cache). */
const char *rt_tsv_sidecar_path(const rt_tsv_index_t *idx);

/* One row read back: a caller-owned buffer reused across reads, so one per reader thread.
 * field[c] / field_len[c] point into `buf` for every column c of the header; fields are not
 * NUL-terminated. */
typedef struct rt_tsv_row {
  char *buf;
  size_t cap;
  const char **field;
  size_t *field_len;
  size_t ncols;
} rt_tsv_row_t;

void rt_tsv_row_free(rt_tsv_row_t *row);
/* Reads row i with pread (safe to call from several threads, each with its own row). A row
 * whose bytes no longer match the index (the file changed) is a DATA_LOSS error. */
ad_status_t rt_tsv_read_row(const rt_tsv_index_t *idx, int64_t i, rt_tsv_row_t *row);
/* x column j of a row read from idx. */
static inline const char *rt_tsv_row_x(const rt_tsv_index_t *idx, const rt_tsv_row_t *row,
                                       size_t j, size_t *len) {
  size_t c = rt_tsv_x_column(idx, j);
  *len = row->field_len[c];
  return row->field[c];
}

/* z-score statistics over the concatenation of the label matrices of several indexes (train +
 * validation): mean[k] and the population std[k] (ddof = 0), both [K], accumulated in f64
 * with compensated summation. All indexes must select the same label names. A constant column
 * gives std 0; an empty concatenation is an error. */
ad_status_t rt_tsv_zscore_stats(const rt_tsv_index_t *const *idx, size_t n, double *mean,
                                double *std);

#endif
