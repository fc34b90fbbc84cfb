"""Golden cases for the norm group (softmax, layernorm, rmsnorm and their backwards).

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/ops_norm.py
writes tests/golden/ops_norm.safetensors (layout: tools/golden/fixture.py).

Every output comes from torch's own functions: F.softmax, torch._softmax_backward_data,
torch.ops.aten.native_layer_norm / native_layer_norm_backward (mean and rstd returned detached
with the kept last dim squeezed, the IR's [...] layout) and F.rms_norm (its rstd recomputed the
way F.rms_norm does, since torch does not return it). The backward ops without a VJP in the IR
(layernorm_bwd, rmsnorm_bwd) mark every input non-differentiable, so only their forward is
compared; softmax_bwd's own VJP is checked against torch's double backward.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import Fixture, repo_root  # noqa: E402

SYMS = {"B": [4, 3], "L": [8, 5]}  # bounds above the actual sizes: compact storage is tested
SYMS_FULL = {"B": [2, 2], "L": [3, 3]}  # actual sizes at the bound


def softmax(x):
    return F.softmax(x, dim=-1)


def softmax_bwd(y, dy):
    return torch._softmax_backward_data(dy, y, -1, y.dtype)


def layernorm(eps):
    def fn(x, w=None, b=None):
        y, mean, rstd = torch.ops.aten.native_layer_norm(x, [x.shape[-1]], w, b, eps)
        return y, mean.detach().squeeze(-1), rstd.detach().squeeze(-1)

    return fn


def layernorm_bwd(x, *rest):
    if len(rest) == 4:
        w, mean, rstd, dy = rest
        b = torch.zeros_like(w)
        dx, dw, db = torch.ops.aten.native_layer_norm_backward(
            dy, x, [x.shape[-1]], mean.unsqueeze(-1), rstd.unsqueeze(-1), w, b, [True, True, True])
        return dx, dw, db
    mean, rstd, dy = rest
    dx, _, _ = torch.ops.aten.native_layer_norm_backward(
        dy, x, [x.shape[-1]], mean.unsqueeze(-1), rstd.unsqueeze(-1), None, None,
        [True, False, False])
    return (dx,)


def rms_rstd(x, eps):
    return torch.rsqrt(x.pow(2).mean(-1) + eps)


def rmsnorm(eps):
    def fn(x, w=None):
        y = F.rms_norm(x, (x.shape[-1],), w, eps)
        return y, rms_rstd(x, eps).detach()

    return fn


def rmsnorm_bwd(eps):
    def fn(x, *rest):
        w = rest[0] if len(rest) == 3 else None
        dy = rest[-1]
        xx = x.detach().clone().requires_grad_(True)
        leaves = [xx]
        ww = None
        if w is not None:
            ww = w.detach().clone().requires_grad_(True)
            leaves.append(ww)
        with torch.enable_grad():
            y = F.rms_norm(xx, (x.shape[-1],), ww, eps)
            grads = torch.autograd.grad(y, leaves, dy)
        return tuple(g.detach() for g in grads)

    return fn


def main():
    fx = Fixture("norm", seed=20240611)
    for dt in ("f32", "f64"):
        fd = dt == "f64"
        # ---- softmax
        x = fx.randn(3, 5, 7, dtype=dt, scale=3.0)
        fx.add(f"softmax_{dt}", "softmax", dt, [x], [f"{dt}[B,L,7]"], softmax, symbols=SYMS, fd=fd)
        # large logits: exp(1000) overflows even f64, so only max subtraction keeps this finite;
        # -1e4 entries act like a mask. (A larger spread makes rows one-hot, where torch's own
        # f32 gradient is off by 1e-4 from the f64 one: an ill-posed golden.)
        # The harness scales its FD step with max|x| (1e-2 here), too coarse for exp: the VJP
        # is still compared with torch autograd.
        x = fx.randn(3, 9, dtype=dt, scale=3.0) + 1000.0
        x[:, 2] = -1e4
        fx.add(f"softmax_large_{dt}", "softmax", dt, [x], [f"{dt}[B,9]"], softmax,
               symbols=SYMS, fd=False)
        x = fx.randn(2, 3, 40, dtype=dt)  # rows longer than one pairwise leaf
        fx.add(f"softmax_full_{dt}", "softmax", dt, [x], [f"{dt}[B,L,40]"], softmax,
               symbols=SYMS_FULL, fd=fd)
        x = fx.randn(6, dtype=dt)
        fx.add(f"softmax_vec_{dt}", "softmax", dt, [x], [f"{dt}[6]"], softmax, fd=fd)
        # ---- softmax_bwd: y a softmax output, both inputs differentiable (double backward)
        y = F.softmax(fx.randn(3, 5, 6, dtype=dt), dim=-1)
        dy = fx.randn(3, 5, 6, dtype=dt)
        fx.add(f"softmax_bwd_{dt}", "softmax_bwd", dt, [y, dy], [f"{dt}[B,L,6]", f"{dt}[B,L,6]"],
               softmax_bwd, symbols=SYMS, fd=fd)

        # ---- layernorm: no affine / weight / weight+bias, two eps, offset rows
        for eps, tag in ((1e-5, "e5"), (1e-12, "e12")):
            x = fx.randn(3, 5, 8, dtype=dt, scale=2.0) + 3.0
            w = fx.randn(8, dtype=dt) + 1.0
            b = fx.randn(8, dtype=dt)
            ty = [f"{dt}[B,L,8]", f"{dt}[8]", f"{dt}[8]"]
            fx.add(f"layernorm_wb_{tag}_{dt}", "layernorm", dt, [x, w, b], ty, layernorm(eps),
                   attrs={"eps": eps}, symbols=SYMS, fd=fd)
            fx.add(f"layernorm_w_{tag}_{dt}", "layernorm", dt, [x, w], ty[:2], layernorm(eps),
                   attrs={"eps": eps}, symbols=SYMS, fd=fd)
            fx.add(f"layernorm_plain_{tag}_{dt}", "layernorm", dt, [x], ty[:1], layernorm(eps),
                   attrs={"eps": eps}, symbols=SYMS, fd=fd)
        x = fx.randn(2, 3, 48, dtype=dt)
        w = fx.randn(48, dtype=dt)
        b = fx.randn(48, dtype=dt)
        fx.add(f"layernorm_full_{dt}", "layernorm", dt, [x, w, b],
               [f"{dt}[B,L,48]", f"{dt}[48]", f"{dt}[48]"], layernorm(1e-5),
               attrs={"eps": 1e-5}, symbols=SYMS_FULL, fd=fd)
        x = fx.randn(10, dtype=dt)
        fx.add(f"layernorm_vec_{dt}", "layernorm", dt, [x], [f"{dt}[10]"], layernorm(1e-5),
               attrs={"eps": 1e-5}, fd=fd)

        # ---- layernorm_bwd (forward only): with and without weight
        x = fx.randn(3, 5, 8, dtype=dt) + 1.0
        w = fx.randn(8, dtype=dt)
        _, mean, rstd = torch.ops.aten.native_layer_norm(x, [8], w, None, 1e-5)
        mean, rstd = mean.squeeze(-1), rstd.squeeze(-1)
        dy = fx.randn(3, 5, 8, dtype=dt)
        ty = [f"{dt}[B,L,8]", f"{dt}[8]", f"{dt}[B,L]", f"{dt}[B,L]", f"{dt}[B,L,8]"]
        fx.add(f"layernorm_bwd_w_{dt}", "layernorm_bwd", dt, [x, w, mean, rstd, dy], ty,
               layernorm_bwd, symbols=SYMS, nondiff=range(5), fd=False)
        fx.add(f"layernorm_bwd_plain_{dt}", "layernorm_bwd", dt, [x, mean, rstd, dy],
               [ty[0]] + ty[2:], layernorm_bwd, symbols=SYMS, nondiff=range(4), fd=False)

        # ---- rmsnorm: with and without weight, two eps
        for eps, tag in ((1e-5, "e5"), (1e-12, "e12")):
            x = fx.randn(3, 5, 8, dtype=dt, scale=1.5)
            w = fx.randn(8, dtype=dt) + 1.0
            ty = [f"{dt}[B,L,8]", f"{dt}[8]"]
            fx.add(f"rmsnorm_w_{tag}_{dt}", "rmsnorm", dt, [x, w], ty, rmsnorm(eps),
                   attrs={"eps": eps}, symbols=SYMS, fd=fd)
            fx.add(f"rmsnorm_plain_{tag}_{dt}", "rmsnorm", dt, [x], ty[:1], rmsnorm(eps),
                   attrs={"eps": eps}, symbols=SYMS, fd=fd)
        x = fx.randn(2, 3, 40, dtype=dt)
        w = fx.randn(40, dtype=dt)
        fx.add(f"rmsnorm_full_{dt}", "rmsnorm", dt, [x, w], [f"{dt}[B,L,40]", f"{dt}[40]"],
               rmsnorm(1e-6), attrs={"eps": 1e-6}, symbols=SYMS_FULL, fd=fd)

        # ---- rmsnorm_bwd (forward only)
        x = fx.randn(3, 5, 8, dtype=dt)
        w = fx.randn(8, dtype=dt)
        rstd = rms_rstd(x, 1e-6)
        dy = fx.randn(3, 5, 8, dtype=dt)
        ty = [f"{dt}[B,L,8]", f"{dt}[8]", f"{dt}[B,L]", f"{dt}[B,L,8]"]
        fx.add(f"rmsnorm_bwd_w_{dt}", "rmsnorm_bwd", dt, [x, w, rstd, dy], ty, rmsnorm_bwd(1e-6),
               symbols=SYMS, nondiff=range(4), fd=False)
        fx.add(f"rmsnorm_bwd_plain_{dt}", "rmsnorm_bwd", dt, [x, rstd, dy], [ty[0]] + ty[2:],
               rmsnorm_bwd(1e-6), symbols=SYMS, nondiff=range(3), fd=False)
    fx.write(repo_root())


if __name__ == "__main__":
    main()
