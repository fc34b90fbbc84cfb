#include "support/arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ad_arena_block {
  ad_arena_block_t *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
};

void ad_arena_init(ad_arena_t *a, size_t block_size) {
  a->head = NULL;
  a->block_size = block_size ? block_size : 64 * 1024;
}

void ad_arena_free(ad_arena_t *a) {
  ad_arena_block_t *b = a->head;
  while (b) {
    ad_arena_block_t *n = b->next;
    free(b);
    b = n;
  }
  a->head = NULL;
}

void *ad_arena_alloc(ad_arena_t *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (n == 0) n = 16;
  ad_arena_block_t *b = a->head;
  if (!b || b->used + n > b->cap) {
    size_t cap = n > a->block_size ? n : a->block_size;
    b = malloc(sizeof *b + cap);
    if (!b) {
      fputs("aidomm: fatal: out of memory in compile-time arena\n", stderr);
      abort();
    }
    b->used = 0;
    b->cap = cap;
    b->next = a->head;
    a->head = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  memset(p, 0, n);
  return p;
}

char *ad_arena_strndup(ad_arena_t *a, const char *s, size_t n) {
  char *d = ad_arena_alloc(a, n + 1);
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

char *ad_arena_strdup(ad_arena_t *a, const char *s) {
  return s ? ad_arena_strndup(a, s, strlen(s)) : NULL;
}

void *ad_arena_memdup(ad_arena_t *a, const void *p, size_t n) {
  void *d = ad_arena_alloc(a, n);
  if (n) memcpy(d, p, n);
  return d;
}

char *ad_arena_printf(ad_arena_t *a, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = ad_arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
  vsnprintf(s, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return s;
}
