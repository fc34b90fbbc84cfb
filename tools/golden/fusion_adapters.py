"""Golden forward/backward of ModelGenerator's fusions and adapters, from the peer's own modules
(modelgenerator.adapters.fusion / modelgenerator.adapters.adapters).

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/fusion_adapters.py
writes, for DT in f32 and f64 (each file well under 1 MB):
  tests/golden/fusion_DT.safetensors          CrossAttentionFusion (2 modalities) and
                                              ConcatFusion (2 and 3 modalities, mean and CLS)
  tests/golden/adapters_DT.safetensors        MMFusionSeqAdapter (2 modalities),
                                              MMFusionTokenAdapter (2 and 3), every plain head
  tests/golden/adapters_mmseq3_DT.safetensors MMFusionSeqAdapter with 3 modalities
read by tests/test_fusion_adapters.c. Sizes are modelgenerator.md 11.3's: query Hq=96 over
Lq=16 with h=4 heads, contexts H1=32 (L1=10) and H2=16 (L2=5), ConcatFusion P=8,
MLPPoolAdapter 96->8->30, MLPAdapter 24->16->30, batch 2. Masks: query row 1 has 4 padded
positions (masked query rows), the RNA row 0 three, the protein row 0 is the empty protein
(<cls>, <eos>: 2 valid tokens).

Per case C (names in __metadata__["cases"], JSON with the class paths and init args):
  C/p/<key>    every parameter, stored f32 (the values are f32-representable, so the f64 case
               uses them exactly); <key> is the peer's state_dict key under the task's prefix
               ("adapter.fusion_module." for fusions, "adapter." for adapters)
  C/in/<name>  inputs h0, m0, h1, m1[, h2, m2] (f32 storage, f32-representable)
  C/out        the module output in DT; C/fused the fusion output (MMFusion* cases)
  C/cot        a random cotangent; the loss is sum(out * cot)
  C/g/<key>    d loss / d parameter, C/gin/<name> d loss / d hidden input, in DT
Dropout is 0 (eval-equivalent), so outputs are deterministic.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import repo_root, versions  # noqa: E402

from modelgenerator.adapters.adapters import (  # noqa: E402
    LinearAdapter, LinearCLSAdapter, LinearMaxPoolAdapter, LinearMeanPoolAdapter, MLPAdapter,
    MLPPoolAdapter)
from modelgenerator.adapters.fusion import (  # noqa: E402
    ConcatFusion, CrossAttentionFusion, MMFusionSeqAdapter, MMFusionTokenAdapter)

DTYPES = {"f32": torch.float32, "f64": torch.float64}
B, LQ, HQ, L1, H1, L2, H2 = 2, 16, 96, 10, 32, 5, 16


def masks():
    m0 = torch.ones(B, LQ)
    m0[1, 12:] = 0  # masked query rows
    m1 = torch.tensor([[1.0] * 7 + [0.0] * 3, [1.0] * 10])
    m2 = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0], [1.0] * 5])  # the empty protein: 2 tokens
    return m0, m1, m2


def f32able(t):
    return t.float().double()


class Case:
    def __init__(self, name, cls, args, prefix, module_fn, inputs, call):
        self.name, self.cls, self.args, self.prefix = name, cls, args, prefix
        self.module_fn, self.inputs, self.call = module_fn, inputs, call


def run_case(case, dt, seed, tensors):
    torch.manual_seed(seed)
    mod = case.module_fn().double()
    with torch.no_grad():
        for p in mod.parameters():
            p.copy_(f32able(p))
    mod = mod.to(DTYPES[dt]).eval()
    ins = {}
    for k, v in case.inputs.items():
        x = v.to(DTYPES[dt]).clone()
        if not k.startswith("m"):
            x.requires_grad_(True)
        ins[k] = x
    fused = {}
    if hasattr(mod, "fusion_module"):
        mod.fusion_module.register_forward_hook(lambda m, i, o: fused.__setitem__("out", o))
    out = case.call(mod, ins)
    gen = torch.Generator().manual_seed(seed + 1)
    cot = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(DTYPES[dt])
    (out * cot).sum().backward()
    n = case.name
    for k, p in mod.named_parameters():
        tensors[f"{n}/p/{case.prefix}{k}"] = p.detach().float().contiguous()
        tensors[f"{n}/g/{case.prefix}{k}"] = p.grad.detach().clone().contiguous()
    for k, v in case.inputs.items():
        tensors[f"{n}/in/{k}"] = v.float().contiguous()
        if not k.startswith("m"):
            tensors[f"{n}/gin/{k}"] = ins[k].grad.detach().clone().contiguous()
    tensors[f"{n}/out"] = out.detach().contiguous()
    tensors[f"{n}/cot"] = cot.contiguous()
    if "out" in fused:
        tensors[f"{n}/fused"] = fused["out"].detach().contiguous()
    return {"name": n, "class": case.cls, "args": case.args, "prefix": case.prefix.rstrip("."),
            "inputs": list(case.inputs.keys()),
            "params": [case.prefix + k for k, _ in mod.named_parameters()]}


def mm_inputs(n, seed):
    g = torch.Generator().manual_seed(seed)
    m0, m1, m2 = masks()
    d = {"h0": f32able(torch.randn(B, LQ, HQ, generator=g, dtype=torch.float64)), "m0": m0,
         "h1": f32able(torch.randn(B, L1, H1, generator=g, dtype=torch.float64)), "m1": m1}
    if n == 3:
        d["h2"] = f32able(torch.randn(B, L2, H2, generator=g, dtype=torch.float64))
        d["m2"] = m2
    return d


def fusion_call(mod, x):
    return mod(x["h0"], x["m0"], x["h1"], x["m1"], x.get("h2"), x.get("m2"))


def head_inputs(seed, pooled=False):
    g = torch.Generator().manual_seed(seed)
    if pooled:
        return {"h0": f32able(torch.randn(B, 12, generator=g, dtype=torch.float64))}
    m = torch.tensor([[1.0] * 7, [1.0] * 4 + [0.0] * 3])
    return {"h0": f32able(torch.randn(B, 7, 12, generator=g, dtype=torch.float64)), "m0": m}


def head_call(mod, x):
    return mod(x["h0"], x.get("m0")) if "m0" in x else mod(x["h0"])


CA = "modelgenerator.adapters.fusion.CrossAttentionFusion"
CF = "modelgenerator.adapters.fusion.ConcatFusion"
FUSION_CASES = [
    Case("cross2", CA, {"num_attention_heads": 4}, "adapter.fusion_module.",
         lambda: CrossAttentionFusion(HQ, H1, None, num_attention_heads=4), mm_inputs(2, 11),
         fusion_call),
    Case("concat2", CF, {"project_size": 8, "pooling": "mean_pooling"}, "adapter.fusion_module.",
         lambda: ConcatFusion(HQ, H1, None, project_size=8), mm_inputs(2, 12), fusion_call),
    Case("concat3", CF, {"project_size": 8, "pooling": "mean_pooling"}, "adapter.fusion_module.",
         lambda: ConcatFusion(HQ, H1, H2, project_size=8), mm_inputs(3, 13), fusion_call),
    Case("concat3_cls", CF, {"project_size": 8, "pooling": "cls_pooling"},
         "adapter.fusion_module.",
         lambda: ConcatFusion(HQ, H1, H2, project_size=8, pooling="cls_pooling"),
         mm_inputs(3, 14), fusion_call),
]


def mmseq(n):
    return lambda: MMFusionSeqAdapter(
        30, HQ, H1, H2 if n == 3 else None,
        fusion=lambda a, b, c: CrossAttentionFusion(a, b, c, num_attention_heads=4),
        adapter=lambda i, o: MLPPoolAdapter(i, o, pooling="mean_pooling", hidden_sizes=[8],
                                            dropout=0.0, dropout_in_middle=False))


def mmtoken(n):
    return lambda: MMFusionTokenAdapter(
        30, HQ, H1, H2 if n == 3 else None,
        fusion=lambda a, b, c: ConcatFusion(a, b, c, project_size=8),
        adapter=lambda i, o: MLPAdapter(i, o, hidden_sizes=[16], dropout=0.0,
                                        dropout_in_middle=False))


MMSEQ_ARGS = {"fusion": {"class_path": CA, "init_args": {"num_attention_heads": 4}},
              "adapter": {"class_path": "modelgenerator.adapters.MLPPoolAdapter",
                          "init_args": {"pooling": "mean_pooling", "hidden_sizes": [8],
                                        "dropout": 0.0, "dropout_in_middle": False}}}
MMTOKEN_ARGS = {"fusion": {"class_path": CF, "init_args": {"project_size": 8}},
                "adapter": {"class_path": "modelgenerator.adapters.MLPAdapter",
                            "init_args": {"hidden_sizes": [16], "dropout": 0.0,
                                          "dropout_in_middle": False}}}
A = "modelgenerator.adapters."
ADAPTER_CASES = [
    Case("mmseq2", A + "MMFusionSeqAdapter", MMSEQ_ARGS, "adapter.", mmseq(2), mm_inputs(2, 21),
         fusion_call),
    Case("mmtoken2", A + "MMFusionTokenAdapter", MMTOKEN_ARGS, "adapter.", mmtoken(2),
         mm_inputs(2, 22), fusion_call),
    Case("mmtoken3", A + "MMFusionTokenAdapter", MMTOKEN_ARGS, "adapter.", mmtoken(3),
         mm_inputs(3, 23), fusion_call),
    # in-middle dropout layers shift the sequential indices: params at 1, 4, 7
    Case("mlp", A + "MLPAdapter", {"hidden_sizes": [10, 6], "dropout_in_middle": True},
         "adapter.", lambda: MLPAdapter(12, 5, hidden_sizes=[10, 6]), head_inputs(31, True),
         head_call),
    Case("mlp_nobias_relu", A + "MLPAdapter",
         {"hidden_sizes": [9], "bias": False, "activation_layer": "torch.nn.ReLU",
          "dropout_in_middle": False}, "adapter.",
         lambda: MLPAdapter(12, 5, hidden_sizes=[9], bias=False,
                            activation_layer=torch.nn.ReLU, dropout_in_middle=False),
         head_inputs(32, True), head_call),
    Case("linear", A + "LinearAdapter", {}, "adapter.", lambda: LinearAdapter(12, 5),
         head_inputs(33, True), head_call),
    Case("mlppool_mean", A + "MLPPoolAdapter", {"hidden_sizes": [8]}, "adapter.",
         lambda: MLPPoolAdapter(12, 5, hidden_sizes=[8]), head_inputs(34), head_call),
    Case("mlppool_cls", A + "MLPPoolAdapter", {"pooling": "cls_pooling", "hidden_sizes": [8]},
         "adapter.", lambda: MLPPoolAdapter(12, 5, pooling="cls_pooling", hidden_sizes=[8]),
         head_inputs(35), head_call),
    Case("linear_cls", A + "LinearCLSAdapter", {}, "adapter.", lambda: LinearCLSAdapter(12, 5),
         head_inputs(36), head_call),
    Case("linear_mean", A + "LinearMeanPoolAdapter", {}, "adapter.",
         lambda: LinearMeanPoolAdapter(12, 5), head_inputs(37), head_call),
    Case("linear_max", A + "LinearMaxPoolAdapter", {}, "adapter.",
         lambda: LinearMaxPoolAdapter(12, 5), head_inputs(38), head_call),
]
MMSEQ3_CASES = [
    Case("mmseq3", A + "MMFusionSeqAdapter", MMSEQ_ARGS, "adapter.", mmseq(3), mm_inputs(3, 24),
         fusion_call),
]


def write(fname, cases, dt):
    tensors, meta = {}, []
    for i, c in enumerate(cases):
        meta.append(run_case(c, dt, 100 + i, tensors))
    md = {"cases": json.dumps(meta), "dtype": dt, "generator": "tools/golden/fusion_adapters.py",
          **{k: str(v) for k, v in versions().items()}}
    path = os.path.join(repo_root(), "tests", "golden", f"{fname}_{dt}.safetensors")
    save_file(tensors, path, metadata=md)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    for dt in ("f32", "f64"):
        write("fusion", FUSION_CASES, dt)
        write("adapters", ADAPTER_CASES, dt)
        write("adapters_mmseq3", MMSEQ3_CASES, dt)
