/* Config loading: YAML (libyaml's event parser) -> fe_node_t tree with FILE:LINE:COL on every
 * node and key; dotted command-line overrides; lookup; deterministic YAML emission.
 *
 * Choices (see docs/ARCHITECTURE.md):
 *  - Anchors and aliases are refused outright. Configs never need them, and refusing them makes
 *    alias bombs (billion laughs) a one-line error instead of a resource question.
 *  - Input must be UTF-8 text: a control byte or an invalid UTF-8 sequence is reported at its
 *    place before libyaml sees the file, so binary files give one clear error.
 *  - Duplicate keys are an error (PyYAML silently keeps the last one; that hides typos).
 *  - Every error is one status "FILE:LINE:COL: error: msg" with 1-based line and column
 *    (columns count characters, as libyaml does). */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "frontend/fe_check.h"

#define FE_MAX_FILE_BYTES (16u << 20)
#define FE_MAX_NODES 1000000u
#define FE_MAX_DEPTH 128

/* ---- errors and places ------------------------------------------------------------------- */
typedef struct yl_error {
  int set;
  int empty; /* the failure is "no document at all" */
  int line, col;
  char msg[512];
} yl_error_t;

static void yl_fail(yl_error_t *e, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void yl_fail(yl_error_t *e, int line, int col, const char *fmt, ...) {
  if (e->set) return;
  e->set = 1;
  e->line = line;
  e->col = col;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
}

/* Messages quote user text (keys, values, override arguments); escaping control characters
 * keeps every error on one line. */
void fe_one_line(char *dst, size_t cap, const char *src) {
  if (cap == 0) return;
  size_t j = 0;
  for (const unsigned char *p = (const unsigned char *)src; *p && j + 5 < cap; p++) {
    if (*p == '\n') {
      dst[j++] = '\\';
      dst[j++] = 'n';
    } else if (*p == '\t') {
      dst[j++] = '\\';
      dst[j++] = 't';
    } else if (*p < 0x20 || *p == 0x7F) {
      j += (size_t)snprintf(dst + j, cap - j, "\\x%02x", *p);
    } else {
      dst[j++] = (char)*p;
    }
  }
  dst[j] = 0;
}

ad_status_t fe_status_atv(ad_status_code_t code, const char *file, int line, int col,
                          const char *fmt, va_list ap) {
  char msg[1024], clean[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);
  fe_one_line(clean, sizeof clean, msg);
  return ad_status_at(code, file, line, col, "%s", clean);
}

ad_status_t fe_status_at(ad_status_code_t code, const char *file, int line, int col,
                         const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ad_status_t st = fe_status_atv(code, file, line, col, fmt, ap);
  va_end(ap);
  return st;
}

ad_status_t fe_error_at(const fe_node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ad_status_t st = fe_status_atv(AD_STATUS_INVALID_ARGUMENT, n->file, n->line, n->col, fmt, ap);
  va_end(ap);
  return st;
}

void fe_key_place(const fe_node_t *map, uint32_t i, const char **file, int *line, int *col) {
  if (map->key_line[i] > 0) {
    *file = map->key_file && map->key_file[i] ? map->key_file[i] : map->file;
    *line = map->key_line[i];
    *col = map->key_col[i];
  } else { /* created by an override: key_col holds the override's position */
    *file = FE_CMDLINE_FILE;
    *line = 1;
    *col = map->key_col[i];
  }
}

ad_status_t fe_error_at_key(const fe_node_t *map, uint32_t i, const char *fmt, ...) {
  const char *file;
  int line, col;
  fe_key_place(map, i, &file, &line, &col);
  va_list ap;
  va_start(ap, fmt);
  ad_status_t st = fe_status_atv(AD_STATUS_INVALID_ARGUMENT, file, line, col, fmt, ap);
  va_end(ap);
  return st;
}

int64_t fe_map_find(const fe_node_t *map, const char *key) {
  if (!map || map->kind != FE_NODE_MAP) return -1;
  for (uint32_t i = 0; i < map->n; i++)
    if (strcmp(map->keys[i], key) == 0) return i;
  return -1;
}

const char *fe_node_kind_name(const fe_node_t *n) {
  switch (n->kind) {
    case FE_NODE_MAP: return "a mapping";
    case FE_NODE_SEQ: return "a list";
    default: return "a scalar";
  }
}

/* ---- pre-scan: text, UTF-8, no control bytes ---------------------------------------------- */
/* Mirrors libyaml's printable set so that anything passing here passes its reader. */
static bool printable(uint32_t c) {
  return c == 0x09 || c == 0x0A || c == 0x0D || (c >= 0x20 && c <= 0x7E) || c == 0x85 ||
         (c >= 0xA0 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD && c != 0xFEFF) ||
         (c >= 0x10000 && c <= 0x10FFFF);
}

static bool prescan(const uint8_t *p, size_t n, yl_error_t *e) {
  size_t i = 0;
  if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) i = 3; /* UTF-8 BOM */
  int line = 1, col = 1;
  while (i < n) {
    uint8_t b = p[i];
    uint32_t c;
    size_t w;
    if (b < 0x80) {
      c = b;
      w = 1;
    } else {
      w = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
      bool ok = w != 0 && i + w <= n;
      c = w == 2 ? (b & 0x1Fu) : w == 3 ? (b & 0x0Fu) : (b & 0x07u);
      for (size_t k = 1; ok && k < w; k++) {
        if ((p[i + k] & 0xC0) != 0x80) ok = false;
        c = (c << 6) | (p[i + k] & 0x3Fu);
      }
      /* Overlong encodings and surrogates are invalid UTF-8. */
      if (ok && ((w == 2 && c < 0x80) || (w == 3 && c < 0x800) || (w == 4 && c < 0x10000) ||
                 (c >= 0xD800 && c <= 0xDFFF)))
        ok = false;
      if (!ok) {
        yl_fail(e, line, col, "not a YAML text file: invalid UTF-8 byte 0x%02x", b);
        return false;
      }
    }
    if (!printable(c)) {
      yl_fail(e, line, col, "not a YAML text file: control character 0x%02x", (unsigned)c);
      return false;
    }
    if (c == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
    i += w;
  }
  return true;
}

/* Byte offset of a libyaml mark (0-based line, column in characters), or n. */
static size_t mark_offset(const uint8_t *p, size_t n, size_t line, size_t column) {
  size_t i = 0;
  if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) i = 3;
  for (size_t l = 0; l < line && i < n; i++)
    if (p[i] == '\n') l++;
  for (size_t c = 0; c < column && i < n; c++) {
    i++;
    while (i < n && (p[i] & 0xC0) == 0x80) i++;
  }
  return i;
}

/* ---- tree building -------------------------------------------------------------------------- */
typedef struct dup_entry {
  const fe_node_t *map;
  const char *key;
} dup_entry_t;

typedef struct builder {
  ad_arena_t *arena;
  const char *file;
  yl_error_t *err;
  uint32_t nnodes;
  /* Open containers; for a map, `pending` is the key waiting for its value. */
  struct frame {
    fe_node_t *node;
    uint32_t cap;
    const char *pending;
    int pending_line, pending_col;
  } stack[FE_MAX_DEPTH];
  int depth;
  /* (map, key) set for duplicate detection, open addressing. */
  dup_entry_t *dups;
  size_t ndups, capdups;
  fe_node_t *root;
} builder_t;

static uint64_t dup_hash(const fe_node_t *map, const char *key) {
  uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)map;
  for (const unsigned char *s = (const unsigned char *)key; *s; s++)
    h = (h ^ *s) * 1099511628211ull;
  return h ^ (h >> 29);
}

/* Returns false when (map, key) was already present. */
static bool dup_insert(builder_t *b, const fe_node_t *map, const char *key) {
  if ((b->ndups + 1) * 2 > b->capdups) {
    size_t ncap = b->capdups ? b->capdups * 2 : 64;
    dup_entry_t *nd = calloc(ncap, sizeof *nd);
    if (!nd) abort(); /* compile-time OOM, as the arena does */
    for (size_t i = 0; i < b->capdups; i++)
      if (b->dups[i].map) {
        size_t j = dup_hash(b->dups[i].map, b->dups[i].key) & (ncap - 1);
        while (nd[j].map) j = (j + 1) & (ncap - 1);
        nd[j] = b->dups[i];
      }
    free(b->dups);
    b->dups = nd;
    b->capdups = ncap;
  }
  size_t j = dup_hash(map, key) & (b->capdups - 1);
  while (b->dups[j].map) {
    if (b->dups[j].map == map && strcmp(b->dups[j].key, key) == 0) return false;
    j = (j + 1) & (b->capdups - 1);
  }
  b->dups[j] = (dup_entry_t){map, key};
  b->ndups++;
  return true;
}

static fe_node_t *new_node(builder_t *b, fe_node_kind_t kind, const yaml_mark_t *m) {
  if (++b->nnodes > FE_MAX_NODES) {
    yl_fail(b->err, (int)m->line + 1, (int)m->column + 1,
            "config too large: more than %u YAML nodes", FE_MAX_NODES);
    return NULL;
  }
  fe_node_t *n = ad_arena_alloc(b->arena, sizeof *n);
  n->kind = kind;
  n->file = b->file;
  n->line = (int)m->line + 1;
  n->col = (int)m->column + 1;
  return n;
}

static void container_push(ad_arena_t *a, fe_node_t *c, uint32_t *cap, const char *key, int kl,
                           int kc, fe_node_t *item) {
  if (c->n == *cap) {
    uint32_t ncap = *cap ? *cap * 2 : 4;
    fe_node_t **items = ad_arena_alloc(a, sizeof *items * ncap);
    if (c->n) memcpy(items, c->items, sizeof *items * c->n);
    c->items = items;
    if (c->kind == FE_NODE_MAP) {
      const char **keys = ad_arena_alloc(a, sizeof *keys * ncap);
      int *kline = ad_arena_alloc(a, sizeof *kline * ncap);
      int *kcol = ad_arena_alloc(a, sizeof *kcol * ncap);
      if (c->n) {
        memcpy(keys, c->keys, sizeof *keys * c->n);
        memcpy(kline, c->key_line, sizeof *kline * c->n);
        memcpy(kcol, c->key_col, sizeof *kcol * c->n);
      }
      c->keys = keys;
      c->key_line = kline;
      c->key_col = kcol;
      if (c->key_file) {
        const char **kfile = ad_arena_alloc(a, sizeof *kfile * ncap);
        if (c->n) memcpy(kfile, c->key_file, sizeof *kfile * c->n);
        c->key_file = kfile;
      }
    }
    *cap = ncap;
  }
  if (c->kind == FE_NODE_MAP) {
    c->keys[c->n] = key;
    c->key_line[c->n] = kl;
    c->key_col[c->n] = kc;
    if (c->key_file) c->key_file[c->n] = c->file;
  }
  c->items[c->n++] = item;
}

/* Attaches a finished scalar or a freshly opened container to the open container. Scalars in
 * key position become the pending key instead. */
static bool attach(builder_t *b, fe_node_t *n) {
  if (b->depth == 0) {
    if (b->root) { /* cannot happen within one document; guarded for safety */
      yl_fail(b->err, n->line, n->col, "more than one top-level node");
      return false;
    }
    b->root = n;
    return true;
  }
  struct frame *f = &b->stack[b->depth - 1];
  if (f->node->kind == FE_NODE_SEQ) {
    container_push(b->arena, f->node, &f->cap, NULL, 0, 0, n);
    return true;
  }
  if (!f->pending) {
    if (n->kind != FE_NODE_SCALAR) {
      yl_fail(b->err, n->line, n->col, "a mapping key must be a string, not %s",
              fe_node_kind_name(n));
      return false;
    }
    if (!dup_insert(b, f->node, n->scalar)) {
      int64_t first = fe_map_find(f->node, n->scalar);
      yl_fail(b->err, n->line, n->col, "duplicate key '%s' (first given at line %d, column %d)",
              n->scalar, first >= 0 ? f->node->key_line[first] : 0,
              first >= 0 ? f->node->key_col[first] : 0);
      return false;
    }
    f->pending = n->scalar;
    f->pending_line = n->line;
    f->pending_col = n->col;
    return true;
  }
  container_push(b->arena, f->node, &f->cap, f->pending, f->pending_line, f->pending_col, n);
  f->pending = NULL;
  return true;
}

static bool check_anchor_tag(builder_t *b, const yaml_event_t *ev, const yaml_char_t *anchor,
                             const yaml_char_t *tag, bool scalar, int *quoted) {
  int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
  if (anchor) {
    yl_fail(b->err, line, col,
            "YAML anchors and aliases are not supported (anchor '&%s'); write the value out",
            (const char *)anchor);
    return false;
  }
  if (!tag) return true;
  const char *t = (const char *)tag;
  if (scalar) {
    if (strcmp(t, YAML_STR_TAG) == 0 || strcmp(t, "!") == 0) {
      *quoted = 1; /* explicitly a string */
      return true;
    }
    if (strcmp(t, YAML_INT_TAG) == 0 || strcmp(t, YAML_FLOAT_TAG) == 0 ||
        strcmp(t, YAML_BOOL_TAG) == 0 || strcmp(t, YAML_NULL_TAG) == 0)
      return true; /* the value is checked against the schema later */
  } else if (strcmp(t, YAML_SEQ_TAG) == 0 || strcmp(t, YAML_MAP_TAG) == 0) {
    return true;
  }
  const char *core = "tag:yaml.org,2002:";
  if (strncmp(t, core, strlen(core)) == 0)
    yl_fail(b->err, line, col, "unsupported YAML tag '!!%s'", t + strlen(core));
  else
    yl_fail(b->err, line, col, "unsupported YAML tag '%s'", t);
  return false;
}

static void describe_parser_error(const yaml_parser_t *p, const uint8_t *text, size_t len,
                                  yl_error_t *e) {
  if (p->error == YAML_READER_ERROR) {
    /* The pre-scan catches what the reader rejects; keep a placed message anyway. */
    int line = 1, col = 1;
    for (size_t i = 0; i < p->problem_offset && i < len; i++) {
      if (text[i] == '\n') {
        line++;
        col = 1;
      } else if ((text[i] & 0xC0) != 0x80) {
        col++;
      }
    }
    yl_fail(e, line, col, "not a YAML text file: %s", p->problem ? p->problem : "bad encoding");
    return;
  }
  int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
  size_t off = mark_offset(text, len, p->problem_mark.line, p->problem_mark.column);
  const char *problem = p->problem ? p->problem : "syntax error";
  if (p->error == YAML_SCANNER_ERROR && off < len && text[off] == '\t') {
    yl_fail(e, line, col, "tab character in indentation; YAML indents with spaces only");
    return;
  }
  const char *hint = "";
  if ((p->context && strstr(p->context, "block")) || strstr(problem, "not allowed in this context"))
    hint = " (check the indentation)";
  if (p->context)
    yl_fail(e, line, col, "invalid YAML: %s %s that starts at line %d, column %d%s", problem,
            p->context, (int)p->context_mark.line + 1, (int)p->context_mark.column + 1, hint);
  else
    yl_fail(e, line, col, "invalid YAML: %s%s", problem, hint);
}

/* Parses one YAML document into a tree. The caller checks the root's kind. */
static bool parse_yaml(ad_arena_t *arena, const char *file, const uint8_t *text, size_t len,
                       fe_node_t **out, yl_error_t *e) {
  if (!prescan(text, len, e)) return false;
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    yl_fail(e, 1, 1, "out of memory initialising the YAML parser");
    return false;
  }
  yaml_parser_set_input_string(&parser, text, len);
  builder_t b;
  memset(&b, 0, sizeof b);
  b.arena = arena;
  b.file = file;
  b.err = e;
  int ndocs = 0;
  bool done = false, ok = true;
  while (!done && ok) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      describe_parser_error(&parser, text, len, e);
      ok = false;
      break;
    }
    const yaml_mark_t *m = &ev.start_mark;
    switch (ev.type) {
      case YAML_STREAM_END_EVENT: done = true; break;
      case YAML_DOCUMENT_START_EVENT:
        if (++ndocs > 1) {
          yl_fail(e, (int)m->line + 1, (int)m->column + 1,
                  "a config holds one YAML document; found a second one");
          ok = false;
        }
        break;
      case YAML_ALIAS_EVENT:
        yl_fail(e, (int)m->line + 1, (int)m->column + 1,
                "YAML anchors and aliases are not supported (alias '*%s'); write the value out",
                (const char *)ev.data.alias.anchor);
        ok = false;
        break;
      case YAML_SCALAR_EVENT: {
        int quoted = ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        if (!check_anchor_tag(&b, &ev, ev.data.scalar.anchor, ev.data.scalar.tag, true, &quoted)) {
          ok = false;
          break;
        }
        if (strlen((const char *)ev.data.scalar.value) != ev.data.scalar.length) {
          yl_fail(e, (int)m->line + 1, (int)m->column + 1, "NUL character in a string");
          ok = false;
          break;
        }
        fe_node_t *n = new_node(&b, FE_NODE_SCALAR, m);
        if (!n) {
          ok = false;
          break;
        }
        n->scalar =
            ad_arena_strndup(arena, (const char *)ev.data.scalar.value, ev.data.scalar.length);
        n->quoted = quoted;
        ok = attach(&b, n);
        break;
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT: {
        bool is_map = ev.type == YAML_MAPPING_START_EVENT;
        int dummy = 0;
        const yaml_char_t *anchor =
            is_map ? ev.data.mapping_start.anchor : ev.data.sequence_start.anchor;
        const yaml_char_t *tag = is_map ? ev.data.mapping_start.tag : ev.data.sequence_start.tag;
        if (!check_anchor_tag(&b, &ev, anchor, tag, false, &dummy)) {
          ok = false;
          break;
        }
        if (b.depth == FE_MAX_DEPTH) {
          yl_fail(e, (int)m->line + 1, (int)m->column + 1, "nesting deeper than %d levels",
                  FE_MAX_DEPTH);
          ok = false;
          break;
        }
        fe_node_t *n = new_node(&b, is_map ? FE_NODE_MAP : FE_NODE_SEQ, m);
        if (!n || !attach(&b, n)) {
          ok = false;
          break;
        }
        b.stack[b.depth++] = (struct frame){.node = n};
        break;
      }
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        if (b.depth > 0) b.depth--;
        break;
      default: break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  free(b.dups);
  if (ok && !b.root) {
    e->empty = 1;
    yl_fail(e, 1, 1, "empty YAML: expected a mapping of top-level keys");
    ok = false;
  }
  if (ok) *out = b.root;
  return ok;
}

static bool is_null_text(const char *s) {
  return !s[0] || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
         strcmp(s, "NULL") == 0;
}

/* ---- overrides ------------------------------------------------------------------------------ */
static fe_node_t *cmdline_node(ad_arena_t *a, fe_node_kind_t kind, int argpos) {
  fe_node_t *n = ad_arena_alloc(a, sizeof *n);
  n->kind = kind;
  n->file = FE_CMDLINE_FILE;
  n->line = 1;
  n->col = argpos;
  return n;
}

static void set_places(fe_node_t *n, int argpos) {
  n->file = FE_CMDLINE_FILE;
  n->line = 1;
  n->col = argpos;
  if (n->kind == FE_NODE_MAP)
    for (uint32_t i = 0; i < n->n; i++) {
      n->key_line[i] = 0; /* fe_key_place: the command line */
      n->key_col[i] = argpos;
    }
  for (uint32_t i = 0; i < n->n && n->kind != FE_NODE_SCALAR; i++) set_places(n->items[i], argpos);
}

/* Capacity of a map's arrays is not stored, so adding a key copies them (overrides are few). */
static void map_append(ad_arena_t *a, fe_node_t *map, const char *key, int argpos,
                       fe_node_t *value) {
  uint32_t cap = map->n;
  container_push(a, map, &cap, ad_arena_strdup(a, key), 0, argpos, value);
}

static bool is_index(const char *s, uint64_t *out) {
  if (!s[0] || strlen(s) > 9) return false;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  *out = v;
  return true;
}

/* Length of the override path before segment k (segments are NUL-split copies inside p). */
static int prefix_len(const char *p, const char *const *segs, int k) {
  return k > 0 ? (int)(segs[k - 1] + strlen(segs[k - 1]) - p) : 0;
}

/* `--x.class_path NEW` on a node holding another class: as jsonargparse, the init_args the new
 * class also takes are kept and the others dropped (they belonged to the old class). Unknown
 * new classes keep everything, so the checker reports the class at its place. */
static void keep_init_args_of(ad_arena_t *a, fe_node_t *node, const fe_node_t *cp) {
  int64_t ci = fe_map_find(node, "class_path"), ii = fe_map_find(node, "init_args");
  if (ci < 0 || ii < 0 || cp->kind != FE_NODE_SCALAR) return;
  const fe_node_t *old = node->items[ci];
  fe_node_t *init = node->items[ii];
  const fe_class_t *cls = fe_find_class(cp->scalar);
  if (!cls || init->kind != FE_NODE_MAP || old->kind != FE_NODE_SCALAR ||
      fe_find_class(old->scalar) == cls)
    return;
  fe_node_t *kept = ad_arena_alloc(a, sizeof *kept);
  *kept = *init;
  kept->n = 0;
  uint32_t cap = 0;
  kept->keys = NULL;
  kept->items = NULL;
  kept->key_line = kept->key_col = NULL;
  kept->key_file = NULL;
  for (uint32_t i = 0; i < init->n; i++)
    if (fe_class_arg_index(cls, init->keys[i]) >= 0) {
      const char *f;
      int l, c;
      fe_key_place(init, i, &f, &l, &c);
      container_push(a, kept, &cap, init->keys[i], init->key_line[i], init->key_col[i],
                     init->items[i]);
      if (init->key_file) {
        if (!kept->key_file) {
          kept->key_file = ad_arena_alloc(a, sizeof *kept->key_file * cap);
          for (uint32_t j = 0; j < kept->n; j++) kept->key_file[j] = init->file;
        }
        kept->key_file[kept->n - 1] = f;
      }
    }
  node->items[ii] = kept;
}

/* "MLPAdapter", "modelgenerator.adapters.MLPAdapter": a dotted identifier starting with a
 * letter (numbers, paths and free text are not class names). */
static bool is_class_name(const char *s) {
  if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == '.'))
      return false;
  /* Only registered classes: anything else stays a scalar, with the usual error. */
  if (fe_find_class(s)) return true;
  for (size_t i = 0; i < fe_class_count(); i++) {
    const char *dot = strrchr(fe_class_at(i)->class_path, '.');
    if (dot && strcmp(dot + 1, s) == 0) return true;
  }
  return false;
}

static ad_status_t apply_override(fe_config_t *c, const char *arg, const char *path, size_t pathlen,
                                  const char *value, int argpos) {
  ad_arena_t *a = &c->arena;
  if (pathlen == 0)
    return fe_status_at(AD_STATUS_INVALID_ARGUMENT, FE_CMDLINE_FILE, 1, argpos,
                        "override '%s' names no key", arg);
  char *p = ad_arena_strndup(a, path, pathlen);
  /* Split into segments. */
  const char *segs[64];
  int nseg = 0;
  for (char *s = p;;) {
    char *dot = strchr(s, '.');
    if (dot) *dot = 0;
    if (!s[0])
      return fe_status_at(AD_STATUS_INVALID_ARGUMENT, FE_CMDLINE_FILE, 1, argpos,
                          "override '%s' has an empty key segment", arg);
    if (nseg == 64)
      return fe_status_at(AD_STATUS_INVALID_ARGUMENT, FE_CMDLINE_FILE, 1, argpos,
                          "override '%s' is nested too deeply", arg);
    segs[nseg++] = s;
    if (!dot) break;
    s = dot + 1;
  }
  /* The value is a YAML node of its own (scalars mostly; flow lists and maps work too). */
  yl_error_t e = {0};
  fe_node_t *val = NULL;
  if (!parse_yaml(a, FE_CMDLINE_FILE, (const uint8_t *)value, strlen(value), &val, &e)) {
    if (e.empty) { /* "" and comments-only: a null value */
      val = cmdline_node(a, FE_NODE_SCALAR, argpos);
      val->scalar = "";
    } else {
      return fe_status_at(AD_STATUS_INVALID_ARGUMENT, FE_CMDLINE_FILE, 1, argpos,
                          "override '%s': invalid value '%s': %s", arg, value, e.msg);
    }
  }
  set_places(val, argpos);

  fe_node_t *cur = c->root;
  for (int k = 0; k < nseg; k++) {
    bool last = k == nseg - 1;
    const char *seg = segs[k];
    if (cur->kind == FE_NODE_SEQ) {
      uint64_t idx;
      if (!is_index(seg, &idx) && ((seg[0] >= '0' && seg[0] <= '9') || seg[0] == '-'))
        return fe_status_at(AD_STATUS_INVALID_ARGUMENT, cur->file, cur->line, cur->col,
                            "override '%s': '%s' is not a valid index for the list '%.*s'", arg,
                            seg, prefix_len(p, segs, k), path);
      if (!is_index(seg, &idx)) {
        /* jsonargparse applies a field of a list of classes to its last element (the form
         * `--trainer.callbacks.dirpath X` in the seed's launch scripts). */
        if (cur->n == 0)
          return fe_status_at(AD_STATUS_INVALID_ARGUMENT, cur->file, cur->line, cur->col,
                              "override '%s': '%.*s' is an empty list", arg, prefix_len(p, segs, k),
                              path);
        cur = cur->items[cur->n - 1];
        k--; /* the same segment applies to the element */
        continue;
      }
      if (idx >= cur->n)
        return fe_status_at(AD_STATUS_INVALID_ARGUMENT, cur->file, cur->line, cur->col,
                            "override '%s': index %llu is out of range (the list has %u "
                            "item%s)",
                            arg, (unsigned long long)idx, cur->n, cur->n == 1 ? "" : "s");
      if (last) {
        cur->items[idx] = val;
        return AD_OK;
      }
      cur = cur->items[idx];
      continue;
    }
    if (cur->kind == FE_NODE_SCALAR)
      return fe_status_at(AD_STATUS_INVALID_ARGUMENT, cur->file, cur->line, cur->col,
                          "override '%s': '%.*s' is a scalar ('%s'), not a mapping, so it has "
                          "no key '%s'",
                          arg, prefix_len(p, segs, k), path, cur->scalar, seg);
    int64_t i = fe_map_find(cur, seg);
    /* jsonargparse lets overrides skip `init_args` under a class_path (`--data.batch_size 1`). */
    if (i < 0 && cur != c->root && strcmp(seg, "class_path") != 0 &&
        strcmp(seg, "init_args") != 0 && fe_map_find(cur, "class_path") >= 0) {
      int64_t ia = fe_map_find(cur, "init_args");
      if (ia < 0) {
        map_append(a, cur, "init_args", argpos, cmdline_node(a, FE_NODE_MAP, argpos));
        ia = cur->n - 1;
      } else if (cur->items[ia]->kind == FE_NODE_SCALAR && is_null_text(cur->items[ia]->scalar) &&
                 !cur->items[ia]->quoted) {
        cur->items[ia] = cmdline_node(a, FE_NODE_MAP, argpos);
      }
      cur = cur->items[ia];
      k--;
      continue;
    }
    if (last) {
      if (i >= 0 && strcmp(seg, "class_path") == 0) keep_init_args_of(a, cur, val);
      if (i < 0)
        map_append(a, cur, seg, argpos, val);
      else
        cur->items[i] = val;
      return AD_OK;
    }
    if (i < 0) {
      map_append(a, cur, seg, argpos, cmdline_node(a, FE_NODE_MAP, argpos));
      i = cur->n - 1;
    } else if (cur->items[i]->kind == FE_NODE_SCALAR && !cur->items[i]->quoted &&
               is_null_text(cur->items[i]->scalar)) {
      /* null means "nothing here yet": a nested key fills it in. */
      cur->items[i] = cmdline_node(a, FE_NODE_MAP, argpos);
    } else if (strcmp(seg, "class_path") != 0 && cur->items[i]->kind == FE_NODE_SCALAR &&
               !cur->items[i]->quoted && is_class_name(cur->items[i]->scalar)) {
      /* A class given by name (`--model.adapter MLPPoolAdapter`, `adapter: MLPAdapter`) takes
       * init_args overrides after it, as in jsonargparse. */
      fe_node_t *m = cmdline_node(a, FE_NODE_MAP, argpos);
      map_append(a, m, "class_path", cur->items[i]->col, cur->items[i]);
      m->key_line[0] = cur->items[i]->line;
      m->file = cur->items[i]->file;
      cur->items[i] = m;
    }
    cur = cur->items[i];
  }
  return AD_OK; /* not reached: the last segment returns above */
}

static ad_status_t apply_overrides(fe_config_t *c, int n, char *const *args, const int *pos) {
  for (int i = 0; i < n; i++) {
    const char *arg = args[i];
    int argpos = pos ? pos[i] : i + 1;
    if (!arg || strncmp(arg, "--", 2) != 0)
      return fe_status_at(AD_STATUS_INVALID_ARGUMENT, FE_CMDLINE_FILE, 1, argpos,
                          "expected an override '--key.path value', got '%s'", arg ? arg : "");
    const char *path = arg + 2;
    const char *eq = strchr(path, '=');
    const char *value;
    size_t pathlen;
    if (eq) {
      pathlen = (size_t)(eq - path);
      value = eq + 1;
    } else {
      pathlen = strlen(path);
      if (i + 1 >= n)
        return fe_status_at(AD_STATUS_INVALID_ARGUMENT, FE_CMDLINE_FILE, 1, argpos,
                            "override '%s' needs a value", arg);
      value = args[++i];
    }
    char shown[256];
    snprintf(shown, sizeof shown, "--%.*s", (int)(pathlen < 200 ? pathlen : 200), path);
    AD_RETURN_IF_ERROR(apply_override(c, shown, path, pathlen, value, argpos));
  }
  return AD_OK;
}

/* ---- merging (repeated --config) --------------------------------------------------------- */
static const char *class_path_of(const fe_node_t *n) {
  int64_t i = fe_map_find(n, "class_path");
  if (i < 0 || n->items[i]->kind != FE_NODE_SCALAR) return NULL;
  return n->items[i]->scalar;
}

/* Later files override earlier ones as in jsonargparse: maps merge key by key; anything else,
 * and a class whose class_path changes, is replaced whole. */
static void merge_into(ad_arena_t *a, fe_node_t *dst, const fe_node_t *src) {
  for (uint32_t i = 0; i < src->n; i++) {
    const char *sf;
    int sl, sc;
    fe_key_place(src, i, &sf, &sl, &sc);
    int64_t j = fe_map_find(dst, src->keys[i]);
    fe_node_t *sv = src->items[i];
    if (j < 0) {
      if (!dst->key_file) {
        dst->key_file = ad_arena_alloc(a, sizeof *dst->key_file * (dst->n ? dst->n : 1));
        for (uint32_t k = 0; k < dst->n; k++) dst->key_file[k] = dst->file;
      }
      uint32_t cap = dst->n;
      container_push(a, dst, &cap, src->keys[i], sl, sc, sv);
      dst->key_file[dst->n - 1] = sf;
      continue;
    }
    fe_node_t *dv = dst->items[j];
    const char *dcp = dv->kind == FE_NODE_MAP ? class_path_of(dv) : NULL;
    const char *scp = sv->kind == FE_NODE_MAP ? class_path_of(sv) : NULL;
    if (dv->kind == FE_NODE_MAP && sv->kind == FE_NODE_MAP && !(dcp && scp && strcmp(dcp, scp)))
      merge_into(a, dv, sv);
    else
      dst->items[j] = sv;
  }
}

/* Parses YAML text already in memory into the arena. */
static ad_status_t parse_tree(ad_arena_t *arena, const char *file, const uint8_t *text, size_t len,
                              fe_node_t **out) {
  yl_error_t e = {0};
  fe_node_t *root = NULL;
  bool ok = parse_yaml(arena, file, text, len, &root, &e);
  if (!ok) return fe_status_at(AD_STATUS_INVALID_ARGUMENT, file, e.line, e.col, "%s", e.msg);
  if (root->kind != FE_NODE_MAP)
    return fe_status_at(AD_STATUS_INVALID_ARGUMENT, file, root->line, root->col,
                        "a config is a mapping of top-level keys (seed_everything, "
                        "trainer, model, ...), not %s",
                        fe_node_kind_name(root));
  *out = root;
  return AD_OK;
}

/* Reads and parses one config file into the arena. */
static ad_status_t load_tree(ad_arena_t *arena, const char *path, fe_node_t **out) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "cannot open config '%s': %s", path,
                          strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fclose(f);
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "config '%s' is not a regular file", path);
  }
  if ((uint64_t)sb.st_size > FE_MAX_FILE_BYTES) {
    fclose(f);
    return fe_status_at(AD_STATUS_INVALID_ARGUMENT, path, 1, 1,
                        "config too large (%lld bytes; the limit is %u)", (long long)sb.st_size,
                        FE_MAX_FILE_BYTES);
  }
  size_t len = (size_t)sb.st_size;
  uint8_t *text = malloc(len + 1);
  if (!text) {
    fclose(f);
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory reading '%s'", path);
  }
  size_t got = fread(text, 1, len, f);
  int rerr = ferror(f);
  fclose(f);
  if (got != len || rerr) {
    free(text);
    return ad_status_make(AD_STATUS_IO, "cannot read config '%s'", path);
  }
  text[len] = 0;
  const char *file = ad_arena_strdup(arena, path);
  ad_status_t st = parse_tree(arena, file, text, len, out);
  free(text);
  return st;
}

/* ---- public: load, free, get -------------------------------------------------------------- */
ad_status_t fe_config_load_files(int npaths, const char *const *paths, int noverrides,
                                 char *const *overrides, fe_config_t **out) {
  *out = NULL;
  if (npaths < 1)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "no config file given");
  fe_config_t *c = calloc(1, sizeof *c);
  if (!c) return ad_status_make(AD_STATUS_RESOURCE, "out of memory loading '%s'", paths[0]);
  ad_arena_init(&c->arena, 0);
  c->path = ad_arena_strdup(&c->arena, paths[0]);
  c->warn_stream = stderr;
  ad_status_t st = AD_OK;
  for (int i = 0; i < npaths && !st; i++) {
    fe_node_t *root = NULL;
    st = load_tree(&c->arena, paths[i], &root);
    if (st) break;
    if (!c->root)
      c->root = root;
    else
      merge_into(&c->arena, c->root, root);
  }
  if (!st) st = apply_overrides(c, noverrides, overrides, NULL);
  if (st) {
    fe_config_free(c);
    return st;
  }
  *out = c;
  return AD_OK;
}

ad_status_t fe_config_load_text(const char *name, const char *text, size_t len, int noverrides,
                                char *const *overrides, const int *argpos, fe_config_t **out) {
  *out = NULL;
  if (len > FE_MAX_FILE_BYTES)
    return fe_status_at(AD_STATUS_INVALID_ARGUMENT, name, 1, 1,
                        "config too large (%zu bytes; the limit is %u)", len, FE_MAX_FILE_BYTES);
  fe_config_t *c = calloc(1, sizeof *c);
  if (!c) return ad_status_make(AD_STATUS_RESOURCE, "out of memory loading '%s'", name);
  ad_arena_init(&c->arena, 0);
  c->path = ad_arena_strdup(&c->arena, name);
  c->warn_stream = stderr;
  ad_status_t st = parse_tree(&c->arena, c->path, (const uint8_t *)text, len, &c->root);
  if (!st) st = apply_overrides(c, noverrides, overrides, argpos);
  if (st) {
    fe_config_free(c);
    return st;
  }
  *out = c;
  return AD_OK;
}

ad_status_t fe_config_load(const char *path, int noverrides, char *const *overrides,
                           fe_config_t **out) {
  return fe_config_load_files(1, &path, noverrides, overrides, out);
}

void fe_config_free(fe_config_t *c) {
  if (!c) return;
  ad_arena_free(&c->arena);
  free(c);
}

const fe_node_t *fe_config_get(const fe_config_t *c, const char *dotted) {
  if (!c || !c->root || !dotted) return NULL;
  const fe_node_t *cur = c->root;
  const char *s = dotted;
  while (cur) {
    const char *dot = strchr(s, '.');
    size_t n = dot ? (size_t)(dot - s) : strlen(s);
    char seg[256];
    if (n == 0 || n >= sizeof seg) return NULL;
    memcpy(seg, s, n);
    seg[n] = 0;
    uint64_t idx;
    if (cur->kind == FE_NODE_MAP) {
      int64_t i = fe_map_find(cur, seg);
      cur = i >= 0 ? cur->items[i] : NULL;
    } else if (cur->kind == FE_NODE_SEQ && is_index(seg, &idx)) {
      cur = idx < cur->n ? cur->items[idx] : NULL;
    } else {
      return NULL;
    }
    if (!dot) return cur;
    s = dot + 1;
  }
  return NULL;
}

/* ---- scalar interpretation ------------------------------------------------------------------ */
bool fe_scalar_is_null(const fe_node_t *n) {
  return n && n->kind == FE_NODE_SCALAR && !n->quoted && is_null_text(n->scalar);
}

/* Copies a numeric literal without '_' separators (PyYAML 1.1 accepts 196_608). */
static bool strip_underscores(const char *s, char *buf, size_t cap) {
  size_t j = 0;
  for (size_t i = 0; s[i]; i++) {
    if (s[i] == '_') {
      /* A separator sits between digits. */
      if (i == 0 || !s[i + 1] || !(s[i - 1] >= '0' && s[i - 1] <= '9') ||
          !(s[i + 1] >= '0' && s[i + 1] <= '9'))
        return false;
      continue;
    }
    if (j + 1 >= cap) return false;
    buf[j++] = s[i];
  }
  buf[j] = 0;
  return j > 0;
}

bool fe_scalar_int(const fe_node_t *n, int64_t *out) {
  if (!n || n->kind != FE_NODE_SCALAR || n->quoted) return false;
  char buf[64];
  if (!strip_underscores(n->scalar, buf, sizeof buf)) return false;
  const char *p = buf;
  if (*p == '+' || *p == '-') p++;
  if (!*p) return false;
  for (const char *q = p; *q; q++)
    if (*q < '0' || *q > '9') return false;
  errno = 0;
  char *end;
  long long v = strtoll(buf, &end, 10);
  if (errno || *end) return false;
  *out = v;
  return true;
}

bool fe_scalar_float(const fe_node_t *n, double *out) {
  if (!n || n->kind != FE_NODE_SCALAR || n->quoted) return false;
  char buf[128];
  if (!strip_underscores(n->scalar, buf, sizeof buf)) return false;
  /* Decimal forms only: strtod would also take hex floats, "inf" and "nan". */
  for (const char *q = buf; *q; q++)
    if (!strchr("0123456789+-.eE", *q)) return false;
  errno = 0;
  char *end;
  double v = strtod(buf, &end);
  if (*end || end == buf || errno == ERANGE || v != v || v - v != 0) return false;
  *out = v;
  return true;
}

bool fe_scalar_bool(const fe_node_t *n, bool *out) {
  if (!n || n->kind != FE_NODE_SCALAR || n->quoted) return false;
  const char *s = n->scalar;
  if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) {
    *out = true;
    return true;
  }
  if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) {
    *out = false;
    return true;
  }
  return false;
}

/* ---- emission ------------------------------------------------------------------------------- */
/* Plain text that reads back as the same plain scalar in block context. Anything else (which
 * never includes null/bool/number spellings) is written double-quoted. */
static bool plain_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0) return true;
  if (strchr(",[]{}#&*!|>'\"%@`", s[0])) return false;
  if (strchr("-?:", s[0]) && (n == 1 || s[1] == ' ')) return false;
  if (s[0] == ' ' || s[n - 1] == ' ' || s[n - 1] == ':') return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 0x20 || ch == 0x7F) return false;
    if (ch == ':' && s[i + 1] == ' ') return false;
    if (ch == '#' && i > 0 && s[i - 1] == ' ') return false;
  }
  return true;
}

static bool key_plain_ok(const char *s) {
  if (!s[0] || is_null_text(s)) return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == '.' || *p == '-' || *p == '/'))
      return false;
  return s[0] != '-' && s[0] != '.';
}

static void emit_quoted(ad_buf_t *out, const char *s) {
  ad_buf_append(out, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
      case '"': ad_buf_append(out, "\\\"", 2); break;
      case '\\': ad_buf_append(out, "\\\\", 2); break;
      case '\n': ad_buf_append(out, "\\n", 2); break;
      case '\t': ad_buf_append(out, "\\t", 2); break;
      case '\r': ad_buf_append(out, "\\r", 2); break;
      default:
        if (*p < 0x20 || *p == 0x7F)
          ad_buf_printf(out, "\\x%02x", *p);
        else
          ad_buf_append(out, p, 1);
    }
  }
  ad_buf_append(out, "\"", 1);
}

static void emit_scalar(ad_buf_t *out, const fe_node_t *n) {
  if (n->quoted || !plain_ok(n->scalar))
    emit_quoted(out, n->scalar);
  else
    ad_buf_append(out, n->scalar, strlen(n->scalar));
}

static void indent_to(ad_buf_t *out, int indent) {
  for (int i = 0; i < indent; i++) ad_buf_append(out, " ", 1);
}

static void emit_block(ad_buf_t *out, const fe_node_t *n, int indent, bool inline_first);

/* After "key:" or "-": the value on the same line (scalars, empty containers) or below. */
static void emit_value(ad_buf_t *out, const fe_node_t *v, int indent, bool in_seq) {
  if (v->kind == FE_NODE_SCALAR) {
    if (v->scalar[0] || v->quoted) {
      ad_buf_append(out, " ", 1);
      emit_scalar(out, v);
    }
    ad_buf_append(out, "\n", 1);
  } else if (v->n == 0) {
    ad_buf_printf(out, " %s\n", v->kind == FE_NODE_MAP ? "{}" : "[]");
  } else if (in_seq) {
    ad_buf_append(out, " ", 1); /* "- key: v" / "- - x": the first line stays inline */
    emit_block(out, v, indent + 2, true);
  } else {
    ad_buf_append(out, "\n", 1);
    emit_block(out, v, v->kind == FE_NODE_SEQ ? indent : indent + 2, false);
  }
}

static void emit_block(ad_buf_t *out, const fe_node_t *n, int indent, bool inline_first) {
  for (uint32_t i = 0; i < n->n; i++) {
    if (i > 0 || !inline_first) indent_to(out, indent);
    if (n->kind == FE_NODE_MAP) {
      if (key_plain_ok(n->keys[i]))
        ad_buf_append(out, n->keys[i], strlen(n->keys[i]));
      else
        emit_quoted(out, n->keys[i]);
      ad_buf_append(out, ":", 1);
      emit_value(out, n->items[i], indent, false);
    } else {
      ad_buf_append(out, "-", 1);
      emit_value(out, n->items[i], indent, true);
    }
  }
}

void fe_node_emit_yaml(const fe_node_t *root, ad_buf_t *out) {
  if (!root || root->kind != FE_NODE_MAP || root->n == 0) {
    ad_buf_append(out, "{}\n", 3);
    return;
  }
  emit_block(out, root, 0, false);
}

void fe_config_emit_yaml(const fe_config_t *c, ad_buf_t *out) {
  fe_node_emit_yaml(c ? c->root : NULL, out);
}

/* ---- building trees (--print_config) -------------------------------------------------------- */
fe_node_t *fe_node_new_map(ad_arena_t *a) {
  fe_node_t *n = ad_arena_alloc(a, sizeof *n);
  memset(n, 0, sizeof *n);
  n->kind = FE_NODE_MAP;
  n->file = "<resolved>";
  return n;
}

fe_node_t *fe_node_new_scalar(ad_arena_t *a, const char *text, bool quoted) {
  fe_node_t *n = ad_arena_alloc(a, sizeof *n);
  memset(n, 0, sizeof *n);
  n->kind = FE_NODE_SCALAR;
  n->file = "<resolved>";
  n->scalar = ad_arena_strdup(a, text);
  n->quoted = quoted;
  return n;
}

void fe_node_map_put(ad_arena_t *a, fe_node_t *map, const char *key, fe_node_t *value) {
  uint32_t cap = map->n;
  container_push(a, map, &cap, ad_arena_strdup(a, key), 0, 0, value);
}

fe_node_t *fe_node_parse_text(ad_arena_t *a, const char *text) {
  yl_error_t e = {0};
  fe_node_t *n = NULL;
  if (!parse_yaml(a, "<default>", (const uint8_t *)text, strlen(text), &n, &e)) return NULL;
  return n;
}
