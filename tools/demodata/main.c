/* aidomm-demodata: writes a synthetic dataset in the GenBio isoform-expression format with a
 * planted two-modality signal (runtime/demodata.h; tools/demodata/README.md). A thin main.
 *
 * Exit codes: 0 ok (also when the dataset is already there); 2 bad flags or arguments; 1 I/O
 * and other runtime failures. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/demodata.h"

#ifndef AIDOMM_VERSION
#define AIDOMM_VERSION "unknown"
#endif

#define TOOL "aidomm-demodata"

static const char g_usage[] =
    "usage: aidomm-demodata OUTDIR [options]\n"
    "\n"
    "Writes train_1.tsv..train_F.tsv, validation.tsv, test.tsv and demo.json into OUTDIR in the\n"
    "GenBio transcript-isoform-expression format. When OUTDIR already holds a complete dataset\n"
    "made with the same options, nothing is done.\n"
    "\n"
    "options:\n"
    "  --seed N            random seed (default 42)\n"
    "  --train-rows N      training rows, spread over the train files (default 2400)\n"
    "  --val-rows N        validation rows (default 300)\n"
    "  --test-rows N       test rows (default 500)\n"
    "  --train-files N     train files, chr1..chrN, 1..19 (default 3)\n"
    "  --dna-length N      DNA window length in bp (default 196608)\n"
    "  --shuffle-labels    permute label rows across transcripts (negative control)\n"
    "  --signal MODE       both (default), dna, rna or none: what the labels depend on\n"
    "  --force             regenerate even when the dataset is current\n"
    "  -q, --quiet         print nothing on success\n"
    "  -h, --help          this text;  --version  the version\n"
    "\n"
    "exit status: 0 success, 2 usage error, 1 runtime failure\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs(TOOL ": error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs(" (see 'aidomm-demodata --help')\n", stderr);
  va_end(ap);
  return 2;
}

/* A decimal integer in [lo, hi]; false on anything else. */
static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
  if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return false;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

typedef struct flag {
  const char *name;
  void *dst;
  int kind; /* 0 int64, 1 int, 2 u64 */
  uint64_t lo, hi;
} flag_t;

int main(int argc, char **argv) {
  rt_demo_options_t o;
  rt_demo_defaults(&o);
  const char *dir = NULL;
  bool force = false, quiet = false;
  const flag_t flags[] = {
      {"--seed", &o.seed, 2, 0, UINT64_MAX},
      {"--train-rows", &o.train_rows, 0, 1, (uint64_t)RT_DEMO_MAX_ROWS},
      {"--val-rows", &o.val_rows, 0, 1, (uint64_t)RT_DEMO_MAX_ROWS},
      {"--test-rows", &o.test_rows, 0, 1, (uint64_t)RT_DEMO_MAX_ROWS},
      {"--train-files", &o.train_files, 1, 1, RT_DEMO_MAX_TRAIN_FILES},
      {"--dna-length", &o.dna_length, 0, RT_DEMO_MIN_DNA_LENGTH,
       (uint64_t)RT_DEMO_MAX_DNA_LENGTH},
  };
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(g_usage, stdout);
      return 0;
    }
    if (!strcmp(a, "--version")) {
      printf(TOOL " %s\n", AIDOMM_VERSION);
      return 0;
    }
    if (!strcmp(a, "--force")) {
      force = true;
      continue;
    }
    if (!strcmp(a, "--shuffle-labels")) {
      o.shuffle_labels = true;
      continue;
    }
    if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
      quiet = true;
      continue;
    }
    if (a[0] != '-' || !a[1]) {
      if (dir) return usage_error("more than one OUTDIR ('%s' and '%s')", dir, a);
      dir = a;
      continue;
    }
    /* --name VALUE or --name=VALUE */
    const char *eq = strchr(a, '=');
    size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
    const char *val = eq ? eq + 1 : NULL;
    bool known = false;
    if (nlen == 8 && !strncmp(a, "--signal", 8)) {
      if (!val && i + 1 < argc) val = argv[++i];
      if (!val) return usage_error("--signal needs a value (both, dna, rna or none)");
      if (!rt_demo_signal_parse(val, &o.signal))
        return usage_error("unknown --signal '%s' (expected both, dna, rna or none)", val);
      continue;
    }
    for (size_t f = 0; f < sizeof flags / sizeof *flags; f++) {
      if (strlen(flags[f].name) != nlen || strncmp(a, flags[f].name, nlen)) continue;
      known = true;
      if (!val && i + 1 < argc) val = argv[++i];
      if (!val) return usage_error("%s needs a value", flags[f].name);
      uint64_t v;
      if (!parse_u64(val, flags[f].lo, flags[f].hi, &v))
        return usage_error("%s: '%s' is not an integer in %" PRIu64 "..%" PRIu64, flags[f].name,
                           val, flags[f].lo, flags[f].hi);
      if (flags[f].kind == 0) *(int64_t *)flags[f].dst = (int64_t)v;
      else if (flags[f].kind == 1) *(int *)flags[f].dst = (int)v;
      else *(uint64_t *)flags[f].dst = v;
      break;
    }
    if (!known) return usage_error("unknown option '%.*s'", (int)nlen, a);
  }
  if (!dir) return usage_error("missing OUTDIR");
  ad_status_t st = rt_demo_validate(&o);
  if (st) {
    int code = usage_error("%s", ad_status_message(st));
    ad_status_free(st);
    return code;
  }
  if (!force) {
    bool current = false;
    st = rt_demo_is_current(dir, &o, &current);
    if (!st && current) {
      if (!quiet)
        printf(TOOL ": %s already holds this dataset (seed %" PRIu64
               ", signal %s); nothing to do (--force regenerates)\n",
               dir, o.seed, rt_demo_signal_name(o.signal));
      return 0;
    }
  }
  rt_demo_report_t rep;
  if (!st) st = rt_demo_generate(dir, &o, &rep);
  if (st) {
    int code = ad_status_exit_code(st);
    ad_status_print(st, TOOL, stderr);
    ad_status_free(st);
    return code;
  }
  if (quiet) return 0;
  printf(TOOL ": wrote %d files to %s: %.1f MB in %.2f s (%.0f MB/s; fsync %.2f s)\n", rep.nfiles,
         dir, rep.bytes / 1e6, rep.seconds, rep.bytes / 1e6 / rep.seconds, rep.sync_seconds);
  printf("seed %" PRIu64 ", signal %s%s, DNA %" PRId64 " bp\n", o.seed,
         rt_demo_signal_name(o.signal), o.shuffle_labels ? ", labels shuffled" : "",
         o.dna_length);
  printf("%-10s %7s %9s %8s %8s %8s %8s %8s\n", "split", "rows", "MB", "floor", "coding",
         "oracle", "dna", "rna");
  for (int s = 0; s < RT_DEMO_NUM_SPLITS; s++) {
    const rt_demo_split_stats_t *x = &rep.split[s];
    printf("%-10s %7" PRId64 " %9.1f %8.3f %8.3f %8.3f %8.3f %8.3f\n", rt_demo_split_name(s),
           x->rows, x->bytes / 1e6, x->floor_share, x->coding_share, x->oracle_both,
           x->oracle_dna, x->oracle_rna);
  }
  printf("(floor: share of labels at log2(1e-4); oracle/dna/rna: Spearman of E[label|d,r], "
         "E[label|d], E[label|r])\n");
  return 0;
}
