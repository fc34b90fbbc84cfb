"""Golden cases for the model group (rel_shift, rel_shift_bwd, one_hot, esm_token_dropout).

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/ops_model.py
writes tests/golden/ops_model.safetensors (layout: tools/golden/fixture.py).

Everything comes from the peers' own code:
  * rel_shift: relative_shift from ModelGenerator's vendored Enformer
    (modelgenerator.huggingface_models.enformer_pytorch.modeling_enformer), which pads, reshapes
    and slices a [b, h, n, 2n-1] tensor; main() first checks on random tensors that this is the
    gather y[..., i, j] = x[..., i, j - i + n - 1] the op implements. Other ranks go through the
    same function after unsqueezing to rank 4.
  * rel_shift_bwd: torch autograd of relative_shift, taken with create_graph so the case also
    checks its own VJP (rel_shift again).
  * one_hot: str_to_one_hot from the vendored enformer_pytorch/data.py, fed all 256 byte values
    (as a bytes object, which its np.fromstring reads byte for byte) and mixed-case strings.
  * esm_token_dropout: transformers 4.38 EsmEmbeddings (token_dropout=True, rotary positions,
    no embedding LayerNorm), called with inputs_embeds = the case's emb, input_ids and the
    tokenizer-style int64 attention mask: its forward is then exactly the token-dropout scaling
    and the attention-mask multiply. The C op takes the mask as a float tensor of emb's dtype
    (the values are the same 0/1).
"""
import os
import sys
import warnings

import torch
from modelgenerator.huggingface_models.enformer_pytorch import str_to_one_hot
from modelgenerator.huggingface_models.enformer_pytorch.modeling_enformer import relative_shift
from transformers import EsmConfig
from transformers.models.esm.modeling_esm import EsmEmbeddings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import DTYPES, Fixture, repo_root  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)  # np.fromstring in the peer


# ---- rel_shift ----------------------------------------------------------------------------

def check_index_map():
    for n in (1, 2, 3, 7):
        x = torch.randn(2, 3, n, 2 * n - 1, dtype=torch.float64)
        y = relative_shift(x)
        i = torch.arange(n)[:, None]
        j = torch.arange(n)[None, :]
        assert torch.equal(y, x[..., i, j - i + n - 1]), n


def rel_shift_fn(x):
    lead = x.shape[:-2]
    x4 = x.reshape((-1, 1) + tuple(x.shape[-2:])) if x.dim() != 4 else x
    y = relative_shift(x4)
    return y.reshape(tuple(lead) + tuple(y.shape[-2:]))


def rel_shift_bwd_fn(dy, like_x):
    x = like_x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = rel_shift_fn(x)
        (dx,) = torch.autograd.grad(y, x, dy, create_graph=True)
    return dx


# ---- esm_token_dropout ----------------------------------------------------------------------

def esm_embeddings():
    cfg = EsmConfig(vocab_size=33, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, token_dropout=True, pad_token_id=1, mask_token_id=32,
                    position_embedding_type="rotary", emb_layer_norm_before=False,
                    max_position_embeddings=64)
    emb = EsmEmbeddings(cfg)
    emb.eval()
    return emb


def esm_fn(module, mask_long):
    def fn(x, ids, mask):
        del mask  # the same 0/1 values as mask_long, which the module reads like the tokenizer's
        return module(input_ids=ids, attention_mask=mask_long, inputs_embeds=x)
    return fn


def esm_ids(fx, lengths, L, masked):
    """<cls> residues <eos> then <pad>; masked: list of (b, t) set to <mask> (32)."""
    ids = torch.full((len(lengths), L), 1, dtype=torch.int64)
    mask = torch.zeros(len(lengths), L, dtype=torch.int64)
    for b, n in enumerate(lengths):
        ids[b, 0] = 0
        ids[b, 1:n - 1] = fx.randint(4, 29, n - 2)
        ids[b, n - 1] = 2
        mask[b, :n] = 1
    for b, t in masked:
        ids[b, t] = 32
    return ids, mask


def main():
    check_index_map()
    fx = Fixture("model", seed=4321)
    module = esm_embeddings()

    for dt in ("f64", "f32"):
        # -- rel_shift: Enformer layout [b, h, n, 2n-1] below the bound, other ranks, n = 1
        x = fx.randn(2, 3, 5, 9, dtype=dt)
        fx.add(f"rel_shift_b_h_{dt}", "rel_shift", dt, [x], [f"{dt}[B,3,N,2*N-1]"],
               rel_shift_fn, symbols={"B": [3, 2], "N": [8, 5]})
        x = fx.randn(4, 12, 23, dtype=dt)
        fx.add(f"rel_shift_rank3_{dt}", "rel_shift", dt, [x], [f"{dt}[4,12,23]"], rel_shift_fn)
        x = fx.randn(7, 13, dtype=dt)
        fx.add(f"rel_shift_rank2_{dt}", "rel_shift", dt, [x], [f"{dt}[N,2*N-1]"], rel_shift_fn,
               symbols={"N": [7, 7]})
        x = fx.randn(2, 2, 1, 1, dtype=dt)
        fx.add(f"rel_shift_n1_{dt}", "rel_shift", dt, [x], [f"{dt}[2,2,1,1]"], rel_shift_fn)
        x = fx.randn(1, 2, 6, 11, dtype=dt)
        dy = fx.randn(1, 2, 6, 6, dtype=dt)
        fx.add(f"rel_shift_bwd_{dt}", "rel_shift_bwd", dt, [dy, x],
               [f"{dt}[1,2,N,N]", f"{dt}[1,2,N,2*N-1]"], rel_shift_bwd_fn,
               symbols={"N": [9, 6]}, nondiff=[1])

        # -- one_hot: every byte value, and mixed-case DNA strings of one length (batched)
        allb = bytes(range(256))
        bts = torch.frombuffer(bytearray(allb), dtype=torch.uint8).reshape(1, 256)
        fx.add(f"one_hot_all_bytes_{dt}", "one_hot", dt, [bts], ["u8[1,256]"],
               lambda b: str_to_one_hot([allb]).to(DTYPES[dt]), attrs={"dtype": dt})
        seqs = ["ACGTNacgtn..", "aCgTtGcA.NnX", "GATTACA-gat?"]
        mb = torch.tensor([list(s.encode()) for s in seqs], dtype=torch.uint8)
        fx.add(f"one_hot_strings_{dt}", "one_hot", dt, [mb], ["u8[B,L]"],
               lambda b: str_to_one_hot(seqs).to(DTYPES[dt]), attrs={"dtype": dt},
               symbols={"B": [4, 3], "L": [16, 12]})

        # -- esm_token_dropout: (a) no <mask> tokens, padded rows; (b) <mask> tokens, one in a
        # sample that is also padded; (c) i32 ids, a <mask> on a padded position (torch counts
        # it in n_mask: (ids == mask).sum(-1) runs over every position)
        attrs = {"mask_token": 32, "ratio": 0.12}
        ids, mlong = esm_ids(fx, [7, 5, 3], 7, [])
        e = fx.randn(3, 7, 16, dtype=dt)
        fx.add(f"esm_dropout_nomask_{dt}", "esm_token_dropout", dt, [e, ids, mlong.to(DTYPES[dt])],
               [f"{dt}[B,L,16]", "i64[B,L]", f"{dt}[B,L]"], esm_fn(module, mlong), attrs=attrs,
               symbols={"B": [4, 3], "L": [10, 7]}, nondiff=[1, 2])
        ids, mlong = esm_ids(fx, [8, 6], 8, [(0, 2), (0, 5), (1, 1)])
        e = fx.randn(2, 8, 16, dtype=dt)
        fx.add(f"esm_dropout_masked_{dt}", "esm_token_dropout", dt, [e, ids, mlong.to(DTYPES[dt])],
               [f"{dt}[B,L,16]", "i64[B,L]", f"{dt}[B,L]"], esm_fn(module, mlong), attrs=attrs,
               symbols={"B": [2, 2], "L": [8, 8]}, nondiff=[1, 2])
        ids, mlong = esm_ids(fx, [6, 4, 6], 6, [(1, 2), (1, 5), (2, 3)])
        e = fx.randn(3, 6, 16, dtype=dt)
        fx.add(f"esm_dropout_i32_padmask_{dt}", "esm_token_dropout", dt,
               [e, ids.to(torch.int32), mlong.to(DTYPES[dt])],
               [f"{dt}[B,L,16]", "i32[B,L]", f"{dt}[B,L]"],
               lambda x, i, m, mod=module, ml=mlong: mod(input_ids=i.long(), attention_mask=ml,
                                                       inputs_embeds=x),
               attrs=attrs, symbols={"B": [3, 3], "L": [6, 6]}, nondiff=[1, 2])

    fx.write(repo_root())


if __name__ == "__main__":
    main()
