#include "runtime/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/buf.h"

struct rt_dataset {
  rt_split_kind_t split;
  size_t nfiles;
  rt_tsv_index_t **files; /* [nfiles] */
  int64_t *start;         /* [nfiles + 1]: first split row of each file */
  int64_t *id_field;      /* [nfiles]: header field of transcript_id, or -1 */
  size_t k;
  bool unlabeled;         /* no label columns in the files: labels read as 0 */
};

static const double k_zero_labels[FE_MAX_DATA_COLS];

const char *rt_split_name(rt_split_kind_t s) {
  switch (s) {
    case RT_SPLIT_TRAIN: return "train";
    case RT_SPLIT_VALID: return "validation";
    case RT_SPLIT_TEST: return "test";
    default: return "?";
  }
}

static bool is_dir(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The first pattern of a split (the config's, else the default), for messages and defaults. */
static const char *split_pattern(const fe_job_t *job, rt_split_kind_t s) {
  if (job->nsplit_patterns[s]) return job->split_patterns[s][0];
  return s == RT_SPLIT_TRAIN ? "train_*.tsv" : s == RT_SPLIT_VALID ? "validation.tsv" : "test.tsv";
}

ad_status_t rt_dataset_folder(const fe_job_t *job, char **out) {
  *out = NULL;
  const char *p = job->data_path && job->data_path[0] ? job->data_path : ".";
  if (is_dir(p)) {
    *out = strdup(p);
    return *out ? AD_OK : ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  const char *env = getenv("AIDOMM_DATA");
  ad_buf_t b = {0};
  if (env && env[0] && p[0] != '/') {
    ad_buf_printf(&b, "%s/%s", env, p);
    if (is_dir((const char *)b.data)) {
      *out = (char *)b.data; /* the buffer is NUL-terminated and ours */
      return AD_OK;
    }
    ad_buf_free(&b);
  }
  ad_status_t st = ad_status_make(
      AD_STATUS_INVALID_ARGUMENT,
      "data.init_args.path '%s' is not a folder%s%s%s; put the split files (%s, %s, %s) in a "
      "folder and pass --data.init_args.path FOLDER, or set AIDOMM_DATA to the folder holding "
      "'%s/'",
      p, env && env[0] && p[0] != '/' ? " (nor is $AIDOMM_DATA/" : "",
      env && env[0] && p[0] != '/' ? p : "", env && env[0] && p[0] != '/' ? ")" : "",
      split_pattern(job, RT_SPLIT_TRAIN), split_pattern(job, RT_SPLIT_VALID),
      split_pattern(job, RT_SPLIT_TEST), p);
  return st;
}


/* The header field named `name` in the file's first non-blank line, or -1 (the selection of
 * rt_tsv_open covers labels and inputs; the id column is optional, so it is looked up here). */
static int64_t header_field(const char *path, const char *name, size_t max_line) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t cap = max_line ? max_line : RT_TSV_DEFAULT_MAX_LINE;
  if (cap > ((size_t)1 << 20)) cap = (size_t)1 << 20; /* a header is short */
  char *line = malloc(cap + 1);
  int64_t found = -1;
  if (line) {
    size_t n = 0;
    int c;
    bool bom_checked = false;
    while ((c = fgetc(f)) != EOF) {
      if (c == '\n') {
        if (n == 0 || (n == 1 && line[0] == '\r')) { /* blank lines before the header */
          n = 0;
          continue;
        }
        break;
      }
      if (n >= cap) break;
      line[n++] = (char)c;
      if (!bom_checked && n == 3) {
        bom_checked = true;
        if (memcmp(line, "\xef\xbb\xbf", 3) == 0) n = 0;
      }
    }
    if (n && line[n - 1] == '\r') n--;
    line[n] = 0;
    int64_t field = 0;
    size_t nl = strlen(name);
    for (char *s = line;; field++) {
      char *tab = strchr(s, '\t');
      size_t len = tab ? (size_t)(tab - s) : strlen(s);
      if (len == nl && memcmp(s, name, nl) == 0) {
        found = field;
        break;
      }
      if (!tab) break;
      s = tab + 1;
    }
    free(line);
  }
  fclose(f);
  return found;
}

ad_status_t rt_dataset_open(const fe_job_t *job, rt_split_kind_t split,
                            const rt_dataset_options_t *opt, rt_dataset_t **out) {
  *out = NULL;
  if (job->n_y == 0 || job->n_x == 0)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "the config's data section has no label or input columns (a data "
                          "class such as modelgenerator.data.IsoformExpression is needed)");
  char *folder = NULL;
  AD_RETURN_IF_ERROR(rt_dataset_folder(job, &folder));
  /* every pattern of the split, in order, each expanded and sorted by glob(3) */
  const char *pats[FE_MAX_SPLIT_PATTERNS];
  uint32_t npat = job->nsplit_patterns[split];
  for (uint32_t i = 0; i < npat; i++) pats[i] = job->split_patterns[split][i];
  if (npat == 0) pats[npat++] = split_pattern(job, split);
  glob_t g;
  memset(&g, 0, sizeof g);
  for (uint32_t i = 0; i < npat; i++) {
    ad_buf_t full = {0};
    ad_buf_printf(&full, "%s/%s", folder, pats[i]);
    int gr = glob((const char *)full.data, GLOB_ERR | (i ? GLOB_APPEND : 0), NULL, &g);
    ad_buf_free(&full);
    if (gr != 0) {
      globfree(&g);
      ad_status_t st = ad_status_make(
          AD_STATUS_INVALID_ARGUMENT, "%s split: no file in '%s' matches '%s'%s",
          rt_split_name(split), folder, pats[i],
          split == RT_SPLIT_TRAIN   ? " (data.init_args.train_split_files)"
          : split == RT_SPLIT_VALID ? " (data.init_args.valid_split_files)"
                                    : " (data.init_args.test_split_files)");
      free(folder);
      return st;
    }
  }
  free(folder);
  rt_dataset_t *ds = calloc(1, sizeof *ds);
  if (!ds) {
    globfree(&g);
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  ds->split = split;
  ds->k = job->n_y;
  ds->files = calloc(g.gl_pathc, sizeof *ds->files);
  ds->start = calloc(g.gl_pathc + 1, sizeof *ds->start);
  ds->id_field = calloc(g.gl_pathc, sizeof *ds->id_field);
  if (!ds->files || !ds->start || !ds->id_field) {
    globfree(&g);
    rt_dataset_close(ds);
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  rt_tsv_rename_t ren[FE_MAX_DATA_COLS];
  for (uint32_t i = 0; i < job->n_x; i++) ren[i] = (rt_tsv_rename_t){job->x_cols[i], job->x_names[i]};
  rt_tsv_options_t to = {.y_cols = job->y_cols,
                         .n_y = job->n_y,
                         .x_cols = job->x_cols,
                         .n_x = job->n_x,
                         .renames = ren,
                         .n_renames = job->n_x,
                         .max_line = opt ? opt->max_line : 0,
                         .cache_dir = opt ? opt->cache_dir : NULL,
                         .no_cache = opt && opt->no_cache};
  ad_status_t st = AD_OK;
  /* predict on files without labels: decided by the first file, then required of all */
  if (opt && opt->labels_optional && g.gl_pathc &&
      header_field(g.gl_pathv[0], job->y_cols[0], to.max_line) < 0) {
    ds->unlabeled = true;
    to.n_y = 0;
  }
  for (size_t f = 0; f < g.gl_pathc && !st; f++) {
    st = rt_tsv_open(g.gl_pathv[f], &to, &ds->files[f]);
    if (st) break;
    ds->nfiles++;
    ds->start[f + 1] = ds->start[f] + rt_tsv_rows(ds->files[f]);
    ds->id_field[f] = header_field(g.gl_pathv[f], "transcript_id", to.max_line);
  }
  globfree(&g);
  if (st) {
    rt_dataset_close(ds);
    return st;
  }
  *out = ds;
  return AD_OK;
}

void rt_dataset_close(rt_dataset_t *ds) {
  if (!ds) return;
  for (size_t f = 0; f < ds->nfiles; f++) rt_tsv_close(ds->files[f]);
  free(ds->files);
  free(ds->start);
  free(ds->id_field);
  free(ds);
}

rt_split_kind_t rt_dataset_split(const rt_dataset_t *ds) { return ds->split; }
int64_t rt_dataset_rows(const rt_dataset_t *ds) { return ds->start[ds->nfiles]; }
size_t rt_dataset_num_labels(const rt_dataset_t *ds) { return ds->k; }
size_t rt_dataset_num_files(const rt_dataset_t *ds) { return ds->nfiles; }
const rt_tsv_index_t *rt_dataset_file(const rt_dataset_t *ds, size_t f) { return ds->files[f]; }

static size_t file_of(const rt_dataset_t *ds, int64_t i) {
  size_t lo = 0, hi = ds->nfiles; /* start[lo] <= i < start[hi] */
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (ds->start[mid] <= i) lo = mid;
    else hi = mid;
  }
  return lo;
}

void rt_dataset_locate(const rt_dataset_t *ds, int64_t i, const rt_tsv_index_t **idx,
                       int64_t *local) {
  size_t f = file_of(ds, i);
  *idx = ds->files[f];
  *local = i - ds->start[f];
}

bool rt_dataset_unlabeled(const rt_dataset_t *ds) { return ds->unlabeled; }

const double *rt_dataset_labels(const rt_dataset_t *ds, int64_t i) {
  if (ds->unlabeled) return k_zero_labels;
  size_t f = file_of(ds, i);
  return rt_tsv_labels(ds->files[f]) + (size_t)(i - ds->start[f]) * ds->k;
}

int64_t rt_dataset_x_by_name(const rt_dataset_t *ds, const char *name) {
  if (!ds->nfiles) return -1;
  const rt_tsv_index_t *idx = ds->files[0];
  for (size_t j = 0; j < rt_tsv_num_x(idx); j++)
    if (strcmp(rt_tsv_x_name(idx, j), name) == 0) return (int64_t)j;
  return -1;
}

int64_t rt_dataset_id_field(const rt_dataset_t *ds, int64_t i) {
  return ds->id_field[file_of(ds, i)];
}

int64_t rt_dataset_header_field(const rt_dataset_t *ds, const char *header) {
  if (!ds->nfiles) return -1;
  if (strcmp(header, "transcript_id") == 0) return ds->id_field[0];
  return header_field(rt_tsv_path(ds->files[0]), header, 0);
}

/* ---- z-score --------------------------------------------------------------------------------- */
ad_status_t rt_zscore_compute(const rt_dataset_t *const *ds, size_t n, rt_zscore_t *out) {
  memset(out, 0, sizeof *out);
  size_t nidx = 0;
  for (size_t i = 0; i < n; i++) nidx += ds[i]->nfiles;
  const rt_tsv_index_t **idx = calloc(nidx ? nidx : 1, sizeof *idx);
  if (!idx) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    for (size_t f = 0; f < ds[i]->nfiles; f++) idx[m++] = ds[i]->files[f];
  size_t k = n ? ds[0]->k : 0;
  out->k = k;
  out->mean = calloc(k ? k : 1, sizeof *out->mean);
  out->std = calloc(k ? k : 1, sizeof *out->std);
  ad_status_t st = !out->mean || !out->std ? ad_status_make(AD_STATUS_RESOURCE, "out of memory")
                                           : rt_tsv_zscore_stats(idx, m, out->mean, out->std);
  if (!st)
    for (size_t j = 0; j < k; j++)
      if (!(out->std[j] > 0)) {
        st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "label column '%s' is constant over the train and validation splits "
                            "(%s ...): z-scoring would divide by zero",
                            rt_tsv_label_name(idx[0], j), rt_tsv_path(idx[0]));
        break;
      }
  free(idx);
  if (st) rt_zscore_free(out);
  return st;
}

void rt_zscore_free(rt_zscore_t *z) {
  free(z->mean);
  free(z->std);
  memset(z, 0, sizeof *z);
}

char *rt_zscore_to_json(const rt_zscore_t *z) {
  json_t *o = json_object(), *m = json_array(), *s = json_array();
  for (size_t j = 0; j < z->k; j++) {
    json_array_append_new(m, json_real(z->mean[j]));
    json_array_append_new(s, json_real(z->std[j]));
  }
  json_object_set_new(o, "mean", m);
  json_object_set_new(o, "std", s);
  /* jansson prints reals with 17 significant digits: round-trip exact */
  char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
  json_decref(o);
  return text;
}

ad_status_t rt_zscore_from_json(const char *text, rt_zscore_t *out) {
  memset(out, 0, sizeof *out);
  json_error_t e;
  json_t *o = json_loads(text, 0, &e);
  json_t *m = o ? json_object_get(o, "mean") : NULL, *s = o ? json_object_get(o, "std") : NULL;
  ad_status_t st = AD_OK;
  if (!json_is_array(m) || !json_is_array(s) || json_array_size(m) != json_array_size(s) ||
      json_array_size(m) == 0) {
    st = ad_status_make(AD_STATUS_DATA_LOSS,
                        "label statistics: expected {\"mean\": [...], \"std\": [...]} of equal "
                        "nonzero length");
  } else {
    out->k = json_array_size(m);
    out->mean = calloc(out->k, sizeof *out->mean);
    out->std = calloc(out->k, sizeof *out->std);
    if (!out->mean || !out->std) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
    for (size_t j = 0; !st && j < out->k; j++) {
      json_t *a = json_array_get(m, j), *b = json_array_get(s, j);
      if (!json_is_number(a) || !json_is_number(b) || !isfinite(json_number_value(a)) ||
          !(json_number_value(b) > 0))
        st = ad_status_make(AD_STATUS_DATA_LOSS,
                            "label statistics: entry %zu is not a finite mean and positive std",
                            j);
      else {
        out->mean[j] = json_number_value(a);
        out->std[j] = json_number_value(b);
      }
    }
  }
  json_decref(o);
  if (st) rt_zscore_free(out);
  return st;
}
