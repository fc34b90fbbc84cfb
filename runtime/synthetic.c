/* A deterministic synthetic batch: what `aidomm-rt run` trains on until the data pipeline
 * exists. Token ids are uniform over the vocabulary of the embedding that reads them; masks
 * pad the tail of every other row (so padding paths run); float inputs are standard normal
 * and, for labels, a fixed function of the ids so there is something to learn. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/philox.h"
#include "runtime/init.h"
#include "runtime/train.h"

static int64_t vocab_of(const ir_graph_t *g, uint32_t value) {
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (n->op == IR_OP_EMBEDDING && n->ninputs == 2 && n->inputs[1] == value) {
      int64_t v = 0;
      if (ir_dim_is_const(g->values[n->inputs[0]].type.dims[0], &v)) return v;
    }
  }
  return 16;
}

static double uniform01(const uint32_t key[2], uint64_t i) {
  uint32_t ctr[4] = {(uint32_t)i, (uint32_t)(i >> 32), 0xffffffffu, 0xffffffffu}, w[4];
  ir_philox4x32_10(ctr, key, w);
  return ((double)(w[0] >> 8) + 0.5) * 0x1p-24;
}

ad_status_t rt_batch_synthetic(const ir_graph_t *g, uint64_t seed, rt_batch_t *out) {
  memset(out, 0, sizeof *out);
  const ir_module_t *m = g->module;
  ir_module_bounds(m, out->symvals);
  uint32_t ninputs = 0;
  for (uint32_t i = 0; i < g->nnodes; i++) ninputs += g->nodes[i].op == IR_OP_INPUT;
  out->feeds = calloc(ninputs ? ninputs : 1, sizeof *out->feeds);
  if (!out->feeds) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    if (n->op != IR_OP_INPUT) continue;
    const ir_type_t *ty = &g->values[n->output0].type;
    ir_shape_t sh = ir_type_shape(ty, out->symvals);
    int64_t numel = ir_shape_numel(&sh);
    size_t bytes = (size_t)numel * ir_dtype_size(ty->dtype);
    void *data = calloc(1, bytes ? bytes : 1);
    if (!data) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
    uint32_t key[2];
    rt_philox_key(seed, "data", n->name, key);
    int64_t rows = sh.rank >= 1 ? sh.dims[0] : 1, cols = rows ? numel / rows : 0;
    for (int64_t k = 0; k < numel; k++) {
      double u = uniform01(key, (uint64_t)k);
      double x;
      if (!ir_dtype_is_float(ty->dtype)) {
        x = floor(u * (double)vocab_of(g, n->output0));
      } else if (strstr(n->name, "mask")) {
        /* odd rows keep only their first ~60% positions */
        int64_t r = k / (cols ? cols : 1), c = k % (cols ? cols : 1);
        x = (r % 2 == 0 || c < (cols * 3 + 4) / 5) ? 1.0 : 0.0;
      } else {
        uint64_t j = (uint64_t)k * 2 + 1;
        double u2 = uniform01(key, j);
        x = sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * u2);
      }
      switch (ty->dtype) {
        case IR_DTYPE_F32: ((float *)data)[k] = (float)x; break;
        case IR_DTYPE_F64: ((double *)data)[k] = x; break;
        case IR_DTYPE_I32: ((int32_t *)data)[k] = (int32_t)x; break;
        case IR_DTYPE_I64: ((int64_t *)data)[k] = (int64_t)x; break;
        case IR_DTYPE_U8: ((uint8_t *)data)[k] = (uint8_t)x; break;
        default: free(data); return ad_status_make(AD_STATUS_UNIMPLEMENTED, "input dtype");
      }
    }
    out->feeds[out->nfeeds++] = (rt_feed_t){n->name, data, bytes};
  }
  return AD_OK;
}

void rt_batch_free(rt_batch_t *b) {
  for (uint32_t i = 0; i < b->nfeeds; i++) free((void *)b->feeds[i].data);
  free(b->feeds);
  memset(b, 0, sizeof *b);
}
