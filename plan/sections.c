/* Section payloads of the plan file: META and JOB as JSON (readable with `strings`, extensible
 * by key), CONFIG as text, MEMPLAN as a little-endian table. MODULE and CODE are opaque here. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "plan/plan_internal.h"

/* 17 significant digits make every double round-trip through the JSON text exactly. */
#define PLAN_JSON_FLAGS (JSON_INDENT(2) | JSON_REAL_PRECISION(17))

static ad_status_t dump_json(json_t *root, ad_buf_t *out) {
  if (!root) return ad_status_make(AD_STATUS_RESOURCE, "out of memory building JSON");
  size_t n = json_dumpb(root, NULL, 0, PLAN_JSON_FLAGS);
  if (n == 0) {
    json_decref(root);
    return ad_status_make(AD_STATUS_INTERNAL, "cannot encode JSON");
  }
  ad_buf_reserve(out, n);
  size_t m = json_dumpb(root, (char *)out->data + out->len, n, PLAN_JSON_FLAGS);
  json_decref(root);
  if (m != n) return ad_status_make(AD_STATUS_INTERNAL, "JSON size changed while encoding");
  out->len += n;
  return AD_OK;
}

static ad_status_t load_json(const uint8_t *data, size_t len, json_t **out) {
  json_error_t jerr;
  json_t *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return ad_status_make(AD_STATUS_DATA_LOSS, "invalid JSON at byte %d: %s", jerr.position,
                          jerr.text);
  if (!json_is_object(root)) {
    json_decref(root);
    return ad_status_make(AD_STATUS_DATA_LOSS, "expected a JSON object");
  }
  *out = root;
  return AD_OK;
}

static ad_status_t get_string(plan_t *p, json_t *obj, const char *key, const char **out) {
  json_t *v = json_object_get(obj, key);
  if (!v) return ad_status_make(AD_STATUS_DATA_LOSS, "missing key \"%s\"", key);
  if (!json_is_string(v))
    return ad_status_make(AD_STATUS_DATA_LOSS, "key \"%s\" is not a string", key);
  *out = ad_arena_strndup(&p->arena, json_string_value(v), json_string_length(v));
  return AD_OK;
}

static ad_status_t get_int(json_t *obj, const char *key, int64_t *out) {
  json_t *v = json_object_get(obj, key);
  if (!v) return ad_status_make(AD_STATUS_DATA_LOSS, "missing key \"%s\"", key);
  if (!json_is_integer(v))
    return ad_status_make(AD_STATUS_DATA_LOSS, "key \"%s\" is not an integer", key);
  *out = (int64_t)json_integer_value(v);
  return AD_OK;
}

static ad_status_t get_number(json_t *obj, const char *key, double *out) {
  json_t *v = json_object_get(obj, key);
  if (!v) return ad_status_make(AD_STATUS_DATA_LOSS, "missing key \"%s\"", key);
  if (!json_is_number(v))
    return ad_status_make(AD_STATUS_DATA_LOSS, "key \"%s\" is not a number", key);
  *out = json_number_value(v);
  return AD_OK;
}

/* ---- META ------------------------------------------------------------------------------ */

ad_status_t plan_encode_meta(const plan_t *p, ad_buf_t *out) {
  const plan_meta_t *m = &p->meta;
  if (!m->aidomm_version || !m->created_by || !m->target_cpu || !m->llvm_version ||
      !m->nvrtc_version)
    return ad_status_make(AD_STATUS_INTERNAL, "plan meta has unset fields");
  json_t *root = json_object();
  if (!root) return ad_status_make(AD_STATUS_RESOURCE, "out of memory building JSON");
  json_object_set_new(root, "aidomm_version", json_string(m->aidomm_version));
  json_object_set_new(root, "format_version", json_integer(PLAN_FORMAT_VERSION));
  json_object_set_new(root, "created_by", json_string(m->created_by));
  json_object_set_new(root, "target_cpu", json_string(m->target_cpu));
  json_object_set_new(root, "llvm_version", json_string(m->llvm_version));
  json_object_set_new(root, "nvrtc_version", json_string(m->nvrtc_version));
  json_object_set_new(root, "job", json_string(plan_job_kind_name(p->job.kind)));
  return dump_json(root, out);
}

ad_status_t plan_decode_meta(plan_t *p, const uint8_t *data, size_t len, uint32_t header_version,
                             plan_job_kind_t *job_kind) {
  json_t *root;
  AD_RETURN_IF_ERROR(load_json(data, len, &root));
  ad_status_t st = AD_OK;
  int64_t version = 0;
  const char *job = NULL;
  plan_meta_t *m = &p->meta;
  if (!st) st = get_string(p, root, "aidomm_version", &m->aidomm_version);
  if (!st) st = get_int(root, "format_version", &version);
  if (!st) st = get_string(p, root, "created_by", &m->created_by);
  if (!st) st = get_string(p, root, "target_cpu", &m->target_cpu);
  if (!st) st = get_string(p, root, "llvm_version", &m->llvm_version);
  if (!st) st = get_string(p, root, "nvrtc_version", &m->nvrtc_version);
  if (!st) st = get_string(p, root, "job", &job);
  json_decref(root);
  if (st) return st;
  if (version != (int64_t)header_version)
    return ad_status_make(AD_STATUS_DATA_LOSS,
                          "format_version %lld disagrees with the header's %u", (long long)version,
                          header_version);
  m->format_version = header_version;
  if (!plan_job_kind_from_name(job, job_kind))
    return ad_status_make(AD_STATUS_DATA_LOSS, "unknown job kind \"%s\"", job);
  return AD_OK;
}

/* ---- JOB ------------------------------------------------------------------------------- */

ad_status_t plan_job_check(const plan_job_t *j) {
  if ((unsigned)j->kind >= PLAN_JOB_COUNT)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "invalid job kind %d", (int)j->kind);
  if (j->max_steps < -1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "max_steps %lld is below -1 (unlimited)",
                          (long long)j->max_steps);
  if (j->batch_size < 1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "batch_size %lld is not positive",
                          (long long)j->batch_size);
  if (j->max_length < 1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "max_length %lld is not positive",
                          (long long)j->max_length);
  if ((unsigned)j->dtype >= IR_DTYPE_COUNT || !ir_dtype_is_float(j->dtype))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "compute dtype %d is not a float type",
                          (int)j->dtype);
  /* !(x >= 0) also catches NaN. */
  if (!(j->lr >= 0) || !isfinite(j->lr))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "learning rate %g is not a finite value >= 0",
                          j->lr);
  if (!(j->beta1 >= 0 && j->beta1 < 1) || !(j->beta2 >= 0 && j->beta2 < 1))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "AdamW betas (%g, %g) are not in [0, 1)",
                          j->beta1, j->beta2);
  if (!(j->eps > 0) || !isfinite(j->eps))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "AdamW eps %g is not a finite value > 0",
                          j->eps);
  if (!(j->weight_decay >= 0) || !isfinite(j->weight_decay))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "weight_decay %g is not a finite value >= 0", j->weight_decay);
  return AD_OK;
}

ad_status_t plan_encode_job(const plan_t *p, ad_buf_t *out) {
  const plan_job_t *j = &p->job;
  AD_RETURN_IF_ERROR(ad_status_annotate(plan_job_check(j), "job"));
  json_t *opt = json_object();
  json_t *root = json_object();
  if (!opt || !root) {
    json_decref(opt);
    json_decref(root);
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory building JSON");
  }
  json_object_set_new(root, "kind", json_string(plan_job_kind_name(j->kind)));
  json_object_set_new(root, "seed", json_integer(j->seed));
  json_object_set_new(root, "max_steps", json_integer(j->max_steps));
  json_object_set_new(root, "batch_size", json_integer(j->batch_size));
  json_object_set_new(root, "max_length", json_integer(j->max_length));
  json_object_set_new(root, "dtype", json_string(ir_dtype_name(j->dtype)));
  json_object_set_new(opt, "name", json_string("adamw"));
  json_object_set_new(opt, "lr", json_real(j->lr));
  json_object_set_new(opt, "beta1", json_real(j->beta1));
  json_object_set_new(opt, "beta2", json_real(j->beta2));
  json_object_set_new(opt, "eps", json_real(j->eps));
  json_object_set_new(opt, "weight_decay", json_real(j->weight_decay));
  json_object_set_new(root, "optimizer", opt);
  return dump_json(root, out);
}

ad_status_t plan_decode_job(plan_t *p, const uint8_t *data, size_t len) {
  json_t *root;
  AD_RETURN_IF_ERROR(load_json(data, len, &root));
  plan_job_t *j = &p->job;
  const char *kind = NULL, *opt_name = NULL, *dtype = NULL;
  ad_status_t st = get_string(p, root, "kind", &kind);
  if (!st) st = get_int(root, "seed", &j->seed);
  if (!st) st = get_int(root, "max_steps", &j->max_steps);
  if (!st) st = get_int(root, "batch_size", &j->batch_size);
  if (!st) st = get_int(root, "max_length", &j->max_length);
  if (!st) st = get_string(p, root, "dtype", &dtype);
  json_t *opt = json_object_get(root, "optimizer");
  if (!st && !json_is_object(opt))
    st = ad_status_make(AD_STATUS_DATA_LOSS, "missing object \"optimizer\"");
  if (!st) st = get_string(p, opt, "name", &opt_name);
  if (!st) st = get_number(opt, "lr", &j->lr);
  if (!st) st = get_number(opt, "beta1", &j->beta1);
  if (!st) st = get_number(opt, "beta2", &j->beta2);
  if (!st) st = get_number(opt, "eps", &j->eps);
  if (!st) st = get_number(opt, "weight_decay", &j->weight_decay);
  json_decref(root);
  if (st) return st;
  if (!plan_job_kind_from_name(kind, &j->kind))
    return ad_status_make(AD_STATUS_DATA_LOSS, "unknown job kind \"%s\"", kind);
  if (!ir_dtype_from_name(dtype, &j->dtype))
    return ad_status_make(AD_STATUS_DATA_LOSS, "unknown dtype \"%s\"", dtype);
  if (strcmp(opt_name, "adamw") != 0)
    return ad_status_make(AD_STATUS_DATA_LOSS, "unknown optimizer \"%s\"", opt_name);
  st = plan_job_check(j);
  if (st) {
    /* A range violation in a checksummed file means the writer was broken: corrupt data. */
    ad_status_t c = ad_status_make(AD_STATUS_DATA_LOSS, "%s", ad_status_message(st));
    ad_status_free(st);
    return c;
  }
  return AD_OK;
}

/* ---- CONFIG ---------------------------------------------------------------------------- */

ad_status_t plan_decode_config(plan_t *p, const uint8_t *data, size_t len) {
  const void *nul = len ? memchr(data, 0, len) : NULL;
  if (nul)
    return ad_status_make(AD_STATUS_DATA_LOSS, "NUL byte at offset %zu of the YAML text",
                          (size_t)((const uint8_t *)nul - data));
  char *s = ad_arena_alloc(&p->arena, len + 1);
  if (len) memcpy(s, data, len);
  s[len] = '\0';
  p->config_yaml = s;
  p->config_len = len;
  return AD_OK;
}

/* ---- MEMPLAN --------------------------------------------------------------------------- */
/* u32 nprograms, then per program:
 *   str name, u32 reuse, u32 nvalues, i64 peak_bytes, i64 total_bytes,
 *   nvalues x (i64 offset, i64 size) */

ad_status_t plan_encode_memplans(const plan_t *p, ad_buf_t *out) {
  ad_buf_put_u32(out, p->nmemplans);
  for (uint32_t i = 0; i < p->nmemplans; i++) {
    const plan_memplan_t *mp = &p->memplans[i];
    ad_buf_put_str(out, mp->program);
    ad_buf_put_u32(out, mp->reuse ? 1u : 0u);
    ad_buf_put_u32(out, mp->nvalues);
    ad_buf_put_i64(out, mp->peak_bytes);
    ad_buf_put_i64(out, mp->total_bytes);
    for (uint32_t v = 0; v < mp->nvalues; v++) {
      ad_buf_put_i64(out, mp->offset[v]);
      ad_buf_put_i64(out, mp->size[v]);
    }
  }
  return AD_OK;
}

ad_status_t plan_decode_memplans(plan_t *p, const uint8_t *data, size_t len) {
  ad_reader_t r = {data, data + len, 0};
  uint32_t n = ad_read_u32(&r);
  /* Each program takes at least 28 bytes: bound the count before allocating. */
  if (r.bad || n > (size_t)(r.end - r.p) / 28)
    return ad_status_make(AD_STATUS_DATA_LOSS, "program count %u does not fit the section", n);
  plan_memplan_t *mps = ad_arena_alloc(&p->arena, (size_t)n * sizeof *mps);
  for (uint32_t i = 0; i < n; i++) {
    plan_memplan_t *mp = &mps[i];
    uint32_t slen;
    int isnull;
    const char *name = ad_read_str(&r, &slen, &isnull);
    uint32_t reuse = ad_read_u32(&r);
    mp->nvalues = ad_read_u32(&r);
    mp->peak_bytes = ad_read_i64(&r);
    mp->total_bytes = ad_read_i64(&r);
    if (r.bad) return ad_status_make(AD_STATUS_DATA_LOSS, "program %u: record is cut short", i);
    if (isnull || slen == 0)
      return ad_status_make(AD_STATUS_DATA_LOSS, "program %u has no name", i);
    if (memchr(name, 0, slen))
      return ad_status_make(AD_STATUS_DATA_LOSS, "program %u: name contains a NUL byte", i);
    mp->program = ad_arena_strndup(&p->arena, name, slen);
    if (reuse > 1)
      return ad_status_make(AD_STATUS_DATA_LOSS, "program '%s': reuse flag %u is not 0 or 1",
                            mp->program, reuse);
    mp->reuse = (int)reuse;
    if (mp->nvalues > (size_t)(r.end - r.p) / 16)
      return ad_status_make(AD_STATUS_DATA_LOSS,
                            "program '%s': %u values do not fit the section", mp->program,
                            mp->nvalues);
    mp->offset = ad_arena_alloc(&p->arena, (size_t)mp->nvalues * sizeof(int64_t));
    mp->size = ad_arena_alloc(&p->arena, (size_t)mp->nvalues * sizeof(int64_t));
    for (uint32_t v = 0; v < mp->nvalues; v++) {
      mp->offset[v] = ad_read_i64(&r);
      mp->size[v] = ad_read_i64(&r);
    }
  }
  if (r.p != r.end)
    return ad_status_make(AD_STATUS_DATA_LOSS, "%zu trailing bytes", (size_t)(r.end - r.p));
  p->memplans = mps;
  p->nmemplans = n;
  return AD_OK;
}

ad_status_t plan_check_memplans(const plan_t *p, ad_status_code_t code) {
  const ir_module_t *m = p->module;
  if (p->nmemplans != m->nprograms)
    return ad_status_make(code, "%u memory plans for %u programs", p->nmemplans, m->nprograms);
  for (uint32_t i = 0; i < m->nprograms; i++) {
    const ir_graph_t *g = m->programs[i];
    const plan_memplan_t *mp = &p->memplans[i];
    if (!mp->program || strcmp(mp->program, g->name) != 0)
      return ad_status_make(code, "memory plan %u is for '%s' but program %u is '%s'", i,
                            mp->program ? mp->program : "(null)", i, g->name);
    if (mp->nvalues != g->nvalues)
      return ad_status_make(code, "memory plan of '%s' has %u values but the program has %u",
                            g->name, mp->nvalues, g->nvalues);
    if (mp->peak_bytes < 0 || mp->total_bytes < 0)
      return ad_status_make(code, "memory plan of '%s': negative peak or total bytes", g->name);
    for (uint32_t v = 0; v < mp->nvalues; v++) {
      int64_t off = mp->offset[v], size = mp->size[v];
      /* Compared as `off > peak - size` so that no sum can overflow. */
      if (size < 0 || off < -1 ||
          (off >= 0 && (size > mp->peak_bytes || off > mp->peak_bytes - size)))
        return ad_status_make(code,
                              "memory plan of '%s': value %u (offset %lld, size %lld) lies "
                              "outside the %lld-byte arena",
                              g->name, v, (long long)off, (long long)size,
                              (long long)mp->peak_bytes);
    }
  }
  return AD_OK;
}
