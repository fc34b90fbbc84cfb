"""Golden fixtures for the matmul group: matmul (transposes, broadcast batch dims, rank-2 b)
and linear (x w^T + b, with and without bias, rank 1 to 3), see ir/ops.def.

Run: /root/.cache/aidomm/golden-venv/bin/python tools/golden/ops_matmul.py
"""
import torch

from fixture import Fixture, repo_root

SYM = {"B": [4, 3], "L": [8, 5]}  # bounds 4 and 8, actual sizes 3 and 5


def mm(ta, tb):
    def fn(a, b):
        return torch.matmul(a.transpose(-1, -2) if ta else a, b.transpose(-1, -2) if tb else b)
    return fn


# (suffix, shape a, type a, shape b, type b, trans_a, trans_b, symbols)
MATMULS = [
    ("shared_w", (3, 5, 8), "[B,L,8]", (8, 6), "[8,6]", 0, 0, SYM),
    ("shared_w_tb", (3, 5, 8), "[B,L,8]", (6, 8), "[6,8]", 0, 1, SYM),
    ("shared_w_ta", (3, 8, 5), "[B,8,L]", (8, 6), "[8,6]", 1, 0, SYM),
    ("scores_tb", (3, 2, 5, 4), "[B,2,L,4]", (3, 2, 5, 4), "[B,2,L,4]", 0, 1, SYM),
    ("context", (3, 2, 5, 5), "[B,2,L,L]", (3, 2, 5, 4), "[B,2,L,4]", 0, 0, SYM),
    ("ta_batched", (3, 8, 5), "[B,8,L]", (3, 8, 6), "[B,8,6]", 1, 0, SYM),
    ("ta_tb", (8, 6), "[8,6]", (5, 8), "[5,8]", 1, 1, {}),
    ("ta_tb_batched", (3, 8, 5), "[B,8,L]", (3, 6, 8), "[B,6,8]", 1, 1, SYM),
    ("bcast_batch", (3, 1, 5, 8), "[B,1,L,8]", (2, 8, 4), "[2,8,4]", 0, 0, SYM),
    ("a_rank2", (6, 8), "[6,8]", (3, 8, 5), "[B,8,L]", 0, 0, SYM),
    ("plain", (7, 9), "[7,9]", (9, 3), "[9,3]", 0, 0, {}),
    ("long_k", (4, 300), "[4,300]", (300, 3), "[300,3]", 0, 0, {}),
]


def main():
    f = Fixture("matmul", seed=3)
    for dt in ("f32", "f64"):
        fd = dt == "f64"
        for suffix, sa, ta_, sb, tb_, ta, tb, sym in MATMULS:
            a = f.randn(*sa, dtype=dt)
            b = f.randn(*sb, dtype=dt)
            attrs = {}
            if ta:
                attrs["trans_a"] = 1
            if tb:
                attrs["trans_b"] = 1
            f.add(f"matmul_{suffix}_{dt}", "matmul", dt, [a, b], [dt + ta_, dt + tb_], mm(ta, tb),
                  attrs=attrs, symbols=sym, fd=fd)
        # linear: rank 3 with and without bias, rank 2, rank 1, static sizes
        for suffix, sx, tx, bias, sym in (
            ("r3_bias", (3, 5, 8), "[B,L,8]", True, SYM),
            ("r3_nobias", (3, 5, 8), "[B,L,8]", False, SYM),
            ("r2_bias", (3, 8), "[B,8]", True, SYM),
            ("r1_bias", (8,), "[8]", True, {}),
            ("r4_bias", (2, 3, 5, 8), "[2,B,L,8]", True, SYM),
        ):
            x = f.randn(*sx, dtype=dt)
            w = f.randn(6, 8, dtype=dt, scale=0.3)
            ins, types = [x, w], [dt + tx, dt + "[6,8]"]
            if bias:
                ins.append(f.randn(6, dtype=dt))
                types.append(dt + "[6]")
            f.add(f"linear_{suffix}_{dt}", "linear", dt, ins, types,
                  lambda *t: torch.nn.functional.linear(*t), symbols=sym, fd=fd)
    f.tensors = {k: v.clone() for k, v in f.tensors.items()}
    f.write(repo_root())


if __name__ == "__main__":
    main()
