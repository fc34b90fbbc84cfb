"""Golden cases for the layout group (permute, slice, concat, pad, embedding, embedding_bwd).

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/ops_layout.py
writes tests/golden/ops_layout.safetensors (layout: tools/golden/fixture.py).

Outputs come from torch's own functions: permute, narrow, cat, F.pad, F.embedding
(with padding_idx where the case says so) and aten.embedding_dense_backward, whose double
backward checks embedding_bwd's VJP. Reshape is not here: its output type is explicit, which
the case layout cannot carry; tests/test_ops_layout.c checks it directly.

Slice bounds follow the IR: end <= 0 means dim + end, start < 0 means dim + start.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import Fixture, repo_root  # noqa: E402

SYMS = {"B": [4, 3], "L": [8, 5]}  # bounds above the actual sizes: compact storage is tested


# Views are cloned: fixture.py stores outputs as given, and safetensors refuses tensors that
# share memory with an input.
def permute(perm):
    return lambda x: x.permute(perm).clone()


def slice_(axis, start, end):
    def fn(x):
        dim = x.shape[axis]
        s = dim + start if start < 0 else start
        e = dim + end if end <= 0 else end
        return x.narrow(axis, s, e - s).clone()

    return fn


def concat(axis):
    return lambda *xs: torch.cat(xs, dim=axis)


def pad(axis, before, after, value):
    def fn(x):
        a = axis % x.dim()
        return F.pad(x, [0, 0] * (x.dim() - 1 - a) + [before, after], value=value)

    return fn


def embedding(padding_idx=None):
    return lambda table, ids: F.embedding(ids, table, padding_idx=padding_idx)


def embedding_bwd(padding_idx=-1):
    def fn(ids, dy, like_table):
        v = like_table.shape[0]
        return torch.ops.aten.embedding_dense_backward(dy, ids, v, padding_idx, False)

    return fn


def main():
    fx = Fixture("layout", seed=20240612)
    for dt in ("f32", "f64"):
        fd = dt == "f64"
        # ---- permute
        x = fx.randn(3, 5, 2, 4, dtype=dt)
        fx.add(f"permute_heads_{dt}", "permute", dt, [x], [f"{dt}[B,L,2,4]"],
               permute([0, 2, 1, 3]), attrs={"perm": [0, 2, 1, 3]}, symbols=SYMS, fd=fd)
        x = fx.randn(2, 3, 4, dtype=dt)
        fx.add(f"permute_rot_{dt}", "permute", dt, [x], [f"{dt}[2,3,4]"], permute([2, 0, 1]),
               attrs={"perm": [2, 0, 1]}, fd=fd)
        x = fx.randn(3, 5, dtype=dt)
        fx.add(f"permute_t_{dt}", "permute", dt, [x], [f"{dt}[B,L]"], permute([1, 0]),
               attrs={"perm": [1, 0]}, symbols=SYMS, fd=fd)

        # ---- slice: static axis, symbolic axis from both ends, whole axis, the last k
        x = fx.randn(3, 5, 8, dtype=dt)
        ty = [f"{dt}[B,L,8]"]
        for name, axis, start, end in (("static", 2, 1, 5), ("neg_axis", -1, 2, -1),
                                       ("sym_trim", 1, 1, -1), ("sym_full", 1, 0, 0),
                                       ("static_last2", 2, -2, 0)):
            fx.add(f"slice_{name}_{dt}", "slice", dt, [x], ty, slice_(axis, start, end),
                   attrs={"axis": axis, "start": start, "end": end}, symbols=SYMS, fd=fd)
        # a static size taken from either end of a symbolic axis: its VJP would need a pad
        # of symbolic size (an error, tested in C), so these check the forward only
        for name, axis, start, end in (("sym_last2", 1, -2, 0), ("sym_head", 1, 0, 2)):
            fx.add(f"slice_{name}_{dt}", "slice", dt, [x], ty, slice_(axis, start, end),
                   attrs={"axis": axis, "start": start, "end": end}, symbols=SYMS, nondiff=[0],
                   fd=False)

        # ---- concat: three inputs on a static axis, on the last axis, around a symbolic axis
        a, b, c = (fx.randn(3, n, 4, dtype=dt) for n in (2, 3, 1))
        fx.add(f"concat3_{dt}", "concat", dt, [a, b, c],
               [f"{dt}[B,2,4]", f"{dt}[B,3,4]", f"{dt}[B,1,4]"], concat(1), attrs={"axis": 1},
               symbols=SYMS, fd=fd)
        a, b, c = (fx.randn(3, 5, n, dtype=dt) for n in (1, 3, 2))
        fx.add(f"concat3_last_{dt}", "concat", dt, [a, b, c],
               [f"{dt}[B,L,1]", f"{dt}[B,L,3]", f"{dt}[B,L,2]"], concat(-1), attrs={"axis": -1},
               symbols=SYMS, fd=fd)
        # [CLS] + tokens + [EOS]: the gradient of the last input slices from the back
        a, b, c = (fx.randn(3, n, 4, dtype=dt) for n in (1, 5, 1))
        fx.add(f"concat3_sym_{dt}", "concat", dt, [a, b, c],
               [f"{dt}[B,1,4]", f"{dt}[B,L,4]", f"{dt}[B,1,4]"], concat(1), attrs={"axis": 1},
               symbols=SYMS, fd=fd)
        # the symbolic axis itself (batch concat)
        a, b = fx.randn(3, 4, dtype=dt), fx.randn(2, 4, dtype=dt)
        fx.add(f"concat2_batch_{dt}", "concat", dt, [a, b], [f"{dt}[B,4]", f"{dt}[2,4]"],
               concat(0), attrs={"axis": 0}, symbols=SYMS, fd=fd)

        # ---- pad: before and after, non-zero fill, symbolic axis
        x = fx.randn(3, 5, 4, dtype=dt)
        ty = [f"{dt}[B,L,4]"]
        for name, axis, before, after, value in (("both", 2, 2, 3, 0.0),
                                                 ("after", -1, 0, 2, -1.5),
                                                 ("before", 2, 1, 0, 2.25), ("sym", 1, 1, 2, 0.0)):
            fx.add(f"pad_{name}_{dt}", "pad", dt, [x], ty, pad(axis, before, after, value),
                   attrs={"axis": axis, "before": before, "after": after, "value": value},
                   symbols=SYMS, fd=fd)

        # ---- embedding: repeated ids (the backward must accumulate), i32 and i64, padding_idx
        table = fx.randn(11, 6, dtype=dt)
        ids = torch.tensor([[1, 4, 4, 0, 10], [4, 4, 7, 1, 1], [10, 2, 4, 4, 3]],
                           dtype=torch.int64)
        fx.add(f"embedding_i64_{dt}", "embedding", dt, [table, ids], [f"{dt}[11,6]", "i64[B,L]"],
               embedding(), symbols=SYMS, nondiff=[1], fd=fd)
        fx.add(f"embedding_i32_{dt}", "embedding", dt, [table, ids.to(torch.int32)],
               [f"{dt}[11,6]", "i32[B,L]"], embedding(), symbols=SYMS, nondiff=[1], fd=fd)
        # padding_idx withholds the padding row's gradient on purpose (nn.Embedding): it is
        # not the derivative of the forward, so no finite differences here
        fx.add(f"embedding_pad_{dt}", "embedding", dt, [table, ids], [f"{dt}[11,6]", "i64[B,L]"],
               embedding(padding_idx=1), attrs={"padding_idx": 1}, symbols=SYMS, nondiff=[1],
               fd=False)
        big = fx.randn(5, 70, dtype=dt)  # more columns than one accumulation block
        ids1 = torch.tensor([3, 0, 3, 3, 4, 0, 3], dtype=torch.int64)
        fx.add(f"embedding_wide_{dt}", "embedding", dt, [big, ids1], [f"{dt}[5,70]", "i64[7]"],
               embedding(), nondiff=[1], fd=fd)

        # ---- embedding_bwd: checked directly, and its VJP (a gather) via double backward
        dy = fx.randn(3, 5, 6, dtype=dt)
        ty = ["i64[B,L]", f"{dt}[B,L,6]", f"{dt}[11,6]"]
        fx.add(f"embedding_bwd_{dt}", "embedding_bwd", dt, [ids, dy, table], ty, embedding_bwd(),
               symbols=SYMS, nondiff=[0, 2], fd=fd)
        for p in (0, 1, 10):
            fx.add(f"embedding_bwd_pad{p}_{dt}", "embedding_bwd", dt, [ids, dy, table], ty,
                   embedding_bwd(p), attrs={"padding_idx": p}, symbols=SYMS, nondiff=[0, 2],
                   fd=fd)
        dy = fx.randn(7, 70, dtype=dt)
        fx.add(f"embedding_bwd_wide_{dt}", "embedding_bwd", dt, [ids1.to(torch.int32), dy, big],
               ["i32[7]", f"{dt}[7,70]", f"{dt}[5,70]"], embedding_bwd(), nondiff=[0, 2], fd=fd)
    # ---- reshape (explicit output types): head split/merge over symbolic dims, flattening
    for dt in ("f32", "f64"):
        fd = dt == "f64"
        x = fx.randn(3, 5, 8, dtype=dt)
        fx.add(f"reshape_split_heads_{dt}", "reshape", dt, [x], [f"{dt}[B,L,8]"],
               lambda t: t.reshape(3, 5, 2, 4), symbols=SYMS, fd=fd, outputs=[f"{dt}[B,L,2,4]"])
        fx.add(f"reshape_flatten_{dt}", "reshape", dt, [x], [f"{dt}[B,L,8]"],
               lambda t: t.reshape(15, 8), symbols=SYMS, fd=fd, outputs=[f"{dt}[B*L,8]"])
        x = fx.randn(4, 6, dtype=dt)
        fx.add(f"reshape_static_{dt}", "reshape", dt, [x], [f"{dt}[4,6]"],
               lambda t: t.reshape(2, 3, 4), fd=fd, outputs=[f"{dt}[2,3,4]"])
    fx.write(repo_root())


if __name__ == "__main__":
    main()
