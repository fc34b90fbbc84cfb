/* Demo data: a synthetic dataset in the exact GenBio transcript-isoform-expression format
 * (isoform-task.md 1.5, modelgenerator.md §6), generated at run time so nothing large is
 * committed, with a planted signal that needs both the DNA and the RNA to be predicted well.
 *
 * Files (in one directory; each written atomically: temp file, fsync, rename, fsync of the
 * directory):
 *   train_1.tsv .. train_F.tsv  chromosomes chr1..chrF (as the real per-chromosome train_<chr>)
 *   validation.tsv              chr20
 *   test.tsv                    chr21 and chr22
 *   demo.json                   manifest (parameters, files, statistics), written last: its
 *                               presence with matching parameters and file sizes means "complete".
 * Header, tab-separated, LF line ends:
 *   transcript_id gene_id labels_0 .. labels_29 chromosome tss tes strand rna_seq protein_seq dna_seq
 * Every field is present on every row; protein_seq is empty for non-coding transcripts (~30%).
 *
 * Sequences (none of them is derived from another; in the real data the RNA's 5' end lies in the
 * DNA window, but copying it here would leak the RNA latent into the DNA):
 * - dna_seq: dna_length bases (default 196,608 as the real windows), hg38-like composition
 *   (A,T 76/256 each, C,G 52/256 each: GC 40.6%), soft-masked like hg38 (alternating upper/lower
 *   case runs of 20..619 bp, about half lowercase), and with N runs: 4% of rows have one long
 *   run (1-41 kb, at one end, as near a gap or a chromosome end), 15% a short one (1..100 bp).
 *   The central region [c - 64, c + 320) with c = (dna_length - 256) / 2 is uppercase and N-free
 *   (promoters are rarely repeat-masked); c is where `data.dna_window: 256` starts its crop
 *   (frontend/sections.c), so a 256-bp crop keeps the whole DNA signal.
 * - rna_seq: length log-normal (median 1,800, sigma 0.7) clipped to [200, 12,000] (and at least
 *   3 x protein + 100 for a coding one), uppercase A C G T (T, not U, as in the dataset); after
 *   the first 30 nt, i.i.d. with GC 50%.
 * - protein_seq: empty for 30% of rows; otherwise 'M' and residues at UniProt-like
 *   frequencies, length log-normal (median 400, sigma 0.6) clipped to [50, 3,000]. The protein
 *   carries no signal.
 *
 * Planted signal (per transcript; "GC box" = the SP1 consensus GGGGCGGGG):
 *   d = number of positions i in [c, c + 247] with dna[i..i+9) == "GGGGCGGGG"
 *       (case-insensitive), i.e. GC boxes wholly inside the central 256 bp. The generator draws
 *       k uniform in 0..6, plants k boxes in distinct 21-bp slots of the central 128 bp
 *       [c + 64, c + 190) (what the tiny Enformer keeps after its target_length crop), forward
 *       strand only, and destroys every chance occurrence in the 256-bp window (one background
 *       base of it becomes A or T), so d == k exactly.
 *   r = number of G or C among the first 30 nt of rna_seq (what AIDO.RNA with max_length 32
 *       sees). The generator draws p ~ U(0.15, 0.85) and r ~ Binomial(30, p) and writes exactly
 *       r G/C at random positions of the first 30 nt.
 *   u = (d - 3) / 2,  v = (r - 15) / 6.5594   (both mean 0, variance 1 by construction:
 *       Var r = 30 E[p(1-p)] + 900 Var p = 43.025)
 *   Tissue t (0..29) has weights drawn once from a fixed stream (independent of the seed):
 *       alpha_t = 1 + 0.25 z, beta_t = 1 + 0.25 z', gamma_t = 2 (1 + 0.2 z''),
 *       tau_t = -0.6 + 0.35 z'''   (z.. standard normal)
 *   Noise-free activity by signal mode (S_t = sqrt(alpha_t^2 + beta_t^2 + gamma_t^2), so the
 *   signal variance is the same in every mode):
 *       both: m_t = alpha_t u + beta_t v + gamma_t u v
 *       dna:  m_t = S_t u        rna: m_t = S_t v
 *       none: m_t = S_t h, h ~ N(0, 1) a hidden per-transcript latent that no sequence carries
 *   Observed: a_t = m_t + 0.8 e0 + 0.6 e_t (e0 shared by the 30 tissues, e_t per tissue, all
 *       N(0, 1)); TPM_t = 0 when a_t < tau_t (not expressed), else 2^(-6 + 1.6 (a_t - tau_t));
 *       labels_t = log2(1e-4 + TPM_t) as GenBio's transform, so unexpressed entries tie at
 *       log2(1e-4) = -13.2877 (about 40-45% of entries with the default weights).
 *   With the interaction gamma u v carrying most of the variance, u or v alone explain little
 *   (E[a | u] = alpha u: a Spearman of ~0.35 for an ideal single-latent predictor) while
 *   (u, v) together reach ~0.8 (the noise sets the ceiling).
 * shuffle_labels permutes the 30-label rows across the transcripts of each split (train as a
 * whole) with a seeded Fisher-Yates: the negative control, every label multiset unchanged.
 *
 * Oracle: E[label_t | d, r] is computed exactly (sum over the other latent's distribution,
 * trapezoid integral over the Gaussian noise), and the report gives, per split, the Spearman
 * (per tissue, averaged over the 30, as rt_metrics / ModelGenerator) of three ideal predictors:
 * E[label | d, r] ("both"), E[label | d] ("dna") and E[label | r] ("rna").
 *
 * Randomness: xoshiro256** (Blackman & Vigna), each stream seeded through splitmix64 from
 * (seed, split, row, purpose), so a row's content does not depend on how rows are split across
 * files or on the signal mode (the mode changes the labels only), and the output is a pure
 * function of the options: the same options give byte-identical files. Normals by Box-Muller.
 */
#ifndef AIDOMM_RUNTIME_DEMODATA_H
#define AIDOMM_RUNTIME_DEMODATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/status.h"

#define RT_DEMO_NUM_LABELS 30
#define RT_DEMO_MAX_TRAIN_FILES 19  /* chr1..chr19, as the real train split */
#define RT_DEMO_MIN_DNA_LENGTH 256  /* the central window must fit */
#define RT_DEMO_MAX_DNA_LENGTH ((int64_t)4 << 20) /* well inside RT_TSV_DEFAULT_MAX_LINE */
#define RT_DEMO_MAX_ROWS ((int64_t)100000000)
#define RT_DEMO_D_MAX 6   /* d in 0..6 */
#define RT_DEMO_R_MAX 30  /* r in 0..30 */
#define RT_DEMO_MANIFEST "demo.json"
/* Bumped whenever the bytes generated for given options change, so an old dataset is redone. */
#define RT_DEMO_VERSION 1

typedef enum rt_demo_signal {
  RT_DEMO_SIGNAL_BOTH = 0,
  RT_DEMO_SIGNAL_DNA,
  RT_DEMO_SIGNAL_RNA,
  RT_DEMO_SIGNAL_NONE,
} rt_demo_signal_t;

typedef struct rt_demo_options {
  uint64_t seed;
  int64_t train_rows, val_rows, test_rows; /* train rows are spread evenly over the files */
  int train_files;
  int64_t dna_length;
  bool shuffle_labels;
  rt_demo_signal_t signal;
} rt_demo_options_t;

enum { RT_DEMO_SPLIT_TRAIN = 0, RT_DEMO_SPLIT_VAL, RT_DEMO_SPLIT_TEST, RT_DEMO_NUM_SPLITS };

typedef struct rt_demo_split_stats {
  int64_t rows;
  uint64_t bytes;           /* of this split's files */
  double floor_share;       /* share of label entries at log2(1e-4) (TPM 0) */
  double all_floor_share;   /* share of rows at the floor in all 30 tissues */
  double coding_share;      /* share of rows with a protein */
  /* Mean-over-tissues Spearman of the ideal predictors against this split's labels. */
  double oracle_both, oracle_dna, oracle_rna;
} rt_demo_split_stats_t;

typedef struct rt_demo_report {
  rt_demo_split_stats_t split[RT_DEMO_NUM_SPLITS];
  int nfiles;          /* data files written (train files + 2) */
  uint64_t bytes;      /* all data files */
  double seconds;      /* wall time of the whole generation, fsyncs included */
  double sync_seconds; /* of which fsync + rename */
} rt_demo_report_t;

/* Defaults for a demo: seed 42, 2,400 train rows in 3 files, 300 validation, 500 test,
 * DNA 196,608 bp, labels not shuffled, signal both. */
void rt_demo_defaults(rt_demo_options_t *o);
ad_status_t rt_demo_validate(const rt_demo_options_t *o);

/* "both", "dna", "rna", "none". Parse also accepts "dna_only" and "rna_only". */
const char *rt_demo_signal_name(rt_demo_signal_t s);
bool rt_demo_signal_parse(const char *s, rt_demo_signal_t *out);
const char *rt_demo_split_name(int split); /* "train", "validation", "test" */

/* Writes the dataset into dir (created, parents too, when missing). demo.json is removed first
 * and written last. Train files left by an earlier dataset whose manifest lists them are
 * removed; any other train_<n>.tsv that `train_*.tsv` would pick up is an error. report may be
 * NULL. */
ad_status_t rt_demo_generate(const char *dir, const rt_demo_options_t *o,
                             rt_demo_report_t *report);

/* *current = dir holds demo.json with RT_DEMO_VERSION and these options, and every file it lists
 * exists with its recorded size. A missing or unreadable manifest is simply not current. */
ad_status_t rt_demo_is_current(const char *dir, const rt_demo_options_t *o, bool *current);

/* Names of the data files for o, in writing order ("train_1.tsv", ..., "validation.tsv",
 * "test.tsv"); name must hold 32 bytes. i in [0, train_files + 2). */
void rt_demo_file_name(const rt_demo_options_t *o, int i, char name[32]);

/* ---- the planted signal, for verification ------------------------------------------------- */

/* The latents as defined above, read back from sequences. */
int rt_demo_dna_latent(const char *dna, size_t len);
int rt_demo_rna_latent(const char *rna, size_t len);

/* Exact conditional expectations of the labels under the generating model of a signal mode. */
typedef struct rt_demo_model rt_demo_model_t;
ad_status_t rt_demo_model_create(rt_demo_signal_t s, rt_demo_model_t **out);
void rt_demo_model_free(rt_demo_model_t *m);
/* E[labels_t | d, r], E[labels_t | d], E[labels_t | r]; d in 0..6, r in 0..30. */
double rt_demo_expect_dr(const rt_demo_model_t *m, int t, int d, int r);
double rt_demo_expect_d(const rt_demo_model_t *m, int t, int d);
double rt_demo_expect_r(const rt_demo_model_t *m, int t, int r);

#endif
