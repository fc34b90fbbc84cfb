/* Strict safetensors reader and atomic writer; the accepted format is described in
 * runtime/safetensors.h. */
#include "runtime/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/arena.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

/* The Rust reference caps the header at 100 MB; a larger one is corrupt, not a big model. */
#define RT_ST_MAX_HEADER (100u * 1000u * 1000u)

static const char *const g_dtype_names[RT_ST_DTYPE_COUNT] = {
    [RT_ST_F64] = "F64", [RT_ST_F32] = "F32", [RT_ST_BF16] = "BF16", [RT_ST_F16] = "F16",
    [RT_ST_I64] = "I64", [RT_ST_I32] = "I32", [RT_ST_U8] = "U8",     [RT_ST_BOOL] = "BOOL",
};
static const size_t g_dtype_sizes[RT_ST_DTYPE_COUNT] = {
    [RT_ST_F64] = 8, [RT_ST_F32] = 4, [RT_ST_BF16] = 2, [RT_ST_F16] = 2,
    [RT_ST_I64] = 8, [RT_ST_I32] = 4, [RT_ST_U8] = 1,   [RT_ST_BOOL] = 1,
};

const char *rt_st_dtype_name(rt_st_dtype_t t) {
  return (unsigned)t < RT_ST_DTYPE_COUNT ? g_dtype_names[t] : "<bad-dtype>";
}

bool rt_st_dtype_from_name(const char *s, rt_st_dtype_t *out) {
  for (int i = 0; i < RT_ST_DTYPE_COUNT; i++)
    if (strcmp(s, g_dtype_names[i]) == 0) {
      *out = (rt_st_dtype_t)i;
      return true;
    }
  return false;
}

size_t rt_st_dtype_size(rt_st_dtype_t t) {
  return (unsigned)t < RT_ST_DTYPE_COUNT ? g_dtype_sizes[t] : 0;
}

bool rt_st_dtype_to_ir(rt_st_dtype_t t, ir_dtype_t *out) {
  switch (t) {
    case RT_ST_F64: *out = IR_DTYPE_F64; return true;
    case RT_ST_F32: *out = IR_DTYPE_F32; return true;
    case RT_ST_BF16: *out = IR_DTYPE_BF16; return true;
    case RT_ST_F16: *out = IR_DTYPE_F16; return true;
    case RT_ST_I64: *out = IR_DTYPE_I64; return true;
    case RT_ST_I32: *out = IR_DTYPE_I32; return true;
    case RT_ST_U8: *out = IR_DTYPE_U8; return true;
    default: return false;
  }
}

bool rt_st_dtype_from_ir(ir_dtype_t t, rt_st_dtype_t *out) {
  switch (t) {
    case IR_DTYPE_F64: *out = RT_ST_F64; return true;
    case IR_DTYPE_F32: *out = RT_ST_F32; return true;
    case IR_DTYPE_BF16: *out = RT_ST_BF16; return true;
    case IR_DTYPE_F16: *out = RT_ST_F16; return true;
    case IR_DTYPE_I64: *out = RT_ST_I64; return true;
    case IR_DTYPE_I32: *out = RT_ST_I32; return true;
    case IR_DTYPE_U8: *out = RT_ST_U8; return true;
    default: return false;
  }
}

int64_t rt_st_numel(const rt_st_tensor_t *t) {
  int64_t n = 1;
  for (int32_t i = 0; i < t->rank; i++) n *= t->shape[i];
  return n;
}

bool rt_st_as_ir_tensor(const rt_st_tensor_t *t, ir_tensor_t *out) {
  ir_dtype_t dt;
  if (!rt_st_dtype_to_ir(t->dtype, &dt) || t->rank > IR_MAX_RANK) return false;
  memset(out, 0, sizeof *out);
  out->data = (void *)t->data; /* read-only by contract: the view never writes */
  out->dtype = dt;
  out->rank = t->rank;
  for (int32_t i = 0; i < t->rank; i++) out->dims[i] = t->shape[i];
  return true;
}

/* ---- reader ------------------------------------------------------------------------------ */

struct rt_st_file {
  ad_arena_t arena; /* path, names, metadata, tensor array */
  char *path;
  void *map; /* mmap'd file, or NULL */
  size_t map_len;
  void *aligned;           /* realigned copy of the data area, or NULL */
  rt_st_tensor_t *tensors; /* sorted by name */
  size_t ntensors;
  rt_st_kv_t *meta; /* sorted by key */
  size_t nmeta;
};

typedef struct st_entry {
  rt_st_tensor_t t;
  uint64_t begin, end;
} st_entry_t;

static ad_status_t st_corrupt(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static ad_status_t st_corrupt(const char *path, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ad_status_make(AD_STATUS_DATA_LOSS, "%s: corrupt safetensors file: %s", path, msg);
}

static int cmp_entry_offset(const void *a, const void *b) {
  const st_entry_t *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return strcmp(x->t.name, y->t.name);
}

static int cmp_tensor_name(const void *a, const void *b) {
  return strcmp(((const rt_st_tensor_t *)a)->name, ((const rt_st_tensor_t *)b)->name);
}

static int cmp_kv_key(const void *a, const void *b) {
  return strcmp(((const rt_st_kv_t *)a)->key, ((const rt_st_kv_t *)b)->key);
}

static ad_status_t parse_metadata(rt_st_file_t *f, json_t *obj) {
  if (!json_is_object(obj)) return st_corrupt(f->path, "__metadata__ is not an object");
  f->nmeta = json_object_size(obj);
  f->meta = ad_arena_alloc(&f->arena, (f->nmeta ? f->nmeta : 1) * sizeof *f->meta);
  size_t i = 0;
  const char *key;
  json_t *val;
  json_object_foreach(obj, key, val) {
    if (!json_is_string(val))
      return st_corrupt(f->path, "__metadata__ value of '%s' is not a string", key);
    f->meta[i].key = ad_arena_strdup(&f->arena, key);
    f->meta[i].value = ad_arena_strndup(&f->arena, json_string_value(val), json_string_length(val));
    i++;
  }
  qsort(f->meta, f->nmeta, sizeof *f->meta, cmp_kv_key);
  return AD_OK;
}

static ad_status_t parse_tensor(rt_st_file_t *f, const char *name, json_t *obj, uint64_t data_len,
                                st_entry_t *e) {
  const char *p = f->path;
  if (!json_is_object(obj)) return st_corrupt(p, "tensor '%s': entry is not an object", name);
  const char *key;
  json_t *val;
  json_object_foreach(obj, key, val) {
    if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 && strcmp(key, "data_offsets") != 0)
      return st_corrupt(p, "tensor '%s': unknown field '%s'", name, key);
  }
  json_t *jd = json_object_get(obj, "dtype");
  json_t *js = json_object_get(obj, "shape");
  json_t *jo = json_object_get(obj, "data_offsets");
  if (!jd || !js || !jo)
    return st_corrupt(p, "tensor '%s': missing field '%s'", name,
                      !jd   ? "dtype"
                      : !js ? "shape"
                            : "data_offsets");
  if (!json_is_string(jd)) return st_corrupt(p, "tensor '%s': dtype is not a string", name);
  if (!rt_st_dtype_from_name(json_string_value(jd), &e->t.dtype))
    return st_corrupt(p, "tensor '%s': unknown dtype '%s'", name, json_string_value(jd));
  if (!json_is_array(js)) return st_corrupt(p, "tensor '%s': shape is not an array", name);
  size_t rank = json_array_size(js);
  if (rank > RT_ST_MAX_RANK)
    return ad_status_make(AD_STATUS_UNIMPLEMENTED, "%s: tensor '%s' has rank %zu (at most %d)", p,
                          name, rank, RT_ST_MAX_RANK);
  e->t.rank = (int32_t)rank;
  uint64_t nbytes = rt_st_dtype_size(e->t.dtype);
  for (size_t i = 0; i < rank; i++) {
    json_t *d = json_array_get(js, i);
    if (!json_is_integer(d))
      return st_corrupt(p, "tensor '%s': dim %zu is not an integer", name, i);
    json_int_t v = json_integer_value(d);
    if (v < 0)
      return st_corrupt(p, "tensor '%s': dim %zu is negative (%lld)", name, i, (long long)v);
    e->t.shape[i] = (int64_t)v;
    if (__builtin_mul_overflow(nbytes, (uint64_t)v, &nbytes))
      return st_corrupt(p, "tensor '%s': shape overflows the byte size", name);
  }
  if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
      !json_is_integer(json_array_get(jo, 1)))
    return st_corrupt(p, "tensor '%s': data_offsets is not [begin, end]", name);
  json_int_t b = json_integer_value(json_array_get(jo, 0));
  json_int_t en = json_integer_value(json_array_get(jo, 1));
  if (b < 0 || en < b)
    return st_corrupt(p, "tensor '%s': bad data_offsets [%lld, %lld]", name, (long long)b,
                      (long long)en);
  if ((uint64_t)en > data_len)
    return st_corrupt(
        p, "tensor '%s': data_offsets [%lld, %lld] out of range of the %llu-byte data area", name,
        (long long)b, (long long)en, (unsigned long long)data_len);
  if ((uint64_t)(en - b) != nbytes)
    return st_corrupt(
        p, "tensor '%s': size mismatch: %s shape needs %llu bytes, data_offsets give %llu", name,
        rt_st_dtype_name(e->t.dtype), (unsigned long long)nbytes, (unsigned long long)(en - b));
  e->begin = (uint64_t)b;
  e->end = (uint64_t)en;
  e->t.nbytes = (size_t)nbytes;
  e->t.name = ad_arena_strdup(&f->arena, name);
  return AD_OK;
}

static ad_status_t parse_file(rt_st_file_t *f, const uint8_t *buf, size_t len) {
  const char *p = f->path;
  if (len < 8) return st_corrupt(p, "file too short (%zu bytes) for the 8-byte header length", len);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
  if (n > len - 8)
    return st_corrupt(p, "header length %llu past end of file (%zu bytes)", (unsigned long long)n,
                      len);
  if (n > RT_ST_MAX_HEADER)
    return st_corrupt(p, "header length %llu exceeds the %u-byte limit", (unsigned long long)n,
                      RT_ST_MAX_HEADER);
  if (n < 2 || buf[8] != '{') return st_corrupt(p, "header does not start with a JSON object");
  json_error_t jerr;
  json_t *root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return st_corrupt(p, "header is not valid JSON (header byte %d: %s)", jerr.position, jerr.text);
  ad_status_t st = AD_OK;
  st_entry_t *ents = NULL;
  if (!json_is_object(root)) {
    st = st_corrupt(p, "header is not a JSON object");
    goto done;
  }
  const uint8_t *data = buf + 8 + n;
  uint64_t data_len = len - 8 - n;
  size_t cap = json_object_size(root);
  ents = calloc(cap ? cap : 1, sizeof *ents);
  if (!ents) {
    st = ad_status_make(AD_STATUS_RESOURCE, "%s: out of memory for %zu tensor entries", p, cap);
    goto done;
  }
  size_t count = 0;
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (strcmp(key, "__metadata__") == 0)
      st = parse_metadata(f, val);
    else
      st = parse_tensor(f, key, val, data_len, &ents[count++]);
    if (st) goto done;
  }
  /* The tensors must tile the data area: no overlap, no gap, no trailing bytes. */
  qsort(ents, count, sizeof *ents, cmp_entry_offset);
  uint64_t cursor = 0;
  for (size_t i = 0; i < count; i++) {
    if (ents[i].begin < cursor) {
      st = st_corrupt(p, "tensors '%s' and '%s' overlap", ents[i - 1].t.name, ents[i].t.name);
      goto done;
    }
    if (ents[i].begin > cursor) {
      st = st_corrupt(p, "%llu unused bytes before tensor '%s'",
                      (unsigned long long)(ents[i].begin - cursor), ents[i].t.name);
      goto done;
    }
    cursor = ents[i].end;
  }
  if (cursor != data_len) {
    st = st_corrupt(p, "%llu trailing bytes after the last tensor",
                    (unsigned long long)(data_len - cursor));
    goto done;
  }
  bool misaligned = false;
  for (size_t i = 0; i < count; i++)
    if (ents[i].end > ents[i].begin &&
        ((uintptr_t)data + ents[i].begin) % rt_st_dtype_size(ents[i].t.dtype) != 0)
      misaligned = true;
  if (misaligned && data_len > 0) {
    size_t alen = ((size_t)data_len + 63) & ~(size_t)63;
    f->aligned = aligned_alloc(64, alen);
    if (!f->aligned) {
      st = ad_status_make(AD_STATUS_RESOURCE, "%s: out of memory realigning %llu bytes", p,
                          (unsigned long long)data_len);
      goto done;
    }
    memcpy(f->aligned, data, (size_t)data_len);
    data = f->aligned;
  }
  f->ntensors = count;
  f->tensors = ad_arena_alloc(&f->arena, (count ? count : 1) * sizeof *f->tensors);
  for (size_t i = 0; i < count; i++) {
    f->tensors[i] = ents[i].t;
    f->tensors[i].data = data + ents[i].begin;
  }
  qsort(f->tensors, count, sizeof *f->tensors, cmp_tensor_name);
done:
  free(ents);
  json_decref(root);
  return st;
}

static rt_st_file_t *file_new(const char *label) {
  rt_st_file_t *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  ad_arena_init(&f->arena, 16384);
  f->path = ad_arena_strdup(&f->arena, label ? label : "<memory>");
  return f;
}

ad_status_t rt_st_open_memory(const void *data, size_t len, const char *label, rt_st_file_t **out) {
  *out = NULL;
  rt_st_file_t *f = file_new(label);
  if (!f) return ad_status_make(AD_STATUS_RESOURCE, "out of memory opening %s", label);
  ad_status_t st = parse_file(f, data, len);
  if (st) {
    rt_st_close(f);
    return st;
  }
  *out = f;
  return AD_OK;
}

ad_status_t rt_st_open(const char *path, rt_st_file_t **out) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ad_status_make(AD_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return ad_status_make(AD_STATUS_IO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: not a regular file", path);
  }
  rt_st_file_t *f = file_new(path);
  if (!f) {
    close(fd);
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory opening %s", path);
  }
  size_t len = (size_t)sb.st_size;
  const uint8_t *buf = NULL;
  if (len > 0) {
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      rt_st_close(f);
      return ad_status_make(AD_STATUS_IO, "%s: cannot map %zu bytes: %s", path, len, strerror(e));
    }
    f->map = m;
    f->map_len = len;
    buf = m;
  }
  close(fd);
  static const uint8_t empty[1] = {0};
  ad_status_t st = parse_file(f, buf ? buf : empty, len);
  if (st) {
    rt_st_close(f);
    return st;
  }
  *out = f;
  return AD_OK;
}

void rt_st_close(rt_st_file_t *f) {
  if (!f) return;
  if (f->map) munmap(f->map, f->map_len);
  free(f->aligned);
  ad_arena_free(&f->arena);
  free(f);
}

const char *rt_st_path(const rt_st_file_t *f) { return f->path; }
size_t rt_st_count(const rt_st_file_t *f) { return f->ntensors; }

const rt_st_tensor_t *rt_st_at(const rt_st_file_t *f, size_t i) {
  return i < f->ntensors ? &f->tensors[i] : NULL;
}

const rt_st_tensor_t *rt_st_find(const rt_st_file_t *f, const char *name) {
  size_t lo = 0, hi = f->ntensors;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(name, f->tensors[mid].name);
    if (c == 0) return &f->tensors[mid];
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

const char *rt_st_metadata(const rt_st_file_t *f, const char *key) {
  for (size_t i = 0; i < f->nmeta; i++)
    if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
  return NULL;
}

size_t rt_st_metadata_count(const rt_st_file_t *f) { return f->nmeta; }

const rt_st_kv_t *rt_st_metadata_at(const rt_st_file_t *f, size_t i) {
  return i < f->nmeta ? &f->meta[i] : NULL;
}

/* ---- writer ------------------------------------------------------------------------------ */

static ad_status_t write_all(int fd, const void *p, size_t n, const char *path) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = write(fd, b, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ad_status_make(AD_STATUS_IO, "%s: write failed: %s", path, strerror(errno));
    }
    b += w;
    n -= (size_t)w;
  }
  return AD_OK;
}

static int cmp_tensor_ptr_name(const void *a, const void *b) {
  const rt_st_tensor_t *x = *(const rt_st_tensor_t *const *)a,
                       *y = *(const rt_st_tensor_t *const *)b;
  return strcmp(x->name, y->name);
}

/* Data layout order, as Python's safetensors writes: widest dtype first, then by name, so that
 * every tensor starts aligned to its element size in the 8-aligned data area. */
static int cmp_tensor_ptr_layout(const void *a, const void *b) {
  const rt_st_tensor_t *x = *(const rt_st_tensor_t *const *)a,
                       *y = *(const rt_st_tensor_t *const *)b;
  size_t sx = rt_st_dtype_size(x->dtype), sy = rt_st_dtype_size(y->dtype);
  if (sx != sy) return sx > sy ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* Builds the padded header for tensors in layout order; on success *hdr is malloc'd. */
static ad_status_t build_header(const char *path, const rt_st_tensor_t **sorted, size_t n,
                                const rt_st_kv_t *meta, size_t nmeta, char **hdr, size_t *hlen) {
  json_t *root = json_object();
  ad_status_t st = AD_OK;
  if (nmeta > 0) {
    json_t *m = json_object();
    json_object_set_new(root, "__metadata__", m);
    for (size_t i = 0; i < nmeta; i++) {
      if (!meta[i].key || !meta[i].value) {
        st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "%s: metadata entry %zu has a NULL key or value", path, i);
        goto fail;
      }
      if (json_object_get(m, meta[i].key)) {
        st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: duplicate metadata key '%s'", path,
                            meta[i].key);
        goto fail;
      }
      json_object_set_new(m, meta[i].key, json_string(meta[i].value));
    }
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < n; i++) {
    const rt_st_tensor_t *t = sorted[i];
    uint64_t nbytes = rt_st_dtype_size(t->dtype);
    json_t *shape = json_array();
    for (int32_t d = 0; d < t->rank; d++) {
      json_array_append_new(shape, json_integer(t->shape[d]));
      nbytes *= (uint64_t)t->shape[d];
    }
    json_t *e = json_object();
    json_object_set_new(e, "dtype", json_string(rt_st_dtype_name(t->dtype)));
    json_object_set_new(e, "shape", shape);
    json_t *offs = json_array();
    json_array_append_new(offs, json_integer((json_int_t)offset));
    json_array_append_new(offs, json_integer((json_int_t)(offset + nbytes)));
    json_object_set_new(e, "data_offsets", offs);
    json_object_set_new(root, t->name, e);
    offset += nbytes;
  }
  char *text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
  if (!text) {
    st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                        "%s: cannot encode the header (invalid UTF-8 in a name?)", path);
    goto fail;
  }
  size_t len = strlen(text);
  size_t padded = (len + 7) & ~(size_t)7; /* keeps the data area 8-byte aligned */
  char *out = malloc(8 + padded);
  if (!out) {
    free(text);
    st = ad_status_make(AD_STATUS_RESOURCE, "%s: out of memory for the header", path);
    goto fail;
  }
  for (int i = 0; i < 8; i++) out[i] = (char)(((uint64_t)padded >> (8 * i)) & 0xff);
  memcpy(out + 8, text, len);
  memset(out + 8 + len, ' ', padded - len);
  free(text);
  *hdr = out;
  *hlen = 8 + padded;
fail:
  json_decref(root);
  return st;
}

static ad_status_t validate_for_write(const char *path, const rt_st_tensor_t **sorted, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const rt_st_tensor_t *t = sorted[i];
    if (!t->name || !t->name[0])
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: tensor %zu has no name", path, i);
    if (strcmp(t->name, "__metadata__") == 0)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: '__metadata__' is not a tensor name",
                            path);
    if (i > 0 && strcmp(sorted[i - 1]->name, t->name) == 0)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: duplicate tensor name '%s'", path,
                            t->name);
    if ((unsigned)t->dtype >= RT_ST_DTYPE_COUNT)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: tensor '%s' has a bad dtype", path,
                            t->name);
    if (t->rank < 0 || t->rank > RT_ST_MAX_RANK)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: tensor '%s' has rank %d", path,
                            t->name, t->rank);
    for (int32_t d = 0; d < t->rank; d++)
      if (t->shape[d] < 0)
        return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: tensor '%s' has negative dim %d",
                              path, t->name, d);
    if (rt_st_numel(t) > 0 && !t->data)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: tensor '%s' has no data", path,
                            t->name);
  }
  return AD_OK;
}

/* Test-only fault injection for the crash-safety tests: with AIDOMM_FAULT_INJECT=<point>[:<n>]
 * the process dies (as by SIGKILL, exit status 137) the n-th time (default 1) a checkpoint
 * write reaches <point>: "after_temp" (temp file complete, not yet renamed) or "after_rename"
 * (renamed, directory not yet synced). */
static void fault_point(const char *point) {
  static int hits;
  const char *f = getenv("AIDOMM_FAULT_INJECT");
  if (!f) return;
  size_t n = strlen(point);
  if (strncmp(f, point, n) != 0 || (f[n] != 0 && f[n] != ':')) return;
  int want = f[n] == ':' ? atoi(f + n + 1) : 1;
  if (++hits == (want > 0 ? want : 1)) _exit(137);
}

static ad_status_t fsync_dir_of(const char *path) {
  char *dir = strdup(path);
  if (!dir) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
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
    st = ad_status_make(AD_STATUS_IO, "%s: cannot sync directory %s: %s", path, d, strerror(errno));
  if (fd >= 0) close(fd);
  free(dir);
  return st;
}

ad_status_t rt_st_write(const char *path, const rt_st_tensor_t *tensors, size_t ntensors,
                        const rt_st_kv_t *meta, size_t nmeta) {
  const rt_st_tensor_t **sorted = malloc((ntensors ? ntensors : 1) * sizeof *sorted);
  if (!sorted) return ad_status_make(AD_STATUS_RESOURCE, "%s: out of memory", path);
  for (size_t i = 0; i < ntensors; i++) sorted[i] = &tensors[i];
  for (size_t i = 0; i < ntensors; i++)
    if (!tensors[i].name) {
      free(sorted);
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s: tensor %zu has no name", path, i);
    }
  qsort(sorted, ntensors, sizeof *sorted, cmp_tensor_ptr_name);
  char *hdr = NULL, *tmp = NULL;
  size_t hlen = 0;
  int fd = -1;
  ad_status_t st = validate_for_write(path, sorted, ntensors);
  if (!st) {
    qsort(sorted, ntensors, sizeof *sorted, cmp_tensor_ptr_layout);
    st = build_header(path, sorted, ntensors, meta, nmeta, &hdr, &hlen);
  }
  if (st) goto out;
  size_t plen = strlen(path);
  tmp = malloc(plen + 16);
  if (!tmp) {
    st = ad_status_make(AD_STATUS_RESOURCE, "%s: out of memory", path);
    goto out;
  }
  /* The temp file lives beside the target so rename() stays within one filesystem. */
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp.XXXXXX", 12);
  fd = mkstemp(tmp);
  if (fd < 0) {
    st = ad_status_make(AD_STATUS_IO, "%s: cannot create temp file %s: %s", path, tmp,
                        strerror(errno));
    free(tmp);
    tmp = NULL;
    goto out;
  }
  if (fchmod(fd, 0644) != 0) {
    st = ad_status_make(AD_STATUS_IO, "%s: chmod failed: %s", tmp, strerror(errno));
    goto out;
  }
  st = write_all(fd, hdr, hlen, tmp);
  for (size_t i = 0; !st && i < ntensors; i++)
    st = write_all(fd, sorted[i]->data,
                   (size_t)rt_st_numel(sorted[i]) * rt_st_dtype_size(sorted[i]->dtype), tmp);
  if (st) goto out;
  if (fsync(fd) != 0) {
    st = ad_status_make(AD_STATUS_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    goto out;
  }
  int rc = close(fd);
  fd = -1;
  if (rc != 0) {
    st = ad_status_make(AD_STATUS_IO, "%s: close failed: %s", tmp, strerror(errno));
    goto out;
  }
  fault_point("after_temp");
  if (rename(tmp, path) != 0) {
    st = ad_status_make(AD_STATUS_IO, "%s: cannot rename %s over it: %s", path, tmp,
                        strerror(errno));
    goto out;
  }
  free(tmp);
  tmp = NULL;
  fault_point("after_rename");
  st = fsync_dir_of(path);
out:
  if (fd >= 0) close(fd);
  if (tmp) {
    unlink(tmp);
    free(tmp);
  }
  free(hdr);
  free(sorted);
  return st;
}
