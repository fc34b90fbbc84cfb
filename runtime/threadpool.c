#include "runtime/threadpool.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

struct rt_threadpool {
  ir_parallel_t par; /* first member: the kernels see only this */
  int nthreads;      /* including the caller */
  pthread_t *workers;
  pthread_mutex_t mu;
  pthread_cond_t wake, done;
  /* the job being run */
  uint64_t generation;
  int pending; /* workers still running the current job */
  int stop;
  int64_t n, chunk;
  ir_range_fn fn;
  void *ctx;
};

typedef struct worker_arg {
  rt_threadpool_t *p;
  int index; /* 1..nthreads-1; the caller is 0 */
} worker_arg_t;

static void run_share(rt_threadpool_t *p, int index) {
  int64_t begin = (int64_t)index * p->chunk;
  int64_t end = begin + p->chunk;
  if (end > p->n) end = p->n;
  if (begin < end) p->fn(p->ctx, begin, end);
}

static void *worker_main(void *arg) {
  worker_arg_t *w = arg;
  rt_threadpool_t *p = w->p;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
    if (p->stop) break;
    seen = p->generation;
    pthread_mutex_unlock(&p->mu);
    run_share(p, w->index);
    pthread_mutex_lock(&p->mu);
    if (--p->pending == 0) pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
  free(w);
  return NULL;
}

static void pool_run(ir_parallel_t *self, int64_t n, int64_t grain, ir_range_fn fn, void *ctx) {
  rt_threadpool_t *p = (rt_threadpool_t *)self;
  int64_t parts = p->nthreads;
  if (parts > n / grain) parts = n / grain;
  if (parts <= 1) {
    fn(ctx, 0, n);
    return;
  }
  pthread_mutex_lock(&p->mu);
  p->n = n;
  p->chunk = (n + parts - 1) / parts;
  p->fn = fn;
  p->ctx = ctx;
  p->pending = p->nthreads - 1;
  p->generation++;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  run_share(p, 0);
  pthread_mutex_lock(&p->mu);
  while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

ad_status_t rt_threadpool_create(int nthreads, rt_threadpool_t **out) {
  *out = NULL;
  if (nthreads <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    nthreads = c > 0 ? (int)c : 1;
  }
  if (nthreads > 256)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "thread count %d is too large", nthreads);
  rt_threadpool_t *p = calloc(1, sizeof *p);
  if (!p) return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  p->par.run = pool_run;
  p->nthreads = nthreads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  p->workers = calloc((size_t)nthreads, sizeof *p->workers);
  if (!p->workers) {
    free(p);
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  for (int i = 1; i < nthreads; i++) {
    worker_arg_t *w = malloc(sizeof *w);
    if (!w) abort();
    *w = (worker_arg_t){p, i};
    if (pthread_create(&p->workers[i], NULL, worker_main, w) != 0) {
      free(w);
      p->nthreads = i;
      rt_threadpool_free(p);
      return ad_status_make(AD_STATUS_RESOURCE, "cannot start worker thread %d", i);
    }
  }
  *out = p;
  return AD_OK;
}

void rt_threadpool_free(rt_threadpool_t *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->nthreads; i++) pthread_join(p->workers[i], NULL);
  free(p->workers);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  free(p);
}

ir_parallel_t *rt_threadpool_parallel(rt_threadpool_t *p) { return p ? &p->par : NULL; }
int rt_threadpool_size(const rt_threadpool_t *p) { return p ? p->nthreads : 1; }
