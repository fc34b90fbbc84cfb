"""Goldens and key tables for the ModelGenerator ESM2 backbones (frontend/esm2.c).

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/esm2.py

The peer: modelgenerator.backbones.esm2_{8m,35m,150m,650m} are the `ESM` wrapper
(modelgenerator/backbones/backbones.py) around `transformers.AutoModel` = `EsmModel`
(transformers 4.38.0), optionally wrapped by `peft.get_peft_model` (0.13.2). The wrapper's
setup() reads the config from the hub, which is unreachable here, so this script builds the
same EsmModel from an EsmConfig with the hub configs' values (below), random weights.

Hyper-parameters of the four sizes (facebook/esm2_t{6,12,30,33}_*_UR50D config.json; hub
unreachable, values recorded from: modelgenerator.md §5.4 for 150M; the fair-esm
`esm.pretrained` table (layers, embed dim, heads: t6 320/20, t12 480/20, t30 640/20,
t33 1280/20) with fair-esm ESM2's ffn_embed_dim = 4 * embed_dim; NVIDIA NeMo ESM650MConfig
(33 layers, 1280, FFN 5120, 20 heads)). Common to all: vocab 33, rotary, token_dropout, no
emb_layer_norm_before, layer_norm_eps 1e-5, gelu (erf), dropouts 0, max_position_embeddings
1026, pad 1, mask 32.

Writes
  tests/golden/esm2_tiny_f32.safetensors, tests/golden/esm2_tiny_f64.safetensors
      (§11.3 tiny config: vocab 33, H 16, 2 heads, FFN 32, 2 layers), for each batch <b>:
        <b>/input_ids i64[B, L], <b>/attention_mask <dtype>[B, L],
        <b>/last_hidden_state [B, L, H], <b>/cot [B, L, H] (random cotangent),
        <b>/grads/<key> d sum(last_hidden_state * cot) / d parameter (used parameters only;
            the unused ones, position_embeddings, pooler and contact_head, get none)
      params/<key> every parameter (HF EsmModel keys), buffers/<key> the rotary inv_freq.
      Batches: "a" = ["", "MKV"] (ids [0,2,1,1,1], [0,20,15,7,2]);
               "b" = ["MKV", "MK<mask>VLAG", "ACDEFGHIK"] (a <mask>, odd lengths, "MKV" padded
               to 11 instead of 5: its valid rows must equal batch a's row 1).
  tests/golden/esm2_tiny_lora_f64.safetensors: the tiny model under get_peft_model
      (r 2, alpha 4, dropout 0, target [query, value]) with non-zero lora_B, batch "a",
      params/<key> (PEFT keys) and grads/<key> for the trainable (lora) parameters only.
  tests/golden/keys/esm2_<size>[_peft][_frozen].txt (_peft_frozen for tiny only) for size in tiny, 8m, 35m, 150m, 650m: one line per
      state_dict() key, "<key> <shape> <trainable 0|1> <kept 0|1>", where kept says whether
      ESM.on_save_checkpoint (save_peft_only true; the peer's own method) keeps it; keys are
      relative to "<prefix>.encoder."; a header gives the totals. The _peft tables use the
      configs' LoRA r 32, alpha 64 (tiny: r 2, alpha 4), target modules [query, value].

f64 note: EsmRotaryEmbedding computes inv_freq in float32 (a buffer that .double() widens
after rounding); the f64 goldens replace it by the float64 values, as tools/golden/
tiny_transformer.py does, because aidomm's rotary op computes its frequencies in the compute
dtype. Every other step is the peer's code unchanged.
"""
import json
import os
import sys
import types

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import repo_root, versions  # noqa: E402
from tokenizer_goldens import esm_tokenizer  # noqa: E402

SIZES = {
    # name: (layers, hidden, heads, ffn)
    "tiny": (2, 16, 2, 32),
    "8m": (6, 320, 20, 1280),
    "35m": (12, 480, 20, 1920),
    "150m": (30, 640, 20, 2560),
    "650m": (33, 1280, 20, 5120),
}
LORA = {"tiny": (2, 4)}  # others: the configs' r 32, alpha 64


def esm_config(size):
    from transformers import EsmConfig
    layers, hidden, heads, ffn = SIZES[size]
    return EsmConfig(vocab_size=33, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=ffn, hidden_act="gelu",
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     max_position_embeddings=1026, layer_norm_eps=1e-5,
                     position_embedding_type="rotary", token_dropout=True, mask_token_id=32,
                     pad_token_id=1, emb_layer_norm_before=False, initializer_range=0.02)


def peftify(model, r, alpha, dropout=0.0):
    from peft import LoraConfig, TaskType, get_peft_model
    # As ESM.setup with the configs' lora_target_modules [query, value]: FEATURE_EXTRACTION,
    # modules_to_save None, rslora off. (target_modules None fails in peft 0.13.2 for "esm":
    # "Please specify `target_modules` in `peft_config`"; it has no default for that model.)
    cfg = LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, target_modules=["query", "value"], r=r,
                     lora_alpha=alpha, lora_dropout=dropout, use_rslora=False,
                     inference_mode=False, modules_to_save=None)
    return get_peft_model(model, cfg)


def kept_keys(encoder, use_peft, frozen):
    """Runs the peer's ESM.on_save_checkpoint (save_peft_only True) on a fake checkpoint."""
    from modelgenerator.backbones.backbones import ESM
    fake = types.SimpleNamespace(use_peft=use_peft, frozen=frozen, save_peft_only=True,
                                 encoder=encoder)
    sd = {f"backbone.encoder.{k}": None for k in encoder.state_dict().keys()}
    ck = {"state_dict": dict(sd)}
    ESM.on_save_checkpoint(fake, ck, prefix="backbone")
    return {k[len("backbone.encoder."):] for k in ck["state_dict"]}


def key_table(size, use_peft, frozen=False):
    from transformers import EsmModel
    with torch.device("meta"):
        model = EsmModel(esm_config(size), add_pooling_layer=True)
        if use_peft:
            r, alpha = LORA.get(size, (32, 64))
            model = peftify(model, r, alpha, 0.1)
        if frozen and not use_peft:  # as ESM.setup: frozen only acts without use_peft
            for p in model.parameters():
                p.requires_grad = False
    sd = model.state_dict()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    params = {n for n, _ in model.named_parameters()}
    kept = kept_keys(model, use_peft, frozen)
    lines = []
    tot = ntrain = nkept = 0
    for k, v in sd.items():
        n = v.numel()
        is_param = k in params
        tr = k in trainable
        kp = k in kept
        if is_param:
            tot += n
            ntrain += n if tr else 0
        nkept += n if kp else 0
        shape = "[" + ",".join(str(d) for d in v.shape) + "]"
        lines.append(f"{k} {shape} {int(tr)} {int(kp)}{'' if is_param else ' buffer'}")
    tag = ("_peft" if use_peft else "") + ("_frozen" if frozen else "")
    head = [f"# ESM2 {size}{tag} state_dict keys relative to "
            "'<prefix>.encoder.' (transformers 4.38.0 EsmModel"
            f"{', peft 0.13.2 get_peft_model' if use_peft else ''}), generated by "
            "tools/golden/esm2.py",
            "# columns: key shape trainable kept_by_save_peft_only [buffer]",
            f"# keys {len(sd)} params_total {tot} params_trainable {ntrain} "
            f"elements_kept {nkept}"]
    path = os.path.join(repo_root(), "tests", "golden", "keys",
                        f"esm2_{size}{tag}.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(head + lines) + "\n")
    print(f"wrote {path}: {len(sd)} keys, {tot} params, {ntrain} trainable")


BATCHES = {"a": ["", "MKV"], "b": ["MKV", "MK<mask>VLAG", "ACDEFGHIK"]}
B_PAD = {"b": 11}  # batch b padded past its longest sample (pad_to_multiple_of is not used)


def tokenize(tok, seqs, pad_to=None):
    enc = tok(seqs, padding=True, truncation=False, return_special_tokens_mask=True)
    ids = [list(r) for r in enc["input_ids"]]
    mask = [list(r) for r in enc["attention_mask"]]
    if pad_to:
        for r, m in zip(ids, mask):
            r += [tok.pad_token_id] * (pad_to - len(r))
            m += [0] * (pad_to - len(m))
    return torch.tensor(ids, dtype=torch.int64), torch.tensor(mask, dtype=torch.int64)


def randomize(model, gen, dtype):
    # Larger than the init so every path (attention, GELU, norms, the 0.88 scale) matters.
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if "LayerNorm.weight" in name or "emb_layer_norm_after.weight" in name:
                p.copy_((1.0 + 0.2 * r).to(dtype))
            else:
                p.copy_((0.4 * r).to(dtype))


def exact_inv_freq(model, dtype):
    if dtype != torch.float64:
        return
    for mod in model.modules():
        if type(mod).__name__ == "RotaryEmbedding":
            d = mod.inv_freq.numel() * 2
            exps = torch.arange(0, d, 2, dtype=torch.int64).to(torch.float64) / d
            mod.inv_freq = 1.0 / (10000.0 ** exps)
            mod._seq_len_cached = None


def tiny_golden(dtype_name):
    from transformers import EsmModel
    dtype = {"f32": torch.float32, "f64": torch.float64}[dtype_name]
    gen = torch.Generator().manual_seed(1234)
    model = EsmModel(esm_config("tiny"), add_pooling_layer=True).to(dtype)
    randomize(model, gen, dtype)
    exact_inv_freq(model, dtype)
    model.eval()
    tok = esm_tokenizer()
    tensors = {}
    for n, p in model.named_parameters():
        tensors["params/" + n] = p.detach().contiguous()
    for n, b in model.named_buffers():
        if n.endswith("inv_freq"):
            tensors["buffers/" + n] = b.detach().to(dtype).contiguous()
    names = [n for n, _ in model.named_parameters()]
    info = {}
    for bname, seqs in BATCHES.items():
        ids, mask = tokenize(tok, seqs, B_PAD.get(bname))
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        cot = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)
        grads = torch.autograd.grad((out * cot).sum(), [p for _, p in model.named_parameters()],
                                    allow_unused=True)
        tensors[f"{bname}/input_ids"] = ids
        tensors[f"{bname}/attention_mask"] = mask.to(dtype)
        tensors[f"{bname}/last_hidden_state"] = out.detach().contiguous()
        tensors[f"{bname}/cot"] = cot
        used = []
        for n, g in zip(names, grads):
            if g is not None:
                tensors[f"{bname}/grads/{n}"] = g.detach().contiguous()
                used.append(n)
        info[bname] = {"sequences": seqs, "ids": ids.tolist(), "grads": len(used)}
    path = os.path.join(repo_root(), "tests", "golden", f"esm2_tiny_{dtype_name}.safetensors")
    meta = {"config": json.dumps(esm_config("tiny").to_dict(), sort_keys=True, default=str),
            "batches": json.dumps(info), "generator": "tools/golden/esm2.py"}
    meta.update({k: str(v) for k, v in versions().items()})
    save_file(tensors, path, metadata=meta)
    print(f"wrote {path}: {os.path.getsize(path)} bytes, {info}")


def lora_golden():
    from transformers import EsmModel
    dtype = torch.float64
    gen = torch.Generator().manual_seed(99)
    base = EsmModel(esm_config("tiny"), add_pooling_layer=True).to(dtype)
    randomize(base, gen, dtype)
    exact_inv_freq(base, dtype)
    r, alpha = LORA["tiny"]
    model = peftify(base, r, alpha, 0.0)
    with torch.no_grad():  # lora_B starts at zero; make the adapters matter
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(0.4 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    model.eval()
    tok = esm_tokenizer()
    ids, mask = tokenize(tok, BATCHES["a"])
    out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    cot = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    train = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad((out * cot).sum(), [p for _, p in train])
    tensors = {"a/input_ids": ids, "a/attention_mask": mask.to(dtype),
               "a/last_hidden_state": out.detach().contiguous(), "a/cot": cot}
    for n, p in model.named_parameters():
        tensors["params/" + n] = p.detach().contiguous()
    for (n, _), g in zip(train, grads):
        tensors["a/grads/" + n] = g.detach().contiguous()
    path = os.path.join(repo_root(), "tests", "golden", "esm2_tiny_lora_f64.safetensors")
    meta = {"lora": json.dumps({"r": r, "alpha": alpha, "dropout": 0.0,
                                "target_modules": ["query", "value"]}),
            "trainable": json.dumps([n for n, _ in train]), "generator": "tools/golden/esm2.py"}
    meta.update({k: str(v) for k, v in versions().items()})
    save_file(tensors, path, metadata=meta)
    print(f"wrote {path}: {os.path.getsize(path)} bytes, {len(train)} trainable tensors")


def main():
    torch.manual_seed(0)
    for size in SIZES:
        key_table(size, False)
        key_table(size, True)
        key_table(size, False, frozen=True)
    # frozen with use_peft: LoRA still trains (setup ignores frozen), but on_save_checkpoint
    # drops every encoder key, LoRA included
    key_table("tiny", True, frozen=True)
    tiny_golden("f32")
    tiny_golden("f64")
    lora_golden()


if __name__ == "__main__":
    main()
