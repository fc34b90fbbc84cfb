/* Section payload codecs shared by plan/plan.c (the container) and plan/sections.c.
 * Decoders validate everything they read and return statuses without the file name; the
 * container prefixes "FILE: error: plan is corrupt: SECTION section: ". */
#ifndef AIDOMM_PLAN_PLAN_INTERNAL_H
#define AIDOMM_PLAN_PLAN_INTERNAL_H

#include "plan/plan.h"

/* Range checks shared by the writer and the reader, so a plan that was written always reads. */
ad_status_t plan_job_check(const plan_job_t *j);

ad_status_t plan_encode_meta(const plan_t *p, ad_buf_t *out);
ad_status_t plan_encode_job(const plan_t *p, ad_buf_t *out);
ad_status_t plan_encode_memplans(const plan_t *p, ad_buf_t *out);

/* *job_kind receives the job kind META records (cross-checked against JOB by the caller). */
ad_status_t plan_decode_meta(plan_t *p, const uint8_t *data, size_t len, uint32_t header_version,
                             plan_job_kind_t *job_kind);
ad_status_t plan_decode_job(plan_t *p, const uint8_t *data, size_t len);
ad_status_t plan_decode_config(plan_t *p, const uint8_t *data, size_t len);
ad_status_t plan_decode_memplans(plan_t *p, const uint8_t *data, size_t len);
/* Memory plans must describe exactly the module's programs, value for value, inside their
 * arenas. `code` is the status code of a violation: DATA_LOSS when reading, INTERNAL when
 * writing (a plan that was written must read back). */
ad_status_t plan_check_memplans(const plan_t *p, ad_status_code_t code);

#endif
