/* TSV row index: one bounded-memory scan, a checked sidecar cache, pread row access, and
 * z-score statistics. See tsv.h for the accepted format. */
#include "runtime/tsv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/buf.h"

#define SIDECAR_MAGIC "ADTSVIX\x01"
#define SIDECAR_VERSION 1u

struct rt_tsv_index {
  char *path; /* as given, for messages */
  char *abspath;
  int fd;
  uint64_t file_size;
  int64_t mtime_s, mtime_ns;
  size_t max_line;
  size_t ncols;
  size_t K;
  char **y_names; /* [K] */
  size_t nx;
  char **x_hdr, **x_name; /* [nx] */
  size_t *x_col;          /* [nx] */
  int64_t n, cap;
  uint64_t *off;  /* [n] */
  uint32_t *len;  /* [n] */
  uint32_t *line; /* [n] */
  double *labels; /* [n, K] */
  bool from_cache;
  uint64_t scanned;
  size_t buf_peak;
  char *sidecar;
};

static ad_status_t oom(void) { return ad_status_make(AD_STATUS_RESOURCE, "out of memory"); }

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}
#define FNV_SEED 14695981039346656037ull

static void free_strs(char **v, size_t n) {
  if (!v) return;
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

static void free_rows(rt_tsv_index_t *idx) {
  free(idx->off);
  free(idx->len);
  free(idx->line);
  free(idx->labels);
  idx->off = NULL;
  idx->len = NULL;
  idx->line = NULL;
  idx->labels = NULL;
  idx->n = idx->cap = 0;
}

void rt_tsv_close(rt_tsv_index_t *idx) {
  if (!idx) return;
  if (idx->fd >= 0) close(idx->fd);
  free(idx->path);
  free(idx->abspath);
  free_strs(idx->y_names, idx->K);
  free_strs(idx->x_hdr, idx->nx);
  free_strs(idx->x_name, idx->nx);
  free(idx->x_col);
  free_rows(idx);
  free(idx->sidecar);
  free(idx);
}

static ad_status_t grow_rows(rt_tsv_index_t *idx, int64_t need) {
  if (need <= idx->cap) return AD_OK;
  int64_t cap = idx->cap ? idx->cap : 1024;
  while (cap < need) cap *= 2;
  uint64_t *off = realloc(idx->off, (size_t)cap * sizeof *off);
  if (!off) return oom();
  idx->off = off;
  uint32_t *len = realloc(idx->len, (size_t)cap * sizeof *len);
  if (!len) return oom();
  idx->len = len;
  uint32_t *line = realloc(idx->line, (size_t)cap * sizeof *line);
  if (!line) return oom();
  idx->line = line;
  double *lab = realloc(idx->labels, (size_t)cap * (idx->K ? idx->K : 1) * sizeof *lab);
  if (!lab) return oom();
  idx->labels = lab;
  idx->cap = cap;
  return AD_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Header */

/* The header line, split in place; names point into `line`. */
static ad_status_t resolve_header(rt_tsv_index_t *idx, char *line, unsigned lineno,
                                  int32_t *col_label /* out: [ncols], sized from the tabs */,
                                  size_t *ncols_out) {
  const char *names[4096];
  size_t nc = 0;
  for (char *p = line;;) {
    char *tab = strchr(p, '\t');
    if (nc == sizeof names / sizeof names[0])
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s:%u: header has more than %zu columns",
                            idx->path, lineno, sizeof names / sizeof names[0]);
    names[nc++] = p;
    if (!tab) break;
    *tab = '\0';
    p = tab + 1;
  }
  /* Lists the header for "missing column" errors, so the user sees what the file has. */
  ad_buf_t list = {0};
  for (size_t c = 0; c < nc; c++) ad_buf_printf(&list, "%s%s", c ? ", " : "", names[c]);
  ad_buf_put_u8(&list, 0);
  ad_status_t st = AD_OK;

  for (size_t c = 0; c < nc; c++) col_label[c] = -1;
  for (size_t k = 0; k < idx->K && !st; k++) {
    size_t found = nc, hits = 0;
    for (size_t c = 0; c < nc; c++)
      if (!strcmp(names[c], idx->y_names[k])) {
        found = c;
        hits++;
      }
    if (hits == 0)
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "%s:%u: label column '%s' not found; the header has: %s", idx->path,
                          lineno, idx->y_names[k], (const char *)list.data);
    else if (hits > 1)
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s:%u: label column '%s' appears %zu times",
                          idx->path, lineno, idx->y_names[k], hits);
    else if (col_label[found] >= 0)
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: label column '%s' is selected twice",
                          idx->path, idx->y_names[k]);
    else
      col_label[found] = (int32_t)k;
  }
  for (size_t j = 0; j < idx->nx && !st; j++) {
    size_t found = nc, hits = 0;
    for (size_t c = 0; c < nc; c++)
      if (!strcmp(names[c], idx->x_hdr[j])) {
        found = c;
        hits++;
      }
    if (hits == 0)
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "%s:%u: input column '%s' not found; the header has: %s", idx->path,
                          lineno, idx->x_hdr[j], (const char *)list.data);
    else if (hits > 1)
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s:%u: input column '%s' appears %zu times",
                          idx->path, lineno, idx->x_hdr[j], hits);
    else
      idx->x_col[j] = found;
  }
  ad_buf_free(&list);
  *ncols_out = nc;
  return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Label parsing */

static ad_status_t parse_label(const rt_tsv_index_t *idx, const char *f, size_t n, bool toolong,
                               unsigned lineno, size_t k, double *out) {
  const char *col = idx->y_names[k];
  if (toolong)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "%s:%u: column '%s': label is not a number (longer than %d bytes)",
                          idx->path, lineno, col, RT_TSV_MAX_LABEL_FIELD);
  while (n && (f[0] == ' ')) f++, n--;
  while (n && (f[n - 1] == ' ')) n--;
  if (n == 0)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s:%u: column '%s': empty label", idx->path,
                          lineno, col);
  char tmp[RT_TSV_MAX_LABEL_FIELD + 1];
  memcpy(tmp, f, n);
  tmp[n] = '\0';
  /* Only plain decimal notation: strtod would also take "nan", "inf" and hex floats. */
  bool ok = true, digit = false;
  for (size_t i = 0; i < n; i++) {
    char c = tmp[i];
    if (c >= '0' && c <= '9')
      digit = true;
    else if (c != '+' && c != '-' && c != '.' && c != 'e' && c != 'E')
      ok = false;
  }
  char *end = NULL;
  double v = 0;
  if (ok && digit) {
    errno = 0;
    v = strtod(tmp, &end);
    ok = end == tmp + n && isfinite(v);
  } else {
    ok = false;
  }
  if (!ok)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "%s:%u: column '%s': label '%s' is not a finite number", idx->path, lineno,
                          col, tmp);
  *out = v;
  return AD_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Scan */

typedef struct scan {
  rt_tsv_index_t *idx;
  int32_t *col_label; /* [ncols]: label slot of each field or -1 */
  double *row_lab;    /* [K] */
  char fbuf[RT_TSV_MAX_LABEL_FIELD + 1];
  size_t flen;
  bool ftoolong;
  size_t field;
  uint64_t line_start;
  size_t line_len; /* bytes of the current line so far, CR included, LF not */
  unsigned lineno;
  char last;
} scan_t;

static ad_status_t line_too_long(const scan_t *s) {
  return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                        "%s:%u: line is longer than the %zu-byte cap (max_line)", s->idx->path,
                        s->lineno, s->idx->max_line);
}

static ad_status_t end_field(scan_t *s, bool at_eol) {
  int32_t k = s->field < s->idx->ncols ? s->col_label[s->field] : -1;
  if (k >= 0) {
    size_t n = s->flen;
    if (at_eol && n && s->fbuf[n - 1] == '\r' && !s->ftoolong) n--;
    AD_RETURN_IF_ERROR(
        parse_label(s->idx, s->fbuf, n, s->ftoolong, s->lineno, (size_t)k, &s->row_lab[k]));
  }
  s->flen = 0;
  s->ftoolong = false;
  return AD_OK;
}

static ad_status_t end_line(scan_t *s) {
  rt_tsv_index_t *idx = s->idx;
  size_t eff = s->line_len;
  if (eff && s->last == '\r') eff--;
  if (eff > idx->max_line) return line_too_long(s);
  if (eff == 0 && s->field == 0) { /* blank line: pandas skips it */
    s->flen = 0;
    s->ftoolong = false;
  } else {
    if (s->field + 1 != idx->ncols)
      return ad_status_make(AD_STATUS_DATA_LOSS,
                            "%s:%u: row has %zu fields, the header has %zu (truncated row?)",
                            idx->path, s->lineno, s->field + 1, idx->ncols);
    AD_RETURN_IF_ERROR(end_field(s, true));
    AD_RETURN_IF_ERROR(grow_rows(idx, idx->n + 1));
    idx->off[idx->n] = s->line_start;
    idx->len[idx->n] = (uint32_t)eff;
    idx->line[idx->n] = s->lineno;
    if (idx->K) memcpy(idx->labels + (size_t)idx->n * idx->K, s->row_lab, idx->K * sizeof(double));
    idx->n++;
  }
  s->field = 0;
  s->line_len = 0;
  s->last = 0;
  return AD_OK;
}

static ad_status_t read_full(int fd, void *buf, size_t n, uint64_t off, size_t *got) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return ad_status_make(AD_STATUS_IO, "read failed: %s", strerror(errno));
    }
    if (r == 0) break;
    done += (size_t)r;
  }
  *got = done;
  return AD_OK;
}

static ad_status_t finish_header(rt_tsv_index_t *idx, ad_buf_t *hdr, size_t hl, unsigned lineno,
                                 int32_t **col_label) {
  ad_buf_reserve(hdr, 1);
  hdr->data[hl] = '\0';
  size_t ntab = 0;
  for (size_t i = 0; i < hl; i++) ntab += hdr->data[i] == '\t';
  *col_label = malloc((ntab + 1) * sizeof **col_label);
  if (!*col_label) return oom();
  return resolve_header(idx, (char *)hdr->data, lineno, *col_label, &idx->ncols);
}

static ad_status_t scan_file(rt_tsv_index_t *idx, size_t chunk_size) {
  ad_status_t st = AD_OK;
  char *chunk = malloc(chunk_size);
  ad_buf_t hdr = {0};
  int32_t *col_label = NULL;
  scan_t s = {.idx = idx, .lineno = 1};
  s.row_lab = calloc(idx->K ? idx->K : 1, sizeof(double));
  if (!chunk || !s.row_lab) {
    st = oom();
    goto done;
  }
  bool in_header = true;
  uint64_t pos = 0;
  for (;;) {
    size_t got = 0;
    st = read_full(idx->fd, chunk, chunk_size, pos, &got);
    if (st) {
      st = ad_status_annotate(st, "%s", idx->path);
      goto done;
    }
    if (got == 0) break;
    const char *p = chunk, *end = chunk + got;
    if (pos == 0 && got >= 3 && memcmp(chunk, "\xEF\xBB\xBF", 3) == 0) {
      p += 3;
      s.line_start = 3;
    }
    while (p < end) {
      if (in_header) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        if (hdr.len + (size_t)(stop - p) > idx->max_line + 1) {
          s.line_len = hdr.len + (size_t)(stop - p);
          st = line_too_long(&s);
          goto done;
        }
        ad_buf_append(&hdr, p, (size_t)(stop - p));
        p = stop;
        if (!nl) break;
        p++;
        size_t hl = hdr.len;
        if (hl && hdr.data[hl - 1] == '\r') hl--;
        if (hl > idx->max_line) {
          st = line_too_long(&s);
          goto done;
        }
        if (hl == 0) { /* blank lines before the header are skipped, as by pandas */
          hdr.len = 0;
        } else {
          st = finish_header(idx, &hdr, hl, s.lineno, &col_label);
          if (st) goto done;
          s.col_label = col_label;
          in_header = false;
        }
        s.lineno++;
        s.line_start = pos + (uint64_t)(p - chunk);
        continue;
      }
      /* Fields that are not labels (the long sequences) are skipped without copying. */
      if (s.field >= idx->ncols || s.col_label[s.field] < 0) {
        const char *q = p;
        while (q < end && *q != '\t' && *q != '\n') q++;
        if (q > p) {
          s.line_len += (size_t)(q - p);
          s.last = q[-1];
          if (s.line_len > idx->max_line + 1) {
            st = line_too_long(&s);
            goto done;
          }
        }
        p = q;
        if (p == end) break;
      }
      char c = *p++;
      if (c == '\n') {
        st = end_line(&s);
        if (st) goto done;
        s.lineno++;
        s.line_start = pos + (uint64_t)(p - chunk);
        continue;
      }
      if (++s.line_len > idx->max_line + 1) {
        st = line_too_long(&s);
        goto done;
      }
      s.last = c;
      if (c == '\t') {
        st = end_field(&s, false);
        if (st) goto done;
        s.field++;
        if (s.field >= idx->ncols) {
          st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                              "%s:%u: row has more fields than the header's %zu", idx->path,
                              s.lineno, idx->ncols);
          goto done;
        }
      } else if (s.flen < RT_TSV_MAX_LABEL_FIELD) {
        s.fbuf[s.flen++] = c;
      } else {
        s.ftoolong = true;
      }
    }
    pos += got;
  }
  idx->scanned = pos;
  if (in_header) {
    size_t hl = hdr.len;
    if (hl && hdr.data[hl - 1] == '\r') hl--;
    if (hl == 0) {
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: empty file (no header line)",
                          idx->path);
      goto done;
    }
    st = finish_header(idx, &hdr, hl, s.lineno, &col_label);
  } else if (s.line_len > 0 || s.field > 0) {
    st = end_line(&s); /* a last line without a newline */
  }
done:
  /* The scan's buffers: the chunk, the header line and the fixed label field (in scan_t). */
  idx->buf_peak = chunk_size + hdr.cap + sizeof s.fbuf;
  free(chunk);
  ad_buf_free(&hdr);
  free(col_label);
  free(s.row_lab);
  return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Sidecar */

static void put_key(ad_buf_t *b, const rt_tsv_index_t *idx) {
  ad_buf_put_str(b, idx->abspath);
  ad_buf_put_u64(b, idx->file_size);
  ad_buf_put_i64(b, idx->mtime_s);
  ad_buf_put_i64(b, idx->mtime_ns);
  ad_buf_put_u64(b, idx->max_line);
  ad_buf_put_u32(b, (uint32_t)idx->K);
  for (size_t k = 0; k < idx->K; k++) ad_buf_put_str(b, idx->y_names[k]);
  ad_buf_put_u32(b, (uint32_t)idx->nx);
  for (size_t j = 0; j < idx->nx; j++) {
    ad_buf_put_str(b, idx->x_hdr[j]);
    ad_buf_put_str(b, idx->x_name[j]);
  }
}

static ad_status_t fsync_dir(const char *path) {
  char *dir = xstrdup(path);
  if (!dir) return oom();
  char *slash = strrchr(dir, '/');
  const char *d = ".";
  if (slash == dir)
    d = "/";
  else if (slash) {
    *slash = '\0';
    d = dir;
  }
  ad_status_t st = AD_OK;
  int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) != 0)
    st = ad_status_make(AD_STATUS_IO, "cannot sync directory %s: %s", d, strerror(errno));
  if (fd >= 0) close(fd);
  free(dir);
  return st;
}

static ad_status_t write_sidecar(const rt_tsv_index_t *idx) {
  ad_buf_t payload = {0}, out = {0};
  put_key(&payload, idx);
  ad_buf_put_u64(&payload, idx->ncols);
  for (size_t j = 0; j < idx->nx; j++) ad_buf_put_u64(&payload, idx->x_col[j]);
  ad_buf_put_u64(&payload, (uint64_t)idx->n);
  for (int64_t i = 0; i < idx->n; i++) {
    ad_buf_put_u64(&payload, idx->off[i]);
    ad_buf_put_u32(&payload, idx->len[i]);
    ad_buf_put_u32(&payload, idx->line[i]);
  }
  for (size_t i = 0; i < (size_t)idx->n * idx->K; i++) ad_buf_put_f64(&payload, idx->labels[i]);
  ad_buf_append(&out, SIDECAR_MAGIC, 8);
  ad_buf_put_u32(&out, SIDECAR_VERSION);
  ad_buf_put_u64(&out, payload.len);
  ad_buf_put_u64(&out, fnv1a(FNV_SEED, payload.data, payload.len));
  ad_buf_append(&out, payload.data, payload.len);
  ad_buf_free(&payload);

  static unsigned counter;
  size_t tn = strlen(idx->sidecar) + 64;
  char *tmp = malloc(tn);
  if (!tmp) {
    ad_buf_free(&out);
    return oom();
  }
  snprintf(tmp, tn, "%s.tmp.%ld.%u", idx->sidecar, (long)getpid(),
           __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
  ad_status_t st = AD_OK;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    st = ad_status_make(AD_STATUS_IO, "%s: %s", tmp, strerror(errno));
  } else {
    size_t done = 0;
    while (!st && done < out.len) {
      ssize_t w = write(fd, out.data + done, out.len - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0)
        st = ad_status_make(AD_STATUS_IO, "%s: write failed: %s", tmp, strerror(errno));
      else
        done += (size_t)w;
    }
    if (!st && fsync(fd) != 0)
      st = ad_status_make(AD_STATUS_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && !st)
      st = ad_status_make(AD_STATUS_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (!st && rename(tmp, idx->sidecar) != 0)
      st = ad_status_make(AD_STATUS_IO, "%s: rename failed: %s", idx->sidecar, strerror(errno));
    if (st)
      unlink(tmp);
    else
      st = fsync_dir(idx->sidecar);
  }
  free(tmp);
  ad_buf_free(&out);
  return st;
}

/* Loads the sidecar when its key matches and every entry is consistent with the data file;
 * returns false (and leaves idx without rows) otherwise. */
static bool load_sidecar(rt_tsv_index_t *idx) {
  int fd = open(idx->sidecar, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat sb;
  uint8_t *data = NULL;
  bool ok = false;
  if (fstat(fd, &sb) != 0 || sb.st_size < 28 || (uint64_t)sb.st_size > ((uint64_t)1 << 40))
    goto out;
  size_t size = (size_t)sb.st_size, got = 0;
  data = malloc(size);
  if (!data) goto out;
  ad_status_t rs = read_full(fd, data, size, 0, &got);
  if (rs) {
    ad_status_free(rs);
    goto out;
  }
  if (got != size || memcmp(data, SIDECAR_MAGIC, 8) != 0) goto out;
  ad_reader_t r = {data + 8, data + size, 0};
  if (ad_read_u32(&r) != SIDECAR_VERSION) goto out;
  uint64_t plen = ad_read_u64(&r), sum = ad_read_u64(&r);
  if (r.bad || plen != (uint64_t)(r.end - r.p) || fnv1a(FNV_SEED, r.p, plen) != sum) goto out;

  /* The key is compared byte for byte with the one this open would write. */
  ad_buf_t key = {0};
  put_key(&key, idx);
  bool same = (size_t)(r.end - r.p) >= key.len && memcmp(r.p, key.data, key.len) == 0;
  r.p += same ? key.len : 0;
  ad_buf_free(&key);
  if (!same) goto out;

  uint64_t ncols = ad_read_u64(&r);
  if (r.bad || ncols == 0 || ncols > 4096) goto out;
  for (size_t j = 0; j < idx->nx; j++) {
    uint64_t c = ad_read_u64(&r);
    if (r.bad || c >= ncols) goto out;
    idx->x_col[j] = (size_t)c;
  }
  uint64_t n = ad_read_u64(&r);
  uint64_t per_row = 16 + 8 * (uint64_t)idx->K;
  if (r.bad || n > (uint64_t)(r.end - r.p) / per_row || n * per_row != (uint64_t)(r.end - r.p))
    goto out;
  idx->ncols = (size_t)ncols;
  ad_status_t gs = grow_rows(idx, n ? (int64_t)n : 1);
  if (gs) { /* out of memory: the rescan will report it */
    ad_status_free(gs);
    goto out_rows;
  }
  uint64_t prev_end = 0;
  uint32_t prev_line = 0;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t off = ad_read_u64(&r);
    uint32_t len = ad_read_u32(&r), line = ad_read_u32(&r);
    /* Rows are disjoint, ordered, inside the file and under the cap: anything else is corrupt. */
    if (off < prev_end || len == 0 || len > idx->max_line || off + len > idx->file_size ||
        line <= prev_line)
      goto out_rows;
    idx->off[i] = off;
    idx->len[i] = len;
    idx->line[i] = line;
    prev_end = off + len;
    prev_line = line;
  }
  for (uint64_t i = 0; i < n * idx->K; i++) {
    double v = ad_read_f64(&r);
    if (!isfinite(v)) goto out_rows;
    idx->labels[i] = v;
  }
  if (r.bad || r.p != r.end) goto out_rows;
  idx->n = (int64_t)n;
  ok = true;
  goto out;
out_rows:
  free_rows(idx);
out:
  free(data);
  close(fd);
  return ok;
}

static ad_status_t sidecar_path(rt_tsv_index_t *idx, const char *cache_dir) {
  const char *slash = strrchr(idx->abspath, '/');
  const char *base = slash ? slash + 1 : idx->abspath;
  size_t dirlen = slash ? (size_t)(slash - idx->abspath) : 0;
  size_t n = strlen(idx->abspath) + (cache_dir ? strlen(cache_dir) : 0) + 64;
  idx->sidecar = malloc(n);
  if (!idx->sidecar) return oom();
  if (cache_dir)
    snprintf(idx->sidecar, n, "%s/%s-%016llx.aidomm-idx", cache_dir, base,
             (unsigned long long)fnv1a(FNV_SEED, idx->abspath, strlen(idx->abspath)));
  else
    snprintf(idx->sidecar, n, "%.*s/.%s.aidomm-idx", (int)dirlen, idx->abspath, base);
  return AD_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Open */

ad_status_t rt_tsv_open(const char *path, const rt_tsv_options_t *opt, rt_tsv_index_t **out) {
  *out = NULL;
  rt_tsv_options_t o = opt ? *opt : (rt_tsv_options_t){0};
  if (o.max_line == 0) o.max_line = RT_TSV_DEFAULT_MAX_LINE;
  if (o.chunk_size == 0) o.chunk_size = RT_TSV_DEFAULT_CHUNK;
  if (o.chunk_size < 16) o.chunk_size = 16; /* the BOM check needs the first 3 bytes at once */
  if (o.max_line >= UINT32_MAX)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: max_line must be below 4 GiB", path);
  if ((o.n_y && !o.y_cols) || (o.n_x && !o.x_cols) || (o.n_renames && !o.renames))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: column list is NULL", path);

  rt_tsv_index_t *idx = calloc(1, sizeof *idx);
  if (!idx) return oom();
  idx->fd = -1;
  idx->max_line = o.max_line;
  ad_status_t st = AD_OK;
  idx->path = xstrdup(path);
  idx->K = o.n_y;
  idx->nx = o.n_x;
  idx->y_names = calloc(o.n_y ? o.n_y : 1, sizeof(char *));
  idx->x_hdr = calloc(o.n_x ? o.n_x : 1, sizeof(char *));
  idx->x_name = calloc(o.n_x ? o.n_x : 1, sizeof(char *));
  idx->x_col = calloc(o.n_x ? o.n_x : 1, sizeof(size_t));
  if (!idx->path || !idx->y_names || !idx->x_hdr || !idx->x_name || !idx->x_col) {
    st = oom();
    goto fail;
  }
  for (size_t k = 0; k < o.n_y; k++)
    if (!(idx->y_names[k] = xstrdup(o.y_cols[k]))) {
      st = oom();
      goto fail;
    }
  for (size_t j = 0; j < o.n_x; j++) {
    const char *to = o.x_cols[j];
    for (size_t r = 0; r < o.n_renames; r++)
      if (!strcmp(o.renames[r].from, o.x_cols[j])) to = o.renames[r].to;
    if (!(idx->x_hdr[j] = xstrdup(o.x_cols[j])) || !(idx->x_name[j] = xstrdup(to))) {
      st = oom();
      goto fail;
    }
  }

  idx->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (idx->fd < 0) {
    st = ad_status_make(AD_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    goto fail;
  }
  struct stat sb;
  if (fstat(idx->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    st = ad_status_make(AD_STATUS_IO, "%s: not a regular file", path);
    goto fail;
  }
  idx->file_size = (uint64_t)sb.st_size;
  idx->mtime_s = (int64_t)sb.st_mtim.tv_sec;
  idx->mtime_ns = (int64_t)sb.st_mtim.tv_nsec;
  idx->abspath = realpath(path, NULL);
  if (!idx->abspath) {
    st = ad_status_make(AD_STATUS_IO, "%s: %s", path, strerror(errno));
    goto fail;
  }
  if (!o.no_cache) {
    st = sidecar_path(idx, o.cache_dir);
    if (st) goto fail;
    if (load_sidecar(idx)) {
      idx->from_cache = true;
      *out = idx;
      return AD_OK;
    }
  }
  st = scan_file(idx, o.chunk_size);
  if (st) goto fail;
  /* A file rewritten during the scan would pair a stale key with new rows. */
  struct stat after;
  if (fstat(idx->fd, &after) != 0 || (uint64_t)after.st_size != idx->file_size ||
      after.st_mtim.tv_sec != sb.st_mtim.tv_sec || after.st_mtim.tv_nsec != sb.st_mtim.tv_nsec ||
      idx->scanned != idx->file_size) {
    st = ad_status_make(AD_STATUS_DATA_LOSS, "%s: file changed while it was being indexed", path);
    goto fail;
  }
  if (idx->sidecar) {
    /* The index is valid without its cache (e.g. a read-only data folder). */
    ad_status_free(write_sidecar(idx));
  }
  *out = idx;
  return AD_OK;
fail:
  rt_tsv_close(idx);
  return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Accessors */

const char *rt_tsv_path(const rt_tsv_index_t *idx) { return idx->path; }
int64_t rt_tsv_rows(const rt_tsv_index_t *idx) { return idx->n; }
size_t rt_tsv_num_cols(const rt_tsv_index_t *idx) { return idx->ncols; }
size_t rt_tsv_num_labels(const rt_tsv_index_t *idx) { return idx->K; }
const char *rt_tsv_label_name(const rt_tsv_index_t *idx, size_t k) { return idx->y_names[k]; }
const double *rt_tsv_labels(const rt_tsv_index_t *idx) { return idx->labels; }
size_t rt_tsv_num_x(const rt_tsv_index_t *idx) { return idx->nx; }
const char *rt_tsv_x_name(const rt_tsv_index_t *idx, size_t j) { return idx->x_name[j]; }
const char *rt_tsv_x_header(const rt_tsv_index_t *idx, size_t j) { return idx->x_hdr[j]; }
size_t rt_tsv_x_column(const rt_tsv_index_t *idx, size_t j) { return idx->x_col[j]; }
uint64_t rt_tsv_row_offset(const rt_tsv_index_t *idx, int64_t i) { return idx->off[i]; }
uint32_t rt_tsv_row_length(const rt_tsv_index_t *idx, int64_t i) { return idx->len[i]; }
uint32_t rt_tsv_row_line(const rt_tsv_index_t *idx, int64_t i) { return idx->line[i]; }
bool rt_tsv_from_cache(const rt_tsv_index_t *idx) { return idx->from_cache; }
uint64_t rt_tsv_bytes_scanned(const rt_tsv_index_t *idx) { return idx->scanned; }
size_t rt_tsv_scan_buffer_peak(const rt_tsv_index_t *idx) { return idx->buf_peak; }
const char *rt_tsv_sidecar_path(const rt_tsv_index_t *idx) { return idx->sidecar; }

/* ---------------------------------------------------------------------------------------- */
/* Rows */

void rt_tsv_row_free(rt_tsv_row_t *row) {
  free(row->buf);
  free(row->field);
  free(row->field_len);
  *row = (rt_tsv_row_t){0};
}

ad_status_t rt_tsv_read_row(const rt_tsv_index_t *idx, int64_t i, rt_tsv_row_t *row) {
  if (i < 0 || i >= idx->n)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: row %lld out of range [0, %lld)",
                          idx->path, (long long)i, (long long)idx->n);
  size_t len = idx->len[i];
  if (row->cap < len) {
    char *b = realloc(row->buf, len);
    if (!b) return oom();
    row->buf = b;
    row->cap = len;
  }
  if (row->ncols != idx->ncols) {
    const char **f = realloc(row->field, idx->ncols * sizeof *f);
    if (!f) return oom();
    row->field = f;
    size_t *fl = realloc(row->field_len, idx->ncols * sizeof *fl);
    if (!fl) return oom();
    row->field_len = fl;
    row->ncols = idx->ncols;
  }
  size_t got = 0;
  ad_status_t st = read_full(idx->fd, row->buf, len, idx->off[i], &got);
  if (st) return ad_status_annotate(st, "%s:%u", idx->path, idx->line[i]);
  size_t nf = 0, start = 0;
  bool bad = got != len;
  for (size_t b = 0; !bad && b <= len; b++) {
    if (b == len || row->buf[b] == '\t') {
      if (nf == idx->ncols) {
        bad = true;
        break;
      }
      row->field[nf] = row->buf + start;
      row->field_len[nf] = b - start;
      nf++;
      start = b + 1;
    } else if (row->buf[b] == '\n') {
      bad = true;
    }
  }
  if (bad || nf != idx->ncols)
    return ad_status_make(AD_STATUS_DATA_LOSS,
                          "%s:%u: row no longer matches the index (was the file changed?)",
                          idx->path, idx->line[i]);
  return AD_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* z-score statistics */

/* Neumaier's compensated sum: the error of a plain sum over ~10^5 rows would be visible at the
 * 1e-12 level, and these statistics scale every label and metric after them. */
typedef struct ksum {
  double s, c;
} ksum_t;

static void ksum_add(ksum_t *k, double x) {
  double t = k->s + x;
  if (fabs(k->s) >= fabs(x))
    k->c += (k->s - t) + x;
  else
    k->c += (x - t) + k->s;
  k->s = t;
}

ad_status_t rt_tsv_zscore_stats(const rt_tsv_index_t *const *idx, size_t n, double *mean,
                                double *std) {
  if (n == 0) return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "z-score statistics: no data");
  size_t K = idx[0]->K;
  int64_t total = 0;
  for (size_t f = 0; f < n; f++) {
    if (idx[f]->K != K)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "z-score statistics: %s has %zu label columns, %s has %zu",
                            idx[0]->path, K, idx[f]->path, idx[f]->K);
    for (size_t k = 0; k < K; k++)
      if (strcmp(idx[f]->y_names[k], idx[0]->y_names[k]))
        return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                              "z-score statistics: label %zu is '%s' in %s but '%s' in %s", k,
                              idx[0]->y_names[k], idx[0]->path, idx[f]->y_names[k], idx[f]->path);
    total += idx[f]->n;
  }
  if (total == 0)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "z-score statistics: %s has no rows%s",
                          idx[0]->path, n > 1 ? " (nor do the other files)" : "");
  for (size_t k = 0; k < K; k++) {
    ksum_t s = {0, 0};
    for (size_t f = 0; f < n; f++)
      for (int64_t i = 0; i < idx[f]->n; i++) ksum_add(&s, idx[f]->labels[(size_t)i * K + k]);
    double mu = (s.s + s.c) / (double)total;
    ksum_t q = {0, 0};
    for (size_t f = 0; f < n; f++)
      for (int64_t i = 0; i < idx[f]->n; i++) {
        double d = idx[f]->labels[(size_t)i * K + k] - mu;
        ksum_add(&q, d * d);
      }
    mean[k] = mu;
    std[k] = sqrt((q.s + q.c) / (double)total);
  }
  return AD_OK;
}
