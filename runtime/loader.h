/* Batches from a split for a program's INPUT nodes, assembled by a reader thread one batch
 * ahead of the consumer (double buffering: the thread fills one slot while the model runs on
 * the other), as the peer's DataLoader + collate + transform do:
 *
 *   labels              [B, K] model dtype: the row's labels, z-scored when stats are given
 *   <omic>_one_hot      [B, L, 4]: Enformer's str_to_one_hot of the DNA column, centre-cropped
 *                       to data.dna_window when set; a length other than L is an error naming
 *                       the file and line (the peer cannot stack it either)
 *   <omic>_input_ids    [B, L_omic] i64 and <omic>_attention_mask [B, L_omic] model dtype: the
 *                       backbone's tokenizer, truncated to the bound of L_omic, padded to the
 *                       longest row of the batch
 *
 * The data column of backbone omic O is the x column renamed to "O_sequences" (MMSequenceRegression)
 * or "sequences" (SequenceRegression). Rows are read with pread; memory is two batches of row
 * text and tensors, whatever the file size. */
#ifndef AIDOMM_RUNTIME_LOADER_H
#define AIDOMM_RUNTIME_LOADER_H

#include "frontend/frontend.h"
#include "runtime/dataset.h"
#include "runtime/train.h"

typedef struct rt_loader_options {
  const ir_graph_t *g;          /* the program to feed (borrowed) */
  const fe_job_t *job;          /* backbones, dna_window (borrowed) */
  const rt_dataset_t *ds;       /* (borrowed) */
  const rt_zscore_t *zscore;    /* NULL: labels as read */
  const int64_t *order;         /* split rows in feed order (copied); NULL: 0..n-1 */
  int64_t nrows;                /* rows to feed; with order NULL, <= the split's rows */
  int64_t batch_size;           /* <= the bound of the program's batch symbol */
  bool drop_last;               /* a short final batch is skipped */
  bool no_thread;               /* assemble in the caller's thread (tests, debugging) */
} rt_loader_options_t;

/* One assembled batch: the feeds (and symbol values) plus what evaluation needs. */
typedef struct rt_data_batch {
  rt_batch_t feeds;
  int64_t n;           /* rows */
  int64_t index;       /* 0-based batch number */
  const int64_t *rows; /* [n] split row ids */
  const double *labels;/* [n, K] f64, z-scored when stats were given */
} rt_data_batch_t;

typedef struct rt_loader rt_loader_t;

ad_status_t rt_loader_create(const rt_loader_options_t *o, rt_loader_t **out);
/* Stops the reader thread and frees both slots. */
void rt_loader_free(rt_loader_t *l);
int64_t rt_loader_num_batches(const rt_loader_t *l);
/* The next batch (valid until the next call), or *out = NULL at the end. An error assembling
 * a batch is returned when that batch is reached. */
ad_status_t rt_loader_next(rt_loader_t *l, const rt_data_batch_t **out);

#endif
