"""Golden cases for the train group (dropout, mse, mse_bwd, adamw).

Run with the golden venv from the repository root:
    ${AIDOMM_GOLDEN_VENV:-$HOME/.cache/aidomm/golden-venv}/bin/python tools/golden/ops_train.py
writes tests/golden/ops_train.safetensors (layout: tools/golden/fixture.py).

- mse: torch.nn.functional.mse_loss (ModelGenerator's loss_func=torch.nn.MSELoss, reduction
  "mean"), inputs below their bounds; the target gets no gradient.
- mse_bwd: torch autograd of mse_loss w.r.t. pred for a given dloss (its own op, no VJP).
- dropout: F.dropout with p = 0 in training mode (the identity, gradient = cotangent). Masks
  for p > 0 come from our Philox keying, not torch's generator, so they are tested in C
  (tests/test_ops_train.c) by statistics and reproducibility instead.
- adamw: torch.optim.adamw.adamw, the functional API behind torch.optim.AdamW, with foreach and
  fused off (the single-tensor path) at steps t = 1, 2 and 10; the step input is the 1-based t.
"""
import os
import sys

import torch
import torch.nn.functional as F
from torch.optim.adamw import adamw as adamw_functional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import DTYPES, Fixture, repo_root  # noqa: E402


def scalar(fx, dt):
    return fx.randn(1, dtype=dt).reshape(())


def mse(pred, target):
    return F.mse_loss(pred, target)


def mse_bwd(pred, target, dloss):
    p = pred.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (dp,) = torch.autograd.grad(F.mse_loss(p, target), p, dloss)
    return dp


def dropout_p0(x, seed, step):
    # torch returns the input tensor itself for p = 0; the clone keeps safetensors from
    # refusing two names for one storage.
    return F.dropout(x, p=0.0, training=True).clone()


def make_adamw_clip(beta1, beta2, eps, weight_decay):
    inner = make_adamw(beta1, beta2, eps, weight_decay)

    def fn(p, g, m, v, lr, step, total_norm, max_norm):
        g = g.clone()
        mx = float(max_norm.item())
        if mx > 0:
            # torch/nn/utils/clip_grad.py (2.5.1), verbatim
            clip_coef = mx / (total_norm + 1e-6)
            clip_coef_clamped = torch.clamp(clip_coef, max=1.0)
            g.mul_(clip_coef_clamped)
        return inner(p, g, m, v, lr, step)
    return fn


def make_adamw(beta1, beta2, eps, weight_decay):
    def fn(p, g, m, v, lr, step):
        p2, m2, v2 = p.clone(), m.clone(), v.clone()
        # state['step'] is a float32 tensor that the step increments before use.
        steps = [torch.tensor(float(step.item() - 1))]
        adamw_functional([p2], [g], [m2], [v2], [], steps, foreach=False, capturable=False,
                         differentiable=False, fused=None, grad_scale=None, found_inf=None,
                         has_complex=False, amsgrad=False, beta1=beta1, beta2=beta2,
                         lr=float(lr.item()), weight_decay=weight_decay, eps=eps, maximize=False)
        assert int(steps[0].item()) == int(step.item())
        return p2, m2, v2
    return fn


def main():
    fx = Fixture("train", seed=20240611)

    # ---- mse ----------------------------------------------------------------------------
    for dt in ("f64", "f32"):
        fx.add(f"mse_2d_{dt}", "mse", dt,
               [fx.randn(3, 5, dtype=dt), fx.randn(3, 5, dtype=dt)],
               [f"{dt}[B,5]", f"{dt}[B,5]"], mse,
               symbols={"B": [4, 3]}, nondiff=[1], fd=True)
        fx.add(f"mse_3d_{dt}", "mse", dt,
               [fx.randn(2, 11, 3, dtype=dt, scale=2.0), fx.randn(2, 11, 3, dtype=dt)],
               [f"{dt}[B,L,3]", f"{dt}[B,L,3]"], mse,
               symbols={"B": [2, 2], "L": [16, 11]}, nondiff=[1], fd=True)
        fx.add(f"mse_regression30_{dt}", "mse", dt,
               [fx.randn(2, 30, dtype=dt), fx.randn(2, 30, dtype=dt)],
               [f"{dt}[B,30]", f"{dt}[B,30]"], mse,
               symbols={"B": [4, 2]}, nondiff=[1], fd=True)
        fx.add(f"mse_scalar_{dt}", "mse", dt,
               [scalar(fx, dt), scalar(fx, dt)],
               [f"{dt}[]", f"{dt}[]"], mse, nondiff=[1], fd=True)

    # ---- mse_bwd ------------------------------------------------------------------------
    for dt in ("f64", "f32"):
        fx.add(f"mse_bwd_{dt}", "mse_bwd", dt,
               [fx.randn(3, 7, dtype=dt), fx.randn(3, 7, dtype=dt), scalar(fx, dt)],
               [f"{dt}[B,7]", f"{dt}[B,7]", f"{dt}[]"], mse_bwd,
               symbols={"B": [5, 3]}, nondiff=[0, 1, 2], fd=False)

    # ---- dropout (p = 0: the identity) ----------------------------------------------------
    for dt in ("f64", "f32"):
        seed = torch.tensor(1234, dtype=torch.int64)
        step = torch.tensor(7, dtype=torch.int64)
        fx.add(f"dropout_p0_{dt}", "dropout", dt,
               [fx.randn(3, 6, dtype=dt), seed, step],
               [f"{dt}[B,6]", "i64[]", "i64[]"], dropout_p0,
               attrs={"p": 0.0, "key": "backbone.encoder.layer.0.attention.dropout"},
               symbols={"B": [4, 3]}, nondiff=[1, 2], fd=True)

    # ---- adamw ----------------------------------------------------------------------------
    # Shapes straddle torch's vector width (8 f32 / 4 f64 lanes, two vectors per iteration),
    # so both the vectorised body and the scalar tail are covered.
    shapes = {"vec": (16, 32), "tail": (37,), "mat": (33, 31)}
    configs = [
        # (name, t, lr, beta1, beta2, eps, weight_decay, shape)
        ("t1", 1, 1e-3, 0.9, 0.999, 1e-8, 0.01, "vec"),
        ("t2", 2, 1e-3, 0.9, 0.999, 1e-8, 0.01, "tail"),
        ("t10", 10, 5e-4, 0.9, 0.999, 1e-8, 0.01, "mat"),
        ("t10_nowd", 10, 2e-3, 0.9, 0.98, 1e-6, 0.0, "tail"),
        ("t2_bigbeta1", 2, 1e-2, 0.3, 0.99, 1e-8, 0.1, "vec"),  # lerp weight >= 0.5 branch
    ]
    for dt in ("f32", "f64"):
        for name, t, lr, b1, b2, eps, wd, shp in configs:
            shape = shapes[shp]
            p = fx.randn(*shape, dtype=dt)
            g = fx.randn(*shape, dtype=dt, scale=0.1)
            if t == 1:  # fresh optimizer state
                m = torch.zeros(shape, dtype=DTYPES[dt])
                v = torch.zeros(shape, dtype=DTYPES[dt])
            else:
                m = fx.randn(*shape, dtype=dt, scale=0.05)
                v = fx.rand(*shape, dtype=dt, lo=0.0, hi=0.01)
            lr_t = torch.tensor(lr, dtype=torch.float64)
            step_t = torch.tensor(t, dtype=torch.int64)
            ty = f"{dt}[{','.join(str(s) for s in shape)}]"
            fx.add(f"adamw_{name}_{dt}", "adamw", dt, [p, g, m, v, lr_t, step_t],
                   [ty, ty, ty, ty, "f64[]", "i64[]"], make_adamw(b1, b2, eps, wd),
                   attrs={"beta1": b1, "beta2": b2, "eps": eps, "weight_decay": wd},
                   nondiff=[0, 1, 2, 3, 4, 5], fd=False)

    # adamw with Lightning's gradient clipping (torch.nn.utils.clip_grad_norm_ semantics, the
    # norm given): g <- g * clamp(max_norm / (norm + 1e-6), max=1) first. Cases where the clip
    # is active, inactive and max_norm 0 (off).
    for dt in ("f32", "f64"):
        for name, norm, max_norm in (("clip_on", 3.7, 0.5), ("clip_off", 0.2, 1.0),
                                     ("clip_zero", 2.0, 0.0)):
            shape = shapes["tail"]
            p = fx.randn(*shape, dtype=dt)
            g = fx.randn(*shape, dtype=dt, scale=0.1)
            m = fx.randn(*shape, dtype=dt, scale=0.05)
            v = fx.rand(*shape, dtype=dt, lo=0.0, hi=0.01)
            lr_t = torch.tensor(1e-3, dtype=torch.float64)
            step_t = torch.tensor(3, dtype=torch.int64)
            gn = torch.tensor(norm, dtype=DTYPES[dt])
            mx = torch.tensor(max_norm, dtype=torch.float64)
            ty = f"{dt}[{shape[0]}]"
            fx.add(f"adamw_{name}_{dt}", "adamw", dt, [p, g, m, v, lr_t, step_t, gn, mx],
                   [ty, ty, ty, ty, "f64[]", "i64[]", f"{dt}[]", "f64[]"],
                   make_adamw_clip(0.9, 0.999, 1e-8, 0.01),
                   attrs={"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
                   nondiff=[0, 1, 2, 3, 4, 5, 6, 7], fd=False)

    fx.write(repo_root())


if __name__ == "__main__":
    main()
