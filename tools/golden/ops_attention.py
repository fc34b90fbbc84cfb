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

Mask conventions (attention's mask_mode):
  * "fill": ModelGenerator's fusion MultiHeadAttention (modelgenerator/adapters/fusion.py):
    S = where(M4 > 0.5, qk^T / sqrt(d), -1e30) with M4 from CrossAttentionFusion's own
    get_encoder_attention_mask (key mask times query mask, [B,1,Lq,Lk]); a padded query row is
    uniform over the keys and is not zeroed.
  * "add_zero": RNABert (modelgenerator/huggingface_models/rnabert/modeling_rnabert.py):
    the mask is the peer's bert_extended_attention_mask(mask) * torch.finfo(torch.float).min
    (float32's min even for a float64 model; RNABertSelfAttention casts it with
    .to(scores.dtype)), added after the division by sqrt(d); after softmax the probabilities
    where mask < -1e-5 are set to 0, so a padded query row outputs 0.
  Both forward functions below are those lines of the peers' forward, literally (the modules'
  q/k/v projections are left out: the op starts from the projected heads).

RotaryEmbedding computes inv_freq in float32 even when the module is later cast to float64;
aidomm computes the table in double. The f32 cases use the module as is (the difference is far
below the f32 tolerance at these lengths); the f64 cases give the same module a float64
inv_freq, so the 1e-10 check tests the rotation itself rather than that float32 rounding.
"""
import math
import os
import sys

import torch
from modelgenerator.adapters.fusion import CrossAttentionFusion
from modelgenerator.huggingface_models.rnabert.modeling_rnabert import bert_extended_attention_mask
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


# ---- peer mask conventions ------------------------------------------------------------------

def fusion_attention(q, k, v, m4):
    """fusion.py MultiHeadAttention.forward from the scores on."""
    s = torch.matmul(q, k.transpose(-1, -2))
    s = s / math.sqrt(q.shape[-1])
    s = torch.where(m4 > 0.5, s, -1e30)
    p = torch.nn.functional.softmax(s, dim=-1)
    o = torch.matmul(p, v)
    m = s.amax(dim=-1)
    l = torch.exp(s - m.unsqueeze(-1)).sum(dim=-1)
    return o, m.detach(), l.detach()


def rnabert_attention(q, k, v, ext):
    """modeling_rnabert.py RNABertSelfAttention.forward from the scores on (no dropout, no
    head mask)."""
    s = torch.matmul(q, k.transpose(-1, -2))
    s = s / math.sqrt(q.shape[-1])
    s = s + ext.to(s.dtype)
    p = torch.nn.functional.softmax(s, dim=-1)
    p = p.masked_fill(ext < -1e-5, 0.0)
    o = torch.matmul(p, v)
    m = s.amax(dim=-1)
    l = torch.exp(s - m.unsqueeze(-1)).sum(dim=-1)
    return o, m.detach(), l.detach()


def peer_bwd_fn(attn):
    def fn(q, k, v, mask, O, m, l, dO):
        q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
        with torch.enable_grad():
            o, _, _ = attn(q, k, v, mask.detach())
            dq, dk, dv = torch.autograd.grad(o, (q, k, v), dO.detach())
        return dq.detach(), dk.detach(), dv.detach()
    return fn


def lengths_mask(lengths, L, dtype):
    mask = torch.zeros(len(lengths), L, dtype=dtype)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    return mask


def fusion_mask(q_lengths, k_lengths, Lq, Lk, dt):
    mq = lengths_mask(q_lengths, Lq, DTYPES[dt])
    mk = lengths_mask(k_lengths, Lk, DTYPES[dt])
    return CrossAttentionFusion.get_encoder_attention_mask(None, mq, mk)


def rnabert_mask(lengths, L, dt):
    ext = bert_extended_attention_mask(lengths_mask(lengths, L, torch.int64))
    return (ext * torch.finfo(torch.float).min).to(DTYPES[dt])


def add_mask_mode_cases(fx, dt):
    """fill (fusion) and add_zero (RNABert) cases, forward + VJP and attention_bwd alone."""
    d = 8
    scale = 1.0 / math.sqrt(d)
    csym = {"B": [3, 2], "Lq": [8, 5], "Lk": [12, 7]}
    cq = fx.randn(2, 3, 5, d, dtype=dt)
    ck = fx.randn(2, 3, 7, d, dtype=dt)
    cv = fx.randn(2, 3, 7, 6, dtype=dt)
    ctypes = [f"{dt}[B,3,Lq,8]", f"{dt}[B,3,Lk,8]", f"{dt}[B,3,Lk,6]", f"{dt}[B,1,Lq,Lk]"]
    fill_attrs = {"scale": scale, "mask_mode": "fill", "fill": -1e30}

    # fusion: sample 1 has 3 of 5 queries and 4 of 7 keys (padded query rows 3, 4: uniform)
    m4 = fusion_mask([5, 3], [7, 4], 5, 7, dt)
    fx.add(f"attn_fill_fusion_{dt}", "attention", dt, [cq, ck, cv, m4], ctypes,
           lambda q, k, v, m: fusion_attention(q, k, v, m), attrs=fill_attrs, symbols=csym,
           nondiff=[3])
    # the default fill (-1e30) and a batch whose first sample is unpadded
    m4b = fusion_mask([5, 2], [6, 7], 5, 7, dt)
    fx.add(f"attn_fill_fusion_default_{dt}", "attention", dt, [cq, ck, cv, m4b], ctypes,
           lambda q, k, v, m: fusion_attention(q, k, v, m),
           attrs={"scale": scale, "mask_mode": "fill"}, symbols=csym, nondiff=[3])
    o, m, l = fusion_attention(cq, ck, cv, m4)
    dO = fx.randn(*o.shape, dtype=dt)
    otypes = [f"{dt}[B,3,Lq,6]", f"{dt}[B,3,Lq]", f"{dt}[B,3,Lq]", f"{dt}[B,3,Lq,6]"]
    fx.add(f"attn_bwd_fill_fusion_{dt}", "attention_bwd", dt,
           [cq, ck, cv, m4, o.detach(), m, l, dO], ctypes + otypes,
           peer_bwd_fn(fusion_attention), attrs=dict(fill_attrs, has_mask=1), symbols=csym,
           nondiff=list(range(8)), fd=False)

    # RNABert: self attention, sample 1 has 3 of 5 tokens (rows and columns 3, 4 masked; the
    # padded rows output 0)
    sym = {"B": [3, 2], "L": [8, 5]}
    q = fx.randn(2, 2, 5, d, dtype=dt)
    k = fx.randn(2, 2, 5, d, dtype=dt)
    v = fx.randn(2, 2, 5, d, dtype=dt)
    t4 = f"{dt}[B,2,L,8]"
    ext = rnabert_mask([5, 3], 5, dt)
    zattrs = {"scale": scale, "mask_mode": "add_zero"}
    fx.add(f"attn_addzero_rnabert_{dt}", "attention", dt, [q, k, v, ext],
           [t4, t4, t4, f"{dt}[B,1,L,L]"], lambda q, k, v, m: rnabert_attention(q, k, v, m),
           attrs=zattrs, symbols=sym, nondiff=[3])
    o, m, l = rnabert_attention(q, k, v, ext)
    dO = fx.randn(*o.shape, dtype=dt)
    fx.add(f"attn_bwd_addzero_rnabert_{dt}", "attention_bwd", dt,
           [q, k, v, ext, o.detach(), m, l, dO],
           [t4, t4, t4, f"{dt}[B,1,L,L]", t4, f"{dt}[B,2,L]", f"{dt}[B,2,L]", t4],
           peer_bwd_fn(rnabert_attention), attrs=dict(zattrs, has_mask=1), symbols=sym,
           nondiff=list(range(8)), fd=False)
    # a cross-shaped RNABert-style pair mask with every key of sample 0's row 1 masked but its
    # row 0 only partially: the zeroing must not touch the unmasked probabilities
    ext2 = torch.zeros(2, 1, 5, 7, dtype=torch.float32)
    ext2[0, 0, 1, :] = torch.finfo(torch.float).min
    ext2[0, 0, 0, 2:5] = torch.finfo(torch.float).min
    ext2[1, 0, :, 4:] = torch.finfo(torch.float).min
    ext2 = ext2.to(DTYPES[dt])
    fx.add(f"attn_addzero_cross_{dt}", "attention", dt, [cq, ck, cv, ext2], ctypes,
           lambda q, k, v, m: rnabert_attention(q, k, v, m), attrs=zattrs, symbols=csym,
           nondiff=[3])


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

    # After the cases above, so their random inputs do not move.
    for dt in ("f64", "f32"):
        add_mask_mode_cases(fx, dt)

    fx.write(repo_root())


if __name__ == "__main__":
    main()
