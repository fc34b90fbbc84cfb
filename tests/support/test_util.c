#include "tests/support/test_util.h"

#include <dirent.h>
#include <ftw.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- suites and statuses ------------------------------------------------------------------ */

int tu_run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

void tu_ok(ad_status_t st) {
  if (st) ck_abort_msg("unexpected error: %s", ad_status_message(st));
}

void tu_expect_msg(ad_status_t st, const char *n1, const char *n2) {
  ck_assert_msg(st != NULL, "no error; expected '%s'", n1);
  const char *msg = ad_status_message(st);
  ck_assert_msg(strstr(msg, n1) && (!n2 || strstr(msg, n2)), "message '%s' lacks '%s'/'%s'", msg,
                n1, n2 ? n2 : "");
  ad_status_free(st);
}

void tu_expect_invalid(ad_status_t st, const char *n1, const char *n2) {
  ck_assert_msg(st != NULL, "no error; expected '%s'", n1);
  ck_assert_msg(ad_status_code(st) == AD_STATUS_INVALID_ARGUMENT, "code %d, expected %d: %s",
                (int)ad_status_code(st), (int)AD_STATUS_INVALID_ARGUMENT, ad_status_message(st));
  tu_expect_msg(st, n1, n2);
}

/* ---- threads and random numbers ----------------------------------------------------------- */

typedef struct tail_job {
  ir_range_fn fn;
  void *ctx;
  int64_t begin, end;
} tail_job_t;

static void *run_tail(void *p) {
  tail_job_t *j = p;
  j->fn(j->ctx, j->begin, j->end);
  return NULL;
}

static void two_run(ir_parallel_t *self, int64_t n, int64_t grain, ir_range_fn fn, void *ctx) {
  (void)grain;
  tu_two_threads_t *t = (tu_two_threads_t *)self;
  if (n < 2) {
    fn(ctx, 0, n);
    return;
  }
  int64_t mid = n / 3 > 0 ? n / 3 : 1; /* uneven on purpose */
  tail_job_t job = {fn, ctx, mid, n};
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, run_tail, &job), 0);
  fn(ctx, 0, mid);
  ck_assert_int_eq(pthread_join(th, NULL), 0);
  t->splits++;
}

tu_two_threads_t tu_two_threads(void) { return (tu_two_threads_t){.base = {.run = two_run}}; }

uint64_t tu_xorshift64(uint64_t *state) {
  *state ^= *state << 13;
  *state ^= *state >> 7;
  *state ^= *state << 17;
  return *state;
}

double tu_urand(uint64_t *state) {
  return (double)(tu_xorshift64(state) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

double tu_f64_from_bits(uint64_t b) {
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}

/* ---- tensors -------------------------------------------------------------------------------- */

ir_tensor_t tu_tensor(ir_dtype_t dt, int rank, const int64_t *dims) {
  ir_tensor_t t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  int64_t n = ir_tensor_numel(&t);
  t.data = calloc((size_t)(n > 0 ? n : 1), ir_dtype_size(dt));
  ck_assert_ptr_nonnull(t.data);
  return t;
}

double tu_get(const ir_tensor_t *t, int64_t i) {
  return t->dtype == IR_DTYPE_F64 ? ((double *)t->data)[i] : ((float *)t->data)[i];
}

void tu_set(ir_tensor_t *t, int64_t i, double v) {
  if (t->dtype == IR_DTYPE_F64)
    ((double *)t->data)[i] = v;
  else
    ((float *)t->data)[i] = (float)v;
}

void tu_fill(ir_tensor_t *t, uint64_t *rng, double scale, double offset) {
  for (int64_t i = 0; i < ir_tensor_numel(t); i++) tu_set(t, i, offset + scale * tu_urand(rng));
}

bool tu_same_bits(const ir_tensor_t *a, const ir_tensor_t *b) {
  return a->dtype == b->dtype && ir_tensor_numel(a) == ir_tensor_numel(b) &&
         memcmp(a->data, b->data, (size_t)ir_tensor_numel(a) * ir_dtype_size(a->dtype)) == 0;
}

void tu_free_tensors(ir_tensor_t *t, int n) {
  for (int i = 0; i < n; i++) free(t[i].data);
}

ad_status_t tu_try_kernel(ir_op_t op, const char *name, const ir_attr_t *attrs, uint32_t nattrs,
                          const ir_tensor_t *in, uint32_t nin, ir_tensor_t *out, uint32_t nout,
                          ir_parallel_t *par) {
  ir_node_t node;
  memset(&node, 0, sizeof node);
  node.op = op;
  node.name = name;
  node.ninputs = nin;
  node.noutputs = nout;
  node.attrs = attrs;
  node.nattrs = nattrs;
  ir_kernel_args_t a = {.node = &node, .in = in, .nin = nin, .out = out, .nout = nout, .par = par};
  return ir_op_info(op)->kernel(&a);
}

void tu_run_kernel(ir_op_t op, const char *name, const ir_attr_t *attrs, uint32_t nattrs,
                   const ir_tensor_t *in, uint32_t nin, ir_tensor_t *out, uint32_t nout,
                   ir_parallel_t *par) {
  ad_status_t st = tu_try_kernel(op, name, attrs, nattrs, in, nin, out, nout, par);
  if (st) ck_abort_msg("%s kernel failed: %s", ir_op_name(op), ad_status_message(st));
}

/* ---- graphs --------------------------------------------------------------------------------- */

ir_type_t tu_type(const ir_module_t *m, const char *text) {
  ir_type_t t;
  ad_status_t st = ir_parse_type(m, text, &t);
  if (st) ck_abort_msg("bad type '%s': %s", text, ad_status_message(st));
  return t;
}

ir_type_t tu_static_type(ir_dtype_t dt, int rank, const int64_t *dims) {
  ir_type_t t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = ir_dim_const(dims[i]);
  return t;
}

uint32_t tu_node(ir_graph_t *g, ir_op_t op, const char *name, const uint32_t *ins, uint32_t nin,
                 const ir_attr_t *attrs, uint32_t nattrs, const ir_type_t *out) {
  ir_node_desc_t d = {.op = op, .name = name, .inputs = ins, .ninputs = nin, .attrs = attrs,
                      .nattrs = nattrs, .out_types = out, .nout_types = out ? 1 : 0};
  return ir_build(g, &d);
}

uint32_t tu_node_text(ir_graph_t *g, ir_op_t op, const char *name, const uint32_t *ins,
                      uint32_t nin, const ir_attr_t *attrs, uint32_t nattrs, const char *out) {
  ir_type_t t;
  if (out) t = tu_type(g->module, out);
  return tu_node(g, op, name, ins, nin, attrs, nattrs, out ? &t : NULL);
}

uint32_t tu_node_ok(ir_graph_t *g, ir_op_t op, const char *name, const uint32_t *ins,
                    uint32_t nin, const ir_attr_t *attrs, uint32_t nattrs, const ir_type_t *out) {
  uint32_t v = tu_node(g, op, name, ins, nin, attrs, nattrs, out);
  ad_status_t st = ir_graph_take_error(g);
  if (st) ck_abort_msg("building '%s': %s", name ? name : "?", ad_status_message(st));
  return v;
}

uint32_t tu_input(ir_graph_t *g, const char *name, const ir_type_t *t) {
  uint32_t v = tu_node(g, IR_OP_INPUT, name, NULL, 0, NULL, 0, t);
  ck_assert_uint_ne(v, IR_NONE);
  return v;
}

uint32_t tu_input_text(ir_graph_t *g, const char *name, const char *type) {
  ir_type_t t = tu_type(g->module, type);
  return tu_input(g, name, &t);
}

void tu_output(ir_graph_t *g, const char *name, uint32_t v) {
  tu_node_ok(g, IR_OP_OUTPUT, name, &v, 1, NULL, 0, NULL);
}

void tu_expect_build_error(ir_graph_t *g, uint32_t v, const char *n1, const char *n2) {
  ck_assert_uint_eq(v, IR_NONE);
  tu_expect_invalid(ir_graph_take_error(g), n1, n2);
}

int tu_count_op(const ir_graph_t *g, uint32_t from, ir_op_t op) {
  int k = 0;
  for (uint32_t i = from; i < g->nnodes; i++) k += g->nodes[i].op == op;
  return k;
}

char *tu_print_module(const ir_module_t *m, size_t *len) {
  ad_buf_t b = {0};
  ir_print_module(m, &b);
  ad_buf_put_u8(&b, 0);
  if (len) *len = b.len - 1;
  return (char *)b.data;
}

static tu_fx_t fx_program(ir_module_t *m, const char *program) {
  tu_fx_t f = {m, ir_module_add_program(m, program)};
  ck_assert_ptr_nonnull(f.g);
  return f;
}

tu_fx_t tu_fx_new(void) {
  ir_module_t *m = ir_module_create();
  ck_assert_ptr_nonnull(m);
  return fx_program(m, "test");
}

tu_fx_t tu_fx_new_sym(void) {
  ir_module_t *m = ir_module_create();
  ck_assert_ptr_nonnull(m);
  ck_assert_ptr_null(ir_module_add_symbol(m, "B", 4, NULL));
  ck_assert_ptr_null(ir_module_add_symbol(m, "L", 8, NULL));
  return fx_program(m, "main");
}

uint32_t tu_fx_input(tu_fx_t *f, const char *name, ir_dtype_t dt, int rank, const int64_t *dims) {
  ir_type_t t = tu_static_type(dt, rank, dims);
  return tu_input(f->g, name, &t);
}

uint32_t tu_fx_op(tu_fx_t *f, ir_op_t op, const char *name, const uint32_t *ins, uint32_t nin,
                  const ir_attr_t *attrs, uint32_t nattrs) {
  return tu_node(f->g, op, name, ins, nin, attrs, nattrs, NULL);
}

void tu_fx_expect_error(tu_fx_t *f, ir_op_t op, const char *name, const uint32_t *ins,
                        uint32_t nin, const ir_attr_t *attrs, uint32_t nattrs, const char *needle) {
  tu_expect_build_error(f->g, tu_fx_op(f, op, name, ins, nin, attrs, nattrs), name, needle);
}

ir_tensor_t tu_tensor_of(const tu_fx_t *f, uint32_t v) {
  const ir_type_t *t = ir_value_type(f->g, v);
  int64_t dims[IR_MAX_RANK];
  for (int i = 0; i < t->rank; i++) ck_assert(ir_dim_is_const(t->dims[i], &dims[i]));
  return tu_tensor(t->dtype, t->rank, dims);
}

void tu_run_node(const tu_fx_t *f, uint32_t v, ir_tensor_t *in, uint32_t nin, ir_tensor_t *out,
                 ir_parallel_t *par) {
  const ir_node_t *n = ir_value_producer(f->g, v);
  ck_assert_ptr_nonnull(n);
  ir_kernel_args_t a = {.node = n, .in = in, .nin = nin, .out = out, .nout = 1, .par = par};
  ad_status_t st = ir_op_info(n->op)->kernel(&a);
  ck_assert_msg(st == NULL, "kernel failed: %s", st ? ad_status_message(st) : "");
}

/* ---- files ---------------------------------------------------------------------------------- */

const char *tu_source_dir(void) {
  const char *d = getenv("AIDOMM_SOURCE_DIR");
  return d ? d : ".";
}

const char *tu_source_path(const char *rel) {
  static char buf[8][1024];
  static int k;
  char *p = buf[k++ & 7];
  snprintf(p, sizeof buf[0], "%s/%s", tu_source_dir(), rel);
  return p;
}

char *tu_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  ck_assert_ptr_nonnull(s);
  ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = 0;
  fclose(f);
  if (len) *len = (size_t)n;
  return s;
}

char *tu_read_source(const char *rel) {
  size_t n;
  return tu_read_file(tu_source_path(rel), &n);
}

int tu_hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

void tu_write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "cannot create %s", path);
  if (n) ck_assert_uint_eq(fwrite(data, 1, n, f), n);
  ck_assert_int_eq(fclose(f), 0);
}

int tu_for_each_file(const char *dir, const char *suffix,
                     void (*fn)(const char *path, const char *name, void *ctx), void *ctx) {
  DIR *d = opendir(dir);
  ck_assert_msg(d != NULL, "cannot open %s", dir);
  size_t sl = strlen(suffix);
  int files = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t nl = strlen(e->d_name);
    if (nl <= sl || strcmp(e->d_name + nl - sl, suffix) != 0) continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    fn(path, e->d_name, ctx);
    files++;
  }
  closedir(d);
  return files;
}

static char g_tmpdir[256];

const char *tu_tmpdir_create(const char *tag) {
  snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/aidomm_test_%s.XXXXXX", tag);
  ck_assert_ptr_nonnull(mkdtemp(g_tmpdir));
  return g_tmpdir;
}

const char *tu_tmpdir(void) { return g_tmpdir; }

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Depth-first, so folders the tests made inside are emptied before they go. */
void tu_tmpdir_remove(void) {
  if (!g_tmpdir[0]) return;
  nftw(g_tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_tmpdir_path(const char *name) {
  static char buf[8][600];
  static int k;
  char *p = buf[k++ & 7];
  snprintf(p, sizeof buf[0], "%s/%s", g_tmpdir, name);
  return p;
}

/* ---- tools ---------------------------------------------------------------------------------- */

void tu_bin_path(char *buf, size_t size, const char *tool) {
  const char *bin = getenv("AIDOMM_BIN_DIR");
  snprintf(buf, size, "%s/%s", bin ? bin : "build/bin", tool);
}

tu_proc_t tu_run_tool(const char *bin, const char *arg0, ...) {
  const char *argv[64];
  int argc = 0;
  argv[argc++] = bin;
  va_list ap;
  va_start(ap, arg0);
  for (const char *a = arg0; a && argc < 63; a = va_arg(ap, const char *)) argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;
  char out_path[600], err_path[600];
  snprintf(out_path, sizeof out_path, "%s/.stdout", g_tmpdir);
  snprintf(err_path, sizeof err_path, "%s/.stderr", g_tmpdir);
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) _exit(126);
    dup2(o, 1);
    dup2(e, 2);
    execv(bin, (char *const *)argv);
    _exit(127);
  }
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  tu_proc_t r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  ck_assert_msg(r.code != 127 && r.code != 126, "cannot run %s", bin);
  r.out = tu_read_file(out_path, &r.out_len);
  r.err = tu_read_file(err_path, &r.err_len);
  return r;
}

void tu_proc_free(tu_proc_t *r) {
  free(r->out);
  free(r->err);
}

int tu_count_lines(const char *s, size_t n) {
  int k = 0;
  for (size_t i = 0; i < n; i++) k += s[i] == '\n';
  return k;
}
