/* Contract: pass_freeze(m, prefix) clears IR_SLOT_TRAINABLE on every parameter slot named
 * "<prefix>" or "<prefix>.*" (a frozen backbone: requires_grad = False). Run it after the builder
 * and pass_lora and before autodiff (builder -> lora -> freeze -> autodiff): autodiff then asks
 * for no gradient of those slots and the optimizer leaves them alone. The graph is unchanged, so
 * dropout and BatchNorm batch statistics still run in frozen modules, as in the peer (its frozen
 * flag sets requires_grad only; the module stays in train mode). */
#include <string.h>

#include "passes/passes.h"

ad_status_t pass_freeze(ir_module_t *m, const char *prefix, uint32_t *nfrozen) {
  size_t np = strlen(prefix);
  uint32_t n = 0, matched = 0;
  for (uint32_t i = 0; i < m->nslots; i++) {
    ir_state_slot_t *s = &m->slots[i];
    if (!(s->flags & IR_SLOT_PARAM)) continue;
    if (strncmp(s->name, prefix, np) != 0 || (s->name[np] != 0 && s->name[np] != '.')) continue;
    matched++;
    if (s->flags & IR_SLOT_TRAINABLE) n++;
    s->flags &= ~(uint32_t)IR_SLOT_TRAINABLE;
  }
  if (nfrozen) *nfrozen = n;
  /* A prefix naming no parameter is a builder bug (a misspelt module path), never a no-op. */
  if (!matched)
    return ad_status_make(AD_STATUS_INVALID_ARGUMENT,
                          "pass freeze: no parameter slot under '%s'", prefix);
  return AD_OK;
}
