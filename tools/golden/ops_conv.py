"""Golden cases for the conv group (conv1d, batchnorm and their backwards): Enformer's ConvBlock
pieces, torch.nn.Conv1d(padding=k//2) and torch.nn.BatchNorm1d (eps 1e-5, momentum 0.1).

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/ops_conv.py
writes tests/golden/ops_conv.safetensors (layout: tools/golden/fixture.py).

Every output comes from torch's own functions: F.conv1d; F.batch_norm in training and eval mode
with clones of the running stats, whose updated values are returned (detached) as outputs 3 and 4;
the batch statistics (outputs 1 and 2) from torch.ops.aten.native_batch_norm (its save_mean /
save_invstd) in training, and the running mean and 1/sqrt(running_var + eps) in eval. The backward
ops have no VJP in the IR, so they mark every input non-differentiable and only their forward is
compared: conv1d_bwd from torch autograd of F.conv1d, batchnorm_bwd from
torch.ops.aten.native_batch_norm_backward.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import Fixture, repo_root  # noqa: E402

SYMS = {"B": [3, 2], "L": [40, 23]}  # odd actual length below the bound


def conv(padding):
    def fn(x, w, b=None):
        return F.conv1d(x, w, b, padding=padding)

    return fn


def conv_bwd(padding, has_bias):
    def fn(x, w, dy):
        x = x.detach().clone().requires_grad_(True)
        w = w.detach().clone().requires_grad_(True)
        b = torch.zeros(w.shape[0], dtype=w.dtype, requires_grad=True) if has_bias else None
        with torch.enable_grad():
            y = F.conv1d(x, w, b, padding=padding)
            grads = torch.autograd.grad(y, [x, w] + ([b] if has_bias else []), dy)
        return tuple(g.detach() for g in grads)

    return fn


def batchnorm(training, eps, momentum):
    def fn(x, w, b, rm, rv):
        nrm, nrv = rm.detach().clone(), rv.detach().clone()
        y = F.batch_norm(x, nrm, nrv, w, b, training=training, momentum=momentum, eps=eps)
        if training:
            _, mean, rstd = torch.ops.aten.native_batch_norm(
                x.detach(), None, None, None, None, True, momentum, eps)
        else:
            mean, rstd = rm.detach().clone(), torch.rsqrt(rv.detach() + eps)
        return y, mean.detach(), rstd.detach(), nrm, nrv

    return fn


def batchnorm_bwd(training, rv, eps):
    def fn(x, w, mean, rstd, dy):
        dx, dw, db = torch.ops.aten.native_batch_norm_backward(
            dy, x, w, None if training else mean, None if training else rv,
            mean if training else None, rstd if training else None, training, eps,
            [True, True, True])
        return dx, dw, db

    return fn


def bn_case(fx, name, dt, training, B, C, L, syms, eps=1e-5, momentum=0.1):
    x = fx.randn(B, C, L, dtype=dt, scale=1.5) + fx.randn(1, C, 1, dtype=dt)
    w = fx.randn(C, dtype=dt, scale=0.5) + 1.0
    b = fx.randn(C, dtype=dt, scale=0.3)
    rm = fx.randn(C, dtype=dt, scale=0.2)
    rv = fx.rand(C, dtype=dt, lo=0.5, hi=2.0)
    xt = f"{dt}[B,{C},L]" if syms else f"{dt}[{B},{C},{L}]"
    ts = [xt] + [f"{dt}[{C}]"] * 4
    attrs = {"training": int(training)}
    if eps != 1e-5:
        attrs["eps"] = eps
    if momentum != 0.1:
        attrs["momentum"] = momentum
    fx.add(name, "batchnorm", dt, [x, w, b, rm, rv], ts, batchnorm(training, eps, momentum),
           attrs=attrs, symbols=syms, nondiff=[3, 4])
    return x, w, rm, rv


def main():
    fx = Fixture("conv", seed=20240607)
    for dt in ("f64", "f32"):
        # Enformer's widths with padding k//2, with and without bias, symbolic odd length
        for K in (1, 5, 15):
            for bias in (True, False):
                x = fx.randn(2, 3, 23, dtype=dt)
                w = fx.randn(4, 3, K, dtype=dt, scale=1.0 / (3 * K) ** 0.5)
                ins, ts = [x, w], [f"{dt}[B,3,L]", f"{dt}[4,3,{K}]"]
                if bias:
                    ins.append(fx.randn(4, dtype=dt, scale=0.1))
                    ts.append(f"{dt}[4]")
                fx.add(f"conv1d_k{K}{'_bias' if bias else ''}_{dt}", "conv1d", dt, ins, ts,
                       conv(K // 2), attrs={"padding": K // 2}, symbols=SYMS)
        # padding attribute left to its default (K/2 for odd K)
        x = fx.randn(2, 3, 23, dtype=dt)
        fx.add(f"conv1d_default_pad_{dt}", "conv1d", dt,
               [x, fx.randn(2, 3, 5, dtype=dt), fx.randn(2, dtype=dt)],
               [f"{dt}[B,3,L]", f"{dt}[2,3,5]", f"{dt}[2]"], conv(2), symbols=SYMS)
        # a sequence shorter than the kernel: every window hangs over the padding
        x = fx.randn(1, 2, 5, dtype=dt)
        fx.add(f"conv1d_short_{dt}", "conv1d", dt, [x, fx.randn(3, 2, 15, dtype=dt, scale=0.2)],
               [f"{dt}[B,2,L]", f"{dt}[3,2,15]"], conv(7), attrs={"padding": 7},
               symbols={"B": [2, 1], "L": [9, 5]})
        # explicit paddings: even width (length grows by one), a valid conv (no padding) at a
        # static length, and more padding than K//2
        x = fx.randn(2, 3, 17, dtype=dt)
        fx.add(f"conv1d_even_{dt}", "conv1d", dt, [x, fx.randn(2, 3, 4, dtype=dt)],
               [f"{dt}[B,3,L]", f"{dt}[2,3,4]"], conv(2), attrs={"padding": 2},
               symbols={"B": [2, 2], "L": [20, 17]})
        fx.add(f"conv1d_valid_{dt}", "conv1d", dt, [x, fx.randn(2, 3, 3, dtype=dt),
                                                     fx.randn(2, dtype=dt)],
               [f"{dt}[2,3,17]", f"{dt}[2,3,3]", f"{dt}[2]"], conv(0), attrs={"padding": 0})
        fx.add(f"conv1d_widepad_{dt}", "conv1d", dt, [x, fx.randn(2, 3, 3, dtype=dt)],
               [f"{dt}[2,3,17]", f"{dt}[2,3,3]"], conv(3), attrs={"padding": 3})
        # many channels (several levels of the pairwise channel sum) and a length over one
        # kernel tile (256 positions)
        x = fx.randn(1, 20, 9, dtype=dt)
        fx.add(f"conv1d_wide_{dt}", "conv1d", dt,
               [x, fx.randn(3, 20, 5, dtype=dt, scale=0.1), fx.randn(3, dtype=dt)],
               [f"{dt}[1,20,L]", f"{dt}[3,20,5]", f"{dt}[3]"], conv(2), attrs={"padding": 2},
               symbols={"L": [12, 9]})
        x = fx.randn(1, 2, 301, dtype=dt)
        fx.add(f"conv1d_long_{dt}", "conv1d", dt,
               [x, fx.randn(2, 2, 15, dtype=dt, scale=0.2), fx.randn(2, dtype=dt)],
               [f"{dt}[B,2,L]", f"{dt}[2,2,15]", f"{dt}[2]"], conv(7), attrs={"padding": 7},
               symbols={"B": [1, 1], "L": [320, 301]})

        # conv1d_bwd on its own
        for K, bias in ((5, True), (15, False), (4, True)):
            p = K // 2
            lout = 23 + 2 * p - K + 1
            x = fx.randn(2, 3, 23, dtype=dt)
            w = fx.randn(4, 3, K, dtype=dt)
            dy = fx.randn(2, 4, lout, dtype=dt)
            dyt = f"{dt}[B,4,L]" if lout == 23 else f"{dt}[B,4,L{lout - 23:+d}]"
            fx.add(f"conv1d_bwd_k{K}{'_bias' if bias else ''}_{dt}", "conv1d_bwd", dt,
                   [x, w, dy], [f"{dt}[B,3,L]", f"{dt}[4,3,{K}]", dyt],
                   conv_bwd(p, bias), attrs={"padding": p, "has_bias": int(bias)}, symbols=SYMS,
                   nondiff=[0, 1, 2])

        # batchnorm: training (batch statistics, running-stat update) and eval
        bsym = {"B": [3, 2], "L": [16, 7]}
        for training in (True, False):
            mode = "train" if training else "eval"
            x, w, rm, rv = bn_case(fx, f"batchnorm_{mode}_{dt}", dt, training, 2, 4, 7, bsym)
            # batchnorm_bwd from the same statistics torch would save
            if training:
                _, mean, rstd = torch.ops.aten.native_batch_norm(x, None, None, None, None,
                                                                 True, 0.1, 1e-5)
            else:
                mean, rstd = rm, torch.rsqrt(rv + 1e-5)
            dy = fx.randn(2, 4, 7, dtype=dt)
            fx.add(f"batchnorm_bwd_{mode}_{dt}", "batchnorm_bwd", dt, [x, w, mean, rstd, dy],
                   [f"{dt}[B,4,L]", f"{dt}[4]", f"{dt}[4]", f"{dt}[4]", f"{dt}[B,4,L]"],
                   batchnorm_bwd(training, rv, 1e-5), attrs={"training": int(training)},
                   symbols=bsym, nondiff=[0, 1, 2, 3, 4])
        # other eps / momentum; a single sample (statistics over L only, as Enformer trains)
        bn_case(fx, f"batchnorm_train_eps_{dt}", dt, True, 3, 2, 5, {"B": [3, 3], "L": [8, 5]},
                eps=1e-3, momentum=0.3)
        bn_case(fx, f"batchnorm_train_b1_{dt}", dt, True, 1, 3, 33, {"B": [2, 1], "L": [40, 33]})
        bn_case(fx, f"batchnorm_eval_static_{dt}", dt, False, 2, 3, 5, None)

    fx.write(repo_root())


if __name__ == "__main__":
    main()
