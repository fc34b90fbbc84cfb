#include "runtime/init.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/philox.h"

typedef enum rt_init_kind {
  RT_INIT_CONST = 0,
  RT_INIT_NORMAL,
  RT_INIT_UNIFORM,
  RT_INIT_DIRAC,    /* a: scale; torch.nn.init.dirac_ times a (Enformer's AttentionPool) */
  RT_INIT_ROPE_INV, /* a: base, b: dim; inv_freq_i = 1 / base^(2i/dim) as torch computes it */
} rt_init_kind_t;

typedef struct rt_init_rule {
  rt_init_kind_t kind;
  double a, b;
} rt_init_rule_t;

static ad_status_t parse_rule(const char *s, rt_init_rule_t *r) {
  char tail;
  if (strcmp(s, "zeros") == 0) {
    *r = (rt_init_rule_t){RT_INIT_CONST, 0.0, 0.0};
    return AD_OK;
  }
  if (strcmp(s, "ones") == 0) {
    *r = (rt_init_rule_t){RT_INIT_CONST, 1.0, 0.0};
    return AD_OK;
  }
  if (sscanf(s, "const(%lf)%c", &r->a, &tail) == 2 && tail == 0) {
    r->kind = RT_INIT_CONST;
    return AD_OK;
  }
  /* sscanf cannot tell "normal(0,1)" from "normal(0,1)junk" without a sentinel char */
  int used = 0;
  if (sscanf(s, "normal(%lf,%lf)%n", &r->a, &r->b, &used) == 2 && s[used] == 0 && r->b >= 0) {
    r->kind = RT_INIT_NORMAL;
    return AD_OK;
  }
  used = 0;
  if (sscanf(s, "uniform(%lf,%lf)%n", &r->a, &r->b, &used) == 2 && s[used] == 0 && r->a <= r->b) {
    r->kind = RT_INIT_UNIFORM;
    return AD_OK;
  }
  used = 0;
  if (sscanf(s, "dirac(%lf)%n", &r->a, &used) == 1 && s[used] == 0) {
    r->kind = RT_INIT_DIRAC;
    return AD_OK;
  }
  used = 0;
  if (sscanf(s, "rope_inv_freq(%lf,%lf)%n", &r->a, &r->b, &used) == 2 && s[used] == 0 &&
      r->a > 0 && r->b >= 2) {
    r->kind = RT_INIT_ROPE_INV;
    return AD_OK;
  }
  return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "unknown initialisation rule '%s'", s);
}

void rt_philox_key(uint64_t seed, const char *domain, const char *name, uint32_t key[2]) {
  size_t nd = strlen(domain), nn = strlen(name);
  char buf[512];
  char *s = nd + nn + 2 <= sizeof buf ? buf : malloc(nd + nn + 2);
  if (!s) abort(); /* a few hundred bytes: nothing sensible to do without them */
  memcpy(s, domain, nd);
  s[nd] = '/';
  memcpy(s + nd + 1, name, nn + 1);
  ir_philox_dropout_key((int64_t)seed, s, key);
  if (s != buf) free(s);
}

ad_status_t rt_init_check_rule(const char *rule) {
  rt_init_rule_t r;
  return parse_rule(rule, &r);
}

/* Two uniforms in (0,1] with 53-bit resolution from the four words of one Philox block. */
static void uniforms(const uint32_t w[4], double *u0, double *u1) {
  uint64_t a = ((uint64_t)w[0] << 21) ^ (w[1] >> 11);
  uint64_t b = ((uint64_t)w[2] << 21) ^ (w[3] >> 11);
  *u0 = ((double)(a & ((1ull << 53) - 1)) + 1.0) * 0x1p-53;
  *u1 = ((double)(b & ((1ull << 53) - 1)) + 1.0) * 0x1p-53;
}

ad_status_t rt_init_slot(const ir_state_slot_t *slot, uint64_t seed, void *data) {
  rt_init_rule_t r;
  ad_status_t st = parse_rule(slot->init, &r);
  if (st) return ad_status_annotate(st, "state slot '%s'", slot->name);
  int64_t zeros[IR_MAX_SYMBOLS] = {0};
  ir_shape_t sh = ir_type_shape(&slot->type, zeros);
  int64_t n = ir_shape_numel(&sh);
  ir_dtype_t dt = slot->type.dtype;
  uint32_t key[2];
  rt_philox_key(seed, "init", slot->name, key);
  if (r.kind == RT_INIT_DIRAC && sh.rank < 2)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "state slot '%s': dirac needs a rank >= 2 [out, in, k...] slot",
                          slot->name);
  /* dirac: element (o, o, k/2, ...) for o < min(out, in); the kernel centre's flat index */
  int64_t kvol = 1, kcentre = 0;
  for (int d = 2; d < sh.rank; d++) {
    kcentre = kcentre * sh.dims[d] + sh.dims[d] / 2;
    kvol *= sh.dims[d];
  }
  for (int64_t i = 0; i < n; i++) {
    double x = r.a;
    if (r.kind == RT_INIT_DIRAC) {
      int64_t o = i / (sh.dims[1] * kvol), rem = i % (sh.dims[1] * kvol);
      x = (rem / kvol == o && rem % kvol == kcentre) ? r.a : 0.0;
    } else if (r.kind == RT_INIT_ROPE_INV) {
      /* torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all in float32 */
      float e = (float)(2 * i) / (float)r.b;
      x = (double)(1.0f / powf((float)r.a, e));
    } else if (r.kind != RT_INIT_CONST) {
      /* One Philox block per element (counter = element index): values never depend on
       * how many elements the slot has or on which thread fills it. */
      uint32_t ctr[4] = {(uint32_t)i, (uint32_t)((uint64_t)i >> 32), 0xffffffffu, 0xffffffffu};
      uint32_t w[4];
      ir_philox4x32_10(ctr, key, w);
      double u0, u1;
      uniforms(w, &u0, &u1);
      if (r.kind == RT_INIT_UNIFORM)
        x = r.a + (r.b - r.a) * (u0 - 0x1p-53);
      else
        x = r.a + r.b * sqrt(-2.0 * log(u0)) * cos(2.0 * M_PI * u1);
    }
    switch (dt) {
      case IR_DTYPE_F32: ((float *)data)[i] = (float)x; break;
      case IR_DTYPE_F64: ((double *)data)[i] = x; break;
      case IR_DTYPE_I32: ((int32_t *)data)[i] = (int32_t)x; break;
      case IR_DTYPE_I64: ((int64_t *)data)[i] = (int64_t)x; break;
      case IR_DTYPE_U8: ((uint8_t *)data)[i] = (uint8_t)x; break;
      default:
        return ad_status_make(AD_STATUS_UNIMPLEMENTED,
                              "state slot '%s': initialising %s slots is not supported",
                              slot->name, ir_dtype_name(dt));
    }
  }
  return AD_OK;
}
