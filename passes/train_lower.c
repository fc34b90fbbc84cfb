/* Contract: builds "train_step" (forward+backward+AdamW) and "eval" from "forward" (kept). */
/* train_step: autodiff of the "loss" output w.r.t. every read of a trainable parameter, one
 * AdamW node per parameter written back through state_out, dead backward nodes removed;
 * eval: the forward with dropout bypassed, BatchNorm on its running statistics (training=0) and
 * no state writes (so no running-stat or num_batches_tracked updates). Their producers stay,
 * dead, so that the eval program keeps every input and scalar the forward declares. */
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"
#include "passes/passes.h"

/* Defaults of torch.optim.AdamW, used when the module declares no "lr". */
#define TRAIN_DEFAULT_LR 1e-3

static const ir_node_t *find_node(const ir_graph_t *g, ir_op_t op, const char *name) {
  for (uint32_t i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == op && strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
  return NULL;
}

/* n with its "training" attribute set to 0, for module.eval(): BatchNorm then normalises with
 * the running statistics, which it passes through unchanged. */
static ad_status_t clone_batchnorm_eval(ir_graph_t *dst, const ir_node_t *n, const uint32_t *ins,
                                        uint32_t *v0) {
  ir_attr_t attrs[8]; /* batchnorm has eps, momentum, training */
  if (n->nattrs >= sizeof attrs / sizeof attrs[0])
    return ad_status_make(AD_STATUS_INTERNAL, "batchnorm node '%s' has %u attributes", n->name,
                          n->nattrs);
  uint32_t na = 0;
  bool seen = false;
  for (uint32_t i = 0; i < n->nattrs; i++) {
    attrs[na] = n->attrs[i];
    if (strcmp(attrs[na].key, "training") == 0) {
      attrs[na] = IR_ATTR_I("training", 0);
      seen = true;
    }
    na++;
  }
  if (!seen) attrs[na++] = IR_ATTR_I("training", 0);
  ir_node_desc_t d = {.op = n->op,
                      .name = n->name,
                      .inputs = ins,
                      .ninputs = n->ninputs,
                      .attrs = attrs,
                      .nattrs = na};
  *v0 = ir_build(dst, &d);
  return AD_OK;
}

/* Clones every node of src into dst (dropouts bypassed, BatchNorm switched to its running
 * statistics and state writes dropped when eval). map receives src value -> dst value. */
static ad_status_t clone_program(ir_graph_t *dst, const ir_graph_t *src, bool eval,
                                 uint32_t *map) {
  pass_ids_t ins = {0};
  ad_status_t st = AD_OK;
  for (uint32_t v = 0; v < src->nvalues; v++) map[v] = IR_NONE;
  for (uint32_t i = 0; i < src->nnodes && !st; i++) {
    const ir_node_t *n = &src->nodes[i];
    if (eval && n->op == IR_OP_STATE_OUT) continue;
    if (eval && n->op == IR_OP_DROPOUT) {
      if (n->noutputs != 1) {
        st = ad_status_make(AD_STATUS_INTERNAL, "dropout node '%s' has %u outputs", n->name,
                            n->noutputs);
        break;
      }
      /* Inference-mode dropout is the identity. */
      map[n->output0] = map[n->inputs[0]];
      continue;
    }
    st = pass_map_inputs(src, n, map, &ins);
    if (st) break;
    uint32_t v0 = IR_NONE;
    if (eval && n->op == IR_OP_BATCHNORM)
      st = clone_batchnorm_eval(dst, n, ins.v, &v0);
    else
      v0 = ir_clone_node(dst, src, n, ins.v);
    if (st || dst->error) break;
    for (uint32_t o = 0; o < n->noutputs; o++) map[n->output0 + o] = v0 + o;
  }
  pass_ids_free(&ins);
  if (!st) st = ir_graph_take_error(dst);
  return st;
}

/* Declares the optimizer-state slot `name` like the parameter (or checks an existing one). */
static ad_status_t ensure_optim_slot(ir_module_t *m, const char *name, const ir_type_t *type) {
  int64_t i = ir_module_find_slot(m, name);
  if (i < 0) return ir_module_add_slot(m, name, type, IR_SLOT_OPTIM, "zeros", NULL);
  if (!ir_type_equal(&m->slots[i].type, type))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "state slot '%s' exists with a type other than its parameter's", name);
  m->slots[i].flags |= IR_SLOT_OPTIM;
  return AD_OK;
}

static ad_status_t ensure_scalar(ir_module_t *m, const char *name, ir_dtype_t dtype,
                                 double dflt) {
  const ir_scalar_decl_t *s = ir_module_find_scalar(m, name);
  if (!s) return ir_module_add_scalar(m, name, dtype, dflt);
  if (s->dtype != dtype)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT, "runtime scalar '%s' must be %s, not %s",
                          name, ir_dtype_name(dtype), ir_dtype_name(s->dtype));
  return AD_OK;
}

typedef struct lower_ctx {
  ir_module_t *m;
  ir_graph_t *ts;
  pass_strset_t names;
  uint32_t lr, step; /* SCALAR values in train_step, built on first use */
  uint32_t gnorm, clip; /* the global gradient norm and the clip_max SCALAR */
} lower_ctx_t;

static const char *unique(lower_ctx_t *c, const char *base) {
  const char *s = base;
  for (int k = 1; pass_strset_has(&c->names, s); k++)
    s = ad_arena_printf(&c->m->arena, "%s#%d", base, k);
  pass_strset_add(&c->names, s);
  return s;
}

static uint32_t scalar_value(lower_ctx_t *c, const char *name) {
  const ir_node_t *n = find_node(c->ts, IR_OP_SCALAR, name);
  if (n) return n->output0;
  return pass_build_named(c->ts, IR_OP_SCALAR, unique(c, name), NULL, 0, NULL, 0, NULL);
}

static uint32_t state_in(lower_ctx_t *c, const char *slot) {
  ir_attr_t a = IR_ATTR_S("slot", slot);
  return pass_build_named(c->ts, IR_OP_STATE_IN, unique(c, slot), NULL, 0, &a, 1, NULL);
}

static void state_out(lower_ctx_t *c, uint32_t v, const char *slot, const char *name) {
  ir_attr_t a = IR_ATTR_S("slot", slot);
  pass_build_named(c->ts, IR_OP_STATE_OUT, unique(c, name), &v, 1, &a, 1, NULL);
}

/* AdamW for one parameter: reads p, m, v, writes p', m', v' back into their slots. */
static ad_status_t emit_update(lower_ctx_t *c, const pass_train_options_t *o, uint32_t slot,
                               uint32_t p, uint32_t grad) {
  ir_module_t *m = c->m;
  const char *pname = m->slots[slot].name;
  ir_type_t ptype = m->slots[slot].type;
  const char *mname = ad_arena_printf(&m->arena, "%s.exp_avg", pname);
  const char *vname = ad_arena_printf(&m->arena, "%s.exp_avg_sq", pname);
  AD_RETURN_IF_ERROR(ensure_optim_slot(m, mname, &ptype));
  AD_RETURN_IF_ERROR(ensure_optim_slot(m, vname, &ptype));
  if (c->lr == IR_NONE) {
    AD_RETURN_IF_ERROR(ensure_scalar(m, "lr", IR_DTYPE_F64, TRAIN_DEFAULT_LR));
    AD_RETURN_IF_ERROR(ensure_scalar(m, "step", IR_DTYPE_I64, 1));
    c->lr = scalar_value(c, "lr");
    c->step = scalar_value(c, "step");
  }
  uint32_t mv = state_in(c, mname), vv = state_in(c, vname);
  ir_attr_t attrs[4] = {IR_ATTR_F("beta1", o->beta1), IR_ATTR_F("beta2", o->beta2),
                        IR_ATTR_F("eps", o->eps), IR_ATTR_F("weight_decay", o->weight_decay)};
  uint32_t ins[8] = {p, grad, mv, vv, c->lr, c->step, c->gnorm, c->clip};
  const char *base = ad_arena_printf(&m->arena, "optim.%s", pname);
  uint32_t upd = pass_build_named(c->ts, IR_OP_ADAMW,
                                  unique(c, ad_arena_printf(&m->arena, "%s.adamw", base)), ins, 8,
                                  attrs, 4, NULL);
  if (c->ts->error) return ir_graph_take_error(c->ts);
  state_out(c, upd, pname, ad_arena_printf(&m->arena, "%s.write_param", base));
  state_out(c, upd + 1, mname, ad_arena_printf(&m->arena, "%s.write_exp_avg", base));
  state_out(c, upd + 2, vname, ad_arena_printf(&m->arena, "%s.write_exp_avg_sq", base));
  return ir_graph_take_error(c->ts);
}

static ad_status_t emit_grad_norm(lower_ctx_t *c, const uint32_t *gslot, uint32_t nslots) {
  ir_module_t *m = c->m;
  uint32_t total = IR_NONE;
  for (uint32_t s = 0; s < nslots; s++) {
    if (gslot[s] == IR_NONE) continue;
    const char *base = ad_arena_printf(&m->arena, "grad_norm.%s", m->slots[s].name);
    uint32_t sq_in[2] = {gslot[s], gslot[s]};
    uint32_t sq = pass_build_named(c->ts, IR_OP_MUL, unique(c, ad_arena_printf(&m->arena, "%s.sq", base)),
                                   sq_in, 2, NULL, 0, NULL);
    uint32_t sum = pass_build_named(c->ts, IR_OP_REDUCE_SUM,
                                    unique(c, ad_arena_printf(&m->arena, "%s.sum", base)), &sq, 1,
                                    NULL, 0, NULL);
    if (total == IR_NONE) {
      total = sum;
    } else {
      uint32_t add_in[2] = {total, sum};
      total = pass_build_named(c->ts, IR_OP_ADD,
                               unique(c, ad_arena_printf(&m->arena, "%s.acc", base)), add_in, 2,
                               NULL, 0, NULL);
    }
  }
  if (total == IR_NONE) return ir_graph_take_error(c->ts); /* nothing trainable */
  c->gnorm = pass_build_named(c->ts, IR_OP_SQRT, unique(c, "grad_norm.sqrt"), &total, 1, NULL, 0,
                              NULL);
  pass_build_named(c->ts, IR_OP_OUTPUT, unique(c, "grad_norm"), &c->gnorm, 1, NULL, 0, NULL);
  AD_RETURN_IF_ERROR(ensure_scalar(m, "clip_max", IR_DTYPE_F64, 0.0));
  c->clip = scalar_value(c, "clip_max");
  return ir_graph_take_error(c->ts);
}

enum { TRAIN_FULL = 0, TRAIN_GRAD_ONLY = 1 };

static ad_status_t build_train_step(lower_ctx_t *c, const ir_graph_t *fwd,
                                    const pass_train_options_t *o, int mode) {
  ir_module_t *m = c->m;
  ir_graph_t *ts = c->ts;
  uint32_t *map = malloc(sizeof *map * (fwd->nvalues ? fwd->nvalues : 1));
  uint32_t *wrt = malloc(sizeof *wrt * (fwd->nnodes ? fwd->nnodes : 1));
  uint32_t *wslot = malloc(sizeof *wslot * (fwd->nnodes ? fwd->nnodes : 1));
  uint32_t *grads = malloc(sizeof *grads * (fwd->nnodes ? fwd->nnodes : 1));
  uint8_t *written = calloc(m->nslots ? m->nslots : 1, 1);
  uint32_t *gslot = calloc(m->nslots ? m->nslots : 1, sizeof *gslot);
  ad_status_t st = AD_OK;
  if (!map || !wrt || !wslot || !grads || !written || !gslot) {
    st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
    goto done;
  }
  for (uint32_t s = 0; s < m->nslots; s++) gslot[s] = IR_NONE;
  st = clone_program(ts, fwd, false, map);
  if (st) goto done;
  if (!pass_strset_add_names(&c->names, ts)) {
    st = ad_status_make(AD_STATUS_RESOURCE, "out of memory");
    goto done;
  }
  const ir_node_t *lo = find_node(ts, IR_OP_OUTPUT, "loss");
  if (!lo) {
    st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program 'forward' has no output 'loss'");
    goto done;
  }
  uint32_t loss = lo->inputs[0];
  if (mode == TRAIN_GRAD_ONLY) {
    /* Lightning divides the loss by accumulate_grad_batches before backward: the gradient seed
     * is 1/k rounded to the loss dtype, as torch's DivBackward computes it */
    st = ensure_scalar(m, "loss_scale", IR_DTYPE_F64, 1.0);
    if (st) goto done;
    uint32_t sc = scalar_value(c, "loss_scale");
    ir_attr_t a = IR_ATTR_S("dtype", ir_dtype_name(ts->values[loss].type.dtype));
    uint32_t scd = pass_build_named(ts, IR_OP_CAST, unique(c, "loss_scale.cast"), &sc, 1, &a, 1,
                                    NULL);
    uint32_t mi[2] = {loss, scd};
    loss = pass_build_named(ts, IR_OP_MUL, unique(c, "loss.scaled"), mi, 2, NULL, 0, NULL);
    if (ts->error) {
      st = ir_graph_take_error(ts);
      goto done;
    }
  }

  /* Every read of a trainable slot is a differentiation target; a slot read twice (tied
   * weights) sums its reads' gradients. */
  uint32_t nwrt = 0;
  for (uint32_t i = 0; i < ts->nnodes; i++) {
    const ir_node_t *n = &ts->nodes[i];
    const char *slot = n->op == IR_OP_STATE_IN || n->op == IR_OP_STATE_OUT
                           ? ir_node_attr_string(n, "slot", "")
                           : NULL;
    if (!slot) continue;
    int64_t si = ir_module_find_slot(m, slot);
    if (si < 0) continue; /* the builder already rejected unknown slots */
    if (n->op == IR_OP_STATE_OUT) {
      written[si] = 1;
      continue;
    }
    if (!(m->slots[si].flags & IR_SLOT_TRAINABLE)) continue;
    wrt[nwrt] = n->output0;
    wslot[nwrt++] = (uint32_t)si;
  }
  st = pass_autodiff(ts, loss, wrt, nwrt, grads);
  if (st) goto done;

  /* Updates in slot order, so the program does not depend on the order of reads. */
  uint32_t nslots = m->nslots; /* slots added below are optimizer state */
  for (uint32_t s = 0; s < nslots; s++) gslot[s] = IR_NONE;
  for (uint32_t s = 0; s < nslots; s++) {
    if (!(m->slots[s].flags & IR_SLOT_TRAINABLE)) continue;
    uint32_t p = IR_NONE, g = IR_NONE;
    for (uint32_t k = 0; k < nwrt; k++) {
      if (wslot[k] != s) continue;
      if (p == IR_NONE) p = wrt[k];
      if (grads[k] == IR_NONE) continue;
      if (g == IR_NONE) {
        g = grads[k];
        continue;
      }
      uint32_t ins[2] = {g, grads[k]};
      const char *name =
          unique(c, ad_arena_printf(&m->arena, "grad.%s.tied_acc", m->slots[s].name));
      g = pass_build_named(ts, IR_OP_ADD, name, ins, 2, NULL, 0, NULL);
    }
    if (ts->error) {
      st = ir_graph_take_error(ts);
      goto done;
    }
    /* torch.optim.AdamW skips parameters whose .grad is None: no step, no weight decay. */
    if (g == IR_NONE) {
      m->slots[s].flags |= IR_SLOT_UNUSED;
      continue;
    }
    m->slots[s].flags &= ~(uint32_t)IR_SLOT_UNUSED;
    if (written[s]) {
      st = ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "trainable parameter '%s' is also written by the forward program",
                          m->slots[s].name);
      goto done;
    }
    gslot[s] = g;
  }
  /* The global L2 norm of every gradient the optimizer sees (Lightning's clip_gradients and
   * the grad-norm log): sum of squares per parameter, summed in slot order, then sqrt. Every
   * update reads it with the clip_max scalar (0: no clipping). */
  if (mode == TRAIN_FULL) st = emit_grad_norm(c, gslot, nslots);
  if (st) goto done;
  for (uint32_t s = 0; s < nslots; s++) {
    uint32_t g = gslot[s];
    if (g == IR_NONE) continue;
    uint32_t p = IR_NONE;
    for (uint32_t k = 0; k < nwrt && p == IR_NONE; k++)
      if (wslot[k] == s) p = wrt[k];
    if (o->emit_grad_outputs || mode == TRAIN_GRAD_ONLY) {
      const char *oname = ad_arena_printf(&m->arena, "grad:%s", m->slots[s].name);
      if (pass_strset_has(&c->names, oname)) {
        st = ad_status_make(AD_STATUS_INVALID_ARGUMENT, "program 'forward' already has a node '%s'",
                            oname);
        goto done;
      }
      pass_strset_add(&c->names, oname);
      pass_build_named(ts, IR_OP_OUTPUT, oname, &g, 1, NULL, 0, NULL);
    }
    if (mode == TRAIN_GRAD_ONLY) continue;
    st = emit_update(c, o, s, p, g);
    if (st) goto done;
  }
  st = ir_graph_take_error(ts);
done:
  free(map);
  free(wrt);
  free(wslot);
  free(grads);
  free(written);
  free(gslot);
  return st;
}

/* apply_step: the summed gradients of every parameter train_step updates come in as INPUTs. */
static ad_status_t build_apply_step(lower_ctx_t *c, const pass_train_options_t *o) {
  ir_module_t *m = c->m;
  uint32_t nslots = m->nslots;
  uint32_t *gslot = calloc(nslots ? nslots : 1, sizeof *gslot);
  uint32_t *pslot = calloc(nslots ? nslots : 1, sizeof *pslot);
  if (!gslot || !pslot) {
    free(gslot);
    free(pslot);
    return ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  }
  for (uint32_t s = 0; s < nslots; s++) gslot[s] = pslot[s] = IR_NONE;
  ad_status_t st = AD_OK;
  for (uint32_t s = 0; s < nslots; s++) {
    const ir_state_slot_t *sl = &m->slots[s];
    if (!(sl->flags & IR_SLOT_TRAINABLE) || (sl->flags & (IR_SLOT_UNUSED | IR_SLOT_OPTIM))) continue;
    const char *gname = ad_arena_printf(&m->arena, "grad:%s", sl->name);
    pass_strset_add(&c->names, gname);
    gslot[s] = pass_build_named(c->ts, IR_OP_INPUT, gname, NULL, 0, NULL, 0, &sl->type);
    pslot[s] = state_in(c, sl->name);
  }
  if (!st) st = ir_graph_take_error(c->ts);
  if (!st) st = emit_grad_norm(c, gslot, nslots);
  for (uint32_t s = 0; !st && s < nslots; s++)
    if (gslot[s] != IR_NONE) st = emit_update(c, o, s, pslot[s], gslot[s]);
  if (!st) st = ir_graph_take_error(c->ts);
  free(gslot);
  free(pslot);
  return st;
}

static ad_status_t build_accumulation(ir_module_t *m, const ir_graph_t *fwd,
                                      const pass_train_options_t *o) {
  static const char *const made[] = {"grad_step", "apply_step"};
  for (int i = 0; i < 2; i++)
    if (ir_module_find_program(m, made[i]))
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "lower-training: the module already has a program '%s'", made[i]);
  lower_ctx_t g = {.m = m, .lr = IR_NONE, .step = IR_NONE, .gnorm = IR_NONE, .clip = IR_NONE};
  g.ts = ir_module_add_program(m, "grad_step");
  ad_status_t st = build_train_step(&g, fwd, o, TRAIN_GRAD_ONLY);
  pass_strset_free(&g.names);
  if (!st) st = pass_dce(&g.ts);
  if (!st) st = ir_verify_graph(g.ts);
  if (st) {
    pass_graph_discard(g.ts);
    return ad_status_annotate(st, "lower-training: building 'grad_step'");
  }
  lower_ctx_t a = {.m = m, .lr = IR_NONE, .step = IR_NONE, .gnorm = IR_NONE, .clip = IR_NONE};
  a.ts = ir_module_add_program(m, "apply_step");
  st = build_apply_step(&a, o);
  pass_strset_free(&a.names);
  if (!st) st = ir_verify_graph(a.ts);
  if (st) {
    pass_graph_discard(a.ts);
    pass_graph_discard(g.ts);
    return ad_status_annotate(st, "lower-training: building 'apply_step'");
  }
  return AD_OK;
}

ad_status_t pass_lower_training(ir_module_t *m, const pass_train_options_t *opts) {
  const ir_graph_t *fwd = ir_module_find_program(m, "forward");
  if (!fwd)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "lower-training: the module has no program 'forward'");
  if (!find_node(fwd, IR_OP_OUTPUT, "loss"))
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "lower-training: program 'forward' has no output 'loss'");
  static const char *const made[] = {"train_step", "eval"};
  for (int i = 0; i < 2; i++)
    if (ir_module_find_program(m, made[i]))
      return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                            "lower-training: the module already has a program '%s'", made[i]);

  lower_ctx_t c = {.m = m, .lr = IR_NONE, .step = IR_NONE, .gnorm = IR_NONE, .clip = IR_NONE};
  c.ts = ir_module_add_program(m, "train_step");
  ad_status_t st = build_train_step(&c, fwd, opts, TRAIN_FULL);
  pass_strset_free(&c.names);
  /* VJP rules emit every input gradient they can (dx of the first layer, gradients towards
   * frozen weights); only those reaching an update or an output are kept. */
  if (!st) st = pass_dce(&c.ts);
  if (!st) st = ir_verify_graph(c.ts);
  if (st) {
    pass_graph_discard(c.ts);
    return ad_status_annotate(st, "lower-training: building 'train_step'");
  }

  ir_graph_t *ev = ir_module_add_program(m, "eval");
  uint32_t *map = malloc(sizeof *map * (fwd->nvalues ? fwd->nvalues : 1));
  st = map ? clone_program(ev, fwd, true, map)
           : ad_status_make(AD_STATUS_RESOURCE, "out of memory");
  free(map);
  if (!st) st = ir_verify_graph(ev);
  if (st) {
    pass_graph_discard(ev);
    pass_graph_discard(c.ts);
    return ad_status_annotate(st, "lower-training: building 'eval'");
  }
  if (opts->emit_accumulation) return build_accumulation(m, fwd, opts);
  return AD_OK;
}
