"""Hugging Face-layout weight folders written by the peers' own save_pretrained, with fixed
inputs and the peers' eval-mode outputs, for tests/test_hf_folders.c (issue 4, weights).

Writes, for each tiny model (modelgenerator.md §11.3 sizes):
  tests/golden/hf/<name>/config.json, model.safetensors   save_pretrained(safe_serialization=True)
  tests/golden/hf/<name>_io.safetensors                    <case>/input_ids i64[B, L],
        <case>/attention_mask f32[B, L], <case>/out f32[B, L, H] (last_hidden_state)

  esm2_tiny     transformers EsmModel (tools/golden/esm2.py's tiny EsmConfig, pooler included,
                as the ESM backbone builds it), random weights
  enformer_tiny the vendored Enformer (modelgenerator.huggingface_models.enformer_pytorch) of
                the enformer backbone with tools/golden/enformer.py's TINY config, dropout 0,
                random weights and BatchNorm statistics; <case>/one_hot f32[B, L, 4] and
                <case>/out f32[B, target_length, 2 * dim] (return_only_embeddings=True);
                output_heads {human: 8, mouse: 4} keeps it small; save_pretrained drops the
                _trunk.* aliases (shared tensors), so the folder holds each tensor once
  rnabert_tiny  RNABertModel of modelgenerator's aido_rna_650m backbone with
                tools/golden/rnabert.py's TINY config_overwrites, random weights

Weights are random and non-trivial (norm weights near 1, nonzero biases) so that a key loaded
into the wrong slot shows in the outputs. Run with the golden venv:
  /root/.cache/aidomm/golden-venv/bin/python tools/golden/hf_folders.py
"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import repo_root, versions  # noqa: E402


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, p in model.named_parameters():
            base = 1.0 if (k.endswith("LayerNorm.weight") or k.endswith("ln.weight")
                           or k.endswith("layer_norm.weight")) else 0.0
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) * 0.3
                    + base)


def save(name, model, cases):
    root = os.path.join(repo_root(), "tests", "golden", "hf")
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    tensors = {}
    with torch.no_grad():
        for case, inp in cases.items():
            if isinstance(inp, torch.Tensor):  # Enformer: one-hot DNA, the wrapper's call
                out = model(inp, return_only_embeddings=True)
                tensors[f"{case}/one_hot"] = inp.contiguous()
                tensors[f"{case}/out"] = out.to(torch.float32).contiguous()
                continue
            ids, mask = inp
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
            tensors[f"{case}/input_ids"] = ids.contiguous()
            tensors[f"{case}/attention_mask"] = mask.to(torch.float32).contiguous()
            tensors[f"{case}/out"] = out.to(torch.float32).contiguous()
    meta = dict(versions(), generator="tools/golden/hf_folders.py", model=name)
    save_file(tensors, os.path.join(root, f"{name}_io.safetensors"), metadata=meta)
    for f in sorted(os.listdir(folder)):
        size = os.path.getsize(os.path.join(folder, f))
        assert size < 1 << 20, (f, size)
        print(f"{name}/{f} {size}")


def padded(rows, pad):
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids, mask


def esm2():
    from transformers import EsmModel
    from esm2 import esm_config
    torch.manual_seed(4101)
    model = EsmModel(esm_config("tiny"), add_pooling_layer=True)
    randomize(model, 4101)
    # <cls>=0 ... <eos>=2, pad 1, amino acids 4..23, <mask> 32
    cases = {"a": padded([[0, 20, 15, 7, 2], [0, 20, 15, 32, 7, 4, 5, 6, 8, 2]], 1)}
    save("esm2_tiny", model, cases)


def rnabert():
    import rnabert as rg
    torch.manual_seed(4102)
    bb = rg.backbone("aido_rna_650m", rg.TINY, max_length=16)
    model = rg.hf_model(bb)
    randomize(model, 4102)
    cases = {}
    tok = bb.tokenize(["ACGTA", "GGCATTACNG"])
    cases["a"] = (torch.tensor(tok["input_ids"], dtype=torch.long),
                  torch.tensor(tok["attention_mask"], dtype=torch.long))
    save("rnabert_tiny", model, cases)


def enformer():
    import enformer as eg
    torch.manual_seed(4103)
    # Small output heads keep the folder well under 1 MB (the hub's 5313/1643 heads are 2.7 MB
    # at this dim); the backbone never reads them, but a folder must still carry them.
    bb = eg.wrapper({**eg.TINY, **eg.NODROP, "output_heads": {"human": 8, "mouse": 4}})
    model = bb.encoder.to(torch.float32)
    gen = torch.Generator().manual_seed(4103)
    eg.randomize(model, gen)
    x = eg.one_hot(eg.L, gen).to(torch.float32)  # [2, 256, 4], with N, '.' and lowercase
    save("enformer_tiny", model, {"a": x})


def main():
    esm2()
    rnabert()
    enformer()


if __name__ == "__main__":
    main()
