/* Runtime tokenizers; semantics and the peers they follow are described in tokenizer.h. */
#include "runtime/tokenizer.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- vocabularies ------------------------------------------------------------------------ */

static const char *const k_rnabert_vocab[] = {
    "[PAD]", "[MASK]", "[CLS]", "[SEP]", "[UNK]", "A", "G", "C",
    "T", "U", "N", "[BOS]", "[EOS]", "[UNUSED1]", "[UNUSED2]", "[UNUSED3]"};

/* The fair-esm alphabet, as the hub's facebook/esm2_* vocab.txt lists it. */
static const char *const k_esm_vocab[] = {
    "<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R",
    "T",     "I",     "D",     "P",     "K", "Q", "N", "F", "Y", "M", "H",
    "W",     "C",     "X",     "B",     "U", "Z", "O", ".", "-", "<null_1>", "<mask>"};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const rt_tok_info_t k_info[RT_TOK_KIND_COUNT] = {
    [RT_TOK_KIND_DNA_ONEHOT] = {"str_to_one_hot", 4, -1, -1, -1, -1, -1},
    [RT_TOK_KIND_RNABERT] = {"rnabert", (int64_t)NELEM(k_rnabert_vocab), 0, 2, 3, 4, 1},
    [RT_TOK_KIND_ESM2] = {"esm", (int64_t)NELEM(k_esm_vocab), 1, 0, 2, 3, 32},
};

const char *rt_tok_kind_name(rt_tok_kind_t kind) {
  switch (kind) {
  case RT_TOK_KIND_DNA_ONEHOT: return "dna_onehot";
  case RT_TOK_KIND_RNABERT: return "rnabert";
  case RT_TOK_KIND_ESM2: return "esm2";
  default: return "unknown";
  }
}

const rt_tok_info_t *rt_tok_info(rt_tok_kind_t kind) {
  if ((int)kind < 0 || kind >= RT_TOK_KIND_COUNT) return NULL;
  return &k_info[kind];
}

static bool vocab_of(rt_tok_kind_t kind, const char *const **vocab, size_t *n) {
  if (kind == RT_TOK_KIND_RNABERT) {
    *vocab = k_rnabert_vocab;
    *n = NELEM(k_rnabert_vocab);
    return true;
  }
  if (kind == RT_TOK_KIND_ESM2) {
    *vocab = k_esm_vocab;
    *n = NELEM(k_esm_vocab);
    return true;
  }
  return false;
}

int64_t rt_tok_token_id(rt_tok_kind_t kind, const char *token, size_t len) {
  const char *const *vocab;
  size_t nv;
  if (!vocab_of(kind, &vocab, &nv) || (!token && len)) return -1;
  for (size_t i = 0; i < nv; i++)
    if (strlen(vocab[i]) == len && (len == 0 || memcmp(vocab[i], token, len) == 0))
      return (int64_t)i;
  return -1;
}

/* ---- code points ------------------------------------------------------------------------- */

/* Marks a byte that is not part of valid UTF-8: outside Unicode, so it is never whitespace and
 * never a vocab character, and two different bad bytes stay different characters. */
#define CP_BAD_BYTE 0x110000u

/* Strict UTF-8 (no overlongs, surrogates or values past U+10FFFF); returns the count. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
  size_t i = 0, k = 0;
  while (i < n) {
    unsigned c = s[i];
    uint32_t v;
    size_t need;
    uint32_t min;
    if (c < 0x80) {
      cp[k++] = c;
      i++;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      need = 1, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3, v = c & 0x07, min = 0x10000;
    } else {
      cp[k++] = CP_BAD_BYTE + c;
      i++;
      continue;
    }
    bool ok = true;
    for (size_t j = 1; ok && j <= need; j++) {
      if (i + j >= n || (s[i + j] & 0xC0) != 0x80) ok = false;
      else v = (v << 6) | (s[i + j] & 0x3F);
    }
    if (ok && (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))) ok = false;
    if (!ok) {
      cp[k++] = CP_BAD_BYTE + c;
      i++;
      continue;
    }
    cp[k++] = v;
    i += need + 1;
  }
  return k;
}

/* Python's str.isspace(), which str.split() uses. */
static bool py_isspace(uint32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* ---- transformers' Trie ------------------------------------------------------------------ */

#define TRIE_MAX_NODES 256

/* Children only for ASCII: every vocab token is ASCII. child 0 means none (0 is the root, which
 * is never anyone's child). */
typedef struct trie {
  int16_t child[TRIE_MAX_NODES][128];
  bool terminal[TRIE_MAX_NODES];
  int nnodes;
} trie_t;

/* Built per encode call (64 KiB, microseconds) rather than cached in a global, so concurrent
 * callers share no mutable state. */
static trie_t *trie_build(rt_tok_kind_t kind) {
  const char *const *vocab;
  size_t nv;
  if (!vocab_of(kind, &vocab, &nv)) return NULL;
  trie_t *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->nnodes = 1;
  for (size_t i = 0; i < nv; i++) {
    int node = 0;
    for (const char *p = vocab[i]; *p; p++) {
      int c = (unsigned char)*p & 0x7F;
      if (!t->child[node][c]) t->child[node][c] = (int16_t)t->nnodes++;
      node = t->child[node][c];
    }
    t->terminal[node] = true;
  }
  return t;
}

static int trie_child(const trie_t *t, int node, uint32_t c) {
  return c < 128 ? t->child[node][c] : 0;
}

/* Trie.split of transformers 4.38, statement by statement (the Python `states` OrderedDict is
 * st_start/st_node in insertion order; removals are deferred to the end of a step exactly as
 * there, so the lookahead sees failed states too). Writes cut offsets: offs[0] = 0, then the
 * (start, end) pairs, then n; returns their count. offs holds 2 * n + 2 entries. */
static size_t trie_split(const trie_t *t, const uint32_t *text, size_t n, size_t *st_start,
                         int *st_node, bool *st_rm, size_t *offs) {
  size_t no = 0, ns = 0, skip = 0;
  offs[no++] = 0;
  for (size_t cur = 0; cur < n; cur++) {
    if (skip && cur < skip) continue;
    uint32_t ch = text[cur];
    bool reset = false;
    for (size_t si = 0; si < ns; si++) st_rm[si] = false;
    for (size_t si = 0; si < ns; si++) {
      size_t start = st_start[si];
      int node = st_node[si];
      if (t->terminal[node]) {
        size_t end = cur;
        for (size_t li = 0; li < ns; li++) {
          size_t lookstart = st_start[li], la;
          int look = st_node[li];
          if (lookstart > start) break;
          else if (lookstart < start) la = end = cur + 1;
          else la = end = cur;
          bool has_next = la < n;
          uint32_t next = has_next ? text[la] : 0;
          if (t->terminal[look]) start = lookstart, end = la, skip = la;
          while (has_next && trie_child(t, look, next)) {
            look = trie_child(t, look, next);
            la++;
            if (t->terminal[look]) start = lookstart, end = la, skip = la;
            if (la == n) break;
            next = text[la];
          }
        }
        offs[no++] = start;
        offs[no++] = end;
        reset = true;
        break;
      } else if (trie_child(t, node, ch)) {
        st_node[si] = trie_child(t, node, ch);
      } else {
        st_rm[si] = true;
      }
    }
    if (reset) {
      ns = 0;
    } else {
      size_t k = 0;
      for (size_t si = 0; si < ns; si++)
        if (!st_rm[si]) st_start[k] = st_start[si], st_node[k] = st_node[si], k++;
      ns = k;
    }
    if (cur >= skip && trie_child(t, 0, ch)) {
      st_start[ns] = cur;
      st_node[ns] = trie_child(t, 0, ch);
      ns++;
    }
  }
  for (size_t si = 0; si < ns; si++)
    if (t->terminal[st_node[si]]) {
      offs[no++] = st_start[si];
      offs[no++] = n;
      break;
    }
  offs[no++] = n;
  return no;
}

/* ---- id tokenization --------------------------------------------------------------------- */

static int64_t lookup_word(rt_tok_kind_t kind, const uint32_t *w, size_t len) {
  char buf[16];
  if (len >= sizeof buf) return -1;
  for (size_t i = 0; i < len; i++) {
    if (w[i] >= 128) return -1;
    buf[i] = (char)w[i];
  }
  return rt_tok_token_id(kind, buf, len);
}

/* Content ids (no specials) of one string into ids (room for len + 1 entries); returns the count
 * or -1 when memory runs out. */
static int64_t tokenize_one(rt_tok_kind_t kind, const trie_t *t, const rt_tok_str_t *s,
                            int64_t *ids) {
  size_t n = s->len;
  uint32_t *cp = malloc((n + 1) * sizeof *cp);
  size_t *st_start = malloc((n + 1) * sizeof *st_start);
  int *st_node = malloc((n + 1) * sizeof *st_node);
  bool *st_rm = malloc((n + 1) * sizeof *st_rm);
  size_t *offs = malloc((2 * n + 3) * sizeof *offs);
  int64_t count = -1;
  if (!cp || !st_start || !st_node || !st_rm || !offs) goto done;
  n = utf8_decode((const unsigned char *)s->data, n, cp);
  size_t no = trie_split(t, cp, n, st_start, st_node, st_rm, offs);
  int64_t unk = k_info[kind].unk_id;
  count = 0;
  /* cut_text: pieces between consecutive offsets; zero-width and backwards cuts are skipped. */
  size_t a = 0;
  for (size_t oi = 1; oi < no; oi++) {
    size_t b = offs[oi];
    if (a >= b) continue;
    /* _tokenize = str.split(): every maximal non-whitespace run is one vocab lookup. */
    size_t i = a;
    while (i < b) {
      while (i < b && py_isspace(cp[i])) i++;
      size_t w = i;
      while (i < b && !py_isspace(cp[i])) i++;
      if (i > w) {
        int64_t id = lookup_word(kind, cp + w, i - w);
        ids[count++] = id >= 0 ? id : unk;
      }
    }
    a = b;
  }
done:
  free(cp);
  free(st_start);
  free(st_node);
  free(st_rm);
  free(offs);
  return count;
}

void rt_tok_batch_free(rt_tok_batch_t *b) {
  if (!b) return;
  free(b->ids);
  free(b->mask);
  memset(b, 0, sizeof *b);
}

ad_status_t rt_tok_encode(rt_tok_kind_t kind, const rt_tok_str_t *strs, size_t n,
                          int64_t max_length, rt_tok_batch_t *out) {
  if (!out) return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "tokenizer: no output batch");
  memset(out, 0, sizeof *out);
  if (kind != RT_TOK_KIND_RNABERT && kind != RT_TOK_KIND_ESM2)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "tokenizer %s does not produce token ids", rt_tok_kind_name(kind));
  if (n == 0 || !strs)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "tokenizer %s: empty batch",
                          rt_tok_kind_name(kind));
  if (max_length == 1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "tokenizer %s: max_length 1 leaves no room for the 2 special tokens",
                          rt_tok_kind_name(kind));
  for (size_t i = 0; i < n; i++)
    if (!strs[i].data && strs[i].len)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "tokenizer %s: row %zu has %zu bytes but no data",
                            rt_tok_kind_name(kind), i, strs[i].len);
  trie_t *t = trie_build(kind);
  const rt_tok_info_t *info = &k_info[kind];
  int64_t **rows = calloc(n, sizeof *rows);
  int64_t *lens = calloc(n, sizeof *lens);
  ad_status_t st = AD_OK;
  if (!t || !rows || !lens) {
    st = ad_status_make(AD_STATUS_RESOURCE, "tokenizer: out of memory for %zu rows", n);
    goto done;
  }
  int64_t lmax = 0;
  for (size_t i = 0; i < n; i++) {
    /* [cls] + at most one id per code point + [eos/sep] */
    rows[i] = malloc((strs[i].len + 3) * sizeof *rows[i]);
    int64_t c = rows[i] ? tokenize_one(kind, t, &strs[i], rows[i] + 1) : -1;
    if (c < 0) {
      st = ad_status_make(AD_STATUS_RESOURCE, "tokenizer: out of memory on row %zu (%zu bytes)",
                          i, strs[i].len);
      goto done;
    }
    /* truncation=True with max_length drops content tokens from the end, keeping both specials */
    if (max_length > 0 && c + 2 > max_length) c = max_length - 2;
    rows[i][0] = info->cls_id;
    rows[i][c + 1] = info->eos_id;
    lens[i] = c + 2;
    if (lens[i] > lmax) lmax = lens[i];
  }
  out->ids = malloc(n * (size_t)lmax * sizeof *out->ids);
  out->mask = malloc(n * (size_t)lmax);
  if (!out->ids || !out->mask) {
    rt_tok_batch_free(out);
    st = ad_status_make(AD_STATUS_RESOURCE, "tokenizer: out of memory for a [%zu, %lld] batch", n,
                        (long long)lmax);
    goto done;
  }
  out->batch = (int64_t)n;
  out->len = lmax;
  for (size_t i = 0; i < n; i++) {
    int64_t *ir = out->ids + i * (size_t)lmax;
    uint8_t *mr = out->mask + i * (size_t)lmax;
    for (int64_t j = 0; j < lmax; j++) {
      bool real = j < lens[i];
      ir[j] = real ? rows[i][j] : info->pad_id;
      mr[j] = real ? 1 : 0;
    }
  }
done:
  if (rows)
    for (size_t i = 0; i < n; i++) free(rows[i]);
  free(rows);
  free(lens);
  free(t);
  return st;
}

ad_status_t rt_tok_mask_convert(const uint8_t *mask, size_t count, ir_dtype_t dtype, void *dst) {
  if (dtype == IR_DTYPE_F32) {
    float *d = dst;
    for (size_t i = 0; i < count; i++) d[i] = mask[i] ? 1.0f : 0.0f;
  } else if (dtype == IR_DTYPE_F64) {
    double *d = dst;
    for (size_t i = 0; i < count; i++) d[i] = mask[i] ? 1.0 : 0.0;
  } else {
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "tokenizer: attention mask dtype must be f32 or f64, not %s",
                          ir_dtype_name(dtype));
  }
  return AD_OK;
}

/* ---- DNA one-hot ------------------------------------------------------------------------- */

/* Enformer's one_hot_embed row for a byte: 0..3 = A C G T, 4 = all 0.25 ('.'), -1 = zeros. */
static int dna_row(unsigned char c) {
  switch (c) {
  case 'A': case 'a': return 0;
  case 'C': case 'c': return 1;
  case 'G': case 'g': return 2;
  case 'T': case 't': return 3;
  case '.': return 4;
  default: return -1;
  }
}

ad_status_t rt_tok_dna_onehot(const rt_tok_str_t *strs, size_t n, ir_dtype_t dtype,
                              void **out_onehot, int64_t *out_len) {
  if (!out_onehot || !out_len)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "dna one-hot: no output");
  *out_onehot = NULL;
  *out_len = 0;
  if (n == 0 || !strs)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "dna one-hot: empty batch");
  if (dtype != IR_DTYPE_F32 && dtype != IR_DTYPE_F64)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "dna one-hot: dtype must be f32 or f64, not %s", ir_dtype_name(dtype));
  size_t len = strs[0].len;
  for (size_t i = 0; i < n; i++) {
    if (!strs[i].data && strs[i].len)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "dna one-hot: row %zu has no data", i);
    if (strs[i].len != len)
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "dna one-hot: row %zu has %zu bytes but row 0 has %zu; the batch "
                            "needs equal-length sequences",
                            i, strs[i].len, len);
  }
  size_t esz = dtype == IR_DTYPE_F32 ? sizeof(float) : sizeof(double);
  if (len > SIZE_MAX / 4 / esz / n)
    return ad_status_make(AD_STATUS_RESOURCE, "dna one-hot: [%zu, %zu, 4] is too large", n, len);
  size_t count = n * len * 4;
  void *buf = malloc(count ? count * esz : 1);
  if (!buf)
    return ad_status_make(AD_STATUS_RESOURCE, "dna one-hot: out of memory for [%zu, %zu, 4]", n,
                          len);
  for (size_t i = 0; i < n; i++) {
    const unsigned char *s = (const unsigned char *)strs[i].data;
    for (size_t j = 0; j < len; j++) {
      int r = dna_row(s[j]);
      double v[4] = {0, 0, 0, 0};
      if (r == 4) v[0] = v[1] = v[2] = v[3] = 0.25;
      else if (r >= 0) v[r] = 1.0;
      size_t o = (i * len + j) * 4;
      for (int k = 0; k < 4; k++) {
        if (dtype == IR_DTYPE_F32) ((float *)buf)[o + (size_t)k] = (float)v[k];
        else ((double *)buf)[o + (size_t)k] = v[k];
      }
    }
  }
  *out_onehot = buf;
  *out_len = (int64_t)len;
  return AD_OK;
}
