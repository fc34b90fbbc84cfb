#include "runtime/loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer.h"

typedef enum feed_kind { FEED_LABELS, FEED_ONEHOT, FEED_IDS, FEED_MASK } feed_kind_t;

typedef struct feed_spec {
  const char *name;
  feed_kind_t kind;
  ir_dtype_t dtype;
  int bb;         /* backbone index (not for labels) */
  int len_sym;    /* IDS/MASK: symbol of dim 1 */
  int64_t len;    /* ONEHOT: the static length; IDS/MASK: the bound (truncation) */
} feed_spec_t;

typedef struct bb_spec {
  int64_t x;          /* x column index */
  rt_tok_kind_t tok;
  int64_t max_length; /* truncation for id tokenizers */
} bb_spec_t;

typedef struct slot {
  rt_data_batch_t b;
  int64_t *rows;          /* [batch_size] */
  double *labels;         /* [batch_size, K] */
  rt_tsv_row_t *text;     /* [batch_size] */
  const rt_tsv_index_t **idx; /* [batch_size]: the file of each row (columns may differ) */
  rt_tok_str_t *strs;     /* [batch_size] */
  ad_status_t st;
  int state;              /* 0 free, 1 filling, 2 ready */
  int64_t batch;          /* the batch number it holds */
} slot_t;

struct rt_loader {
  rt_loader_options_t o;
  int64_t *order;   /* [nrows] */
  int64_t nbatches;
  size_t k;
  int batch_sym;
  feed_spec_t *feeds;
  uint32_t nfeeds;
  bb_spec_t bbs[FE_MAX_BACKBONES];
  slot_t slot[2];
  int64_t next_fill, next_take;
  bool threaded, stop;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

static ad_status_t oom(void) { return ad_status_make(AD_STATUS_RESOURCE, "out of memory"); }

static bool ends_with(const char *s, const char *suf, size_t *stem) {
  size_t n = strlen(s), m = strlen(suf);
  if (n <= m || strcmp(s + n - m, suf) != 0) return false;
  *stem = n - m;
  return true;
}

static int find_backbone(const fe_job_t *job, const char *name, size_t stem) {
  for (uint32_t i = 0; i < job->nbackbones; i++)
    if (strlen(job->backbones[i].omic) == stem && strncmp(job->backbones[i].omic, name, stem) == 0)
      return (int)i;
  return -1;
}

static ad_status_t plan_feeds(rt_loader_t *l) {
  const ir_graph_t *g = l->o.g;
  const fe_job_t *job = l->o.job;
  l->feeds = calloc(g->nnodes ? g->nnodes : 1, sizeof *l->feeds);
  if (!l->feeds) return oom();
  l->batch_sym = -1;
  for (uint32_t i = 0; i < job->nbackbones; i++) {
    const fe_job_backbone_t *b = &job->backbones[i];
    char col[256];
    if (strcmp(b->omic, "sequences") == 0)
      snprintf(col, sizeof col, "sequences");
    else
      snprintf(col, sizeof col, "%s_sequences", b->omic);
    l->bbs[i].x = rt_dataset_x_by_name(l->o.ds, col);
    l->bbs[i].tok = b->tokenizer == FE_TOKENIZER_DNA_ONEHOT ? RT_TOK_KIND_DNA_ONEHOT
                    : b->tokenizer == FE_TOKENIZER_RNABERT  ? RT_TOK_KIND_RNABERT
                                                            : RT_TOK_KIND_ESM2;
    if (l->bbs[i].x < 0)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "%s (%s) reads the data column '%s', but no x_col is renamed to it "
                            "(data.init_args.x_col and rename_cols; the split's first file is %s)",
                            b->prefix, b->class_path, col,
                            rt_tsv_path(rt_dataset_file(l->o.ds, 0)));
  }
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (n->op != IR_OP_INPUT) continue;
    const ir_type_t *t = &g->values[n->output0].type;
    feed_spec_t f = {.name = n->name, .dtype = t->dtype, .bb = -1, .len_sym = -1};
    size_t stem = 0;
    if (strcmp(n->name, "labels") == 0) {
      f.kind = FEED_LABELS;
      int64_t k = 0;
      if (t->rank != 2 || !ir_dim_is_const(t->dims[1], &k) || (size_t)k != l->k)
        return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                              "the model predicts %lld outputs but the data has %zu label "
                              "columns (num_outputs must match y_col)",
                              (long long)k, l->k);
    } else if (ends_with(n->name, "_one_hot", &stem)) {
      f.kind = FEED_ONEHOT;
      f.bb = find_backbone(l->o.job, n->name, stem);
      if (t->rank != 3 || !ir_dim_is_const(t->dims[1], &f.len))
        return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "input '%s' is not [B, L, 4]", n->name);
    } else if (ends_with(n->name, "_input_ids", &stem) ||
               ends_with(n->name, "_attention_mask", &stem)) {
      f.kind = strstr(n->name + stem, "_input_ids") ? FEED_IDS : FEED_MASK;
      f.bb = find_backbone(l->o.job, n->name, stem);
      f.len_sym = t->rank == 2 ? ir_dim_symbol(t->dims[1]) : -1;
      if (f.len_sym < 0)
        return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                              "input '%s' has no symbolic length (expected [B, L])", n->name);
      f.len = g->module->symbols[f.len_sym].bound;
    } else {
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "the program input '%s' is not one the data pipeline feeds (labels, "
                            "<omic>_one_hot, <omic>_input_ids, <omic>_attention_mask)",
                            n->name);
    }
    if (f.kind != FEED_LABELS) {
      if (f.bb < 0)
        return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                              "the program input '%s' belongs to no backbone of the config",
                              n->name);
      bool dna = l->bbs[f.bb].tok == RT_TOK_KIND_DNA_ONEHOT;
      if (dna != (f.kind == FEED_ONEHOT))
        return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                              "input '%s' does not match its backbone's tokenizer", n->name);
      if (!dna) l->bbs[f.bb].max_length = f.len;
    }
    int bs = t->rank >= 1 ? ir_dim_symbol(t->dims[0]) : -1;
    if (bs < 0)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "input '%s' has no batch dimension",
                            n->name);
    if (l->batch_sym >= 0 && bs != l->batch_sym)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "inputs disagree on the batch symbol");
    l->batch_sym = bs;
    l->feeds[l->nfeeds++] = f;
  }
  if (l->batch_sym < 0)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "the program has no inputs to feed");
  int64_t bound = g->module->symbols[l->batch_sym].bound;
  if (l->o.batch_size > bound)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "data.batch_size %lld exceeds the plan's batch bound %lld; recompile "
                          "with aidommc compile --data.batch_size %lld",
                          (long long)l->o.batch_size, (long long)bound,
                          (long long)l->o.batch_size);
  return AD_OK;
}

/* DNA text of a row, centre-cropped to the window as the frontend documents. */
static rt_tok_str_t dna_view(const char *s, size_t n, int64_t window) {
  if (window > 0 && n > (size_t)window) {
    size_t start = (n - (size_t)window) / 2;
    return (rt_tok_str_t){s + start, (size_t)window};
  }
  return (rt_tok_str_t){s, n};
}

static ad_status_t put_feed(rt_batch_t *fb, const char *name, void *data, size_t bytes) {
  fb->feeds[fb->nfeeds++] = (rt_feed_t){name, data, bytes};
  return AD_OK;
}

static void clear_feeds(rt_batch_t *fb) {
  for (uint32_t i = 0; i < fb->nfeeds; i++) free((void *)fb->feeds[i].data);
  fb->nfeeds = 0;
}

/* Assembles batch `b` into slot s. */
static ad_status_t fill(rt_loader_t *l, slot_t *s, int64_t b) {
  const rt_dataset_t *ds = l->o.ds;
  int64_t first = b * l->o.batch_size;
  int64_t n = l->o.nrows - first < l->o.batch_size ? l->o.nrows - first : l->o.batch_size;
  rt_batch_t *fb = &s->b.feeds;
  clear_feeds(fb);
  ir_module_bounds(l->o.g->module, fb->symvals);
  fb->symvals[l->batch_sym] = n;
  s->b.n = n;
  s->b.index = b;
  s->b.rows = s->rows;
  s->b.labels = s->labels;
  for (int64_t r = 0; r < n; r++) {
    int64_t row = l->order[first + r];
    s->rows[r] = row;
    const rt_tsv_index_t *idx;
    int64_t local;
    rt_dataset_locate(ds, row, &idx, &local);
    s->idx[r] = idx;
    AD_RETURN_IF_ERROR(rt_tsv_read_row(idx, local, &s->text[r]));
    const double *y = rt_dataset_labels(ds, row);
    for (size_t k = 0; k < l->k; k++) {
      double v = y[k];
      if (l->o.zscore) v = (v - l->o.zscore->mean[k]) / l->o.zscore->std[k];
      s->labels[(size_t)r * l->k + k] = v;
    }
  }
  /* one tokenization per backbone, shared by its ids and mask inputs */
  rt_tok_batch_t tok[FE_MAX_BACKBONES];
  memset(tok, 0, sizeof tok);
  ad_status_t st = AD_OK;
  for (uint32_t i = 0; i < l->nfeeds && !st; i++) {
    const feed_spec_t *f = &l->feeds[i];
    size_t esz = ir_dtype_size(f->dtype);
    if (f->kind == FEED_LABELS) {
      void *d = malloc((size_t)n * l->k * esz);
      if (!d) { st = oom(); break; }
      for (size_t j = 0; j < (size_t)n * l->k; j++) {
        if (f->dtype == IR_DTYPE_F64) ((double *)d)[j] = s->labels[j];
        else ((float *)d)[j] = (float)s->labels[j];
      }
      put_feed(fb, f->name, d, (size_t)n * l->k * esz);
      continue;
    }
    const bb_spec_t *bb = &l->bbs[f->bb];
    for (int64_t r = 0; r < n; r++) {
      size_t len;
      const char *p = rt_tsv_row_x(s->idx[r], &s->text[r], (size_t)bb->x, &len);
      s->strs[r] = f->kind == FEED_ONEHOT ? dna_view(p, len, l->o.job->dna_window)
                                          : (rt_tok_str_t){p, len};
    }
    if (f->kind == FEED_ONEHOT) {
      for (int64_t r = 0; r < n; r++)
        if ((int64_t)s->strs[r].len != f->len) {
          const rt_tsv_index_t *idx;
          int64_t local;
          rt_dataset_locate(ds, s->rows[r], &idx, &local);
          size_t col = rt_tsv_x_column(idx, (size_t)bb->x);
          st = ad_status_at(AD_STATUS_INVALID_ARGUMENT, rt_tsv_path(idx),
                            (int)rt_tsv_row_line(idx, local), (int)col + 1,
                            "%s has %zu bases but %s takes exactly %lld%s",
                            rt_tsv_x_header(idx, (size_t)bb->x), s->strs[r].len,
                            l->o.job->backbones[f->bb].prefix, (long long)f->len,
                            l->o.job->dna_window > 0
                                ? " (after the data.dna_window crop)"
                                : "; set data.init_args.dna_window to centre-crop longer windows");
          break;
        }
      if (st) break;
      void *d = NULL;
      int64_t L = 0;
      st = rt_tok_dna_onehot(s->strs, (size_t)n, f->dtype, &d, &L);
      if (st) break;
      put_feed(fb, f->name, d, (size_t)n * (size_t)L * 4 * esz);
      continue;
    }
    rt_tok_batch_t *tb = &tok[f->bb];
    if (!tb->ids) {
      st = rt_tok_encode(bb->tok, s->strs, (size_t)n, bb->max_length, tb);
      if (st) break;
    }
    size_t cnt = (size_t)n * (size_t)tb->len;
    fb->symvals[f->len_sym] = tb->len;
    void *d = malloc(cnt * esz > 0 ? cnt * esz : 1);
    if (!d) { st = oom(); break; }
    if (f->kind == FEED_IDS) {
      if (f->dtype == IR_DTYPE_I64) memcpy(d, tb->ids, cnt * esz);
      else if (f->dtype == IR_DTYPE_I32)
        for (size_t j = 0; j < cnt; j++) ((int32_t *)d)[j] = (int32_t)tb->ids[j];
      else st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "input '%s' is not integer", f->name);
    } else {
      st = rt_tok_mask_convert(tb->mask, cnt, f->dtype, d);
    }
    if (st) { free(d); break; }
    put_feed(fb, f->name, d, cnt * esz);
  }
  for (uint32_t i = 0; i < FE_MAX_BACKBONES; i++) rt_tok_batch_free(&tok[i]);
  return st;
}

static void *reader_main(void *arg) {
  rt_loader_t *l = arg;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->stop && l->next_fill < l->nbatches && l->slot[l->next_fill % 2].state != 0)
      pthread_cond_wait(&l->cv, &l->mu);
    if (l->stop || l->next_fill >= l->nbatches) break;
    int64_t b = l->next_fill++;
    slot_t *s = &l->slot[b % 2];
    s->state = 1;
    pthread_mutex_unlock(&l->mu);
    ad_status_t st = fill(l, s, b);
    pthread_mutex_lock(&l->mu);
    s->st = st;
    s->batch = b;
    s->state = 2;
    pthread_cond_broadcast(&l->cv);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

ad_status_t rt_loader_create(const rt_loader_options_t *o, rt_loader_t **out) {
  *out = NULL;
  if (o->batch_size <= 0)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "batch size must be positive");
  rt_loader_t *l = calloc(1, sizeof *l);
  if (!l) return oom();
  l->o = *o;
  l->k = rt_dataset_num_labels(o->ds);
  int64_t total = rt_dataset_rows(o->ds);
  if (!o->order && (o->nrows < 0 || o->nrows > total)) l->o.nrows = total;
  l->order = malloc((size_t)(l->o.nrows ? l->o.nrows : 1) * sizeof *l->order);
  if (!l->order) {
    free(l);
    return oom();
  }
  for (int64_t i = 0; i < l->o.nrows; i++) l->order[i] = o->order ? o->order[i] : i;
  l->o.order = l->order;
  l->nbatches = o->drop_last ? l->o.nrows / o->batch_size
                             : (l->o.nrows + o->batch_size - 1) / o->batch_size;
  ad_status_t st = plan_feeds(l);
  for (int i = 0; i < 2 && !st; i++) {
    slot_t *s = &l->slot[i];
    s->rows = calloc((size_t)o->batch_size, sizeof *s->rows);
    s->labels = calloc((size_t)o->batch_size * (l->k ? l->k : 1), sizeof *s->labels);
    s->text = calloc((size_t)o->batch_size, sizeof *s->text);
    s->strs = calloc((size_t)o->batch_size, sizeof *s->strs);
    s->idx = calloc((size_t)o->batch_size, sizeof *s->idx);
    s->b.feeds.feeds = calloc(l->nfeeds ? l->nfeeds : 1, sizeof *s->b.feeds.feeds);
    if (!s->rows || !s->labels || !s->text || !s->strs || !s->idx || !s->b.feeds.feeds) st = oom();
  }
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv, NULL);
  if (!st && !o->no_thread && l->nbatches > 0) {
    if (pthread_create(&l->thread, NULL, reader_main, l) == 0) l->threaded = true;
  }
  if (st) {
    rt_loader_free(l);
    return st;
  }
  *out = l;
  return AD_OK;
}

void rt_loader_free(rt_loader_t *l) {
  if (!l) return;
  if (l->threaded) {
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
  }
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
  for (int i = 0; i < 2; i++) {
    slot_t *s = &l->slot[i];
    if (s->b.feeds.feeds) clear_feeds(&s->b.feeds);
    free(s->b.feeds.feeds);
    for (int64_t r = 0; s->text && r < l->o.batch_size; r++) rt_tsv_row_free(&s->text[r]);
    free(s->text);
    free(s->rows);
    free(s->labels);
    free(s->strs);
    free(s->idx);
    ad_status_free(s->st);
  }
  free(l->feeds);
  free(l->order);
  free(l);
}

int64_t rt_loader_num_batches(const rt_loader_t *l) { return l->nbatches; }

ad_status_t rt_loader_next(rt_loader_t *l, const rt_data_batch_t **out) {
  *out = NULL;
  if (l->next_take > 0) { /* the consumer is done with the previous batch: free its slot */
    pthread_mutex_lock(&l->mu);
    l->slot[(l->next_take - 1) % 2].state = 0;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
  }
  if (l->next_take >= l->nbatches) return AD_OK;
  int64_t b = l->next_take++;
  slot_t *s = &l->slot[b % 2];
  if (!l->threaded) {
    ad_status_t st = fill(l, s, b);
    if (st) return st;
    *out = &s->b;
    return AD_OK;
  }
  pthread_mutex_lock(&l->mu);
  while (!(s->state == 2 && s->batch == b)) pthread_cond_wait(&l->cv, &l->mu);
  ad_status_t st = s->st;
  s->st = AD_OK;
  pthread_mutex_unlock(&l->mu);
  if (st) return st;
  *out = &s->b;
  return AD_OK;
}
