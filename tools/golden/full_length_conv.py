"""Full-length (196,608-bp) golden for Enformer's first layers: BatchNorm1d in training mode
followed by a width-15 Conv1d (padding 7), with few channels, in f32.

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/full_length_conv.py
writes tests/golden/full_length_conv.safetensors, read by tests/test_ops_conv.c.

The input and the loss weights are not stored: both sides compute them in f64 from closed
forms and round to f32 (what the C test does too):
    x[b, c, l] = sin(0.0123*l + 0.7*c + 1.3*b) + 0.1*cos((0.00071*l) * (c + 1))
    r[b, o, l] = cos(0.0029*l + 0.5*o)
The model is
    h = F.batch_norm(x, rm, rv, bn_w, bn_b, training=True, momentum=0.1, eps=1e-5)
    y = F.conv1d(h, conv_w, conv_b, padding=7)
    loss = sum(y * r)
and the file stores its parameters, y at every STRIDE-th position (y_sub [Cout, n]), the
per-channel sum and sum of squares of y (f64, reduced from torch's f32 y), the batch statistics
(native_batch_norm's save_mean / save_invstd), the updated running stats, the gradients of the
loss w.r.t. every parameter, and dx at the same strided positions plus its per-channel sum of
squares.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import repo_root, versions  # noqa: E402

L = 196608
B, CIN, COUT, K = 1, 4, 2, 15
STRIDE = 997
EPS, MOMENTUM = 1e-5, 0.1


def closed_forms():
    b = torch.arange(B, dtype=torch.float64).view(B, 1, 1)
    c = torch.arange(CIN, dtype=torch.float64).view(1, CIN, 1)
    o = torch.arange(COUT, dtype=torch.float64).view(1, COUT, 1)
    pos = torch.arange(L, dtype=torch.float64).view(1, 1, L)
    x = torch.sin(0.0123 * pos + 0.7 * c + 1.3 * b) + 0.1 * torch.cos((0.00071 * pos) * (c + 1))
    r = torch.cos(0.0029 * pos + 0.5 * o).expand(B, COUT, L)
    return x.float().contiguous(), r.float().contiguous()


def main():
    gen = torch.Generator().manual_seed(196608)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).float()

    params = {
        "bn_w": randn(CIN, scale=0.2) + 1.0,
        "bn_b": randn(CIN, scale=0.2),
        "conv_w": randn(COUT, CIN, K, scale=(CIN * K) ** -0.5),
        "conv_b": randn(COUT, scale=0.1),
    }
    rm, rv = randn(CIN, scale=0.1), randn(CIN, scale=0.1).abs() + 1.0
    x, r = closed_forms()
    x.requires_grad_(True)
    p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    nrm, nrv = rm.clone(), rv.clone()
    h = F.batch_norm(x, nrm, nrv, p["bn_w"], p["bn_b"], training=True, momentum=MOMENTUM, eps=EPS)
    y = F.conv1d(h, p["conv_w"], p["conv_b"], padding=K // 2)
    loss = (y * r).sum()
    grads = torch.autograd.grad(loss, [x] + [p[k] for k in params])
    _, mean, rstd = torch.ops.aten.native_batch_norm(x.detach(), None, None, None, None, True,
                                                     MOMENTUM, EPS)
    y = y.detach()
    dx = grads[0]
    out = dict(params)
    out.update({
        "bn_rm": rm, "bn_rv": rv,
        "y_sub": y[0, :, ::STRIDE].contiguous(),
        "y_sum": y[0].double().sum(-1),
        "y_sqsum": y[0].double().pow(2).sum(-1),
        "bn_mean": mean, "bn_rstd": rstd, "bn_new_rm": nrm, "bn_new_rv": nrv,
        "dx_sub": dx[0, :, ::STRIDE].contiguous(),
        "dx_sqsum": dx[0].double().pow(2).sum(-1),
    })
    for k, g in zip(params, grads[1:]):
        out[f"grad_{k}"] = g.contiguous()
    meta = {"generator": "tools/golden/full_length_conv.py",
            "config": json.dumps({"L": L, "B": B, "Cin": CIN, "Cout": COUT, "K": K,
                                  "padding": K // 2, "stride": STRIDE, "eps": EPS,
                                  "momentum": MOMENTUM}, sort_keys=True)}
    meta.update({k: str(v) for k, v in versions().items()})
    path = os.path.join(repo_root(), "tests", "golden", "full_length_conv.safetensors")
    save_file(out, path, metadata=meta)
    print(f"wrote {path}: {len(out)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
