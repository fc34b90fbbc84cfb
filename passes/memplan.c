/* Contract: assigns every value an arena range so that no two live values overlap. */
/* Sizes are taken at the symbol bounds and aligned to 64 bytes; state reads alias their slot
 * (offset -1); reuse=0 gives every value its own range. */
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

/* Liveness. Nodes run in program order; value v is live over the closed interval
 * [producer index, last consumer index] (a value nobody reads still needs its bytes while the
 * producer writes it). A kernel reads its inputs while writing its outputs, so a value whose
 * last use is node i conflicts with node i's outputs: the intervals share i. Values fed to an
 * OUTPUT stay live to the end of the program so the caller can read them after the run.
 *
 * Placement ("greedy by size", Pisarchyk & Lee 2020, as in TFLite's arena planner): values in
 * order of decreasing size (ties: earlier first use, then lower id, so the plan is
 * deterministic); each goes into the smallest gap between the already placed values whose
 * lifetimes intersect its own that fits it (best fit), else above the highest of them. Large
 * activations saved for the backward pass are placed first and the many small temporaries
 * fill the holes between them. */

#define MEMPLAN_ALIGN 64

typedef struct live_range {
  uint32_t begin, end; /* node indices, inclusive */
} live_range_t;

static int64_t align_up(int64_t x) {
  return (x + MEMPLAN_ALIGN - 1) / MEMPLAN_ALIGN * MEMPLAN_ALIGN;
}

/* Fills live ranges, bound sizes and whether each value needs arena storage. */
static void liveness(const ir_graph_t *g, live_range_t *r, int64_t *size, bool *storage) {
  int64_t bounds[IR_MAX_SYMBOLS] = {0};
  ir_module_bounds(g->module, bounds);
  for (uint32_t v = 0; v < g->nvalues; v++) {
    const ir_value_t *val = &g->values[v];
    r[v].begin = r[v].end = val->node;
    ir_shape_t s = ir_type_shape(&val->type, bounds);
    size[v] = align_up(ir_shape_numel(&s) * (int64_t)ir_dtype_size(val->type.dtype));
    /* A state read is the slot's own buffer; the executor binds it, the arena holds nothing. */
    storage[v] = g->nodes[val->node].op != IR_OP_STATE_IN;
  }
  uint32_t last = g->nnodes ? g->nnodes - 1 : 0;
  for (uint32_t i = 0; i < g->nnodes; i++) {
    const ir_node_t *n = &g->nodes[i];
    for (uint32_t j = 0; j < n->ninputs; j++) {
      uint32_t v = n->inputs[j];
      uint32_t end = n->op == IR_OP_OUTPUT ? last : i;
      if (end > r[v].end) r[v].end = end;
    }
  }
}

typedef struct order_key {
  int64_t size;
  uint32_t begin, v;
} order_key_t;

static int by_size_desc(const void *pa, const void *pb) {
  const order_key_t *a = pa, *b = pb;
  if (a->size != b->size) return a->size > b->size ? -1 : 1;
  if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
  return a->v < b->v ? -1 : a->v > b->v;
}

/* A placed value: byte range [off, end) and live interval [tb, te]. The placed list is kept
 * sorted by offset, so one pass over it visits the conflicting ranges in address order and
 * finds the gaps between them without sorting per value. */
typedef struct placed {
  int64_t off, end;
  uint32_t tb, te;
} placed_t;

ad_status_t pass_memplan(const ir_graph_t *g, int reuse, pass_memplan_t *out) {
  memset(out, 0, sizeof *out);
  uint32_t nv = g->nvalues;
  out->nvalues = nv;
  out->offset = malloc(sizeof *out->offset * (nv ? nv : 1));
  out->size = malloc(sizeof *out->size * (nv ? nv : 1));
  live_range_t *r = malloc(sizeof *r * (nv ? nv : 1));
  bool *storage = malloc(sizeof *storage * (nv ? nv : 1));
  order_key_t *order = malloc(sizeof *order * (nv ? nv : 1));
  placed_t *placed = malloc(sizeof *placed * (nv ? nv : 1));
  if (!out->offset || !out->size || !r || !storage || !order || !placed) {
    free(r);
    free(storage);
    free(order);
    free(placed);
    pass_memplan_free(out);
    return ad_status_make(AD_STATUS_RESOURCE, "memplan of program '%s': out of memory", g->name);
  }
  liveness(g, r, out->size, storage);

  uint32_t n = 0;
  for (uint32_t v = 0; v < nv; v++) {
    out->offset[v] = -1;
    if (!storage[v]) continue;
    out->total_bytes += out->size[v];
    order[n++] = (order_key_t){out->size[v], r[v].begin, v};
  }
  if (!reuse) {
    /* The debug layout: program order, every value its own range. */
    int64_t at = 0;
    for (uint32_t k = 0; k < n; k++) {
      out->offset[order[k].v] = at;
      at += order[k].size;
    }
    out->peak_bytes = at;
  } else {
    qsort(order, n, sizeof *order, by_size_desc);
    uint32_t nplaced = 0;
    for (uint32_t k = 0; k < n; k++) {
      uint32_t v = order[k].v;
      int64_t sz = order[k].size;
      uint32_t tb = r[v].begin, te = r[v].end;
      /* Best fit: the smallest gap between time-conflicting ranges that holds sz; else the
       * first address above all of them. */
      int64_t best = -1, best_gap = INT64_MAX, top = 0;
      for (uint32_t q = 0; q < nplaced; q++) {
        const placed_t *c = &placed[q];
        if (c->tb > te || tb > c->te || c->end == c->off) continue;
        int64_t gap = c->off - top;
        if (gap >= sz && gap < best_gap) {
          best = top, best_gap = gap;
          if (gap == sz) break; /* cannot do better */
        }
        if (c->end > top) top = c->end;
      }
      int64_t off = best >= 0 ? best : top;
      out->offset[v] = off;
      if (off + sz > out->peak_bytes) out->peak_bytes = off + sz;
      /* Insert keeping the offset order (binary search, then shift). */
      uint32_t lo = 0, hi = nplaced;
      while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (placed[mid].off <= off) lo = mid + 1;
        else hi = mid;
      }
      memmove(&placed[lo + 1], &placed[lo], sizeof *placed * (nplaced - lo));
      placed[lo] = (placed_t){off, off + sz, tb, te};
      nplaced++;
    }
  }
  free(r);
  free(storage);
  free(order);
  free(placed);
  return AD_OK;
}

void pass_memplan_free(pass_memplan_t *p) {
  free(p->offset);
  free(p->size);
  p->offset = NULL;
  p->size = NULL;
  p->nvalues = 0;
}

void pass_memplan_print(const ir_graph_t *g, const pass_memplan_t *p, ad_buf_t *out) {
  uint32_t nv = g->nvalues < p->nvalues ? g->nvalues : p->nvalues;
  live_range_t *r = malloc(sizeof *r * (g->nvalues ? g->nvalues : 1));
  int64_t *size = malloc(sizeof *size * (g->nvalues ? g->nvalues : 1));
  bool *storage = malloc(sizeof *storage * (g->nvalues ? g->nvalues : 1));
  ad_buf_printf(out, "; memory plan of program '%s': peak %lld bytes, %lld without reuse", g->name,
                (long long)p->peak_bytes, (long long)p->total_bytes);
  if (p->total_bytes > 0)
    ad_buf_printf(out, " (%.1f%%)", 100.0 * (double)p->peak_bytes / (double)p->total_bytes);
  ad_buf_printf(out, "\n;   value     offset       bytes  live      node\n");
  if (r && size && storage) liveness(g, r, size, storage);
  for (uint32_t v = 0; v < nv; v++) {
    const ir_value_t *val = &g->values[v];
    const ir_node_t *n = &g->nodes[val->node];
    if (p->offset[v] < 0)
      ad_buf_printf(out, "  %%%-8u %10s %11lld", v, "slot", (long long)p->size[v]);
    else
      ad_buf_printf(out, "  %%%-8u %10lld %11lld", v, (long long)p->offset[v],
                    (long long)p->size[v]);
    if (r && size && storage)
      ad_buf_printf(out, "  %u..%u", r[v].begin, r[v].end);
    ad_buf_printf(out, "  %s", n->name);
    if (n->noutputs > 1) ad_buf_printf(out, ":%u", val->index);
    ad_buf_printf(out, " (%s) ", ir_op_name(n->op));
    ir_print_type(g->module, &val->type, out);
    ad_buf_printf(out, "\n");
  }
  free(r);
  free(size);
  free(storage);
}
