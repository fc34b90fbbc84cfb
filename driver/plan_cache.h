/* A content-addressed cache of compiled plans, so that `aidomm fit --config X.yaml` compiles a
 * config once and reuses the plan on every later run.
 *
 * The key is the SHA-256 (hex) of a canonical text:
 *
 *   "aidomm <AIDOMM_VERSION>\nplan-format <PLAN_FORMAT_VERSION>\nreuse <0|1>\n" + YAML
 *
 * where YAML is fe_config_emit_yaml of the config after merging the config files and applying
 * the compile-time and bound-changing overrides of the request. Runtime keys must not be in the
 * request: they are applied by the runtime and would only split the cache. The job kind is not
 * in the key either: cached plans are compiled as fit plans (the job kind changes nothing that
 * is compiled) and the plan handed back carries the requested kind.
 *
 * An entry is the file "<dir>/<64 hex>.plan", written atomically by plan_write. An entry that
 * does not read back (corrupt, truncated, an older format) or whose config differs from the
 * request's is compiled again and overwritten. */
#ifndef AIDOMM_DRIVER_PLAN_CACHE_H
/* Bumped whenever the compiler lowers the same config differently (a plan cached by an older
 * aidomm of the same version must not be reused): 2 = pretrained backbones in eval mode during
 * fit, gradient clipping in train_step. */
#define DRV_COMPILER_REVISION 2u
#define AIDOMM_DRIVER_PLAN_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "driver/compile.h"
#include "support/buf.h"

#define DRV_CACHE_KEY_HEX 64

typedef struct drv_cache_result {
  char key[DRV_CACHE_KEY_HEX + 1]; /* lowercase hex SHA-256 */
  char *path;                      /* the entry's file (malloc'd) */
  bool hit;                        /* the entry was read, nothing was compiled */
  bool replaced;                   /* a present but unusable entry was compiled again */
  double compile_seconds;          /* compile + write time on a miss; 0 on a hit */
} drv_cache_result_t;

void drv_cache_result_free(drv_cache_result_t *r);

/* The cache directory: $AIDOMM_CACHE_DIR, else $XDG_CACHE_HOME/aidomm/plans (an absolute
 * XDG_CACHE_HOME only, as the XDG spec asks), else $HOME/.cache/aidomm/plans. Not created here.
 * *out is malloc'd. */
ad_status_t drv_plan_cache_dir(char **out);

/* Appends the canonical key text for a resolved config YAML to out. */
void drv_plan_cache_key_text(int reuse, const char *yaml, size_t yaml_len, ad_buf_t *out);

/* hex = lowercase SHA-256 of data (OpenSSL's EVP interface). */
ad_status_t drv_sha256_hex(const void *data, size_t len, char hex[DRV_CACHE_KEY_HEX + 1]);

/* The key of a request: loads the config as drv_load_config does and hashes its key text. */
ad_status_t drv_plan_cache_key(const drv_compile_request_t *req, char hex[DRV_CACHE_KEY_HEX + 1]);

/* Looks the request up in `dir` (NULL: drv_plan_cache_dir(), created with its parents) and
 * returns the plan, reading the entry on a hit and compiling and writing it on a miss. *res is
 * filled in on success and must be freed with drv_cache_result_free; *out is owned by the
 * caller. Compile errors come back unchanged, as drv_compile returns them. */
ad_status_t drv_plan_cache_get(const drv_compile_request_t *req, const char *dir, plan_t **out,
                               drv_cache_result_t *res);

#endif
