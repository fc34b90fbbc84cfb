"""Golden cases for the pool group (masked_mean_pool, cls_pool and their backwards).

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/ops_pool.py
writes tests/golden/ops_pool.safetensors (layout: tools/golden/fixture.py).

seq_pooling below is ModelGenerator's ConcatFusion.seq_pooling
(modelgenerator/adapters/fusion.py), copied because modelgenerator is not installed in the
golden venv; MLPPoolAdapter pools the same way. The backward ops are checked on their own
(their outputs built with torch autograd, create_graph=True, so their own VJPs are checked too).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import DTYPES, Fixture, repo_root  # noqa: E402


def seq_pooling(hidden_states, attention_mask, pooling="mean_pooling"):
    if pooling == "mean_pooling":
        input_mask_expanded = (
            attention_mask.unsqueeze(-1).expand(hidden_states.size()).float()
        )
        embeddings = torch.sum(
            hidden_states * input_mask_expanded, 1
        ) / torch.clamp(input_mask_expanded.sum(1), min=1e-9)
    elif pooling == "cls_pooling":
        embeddings = hidden_states[:, 0]
    else:
        raise NotImplementedError
    return embeddings


def mean_pool(h, mask):
    return seq_pooling(h, mask, "mean_pooling")


def cls_pool(h):
    return seq_pooling(h, None, "cls_pooling")


def mean_pool_bwd(mask, dy, like_h):
    h = like_h.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (dh,) = torch.autograd.grad(mean_pool(h, mask), h, dy, create_graph=True)
    return dh


def cls_pool_bwd(dy, like_h):
    h = like_h.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (dh,) = torch.autograd.grad(cls_pool(h), h, dy, create_graph=True)
    return dh


def mask_rows(rows, dtype):
    return torch.tensor(rows, dtype=DTYPES[dtype])


def main():
    fx = Fixture("pool", seed=4321)
    sym = {"B": [4, 3], "L": [8, 5]}
    # sample 0 padded after 3 tokens, sample 1 full, sample 2 with no valid token at all
    binary = [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]
    # soft weights (dyadic, so the peer's .float() cast of the mask is exact)
    soft = [[0.5, 1, 0.25, 0, 0.75], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]

    for dt in ("f64", "f32"):
        h = fx.randn(3, 5, 6, dtype=dt)
        mask = mask_rows(binary, dt)
        hm = [f"{dt}[B,L,6]", f"{dt}[B,L]"]
        fx.add(f"mean_pool_{dt}", "masked_mean_pool", dt, [h, mask], hm, mean_pool,
               symbols=sym, nondiff=[1])
        fx.add(f"mean_pool_soft_{dt}", "masked_mean_pool", dt, [h, mask_rows(soft, dt)], hm,
               mean_pool, symbols=sym, nondiff=[1])
        hl = fx.randn(2, 20, 4, dtype=dt)
        ml = torch.zeros(2, 20, dtype=hl.dtype)
        ml[0, :13] = 1
        ml[1, :20] = 1
        fx.add(f"mean_pool_long_{dt}", "masked_mean_pool", dt, [hl, ml],
               [f"{dt}[B,L,4]", f"{dt}[B,L]"], mean_pool, symbols={"B": [2, 2], "L": [32, 20]},
               nondiff=[1])

        dy = fx.randn(3, 6, dtype=dt)
        fx.add(f"mean_pool_bwd_{dt}", "masked_mean_pool_bwd", dt, [mask, dy, h],
               [f"{dt}[B,L]", f"{dt}[B,6]", f"{dt}[B,L,6]"], mean_pool_bwd, symbols=sym,
               nondiff=[0, 2])

        fx.add(f"cls_pool_{dt}", "cls_pool", dt, [h], [f"{dt}[B,L,6]"], cls_pool, symbols=sym)
        h4 = fx.randn(3, 5, 2, 3, dtype=dt)
        fx.add(f"cls_pool_rank4_{dt}", "cls_pool", dt, [h4], [f"{dt}[B,L,2,3]"], cls_pool,
               symbols=sym)
        fx.add(f"cls_pool_bwd_{dt}", "cls_pool_bwd", dt, [dy, h], [f"{dt}[B,6]", f"{dt}[B,L,6]"],
               cls_pool_bwd, symbols=sym, nondiff=[1])

    fx.write(repo_root())


if __name__ == "__main__":
    main()
