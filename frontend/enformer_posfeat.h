/* Enformer's relative positional features: the vendored enformer_pytorch's
 * get_positional_embed(seq_len=n, feature_size=features, use_tf_gamma=False), evaluated in
 * double precision (see enformer_posfeat.c for what that means against the peer's float32). */
#ifndef AIDOMM_FRONTEND_ENFORMER_POSFEAT_H
#define AIDOMM_FRONTEND_ENFORMER_POSFEAT_H

#include <stdint.h>

#include "support/status.h"

/* out: [2n-1, features], row r for the distance d = r - (n-1). Columns are
 * [exponential (F/6) | central mask (F/6) | gamma (F/6) | sign(d) * the first F/2 columns].
 * Requires n >= 1 and features a positive multiple of 6 with features/6 <= 62 (the peer builds
 * the central-mask widths as int64 2**k). */
ad_status_t fe_enformer_positional_features(int64_t n, int64_t features, double *out);

#endif
