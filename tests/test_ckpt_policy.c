/* runtime/ckpt_policy against Lightning (tests/golden/checkpoint/schedule.json, written by
 * tools/golden/checkpoint_schedule.py from real Trainer.fit runs): every case's events replayed
 * give the same SAVE/REMOVE/LINK/WARN sequence (".ckpt" -> ".safetensors"), the same error at
 * the same event, the same callback metrics after each event and the same final bookkeeping;
 * the state serialised after any event and restored into a fresh policy continues with the same
 * actions; Lightning-style restores follow load_state_dict; Python's format() and
 * format_checkpoint_name agree on the golden's values and templates. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ckpt_policy.h"
#include "tests/support/test_util.h"

#define DIR "/ckpt"

static json_t *g_doc;

static json_t *golden(void) {
  if (g_doc) return g_doc;
  json_error_t e;
  const char *path = tu_source_path("tests/golden/checkpoint/schedule.json");
  g_doc = json_load_file(path, 0, &e);
  if (!g_doc) ck_abort_msg("%s:%d: %s", path, e.line, e.text);
  return g_doc;
}

static double num(const json_t *j) {
  if (json_is_number(j)) return json_number_value(j);
  const char *s = json_string_value(j);
  ck_assert_msg(s != NULL, "expected a number");
  if (!strcmp(s, "nan")) return NAN;
  if (!strcmp(s, "inf")) return INFINITY;
  if (!strcmp(s, "-inf")) return -INFINITY;
  ck_abort_msg("bad number '%s'", s);
  return 0;
}

static bool same_num(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

/* "/ckpt/" + golden name with ".ckpt" replaced by ".safetensors"; "" stays "". */
static char *map_name(const char *file) {
  if (!file || !file[0]) return strdup("");
  size_t n = strlen(file);
  char *s = malloc(n + 32);
  ck_assert_ptr_nonnull(s);
  if (n >= 5 && !strcmp(file + n - 5, ".ckpt"))
    snprintf(s, n + 32, DIR "/%.*s.safetensors", (int)(n - 5), file);
  else
    snprintf(s, n + 32, DIR "/%s", file);
  return s;
}

static int64_t opt_int(const json_t *o, const char *k, int64_t dflt) {
  const json_t *v = json_object_get(o, k);
  if (!v) return dflt;
  if (json_is_null(v)) return -1;
  ck_assert(json_is_integer(v));
  return json_integer_value(v);
}

static bool opt_bool(const json_t *o, const char *k, bool dflt) {
  const json_t *v = json_object_get(o, k);
  return v ? json_is_true(v) : dflt;
}

static rt_ckpt_settings_t case_settings(const json_t *c) {
  const json_t *ck = json_object_get(c, "ckpt"), *tr = json_object_get(c, "trainer");
  rt_ckpt_settings_t s = rt_ckpt_settings_default();
  s.dirpath = DIR;
  s.filename = json_string_value(json_object_get(ck, "filename"));
  s.monitor = json_string_value(json_object_get(ck, "monitor"));
  const char *mode = json_string_value(json_object_get(ck, "mode"));
  s.mode_max = mode && !strcmp(mode, "max");
  s.save_top_k = opt_int(ck, "save_top_k", 1);
  const json_t *sl = json_object_get(ck, "save_last");
  s.save_last = json_is_string(sl) ? RT_CKPT_SAVE_LAST_LINK
                : json_is_true(sl) ? RT_CKPT_SAVE_LAST_ON
                                   : RT_CKPT_SAVE_LAST_OFF;
  s.every_n_train_steps = opt_int(ck, "every_n_train_steps", -1);
  s.every_n_epochs = opt_int(ck, "every_n_epochs", -1);
  const json_t *soe = json_object_get(ck, "save_on_train_epoch_end");
  s.save_on_train_epoch_end = !soe || json_is_null(soe) ? -1 : json_is_true(soe);
  s.auto_insert_metric_name = opt_bool(ck, "auto_insert_metric_name", true);
  s.enable_version_counter = opt_bool(ck, "enable_version_counter", true);
  s.check_val_every_n_epoch = opt_int(tr, "check_val_every_n_epoch", 1);
  s.val_check_interval_is_one = num(json_object_get(tr, "val_check_interval")) == 1.0;
  s.has_validation = num(json_object_get(tr, "limit_val_batches")) != 0;
  return s;
}

static rt_ckpt_metric_t *metrics_of(const json_t *pairs, size_t *n) {
  *n = json_array_size(pairs);
  rt_ckpt_metric_t *m = calloc(*n + 1, sizeof *m);
  for (size_t i = 0; i < *n; i++) {
    const json_t *p = json_array_get(pairs, i);
    m[i].name = json_string_value(json_array_get(p, 0));
    m[i].value = num(json_array_get(p, 1));
  }
  return m;
}

static bool is_event(const json_t *e) { return json_object_get(e, "event") != NULL; }

/* Feeds one golden event; NULL entries (sanity validation) are skipped. */
static ad_status_t feed(rt_ckpt_policy_t *p, const json_t *e, rt_ckpt_actions_t *out) {
  const char *ev = json_string_value(json_object_get(e, "event"));
  int64_t step = json_integer_value(json_object_get(e, "step"));
  int64_t epoch = json_integer_value(json_object_get(e, "epoch"));
  size_t n;
  rt_ckpt_metric_t *m = metrics_of(json_object_get(e, "logged"), &n);
  ad_status_t st = AD_OK;
  if (!strcmp(ev, "train_batch_end")) {
    st = rt_ckpt_policy_on_train_batch_end(p, step, epoch,
                                           json_is_true(json_object_get(e, "is_last_batch")), m, n,
                                           out);
  } else if (!strcmp(ev, "validation_end")) {
    if (json_is_true(json_object_get(e, "sanity")))
      rt_ckpt_policy_reset_metrics(p); /* Lightning drops the sanity check's metrics */
    else
      st = rt_ckpt_policy_on_validation_end(p, step, epoch, m, n, out);
  } else if (!strcmp(ev, "train_epoch_end")) {
    st = rt_ckpt_policy_on_train_epoch_end(p, step, epoch, out);
  } else if (!strcmp(ev, "train_end")) {
    st = rt_ckpt_policy_on_train_end(p, step, epoch, out);
  } else {
    ck_abort_msg("unknown event %s", ev);
  }
  free(m);
  return st;
}

static const char *kind_name(rt_ckpt_action_kind_t k) {
  return k == RT_CKPT_SAVE ? "save" : k == RT_CKPT_REMOVE ? "remove" : k == RT_CKPT_LINK ? "link"
                                                                                       : "warn";
}

/* Compares the actions of event log[i] with the golden entries after it; returns the index of
 * the next event. */
static size_t check_actions(const char *cname, const json_t *c, const json_t *log, size_t i,
                            ad_status_t st, const rt_ckpt_actions_t *got) {
  size_t k = 0, j = i + 1;
  bool want_error = false;
  for (; j < json_array_size(log) && !is_event(json_array_get(log, j)); j++) {
    const json_t *a = json_array_get(log, j);
    if (json_object_get(a, "error")) {
      want_error = true;
      continue;
    }
    const char *kind = json_string_value(json_object_get(a, "action"));
    ck_assert_msg(k < got->n, "%s: event %zu: missing action %zu (%s %s)", cname, i, k, kind,
                  json_string_value(json_object_get(a, "file")));
    const rt_ckpt_action_t *g = &got->items[k++];
    ck_assert_msg(!strcmp(kind, kind_name(g->kind)), "%s: event %zu: action %zu is %s, want %s",
                  cname, i, k - 1, kind_name(g->kind), kind);
    if (g->kind == RT_CKPT_WARN) {
      const char *msg = json_string_value(json_object_get(a, "message"));
      ck_assert_msg(!strcmp(msg, g->message), "%s: warn\n got %s\nwant %s", cname, g->message, msg);
      continue;
    }
    char *want = map_name(json_string_value(json_object_get(a, "file")));
    ck_assert_msg(!strcmp(want, g->path), "%s: event %zu: %s got %s, want %s", cname, i, kind,
                  g->path, want);
    free(want);
    if (g->kind == RT_CKPT_LINK) {
      char *t = map_name(json_string_value(json_object_get(a, "target")));
      ck_assert_msg(!strcmp(t, g->target), "%s: link target %s, want %s", cname, g->target, t);
      free(t);
    }
  }
  ck_assert_msg(k == got->n, "%s: event %zu: %zu extra actions, first %s %s", cname, i,
                got->n - k, k < got->n ? kind_name(got->items[k].kind) : "",
                k < got->n && got->items[k].path ? got->items[k].path : "");
  if (want_error) {
    ck_assert_msg(st != NULL, "%s: event %zu should fail", cname, i);
    const char *msg = json_string_value(json_object_get(json_object_get(c, "error"), "message"));
    ck_assert_int_eq(ad_status_code(st), AD_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(!strcmp(ad_status_message(st), msg), "%s: error\n got %s\nwant %s", cname,
                  ad_status_message(st), msg);
  } else {
    ck_assert_msg(st == NULL, "%s: event %zu: %s", cname, i, st ? ad_status_message(st) : "");
  }
  return j;
}

static json_t *state_of(const rt_ckpt_policy_t *p) {
  char *js;
  tu_ok(rt_ckpt_policy_state_json(p, &js));
  json_t *o = json_loads(js, 0, NULL);
  ck_assert_ptr_nonnull(o);
  free(js);
  return o;
}

static void check_metrics(const char *cname, const rt_ckpt_policy_t *p, const json_t *e) {
  const json_t *want = json_object_get(e, "callback_metrics");
  if (!want) return;
  json_t *o = state_of(p);
  const json_t *got = json_object_get(o, "callback_metrics");
  ck_assert_msg(json_array_size(got) == json_array_size(want), "%s: %zu callback metrics, want %zu",
                cname, json_array_size(got), json_array_size(want));
  for (size_t i = 0; i < json_array_size(want); i++) {
    const json_t *g = json_array_get(got, i), *w = json_array_get(want, i);
    ck_assert_str_eq(json_string_value(json_array_get(g, 0)),
                     json_string_value(json_array_get(w, 0)));
    ck_assert_msg(same_num(num(json_array_get(g, 1)), num(json_array_get(w, 1))), "%s: metric %s",
                  cname, json_string_value(json_array_get(w, 0)));
  }
  json_decref(o);
}

static void check_final(const char *cname, const rt_ckpt_policy_t *p, const json_t *c) {
  const json_t *f = json_object_get(c, "final");
  struct {
    const char *key, *got;
  } paths[] = {{"best_model_path", rt_ckpt_policy_best_model_path(p)},
               {"kth_best_model_path", rt_ckpt_policy_kth_best_model_path(p)},
               {"last_model_path", rt_ckpt_policy_last_model_path(p)}};
  for (size_t i = 0; i < 3; i++) {
    char *want = map_name(json_string_value(json_object_get(f, paths[i].key)));
    ck_assert_msg(!strcmp(want, paths[i].got), "%s: %s %s, want %s", cname, paths[i].key,
                  paths[i].got, want);
    free(want);
  }
  double score;
  const json_t *bs = json_object_get(f, "best_model_score");
  ck_assert_int_eq(rt_ckpt_policy_best_model_score(p, &score), !json_is_null(bs));
  if (!json_is_null(bs)) ck_assert(same_num(score, num(bs)));
  ck_assert_msg(same_num(rt_ckpt_policy_kth_value(p), num(json_object_get(f, "kth_value"))),
                "%s: kth_value", cname);
  const json_t *bk = json_object_get(f, "best_k_models");
  ck_assert_uint_eq(rt_ckpt_policy_best_k_count(p), json_array_size(bk));
  for (size_t i = 0; i < json_array_size(bk); i++) {
    const char *path = rt_ckpt_policy_best_k(p, i, &score);
    char *want = map_name(json_string_value(json_array_get(json_array_get(bk, i), 0)));
    ck_assert_msg(!strcmp(path, want), "%s: best_k[%zu] %s, want %s", cname, i, path, want);
    ck_assert(same_num(score, num(json_array_get(json_array_get(bk, i), 1))));
    free(want);
  }
  /* the files the policy believes exist, as top-level entries of dirpath */
  json_t *o = state_of(p);
  const json_t *files = json_object_get(o, "files"), *left = json_object_get(c, "files_left");
  size_t nleft = json_array_size(left);
  for (size_t i = 0; i < nleft; i++) {
    const char *lf = json_string_value(json_array_get(left, i));
    char *want = map_name(lf);
    bool found = false;
    for (size_t k = 0; k < json_array_size(files) && !found; k++) {
      const char *g = json_string_value(json_array_get(files, k));
      found = !strcmp(g, want) || (!strncmp(g, want, strlen(want)) && g[strlen(want)] == '/');
    }
    ck_assert_msg(found, "%s: %s left by Lightning is not in the policy's files", cname, want);
    free(want);
  }
  for (size_t k = 0; k < json_array_size(files); k++) {
    const char *g = json_string_value(json_array_get(files, k)) + strlen(DIR "/");
    bool found = false;
    for (size_t i = 0; i < nleft && !found; i++) {
      char *want = map_name(json_string_value(json_array_get(left, i)));
      const char *w = want + strlen(DIR "/");
      found = !strcmp(g, w) || (!strncmp(g, w, strlen(w)) && g[strlen(w)] == '/');
      free(want);
    }
    ck_assert_msg(found, "%s: policy file %s is not left by Lightning", cname, g);
  }
  json_decref(o);
}

static rt_ckpt_policy_t *fresh(const json_t *c) {
  rt_ckpt_settings_t s = case_settings(c);
  rt_ckpt_policy_t *p;
  tu_ok(rt_ckpt_policy_create(&s, &p));
  const json_t *pre = json_object_get(c, "preexisting");
  for (size_t i = 0; i < json_array_size(pre); i++) {
    char *f = map_name(json_string_value(json_array_get(pre, i)));
    rt_ckpt_policy_note_existing(p, f);
    free(f);
  }
  return p;
}

/* Replays a case from event index `from` (log index) on p; restore_at >= 0: after that many
 * events, serialise, restore into a fresh policy and continue there. */
static void replay(const json_t *c, int restore_at) {
  const char *cname = json_string_value(json_object_get(c, "name"));
  const json_t *log = json_object_get(c, "log");
  rt_ckpt_policy_t *p = fresh(c);
  rt_ckpt_actions_t out = {0};
  int nev = 0;
  for (size_t i = 0; i < json_array_size(log);) {
    const json_t *e = json_array_get(log, i);
    ck_assert_msg(is_event(e), "%s: log[%zu] is not an event", cname, i);
    if (nev++ == restore_at) {
      char *js;
      tu_ok(rt_ckpt_policy_state_json(p, &js));
      rt_ckpt_policy_t *q = fresh(c);
      rt_ckpt_restore_t how;
      tu_ok(rt_ckpt_policy_restore(q, js, false, &how));
      ck_assert_int_eq(how, RT_CKPT_RESTORED_ALL);
      char *js2;
      tu_ok(rt_ckpt_policy_state_json(q, &js2));
      ck_assert_str_eq(js, js2); /* the restore is exact */
      free(js);
      free(js2);
      rt_ckpt_policy_free(p);
      p = q;
    }
    rt_ckpt_actions_clear(&out);
    ad_status_t st = feed(p, e, &out);
    size_t next = check_actions(cname, c, log, i, st, &out);
    bool failed = st != NULL;
    ad_status_free(st);
    if (failed) {
      ck_assert_uint_eq(next, json_array_size(log)); /* fit stops at the exception */
      break;
    }
    /* the round trips check the metrics only right after the restore (the plain replay checks
     * every event), which keeps the quadratic test fast */
    if (!json_is_true(json_object_get(e, "sanity")) && (restore_at < 0 || nev == restore_at + 1))
      check_metrics(cname, p, e);
    i = next;
  }
  check_final(cname, p, c);
  rt_ckpt_actions_free(&out);
  rt_ckpt_policy_free(p);
}

static const json_t *find_case(const char *name) {
  const json_t *cases = json_object_get(golden(), "cases");
  for (size_t i = 0; i < json_array_size(cases); i++)
    if (!strcmp(json_string_value(json_object_get(json_array_get(cases, i), "name")), name))
      return json_array_get(cases, i);
  ck_abort_msg("no golden case %s", name);
  return NULL;
}

START_TEST(test_acceptance) {
  /* issue 5: 3 epochs x 7 batches, val_check_interval 4, every_n_train_steps 5, top 2 */
  const json_t *c = find_case("acceptance");
  replay(c, -1);
  size_t nsave = 0;
  const json_t *log = json_object_get(c, "log");
  for (size_t i = 0; i < json_array_size(log); i++) {
    const char *a = json_string_value(json_object_get(json_array_get(log, i), "action"));
    nsave += a && !strcmp(a, "save");
  }
  ck_assert_uint_eq(nsave, 8); /* steps 5, 10, 15, 20: the top-k file and last each */
}
END_TEST

START_TEST(test_golden_cases) {
  const json_t *cases = json_object_get(golden(), "cases");
  ck_assert_uint_ge(json_array_size(cases), 30);
  for (size_t i = 0; i < json_array_size(cases); i++) replay(json_array_get(cases, i), -1);
}
END_TEST

START_TEST(test_round_trip_every_event) {
  const json_t *cases = json_object_get(golden(), "cases");
  for (size_t i = 0; i < json_array_size(cases); i++) {
    const json_t *c = json_array_get(cases, i), *log = json_object_get(c, "log");
    int nev = 0;
    for (size_t j = 0; j < json_array_size(log); j++) nev += is_event(json_array_get(log, j));
    for (int k = 0; k <= nev; k++) replay(c, k);
  }
}
END_TEST

START_TEST(test_lightning_restore) {
  /* The acceptance case up to step 15: restoring as Lightning does keeps the state_dict
   * fields only; another dirpath keeps best_model_path only; another monitor nothing. */
  const json_t *c = find_case("acceptance"), *log = json_object_get(c, "log");
  rt_ckpt_policy_t *p = fresh(c);
  rt_ckpt_actions_t out = {0};
  for (size_t i = 0; i < json_array_size(log); i++) {
    const json_t *e = json_array_get(log, i);
    if (!is_event(e)) continue;
    if (json_integer_value(json_object_get(e, "step")) > 15) break;
    tu_ok(feed(p, e, &out));
  }
  char *js;
  tu_ok(rt_ckpt_policy_state_json(p, &js));
  rt_ckpt_restore_t how;

  rt_ckpt_policy_t *q = fresh(c);
  tu_ok(rt_ckpt_policy_restore(q, js, true, &how));
  ck_assert_int_eq(how, RT_CKPT_RESTORED_ALL);
  ck_assert_str_eq(rt_ckpt_policy_best_model_path(q), rt_ckpt_policy_best_model_path(p));
  ck_assert_str_eq(rt_ckpt_policy_kth_best_model_path(q), rt_ckpt_policy_kth_best_model_path(p));
  ck_assert_str_eq(rt_ckpt_policy_last_model_path(q), rt_ckpt_policy_last_model_path(p));
  ck_assert_uint_eq(rt_ckpt_policy_best_k_count(q), 2);
  /* no callback metrics after a Lightning resume: the step-20 save waits for validation */
  rt_ckpt_actions_clear(&out);
  tu_ok(rt_ckpt_policy_on_train_batch_end(q, 20, 2, false, NULL, 0, &out));
  ck_assert_uint_eq(out.n, 0);
  rt_ckpt_metric_t m[] = {{"val_spearman", 0.25}};
  tu_ok(rt_ckpt_policy_on_validation_end(q, 21, 2, m, 1, &out));
  ck_assert_uint_eq(out.n, 1); /* 0.25 is not in the top 2: only last.safetensors */
  ck_assert_str_eq(out.items[0].path, DIR "/last.safetensors");
  rt_ckpt_policy_free(q);

  rt_ckpt_settings_t s = case_settings(c);
  s.dirpath = "/elsewhere";
  tu_ok(rt_ckpt_policy_create(&s, &q));
  tu_ok(rt_ckpt_policy_restore(q, js, true, &how));
  ck_assert_int_eq(how, RT_CKPT_RESTORED_BEST_PATH);
  ck_assert_str_eq(rt_ckpt_policy_best_model_path(q), rt_ckpt_policy_best_model_path(p));
  ck_assert_uint_eq(rt_ckpt_policy_best_k_count(q), 0);
  rt_ckpt_policy_free(q);

  s = case_settings(c);
  s.monitor = "val_loss";
  tu_ok(rt_ckpt_policy_create(&s, &q));
  tu_ok(rt_ckpt_policy_restore(q, js, true, &how));
  ck_assert_int_eq(how, RT_CKPT_RESTORED_NOTHING);
  ck_assert_str_eq(rt_ckpt_policy_best_model_path(q), "");
  /* a full restore does not check the key */
  tu_ok(rt_ckpt_policy_restore(q, js, false, &how));
  ck_assert_int_eq(how, RT_CKPT_RESTORED_ALL);
  rt_ckpt_policy_free(q);

  /* malformed state is a DATA_LOSS error and leaves the policy untouched */
  q = fresh(c);
  ad_status_t st = rt_ckpt_policy_restore(q, "{\"format\":\"aidomm.ckpt_policy/1\"}", false, &how);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_DATA_LOSS);
  ad_status_free(st);
  st = rt_ckpt_policy_restore(q, "[1,", false, &how);
  ck_assert_int_eq(ad_status_code(st), AD_STATUS_DATA_LOSS);
  ad_status_free(st);
  ck_assert_uint_eq(rt_ckpt_policy_best_k_count(q), 0);
  rt_ckpt_policy_free(q);

  free(js);
  rt_ckpt_actions_free(&out);
  rt_ckpt_policy_free(p);
}
END_TEST

START_TEST(test_resume_path_kept) {
  /* trainer.ckpt_path is never removed, even when it is evicted from the top k */
  const json_t *c = find_case("topk1");
  rt_ckpt_settings_t s = case_settings(c);
  s.resume_path = DIR "/best_val:step=5-val_spearman=0.412.safetensors";
  rt_ckpt_policy_t *p;
  tu_ok(rt_ckpt_policy_create(&s, &p));
  rt_ckpt_actions_t out = {0};
  rt_ckpt_metric_t m[] = {{"val_spearman", 0.4122999906539917f}};
  tu_ok(rt_ckpt_policy_on_validation_end(p, 4, 0, m, 1, &out));
  tu_ok(rt_ckpt_policy_on_train_batch_end(p, 5, 0, false, NULL, 0, &out));
  ck_assert_uint_eq(out.n, 2);
  ck_assert_str_eq(out.items[0].path, s.resume_path);
  m[0].value = 0.9;
  tu_ok(rt_ckpt_policy_on_validation_end(p, 9, 1, m, 1, &out));
  rt_ckpt_actions_clear(&out);
  tu_ok(rt_ckpt_policy_on_train_batch_end(p, 10, 1, false, NULL, 0, &out));
  ck_assert_uint_eq(out.n, 2); /* SAVE step 10, SAVE last: no REMOVE of the resume file */
  ck_assert_int_eq(out.items[0].kind, RT_CKPT_SAVE);
  ck_assert_int_eq(out.items[1].kind, RT_CKPT_SAVE);
  rt_ckpt_actions_free(&out);
  rt_ckpt_policy_free(p);
}
END_TEST

START_TEST(test_invalid_settings) {
  rt_ckpt_settings_t s = rt_ckpt_settings_default();
  rt_ckpt_policy_t *p = NULL;
  s.save_top_k = -2;
  tu_expect_invalid(rt_ckpt_policy_create(&s, &p), "save_top_k=-2", NULL);
  s = rt_ckpt_settings_default();
  s.every_n_train_steps = 5;
  s.every_n_epochs = 1;
  tu_expect_invalid(rt_ckpt_policy_create(&s, &p), "mutually exclusive", NULL);
  s = rt_ckpt_settings_default();
  s.save_top_k = 2;
  tu_expect_invalid(rt_ckpt_policy_create(&s, &p), "monitor=None", NULL);
  ck_assert_ptr_null(p);
  /* None resolution of save_on_train_epoch_end */
  ck_assert(rt_ckpt_resolve_save_on_train_epoch_end(-1, 1, true, true));
  ck_assert(!rt_ckpt_resolve_save_on_train_epoch_end(-1, 1, false, true));
  ck_assert(!rt_ckpt_resolve_save_on_train_epoch_end(-1, -1, true, true));
  ck_assert(!rt_ckpt_resolve_save_on_train_epoch_end(-1, 2, true, false));
  ck_assert(rt_ckpt_resolve_save_on_train_epoch_end(-1, 1, false, false));
  ck_assert(!rt_ckpt_resolve_save_on_train_epoch_end(0, 1, true, true));
  ck_assert(rt_ckpt_resolve_save_on_train_epoch_end(1, -1, false, true));
}
END_TEST

/* Python's format() through a one-field template "{x:SPEC}" (floats) or "{epoch:SPEC}" (ints). */
START_TEST(test_python_format) {
  const json_t *fc = json_object_get(golden(), "format");
  ck_assert_uint_ge(json_array_size(fc), 500);
  for (size_t i = 0; i < json_array_size(fc); i++) {
    const json_t *e = json_array_get(fc, i);
    bool is_int = !strcmp(json_string_value(json_object_get(e, "kind")), "int");
    const char *spec = json_string_value(json_object_get(e, "spec"));
    const char *want = json_string_value(json_object_get(e, "result"));
    double v = num(json_object_get(e, "value"));
    if (json_is_true(json_object_get(e, "neg_nan"))) v = -NAN;
    rt_ckpt_settings_t s = rt_ckpt_settings_default();
    char tmpl[64];
    snprintf(tmpl, sizeof tmpl, "{%s:%s}", is_int ? "epoch" : "x", spec);
    s.filename = tmpl;
    s.auto_insert_metric_name = false;
    s.extension = "";
    rt_ckpt_policy_t *p;
    tu_ok(rt_ckpt_policy_create(&s, &p));
    rt_ckpt_metric_t m = {"x", v};
    rt_ckpt_policy_log(p, &m, 1);
    char *got = NULL;
    ad_status_t st = rt_ckpt_policy_format_name(p, NULL, 0, is_int ? (int64_t)v : 0, 0, &got);
    if (want) {
      ck_assert_msg(st == NULL, "format(%.17g, '%s'): %s", v, spec,
                    st ? ad_status_message(st) : "");
      ck_assert_msg(!strcmp(got, want), "format(%.17g, '%s') = '%s', want '%s'", v, spec, got,
                    want);
    } else {
      ck_assert_msg(st != NULL, "format(%.17g, '%s') = '%s', Python refuses it", v, spec, got);
      ad_status_free(st);
    }
    free(got);
    rt_ckpt_policy_free(p);
  }
}
END_TEST

START_TEST(test_format_checkpoint_name) {
  const json_t *nc = json_object_get(golden(), "names");
  ck_assert_uint_ge(json_array_size(nc), 10);
  for (size_t i = 0; i < json_array_size(nc); i++) {
    const json_t *e = json_array_get(nc, i);
    rt_ckpt_settings_t s = rt_ckpt_settings_default();
    s.dirpath = "/d";
    s.filename = json_string_value(json_object_get(e, "template"));
    s.auto_insert_metric_name = json_is_true(json_object_get(e, "auto_insert"));
    s.extension = ".ckpt";
    rt_ckpt_policy_t *p;
    tu_ok(rt_ckpt_policy_create(&s, &p));
    size_t n;
    rt_ckpt_metric_t *m = metrics_of(json_object_get(e, "metrics"), &n);
    rt_ckpt_policy_log(p, m, n);
    free(m);
    const json_t *ver = json_object_get(e, "ver");
    char *got = NULL;
    ad_status_t st = rt_ckpt_policy_format_name(
        p, NULL, json_integer_value(json_object_get(e, "step")),
        json_integer_value(json_object_get(e, "epoch")),
        json_is_null(ver) ? 0 : (int)json_integer_value(ver), &got);
    const char *want = json_string_value(json_object_get(e, "result"));
    const char *tmpl = s.filename ? s.filename : "(None)";
    if (want) {
      ck_assert_msg(st == NULL, "%s: %s", tmpl, st ? ad_status_message(st) : "");
      char full[512];
      snprintf(full, sizeof full, "/d/%s", want);
      ck_assert_msg(!strcmp(got, full), "%s -> '%s', want '%s'", tmpl, got, full);
    } else {
      ck_assert_msg(st != NULL, "%s -> '%s', Lightning fails", tmpl, got);
      ad_status_free(st);
    }
    free(got);
    rt_ckpt_policy_free(p);
  }
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ckpt_policy");
  TCase *t = tcase_create("lightning");
  tcase_add_test(t, test_acceptance);
  tcase_add_test(t, test_golden_cases);
  tcase_add_test(t, test_round_trip_every_event);
  tcase_add_test(t, test_lightning_restore);
  tcase_add_test(t, test_resume_path_kept);
  tcase_add_test(t, test_invalid_settings);
  tcase_add_test(t, test_python_format);
  tcase_add_test(t, test_format_checkpoint_name);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  int rc = tu_run_suite(suite());
  json_decref(g_doc);
  return rc;
}
