/* A growable byte buffer (malloc-owned; free with ad_buf_free). */
#ifndef AIDOMM_SUPPORT_BUF_H
#define AIDOMM_SUPPORT_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct ad_buf {
  uint8_t *data;
  size_t len, cap;
} ad_buf_t;

void ad_buf_reserve(ad_buf_t *b, size_t extra);
void ad_buf_append(ad_buf_t *b, const void *p, size_t n);
void ad_buf_printf(ad_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ad_buf_put_u8(ad_buf_t *b, uint8_t v);
void ad_buf_put_u32(ad_buf_t *b, uint32_t v); /* little-endian */
void ad_buf_put_u64(ad_buf_t *b, uint64_t v);
void ad_buf_put_i64(ad_buf_t *b, int64_t v);
void ad_buf_put_f64(ad_buf_t *b, double v);
void ad_buf_put_str(ad_buf_t *b, const char *s); /* u32 length + bytes; NULL as 0xffffffff */
void ad_buf_free(ad_buf_t *b);

/* Bounds-checked little-endian reader: after any overrun `bad` is set and reads return 0. */
typedef struct ad_reader {
  const uint8_t *p, *end;
  int bad;
} ad_reader_t;

uint8_t ad_read_u8(ad_reader_t *r);
uint32_t ad_read_u32(ad_reader_t *r);
uint64_t ad_read_u64(ad_reader_t *r);
int64_t ad_read_i64(ad_reader_t *r);
double ad_read_f64(ad_reader_t *r);
/* Returns a pointer into the input and its length; *isnull set for the NULL encoding. */
const char *ad_read_str(ad_reader_t *r, uint32_t *len, int *isnull);
const uint8_t *ad_read_bytes(ad_reader_t *r, size_t n);

#endif
