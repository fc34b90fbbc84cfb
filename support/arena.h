/* Bump arena for compile-time objects: everything allocated from it dies with it. */
#ifndef AIDOMM_SUPPORT_ARENA_H
#define AIDOMM_SUPPORT_ARENA_H

#include <stddef.h>

typedef struct ad_arena_block ad_arena_block_t;
typedef struct ad_arena {
  ad_arena_block_t *head;
  size_t block_size;
} ad_arena_t;

void ad_arena_init(ad_arena_t *a, size_t block_size);
void ad_arena_free(ad_arena_t *a);
/* Zeroed, 16-byte aligned; aborts the process only if malloc fails (compile-time OOM). */
void *ad_arena_alloc(ad_arena_t *a, size_t n);
char *ad_arena_strdup(ad_arena_t *a, const char *s);
char *ad_arena_strndup(ad_arena_t *a, const char *s, size_t n);
char *ad_arena_printf(ad_arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *ad_arena_memdup(ad_arena_t *a, const void *p, size_t n);

#endif
