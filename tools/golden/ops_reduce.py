"""Golden fixtures for the reduce group: reduce_sum, reduce_mean (actual counts), reduce_max
(torch.amax, ties included), reduce_max_bwd (see ir/ops.def).

Run: /root/.cache/aidomm/golden-venv/bin/python tools/golden/ops_reduce.py
"""
import torch

from fixture import Fixture, repo_root

SYM = {"B": [4, 3], "L": [8, 5]}  # bounds 4 and 8, actual sizes 3 and 5

REDUCERS = {
    "reduce_sum": lambda x, axes, k: torch.sum(x, dim=axes, keepdim=k),
    "reduce_mean": lambda x, axes, k: torch.mean(x, dim=axes, keepdim=k),
    "reduce_max": lambda x, axes, k: torch.amax(x, dim=axes, keepdim=k),
}

# (suffix, axes attr, torch dims) over x: [B, L, 6] at actual [3, 5, 6]
AXES = [
    ("last", [-1], [2]),
    ("mid", [1], [1]),
    ("first_last", [0, -1], [0, 2]),
    ("neg_pair", [-3, -2], [0, 1]),
    ("all", [0, 1, 2], [0, 1, 2]),
]


def main():
    f = Fixture("reduce", seed=2)
    for dt in ("f32", "f64"):
        fd = dt == "f64"
        for op, fn in REDUCERS.items():
            for suffix, axes, dims in AXES:
                for keep in (0, 1):
                    x = f.randn(3, 5, 6, dtype=dt)
                    f.add(f"{op}_{suffix}_k{keep}_{dt}", op, dt, [x], [dt + "[B,L,6]"],
                          lambda x, d=dims, k=keep, fn=fn: fn(x, d, bool(k)),
                          attrs={"axes": axes, "keepdim": keep}, symbols=SYM, fd=fd)
            # a long reduction: exercises pairwise blocks and the f64 accumulation of f32
            x = f.randn(4, 300, dtype=dt)
            f.add(f"{op}_long_{dt}", op, dt, [x], [dt + "[4,300]"],
                  lambda x, fn=fn: fn(x, [1], False), attrs={"axes": [1], "keepdim": 0}, fd=fd)
            # rank 1 down to a scalar, and a static shape at its bound
            x = f.randn(7, dtype=dt)
            f.add(f"{op}_rank1_{dt}", op, dt, [x], [dt + "[7]"],
                  lambda x, fn=fn: fn(x, [0], False), attrs={"axes": [0], "keepdim": 0}, fd=fd)
        # ties: integers in {0, 1, 2} so most groups hold several maxima (torch.amax splits
        # the gradient evenly); finite differences are meaningless across ties.
        for suffix, axes, dims in AXES:
            for keep in (0, 1):
                x = f.randint(0, 3, 3, 5, 6).to(f.randn(1, dtype=dt).dtype)
                f.add(f"reduce_max_ties_{suffix}_k{keep}_{dt}", "reduce_max", dt, [x],
                      [dt + "[B,L,6]"], lambda x, d=dims, k=keep: torch.amax(x, dim=d, keepdim=bool(k)),
                      attrs={"axes": axes, "keepdim": keep}, symbols=SYM, fd=False)
        # reduce_max_bwd on its own, ties included
        for keep in (0, 1):
            x = f.randint(0, 3, 3, 5, 6).to(f.randn(1, dtype=dt).dtype)
            y = torch.amax(x, dim=[1], keepdim=bool(keep))
            dy = f.randn(*y.shape, dtype=dt)

            def bwd(x, y, dy, k=keep):
                xx = x.detach().clone().requires_grad_(True)
                return torch.autograd.grad(torch.amax(xx, dim=[1], keepdim=bool(k)), xx, dy)[0]

            ty = "[B,1,6]" if keep else "[B,6]"
            f.add(f"reduce_max_bwd_k{keep}_{dt}", "reduce_max_bwd", dt, [x, y, dy],
                  [dt + "[B,L,6]", dt + ty, dt + ty], bwd,
                  attrs={"axes": [-2], "keepdim": keep}, symbols=SYM, nondiff=(0, 1, 2), fd=False)
    f.tensors = {k: v.clone() for k, v in f.tensors.items()}
    f.write(repo_root())


if __name__ == "__main__":
    main()
