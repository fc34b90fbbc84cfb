"""Goldens and key tables of the AIDO.RNA backbones (modelgenerator.backbones.aido_rna_*).

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/rnabert.py
Everything comes from the peer's own code: the GenBioBERT wrapper (setup() with from_scratch and
config_overwrites, PEFT get_peft_model as the wrapper calls it, on_save_checkpoint pruning) and
modelgenerator/huggingface_models/rnabert/modeling_rnabert.py. No weights are downloaded.

Writes
  tests/golden/rnabert_{f32,f64}.safetensors       tiny backbone (modelgenerator.md §11.3), eval
  tests/golden/rnabert_lora_{f32,f64}.safetensors  the same with use_peft (r 2, alpha 4, query/value)
     params/<key>          every state_dict key of the backbone module ("encoder.<HF path>")
     <case>/input_ids      i64 [B, L] from the wrapper's own tokenizer (add [CLS] ... [SEP], pad 0)
     <case>/attention_mask [B, L] in the model dtype
     <case>/cot            random cotangent [B, L, H]; loss = sum(last_hidden_state * cot)
     <case>/out            last_hidden_state [B, L, H]
     <case>/grads/<key>    d loss / d param for every parameter with requires_grad (autograd);
                           frozen parameters (the PEFT base) get none and have no entry
  cases: "pad" ["ACGTA", "GGCATTAC"] (modelgenerator.md §11.3), "odd" three odd lengths padded
  to 13, "alone" ["ACGTA"] unpadded (the first "pad" row padded two ways).
  tests/golden/rnabert_rms_{f32,f64}.safetensors  normalization_type RMSNorm (RNABertConfig's
     default, so from_scratch models use it), cases "pad" and "alone"
  tests/golden/keys/aido_rna_<size>[_peft|_frozen].txt: key tables, one line per state_dict key
     "<key>\t<shape>\t<trainable 0|1>\t<kept by save_peft_only 0|1>"
  with '#' header lines naming the config and the totals.

Exactness notes (the C builder documents the same):
  * f64: Lightning's precision 64 calls model.double(), which does not convert the peer's
    RotaryEmbedding.inv_freq (a plain attribute, kept float32). aidomm's ROTARY computes its table
    in the compute dtype, so the f64 golden sets inv_freq in float64 (as the other rotary goldens
    do); f32 runs the peer unchanged.
  * RnaRMSNorm computes in float32 whatever the model dtype; the f64 RMSNorm golden computes it
    in float64 (aidomm's RMSNORM runs in the compute dtype); f32 is the peer unchanged.
  * The LoRA golden sets lora_B to random values (PEFT initialises it to zero, which would make
    every lora_A gradient zero and the test unable to fail).
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import repo_root, versions  # noqa: E402

from safetensors.torch import save_file  # noqa: E402
import modelgenerator.backbones as mb  # noqa: E402

TINY = dict(vocab_size=16, hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
            intermediate_size=48, normalization_type="LayerNorm", layer_norm_eps=1e-5,
            add_linear_bias=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            max_position_embeddings=1024, position_embedding_type="rope", rotary_percent=1.0)

# Full sizes (modelgenerator.md §5.3): config.json of AIDO.RNA-1.6B (the -CDS model has the same
# architecture) and the multimolecule conversion of AIDO.RNA-650M; the wrapper reads them with
# from_pretrained, which aidomm cannot (no hub access), so they are restated here and in
# frontend/rnabert.c, and the parameter counts in the key tables check them.
FULL_COMMON = dict(vocab_size=16, normalization_type="LayerNorm", layer_norm_eps=1e-5,
                   add_linear_bias=True, hidden_dropout_prob=0.0,
                   attention_probs_dropout_prob=0.0, max_position_embeddings=1024,
                   position_embedding_type="rope", rotary_percent=1.0)
FULL = {
    "aido_rna_650m": dict(FULL_COMMON, hidden_size=1280, num_hidden_layers=33,
                          num_attention_heads=20, intermediate_size=3392),
    "aido_rna_1b600m": dict(FULL_COMMON, hidden_size=2048, num_hidden_layers=32,
                            num_attention_heads=32, intermediate_size=5440),
    "aido_rna_1b600m_cds": dict(FULL_COMMON, hidden_size=2048, num_hidden_layers=32,
                                num_attention_heads=32, intermediate_size=5440),
}

CASES = {
    "pad": ["ACGTA", "GGCATTAC"],
    "odd": ["GAT", "ACGTNCG", "CCGGAATTCCG"],
    "alone": ["ACGTA"],
}


def backbone(cls_name, overwrites, **kw):
    cls = getattr(mb, cls_name)
    bb = cls(None, None, from_scratch=True, config_overwrites=dict(overwrites), **kw)
    bb.setup()
    return bb


def hf_model(bb):
    """The RNABertModel inside the wrapper (under PEFT's base_model.model when wrapped)."""
    enc = bb.encoder
    if hasattr(enc, "base_model") and hasattr(enc.base_model, "model"):
        return enc.base_model.model
    return enc


def key_table(bb, path, header):
    sd = bb.state_dict(keep_vars=True)
    ckpt = {"state_dict": {f"backbone.{k}": None for k in sd}}
    bb.on_save_checkpoint(ckpt, prefix="backbone")
    kept = set(ckpt["state_dict"])
    total = trainable = saved = 0
    lines = []
    for k, v in sd.items():
        n = v.numel()
        tr = bool(v.requires_grad)
        sv = f"backbone.{k}" in kept
        total += n
        trainable += n if tr else 0
        saved += n if sv else 0
        shape = ",".join(str(d) for d in v.shape)
        lines.append(f"{k}\t{shape}\t{int(tr)}\t{int(sv)}")
    with open(path, "w") as f:
        f.write("# generated by tools/golden/rnabert.py from the peer's state_dict(); do not edit\n")
        for h in header:
            f.write(f"# {h}\n")
        f.write(f"# keys {len(lines)} total {total} trainable {trainable} saved {saved}\n")
        f.write("\n".join(lines) + "\n")
    print(f"{path}: {len(lines)} keys, total {total}, trainable {trainable}, saved {saved}")


def write_key_tables(root):
    kdir = os.path.join(root, "tests/golden/keys")
    os.makedirs(kdir, exist_ok=True)
    variants = [
        ("", dict()),
        ("_peft", dict(use_peft=True, lora_r=32, lora_alpha=64, lora_dropout=0.1,
                       lora_target_modules=["query", "value"], save_peft_only=True)),
        ("_frozen", dict(frozen=True, save_peft_only=True)),
    ]
    for name, cfg in FULL.items():
        for suffix, kw in variants:
            with torch.device("meta"):
                bb = backbone(name, cfg, max_length=1024, **kw)
            key_table(bb, os.path.join(kdir, f"{name}{suffix}.txt"),
                      [f"class modelgenerator.backbones.{name}", f"config {json.dumps(cfg)}",
                       f"init_args {json.dumps(kw)}"])
    for suffix, kw in [("", {}),
                       ("_peft", dict(use_peft=True, lora_r=2, lora_alpha=4, lora_dropout=0.1,
                                      lora_target_modules=["query", "value"],
                                      save_peft_only=True)),
                       ("_frozen", dict(frozen=True, save_peft_only=True))]:
        bb = backbone("aido_rna_650m", TINY, max_length=16, **kw)
        key_table(bb, os.path.join(kdir, f"aido_rna_tiny{suffix}.txt"),
                  ["class modelgenerator.backbones.aido_rna_650m (tiny config_overwrites)",
                   f"config {json.dumps(TINY)}", f"init_args {json.dumps(kw)}"])


def rms_in_dtype(self, hidden_states):
    """RnaRMSNorm.forward computed in the input dtype (the peer casts to float32)."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def golden(root, dtype_name, peft, rms=False):
    dtype = {"f32": torch.float32, "f64": torch.float64}[dtype_name]
    torch.manual_seed(1234 + (7 if peft else 0) + (13 if rms else 0))
    kw = dict(max_length=16)
    if peft:
        kw.update(use_peft=True, lora_r=2, lora_alpha=4, lora_dropout=0.1,
                  lora_target_modules=["query", "value"])
    config = dict(TINY, normalization_type="RMSNorm") if rms else TINY
    cases = {k: CASES[k] for k in ("pad", "alone")} if rms else CASES
    bb = backbone("aido_rna_650m", config, **kw)
    if rms and dtype == torch.float64:
        from modelgenerator.huggingface_models.rnabert.modeling_rnabert import RnaRMSNorm
        for mod in bb.modules():
            if isinstance(mod, RnaRMSNorm):
                mod.forward = rms_in_dtype.__get__(mod)
    # Random, non-trivial values everywhere (from_scratch gives ones/zeros for the norms and
    # zero biases, and PEFT zeros lora_B).
    with torch.no_grad():
        for k, p in bb.named_parameters():
            p.copy_(torch.randn(p.shape, dtype=torch.float64).to(p.dtype) * 0.3
                    + (1.0 if k.endswith("ln.weight") else 0.0))
    bb = bb.to(dtype)
    bb.eval()
    if dtype == torch.float64:
        rot = hf_model(bb).rotary_pos_emb
        d = rot.inv_freq.numel() * 2
        exps = torch.arange(0, d, 2, dtype=torch.int64).to(torch.float64) / d
        rot.inv_freq = 1.0 / (10000.0 ** exps)
    tensors = {}
    for k, v in bb.state_dict().items():
        tensors[f"params/{k}"] = v.detach().clone().contiguous()
    gen = torch.Generator().manual_seed(99)
    for case, seqs in cases.items():
        tok = bb.tokenize(seqs)
        ids = torch.tensor(tok["input_ids"], dtype=torch.long)
        mask = torch.tensor(tok["attention_mask"], dtype=torch.long)
        bb.zero_grad(set_to_none=True)
        out = bb(ids, mask).last_hidden_state
        cot = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)
        (out * cot).sum().backward()
        tensors[f"{case}/input_ids"] = ids.contiguous()
        tensors[f"{case}/attention_mask"] = mask.to(dtype).contiguous()
        tensors[f"{case}/cot"] = cot.contiguous()
        tensors[f"{case}/out"] = out.detach().contiguous()
        if case == "alone":
            continue  # checked against "pad" row 0 and for the forward only
        for k, p in bb.named_parameters():
            if p.requires_grad:
                assert p.grad is not None, k
                tensors[f"{case}/grads/{k}"] = p.grad.detach().clone().contiguous()
            else:
                assert p.grad is None, k
    name = f"rnabert{'_lora' if peft else ''}{'_rms' if rms else ''}_{dtype_name}.safetensors"
    path = os.path.join(root, "tests/golden", name)
    # One metadata key: safetensors writes several in hash order, which would make the file
    # differ from run to run.
    meta = {"golden": json.dumps({"versions": versions(), "config": config, "init_args": kw,
                                  "cases": cases}, sort_keys=True)}
    save_file(tensors, path, metadata=meta)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


def main():
    root = repo_root()
    write_key_tables(root)
    for peft in (False, True):
        for dt in ("f32", "f64"):
            golden(root, dt, peft)
    for dt in ("f32", "f64"):
        golden(root, dt, False, rms=True)


if __name__ == "__main__":
    main()
