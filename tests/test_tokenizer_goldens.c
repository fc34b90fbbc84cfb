/* Structure and invariants of the tokenizer goldens, tests/golden/tokenizers/{dna,rna,protein}.txt,
 * written by tools/golden/tokenizer_goldens.py from the peers' own tokenizers (format there).
 * The runtime tokenizers must reproduce these files exactly; here we check that the fixtures
 * say what the peers' data collation promises, so a damaged or regenerated-wrong fixture
 * fails before it is used as the oracle:
 *   - every batch is right-padded to its longest sample (padding=True), masks are 1...1 0...0,
 *     padded positions hold the pad id, every sample starts with cls and ends with eos/sep;
 *   - max_length truncation keeps the first max_length-1 tokens and re-appends eos/sep;
 *   - a sample's row in the all-strings batch is its single-string row, padded;
 *   - for strings made only of vocabulary letters the ids are the per-character lookup;
 *   - DNA one-hot rows are Enformer's byte table (ACGT/acgt, '.' -> 0.25, else 0).
 * At least 40 distinct strings per modality. */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/test_util.h"

#define MAX_SEQS 64
#define MAX_BATCHES 128

typedef struct sample {
  char *text; /* decoded bytes (NUL-terminated; the goldens have no NUL bytes) */
  size_t nbytes;
  long *ids, *mask; /* [len] */
  double *onehot;   /* [len, 4] (dna) */
} sample_t;

typedef struct batch {
  char name[64];
  int n, len;
  long max_length; /* -1: none */
  sample_t s[MAX_SEQS];
} batch_t;

typedef struct fixture {
  char tokenizer[32];
  long vocab, pad, cls, eos, unk, mask_id;
  int nbatches;
  batch_t *b;
} fixture_t;

/* "tag v v v ..." with exactly len values. */
static long *parse_longs(const char *line, const char *tag, int len) {
  size_t tl = strlen(tag);
  ck_assert_msg(strncmp(line, tag, tl) == 0 && (line[tl] == ' ' || line[tl] == 0),
                "expected '%s' line, got '%.40s'", tag, line);
  long *v = calloc((size_t)len + 1, sizeof *v);
  const char *p = line + tl;
  for (int i = 0; i < len; i++) {
    char *end;
    v[i] = strtol(p, &end, 10);
    ck_assert_msg(end != p, "%s: %d values expected, got %d", tag, len, i);
    p = end;
  }
  while (*p == ' ') p++;
  ck_assert_msg(*p == 0, "%s: more than %d values", tag, len);
  return v;
}

static double *parse_onehot(const char *line, int len) {
  ck_assert(strncmp(line, "onehot", 6) == 0);
  double *v = calloc((size_t)len * 4 + 1, sizeof *v);
  const char *p = line + 6;
  for (int i = 0; i < 4 * len; i++) {
    char *end;
    v[i] = strtod(p, &end);
    ck_assert_msg(end != p, "onehot: %d values expected, got %d", 4 * len, i);
    p = end;
  }
  while (*p == ' ') p++;
  ck_assert(*p == 0);
  return v;
}

static void load(fixture_t *fx, const char *rel, bool dna) {
  memset(fx, 0, sizeof *fx);
  fx->cls = fx->eos = fx->unk = fx->mask_id = -1;
  fx->b = calloc(MAX_BATCHES, sizeof *fx->b);
  char *text = tu_read_source(rel);
  char *save = NULL;
  batch_t *cur = NULL;
  int si = 0;
  bool header = false;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (line[0] == '#') continue;
    if (strncmp(line, "tokenizer ", 10) == 0) {
      char key[16];
      long val;
      int used = 0;
      ck_assert_int_eq(sscanf(line, "tokenizer %31s%n", fx->tokenizer, &used), 1);
      const char *p = line + used;
      int n = 0;
      while (sscanf(p, " %15s %ld%n", key, &val, &n) == 2) {
        if (!strcmp(key, "vocab")) fx->vocab = val;
        else if (!strcmp(key, "pad")) fx->pad = val;
        else if (!strcmp(key, "cls")) fx->cls = val;
        else if (!strcmp(key, "eos") || !strcmp(key, "sep")) fx->eos = val;
        else if (!strcmp(key, "unk")) fx->unk = val;
        else if (!strcmp(key, "mask")) fx->mask_id = val;
        else ck_abort_msg("%s: unknown tokenizer field %s", rel, key);
        p += n;
      }
      header = true;
    } else if (strncmp(line, "batch ", 6) == 0) {
      ck_assert_msg(!cur || si == cur->n, "%s: batch %s has %d of %d samples", rel,
                    cur ? cur->name : "", si, cur ? cur->n : 0);
      ck_assert_int_lt(fx->nbatches, MAX_BATCHES);
      cur = &fx->b[fx->nbatches++];
      char ml[16];
      ck_assert_msg(sscanf(line, "batch %63s n %d max_length %15s len %d", cur->name, &cur->n, ml,
                           &cur->len) == 4, "%s: bad batch line '%s'", rel, line);
      ck_assert_int_gt(cur->n, 0);
      ck_assert_int_le(cur->n, MAX_SEQS);
      cur->max_length = strcmp(ml, "none") == 0 ? -1 : atol(ml);
      si = 0;
    } else if (strncmp(line, "seq ", 4) == 0) {
      ck_assert_msg(cur && si < cur->n, "%s: seq outside a batch", rel);
      sample_t *s = &cur->s[si++];
      const char *h = line + 4;
      size_t hl = strcmp(h, "-") == 0 ? 0 : strlen(h);
      ck_assert_msg(hl % 2 == 0, "%s: odd hex length", rel);
      s->nbytes = hl / 2;
      s->text = calloc(s->nbytes + 1, 1);
      for (size_t i = 0; i < s->nbytes; i++) {
        int a = tu_hexval(h[2 * i]), b = tu_hexval(h[2 * i + 1]);
        ck_assert_msg(a >= 0 && b >= 0, "%s: bad hex", rel);
        s->text[i] = (char)(a * 16 + b);
        ck_assert_msg(s->text[i] != 0, "%s: NUL byte in a golden string", rel);
      }
      char *l2 = strtok_r(NULL, "\n", &save);
      ck_assert_ptr_nonnull(l2);
      if (dna) {
        s->onehot = parse_onehot(l2, cur->len);
      } else {
        s->ids = parse_longs(l2, "ids", cur->len);
        char *l3 = strtok_r(NULL, "\n", &save);
        ck_assert_ptr_nonnull(l3);
        s->mask = parse_longs(l3, "mask", cur->len);
      }
    } else {
      ck_abort_msg("%s: unexpected line '%.60s'", rel, line);
    }
  }
  ck_assert_msg(!cur || si == cur->n, "%s: last batch incomplete", rel);
  ck_assert_msg(header, "%s: no tokenizer line", rel);
  free(text);
}

static void fixture_free(fixture_t *fx) {
  for (int i = 0; i < fx->nbatches; i++)
    for (int j = 0; j < fx->b[i].n; j++) {
      free(fx->b[i].s[j].text);
      free(fx->b[i].s[j].ids);
      free(fx->b[i].s[j].mask);
      free(fx->b[i].s[j].onehot);
    }
  free(fx->b);
}

static int valid_len(const sample_t *s, int len) {
  int n = 0;
  while (n < len && s->mask[n] == 1) n++;
  return n;
}

static const batch_t *find_batch(const fixture_t *fx, const char *name) {
  for (int i = 0; i < fx->nbatches; i++)
    if (strcmp(fx->b[i].name, name) == 0) return &fx->b[i];
  return NULL;
}

static int distinct_strings(const fixture_t *fx) {
  const char *seen[512];
  size_t seen_n[512];
  int n = 0;
  for (int i = 0; i < fx->nbatches; i++)
    for (int j = 0; j < fx->b[i].n; j++) {
      const sample_t *s = &fx->b[i].s[j];
      bool dup = false;
      for (int k = 0; k < n && !dup; k++)
        dup = seen_n[k] == s->nbytes && memcmp(seen[k], s->text, s->nbytes) == 0;
      if (!dup && n < 512) {
        seen[n] = s->text;
        seen_n[n++] = s->nbytes;
      }
    }
  return n;
}

/* The id of character c when every vocab token of one character is listed in `letters` in id
 * order starting at `first` (the peers' vocab files). */
static long letter_id(const char *letters, long first, char c) {
  const char *p = strchr(letters, c);
  return c && p ? first + (p - letters) : -1;
}

static void check_token_fixture(const char *rel, const char *letters, long first) {
  fixture_t fx;
  load(&fx, rel, false);
  ck_assert_int_gt(fx.vocab, 0);
  ck_assert(fx.cls >= 0 && fx.eos >= 0 && fx.pad >= 0);
  int nsingle = 0, nlookup = 0, ntrunc = 0;
  for (int i = 0; i < fx.nbatches; i++) {
    const batch_t *b = &fx.b[i];
    int longest = 0;
    for (int j = 0; j < b->n; j++) {
      const sample_t *s = &b->s[j];
      int v = valid_len(s, b->len);
      for (int t = 0; t < b->len; t++) {
        ck_assert_msg(s->ids[t] >= 0 && s->ids[t] < fx.vocab, "%s %s: id %ld out of range", rel,
                      b->name, s->ids[t]);
        ck_assert_msg(s->mask[t] == (t < v), "%s %s: mask not 1..1 0..0", rel, b->name);
        if (t >= v)
          ck_assert_msg(s->ids[t] == fx.pad, "%s %s: padded position holds %ld", rel, b->name,
                        s->ids[t]);
      }
      ck_assert_msg(v >= 2 && s->ids[0] == fx.cls && s->ids[v - 1] == fx.eos,
                    "%s %s: sample %d lacks cls/eos", rel, b->name, j);
      if (b->max_length > 0) ck_assert_int_le(v, b->max_length);
      if (v > longest) longest = v;
      /* Strings of vocabulary letters only: ids are the per-character lookup. */
      bool simple = true;
      for (size_t c = 0; c < s->nbytes && simple; c++)
        simple = letter_id(letters, first, s->text[c]) >= 0;
      if (simple && (b->max_length < 0 || (long)s->nbytes + 2 <= b->max_length)) {
        ck_assert_int_eq(v, (int)s->nbytes + 2);
        for (size_t c = 0; c < s->nbytes; c++)
          ck_assert_msg(s->ids[c + 1] == letter_id(letters, first, s->text[c]),
                        "%s %s: '%s' position %zu", rel, b->name, s->text, c);
        nlookup++;
      }
    }
    ck_assert_msg(b->len == longest, "%s %s: padded to %d, longest sample %d", rel, b->name,
                  b->len, longest);
    /* single<i>_mlNone vs single<i>_ml12: truncation keeps the head and re-appends eos. */
    int idx;
    char tail[32];
    if (sscanf(b->name, "single%d_ml%31s", &idx, tail) == 2 && strcmp(tail, "None") == 0) {
      nsingle++;
      char other[64];
      snprintf(other, sizeof other, "single%d_ml12", idx);
      const batch_t *o = find_batch(&fx, other);
      ck_assert_msg(o != NULL, "%s: no %s", rel, other);
      ck_assert_int_eq(o->s[0].nbytes, b->s[0].nbytes);
      int vn = valid_len(&b->s[0], b->len), v12 = valid_len(&o->s[0], o->len);
      ck_assert_int_eq(v12, vn < 12 ? vn : 12);
      for (int t = 0; t < v12 - 1; t++) ck_assert_int_eq(o->s[0].ids[t], b->s[0].ids[t]);
      ntrunc += vn > 12;
    }
  }
  /* all_ml<M> rows are the single rows, padded. */
  for (int i = 0; i < fx.nbatches; i++) {
    const batch_t *all = &fx.b[i];
    char ml[32];
    if (sscanf(all->name, "all_ml%31s", ml) != 1) continue;
    for (int j = 0; j < all->n; j++) {
      char name[64];
      snprintf(name, sizeof name, "single%d_ml%s", j, ml);
      const batch_t *one = find_batch(&fx, name);
      ck_assert_msg(one != NULL, "%s: no %s", rel, name);
      ck_assert(one->s[0].nbytes == all->s[j].nbytes &&
                memcmp(one->s[0].text, all->s[j].text, one->s[0].nbytes) == 0);
      for (int t = 0; t < all->len; t++) {
        long want = t < one->len ? one->s[0].ids[t] : fx.pad;
        ck_assert_msg(all->s[j].ids[t] == want, "%s %s row %d differs from %s", rel, all->name,
                      j, name);
      }
    }
  }
  /* The over-long sample is cut at exactly max_length tokens. */
  const batch_t *lb = find_batch(&fx, "long_ml1024");
  ck_assert_ptr_nonnull(lb);
  ck_assert_int_eq(lb->len, 1024);
  ck_assert_int_eq(valid_len(&lb->s[0], lb->len), 1024);
  ck_assert_int_ge(distinct_strings(&fx), 40);
  ck_assert_int_ge(nsingle, 39);
  ck_assert_int_ge(nlookup, 10);
  ck_assert_int_ge(ntrunc, 1);
  fixture_free(&fx);
}

START_TEST(test_protein) {
  /* ESM2 vocab: 4-28 "LAGVSERTIDPKQNFYMHWCXBUZO", 29 '.', 30 '-' */
  check_token_fixture("tests/golden/tokenizers/protein.txt", "LAGVSERTIDPKQNFYMHWCXBUZO.-", 4);
}
END_TEST

START_TEST(test_rna) {
  /* RNABert vocab: 5-10 "AGCTUN" */
  check_token_fixture("tests/golden/tokenizers/rna.txt", "AGCTUN", 5);
}
END_TEST

START_TEST(test_dna) {
  fixture_t fx;
  load(&fx, "tests/golden/tokenizers/dna.txt", true);
  int rows = 0;
  for (int i = 0; i < fx.nbatches; i++) {
    const batch_t *b = &fx.b[i];
    for (int j = 0; j < b->n; j++) {
      const sample_t *s = &b->s[j];
      /* one row per byte (UTF-8 bytes, as np.fromstring(..., uint8) sees them) */
      ck_assert_int_eq((int)s->nbytes, b->len);
      for (int t = 0; t < b->len; t++) {
        unsigned char c = (unsigned char)s->text[t];
        double want[4] = {0, 0, 0, 0};
        const char *p = strchr("acgt", tolower(c));
        if (c == '.') want[0] = want[1] = want[2] = want[3] = 0.25;
        else if (c < 128 && p && *p) want[p - "acgt"] = 1.0;
        for (int k = 0; k < 4; k++)
          ck_assert_msg(s->onehot[t * 4 + k] == want[k], "dna %s: byte 0x%02x column %d is %g",
                        b->name, c, k, s->onehot[t * 4 + k]);
        rows++;
      }
    }
  }
  ck_assert_int_ge(distinct_strings(&fx), 40);
  ck_assert_int_gt(rows, 100);
  fixture_free(&fx);
}
END_TEST

static Suite *tok_suite(void) {
  Suite *s = suite_create("tokenizer_goldens");
  TCase *tc = tcase_create("fixtures");
  tcase_add_test(tc, test_protein);
  tcase_add_test(tc, test_rna);
  tcase_add_test(tc, test_dna);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(tok_suite()); }
