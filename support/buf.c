#include "support/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ad_buf_reserve(ad_buf_t *b, size_t extra) {
  if (b->len + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra) cap *= 2;
  uint8_t *d = realloc(b->data, cap);
  if (!d) {
    fputs("aidomm: fatal: out of memory growing a buffer\n", stderr);
    abort();
  }
  b->data = d;
  b->cap = cap;
}

void ad_buf_append(ad_buf_t *b, const void *p, size_t n) {
  if (!n) return;
  ad_buf_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void ad_buf_printf(ad_buf_t *b, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n > 0) {
    ad_buf_reserve(b, (size_t)n + 1);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap2);
    b->len += (size_t)n;
  }
  va_end(ap2);
}

void ad_buf_put_u8(ad_buf_t *b, uint8_t v) { ad_buf_append(b, &v, 1); }

void ad_buf_put_u32(ad_buf_t *b, uint32_t v) {
  uint8_t x[4];
  for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
  ad_buf_append(b, x, 4);
}

void ad_buf_put_u64(ad_buf_t *b, uint64_t v) {
  uint8_t x[8];
  for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
  ad_buf_append(b, x, 8);
}

void ad_buf_put_i64(ad_buf_t *b, int64_t v) { ad_buf_put_u64(b, (uint64_t)v); }

void ad_buf_put_f64(ad_buf_t *b, double v) {
  uint64_t u;
  memcpy(&u, &v, 8);
  ad_buf_put_u64(b, u);
}

void ad_buf_put_str(ad_buf_t *b, const char *s) {
  if (!s) {
    ad_buf_put_u32(b, 0xffffffffu);
    return;
  }
  size_t n = strlen(s);
  ad_buf_put_u32(b, (uint32_t)n);
  ad_buf_append(b, s, n);
}

void ad_buf_free(ad_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

const uint8_t *ad_read_bytes(ad_reader_t *r, size_t n) {
  if (r->bad || (size_t)(r->end - r->p) < n) {
    r->bad = 1;
    return NULL;
  }
  const uint8_t *p = r->p;
  r->p += n;
  return p;
}

uint8_t ad_read_u8(ad_reader_t *r) {
  const uint8_t *p = ad_read_bytes(r, 1);
  return p ? p[0] : 0;
}

uint32_t ad_read_u32(ad_reader_t *r) {
  const uint8_t *p = ad_read_bytes(r, 4);
  if (!p) return 0;
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}

uint64_t ad_read_u64(ad_reader_t *r) {
  const uint8_t *p = ad_read_bytes(r, 8);
  if (!p) return 0;
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

int64_t ad_read_i64(ad_reader_t *r) { return (int64_t)ad_read_u64(r); }

double ad_read_f64(ad_reader_t *r) {
  uint64_t u = ad_read_u64(r);
  double d;
  memcpy(&d, &u, 8);
  return d;
}

const char *ad_read_str(ad_reader_t *r, uint32_t *len, int *isnull) {
  uint32_t n = ad_read_u32(r);
  *isnull = 0;
  *len = 0;
  if (r->bad) return NULL;
  if (n == 0xffffffffu) {
    *isnull = 1;
    return NULL;
  }
  const uint8_t *p = ad_read_bytes(r, n);
  if (!p) return NULL;
  *len = n;
  return (const char *)p;
}
