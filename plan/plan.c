/* The plan container: header, section table, checksum, atomic write, validating read.
 * The reader checks in a fixed order (readable, long enough, magic, version, recorded size,
 * checksum, table, sections) so that every malformed file gets the most specific reason. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "plan/plan_internal.h"

#ifndef AIDOMM_VERSION
#define AIDOMM_VERSION "unknown"
#endif

#define PLAN_MAX_SECTIONS 64u

static const char *const g_section_names[PLAN_SECTION_KIND_MAX + 1] = {
    [PLAN_SECTION_META] = "META",     [PLAN_SECTION_CONFIG] = "CONFIG",
    [PLAN_SECTION_MODULE] = "MODULE", [PLAN_SECTION_MEMPLAN] = "MEMPLAN",
    [PLAN_SECTION_JOB] = "JOB",       [PLAN_SECTION_CODE] = "CODE",
};

const char *plan_section_name(uint32_t kind) {
  return kind >= 1 && kind <= PLAN_SECTION_KIND_MAX ? g_section_names[kind] : "?";
}

static const char *const g_job_names[PLAN_JOB_COUNT] = {"fit", "validate", "test", "predict"};

const char *plan_job_kind_name(plan_job_kind_t k) {
  return (unsigned)k < PLAN_JOB_COUNT ? g_job_names[k] : "?";
}

bool plan_job_kind_from_name(const char *s, plan_job_kind_t *out) {
  for (int i = 0; i < PLAN_JOB_COUNT; i++)
    if (s && strcmp(s, g_job_names[i]) == 0) {
      *out = (plan_job_kind_t)i;
      return true;
    }
  return false;
}

/* ---- the plan object ------------------------------------------------------------------- */

plan_t *plan_create(void) {
  plan_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  ad_arena_init(&p->arena, 0);
  p->meta.aidomm_version = AIDOMM_VERSION;
  p->meta.format_version = PLAN_FORMAT_VERSION;
  p->meta.created_by = "aidommc";
  p->meta.target_cpu = "host";
  p->meta.llvm_version = "none";
  p->meta.nvrtc_version = "none";
  /* torch.optim.AdamW defaults, so a hand-built plan is valid as is. */
  p->job = (plan_job_t){.kind = PLAN_JOB_FIT, .seed = 0, .max_steps = -1, .batch_size = 1,
                        .max_length = 1, .dtype = IR_DTYPE_F32, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                        .weight_decay = 0.01};
  p->config_yaml = "";
  return p;
}

void plan_free(plan_t *p) {
  if (!p) return;
  ir_module_free(p->module);
  ad_arena_free(&p->arena);
  free(p);
}

void plan_set_config(plan_t *p, const char *yaml, size_t len) {
  char *s = ad_arena_alloc(&p->arena, len + 1);
  if (len) memcpy(s, yaml, len);
  p->config_yaml = s;
  p->config_len = len;
}

void plan_set_module(plan_t *p, ir_module_t *m) {
  if (p->module != m) ir_module_free(p->module);
  p->module = m;
  p->memplans = NULL;
  p->nmemplans = 0;
}

void plan_set_meta(plan_t *p, const char *created_by, const char *target_cpu) {
  if (created_by) p->meta.created_by = ad_arena_strdup(&p->arena, created_by);
  if (target_cpu) p->meta.target_cpu = ad_arena_strdup(&p->arena, target_cpu);
}

ad_status_t plan_plan_memory(plan_t *p, int reuse) {
  if (!p->module) return ad_status_make(AD_STATUS_INTERNAL, "plan has no module to plan");
  const ir_module_t *m = p->module;
  plan_memplan_t *mps = ad_arena_alloc(&p->arena, (m->nprograms + 1) * sizeof *mps);
  for (uint32_t i = 0; i < m->nprograms; i++) {
    const ir_graph_t *g = m->programs[i];
    pass_memplan_t pm = {0};
    ad_status_t st = pass_memplan(g, reuse, &pm);
    if (st) return ad_status_annotate(st, "memory planning of program '%s'", g->name);
    plan_memplan_t *mp = &mps[i];
    mp->program = ad_arena_strdup(&p->arena, g->name);
    mp->reuse = reuse ? 1 : 0;
    mp->nvalues = pm.nvalues;
    size_t bytes = (size_t)pm.nvalues * sizeof(int64_t);
    mp->offset = ad_arena_alloc(&p->arena, bytes);
    mp->size = ad_arena_alloc(&p->arena, bytes);
    if (bytes) {
      memcpy(mp->offset, pm.offset, bytes);
      memcpy(mp->size, pm.size, bytes);
    }
    mp->peak_bytes = pm.peak_bytes;
    mp->total_bytes = pm.total_bytes;
    pass_memplan_free(&pm);
  }
  p->memplans = mps;
  p->nmemplans = m->nprograms;
  return AD_OK;
}

const plan_memplan_t *plan_find_memplan(const plan_t *p, const char *program) {
  for (uint32_t i = 0; i < p->nmemplans; i++)
    if (strcmp(p->memplans[i].program, program) == 0) return &p->memplans[i];
  return NULL;
}

/* ---- little-endian helpers over raw bytes ------------------------------------------------ */

static uint32_t get_u32(const uint8_t *b) {
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t get_u64(const uint8_t *b) {
  return (uint64_t)get_u32(b) | (uint64_t)get_u32(b + 4) << 32;
}

static void set_u32(uint8_t *b, uint32_t v) {
  for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
}

static size_t align_up(size_t n) { return (n + PLAN_ALIGN - 1) & ~(size_t)(PLAN_ALIGN - 1); }

/* crc32 of the file as if its checksum field were zero. */
static uint32_t plan_crc(const uint8_t *data, size_t len) {
  static const uint8_t zeros[4] = {0, 0, 0, 0};
  uLong crc = crc32_z(0L, Z_NULL, 0);
  crc = crc32_z(crc, data, PLAN_OFF_CRC);
  crc = crc32_z(crc, zeros, 4);
  crc = crc32_z(crc, data + PLAN_OFF_CRC + 4, len - PLAN_OFF_CRC - 4);
  return (uint32_t)crc;
}

/* ---- encode ---------------------------------------------------------------------------- */

ad_status_t plan_encode(const plan_t *p, ad_buf_t *out) {
  if (!p->module) return ad_status_make(AD_STATUS_INTERNAL, "plan has no module");
  AD_RETURN_IF_ERROR(plan_check_memplans(p, AD_STATUS_INTERNAL));
  /* The reader rejects NUL in the YAML text (it hands the text on as a C string). */
  if (p->config_len && memchr(p->config_yaml, 0, p->config_len))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "the config text contains a NUL byte");
  enum { NSEC = PLAN_SECTION_KIND_MAX };
  ad_buf_t pay[NSEC + 1] = {{0}};
  ad_status_t st = plan_encode_meta(p, &pay[PLAN_SECTION_META]);
  if (!st) ad_buf_append(&pay[PLAN_SECTION_CONFIG], p->config_yaml, p->config_len);
  if (!st) ir_serialize_module(p->module, &pay[PLAN_SECTION_MODULE]);
  if (!st) st = plan_encode_memplans(p, &pay[PLAN_SECTION_MEMPLAN]);
  if (!st) st = plan_encode_job(p, &pay[PLAN_SECTION_JOB]);
  if (!st) ad_buf_append(&pay[PLAN_SECTION_CODE], p->code, p->code_len);
  if (st) {
    for (int k = 1; k <= NSEC; k++) ad_buf_free(&pay[k]);
    return st;
  }

  size_t start = out->len;
  size_t pos = align_up(PLAN_HEADER_SIZE + (size_t)NSEC * PLAN_SECTION_ENTRY_SIZE);
  uint64_t offs[NSEC + 1];
  for (int k = 1; k <= NSEC; k++) {
    offs[k] = pos;
    pos = align_up(pos + pay[k].len);
  }
  /* The last section ends the file: no trailing padding to account for. */
  size_t file_size = (size_t)offs[NSEC] + pay[NSEC].len;

  ad_buf_reserve(out, file_size);
  ad_buf_append(out, PLAN_MAGIC, 8);
  ad_buf_put_u32(out, PLAN_FORMAT_VERSION);
  ad_buf_put_u32(out, PLAN_HEADER_SIZE);
  ad_buf_put_u64(out, file_size);
  ad_buf_put_u32(out, NSEC);
  ad_buf_put_u32(out, 0); /* checksum, patched below */
  static const uint8_t zeros[PLAN_HEADER_SIZE];
  ad_buf_append(out, zeros, PLAN_HEADER_SIZE - 32);
  for (int k = 1; k <= NSEC; k++) {
    ad_buf_put_u32(out, (uint32_t)k);
    ad_buf_put_u32(out, 0);
    ad_buf_put_u64(out, offs[k]);
    ad_buf_put_u64(out, pay[k].len);
  }
  for (int k = 1; k <= NSEC; k++) {
    ad_buf_append(out, zeros, (size_t)offs[k] - (out->len - start));
    ad_buf_append(out, pay[k].data, pay[k].len);
    ad_buf_free(&pay[k]);
  }
  uint8_t *base = out->data + start;
  set_u32(base + PLAN_OFF_CRC, plan_crc(base, file_size));
  return AD_OK;
}

/* ---- decode ---------------------------------------------------------------------------- */

#define CORRUPT(...) ad_status_at(AD_STATUS_DATA_LOSS, name, 0, 0, "plan is corrupt: " __VA_ARGS__)

typedef struct section_ref {
  uint32_t kind;
  uint64_t offset, size;
} section_ref_t;

static int cmp_offset(const void *a, const void *b) {
  const section_ref_t *x = a, *y = b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static bool all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return false;
  return true;
}

/* Re-labels a section decoder's status with the file and section. */
static ad_status_t section_error(const char *name, uint32_t kind, ad_status_t st) {
  ad_status_t out = ad_status_at(ad_status_code(st) == AD_STATUS_RESOURCE ? AD_STATUS_RESOURCE
                                                                          : AD_STATUS_DATA_LOSS,
                                 name, 0, 0, "plan is corrupt: %s section: %s",
                                 plan_section_name(kind), ad_status_message(st));
  ad_status_free(st);
  return out;
}

/* Header and section table; fills secs[kind] for every kind. */
static ad_status_t check_container(const uint8_t *data, size_t len, const char *name,
                                   section_ref_t *secs) {
  if (len == 0)
    return ad_status_at(AD_STATUS_INVALID_ARGUMENT, name, 0, 0,
                        "not an aidomm plan (the file is empty)");
  /* A short file that starts like a plan was cut off; anything else is simply not a plan. */
  size_t nmagic = len < 8 ? len : 8;
  if (memcmp(data, PLAN_MAGIC, nmagic) != 0)
    return ad_status_at(AD_STATUS_INVALID_ARGUMENT, name, 0, 0,
                        "not an aidomm plan (bad magic; expected \"%s\")", PLAN_MAGIC);
  if (len < PLAN_HEADER_SIZE)
    return ad_status_at(AD_STATUS_DATA_LOSS, name, 0, 0,
                        "plan is truncated: %zu bytes, shorter than the %u-byte header", len,
                        PLAN_HEADER_SIZE);
  uint32_t version = get_u32(data + PLAN_OFF_VERSION);
  if (version > PLAN_FORMAT_VERSION)
    return ad_status_at(AD_STATUS_INVALID_ARGUMENT, name, 0, 0,
                        "plan format version %u is newer than this aidomm supports (%u); "
                        "recompile the plan with this aidommc or use a newer aidomm",
                        version, PLAN_FORMAT_VERSION);
  if (version < 1)
    return ad_status_at(AD_STATUS_DATA_LOSS, name, 0, 0,
                        "plan is corrupt: format version %u does not exist", version);
  uint64_t recorded = get_u64(data + PLAN_OFF_FILE_SIZE);
  if (recorded > len)
    return ad_status_at(AD_STATUS_DATA_LOSS, name, 0, 0,
                        "plan is truncated: the header records %llu bytes but the file has %zu",
                        (unsigned long long)recorded, len);
  if (recorded < len)
    return ad_status_at(AD_STATUS_DATA_LOSS, name, 0, 0,
                        "plan is corrupt: the header records %llu bytes but the file has %zu "
                        "(trailing data or a damaged header)",
                        (unsigned long long)recorded, len);
  uint32_t stored = get_u32(data + PLAN_OFF_CRC), computed = plan_crc(data, len);
  if (stored != computed)
    return ad_status_at(AD_STATUS_DATA_LOSS, name, 0, 0,
                        "plan is corrupt: checksum mismatch (stored %08x, computed %08x)", stored,
                        computed);

  /* From here the bytes are what some writer produced: failures mean a broken writer. */
  uint32_t hsize = get_u32(data + PLAN_OFF_HEADER_SIZE);
  if (hsize != PLAN_HEADER_SIZE)
    return CORRUPT("header size %u, expected %u", hsize, PLAN_HEADER_SIZE);
  if (!all_zero(data + 32, PLAN_HEADER_SIZE - 32)) return CORRUPT("reserved header bytes are set");
  uint32_t count = get_u32(data + PLAN_OFF_SECTION_COUNT);
  if (count == 0 || count > PLAN_MAX_SECTIONS)
    return CORRUPT("section count %u is not in 1..%u", count, PLAN_MAX_SECTIONS);
  size_t table_end = PLAN_HEADER_SIZE + (size_t)count * PLAN_SECTION_ENTRY_SIZE;
  if (table_end > len)
    return CORRUPT("section table (%u entries) extends past the end of the file", count);

  section_ref_t sorted[PLAN_MAX_SECTIONS];
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t *e = data + PLAN_HEADER_SIZE + (size_t)i * PLAN_SECTION_ENTRY_SIZE;
    section_ref_t s = {get_u32(e), get_u64(e + 8), get_u64(e + 16)};
    uint32_t flags = get_u32(e + 4);
    if (s.kind < 1 || s.kind > PLAN_SECTION_KIND_MAX)
      return CORRUPT("section %u has unknown kind %u", i, s.kind);
    const char *sn = plan_section_name(s.kind);
    if (flags != 0) return CORRUPT("section %u (%s) has unknown flags 0x%x", i, sn, flags);
    if (secs[s.kind].kind) return CORRUPT("section %s appears twice", sn);
    if (s.offset % PLAN_ALIGN)
      return CORRUPT("section %s offset %llu is not %u-byte aligned", sn,
                     (unsigned long long)s.offset, PLAN_ALIGN);
    if (s.offset < table_end)
      return CORRUPT("section %s at offset %llu overlaps the header or section table", sn,
                     (unsigned long long)s.offset);
    if (s.offset > len || s.size > len - s.offset)
      return CORRUPT("section %s (offset %llu, size %llu) extends past the end of the file (%zu "
                     "bytes)",
                     sn, (unsigned long long)s.offset, (unsigned long long)s.size, len);
    secs[s.kind] = s;
    sorted[i] = s;
  }
  for (uint32_t k = 1; k <= PLAN_SECTION_KIND_MAX; k++)
    if (!secs[k].kind) return CORRUPT("the %s section is missing", plan_section_name(k));

  /* Sections may not overlap, and the gaps between them are zero padding. */
  qsort(sorted, count, sizeof *sorted, cmp_offset);
  uint64_t pos = table_end;
  for (uint32_t i = 0; i < count; i++) {
    if (sorted[i].offset < pos)
      return CORRUPT("sections %s and %s overlap", plan_section_name(sorted[i - 1].kind),
                     plan_section_name(sorted[i].kind));
    if (!all_zero(data + pos, (size_t)(sorted[i].offset - pos)))
      return CORRUPT("nonzero padding before the %s section", plan_section_name(sorted[i].kind));
    pos = sorted[i].offset + sorted[i].size;
  }
  if (!all_zero(data + pos, (size_t)(len - pos)))
    return CORRUPT("nonzero bytes after the last section");
  return AD_OK;
}

ad_status_t plan_decode(const uint8_t *data, size_t len, const char *name, plan_t **out) {
  *out = NULL;
  section_ref_t secs[PLAN_SECTION_KIND_MAX + 1];
  memset(secs, 0, sizeof secs);
  AD_RETURN_IF_ERROR(check_container(data, len, name, secs));

  plan_t *p = plan_create();
  if (!p) return ad_status_at(AD_STATUS_RESOURCE, name, 0, 0, "out of memory reading the plan");
#define SEC(k) data + secs[k].offset, (size_t)secs[k].size
  plan_job_kind_t meta_job = PLAN_JOB_FIT;
  uint32_t version = get_u32(data + PLAN_OFF_VERSION);
  uint32_t failed = 0;
  ad_status_t st;
  if ((st = plan_decode_meta(p, SEC(PLAN_SECTION_META), version, &meta_job)))
    failed = PLAN_SECTION_META;
  else if ((st = plan_decode_config(p, SEC(PLAN_SECTION_CONFIG))))
    failed = PLAN_SECTION_CONFIG;
  else if ((st = ir_deserialize_module(SEC(PLAN_SECTION_MODULE), &p->module)))
    failed = PLAN_SECTION_MODULE;
  else if ((st = ir_verify_module(p->module)))
    failed = PLAN_SECTION_MODULE;
  else if ((st = plan_decode_memplans(p, SEC(PLAN_SECTION_MEMPLAN))) ||
           (st = plan_check_memplans(p, AD_STATUS_DATA_LOSS)))
    failed = PLAN_SECTION_MEMPLAN;
  else if ((st = plan_decode_job(p, SEC(PLAN_SECTION_JOB))))
    failed = PLAN_SECTION_JOB;
#undef SEC
  if (failed) {
    plan_free(p);
    return section_error(name, failed, st);
  }
  if (meta_job != p->job.kind) {
    st = CORRUPT("META says job '%s' but JOB says '%s'", plan_job_kind_name(meta_job),
                 plan_job_kind_name(p->job.kind));
    plan_free(p);
    return st;
  }
  const section_ref_t *code = &secs[PLAN_SECTION_CODE];
  if (code->size) {
    p->code = ad_arena_memdup(&p->arena, data + code->offset, (size_t)code->size);
    p->code_len = (size_t)code->size;
  }
  *out = p;
  return AD_OK;
}

/* ---- files ----------------------------------------------------------------------------- */

static ad_status_t io_error(const char *path, const char *what, int err) {
  return ad_status_at(AD_STATUS_IO, path, 0, 0, "%s: %s", what, strerror(err));
}

static ad_status_t write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ad_status_make(AD_STATUS_IO, "%s", strerror(errno));
    }
    p += w;
    n -= (size_t)w;
  }
  return AD_OK;
}

ad_status_t plan_write(const plan_t *p, const char *path) {
  ad_buf_t buf = {0};
  ad_status_t st = plan_encode(p, &buf);
  if (st) {
    ad_buf_free(&buf);
    return ad_status_annotate(st, "encoding plan '%s'", path);
  }

  /* The temp file lives beside the target so that rename() is atomic (same file system). */
  const char *slash = strrchr(path, '/');
  size_t dirlen = slash ? (size_t)(slash - path) : 0;
  char *dir = slash ? (dirlen ? strndup(path, dirlen) : strdup("/")) : strdup(".");
  size_t tlen = strlen(path) + 64;
  char *tmp = malloc(tlen);
  if (!dir || !tmp) {
    free(dir);
    free(tmp);
    ad_buf_free(&buf);
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory writing plan '%s'", path);
  }
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
    snprintf(tmp, tlen, "%.*s.%s.tmp.%ld.%d", (int)(slash ? dirlen + 1 : 0), path,
             slash ? slash + 1 : path, (long)getpid(), attempt);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    st = io_error(path, "cannot create a temporary file for the plan", errno);
    goto done;
  }
  st = write_all(fd, buf.data, buf.len);
  if (!st && fsync(fd) != 0) st = ad_status_make(AD_STATUS_IO, "fsync: %s", strerror(errno));
  if (close(fd) != 0 && !st) st = ad_status_make(AD_STATUS_IO, "close: %s", strerror(errno));
  if (!st && rename(tmp, path) != 0) st = ad_status_make(AD_STATUS_IO, "rename: %s", strerror(errno));
  if (st) {
    unlink(tmp);
    ad_status_t wrapped = ad_status_at(AD_STATUS_IO, path, 0, 0, "cannot write plan: %s",
                                       ad_status_message(st));
    ad_status_free(st);
    st = wrapped;
    goto done;
  }
  /* Without the directory fsync a crash could lose the rename itself. */
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    if (fsync(dfd) != 0 && errno != EINVAL)
      st = io_error(path, "fsync of the plan's directory", errno);
    close(dfd);
  } else {
    st = io_error(path, "cannot open the plan's directory to fsync it", errno);
  }
done:
  free(dir);
  free(tmp);
  ad_buf_free(&buf);
  return st;
}

ad_status_t plan_read(const char *path, plan_t **out) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ad_status_at(errno == ENOENT || errno == EACCES || errno == ENOTDIR
                            ? AD_STATUS_INVALID_ARGUMENT
                            : AD_STATUS_IO,
                        path, 0, 0, "cannot open plan: %s", strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return io_error(path, "cannot stat plan", e);
  }
  if (S_ISDIR(sb.st_mode)) {
    close(fd);
    return ad_status_at(AD_STATUS_INVALID_ARGUMENT, path, 0, 0,
                        "cannot read plan: is a directory");
  }
  /* Read to EOF rather than trusting st_size: pipes and /proc files report 0. */
  size_t cap = sb.st_size > 0 ? (size_t)sb.st_size + 1 : 65536, len = 0;
  uint8_t *data = malloc(cap);
  ad_status_t st = AD_OK;
  while (data) {
    if (len == cap) {
      uint8_t *d = realloc(data, cap * 2);
      if (!d) {
        free(data);
        data = NULL;
        break;
      }
      data = d;
      cap *= 2;
    }
    ssize_t r = read(fd, data + len, cap - len);
    if (r < 0) {
      if (errno == EINTR) continue;
      st = io_error(path, "cannot read plan", errno);
      break;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  close(fd);
  if (!data) return ad_status_at(AD_STATUS_RESOURCE, path, 0, 0, "out of memory reading plan");
  if (!st) st = plan_decode(data, len, path, out);
  free(data);
  return st;
}
