"""Writes golden op fixtures as safetensors files the C tests read (tests/support/golden.c).

One file per op group: tests/golden/ops_<group>.safetensors. Each *case* is one op applied to
inputs at *actual* sizes that may be below the IR bound (symbols), in one dtype:

  __metadata__["cases"]  JSON list of
      {"name": str, "op": IR op text name, "dtype": "f32"|"f64",
       "attrs": {key: int | float | str | [ints] | [floats]},
       "symbols": {"B": [bound, actual], ...},
       "inputs": ["f64[B,5]", "i64[B]", ...],        # IR type syntax, symbolic dims
       "nondiff": [input indices with no gradient],
       "fd": true|false,                               # finite-difference check wanted
       "outputs": ["f64[B*L,6]"]}                      # only for explicit-type ops (reshape)
  tensors  "<name>/in<i>", "<name>/out<j>", "<name>/cot<j>" (random cotangent per float
           output), "<name>/grad<i>" (d sum_j <out_j, cot_j> / d in_i, from torch autograd),
           all compact at actual sizes.
  __metadata__ also records the package versions that produced the file.

A case's `fn(*inputs)` returns a tuple of outputs computed with the peer's own torch code.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

DTYPES = {"f32": torch.float32, "f64": torch.float64}


def versions():
    out = {"python": sys.version.split()[0], "torch": torch.__version__}
    from importlib import metadata
    for mod in ("transformers", "peft", "safetensors", "numpy", "modelgenerator"):
        try:
            out[mod] = metadata.version(mod)
        except metadata.PackageNotFoundError:
            pass
    return out


class Fixture:
    def __init__(self, group, seed=0):
        self.group = group
        self.cases = []
        self.tensors = {}
        self.gen = torch.Generator().manual_seed(seed)

    def randn(self, *shape, dtype="f64", scale=1.0):
        return (torch.randn(*shape, generator=self.gen, dtype=torch.float64) * scale).to(DTYPES[dtype])

    def rand(self, *shape, dtype="f64", lo=0.0, hi=1.0):
        t = torch.rand(*shape, generator=self.gen, dtype=torch.float64) * (hi - lo) + lo
        return t.to(DTYPES[dtype])

    def randint(self, lo, hi, *shape, dtype=torch.int64):
        return torch.randint(lo, hi, shape, generator=self.gen).to(dtype)

    def add(self, name, op, dtype, inputs, types, fn, attrs=None, symbols=None, nondiff=(), fd=True,
            outputs=None):
        """inputs: list of tensors at actual sizes; types: list of IR type strings (bounds via symbols)."""
        assert name not in {c["name"] for c in self.cases}, name
        ins = [x.detach().clone() for x in inputs]
        req = []
        for i, x in enumerate(ins):
            if i not in nondiff and x.is_floating_point():
                x.requires_grad_(True)
                req.append(i)
        outs = fn(*ins)
        if not isinstance(outs, (tuple, list)):
            outs = (outs,)
        total = None
        for j, o in enumerate(outs):
            self.tensors[f"{name}/out{j}"] = o.detach().clone().contiguous()
            if o.is_floating_point() and o.requires_grad:
                cot = torch.randn(o.shape, generator=self.gen, dtype=torch.float64).to(o.dtype)
                self.tensors[f"{name}/cot{j}"] = cot
                term = (o * cot).sum()
                total = term if total is None else total + term
        if total is not None and req:
            grads = torch.autograd.grad(total, [ins[i] for i in req], allow_unused=True)
            for i, g in zip(req, grads):
                if g is None:
                    g = torch.zeros_like(ins[i])
                self.tensors[f"{name}/grad{i}"] = g.detach().clone().contiguous()
        for i, x in enumerate(ins):
            self.tensors[f"{name}/in{i}"] = x.detach().clone().contiguous()
        self.cases.append({
            "name": name, "op": op, "dtype": dtype, "attrs": attrs or {},
            "symbols": symbols or {}, "inputs": list(types), "nondiff": list(nondiff), "fd": fd,
        })
        if outputs:
            self.cases[-1]["outputs"] = list(outputs)

    def write(self, root):
        path = os.path.join(root, "tests", "golden", f"ops_{self.group}.safetensors")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        meta = {"cases": json.dumps(self.cases, sort_keys=True), "generator": f"tools/golden/ops_{self.group}.py"}
        meta.update({k: str(v) for k, v in versions().items()})
        save_file(self.tensors, path, metadata=meta)
        print(f"wrote {path}: {len(self.cases)} cases, {os.path.getsize(path)} bytes")


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
