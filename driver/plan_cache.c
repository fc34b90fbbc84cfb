/* The content-addressed plan cache (see plan_cache.h for the key and the entry rules). */
#include "driver/plan_cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>

#ifndef AIDOMM_VERSION
#define AIDOMM_VERSION "unknown"
#endif

void drv_cache_result_free(drv_cache_result_t *r) {
  if (!r) return;
  free(r->path);
  r->path = NULL;
}

static char *join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *s = malloc(la + 1 + lb + 1);
  if (!s) return NULL;
  memcpy(s, a, la);
  size_t o = la;
  if (la && a[la - 1] != '/') s[o++] = '/';
  memcpy(s + o, b, lb + 1);
  return s;
}

ad_status_t drv_plan_cache_dir(char **out) {
  *out = NULL;
  const char *d = getenv("AIDOMM_CACHE_DIR");
  char *s = NULL;
  if (d && *d) {
    s = strdup(d);
  } else if ((d = getenv("XDG_CACHE_HOME")) && d[0] == '/') {
    s = join(d, "aidomm/plans");
  } else if ((d = getenv("HOME")) && *d) {
    s = join(d, ".cache/aidomm/plans");
  } else {
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "no plan cache directory: set AIDOMM_CACHE_DIR (or HOME)");
  }
  if (!s) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  *out = s;
  return AD_OK;
}

/* mkdir -p: every missing component is created (0777 less the umask, as mkdir(1) does). */
static ad_status_t make_dirs(const char *dir) {
  char *p = strdup(dir);
  if (!p) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  ad_status_t st = AD_OK;
  size_t n = strlen(p);
  for (size_t i = 1; i <= n && !st; i++) {
    if (p[i] != '/' && p[i] != '\0') continue;
    char c = p[i];
    p[i] = '\0';
    struct stat sb;
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
      st = ad_status_make(AD_STATUS_IO, "cannot create the plan cache directory %s: %s", p,
                          strerror(errno));
    else if (stat(p, &sb) != 0)
      st = ad_status_make(AD_STATUS_IO, "plan cache directory %s: %s", p, strerror(errno));
    else if (!S_ISDIR(sb.st_mode))
      st = ad_status_make(AD_STATUS_IO, "plan cache directory %s: not a directory", p);
    p[i] = c;
  }
  free(p);
  return st;
}

void drv_plan_cache_key_text(int reuse, const char *yaml, size_t yaml_len, ad_buf_t *out) {
  ad_buf_printf(out, "aidomm %s\nplan-format %u\ncompiler %u\nreuse %d\n", AIDOMM_VERSION,
                PLAN_FORMAT_VERSION, DRV_COMPILER_REVISION, reuse ? 1 : 0);
  ad_buf_append(out, yaml, yaml_len);
}

ad_status_t drv_sha256_hex(const void *data, size_t len, char hex[DRV_CACHE_KEY_HEX + 1]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
    return ad_status_make(AD_STATUS_INTERNAL, "SHA-256 failed (OpenSSL EVP_Digest)");
  static const char digits[] = "0123456789abcdef";
  for (unsigned i = 0; i < mdlen; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[2 * mdlen] = '\0';
  return AD_OK;
}

/* The key of a loaded config; *yaml receives its emitted YAML. */
static ad_status_t key_of(const drv_compile_request_t *req, const fe_config_t *cfg, ad_buf_t *yaml,
                          char hex[DRV_CACHE_KEY_HEX + 1]) {
  ad_buf_t text = {0};
  fe_config_emit_yaml(cfg, yaml);
  drv_plan_cache_key_text(req->reuse, (const char *)yaml->data, yaml->len, &text);
  ad_status_t st = drv_sha256_hex(text.data, text.len, hex);
  ad_buf_free(&text);
  return st;
}

ad_status_t drv_plan_cache_key(const drv_compile_request_t *req, char hex[DRV_CACHE_KEY_HEX + 1]) {
  fe_config_t *cfg = NULL;
  ad_buf_t yaml = {0};
  ad_status_t st = drv_load_config(req, &cfg);
  if (!st) st = key_of(req, cfg, &yaml, hex);
  ad_buf_free(&yaml);
  fe_config_free(cfg);
  return st;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The entry at path, when it reads back and holds exactly this config; NULL otherwise (a miss,
 * or an entry to overwrite: *present says which). */
static plan_t *lookup(const char *path, const ad_buf_t *yaml, bool *present) {
  struct stat sb;
  *present = stat(path, &sb) == 0;
  if (!*present) return NULL;
  plan_t *p = NULL;
  ad_status_t st = plan_read(path, &p);
  if (st) {
    ad_status_free(st);
    return NULL;
  }
  /* A key collision is not expected, but a file that was copied or renamed into the cache
   * could hold another config; it is cheap to make sure. */
  if (p->config_len != yaml->len || memcmp(p->config_yaml, yaml->data, yaml->len) != 0) {
    plan_free(p);
    return NULL;
  }
  return p;
}

ad_status_t drv_plan_cache_get(const drv_compile_request_t *req, const char *dir, plan_t **out,
                               drv_cache_result_t *res) {
  *out = NULL;
  memset(res, 0, sizeof *res);
  char *owned_dir = NULL;
  fe_config_t *cfg = NULL;
  ad_buf_t yaml = {0};
  plan_t *p = NULL;

  ad_status_t st = AD_OK;
  if (!dir) {
    st = drv_plan_cache_dir(&owned_dir);
    dir = owned_dir;
  }
  if (!st) st = drv_load_config(req, &cfg);
  if (!st) st = key_of(req, cfg, &yaml, res->key);
  if (!st) {
    char name[DRV_CACHE_KEY_HEX + 8];
    snprintf(name, sizeof name, "%s.plan", res->key);
    res->path = join(dir, name);
    if (!res->path) st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  if (!st) {
    bool present = false;
    p = lookup(res->path, &yaml, &present);
    if (p) {
      res->hit = true;
    } else {
      res->replaced = present;
      /* The cached plan must not depend on the subcommand that happened to compile it first. */
      drv_compile_request_t canon = *req;
      canon.job = PLAN_JOB_FIT;
      double t0 = now_seconds();
      st = drv_compile_config(&canon, cfg, &p);
      if (!st) st = make_dirs(dir);
      if (!st) st = plan_write(p, res->path);
      res->compile_seconds = now_seconds() - t0;
    }
  }
  if (!st) p->job.kind = req->job;
  ad_buf_free(&yaml);
  fe_config_free(cfg);
  free(owned_dir);
  if (st) {
    plan_free(p);
    drv_cache_result_free(res);
    return st;
  }
  *out = p;
  return AD_OK;
}
