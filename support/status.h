/* Status values carried by every fallible function (IREE's iree_status_t is the model).
 * NULL means success; a non-NULL status owns a heap message and must be consumed with
 * ad_status_free or handed up the stack. */
#ifndef AIDOMM_SUPPORT_STATUS_H
#define AIDOMM_SUPPORT_STATUS_H

#include <stdarg.h>
#include <stdio.h>

typedef enum ad_status_code {
  AD_STATUS_OK = 0,
  AD_STATUS_INVALID_ARGUMENT, /* bad user input: config, data, plan, flags -> exit code 2 */
  AD_STATUS_DATA_LOSS,        /* corrupt or truncated file -> exit code 2 */
  AD_STATUS_UNIMPLEMENTED,    /* valid request we cannot serve yet -> exit code 2 */
  AD_STATUS_INTERNAL,         /* a bug or a broken invariant -> exit code 1 */
  AD_STATUS_RESOURCE,         /* out of memory, disk, ... -> exit code 1 */
  AD_STATUS_IO,               /* a system call failed -> exit code 1 */
  AD_STATUS_INTERRUPTED,      /* stopped by SIGINT (exit code 130) after saving its work */
  AD_STATUS_TERMINATED,       /* stopped by SIGTERM (exit code 143) after saving its work */
} ad_status_code_t;

typedef struct ad_status *ad_status_t;

#define AD_OK ((ad_status_t)0)

/* Creates a status; the message is printf-formatted. */
ad_status_t ad_status_make(ad_status_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
ad_status_t ad_status_makev(ad_status_code_t code, const char *fmt, va_list ap);
/* A status with a source place: the message reads "FILE:LINE:COL: error: msg" when printed. */
ad_status_t ad_status_at(ad_status_code_t code, const char *file, int line, int col,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Prepends context ("while loading x: ") to a status; returns the same status. */
ad_status_t ad_status_annotate(ad_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

ad_status_code_t ad_status_code(ad_status_t st);
const char *ad_status_message(ad_status_t st);
/* Process exit code a tool should use for this status: 0 ok, 2 input errors, 1 otherwise. */
int ad_status_exit_code(ad_status_t st);
/* Prints one line: "FILE:LINE:COL: error: msg" when the status has a place, else "TOOL: error: msg". */
void ad_status_print(ad_status_t st, const char *tool, FILE *out);
void ad_status_free(ad_status_t st);
/* A tool's last word on a status: prints it (ad_status_print), frees it and returns the exit
 * code (ad_status_exit_code). */
int ad_status_report(ad_status_t st, const char *tool);

#define AD_RETURN_IF_ERROR(expr)            \
  do {                                      \
    ad_status_t ad__st = (expr);            \
    if (ad__st) return ad__st;              \
  } while (0)

#endif
