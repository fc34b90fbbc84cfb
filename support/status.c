#include "support/status.h"

#include <stdlib.h>
#include <string.h>

struct ad_status {
  ad_status_code_t code;
  char *message; /* includes the "FILE:LINE:COL: " prefix when there is a place */
  int has_place;
};

static char *vformat(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) n = 0;
  char *s = malloc((size_t)n + 1);
  if (!s) return NULL;
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  return s;
}

/* Out-of-memory while reporting an error must still report something. */
static struct ad_status g_oom_status = {AD_STATUS_RESOURCE, "out of memory", 0};

ad_status_t ad_status_makev(ad_status_code_t code, const char *fmt, va_list ap) {
  struct ad_status *st = malloc(sizeof *st);
  if (!st) return &g_oom_status;
  st->code = code;
  st->has_place = 0;
  st->message = vformat(fmt, ap);
  if (!st->message) {
    free(st);
    return &g_oom_status;
  }
  return st;
}

ad_status_t ad_status_make(ad_status_code_t code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ad_status_t st = ad_status_makev(code, fmt, ap);
  va_end(ap);
  return st;
}

ad_status_t ad_status_at(ad_status_code_t code, const char *file, int line, int col,
                         const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = vformat(fmt, ap);
  va_end(ap);
  if (!msg) return &g_oom_status;
  ad_status_t st;
  if (line > 0)
    st = ad_status_make(code, "%s:%d:%d: error: %s", file, line, col, msg);
  else
    st = ad_status_make(code, "%s: error: %s", file, msg);
  free(msg);
  if (st != &g_oom_status) st->has_place = 1;
  return st;
}

ad_status_t ad_status_annotate(ad_status_t st, const char *fmt, ...) {
  if (!st || st == &g_oom_status) return st;
  va_list ap;
  va_start(ap, fmt);
  char *ctx = vformat(fmt, ap);
  va_end(ap);
  if (!ctx) return st;
  /* A placed message keeps its place first, so the line still starts with FILE:LINE:COL. */
  size_t n = strlen(ctx) + strlen(st->message) + 3;
  char *m = malloc(n);
  if (m) {
    if (st->has_place) {
      const char *tail = strstr(st->message, "error: ");
      size_t head = tail ? (size_t)(tail - st->message) + 7 : 0;
      snprintf(m, n, "%.*s%s: %s", (int)head, st->message, ctx, st->message + head);
    } else {
      snprintf(m, n, "%s: %s", ctx, st->message);
    }
    free(st->message);
    st->message = m;
  }
  free(ctx);
  return st;
}

ad_status_code_t ad_status_code(ad_status_t st) { return st ? st->code : AD_STATUS_OK; }

const char *ad_status_message(ad_status_t st) { return st ? st->message : "ok"; }

int ad_status_exit_code(ad_status_t st) {
  switch (ad_status_code(st)) {
    case AD_STATUS_OK: return 0;
    case AD_STATUS_INVALID_ARGUMENT:
    case AD_STATUS_DATA_LOSS:
    case AD_STATUS_UNIMPLEMENTED: return 2;
    case AD_STATUS_INTERRUPTED: return 130;
    case AD_STATUS_TERMINATED: return 143;
    default: return 1;
  }
}

void ad_status_print(ad_status_t st, const char *tool, FILE *out) {
  if (!st) return;
  if (st->has_place)
    fprintf(out, "%s\n", st->message);
  else
    fprintf(out, "%s: error: %s\n", tool, st->message);
}

void ad_status_free(ad_status_t st) {
  if (!st || st == &g_oom_status) return;
  free(st->message);
  free(st);
}

int ad_status_report(ad_status_t st, const char *tool) {
  int code = ad_status_exit_code(st);
  ad_status_print(st, tool, stderr);
  ad_status_free(st);
  return code;
}
