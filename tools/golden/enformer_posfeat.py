"""Golden tables for frontend/enformer_posfeat.c: the vendored Enformer's own
get_positional_embed (modelgenerator.huggingface_models.enformer_pytorch.modeling_enformer,
use_tf_gamma=False).

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/enformer_posfeat.py
writes tests/golden/enformer_posfeat.safetensors.

For each (n, F) in {32, 1536} x {24, 192} two evaluations of the peer's function:
  * "f64": torch.set_default_dtype(torch.float64) and dtype=torch.float64, so every
    intermediate (the linspaces, the exponential features, lgamma) is float64, as under
    Lightning's precision 64 (DoublePrecision.forward_context sets the default dtype). This is
    what the C function reproduces (to ~1e-12; libm vs SLEEF transcendental roundings).
  * "f32": the default float32 dtype and dtype=torch.float32, the table an f32 Enformer uses.
    Its float32 roundings (SLEEF's lgamma/log/exp) cannot be reproduced from C; the test
    measures the gap per column group.
Tensors, per case "n<n>_f<F>_<dt>":
  rows   int64 [R]: which rows of the [2n-1, F] table are stored (all for n = 32; for n = 1536
         every 61st row, the centre rows and both ends, to keep the file small)
  table  [R, F] those rows, in the case's dtype
  rowsum f64 [2n-1]: only where rows is a subset: the sum over features of every row (of the
         table in its dtype, summed in float64)
__metadata__["cases"]: JSON list of {name, n, features, dtype}.
"""
import json
import os
import sys

import torch
from modelgenerator.huggingface_models.enformer_pytorch.modeling_enformer import get_positional_embed
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import repo_root, versions  # noqa: E402


def peer_table(n, F, dt):
    if dt == "f64":
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            return get_positional_embed(n, F, "cpu", False, dtype=torch.float64)
        finally:
            torch.set_default_dtype(old)
    return get_positional_embed(n, F, "cpu", False, dtype=torch.float32)


def stored_rows(n):
    R = 2 * n - 1
    if n <= 64:
        return list(range(R))
    rows = set(range(0, R, 61)) | set(range(n - 4, n + 4)) | {R - 2, R - 1}
    return sorted(r for r in rows if 0 <= r < R)


def main():
    tensors, cases = {}, []
    for n in (32, 1536):
        for F in (24, 192):
            for dt in ("f64", "f32"):
                name = f"n{n}_f{F}_{dt}"
                t = peer_table(n, F, dt)
                assert t.shape == (2 * n - 1, F), t.shape
                rows = torch.tensor(stored_rows(n), dtype=torch.int64)
                tensors[f"{name}/rows"] = rows
                tensors[f"{name}/table"] = t[rows].contiguous()
                if len(rows) < t.shape[0]:
                    tensors[f"{name}/rowsum"] = t.double().sum(dim=-1).contiguous()
                cases.append({"name": name, "n": n, "features": F, "dtype": dt})
    path = os.path.join(repo_root(), "tests", "golden", "enformer_posfeat.safetensors")
    meta = {"cases": json.dumps(cases, sort_keys=True),
            "generator": "tools/golden/enformer_posfeat.py"}
    meta.update({k: str(v) for k, v in versions().items()})
    save_file(tensors, path, metadata=meta)
    print(f"wrote {path}: {len(cases)} cases, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
