/* Demo data generator: see runtime/demodata.h for the format and the planted signal.
 *
 * Each split is made in two passes. Pass 1 walks the rows in order and draws everything small
 * (gene structure, coordinates, latents, noise, lengths) and the labels, so that labels can be
 * permuted across the whole split (shuffle_labels) and the oracle computed before anything is
 * written. Pass 2 writes the files, drawing the sequences from per-row streams. Every stream is
 * keyed by (seed, split, row, purpose), so the two passes need not share any state but the
 * small row table. */
#include "runtime/demodata.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/metrics.h"

#define K RT_DEMO_NUM_LABELS
#define ND (RT_DEMO_D_MAX + 1)
#define NR (RT_DEMO_R_MAX + 1)
#define RNA_HEAD 30       /* nucleotides AIDO.RNA sees at max_length 32 */
#define RNA_MAX 12000
#define PROT_MAX 3000
#define WIN 256           /* DNA window of the latent (the tiny configs' dna_window) */
#define MOTIF "GGGGCGGGG" /* GC box, the SP1 consensus */
#define MOTIF_LEN 9
#define SLOTS 6           /* 21-bp slots in the central 128 bp of the window */
#define SLOT_LEN 21
#define SLOT_BASE 64      /* slots start at window offset 64: the central 128 bp */
#define PROTECT 64        /* bases on each side of the window kept uppercase and N-free */
#define LOG2_FLOOR (-13.287712379549449) /* log2(1e-4) */
#define SD_R 6.5594       /* sqrt(30 * 0.209167 + 900 * 0.040833): std of r */
#define NOISE_SHARED 0.8
#define NOISE_TISSUE 0.6
#define TPM_LOG2_AT_ONSET (-6.0) /* log2 TPM when the activity just crosses tau */
#define TPM_LOG2_SLOPE 1.6
#define TISSUE_SEED 0x7155e5eedull /* the fixed stream of the tissue weights */

/* Stream purposes (part of the key of every per-row stream; never renumber: the bytes depend
 * on them). */
enum { P_GENES = 1, P_ROW, P_DNA, P_CENTRE, P_RNA, P_PROT, P_SHUFFLE };

/* ---- random numbers ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

typedef struct rng {
  uint64_t s[4];
} rng_t;

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** 1.0 (Blackman & Vigna, public domain reference implementation). */
static inline uint64_t next(rng_t *r) {
  uint64_t *s = r->s;
  uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}

/* A stream keyed by (seed, a, b, c): each key word goes through splitmix64 in turn, then four
 * splitmix64 outputs fill the state (never all zero in practice: splitmix64 is a bijection). */
static rng_t stream(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t s = seed;
  s = splitmix64(&s) ^ a;
  s = splitmix64(&s) ^ b;
  s = splitmix64(&s) ^ c;
  rng_t r;
  for (int i = 0; i < 4; i++) r.s[i] = splitmix64(&s);
  return r;
}

static inline double unif(rng_t *r) { return (double)(next(r) >> 11) * 0x1p-53; } /* [0, 1) */
static inline uint64_t below(rng_t *r, uint64_t n) { return next(r) % n; } /* bias < n / 2^64 */

static double normal(rng_t *r) { /* Box-Muller, the cosine branch only */
  double u1 = 1.0 - unif(r), u2 = unif(r);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---- the model: tissue weights, activity, labels, exact conditional expectations --------- */

struct rt_demo_model {
  rt_demo_signal_t signal;
  double alpha[K], beta[K], gamma[K], tau[K], S[K];
  double pr[NR];        /* P(r) */
  double hdr[K][ND][NR]; /* E[label | d, r] */
  double hd[K][ND], hr[K][NR];
};

static double lat_u(int d) { return (d - 3) / 2.0; }
static double lat_v(int r) { return (r - 15) / SD_R; }

/* Noise-free activity of tissue t. h is the hidden latent of mode none. */
static double activity(const rt_demo_model_t *m, int t, int d, int r, double h) {
  double u = lat_u(d), v = lat_v(r);
  switch (m->signal) {
    case RT_DEMO_SIGNAL_BOTH: return m->alpha[t] * u + m->beta[t] * v + m->gamma[t] * u * v;
    case RT_DEMO_SIGNAL_DNA: return m->S[t] * u;
    case RT_DEMO_SIGNAL_RNA: return m->S[t] * v;
    default: return m->S[t] * h;
  }
}

/* The label of an observed activity a. */
static double label_of(double a, double tau) {
  if (a < tau) return LOG2_FLOOR;
  return log2(1e-4 + exp2(TPM_LOG2_AT_ONSET + TPM_LOG2_SLOPE * (a - tau)));
}

/* E[label_of(mean + sigma x, tau)], x ~ N(0, 1): the floor's mass from erfc, and Simpson over
 * the expressed part starting exactly at the onset (so the jump costs no accuracy). */
static double expect_label(double mean, double sigma, double tau) {
  double x0 = (tau - mean) / sigma;
  if (x0 >= 8) return LOG2_FLOOR;
  double lo = x0 > -8 ? x0 : -8, hi = 8, sum = 0;
  enum { N = 128 };
  double step = (hi - lo) / N;
  for (int i = 0; i <= N; i++) {
    double x = lo + i * step, w = (i == 0 || i == N) ? 1 : (i % 2 ? 4 : 2);
    sum += w * label_of(mean + sigma * x, tau) * exp(-0.5 * x * x);
  }
  sum *= step / 3 / sqrt(2 * M_PI);
  return 0.5 * erfc(-x0 / M_SQRT2) * LOG2_FLOOR + sum;
}

ad_status_t rt_demo_model_create(rt_demo_signal_t s, rt_demo_model_t **out) {
  *out = NULL;
  rt_demo_model_t *m = calloc(1, sizeof *m);
  if (!m) return ad_status_make(AD_STATUS_RESOURCE, "demo data: out of memory");
  m->signal = s;
  rng_t r = stream(TISSUE_SEED, 0, 0, 0);
  for (int t = 0; t < K; t++) {
    m->alpha[t] = 1 + 0.25 * normal(&r);
    m->beta[t] = 1 + 0.25 * normal(&r);
    m->gamma[t] = 2 * (1 + 0.2 * normal(&r));
    m->tau[t] = -0.6 + 0.35 * normal(&r);
    m->S[t] = sqrt(m->alpha[t] * m->alpha[t] + m->beta[t] * m->beta[t] +
                   m->gamma[t] * m->gamma[t]);
  }
  /* P(r) = E_p[Binomial(30, p)(r)], p ~ U(0.15, 0.85): Simpson over p. */
  double binom[NR], psum = 0;
  binom[0] = 1;
  for (int k = 1; k < NR; k++) binom[k] = binom[k - 1] * (RT_DEMO_R_MAX - k + 1) / k;
  for (int k = 0; k < NR; k++) {
    enum { N = 400 };
    double acc = 0, step = 0.7 / N;
    for (int i = 0; i <= N; i++) {
      double p = 0.15 + i * step, w = (i == 0 || i == N) ? 1 : (i % 2 ? 4 : 2);
      acc += w * binom[k] * pow(p, k) * pow(1 - p, RT_DEMO_R_MAX - k);
    }
    m->pr[k] = acc * step / 3 / 0.7;
    psum += m->pr[k];
  }
  for (int k = 0; k < NR; k++) m->pr[k] /= psum;
  double sigma = sqrt(NOISE_SHARED * NOISE_SHARED + NOISE_TISSUE * NOISE_TISSUE);
  for (int t = 0; t < K; t++) {
    if (s == RT_DEMO_SIGNAL_NONE) {
      /* The hidden latent is one more Gaussian term: the labels do not depend on (d, r). */
      double e = expect_label(0, sqrt(sigma * sigma + m->S[t] * m->S[t]), m->tau[t]);
      for (int d = 0; d < ND; d++)
        for (int k = 0; k < NR; k++) m->hdr[t][d][k] = e;
    } else {
      for (int d = 0; d < ND; d++)
        for (int k = 0; k < NR; k++)
          m->hdr[t][d][k] = expect_label(activity(m, t, d, k, 0), sigma, m->tau[t]);
    }
    for (int d = 0; d < ND; d++) {
      double a = 0;
      for (int k = 0; k < NR; k++) a += m->pr[k] * m->hdr[t][d][k];
      m->hd[t][d] = a;
    }
    for (int k = 0; k < NR; k++) {
      double a = 0;
      for (int d = 0; d < ND; d++) a += m->hdr[t][d][k] / ND;
      m->hr[t][k] = a;
    }
  }
  *out = m;
  return AD_OK;
}

void rt_demo_model_free(rt_demo_model_t *m) { free(m); }
double rt_demo_expect_dr(const rt_demo_model_t *m, int t, int d, int r) { return m->hdr[t][d][r]; }
double rt_demo_expect_d(const rt_demo_model_t *m, int t, int d) { return m->hd[t][d]; }
double rt_demo_expect_r(const rt_demo_model_t *m, int t, int r) { return m->hr[t][r]; }

/* ---- latents read back from sequences ------------------------------------------------------ */

static int64_t window_start(int64_t n) { return (n - WIN) / 2; } /* as data.dna_window crops */

static inline bool motif_at(const char *s) {
  for (int j = 0; j < MOTIF_LEN; j++)
    if ((s[j] & ~0x20) != MOTIF[j]) return false;
  return true;
}

int rt_demo_dna_latent(const char *dna, size_t len) {
  if (len < WIN) return 0;
  const char *w = dna + window_start((int64_t)len);
  int d = 0;
  for (int i = 0; i + MOTIF_LEN <= WIN; i++) d += motif_at(w + i);
  return d;
}

int rt_demo_rna_latent(const char *rna, size_t len) {
  int r = 0;
  for (size_t i = 0; i < len && i < RNA_HEAD; i++)
    r += rna[i] == 'G' || rna[i] == 'C' || rna[i] == 'g' || rna[i] == 'c';
  return r;
}

/* ---- options -------------------------------------------------------------------------------- */

void rt_demo_defaults(rt_demo_options_t *o) {
  *o = (rt_demo_options_t){.seed = 42, .train_rows = 2400, .val_rows = 300, .test_rows = 500,
                           .train_files = 3, .dna_length = 196608,
                           .signal = RT_DEMO_SIGNAL_BOTH};
}

ad_status_t rt_demo_validate(const rt_demo_options_t *o) {
  if (o->train_files < 1 || o->train_files > RT_DEMO_MAX_TRAIN_FILES)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "train files must be in 1..%d (got %d)",
                          RT_DEMO_MAX_TRAIN_FILES, o->train_files);
  if (o->train_rows < o->train_files || o->train_rows > RT_DEMO_MAX_ROWS)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "train rows must be in %d..%lld, at least one per train file (got %lld)",
                          o->train_files, (long long)RT_DEMO_MAX_ROWS, (long long)o->train_rows);
  if (o->val_rows < 1 || o->val_rows > RT_DEMO_MAX_ROWS || o->test_rows < 1 ||
      o->test_rows > RT_DEMO_MAX_ROWS)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "validation and test rows must be in 1..%lld (got %lld and %lld)",
                          (long long)RT_DEMO_MAX_ROWS, (long long)o->val_rows,
                          (long long)o->test_rows);
  if (o->dna_length < RT_DEMO_MIN_DNA_LENGTH || o->dna_length > RT_DEMO_MAX_DNA_LENGTH)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "DNA length must be in %d..%lld (got %lld)",
                          RT_DEMO_MIN_DNA_LENGTH, (long long)RT_DEMO_MAX_DNA_LENGTH,
                          (long long)o->dna_length);
  if ((unsigned)o->signal > RT_DEMO_SIGNAL_NONE)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "unknown signal mode %d", (int)o->signal);
  return AD_OK;
}

static const char *const k_signal_names[] = {"both", "dna", "rna", "none"};

const char *rt_demo_signal_name(rt_demo_signal_t s) {
  return (unsigned)s <= RT_DEMO_SIGNAL_NONE ? k_signal_names[s] : "?";
}

bool rt_demo_signal_parse(const char *s, rt_demo_signal_t *out) {
  for (int i = 0; i <= RT_DEMO_SIGNAL_NONE; i++)
    if (strcmp(s, k_signal_names[i]) == 0) {
      *out = (rt_demo_signal_t)i;
      return true;
    }
  if (strcmp(s, "dna_only") == 0) *out = RT_DEMO_SIGNAL_DNA;
  else if (strcmp(s, "rna_only") == 0) *out = RT_DEMO_SIGNAL_RNA;
  else return false;
  return true;
}

const char *rt_demo_split_name(int split) {
  static const char *const n[] = {"train", "validation", "test"};
  return split >= 0 && split < RT_DEMO_NUM_SPLITS ? n[split] : "?";
}

void rt_demo_file_name(const rt_demo_options_t *o, int i, char name[32]) {
  if (i < o->train_files) snprintf(name, 32, "train_%d.tsv", i + 1);
  else snprintf(name, 32, "%s.tsv", i == o->train_files ? "validation" : "test");
}

/* ---- pass 1: the row table -------------------------------------------------------------- */

/* hg38 chromosome lengths (chr1..chr22), for plausible coordinates. */
static const int64_t k_chrom_len[23] = {
    0,         248956422, 242193529, 198295559, 190214555, 181538259, 170805979, 159345973,
    145138636, 138394717, 133797422, 135086622, 133275309, 114364328, 107043718, 101991189,
    90338345,  83257441,  80373285,  58617616,  64444167,  46709983,  50818468};

typedef struct demo_row {
  int64_t gene_no, tx_no, tss, tes;
  int32_t rna_len, prot_len; /* prot_len 0: non-coding */
  uint8_t chrom, d, r;
  char strand;
} demo_row_t;

typedef struct split_data {
  int split;
  int64_t n;
  demo_row_t *rows;
  double *labels; /* [n, K] */
  int nfiles, first_file; /* files of this split, and the index of the first in file order */
  int64_t *file_start;    /* [nfiles + 1] row ranges */
} split_data_t;

static int64_t clip64(double x, int64_t lo, int64_t hi) {
  return x < (double)lo ? lo : x > (double)hi ? hi : (int64_t)x;
}

static ad_status_t make_rows(const rt_demo_options_t *o, const rt_demo_model_t *model, int split,
                             split_data_t *sd) {
  int64_t n = split == RT_DEMO_SPLIT_TRAIN ? o->train_rows
              : split == RT_DEMO_SPLIT_VAL ? o->val_rows
                                           : o->test_rows;
  sd->split = split;
  sd->n = n;
  sd->nfiles = split == RT_DEMO_SPLIT_TRAIN ? o->train_files : 1;
  sd->first_file = split == RT_DEMO_SPLIT_TRAIN ? 0 : o->train_files + split - 1;
  sd->rows = calloc((size_t)n, sizeof *sd->rows);
  sd->labels = malloc((size_t)n * K * sizeof *sd->labels);
  sd->file_start = malloc(((size_t)sd->nfiles + 1) * sizeof *sd->file_start);
  if (!sd->rows || !sd->labels || !sd->file_start)
    return ad_status_make(AD_STATUS_RESOURCE, "demo data: out of memory for %lld rows",
                          (long long)n);
  for (int f = 0; f <= sd->nfiles; f++) sd->file_start[f] = n * f / sd->nfiles;

  rng_t g = stream(o->seed, (uint64_t)split, 0, P_GENES);
  int64_t gene_counter[23] = {0}, tx_counter[23] = {0};
  int iso_left = 0, f = 0;
  int64_t gene_no = 0, gene_pos = 0;
  int chrom = 0;
  char strand = '+';
  for (int64_t i = 0; i < n; i++) {
    demo_row_t *row = &sd->rows[i];
    bool new_gene = iso_left == 0;
    while (i == sd->file_start[f + 1]) f++, new_gene = true; /* genes do not straddle files */
    if (new_gene) {
      chrom = split == RT_DEMO_SPLIT_TRAIN ? f + 1
              : split == RT_DEMO_SPLIT_VAL ? 20
                                           : 21 + (int)below(&g, 2);
      gene_no = ++gene_counter[chrom];
      strand = below(&g, 2) ? '+' : '-';
      gene_pos = 1000000 + (int64_t)below(&g, (uint64_t)(k_chrom_len[chrom] - 2000000));
      uint64_t q = below(&g, 100); /* isoforms per gene: 1 (50%), 2 (25%), 3 (15%), 4 (10%) */
      iso_left = q < 50 ? 1 : q < 75 ? 2 : q < 90 ? 3 : 4;
    }
    iso_left--;
    int64_t tss = gene_pos; /* later isoforms: the gene's TSS or an alternative one near it */
    if (!new_gene && below(&g, 2))
      tss += (strand == '+' ? 1 : -1) * (int64_t)(1 + below(&g, 5000));

    rng_t r = stream(o->seed, (uint64_t)split, (uint64_t)i, P_ROW);
    int d = (int)below(&r, ND);
    double p = 0.15 + 0.7 * unif(&r);
    int rc = 0;
    for (int j = 0; j < RNA_HEAD; j++) rc += unif(&r) < p;
    double h = normal(&r), e0 = normal(&r), e[K];
    for (int t = 0; t < K; t++) e[t] = normal(&r);
    int64_t rna_len = clip64(exp(log(1800.0) + 0.7 * normal(&r)), 200, RNA_MAX);
    bool coding = unif(&r) < 0.7;
    int64_t prot_len = clip64(exp(log(400.0) + 0.6 * normal(&r)), 50, PROT_MAX);
    double span_draw = exp(log(20000.0) + 1.0 * normal(&r));
    if (!coding) prot_len = 0;
    /* Room for the CDS; 3 * PROT_MAX + 100 <= RNA_MAX keeps rna_len within RNA_MAX. */
    if (rna_len < 3 * prot_len + 100) rna_len = 3 * prot_len + 100;
    int64_t span = clip64(span_draw, rna_len, 2000000);
    int64_t room = strand == '+' ? k_chrom_len[chrom] - tss : tss - 1;
    if (span > room) span = room;

    row->chrom = (uint8_t)chrom;
    row->gene_no = gene_no;
    row->tx_no = ++tx_counter[chrom];
    row->strand = strand;
    row->tss = tss;
    row->tes = strand == '+' ? tss + span - 1 : tss - span + 1;
    row->d = (uint8_t)d;
    row->r = (uint8_t)rc;
    row->rna_len = (int32_t)rna_len;
    row->prot_len = (int32_t)prot_len;
    for (int t = 0; t < K; t++) {
      double a = activity(model, t, d, rc, h) + NOISE_SHARED * e0 + NOISE_TISSUE * e[t];
      sd->labels[i * K + t] = label_of(a, model->tau[t]);
    }
  }
  if (o->shuffle_labels) { /* Fisher-Yates over whole label rows */
    rng_t s = stream(o->seed, (uint64_t)split, 0, P_SHUFFLE);
    double tmp[K];
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)below(&s, (uint64_t)i + 1);
      memcpy(tmp, sd->labels + i * K, sizeof tmp);
      memcpy(sd->labels + i * K, sd->labels + j * K, sizeof tmp);
      memcpy(sd->labels + j * K, tmp, sizeof tmp);
    }
  }
  return AD_OK;
}

static void free_rows(split_data_t *sd) {
  free(sd->rows);
  free(sd->labels);
  free(sd->file_start);
}

/* Floor shares and the three oracles of one split. */
static ad_status_t split_stats(const rt_demo_model_t *m, const split_data_t *sd,
                               rt_demo_split_stats_t *st) {
  st->rows = sd->n;
  int64_t floor_n = 0, all_floor = 0, coding = 0;
  for (int64_t i = 0; i < sd->n; i++) {
    int c = 0;
    for (int t = 0; t < K; t++) c += sd->labels[i * K + t] == LOG2_FLOOR;
    floor_n += c;
    all_floor += c == K;
    coding += sd->rows[i].prot_len > 0;
  }
  st->floor_share = (double)floor_n / ((double)sd->n * K);
  st->all_floor_share = (double)all_floor / (double)sd->n;
  st->coding_share = (double)coding / (double)sd->n;
  double *pred = malloc((size_t)sd->n * K * sizeof *pred);
  if (!pred) return ad_status_make(AD_STATUS_RESOURCE, "demo data: out of memory");
  double *out[3] = {&st->oracle_both, &st->oracle_dna, &st->oracle_rna};
  ad_status_t s = AD_OK;
  for (int which = 0; which < 3 && !s; which++) {
    for (int64_t i = 0; i < sd->n; i++) {
      const demo_row_t *row = &sd->rows[i];
      for (int t = 0; t < K; t++)
        pred[i * K + t] = which == 0   ? m->hdr[t][row->d][row->r]
                          : which == 1 ? m->hd[t][row->d]
                                       : m->hr[t][row->r];
    }
    rt_metrics_t *mt = NULL;
    double avg[RT_METRICS_KIND_COUNT];
    s = rt_metrics_create(K, &mt);
    if (!s) s = rt_metrics_update_f64(mt, pred, sd->labels, sd->n);
    if (!s) s = rt_metrics_compute(mt, NULL, avg);
    if (!s) *out[which] = avg[RT_METRICS_SPEARMAN];
    rt_metrics_free(mt);
  }
  free(pred);
  return s;
}

/* ---- pass 2: sequences and files ----------------------------------------------------------- */

static char k_dna_table[256];  /* A 76, C 52, G 52, T 76 of 256: GC 40.6% as hg38 */
static char k_prot_table[1024]; /* residues at UniProt-like frequencies */

static void init_tables(void) {
  for (int i = 0; i < 256; i++) k_dna_table[i] = i < 76 ? 'A' : i < 128 ? 'C' : i < 180 ? 'G' : 'T';
  static const char aa[] = "LAGVESIKRDTPNQFYMHCW";
  static const double freq[] = {9.9, 8.3, 7.1, 6.9, 6.8, 6.6, 5.9, 5.8, 5.5, 5.5,
                                5.3, 4.7, 4.1, 3.9, 3.9, 2.9, 2.4, 2.3, 1.4, 1.1};
  double total = 0, cum = 0;
  for (int j = 0; j < 20; j++) total += freq[j];
  int j = 0;
  for (int i = 0; i < 1024; i++) {
    double x = (i + 0.5) / 1024 * total;
    while (j < 19 && x >= cum + freq[j]) cum += freq[j++];
    k_prot_table[i] = aa[j];
  }
}

/* Fills dna[0, n) for row i: bulk bases, soft-mask runs, N runs, then the central window with
 * exactly row->d GC boxes. */
static ad_status_t make_dna(const rt_demo_options_t *o, int split, int64_t i,
                            const demo_row_t *row, char *dna) {
  int64_t n = o->dna_length;
  rng_t r = stream(o->seed, (uint64_t)split, (uint64_t)i, P_DNA);
  int64_t p = 0;
  for (; p + 8 <= n; p += 8) {
    uint64_t x = next(&r);
    for (int j = 0; j < 8; j++) dna[p + j] = k_dna_table[(x >> (8 * j)) & 255];
  }
  if (p < n) {
    uint64_t x = next(&r);
    for (int j = 0; p < n; j++, p++) dna[p] = k_dna_table[(x >> (8 * j)) & 255];
  }
  bool lower = next(&r) & 1;
  for (p = 0; p < n;) {
    int64_t len = 20 + (int64_t)below(&r, 600);
    if (len > n - p) len = n - p;
    if (lower)
      for (int64_t j = 0; j < len; j++) dna[p + j] |= 0x20;
    p += len;
    lower = !lower;
  }
  int64_t c = window_start(n);
  int64_t plo = c - PROTECT < 0 ? 0 : c - PROTECT;
  int64_t phi = c + WIN + PROTECT > n ? n : c + WIN + PROTECT;
  uint64_t q = below(&r, 100);
  if (q < 4) { /* one long run at an end */
    int64_t len = 1000 + (int64_t)below(&r, 40000);
    bool left = next(&r) & 1;
    if (left) {
      if (len > plo) len = plo;
      memset(dna, 'N', (size_t)len);
    } else {
      if (len > n - phi) len = n - phi;
      memset(dna + n - len, 'N', (size_t)len);
    }
  } else if (q < 19) { /* one short run, anywhere but the protected centre */
    int64_t len = 1 + (int64_t)below(&r, 100), at = (int64_t)below(&r, (uint64_t)n);
    if (at + len > n) len = n - at;
    if (at + len <= plo || at >= phi) memset(dna + at, 'N', (size_t)len);
  }
  for (p = plo; p < phi; p++) dna[p] &= ~0x20;

  rng_t cr = stream(o->seed, (uint64_t)split, (uint64_t)i, P_CENTRE);
  char *w = dna + c;
  int slots[SLOTS];
  for (int s = 0; s < SLOTS; s++) slots[s] = s;
  bool planted[WIN] = {0}, covered[WIN] = {0};
  for (int k = 0; k < row->d; k++) { /* k distinct slots: a partial Fisher-Yates */
    int j = k + (int)below(&cr, (uint64_t)(SLOTS - k));
    int s = slots[j];
    slots[j] = slots[k];
    slots[k] = s;
    int at = SLOT_BASE + s * SLOT_LEN + (int)below(&cr, SLOT_LEN - MOTIF_LEN + 1);
    memcpy(w + at, MOTIF, MOTIF_LEN);
    planted[at] = true;
    for (int b = 0; b < MOTIF_LEN; b++) covered[at + b] = true;
  }
  /* Destroy chance occurrences: turn one background base of each into A or T (not in the
   * motif, so no new occurrence appears). One always exists: planted boxes never overlap, and
   * two abutting ones (GGGGCGGGGGGGGCGGGG) hold no occurrence but their own. */
  for (int s = 0; s + MOTIF_LEN <= WIN; s++) {
    if (planted[s] || !motif_at(w + s)) continue;
    int b = 0;
    while (b < MOTIF_LEN && covered[s + b]) b++;
    if (b == MOTIF_LEN)
      return ad_status_make(AD_STATUS_INTERNAL, "demo data: unbreakable motif at %d", s);
    w[s + b] = (next(&cr) & 1) ? 'A' : 'T';
  }
  return AD_OK;
}

static void make_rna(const rt_demo_options_t *o, int split, int64_t i, const demo_row_t *row,
                     char *rna) {
  rng_t r = stream(o->seed, (uint64_t)split, (uint64_t)i, P_RNA);
  int idx[RNA_HEAD];
  bool gc[RNA_HEAD] = {0};
  for (int j = 0; j < RNA_HEAD; j++) idx[j] = j;
  for (int k = 0; k < row->r; k++) { /* row->r distinct G/C positions */
    int j = k + (int)below(&r, (uint64_t)(RNA_HEAD - k));
    int t = idx[j];
    idx[j] = idx[k];
    idx[k] = t;
    gc[t] = true;
  }
  for (int j = 0; j < RNA_HEAD; j++) {
    bool b = next(&r) & 1;
    rna[j] = gc[j] ? (b ? 'G' : 'C') : (b ? 'A' : 'T');
  }
  static const char acgt[4] = {'A', 'C', 'G', 'T'};
  for (int64_t p = RNA_HEAD; p < row->rna_len;) {
    uint64_t x = next(&r);
    for (int j = 0; j < 32 && p < row->rna_len; j++, p++) rna[p] = acgt[(x >> (2 * j)) & 3];
  }
}

static void make_protein(const rt_demo_options_t *o, int split, int64_t i, const demo_row_t *row,
                         char *prot) {
  if (row->prot_len == 0) return;
  rng_t r = stream(o->seed, (uint64_t)split, (uint64_t)i, P_PROT);
  prot[0] = 'M';
  for (int64_t p = 1; p < row->prot_len;) {
    uint64_t x = next(&r);
    for (int j = 0; j < 6 && p < row->prot_len; j++, p++)
      prot[p] = k_prot_table[(x >> (10 * j)) & 1023];
  }
}

/* Buffered writer on a file descriptor; the first error sticks. */
typedef struct writer {
  int fd;
  const char *path;
  char *buf;
  size_t len, cap;
  uint64_t total;
  ad_status_t st;
} writer_t;

static void w_raw(writer_t *w, const char *p, size_t n) {
  while (!w->st && n > 0) {
    ssize_t k = write(w->fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      w->st = ad_status_make(AD_STATUS_IO, "%s: write failed: %s", w->path,
                             k < 0 ? strerror(errno) : "no progress");
      return;
    }
    p += k;
    n -= (size_t)k;
  }
}

static void w_flush(writer_t *w) {
  w_raw(w, w->buf, w->len);
  w->len = 0;
}

static void w_put(writer_t *w, const char *p, size_t n) {
  w->total += n;
  if (w->len + n > w->cap) w_flush(w);
  if (n >= w->cap / 2) {
    w_raw(w, p, n);
    return;
  }
  memcpy(w->buf + w->len, p, n);
  w->len += n;
}

static void w_str(writer_t *w, const char *s) { w_put(w, s, strlen(s)); }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static ad_status_t fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ad_status_t st = AD_OK;
  if (fd < 0 || fsync(fd) != 0)
    st = ad_status_make(AD_STATUS_IO, "cannot sync directory %s: %s", dir, strerror(errno));
  if (fd >= 0) close(fd);
  return st;
}

/* Creates the temp file of dir/name: "dir/.name.tmp.XXXXXX". */
static ad_status_t open_temp(const char *dir, const char *name, char **tmp, int *fd) {
  size_t n = strlen(dir) + strlen(name) + 16;
  *tmp = malloc(n);
  if (!*tmp) return ad_status_make(AD_STATUS_RESOURCE, "demo data: out of memory");
  snprintf(*tmp, n, "%s/.%s.tmp.XXXXXX", dir, name);
  *fd = mkstemp(*tmp);
  if (*fd < 0 || fchmod(*fd, 0644) != 0) {
    ad_status_t st = ad_status_make(AD_STATUS_IO, "%s: cannot create a temp file %s: %s", dir,
                                    *tmp, strerror(errno));
    if (*fd >= 0) {
      close(*fd);
      unlink(*tmp);
    }
    free(*tmp);
    *tmp = NULL;
    return st;
  }
  return AD_OK;
}

/* fsync, close and rename the temp file over dir/name (the temp is removed on any failure). */
static ad_status_t commit_temp(const char *dir, const char *name, char *tmp, int fd,
                               ad_status_t st) {
  if (!st && fsync(fd) != 0)
    st = ad_status_make(AD_STATUS_IO, "%s: fsync failed: %s", tmp, strerror(errno));
  if (close(fd) != 0 && !st)
    st = ad_status_make(AD_STATUS_IO, "%s: close failed: %s", tmp, strerror(errno));
  char *path = st ? NULL : join(dir, name);
  if (!st && !path) st = ad_status_make(AD_STATUS_RESOURCE, "demo data: out of memory");
  if (!st && rename(tmp, path) != 0)
    st = ad_status_make(AD_STATUS_IO, "%s: cannot rename %s over it: %s", path, tmp,
                        strerror(errno));
  if (st) unlink(tmp);
  if (!st) st = fsync_dir(dir);
  free(path);
  free(tmp);
  return st;
}

static const char *const k_header_tail = "chromosome\ttss\ttes\tstrand\trna_seq\tprotein_seq\tdna_seq\n";

static ad_status_t write_file(const char *dir, const char *name, const rt_demo_options_t *o,
                              const split_data_t *sd, int64_t lo, int64_t hi, char *seq,
                              uint64_t *bytes, double *sync_s) {
  char *tmp;
  int fd;
  AD_RETURN_IF_ERROR(open_temp(dir, name, &tmp, &fd));
  writer_t w = {.fd = fd, .path = tmp, .cap = (size_t)4 << 20};
  w.buf = malloc(w.cap);
  if (!w.buf) w.st = ad_status_make(AD_STATUS_RESOURCE, "demo data: out of memory");
  char field[64];
  if (!w.st) {
    w_str(&w, "transcript_id\tgene_id");
    for (int t = 0; t < K; t++) {
      snprintf(field, sizeof field, "\tlabels_%d", t);
      w_str(&w, field);
    }
    w_str(&w, "\t");
    w_str(&w, k_header_tail);
  }
  /* seq holds the DNA, then the RNA, then the protein of one row. */
  char *dna = seq, *rna = seq + o->dna_length, *prot = rna + RNA_MAX;
  for (int64_t i = lo; i < hi && !w.st; i++) {
    const demo_row_t *row = &sd->rows[i];
    snprintf(field, sizeof field, "ENST%02d%09lld\tENSG%02d%09lld", row->chrom,
             (long long)row->tx_no, row->chrom, (long long)row->gene_no);
    w_str(&w, field);
    for (int t = 0; t < K; t++) {
      snprintf(field, sizeof field, "\t%.9g", sd->labels[i * K + t]);
      w_str(&w, field);
    }
    snprintf(field, sizeof field, "\tchr%d\t%lld\t%lld\t%c\t", row->chrom, (long long)row->tss,
             (long long)row->tes, row->strand);
    w_str(&w, field);
    ad_status_t s = make_dna(o, sd->split, i, row, dna);
    if (s) {
      w.st = s;
      break;
    }
    make_rna(o, sd->split, i, row, rna);
    make_protein(o, sd->split, i, row, prot);
    w_put(&w, rna, (size_t)row->rna_len);
    w_put(&w, "\t", 1);
    w_put(&w, prot, (size_t)row->prot_len);
    w_put(&w, "\t", 1);
    w_put(&w, dna, (size_t)o->dna_length);
    w_put(&w, "\n", 1);
  }
  w_flush(&w);
  free(w.buf);
  double t0 = now_s();
  ad_status_t st = commit_temp(dir, name, tmp, fd, w.st);
  *sync_s += now_s() - t0;
  *bytes = w.total;
  return st;
}

/* ---- the manifest -------------------------------------------------------------------------- */

static json_t *params_json(const rt_demo_options_t *o) {
  char seed[24];
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
  return json_pack("{s:s, s:I, s:I, s:I, s:i, s:I, s:b, s:s}", "seed", seed, "train_rows",
                   (json_int_t)o->train_rows, "val_rows", (json_int_t)o->val_rows, "test_rows",
                   (json_int_t)o->test_rows, "train_files", o->train_files, "dna_length",
                   (json_int_t)o->dna_length, "shuffle_labels", (int)o->shuffle_labels, "signal",
                   rt_demo_signal_name(o->signal));
}

static ad_status_t write_manifest(const char *dir, const rt_demo_options_t *o,
                                  const rt_demo_report_t *rep, char names[][32],
                                  const uint64_t *sizes) {
  json_t *files = json_array(), *stats = json_object();
  for (int f = 0; f < rep->nfiles; f++)
    json_array_append_new(files, json_pack("{s:s, s:I}", "name", names[f], "bytes",
                                           (json_int_t)sizes[f]));
  for (int s = 0; s < RT_DEMO_NUM_SPLITS; s++) {
    const rt_demo_split_stats_t *x = &rep->split[s];
    json_object_set_new(
        stats, rt_demo_split_name(s),
        json_pack("{s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "rows", (json_int_t)x->rows,
                  "bytes", (json_int_t)x->bytes, "floor_share", x->floor_share,
                  "all_floor_share", x->all_floor_share, "coding_share", x->coding_share,
                  "oracle_spearman_both", x->oracle_both, "oracle_spearman_dna", x->oracle_dna,
                  "oracle_spearman_rna", x->oracle_rna));
  }
  json_t *root = json_pack("{s:s, s:i, s:s, s:o, s:o, s:o}", "format", "aidomm-demodata",
                           "version", RT_DEMO_VERSION, "prng", "xoshiro256** seeded by splitmix64",
                           "params", params_json(o), "files", files, "stats", stats);
  char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
  json_decref(root);
  if (!text) return ad_status_make(AD_STATUS_RESOURCE, "demo data: cannot build %s",
                                   RT_DEMO_MANIFEST);
  char *tmp;
  int fd;
  ad_status_t st = open_temp(dir, RT_DEMO_MANIFEST, &tmp, &fd);
  if (!st) {
    writer_t w = {.fd = fd, .path = tmp};
    w_raw(&w, text, strlen(text));
    w_raw(&w, "\n", 1);
    st = commit_temp(dir, RT_DEMO_MANIFEST, tmp, fd, w.st);
  }
  free(text);
  return st;
}

/* The manifest of dir, or NULL when it is missing or not a JSON object. */
static json_t *load_manifest(const char *dir) {
  char *path = join(dir, RT_DEMO_MANIFEST);
  json_t *root = path ? json_load_file(path, 0, NULL) : NULL;
  free(path);
  if (root && !json_is_object(root)) {
    json_decref(root);
    root = NULL;
  }
  return root;
}

static bool manifest_lists(json_t *root, const char *name) {
  json_t *files = root ? json_object_get(root, "files") : NULL, *f;
  size_t i;
  json_array_foreach(files, i, f) {
    const char *n = json_string_value(json_object_get(f, "name"));
    if (n && strcmp(n, name) == 0) return true;
  }
  return false;
}

ad_status_t rt_demo_is_current(const char *dir, const rt_demo_options_t *o, bool *current) {
  *current = false;
  AD_RETURN_IF_ERROR(rt_demo_validate(o));
  json_t *root = load_manifest(dir);
  if (!root) return AD_OK;
  json_t *want = params_json(o), *files = json_object_get(root, "files");
  bool ok = json_is_integer(json_object_get(root, "version")) &&
            json_integer_value(json_object_get(root, "version")) == RT_DEMO_VERSION &&
            json_equal(json_object_get(root, "params"), want) && json_is_array(files) &&
            json_array_size(files) == (size_t)o->train_files + 2;
  for (int f = 0; ok && f < o->train_files + 2; f++) {
    char name[32];
    rt_demo_file_name(o, f, name);
    json_t *e = json_array_get(files, (size_t)f);
    const char *n = json_string_value(json_object_get(e, "name"));
    json_t *b = json_object_get(e, "bytes");
    char *path = join(dir, name);
    struct stat sb;
    ok = n && strcmp(n, name) == 0 && json_is_integer(b) && path && stat(path, &sb) == 0 &&
         S_ISREG(sb.st_mode) && (json_int_t)sb.st_size == json_integer_value(b);
    free(path);
  }
  json_decref(want);
  json_decref(root);
  *current = ok;
  return AD_OK;
}

/* ---- generate ------------------------------------------------------------------------------ */

static ad_status_t mkdir_p(const char *dir) {
  char *p = strdup(dir);
  if (!p) return ad_status_make(AD_STATUS_RESOURCE, "demo data: out of memory");
  ad_status_t st = AD_OK;
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0') continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
      st = ad_status_make(AD_STATUS_IO, "cannot create directory %s: %s", p, strerror(errno));
    *s = c;
    if (st || c == '\0') break;
  }
  struct stat sb;
  if (!st && (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)))
    st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "%s is not a directory", dir);
  free(p);
  return st;
}

static bool is_train_name(const char *s) {
  if (strncmp(s, "train_", 6) != 0) return false;
  const char *p = s + 6;
  if (!(*p >= '0' && *p <= '9')) return false;
  while (*p >= '0' && *p <= '9') p++;
  return strcmp(p, ".tsv") == 0;
}

/* Train files of an earlier dataset (listed in its manifest) that this one does not overwrite
 * are removed when `remove`; any other train_<n>.tsv, which the train_*.tsv glob would pick up,
 * is an error (checked first, with remove false, before anything changes). */
static ad_status_t clear_stale(const char *dir, const rt_demo_options_t *o, json_t *old,
                               bool remove) {
  DIR *dp = opendir(dir);
  if (!dp) return ad_status_make(AD_STATUS_IO, "cannot list %s: %s", dir, strerror(errno));
  ad_status_t st = AD_OK;
  struct dirent *de;
  while (!st && (de = readdir(dp))) {
    if (!is_train_name(de->d_name)) continue;
    long k = strtol(de->d_name + 6, NULL, 10);
    char mine[32];
    snprintf(mine, sizeof mine, "train_%ld.tsv", k);
    if (k >= 1 && k <= o->train_files && strcmp(mine, de->d_name) == 0) continue;
    if (!manifest_lists(old, de->d_name)) {
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "%s/%s was not written by aidomm-demodata and would be read as training "
                          "data; remove it or choose another directory",
                          dir, de->d_name);
    } else if (remove) {
      char *path = join(dir, de->d_name);
      if (!path || unlink(path) != 0)
        st = ad_status_make(AD_STATUS_IO, "cannot remove stale %s/%s: %s", dir, de->d_name,
                            path ? strerror(errno) : "out of memory");
      free(path);
    }
  }
  closedir(dp);
  return st;
}

ad_status_t rt_demo_generate(const char *dir, const rt_demo_options_t *o,
                             rt_demo_report_t *report) {
  rt_demo_report_t rep = {0};
  double t0 = now_s();
  AD_RETURN_IF_ERROR(rt_demo_validate(o));
  AD_RETURN_IF_ERROR(mkdir_p(dir));
  json_t *old = load_manifest(dir);
  ad_status_t st = clear_stale(dir, o, old, false);
  char *mpath = st ? NULL : join(dir, RT_DEMO_MANIFEST);
  if (!st && !mpath) st = ad_status_make(AD_STATUS_RESOURCE, "demo data: out of memory");
  else if (!st && unlink(mpath) != 0 && errno != ENOENT) /* incomplete until rewritten */
    st = ad_status_make(AD_STATUS_IO, "cannot remove %s: %s", mpath, strerror(errno));
  free(mpath);
  if (!st) st = clear_stale(dir, o, old, true);
  json_decref(old);
  if (st) return st;

  init_tables();
  rt_demo_model_t *model = NULL;
  AD_RETURN_IF_ERROR(rt_demo_model_create(o->signal, &model));
  int nfiles = o->train_files + 2;
  char(*names)[32] = calloc((size_t)nfiles, sizeof *names);
  uint64_t *sizes = calloc((size_t)nfiles, sizeof *sizes);
  char *seq = malloc((size_t)o->dna_length + RNA_MAX + PROT_MAX); /* one row's sequences */
  if (!names || !sizes || !seq) st = ad_status_make(AD_STATUS_RESOURCE, "demo data: out of memory");
  for (int s = 0; !st && s < RT_DEMO_NUM_SPLITS; s++) {
    split_data_t sd = {0};
    st = make_rows(o, model, s, &sd);
    if (!st) st = split_stats(model, &sd, &rep.split[s]);
    for (int f = 0; !st && f < sd.nfiles; f++) {
      int fi = sd.first_file + f;
      rt_demo_file_name(o, fi, names[fi]);
      st = write_file(dir, names[fi], o, &sd, sd.file_start[f], sd.file_start[f + 1], seq,
                      &sizes[fi], &rep.sync_seconds);
      rep.split[s].bytes += sizes[fi];
      rep.bytes += sizes[fi];
    }
    free_rows(&sd);
  }
  rep.nfiles = nfiles;
  if (!st) st = write_manifest(dir, o, &rep, names, sizes);
  rep.seconds = now_s() - t0;
  free(seq);
  free(sizes);
  free(names);
  rt_demo_model_free(model);
  if (!st && report) *report = rep;
  return st;
}
