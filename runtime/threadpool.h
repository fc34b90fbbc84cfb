/* A fixed pool of worker threads implementing ir_parallel_t. Kernels split work only over
 * independent outputs, so any thread count gives bit-identical results. */
#ifndef AIDOMM_RUNTIME_THREADPOOL_H
#define AIDOMM_RUNTIME_THREADPOOL_H

#include "ir/ir.h"

typedef struct rt_threadpool rt_threadpool_t;

/* nthreads <= 0: one per online CPU. nthreads == 1 runs everything on the caller. */
ad_status_t rt_threadpool_create(int nthreads, rt_threadpool_t **out);
void rt_threadpool_free(rt_threadpool_t *p);
ir_parallel_t *rt_threadpool_parallel(rt_threadpool_t *p);
int rt_threadpool_size(const rt_threadpool_t *p);

#endif
