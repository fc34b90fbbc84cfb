/* Parameter and state initialisation: a pure function of (seed, slot name, element index),
 * so the same plan and seed give the same weights on any machine, thread count or backend,
 * whatever order the slots are declared in. */
#ifndef AIDOMM_RUNTIME_INIT_H
#define AIDOMM_RUNTIME_INIT_H

#include "ir/ir.h"

/* Rules: "zeros", "ones", "const(v)", "normal(mean,std)", "uniform(lo,hi)", "dirac(scale)"
 * (torch.nn.init.dirac_ times scale, for [out, in, k...] slots), "rope_inv_freq(base,dim)"
 * (rotary inverse frequencies, computed in float32 as torch does).
 * data holds the slot's static shape. */
ad_status_t rt_init_slot(const ir_state_slot_t *slot, uint64_t seed, void *data);
/* The Philox key of a (seed, domain, name) stream, e.g. domain "init" for parameters, "data"
 * for synthetic batches: the dropout key of the name "<domain>/<name>", so no stream collides
 * with a dropout site (those names never contain '/'). */
void rt_philox_key(uint64_t seed, const char *domain, const char *name, uint32_t key[2]);
/* Parses a rule; used by the compiler to reject bad rules early. */
ad_status_t rt_init_check_rule(const char *rule);

#endif
