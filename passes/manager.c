/* Contract: runs verify, dce, cse, constfold, verify over a module, printing as asked. */
#include <stdio.h>
#include <string.h>

#include "passes/passes.h"

typedef ad_status_t (*graph_pass_fn)(ir_graph_t **g);

static const char *const g_pass_names[] = {"verify", "dce", "cse", "constfold", "lower-training",
                                           NULL};

const char *const *pass_names(void) { return g_pass_names; }

static bool wants(const char *sel, const char *pass) {
  return sel && (strcmp(sel, "all") == 0 || strcmp(sel, pass) == 0);
}

void pass_print_if(const pass_pipeline_options_t *o, const char *pass, int after,
                   const ir_module_t *m) {
  if (!o || !wants(after ? o->print_after : o->print_before, pass)) return;
  FILE *f = o->print_stream ? (FILE *)o->print_stream : stderr;
  ad_buf_t b = {0};
  ad_buf_printf(&b, "; *** IR %s %s ***\n", after ? "after" : "before", pass);
  ir_print_module(m, &b);
  if (b.len) fwrite(b.data, 1, b.len, f);
  fflush(f);
  ad_buf_free(&b);
}

static ad_status_t run_on_programs(ir_module_t *m, const char *name, graph_pass_fn fn) {
  for (uint32_t i = 0; i < m->nprograms; i++) {
    /* A local handle: the pass appends a program while it runs, which may move m->programs. */
    ir_graph_t *g = m->programs[i];
    const char *prog = g->name;
    ad_status_t st = fn(&g);
    if (st) return ad_status_annotate(st, "pass %s on program '%s'", name, prog);
  }
  return AD_OK;
}

ad_status_t pass_run_pipeline(ir_module_t *m, const pass_pipeline_options_t *o) {
  static const struct {
    const char *name;
    graph_pass_fn fn; /* NULL: verify */
  } steps[] = {{"verify", NULL}, {"dce", pass_dce}, {"cse", pass_cse},
               {"constfold", pass_constfold}, {"verify", NULL}};
  for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
    pass_print_if(o, steps[k].name, 0, m);
    ad_status_t st = steps[k].fn ? run_on_programs(m, steps[k].name, steps[k].fn)
                                 : ir_verify_module(m);
    if (st) return k == 0 ? ad_status_annotate(st, "verifying the input module")
                          : steps[k].fn ? st
                                        : ad_status_annotate(st, "verifying after the passes");
    pass_print_if(o, steps[k].name, 1, m);
  }
  return AD_OK;
}
