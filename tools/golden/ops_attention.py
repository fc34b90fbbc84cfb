"""Golden cases for the attention group (rotary, attention, attention_bwd).

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/ops_attention.py
writes tests/golden/ops_attention.safetensors (layout: tools/golden/fixture.py).

The peers' own code is used where it exists:
  * RoPE: rotate_half / apply_rotary_pos_emb / RotaryEmbedding from
    transformers.models.esm.modeling_esm (transformers 4.38.0). AIDO.RNA's RoPE is the same
    rotate-half formula.
  * Attention: softmax(q k^T * scale + mask) v in plain torch, the mask added after scaling as
    ESM (additive (1 - mask) * finfo.min on keys, [B,1,1,Lk]) and RNABert (pair mask of padded
    rows and columns, [B,1,Lq,Lk]) build it. m (row max of S) and l (sum of exp(S - m)) are
    returned detached: they are statistics for the backward, not differentiable outputs.

RotaryEmbedding computes inv_freq in float32 even when the module is later cast to float64;
aidomm computes the table in double. The f32 cases use the module as is (the difference is far
below the f32 tolerance at these lengths); the f64 cases give the same module a float64
inv_freq, so the 1e-10 check tests the rotation itself rather than that float32 rounding.
"""
import math
import os
import sys

import torch
from transformers.models.esm.modeling_esm import RotaryEmbedding, apply_rotary_pos_emb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import DTYPES, Fixture, repo_root  # noqa: E402


# ---- rotary -------------------------------------------------------------------------------

def rotary_tables(x, dim, base, dtype):
    rot = RotaryEmbedding(dim)
    if dtype == "f64" or base != 10000.0:
        # Same formula as the module's __init__, in the case's precision and base.
        exps = torch.arange(0, dim, 2, dtype=torch.int64).to(DTYPES[dtype]) / dim
        rot.inv_freq = 1.0 / (base ** exps)
    return rot._update_cos_sin_tables(x, seq_dimension=-2)


def rotary_fn(dim, base, dtype, inverse):
    def fn(x):
        # The tables take only the sequence length from x; [1,1,L,d] broadcasts over the rest.
        cos, sin = rotary_tables(x, dim, base, dtype)
        if x.dim() == 3:  # [B, L, d]: apply_rotary_pos_emb indexes a [1, 1, L, d] table
            return apply_rotary_pos_emb(x.unsqueeze(1), cos, -sin if inverse else sin).squeeze(1)
        return apply_rotary_pos_emb(x, cos, -sin if inverse else sin)
    return fn


# ---- attention ----------------------------------------------------------------------------

def attention(q, k, v, mask, scale):
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if mask is not None:
        s = s + mask
    p = torch.softmax(s, dim=-1)
    o = torch.matmul(p, v)
    m = s.amax(dim=-1)
    l = torch.exp(s - m.unsqueeze(-1)).sum(dim=-1)
    return o, m.detach(), l.detach()


def attention_fn(scale):
    def fn(q, k, v, mask=None):
        return attention(q, k, v, mask, scale)
    return fn


def attention_bwd_fn(scale, has_mask):
    def fn(*ins):
        q, k, v = (t.detach().clone().requires_grad_(True) for t in ins[:3])
        mask = ins[3].detach() if has_mask else None
        dO = ins[-1].detach()
        with torch.enable_grad():
            o, _, _ = attention(q, k, v, mask, scale)
            dq, dk, dv = torch.autograd.grad(o, (q, k, v), dO)
        return dq.detach(), dk.detach(), dv.detach()
    return fn


def esm_key_mask(lengths, L, dtype):
    """EsmModel.get_extended_attention_mask: (1 - mask[:, None, None, :]) * finfo(dtype).min."""
    mask = torch.zeros(len(lengths), L, dtype=DTYPES[dtype])
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    ext = mask[:, None, None, :]
    return (1.0 - ext) * torch.finfo(DTYPES[dtype]).min


def pair_mask(q_lengths, k_lengths, Lq, Lk, dtype):
    """RNABert-style pair mask: finfo.min where mask[i] * mask[j] < 0.5 (padded rows and
    columns), [B,1,Lq,Lk]. A padded query row is masked everywhere."""
    mq = torch.zeros(len(q_lengths), Lq, dtype=DTYPES[dtype])
    mk = torch.zeros(len(k_lengths), Lk, dtype=DTYPES[dtype])
    for b, n in enumerate(q_lengths):
        mq[b, :n] = 1
    for b, n in enumerate(k_lengths):
        mk[b, :n] = 1
    pair = (mq[:, :, None] * mk[:, None, :])[:, None]
    zero = torch.zeros((), dtype=DTYPES[dtype])
    return torch.where(pair < 0.5, torch.finfo(DTYPES[dtype]).min + zero, zero)


def main():
    fx = Fixture("attention", seed=1234)
    sym = {"B": [3, 2], "L": [8, 5]}

    for dt in ("f64", "f32"):
        # -- rotary: ESM layout [B, h, L, d], RNA layout without heads [B, L, d], inverse, base
        x = fx.randn(2, 2, 5, 8, dtype=dt)
        fx.add(f"rotary_{dt}", "rotary", dt, [x], [f"{dt}[B,2,L,8]"],
               rotary_fn(8, 10000.0, dt, False), attrs={"base": 10000.0, "inverse": 0},
               symbols=sym)
        fx.add(f"rotary_inverse_{dt}", "rotary", dt, [x], [f"{dt}[B,2,L,8]"],
               rotary_fn(8, 10000.0, dt, True), attrs={"base": 10000.0, "inverse": 1},
               symbols=sym)
        x3 = fx.randn(2, 5, 16, dtype=dt)
        fx.add(f"rotary_base500_rank3_{dt}", "rotary", dt, [x3], [f"{dt}[B,L,16]"],
               rotary_fn(16, 500.0, dt, False), attrs={"base": 500.0, "inverse": 0}, symbols=sym)
        xf = fx.randn(1, 3, 12, 32, dtype=dt)
        fx.add(f"rotary_full_{dt}", "rotary", dt, [xf], [f"{dt}[1,3,L,32]"],
               rotary_fn(32, 10000.0, dt, False), attrs={"inverse": 0},
               symbols={"L": [12, 12]})

        # -- attention
        d, dv, h = 8, 8, 2
        scale = 1.0 / math.sqrt(d)
        q = fx.randn(2, h, 5, d, dtype=dt)
        k = fx.randn(2, h, 5, d, dtype=dt)
        v = fx.randn(2, h, 5, dv, dtype=dt)
        t4 = f"{dt}[B,{h},L,{d}]"
        fx.add(f"attn_self_nomask_{dt}", "attention", dt, [q, k, v], [t4, t4, t4],
               attention_fn(scale), attrs={"scale": scale}, symbols=sym)

        # ESM: q pre-scaled, scale 1, additive key mask; sample 1 has 3 valid keys of 5.
        mask = esm_key_mask([5, 3], 5, dt)
        fx.add(f"attn_esm_keymask_{dt}", "attention", dt, [q * scale, k, v, mask],
               [t4, t4, t4, f"{dt}[B,1,1,L]"], attention_fn(1.0), attrs={"scale": 1.0},
               symbols=sym, nondiff=[3])

        # Cross attention: Lq != Lk, dv != d, 3 heads.
        csym = {"B": [3, 2], "Lq": [8, 5], "Lk": [12, 7]}
        cq = fx.randn(2, 3, 5, 8, dtype=dt)
        ck = fx.randn(2, 3, 7, 8, dtype=dt)
        cv = fx.randn(2, 3, 7, 6, dtype=dt)
        ctypes = [f"{dt}[B,3,Lq,8]", f"{dt}[B,3,Lk,8]", f"{dt}[B,3,Lk,6]"]
        fx.add(f"attn_cross_nomask_{dt}", "attention", dt, [cq, ck, cv], ctypes,
               attention_fn(scale), attrs={"scale": scale}, symbols=csym)

        # Pair mask of padded query rows and key columns: sample 1 has 3 of 5 queries and 4 of
        # 7 keys, so its query rows 3 and 4 are masked everywhere and must come out uniform.
        # Those rows are constant in q (finfo.min swamps the scores) while torch's gradient is
        # not zero there, so no finite-difference check: the VJP is compared with torch.
        pmask = pair_mask([5, 3], [7, 4], 5, 7, dt)
        fx.add(f"attn_cross_pairmask_{dt}", "attention", dt, [cq, ck, cv, pmask],
               ctypes + [f"{dt}[B,1,Lq,Lk]"], attention_fn(scale), attrs={"scale": scale},
               symbols=csym, nondiff=[3], fd=False)

        # A finite additive bias per head (full [B,h,Lq,Lk]) with a partially masked row.
        bias = fx.randn(2, 3, 5, 7, dtype=dt)
        bias[0, 1, 2, 3:] = torch.finfo(DTYPES[dt]).min
        fx.add(f"attn_cross_bias_{dt}", "attention", dt, [cq, ck, cv, bias],
               ctypes + [f"{dt}[B,3,Lq,Lk]"], attention_fn(0.5), attrs={"scale": 0.5},
               symbols=csym, nondiff=[3])

        # attention_bwd on its own (the VJP cases above reach it through attention's rule).
        o, m, l = attention(cq, ck, cv, pmask, scale)
        dO = fx.randn(*o.shape, dtype=dt)
        fx.add(f"attn_bwd_pairmask_{dt}", "attention_bwd", dt,
               [cq, ck, cv, pmask, o.detach(), m, l, dO],
               ctypes + [f"{dt}[B,1,Lq,Lk]", f"{dt}[B,3,Lq,6]", f"{dt}[B,3,Lq]",
                         f"{dt}[B,3,Lq]", f"{dt}[B,3,Lq,6]"],
               attention_bwd_fn(scale, True), attrs={"scale": scale, "has_mask": 1},
               symbols=csym, nondiff=list(range(8)), fd=False)
        o, m, l = attention(q, k, v, None, scale)
        dO = fx.randn(*o.shape, dtype=dt)
        fx.add(f"attn_bwd_nomask_{dt}", "attention_bwd", dt, [q, k, v, o.detach(), m, l, dO],
               [t4, t4, t4, t4, f"{dt}[B,{h},L]", f"{dt}[B,{h},L]", t4],
               attention_bwd_fn(scale, False), attrs={"scale": scale, "has_mask": 0},
               symbols=sym, nondiff=list(range(7)), fd=False)

    fx.write(repo_root())


if __name__ == "__main__":
    main()
