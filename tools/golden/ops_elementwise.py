"""Golden fixtures for the elementwise group: binary arithmetic with broadcasting, where,
scale, activations and unary math, unary_bwd, cast, expand, sum_to (see ir/ops.def).

Run: /root/.cache/aidomm/golden-venv/bin/python tools/golden/ops_elementwise.py
"""

import torch

from fixture import Fixture, repo_root

SYM = {"B": [4, 3], "L": [8, 5]}  # bounds 4 and 8, actual sizes 3 and 5

UNARY = {
    "gelu_erf": lambda x: torch.nn.functional.gelu(x),
    "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    # Enformer's GELU (enformer-pytorch): torch.sigmoid(1.702 * x) * x
    "gelu_sigmoid": lambda x: torch.sigmoid(1.702 * x) * x,
    "relu": torch.relu,
    "silu": torch.nn.functional.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt,
    "neg": torch.neg,
}
POSITIVE = {"log", "sqrt", "rsqrt"}

BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
}


def randn(f, shape, dt, scale=1.0):
    """f.randn for any shape, rank 0 included (torch.randn needs a size)."""
    return f.randn(*(shape or (1,)), dtype=dt, scale=scale).reshape(shape)


def away_from_zero(f, shape, dt):
    mag = f.rand(*(shape or (1,)), dtype=dt, lo=0.5, hi=2.0).reshape(shape)
    sign = torch.where(randn(f, shape, dt) < 0, -1.0, 1.0).to(mag.dtype)
    return mag * sign


def main():
    f = Fixture("elementwise", seed=1)
    for dt in ("f32", "f64"):
        fd = dt == "f64"
        # --- binary ops: same shape below the bound, and broadcasting ---
        layouts = [
            # (suffix, shape a, type a, shape b, type b, symbols)
            ("same", (3, 5, 6), "[B,L,6]", (3, 5, 6), "[B,L,6]", SYM),
            ("bcast_last", (3, 5, 6), "[B,L,6]", (6,), "[6]", SYM),
            ("bcast_both", (3, 1, 6), "[B,1,6]", (5, 1), "[L,1]", SYM),
            ("bcast_scalar", (), "[]", (2, 3), "[2,3]", {}),
            ("bcast_rank4", (2, 1, 4, 1), "[2,1,4,1]", (3, 1, 5), "[3,1,5]", {}),
        ]
        for op, fn in BINARY.items():
            for suffix, sa, ta, sb, tb, sym in layouts:
                a = randn(f, sa, dt)
                b = away_from_zero(f, sb, dt) if op == "div" else randn(f, sb, dt)
                f.add(f"{op}_{suffix}_{dt}", op, dt, [a, b], [dt + ta, dt + tb], fn,
                      symbols=sym, fd=fd)
        # --- where: cond broadcast three ways, cond in u8 and in the float dtype ---
        cond = f.randint(0, 2, 3, 5, 1, dtype=torch.uint8)
        a = f.randn(3, 5, 6, dtype=dt)
        b = f.randn(6, dtype=dt)
        f.add(f"where_u8_{dt}", "where", dt, [cond, a, b], ["u8[B,L,1]", dt + "[B,L,6]", dt + "[6]"],
              lambda c, x, y: torch.where(c != 0, x, y), symbols=SYM, nondiff=(0,), fd=fd)
        condf = (f.rand(3, 1, 6, dtype=dt) < 0.5).to(a.dtype) * f.randn(3, 1, 6, dtype=dt)
        a = f.randn(5, 1, dtype=dt)
        b = f.randn(3, 5, 6, dtype=dt)
        f.add(f"where_float_{dt}", "where", dt, [condf, a, b],
              [dt + "[B,1,6]", dt + "[L,1]", dt + "[B,L,6]"],
              lambda c, x, y: torch.where(c != 0, x, y), symbols=SYM, nondiff=(0,), fd=fd)
        # --- scale ---
        x = f.randn(3, 5, 6, dtype=dt)
        f.add(f"scale_{dt}", "scale", dt, [x], [dt + "[B,L,6]"], lambda x: -1.7 * x + 0.3,
              attrs={"alpha": -1.7, "beta": 0.3}, symbols=SYM, fd=fd)
        f.add(f"scale_alpha_only_{dt}", "scale", dt, [x], [dt + "[B,L,6]"], lambda x: 0.125 * x,
              attrs={"alpha": 0.125}, symbols=SYM, fd=fd)
        # --- unary ops and their backward ---
        for name, fn in UNARY.items():
            if name in POSITIVE:
                x = f.rand(3, 5, 6, dtype=dt, lo=0.2, hi=3.0)
            else:
                x = f.randn(3, 5, 6, dtype=dt, scale=2.0)
            f.add(f"{name}_{dt}", name, dt, [x], [dt + "[B,L,6]"], fn, symbols=SYM, fd=fd)
            if name == "neg":
                continue

            def bwd(x, y, dy, fn=fn):
                xx = x.detach().clone().requires_grad_(True)
                return torch.autograd.grad(fn(xx), xx, dy)[0]

            y = fn(x)
            dy = f.randn(3, 5, 6, dtype=dt)
            f.add(f"unary_bwd_{name}_{dt}", "unary_bwd", dt, [x, y, dy], [dt + "[B,L,6]"] * 3, bwd,
                  attrs={"fn": name}, symbols=SYM, nondiff=(0, 1, 2), fd=False)
        # rank 0 and a large-magnitude tail (sigmoid/silu saturation, exp overflow in f32)
        x = torch.tensor([-40.0, -8.0, 0.0, 8.0, 40.0]).to(f.randn(1, dtype=dt).dtype)
        for name in ("sigmoid", "silu", "tanh", "gelu_erf", "gelu_tanh", "gelu_sigmoid"):
            f.add(f"{name}_tails_{dt}", name, dt, [x], [dt + "[5]"], UNARY[name], fd=False)
        f.add(f"exp_rank0_{dt}", "exp", dt, [randn(f, (), dt)], [dt + "[]"], torch.exp, fd=fd)
        # --- expand / sum_to (like is a shape only) ---
        like = f.randn(3, 5, 6, dtype=dt)
        for suffix, shape, ty in (("mid", (3, 1, 6), "[B,1,6]"), ("lead", (6,), "[6]"),
                                  ("scalar", (), "[]"), ("same", (3, 5, 6), "[B,L,6]")):
            x = randn(f, shape, dt)
            f.add(f"expand_{suffix}_{dt}", "expand", dt, [x, like], [dt + ty, dt + "[B,L,6]"],
                  lambda x, l: x.expand_as(l), symbols=SYM, nondiff=(1,), fd=fd)
            big = f.randn(3, 5, 6, dtype=dt)
            small = randn(f, shape, dt)
            f.add(f"sum_to_{suffix}_{dt}", "sum_to", dt, [big, small], [dt + "[B,L,6]", dt + ty],
                  lambda x, l: x.sum_to_size(l.shape), symbols=SYM, nondiff=(1,), fd=fd)
        big = f.randn(2, 3, 1, 4, dtype=dt)
        small = f.randn(3, 1, 1, dtype=dt)
        f.add(f"sum_to_keep1_{dt}", "sum_to", dt, [big, small], [dt + "[2,3,1,4]", dt + "[3,1,1]"],
              lambda x, l: x.sum_to_size(l.shape), nondiff=(1,), fd=fd)
        # --- cast ---
        other = "f64" if dt == "f32" else "f32"
        x = f.randn(3, 5, 6, dtype=dt, scale=3.0)
        f.add(f"cast_{dt}_to_{other}", "cast", dt, [x], [dt + "[B,L,6]"],
              lambda x, o=other: x.to(torch.float64 if o == "f64" else torch.float32),
              # the f32 result's rounding (1e-8 relative) swamps a finite difference
              attrs={"dtype": other}, symbols=SYM, fd=False)
        f.add(f"cast_{dt}_to_{dt}", "cast", dt, [x], [dt + "[B,L,6]"], lambda x: x.clone(),
              attrs={"dtype": dt}, symbols=SYM, fd=fd)
        f.add(f"cast_{dt}_to_i64", "cast", dt, [x], [dt + "[B,L,6]"],
              lambda x: x.to(torch.int64), attrs={"dtype": "i64"}, symbols=SYM, nondiff=(0,),
              fd=False)
        ids = f.randint(-50, 50, 3, 5)
        f.add(f"cast_i64_to_{dt}", "cast", dt, [ids], ["i64[B,L]"],
              lambda x, d=dt: x.to(torch.float64 if d == "f64" else torch.float32),
              attrs={"dtype": dt}, symbols=SYM, nondiff=(0,), fd=False)
    # autograd hands the same tensor to both inputs of add, and expand/sum_to may return their
    # input; safetensors refuses shared storage, so every tensor gets its own.
    f.tensors = {k: v.clone() for k, v in f.tensors.items()}
    f.write(repo_root())


if __name__ == "__main__":
    main()
