/* The aidomm IR: a module of programs (entry points) over one set of state slots.
 *
 *  module
 *   ├─ symbols      bounded size symbols (B <= 2, L <= 16); dims are expressions over them
 *   ├─ scalars      runtime scalars (lr, step, seed) with defaults: program inputs, never folded
 *   ├─ state slots  parameters, BatchNorm buffers, AdamW moments, step counters
 *   └─ programs     graphs in topological order; state_in reads a slot, state_out writes one
 *
 * Tensors are row-major and stored compact at their *actual* sizes (symbols bound at run time)
 * inside buffers planned at the bound. Values are numbered per program; a node's outputs are
 * consecutive values. Nodes carry stable unique names (parameters use the peer's module paths),
 * which key dropout RNG and checkpoints, so passes may renumber nodes freely.
 * Ownership: the module owns everything reachable from it (arena + growable arrays). */
#ifndef AIDOMM_IR_IR_H
#define AIDOMM_IR_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/arena.h"
#include "support/buf.h"
#include "support/status.h"

#define IR_MAX_RANK 6
#define IR_MAX_SYMBOLS 16
#define IR_DIM_MAX_TERMS 3
#define IR_NONE UINT32_MAX
#define IR_MAX_OUTPUTS 8

/* ---- dtypes ---------------------------------------------------------------------------- */
typedef enum ir_dtype {
  IR_DTYPE_F32 = 0,
  IR_DTYPE_F64,
  IR_DTYPE_BF16,
  IR_DTYPE_F16,
  IR_DTYPE_I32,
  IR_DTYPE_I64,
  IR_DTYPE_U8,
  IR_DTYPE_COUNT
} ir_dtype_t;

size_t ir_dtype_size(ir_dtype_t t);
const char *ir_dtype_name(ir_dtype_t t); /* "f32", "f64", "bf16", "f16", "i32", "i64", "u8" */
bool ir_dtype_from_name(const char *s, ir_dtype_t *out);
bool ir_dtype_is_float(ir_dtype_t t);

/* ---- dims: (cst + sum_k coef_k * sym[a_k] * sym[b_k]) / div, floor division ----------- */
typedef struct ir_dim_term {
  int64_t coef;  /* > 0 */
  int8_t sym_a;  /* symbol index */
  int8_t sym_b;  /* second symbol index or -1 */
} ir_dim_term_t;

typedef struct ir_dim {
  int64_t cst;
  int64_t div; /* >= 1 */
  int8_t nterms;
  ir_dim_term_t terms[IR_DIM_MAX_TERMS]; /* canonical: sorted by (sym_a, sym_b), merged */
} ir_dim_t;

ir_dim_t ir_dim_const(int64_t n);
ir_dim_t ir_dim_sym(int sym);
/* Arithmetic returns false when the result is not representable (then *out is untouched). */
bool ir_dim_add(ir_dim_t a, ir_dim_t b, ir_dim_t *out);
bool ir_dim_add_const(ir_dim_t a, int64_t c, ir_dim_t *out);
bool ir_dim_mul(ir_dim_t a, ir_dim_t b, ir_dim_t *out);
bool ir_dim_div(ir_dim_t a, int64_t d, ir_dim_t *out);
bool ir_dim_equal(ir_dim_t a, ir_dim_t b);
bool ir_dim_is_const(ir_dim_t a, int64_t *value);
/* The symbol index when the dim is exactly one symbol (1 * sym), else -1: the dims whose actual
 * size a tensor of that type sets (e.g. B, L_omic of an input). */
int ir_dim_symbol(ir_dim_t a);
/* Evaluates with the given symbol values (actual sizes or bounds). */
int64_t ir_dim_eval(ir_dim_t a, const int64_t *symvals);

/* ---- types -------------------------------------------------------------------------- */
typedef struct ir_type {
  ir_dtype_t dtype;
  int32_t rank;
  ir_dim_t dims[IR_MAX_RANK];
} ir_type_t;

bool ir_type_equal(const ir_type_t *a, const ir_type_t *b);
/* Concrete shape of a type under symbol values. */
typedef struct ir_shape {
  int32_t rank;
  int64_t dims[IR_MAX_RANK];
} ir_shape_t;
ir_shape_t ir_type_shape(const ir_type_t *t, const int64_t *symvals);
int64_t ir_shape_numel(const ir_shape_t *s);

/* ---- attributes --------------------------------------------------------------------- */
typedef enum ir_attr_kind {
  IR_ATTR_INT = 0,
  IR_ATTR_FLOAT,  /* double; printed with %.17g so the text form round-trips */
  IR_ATTR_STRING,
  IR_ATTR_INTS,
  IR_ATTR_FLOATS,
} ir_attr_kind_t;

typedef struct ir_attr {
  const char *key;
  ir_attr_kind_t kind;
  int64_t i;
  double f;
  const char *s;
  uint32_t n;        /* element count for INTS / FLOATS */
  const int64_t *ints;
  const double *floats;
} ir_attr_t;

#define IR_ATTR_I(k, v) ((ir_attr_t){.key = (k), .kind = IR_ATTR_INT, .i = (v)})
#define IR_ATTR_F(k, v) ((ir_attr_t){.key = (k), .kind = IR_ATTR_FLOAT, .f = (v)})
#define IR_ATTR_S(k, v) ((ir_attr_t){.key = (k), .kind = IR_ATTR_STRING, .s = (v)})
#define IR_ATTR_INTS(k, p, cnt) \
  ((ir_attr_t){.key = (k), .kind = IR_ATTR_INTS, .ints = (p), .n = (uint32_t)(cnt)})
#define IR_ATTR_FLOATS(k, p, cnt) \
  ((ir_attr_t){.key = (k), .kind = IR_ATTR_FLOATS, .floats = (p), .n = (uint32_t)(cnt)})

/* ---- ops ----------------------------------------------------------------------------- */
typedef enum ir_op {
#define IR_OP(e, s) IR_OP_##e,
#include "ir/ops.def"
#undef IR_OP
  IR_OP_COUNT
} ir_op_t;

/* ---- nodes, values, graphs, modules ------------------------------------------------------ */
typedef struct ir_node {
  ir_op_t op;
  const char *name;      /* stable, unique within the program (arena) */
  uint32_t ninputs;
  const uint32_t *inputs; /* value ids (arena) */
  uint32_t noutputs;
  uint32_t output0;       /* outputs are values output0 .. output0+noutputs-1 */
  uint32_t nattrs;
  const ir_attr_t *attrs; /* sorted by key (arena) */
} ir_node_t;

typedef struct ir_value {
  uint32_t node;
  uint32_t index;
  ir_type_t type;
} ir_value_t;

typedef struct ir_module ir_module_t;

typedef struct ir_graph {
  ir_module_t *module;
  const char *name;       /* program / entry point name: "train_step", "eval", ... */
  ir_node_t *nodes;       /* topological order */
  uint32_t nnodes, cap_nodes;
  ir_value_t *values;
  uint32_t nvalues, cap_values;
  ad_status_t error;      /* sticky builder error: the first failure, later builds are no-ops */
  const char *scope;      /* name prefix for new nodes ("" at top) */
  struct ir_name_set *names; /* private: uniqueness of node names */
} ir_graph_t;

enum {
  IR_SLOT_PARAM = 1u << 0,      /* a model parameter (checkpoint key = slot name) */
  IR_SLOT_TRAINABLE = 1u << 1,  /* receives gradients and optimizer updates */
  IR_SLOT_UNUSED = 1u << 2,     /* the forward never reads it (ESM pooler, Enformer heads) */
  IR_SLOT_BUFFER = 1u << 3,     /* non-parameter model state (BatchNorm running stats) */
  IR_SLOT_OPTIM = 1u << 4,      /* optimizer state (AdamW moments, step) */
  IR_SLOT_NOSAVE = 1u << 5,     /* left out of checkpoints (ModelGenerator save_peft_only) */
};

typedef struct ir_state_slot {
  const char *name;
  ir_type_t type;   /* static shape (no symbols) */
  uint32_t flags;
  const char *init; /* init rule: "zeros", "ones", "normal(0,0.02)", "uniform(-0.1,0.1)",
                       "kaiming_uniform(fan_in)", ... (see runtime/init.c) */
} ir_state_slot_t;

typedef struct ir_scalar_decl {
  const char *name;
  ir_dtype_t dtype;
  double dflt;
} ir_scalar_decl_t;

typedef struct ir_symbol {
  const char *name;
  int64_t bound; /* actual size is 1..bound */
} ir_symbol_t;

struct ir_module {
  ad_arena_t arena;
  ir_symbol_t symbols[IR_MAX_SYMBOLS];
  uint32_t nsymbols;
  ir_scalar_decl_t *scalars;
  uint32_t nscalars, cap_scalars;
  ir_state_slot_t *slots;
  uint32_t nslots, cap_slots;
  ir_graph_t **programs;
  uint32_t nprograms, cap_programs;
};

ir_module_t *ir_module_create(void);
void ir_module_free(ir_module_t *m);
ad_status_t ir_module_add_symbol(ir_module_t *m, const char *name, int64_t bound, int *out_index);
int ir_module_find_symbol(const ir_module_t *m, const char *name); /* -1 if absent */
ad_status_t ir_module_add_scalar(ir_module_t *m, const char *name, ir_dtype_t dtype, double dflt);
const ir_scalar_decl_t *ir_module_find_scalar(const ir_module_t *m, const char *name);
ad_status_t ir_module_add_slot(ir_module_t *m, const char *name, const ir_type_t *type,
                               uint32_t flags, const char *init, uint32_t *out_index);
int64_t ir_module_find_slot(const ir_module_t *m, const char *name); /* -1 if absent */
ir_graph_t *ir_module_add_program(ir_module_t *m, const char *name);
ir_graph_t *ir_module_find_program(const ir_module_t *m, const char *name);
/* Removes g from m's programs (if there) and frees it; its strings stay in m's arena. */
void ir_module_remove_program(ir_module_t *m, ir_graph_t *g);
/* Symbol bounds as an array usable by ir_dim_eval. */
void ir_module_bounds(const ir_module_t *m, int64_t *symvals);
/* Shape arithmetic downstream (element counts, byte sizes, memory plans) is plain int64, so the
 * readers of untrusted IR (text parser, binary deserializer) refuse a type whose element count
 * could pass 2^56 for any symbol values in 1..bound. */
#define IR_NUMEL_LIMIT (UINT64_C(1) << 56)
bool ir_type_fits(const ir_module_t *m, const ir_type_t *t);

/* ---- building ----------------------------------------------------------------------- */
typedef struct ir_node_desc {
  ir_op_t op;
  const char *name;            /* NULL: derived from scope + op name, made unique */
  const uint32_t *inputs;
  uint32_t ninputs;
  const ir_attr_t *attrs;
  uint32_t nattrs;
  const ir_type_t *out_types;  /* required for ops with IR_OP_FLAG_EXPLICIT_TYPE */
  uint32_t nout_types;
} ir_node_desc_t;

/* Appends a node, runs shape inference, returns its first output value id (or IR_NONE for ops
 * without outputs, and on error). Errors are sticky in g->error. */
uint32_t ir_build(ir_graph_t *g, const ir_node_desc_t *d);
/* Name scopes: "layers.0" then "attn" gives node names "layers.0.attn.softmax". */
void ir_push_scope(ir_graph_t *g, const char *part);
void ir_pop_scope(ir_graph_t *g);
const ir_type_t *ir_value_type(const ir_graph_t *g, uint32_t v);
const ir_node_t *ir_value_producer(const ir_graph_t *g, uint32_t v);
const ir_attr_t *ir_node_attr(const ir_node_t *n, const char *key);
int64_t ir_node_attr_int(const ir_node_t *n, const char *key, int64_t dflt);
double ir_node_attr_float(const ir_node_t *n, const char *key, double dflt);
const char *ir_node_attr_string(const ir_node_t *n, const char *key, const char *dflt);
/* Copies a node of another graph into g with remapped inputs and the same name and attrs;
 * returns its first output value id. Used by graph-to-graph passes. */
uint32_t ir_clone_node(ir_graph_t *g, const ir_graph_t *src, const ir_node_t *n,
                       const uint32_t *mapped_inputs);
/* "program 'p', node 'layers.0.attn.softmax' (softmax): <msg>" as INVALID_ARGUMENT; g may be
 * NULL (kernels do not know their graph). */
ad_status_t ir_node_error(const ir_graph_t *g, const ir_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes the sticky error (caller owns it) and clears it. */
ad_status_t ir_graph_take_error(ir_graph_t *g);

/* ---- the op registry ---------------------------------------------------------------- */
typedef enum ir_fusion_class {
  IR_FUSION_NONE = 0,  /* sources, sinks, state */
  IR_FUSION_ELEMENTWISE,
  IR_FUSION_REDUCTION,
  IR_FUSION_CONTRACTION,
  IR_FUSION_OPAQUE,
} ir_fusion_class_t;

enum {
  IR_OP_FLAG_EXPLICIT_TYPE = 1u << 0, /* output types come from the builder, inference checks them */
  IR_OP_FLAG_SIDE_EFFECT = 1u << 1,   /* never removed by DCE (state_out, output) */
  IR_OP_FLAG_STATEFUL = 1u << 2,      /* reads or writes state: never CSE'd or recomputed */
  IR_OP_FLAG_RANDOM = 1u << 3,        /* never CSE'd or constant-folded (dropout) */
  IR_OP_FLAG_INPLACE = 1u << 4,       /* output 0 may share input 0's buffer */
  IR_OP_FLAG_NO_FOLD = 1u << 5,       /* never constant-folded (inputs, scalars) */
};

/* A concrete tensor handed to a kernel: compact row-major at actual dims. */
typedef struct ir_tensor {
  void *data;
  ir_dtype_t dtype;
  int32_t rank;
  int64_t dims[IR_MAX_RANK];
} ir_tensor_t;
int64_t ir_tensor_numel(const ir_tensor_t *t);

/* Parallel-for over [0, n) in chunks of at least `grain`. Kernels split only over independent
 * outputs and never let the partition change arithmetic, so results are bit-identical for any
 * thread count. A NULL pool runs serially. */
typedef void (*ir_range_fn)(void *ctx, int64_t begin, int64_t end);
typedef struct ir_parallel {
  void (*run)(struct ir_parallel *self, int64_t n, int64_t grain, ir_range_fn fn, void *ctx);
} ir_parallel_t;
void ir_parallel_for(ir_parallel_t *par, int64_t n, int64_t grain, ir_range_fn fn, void *ctx);

typedef struct ir_kernel_args {
  const ir_node_t *node;
  const ir_tensor_t *in;
  uint32_t nin;
  ir_tensor_t *out; /* data and dims filled by the caller */
  uint32_t nout;
  ir_parallel_t *par;
} ir_kernel_args_t;

/* Reverse-mode rule context. The VJP appends nodes to g (which may move g->nodes: use the
 * copies here, not pointers into g). in_grads starts as IR_NONE; a rule sets the gradient of
 * every differentiable input it can reach. out_grads[i] is IR_NONE when output i has none. */
typedef struct ir_vjp_ctx {
  ir_graph_t *g;
  ir_node_t node;         /* copy of the forward node (its arrays live in the arena) */
  const uint32_t *out_grads;
  uint32_t *in_grads;
} ir_vjp_ctx_t;

typedef struct ir_cost {
  uint64_t flops;
  uint64_t bytes; /* bytes read + written */
} ir_cost_t;

typedef struct ir_op_info {
  const char *name;
  ir_fusion_class_t fusion;
  int32_t min_inputs, max_inputs; /* max -1: variadic */
  int32_t noutputs; /* -1: decided by infer, which fills leading out[] entries and leaves
                        the rest with dtype IR_DTYPE_COUNT (at most IR_MAX_OUTPUTS) */
  uint32_t flags;
  /* Fills out[0..noutputs) from the inputs and attrs (explicit ops: out holds the builder's
   * types, to be checked). Errors name the node. */
  ad_status_t (*infer)(const ir_graph_t *g, const ir_node_t *n, ir_type_t *out);
  /* Reference kernel for f32 and f64 (and the integer dtypes where they make sense). */
  ad_status_t (*kernel)(const ir_kernel_args_t *a);
  /* NULL: not differentiable at all. */
  ad_status_t (*vjp)(ir_vjp_ctx_t *c);
  uint32_t nondiff_inputs; /* bitmask of inputs that never get a gradient (ids, masks, shapes) */
  /* FLOPs (and optionally bytes) at concrete shapes; NULL: flops 0, bytes = sum of in/out. */
  void (*cost)(const ir_node_t *n, const ir_shape_t *in, const ir_dtype_t *in_dtypes,
               const ir_shape_t *out, ir_cost_t *c);
} ir_op_info_t;

const ir_op_info_t *ir_op_info(ir_op_t op);
const char *ir_op_name(ir_op_t op);
bool ir_op_from_name(const char *s, ir_op_t *out);
ir_cost_t ir_node_cost(const ir_graph_t *g, const ir_node_t *n, const int64_t *symvals);

/* ---- checking and forms ------------------------------------------------------------- */
ad_status_t ir_verify_graph(const ir_graph_t *g);
ad_status_t ir_verify_module(const ir_module_t *m);

/* Stable text form; parse(print(m)) prints byte-identically. */
void ir_print_module(const ir_module_t *m, ad_buf_t *out);
void ir_print_graph(const ir_graph_t *g, ad_buf_t *out);
ad_status_t ir_parse_module(const char *text, size_t len, const char *filename, ir_module_t **out);
/* Parses one type in the text syntax ("f32[B,L+2,8]", "i64[]") against m's symbols. */
ad_status_t ir_parse_type(const ir_module_t *m, const char *s, ir_type_t *out);
/* Prints a type in that syntax. */
void ir_print_type(const ir_module_t *m, const ir_type_t *t, ad_buf_t *out);

/* Binary form (little-endian); deserialize(serialize(m)) serializes byte-identically.
 * Every read is bounds-checked: corrupt input is a DATA_LOSS status, never a crash. */
void ir_serialize_module(const ir_module_t *m, ad_buf_t *out);
ad_status_t ir_deserialize_module(const uint8_t *data, size_t len, ir_module_t **out);

#endif
