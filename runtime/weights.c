/* aidomm checkpoints and Hugging Face weight folders; semantics in runtime/weights.h. */
#include "runtime/weights.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/buf.h"

#define CONVERTER "tools/convert_checkpoint.py"
/* Lists in messages show this many names, then a count (torch prints them all, which for a
 * 650M model is pages). */
#define LIST_SHOWN 5

static bool is_model_slot(uint32_t flags) {
  return (flags & (IR_SLOT_PARAM | IR_SLOT_BUFFER)) && !(flags & IR_SLOT_OPTIM);
}

static ir_shape_t slot_shape(const rt_state_t *s, int64_t i) {
  int64_t zeros[IR_MAX_SYMBOLS] = {0};
  return ir_type_shape(&s->module->slots[i].type, zeros);
}

static void fmt_dims(ad_buf_t *b, int32_t rank, const int64_t *dims) {
  ad_buf_printf(b, "[");
  for (int32_t d = 0; d < rank; d++) ad_buf_printf(b, "%s%lld", d ? ", " : "", (long long)dims[d]);
  ad_buf_printf(b, "]");
}

/* Takes ownership of the buffer's text. */
static ad_status_t status_from_buf(ad_status_code_t code, ad_buf_t *b) {
  ad_buf_put_u8(b, 0);
  ad_status_t st = ad_status_make(code, "%s", (const char *)b->data);
  ad_buf_free(b);
  return st;
}

static void fmt_list(ad_buf_t *b, char *const *names, size_t n) {
  for (size_t i = 0; i < n && i < LIST_SHOWN; i++)
    ad_buf_printf(b, "%s\"%s\"", i ? ", " : "", names[i]);
  if (n > LIST_SHOWN) ad_buf_printf(b, ", ... and %zu more (%zu in all)", n - LIST_SHOWN, n);
  ad_buf_printf(b, ".");
}

void rt_weights_report_free(rt_weights_report_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->nmissing; i++) free(r->missing[i]);
  for (size_t i = 0; i < r->nunexpected; i++) free(r->unexpected[i]);
  free(r->missing);
  free(r->unexpected);
  memset(r, 0, sizeof *r);
}

static ad_status_t push_name(char ***arr, size_t *n, const char *name) {
  char **grown = realloc(*arr, (*n + 1) * sizeof **arr);
  if (!grown) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  *arr = grown;
  grown[*n] = strdup(name);
  if (!grown[*n]) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  (*n)++;
  return AD_OK;
}

/* ---- saving --------------------------------------------------------------------------- */

static ad_status_t save_slots(const rt_state_t *state, const char *path, const rt_st_kv_t *meta,
                              size_t nmeta, bool optimizer) {
  const ir_module_t *m = state->module;
  rt_st_tensor_t *ts = calloc(m->nslots ? m->nslots : 1, sizeof *ts);
  char **names = calloc(m->nslots ? m->nslots : 1, sizeof *names);
  if (!ts || !names) {
    free(ts);
    free(names);
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  size_t n = 0;
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *s = &m->slots[i];
    bool opt = optimizer && (s->flags & IR_SLOT_OPTIM);
    if (!opt && (!is_model_slot(s->flags) || (s->flags & IR_SLOT_NOSAVE))) continue;
    rt_st_tensor_t *t = &ts[n++];
    if (opt) {
      size_t len = strlen(RT_WEIGHTS_OPTIM_PREFIX) + strlen(s->name) + 1;
      names[i] = malloc(len);
      if (names[i]) snprintf(names[i], len, "%s%s", RT_WEIGHTS_OPTIM_PREFIX, s->name);
    }
    if (!rt_st_dtype_from_ir(s->type.dtype, &t->dtype)) {
      free(ts);
      for (uint32_t k = 0; k < m->nslots; k++) free(names[k]);
      free(names);
      return ad_status_make(AD_STATUS_INTERNAL, "slot '%s' has a dtype safetensors cannot hold",
                            s->name);
    }
    ir_shape_t sh = slot_shape(state, i);
    t->name = names[i] ? names[i] : s->name;
    t->rank = sh.rank;
    for (int32_t d = 0; d < sh.rank; d++) t->shape[d] = sh.dims[d];
    t->data = state->data[i];
  }
  ad_status_t st = rt_st_write(path, ts, n, meta, nmeta);
  free(ts);
  for (uint32_t k = 0; k < m->nslots; k++) free(names[k]);
  free(names);
  if (st) return ad_status_annotate(st, "while saving checkpoint %s", path);
  return AD_OK;
}

ad_status_t rt_weights_save_checkpoint(const rt_state_t *state, const char *path,
                                       const rt_st_kv_t *meta, size_t nmeta) {
  return save_slots(state, path, meta, nmeta, false);
}

ad_status_t rt_weights_save_training_checkpoint(const rt_state_t *state, const char *path,
                                                const rt_st_kv_t *meta, size_t nmeta) {
  return save_slots(state, path, meta, nmeta, true);
}

/* ---- pickle refusal ------------------------------------------------------------------- */

static bool has_suffix(const char *s, const char *suf) {
  size_t n = strlen(s), k = strlen(suf);
  return n >= k && strcmp(s + n - k, suf) == 0;
}

static ad_status_t pickle_error(const char *path, const char *why) {
  return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                        "%s is a PyTorch pickle checkpoint (%s); aidomm reads safetensors only, "
                        "because unpickling can run arbitrary code. Convert it once with the "
                        "golden venv: python " CONVERTER " %s OUT.safetensors (see the script's "
                        "--help)",
                        path, why, path);
}

ad_status_t rt_weights_refuse_pickle(const char *path) {
  static const char *const exts[] = {".bin", ".ckpt", ".pt", ".pth", ".pkl"};
  for (size_t i = 0; i < sizeof exts / sizeof *exts; i++)
    if (has_suffix(path, exts[i])) return pickle_error(path, exts[i]);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return AD_OK;
  unsigned char head[4] = {0};
  ssize_t got = read(fd, head, sizeof head);
  close(fd);
  /* torch.save writes a zip archive (PK\3\4) since 1.6 and a bare pickle (PROTO opcode 0x80,
   * protocol 2..5) before. */
  if (got >= 4 && memcmp(head, "PK\x03\x04", 4) == 0) return pickle_error(path, "zip archive");
  if (got >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5)
    return pickle_error(path, "pickle stream");
  return AD_OK;
}

/* ---- tensor copy with dtype conversion ------------------------------------------------ */

static double half_to_double(uint16_t h) {
  int sign = h >> 15, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  double v;
  if (exp == 0) v = ldexp((double)man, -24);
  else if (exp == 31) v = man ? NAN : INFINITY;
  else v = ldexp((double)(man | 0x400), exp - 25);
  return sign ? -v : v;
}

static double bf16_to_double(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static bool convertible(rt_st_dtype_t from, ir_dtype_t to) {
  rt_st_dtype_t same;
  if (rt_st_dtype_from_ir(to, &same) && same == from) return true;
  bool float_from = from == RT_ST_F32 || from == RT_ST_F64 || from == RT_ST_BF16 ||
                    from == RT_ST_F16;
  return float_from && (to == IR_DTYPE_F32 || to == IR_DTYPE_F64);
}

static double load_elem(const rt_st_tensor_t *t, int64_t i) {
  const uint8_t *p = (const uint8_t *)t->data;
  switch (t->dtype) {
    case RT_ST_F64: { double v; memcpy(&v, p + i * 8, 8); return v; }
    case RT_ST_F32: { float v; memcpy(&v, p + i * 4, 4); return v; }
    case RT_ST_BF16: { uint16_t v; memcpy(&v, p + i * 2, 2); return bf16_to_double(v); }
    case RT_ST_F16: { uint16_t v; memcpy(&v, p + i * 2, 2); return half_to_double(v); }
    default: return 0.0;
  }
}

static void copy_into(void *dst, ir_dtype_t to, const rt_st_tensor_t *t) {
  rt_st_dtype_t same;
  int64_t n = rt_st_numel(t);
  if (rt_st_dtype_from_ir(to, &same) && same == t->dtype) {
    memcpy(dst, t->data, (size_t)n * rt_st_dtype_size(t->dtype));
    return;
  }
  if (to == IR_DTYPE_F64) {
    double *d = dst; /* [numel] */
    for (int64_t i = 0; i < n; i++) d[i] = load_elem(t, i);
  } else {
    float *d = dst; /* [numel] */
    for (int64_t i = 0; i < n; i++) d[i] = (float)load_elem(t, i);
  }
}

/* A tensor fits a slot when the shapes agree exactly and the dtype converts. */
static ad_status_t check_fit(const rt_state_t *s, int64_t slot, const rt_st_tensor_t *t,
                             const char *key, const char *file) {
  ir_shape_t sh = slot_shape(s, slot);
  bool same = sh.rank == t->rank;
  for (int32_t d = 0; same && d < sh.rank; d++) same = sh.dims[d] == t->shape[d];
  const ir_state_slot_t *sl = &s->module->slots[slot];
  if (!same) {
    ad_buf_t b = {0};
    ad_buf_printf(&b, "size mismatch for %s in %s: copying a param with shape ", key, file);
    fmt_dims(&b, t->rank, t->shape);
    ad_buf_printf(&b, " from checkpoint, the shape in current model (slot '%s') is ", sl->name);
    fmt_dims(&b, sh.rank, sh.dims);
    return status_from_buf(AD_STATUS_INVALID_ARGUMENT, &b);
  }
  if (!convertible(t->dtype, sl->type.dtype))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "dtype mismatch for %s in %s: the file holds %s, slot '%s' is %s", key,
                          file, rt_st_dtype_name(t->dtype), sl->name,
                          ir_dtype_name(sl->type.dtype));
  return AD_OK;
}

/* ---- aidomm checkpoints --------------------------------------------------------------- */

ad_status_t rt_weights_load_checkpoint(rt_state_t *state, const char *path, bool strict,
                                       rt_weights_report_t *report) {
  return rt_weights_load_checkpoint_ex(state, path, strict, false, report);
}

ad_status_t rt_weights_load_checkpoint_ex(rt_state_t *state, const char *path, bool strict,
                                          bool optimizer, rt_weights_report_t *report) {
  if (report) memset(report, 0, sizeof *report);
  AD_RETURN_IF_ERROR(rt_weights_refuse_pickle(path));
  rt_st_file_t *f = NULL;
  AD_RETURN_IF_ERROR(rt_st_open(path, &f));
  const ir_module_t *m = state->module;
  const rt_st_tensor_t **src = calloc(m->nslots ? m->nslots : 1, sizeof *src); /* per slot */
  rt_weights_report_t rep = {0};
  ad_status_t st = src ? AD_OK : ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  for (size_t i = 0; !st && i < rt_st_count(f); i++) {
    const rt_st_tensor_t *t = rt_st_at(f, i);
    size_t plen = strlen(RT_WEIGHTS_OPTIM_PREFIX);
    if (strncmp(t->name, RT_WEIGHTS_OPTIM_PREFIX, plen) == 0) {
      if (!optimizer) continue; /* a training checkpoint read as a model checkpoint */
      int64_t os = rt_state_find(state, t->name + plen);
      if (os < 0 || !(m->slots[os].flags & IR_SLOT_OPTIM)) {
        st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "%s: optimizer state '%s' belongs to no parameter of this plan", path,
                            t->name + plen);
        continue;
      }
      st = check_fit(state, os, t, t->name, path);
      if (!st) src[os] = t;
      continue;
    }
    int64_t slot = rt_state_find(state, t->name);
    if (slot < 0 || !is_model_slot(m->slots[slot].flags)) {
      st = push_name(&rep.unexpected, &rep.nunexpected, t->name);
      continue;
    }
    st = check_fit(state, slot, t, t->name, path);
    if (!st) src[slot] = t;
  }
  for (uint32_t i = 0; !st && i < m->nslots; i++) {
    uint32_t fl = m->slots[i].flags;
    if (is_model_slot(fl) && !(fl & IR_SLOT_NOSAVE) && !src[i])
      st = push_name(&rep.missing, &rep.nmissing, m->slots[i].name);
    if (!st && optimizer && (fl & IR_SLOT_OPTIM) && !src[i])
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "%s has no optimizer state for '%s' (not a training checkpoint of this "
                          "plan; --model.reset_optimizer_states true starts the optimizer afresh)",
                          path, m->slots[i].name);
  }
  if (!st && strict && (rep.nmissing || rep.nunexpected)) {
    ad_buf_t b = {0};
    ad_buf_printf(&b, "Error(s) in loading state_dict from %s (strict_loading):", path);
    if (rep.nmissing) {
      ad_buf_printf(&b, "\n\tMissing key(s) in state_dict: ");
      fmt_list(&b, rep.missing, rep.nmissing);
    }
    if (rep.nunexpected) {
      ad_buf_printf(&b, "\n\tUnexpected key(s) in state_dict: ");
      fmt_list(&b, rep.unexpected, rep.nunexpected);
    }
    st = status_from_buf(AD_STATUS_INVALID_ARGUMENT, &b);
  }
  if (!st)
    for (uint32_t i = 0; i < m->nslots; i++)
      if (src[i]) {
        copy_into(state->data[i], m->slots[i].type.dtype, src[i]);
        rep.nloaded++;
      }
  free(src);
  rt_st_close(f);
  if (!st && report) *report = rep;
  else rt_weights_report_free(&rep);
  return st;
}

/* ---- Hugging Face folders ------------------------------------------------------------- */

typedef struct hf_entry {
  const char *key; /* the HF name derived from the slot name (owned) */
  int64_t slot;
} hf_entry_t;

static int entry_cmp(const void *a, const void *b) {
  return strcmp(((const hf_entry_t *)a)->key, ((const hf_entry_t *)b)->key);
}

static const hf_entry_t *entry_find(const hf_entry_t *e, size_t n, const char *key) {
  hf_entry_t probe = {.key = key};
  return bsearch(&probe, e, n, sizeof *e, entry_cmp);
}

static char *str_replace_once(const char *s, const char *from, const char *to) {
  const char *hit = strstr(s, from);
  size_t n = strlen(s), fl = strlen(from), tl = strlen(to);
  char *out = malloc(n - (hit ? fl : 0) + (hit ? tl : 0) + 1);
  if (!out) return NULL;
  if (!hit) return memcpy(out, s, n + 1);
  size_t pre = (size_t)(hit - s);
  memcpy(out, s, pre);
  memcpy(out + pre, to, tl);
  memcpy(out + pre + tl, hit + fl, n - pre - fl + 1);
  return out;
}

/* The encoder slots of `prefix` keyed by the HF names they hold: the slot path below
 * "<prefix>.encoder." without PEFT's "base_model.model." and with a LoRA layer's
 * ".base_layer." folded back. LoRA adapter slots have no HF counterpart. */
static ad_status_t build_entries(const rt_state_t *s, const char *prefix, hf_entry_t **out,
                                 size_t *nout) {
  const ir_module_t *m = s->module;
  char *root = malloc(strlen(prefix) + sizeof ".encoder.");
  hf_entry_t *e = calloc(m->nslots ? m->nslots : 1, sizeof *e);
  if (!root || !e) {
    free(root);
    free(e);
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  strcpy(root, prefix);
  strcat(root, ".encoder.");
  size_t rl = strlen(root), n = 0;
  static const char peft[] = "base_model.model.";
  for (uint32_t i = 0; i < m->nslots; i++) {
    const ir_state_slot_t *sl = &m->slots[i];
    if (!is_model_slot(sl->flags) || strncmp(sl->name, root, rl) != 0) continue;
    const char *rel = sl->name + rl;
    if (strncmp(rel, peft, sizeof peft - 1) == 0) rel += sizeof peft - 1;
    if (strstr(rel, "lora_")) continue;
    char *key = str_replace_once(rel, ".base_layer.", ".");
    if (!key) {
      for (size_t j = 0; j < n; j++) free((char *)e[j].key);
      free(e);
      free(root);
      return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
    }
    e[n].key = key;
    e[n++].slot = i;
  }
  free(root);
  qsort(e, n, sizeof *e, entry_cmp);
  *out = e;
  *nout = n;
  return AD_OK;
}

static char *join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, name, b + 1);
  return p;
}

static bool is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

typedef struct hf_files {
  rt_st_file_t **f;
  size_t n;
} hf_files_t;

static void hf_files_close(hf_files_t *h) {
  for (size_t i = 0; i < h->n; i++) rt_st_close(h->f[i]);
  free(h->f);
  h->f = NULL;
  h->n = 0;
}

static ad_status_t hf_open_one(hf_files_t *h, const char *path) {
  rt_st_file_t **grown = realloc(h->f, (h->n + 1) * sizeof *grown);
  if (!grown) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  h->f = grown;
  AD_RETURN_IF_ERROR(rt_st_open(path, &h->f[h->n]));
  h->n++;
  return AD_OK;
}

/* Opens the shards of an index and checks the index and the shards agree key for key: a key in
 * a shard that the index does not give to that shard is as suspect as a missing one. */
static ad_status_t hf_open_index(hf_files_t *h, const char *folder, const char *index_path) {
  json_error_t jerr;
  json_t *root = json_load_file(index_path, 0, &jerr);
  if (!root)
    return ad_status_make(AD_STATUS_DATA_LOSS, "%s:%d:%d: error: invalid JSON: %s", index_path,
                          jerr.line, jerr.column, jerr.text);
  ad_status_t st = AD_OK;
  json_t *wm = json_object_get(root, "weight_map");
  const char **shard_of = NULL; /* per opened file: its file name */
  if (!json_is_object(wm) || json_object_size(wm) == 0) {
    st = ad_status_make(AD_STATUS_DATA_LOSS, "%s: \"weight_map\" is missing or empty", index_path);
    goto done;
  }
  const char *key;
  json_t *val;
  json_object_foreach(wm, key, val) {
    const char *shard = json_string_value(val);
    if (!shard || !*shard || strchr(shard, '/') || strcmp(shard, "..") == 0 ||
        strcmp(shard, ".") == 0) {
      st = ad_status_make(AD_STATUS_DATA_LOSS,
                          "%s: weight_map[\"%s\"] is not a file name in the folder", index_path,
                          key);
      goto done;
    }
    size_t k = 0;
    while (k < h->n && strcmp(shard_of[k], shard) != 0) k++;
    if (k == h->n) {
      const char **g = realloc(shard_of, (h->n + 1) * sizeof *g);
      if (!g) {
        st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
        goto done;
      }
      shard_of = g;
      char *p = join(folder, shard);
      if (!p) {
        st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
        goto done;
      }
      shard_of[h->n] = shard;
      st = hf_open_one(h, p);
      free(p);
      if (st) {
        st = ad_status_annotate(st, "shard of %s", index_path);
        goto done;
      }
    }
    if (!rt_st_find(h->f[k], key)) {
      st = ad_status_make(AD_STATUS_DATA_LOSS, "%s lists tensor \"%s\" in %s, which lacks it",
                          index_path, key, shard);
      goto done;
    }
  }
  for (size_t k = 0; k < h->n; k++)
    for (size_t i = 0; i < rt_st_count(h->f[k]); i++) {
      const char *name = rt_st_at(h->f[k], i)->name;
      const char *listed = json_string_value(json_object_get(wm, name));
      if (!listed || strcmp(listed, shard_of[k]) != 0) {
        st = ad_status_make(AD_STATUS_DATA_LOSS,
                            "%s holds tensor \"%s\", which %s does not assign to it",
                            rt_st_path(h->f[k]), name, index_path);
        goto done;
      }
    }
done:
  free(shard_of);
  json_decref(root);
  return st;
}

typedef struct hf_pick {
  const rt_st_tensor_t *t;
  const char *key; /* the key after key_map */
} hf_pick_t;

static bool same_bytes(const rt_st_tensor_t *a, const rt_st_tensor_t *b) {
  if (a->dtype != b->dtype || a->rank != b->rank || a->nbytes != b->nbytes) return false;
  for (int32_t d = 0; d < a->rank; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return a->data == b->data || memcmp(a->data, b->data, a->nbytes) == 0;
}

/* Byte equality says "same tensor" only for tensors with some variety: every zero bias and
 * every all-ones LayerNorm weight equals every other, so those never count as aliases. */
static bool is_constant(const rt_st_tensor_t *t) {
  size_t es = rt_st_dtype_size(t->dtype);
  const uint8_t *p = t->data;
  for (size_t o = es; o + es <= t->nbytes; o += es)
    if (memcmp(p, p + o, es) != 0) return false;
  return true;
}

static char *apply_key_map(const rt_weights_key_map_t *km, const char *key) {
  if (km)
    for (size_t r = 0; r < km->nrules; r++) {
      size_t fl = strlen(km->rules[r].from);
      if (strncmp(key, km->rules[r].from, fl) != 0) continue;
      size_t tl = strlen(km->rules[r].to), rest = strlen(key + fl);
      char *o = malloc(tl + rest + 1);
      if (!o) return NULL;
      memcpy(o, km->rules[r].to, tl);
      memcpy(o + tl, key + fl, rest + 1);
      return o;
    }
  return strdup(key);
}

static ad_status_t hf_match(rt_state_t *state, const char *folder, const hf_entry_t *e,
                            size_t ne, const hf_files_t *h, const rt_weights_key_map_t *km,
                            const rt_st_tensor_t **src, rt_weights_report_t *rep) {
  size_t total = 0;
  for (size_t k = 0; k < h->n; k++) total += rt_st_count(h->f[k]);
  const rt_st_tensor_t **loose = calloc(total ? total : 1, sizeof *loose);
  if (!loose) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  size_t nloose = 0;
  ad_status_t st = AD_OK;
  for (size_t k = 0; !st && k < h->n; k++)
    for (size_t i = 0; !st && i < rt_st_count(h->f[k]); i++) {
      const rt_st_tensor_t *t = rt_st_at(h->f[k], i);
      char *key = apply_key_map(km, t->name);
      if (!key) {
        st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
        break;
      }
      const hf_entry_t *hit = entry_find(e, ne, key);
      const char *dot = strchr(key, '.');
      if (!hit && dot) hit = entry_find(e, ne, dot + 1);
      free(key);
      if (!hit) {
        loose[nloose++] = t;
        continue;
      }
      if (src[hit->slot]) {
        /* Two names for one slot (a *ForMaskedLM prefix and a bare name): fine only when they
         * are the same tensor. */
        if (!same_bytes(src[hit->slot], t))
          st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                              "%s: tensors \"%s\" and \"%s\" both map to slot '%s' and differ",
                              folder, src[hit->slot]->name, t->name,
                              state->module->slots[hit->slot].name);
        else
          rep->naliases++;
        continue;
      }
      st = check_fit(state, hit->slot, t, t->name, rt_st_path(h->f[k]));
      if (!st) src[hit->slot] = t;
    }
  for (size_t i = 0; !st && i < nloose; i++) {
    bool alias = false, varied = !is_constant(loose[i]);
    for (size_t j = 0; varied && j < ne && !alias; j++)
      alias = src[e[j].slot] && same_bytes(src[e[j].slot], loose[i]);
    if (alias) rep->naliases++;
    else st = push_name(&rep->unexpected, &rep->nunexpected, loose[i]->name);
  }
  free(loose);
  return st;
}

ad_status_t rt_weights_load_hf_folder(rt_state_t *state, const char *prefix, const char *folder,
                                      const rt_weights_key_map_t *key_map,
                                      rt_weights_report_t *report) {
  if (report) memset(report, 0, sizeof *report);
  char *cfg = join(folder, "config.json"), *single = join(folder, "model.safetensors"),
       *index = join(folder, "model.safetensors.index.json"),
       *pickle = join(folder, "pytorch_model.bin");
  hf_entry_t *e = NULL;
  size_t ne = 0;
  hf_files_t h = {0};
  const rt_st_tensor_t **src = NULL;
  rt_weights_report_t rep = {0};
  ad_status_t st = AD_OK;
  if (!cfg || !single || !index || !pickle) {
    st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
    goto done;
  }
  if (!is_file(cfg)) {
    st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                        "%s is not a Hugging Face model folder: %s is missing", folder, cfg);
    goto done;
  }
  if (is_file(single)) st = hf_open_one(&h, single);
  else if (is_file(index)) st = hf_open_index(&h, folder, index);
  else if (is_file(pickle)) st = rt_weights_refuse_pickle(pickle);
  else
    st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                        "%s has neither model.safetensors nor model.safetensors.index.json",
                        folder);
  if (st) goto done;
  st = build_entries(state, prefix, &e, &ne);
  if (st) goto done;
  if (ne == 0) {
    st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                        "the model has no slots under '%s.encoder.' to load %s into", prefix,
                        folder);
    goto done;
  }
  src = calloc(state->module->nslots, sizeof *src);
  if (!src) {
    st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
    goto done;
  }
  st = hf_match(state, folder, e, ne, &h, key_map, src, &rep);
  if (st) goto done;
  char **holes = NULL;
  size_t nholes = 0;
  for (size_t j = 0; !st && j < ne; j++) {
    if (src[e[j].slot]) continue;
    if (state->module->slots[e[j].slot].flags & IR_SLOT_UNUSED)
      st = push_name(&rep.missing, &rep.nmissing, e[j].key);
    else
      st = push_name(&holes, &nholes, e[j].key);
  }
  if (!st && nholes) {
    ad_buf_t b = {0};
    ad_buf_printf(&b, "%s lacks weights the '%s' encoder needs: ", folder, prefix);
    fmt_list(&b, holes, nholes);
    st = status_from_buf(AD_STATUS_INVALID_ARGUMENT, &b);
  }
  for (size_t j = 0; j < nholes; j++) free(holes[j]);
  free(holes);
  if (st) goto done;
  for (size_t j = 0; j < ne; j++) {
    int64_t s = e[j].slot;
    if (!src[s]) continue;
    copy_into(state->data[s], state->module->slots[s].type.dtype, src[s]);
    rep.nloaded++;
  }
done:
  for (size_t j = 0; j < ne; j++) free((char *)e[j].key);
  free(e);
  free(src);
  hf_files_close(&h);
  free(cfg);
  free(single);
  free(index);
  free(pickle);
  if (!st && report) *report = rep;
  else rt_weights_report_free(&rep);
  if (st) return ad_status_annotate(st, "while loading pretrained weights for '%s'", prefix);
  return AD_OK;
}

/* ---- hub ids -------------------------------------------------------------------------- */

static bool hf_folder_ok(const char *dir) {
  char *c = join(dir, "config.json"), *s = join(dir, "model.safetensors"),
       *x = join(dir, "model.safetensors.index.json");
  bool ok = c && s && x && is_file(c) && (is_file(s) || is_file(x));
  free(c);
  free(s);
  free(x);
  return ok;
}

ad_status_t rt_weights_find_hf_folder(const char *hub_id, char **out) {
  *out = NULL;
  if (!hub_id || !*hub_id || hub_id[0] == '/' || strstr(hub_id, ".."))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "'%s' is not a hub id of the form owner/name", hub_id ? hub_id : "");
  const char *roots[2] = {getenv("AIDOMM_MODELS"), NULL};
  char *home = NULL;
  const char *h = getenv("HOME");
  if (h && *h) {
    home = join(h, "genbio_models");
    if (!home) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
    roots[1] = home;
  }
  ad_buf_t searched = {0};
  for (int r = 0; r < 2; r++) {
    if (!roots[r] || !*roots[r]) continue;
    char *dir = join(roots[r], hub_id);
    if (!dir) break;
    if (hf_folder_ok(dir)) {
      *out = dir;
      free(home);
      ad_buf_free(&searched);
      return AD_OK;
    }
    ad_buf_printf(&searched, "%s%s", searched.len ? ", " : "", dir);
    free(dir);
  }
  free(home);
  if (!searched.len) ad_buf_printf(&searched, "(none: neither $AIDOMM_MODELS nor $HOME is set)");
  ad_buf_put_u8(&searched, 0);
  ad_status_t st = ad_status_make(
      AD_STATUS_INVALID_ARGUMENT,
      "no pretrained weights for '%s' (from_scratch: false): searched %s; expected a folder "
      "with config.json and model.safetensors (or model.safetensors.index.json and its "
      "shards), e.g. written by save_pretrained(..., safe_serialization=True); set "
      "$AIDOMM_MODELS to the folder holding '%s'",
      hub_id, (const char *)searched.data, hub_id);
  ad_buf_free(&searched);
  return st;
}
