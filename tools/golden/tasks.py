"""Task-level goldens and key tables of modelgenerator.tasks.MMSequenceRegression and
SequenceRegression, from the peer's own modules.

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/tasks.py

1. Tiny task goldens (modelgenerator.md 11.3 sizes, B = 2, num_outputs = 30). The composition
   is MMSequenceRegression.forward + evaluate with the peer's pieces: the Enformer wrapper's
   vendored model (tiny config, dropout 0), the GenBioBERT wrapper of aido_rna_650m (tiny
   config_overwrites), transformers' EsmModel (tiny config; the ESM wrapper itself needs the hub
   for its config), the peer's MMFusionSeqAdapter / MMFusionTokenAdapter and MSELoss:
     out_i = backbone_i(inputs of backbone_order[i]); pred = adapter(out0.h, out0.mask, ...)
     loss = MSELoss()(pred, labels)
   Cases: "attn3" MMFusionSeqAdapter(CrossAttentionFusion(4 heads), MLPPoolAdapter([8])) over
   DNA + RNA + protein (one empty protein); "concat3" MMFusionTokenAdapter(ConcatFusion(8),
   MLPAdapter([16])) over the same; "concat2" DNA + RNA; "sr" SequenceRegression(aido_rna tiny,
   MLPPoolAdapter([8])). BatchNorm runs in train mode (batch statistics, as Lightning's fit) for
   pred/loss/grads, and in eval mode for "eval_pred"; dropout is 0 everywhere.
   Files (each under 1 MB; the tensors of one case and dtype are sharded over several files):
     tests/golden/task_<case>_<dt>_<k>.safetensors, k = 0..shards-1 (__metadata__ "shards")
       p/<key>     every state_dict entry of the task (parameters and BatchNorm buffers; the
                   Enformer _trunk aliases once, under their top-level names; not Enformer's
                   unused _heads, whose values cannot matter), in <dt> (the
                   values are f32-representable, so f32 and f64 use the same numbers)
       g/<key>     d loss / d parameter (train mode) for every parameter the forward uses
       in/<name>   dna_seq_one_hot [B, 256, 4] (and dna_seq_bytes u8), <omic>_input_ids i64,
                   <omic>_attention_mask, labels [B, 30]
       pred, loss, eval_pred, eval_loss, fused (the fusion output, train mode)
2. Key tables of the whole task at full size for the four seed configs and the two
   SequenceRegression baselines (built on the meta device), tests/golden/keys/task_<config>.txt:
     "<key>\t<shape>\t<trainable 0|1>\t<saved 0|1>" with "# keys N total T trainable R saved S";
   saved = kept by the task's on_save_checkpoint (the backbones' save_peft_only pruning).
"""
import json
import os
import sys
import types

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import repo_root, versions  # noqa: E402
import enformer as gen_enformer  # noqa: E402
import esm2 as gen_esm2  # noqa: E402
import rnabert as gen_rnabert  # noqa: E402
from tokenizer_goldens import esm_tokenizer  # noqa: E402

import modelgenerator.backbones as mb  # noqa: E402
from modelgenerator.adapters.adapters import MLPAdapter, MLPPoolAdapter  # noqa: E402
from modelgenerator.adapters.fusion import (  # noqa: E402
    ConcatFusion, CrossAttentionFusion, MMFusionSeqAdapter, MMFusionTokenAdapter)
from modelgenerator.huggingface_models.enformer_pytorch import modeling_enformer as me  # noqa

DTYPES = {"f32": torch.float32, "f64": torch.float64}
B, LDNA, NOUT = 2, 256, 30
DNA = ["".join("ACGTacgtN."[(i * 7 + j * 3 + (i * j) % 5) % 10] for i in range(LDNA))
       for j in range(B)]
RNA = ["ACGTA", "GGCATTAC"]
PROT = ["", "MKV"]
SHARD_BYTES = 640 * 1024


class EsmBackbone(torch.nn.Module):
    """The peer's ESM wrapper forward: encoder(input_ids, attention_mask).last_hidden_state."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model

    def forward(self, ids, mask):
        return self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state


class Task(torch.nn.Module):
    """MMSequenceRegression / SequenceRegression forward + evaluate, with the attributes named as
    the peer's (backbone, backbone1, backbone2, adapter) so state_dict keys match."""

    def __init__(self, backbones, adapter, kinds):
        super().__init__()
        names = ["backbone", "backbone1", "backbone2"]
        for n, bb in zip(names, backbones):
            setattr(self, n, bb)
        self.names = names[:len(backbones)]
        self.kinds = kinds
        self.adapter = adapter

    def forward(self, inputs):
        hs = []
        for n, kind in zip(self.names, self.kinds):
            bb = getattr(self, n)
            if kind == "dna":
                x = inputs["dna_seq_one_hot"]
                h = bb.encoder(x, return_only_embeddings=True)
                hs += [h, torch.ones(x.shape[0], h.shape[1], dtype=x.dtype)]
            elif kind == "rna":
                ids, m = inputs[f"{bb._omic}_input_ids"], inputs[f"{bb._omic}_attention_mask"]
                hs += [bb(ids, m).last_hidden_state, m]
            else:
                ids, m = inputs["protein_seq_input_ids"], inputs["protein_seq_attention_mask"]
                hs += [bb(ids, m), m]
        if len(self.names) == 1:  # SequenceRegression: adapter(h, mask)
            return self.adapter(hs[0], hs[1])
        return self.adapter(*hs)


def f32able_(module, gen=None):
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point():
                t.copy_(t.float().double() if t.dtype == torch.float64 else t.float())


CASES = {
    # case: (tiny config, overrides applied to model.init_args as "dotted.path": value; the C
    # test gives the same overrides on the command line)
    "attn3": ("configs/tiny_isoform_expression_dna_rna_prot_attention.yaml", {}),
    "concat3": ("configs/tiny_isoform_expression_dna_rna_prot_concat.yaml", {}),
    "concat2": ("configs/tiny_isoform_expression_dna_rna_concat.yaml", {}),
    "sr": ("configs/tiny_isoform_expression_rna_only.yaml",
           {"adapter.init_args.hidden_sizes": [8]}),
}
# Dropout off everywhere (pred and grads must be deterministic): every case gets these where
# the keys exist.
NODROP = {
    "backbone.init_args.config_overwrites.dropout_rate": 0.0,
    "backbone.init_args.config_overwrites.attn_dropout": 0.0,
    "backbone.init_args.config_overwrites.pos_dropout": 0.0,
    "backbone1.init_args.config_overwrites.hidden_dropout_prob": 0.0,
    "backbone1.init_args.config_overwrites.attention_probs_dropout_prob": 0.0,
    "backbone1.init_args.lora_dropout": 0.0,
    "backbone2.init_args.lora_dropout": 0.0,
    "adapter.init_args.adapter.init_args.dropout": 0.0,
}
SR_NODROP = {
    "backbone.init_args.config_overwrites.hidden_dropout_prob": 0.0,
    "backbone.init_args.config_overwrites.attention_probs_dropout_prob": 0.0,
    "backbone.init_args.lora_dropout": 0.0,
    "adapter.init_args.dropout": 0.0,
}


def model_args(case):
    """model.init_args of the case's tiny config with the overrides (and dropout 0) applied."""
    import yaml
    path, ov = CASES[case]
    with open(os.path.join(repo_root(), path)) as f:
        init = yaml.safe_load(f)["model"]["init_args"]
    allov = dict(SR_NODROP if case == "sr" else NODROP)
    allov.update(ov)
    applied = {}
    for dotted, v in allov.items():
        parts = dotted.split(".")
        d = init
        for p in parts[:-1]:
            d = d.get(p) if isinstance(d, dict) else None
            if d is None:
                break
        if isinstance(d, dict):
            d[parts[-1]] = v
            applied[dotted] = v
    return init, applied


def randomize_(module, gen):
    """Every parameter random (PEFT's zero lora_B would zero every lora_A gradient), norms
    around 1."""
    with torch.no_grad():
        for k, p in module.named_parameters():
            one = k.endswith("ln.weight") or "LayerNorm.weight" in k or k.endswith(
                "emb_layer_norm_after.weight")
            p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
                    + (1.0 if one else 0.0))


def make_backbone(spec, gen, omic):
    cls = spec["class_path"].rsplit(".", 1)[1]
    kw = dict(spec.get("init_args") or {})
    over = dict(kw.pop("config_overwrites", None) or {})
    kw.pop("model_init_args", None)
    kw.pop("from_scratch", None)
    if cls == "enformer":
        bb = gen_enformer.wrapper(over)
        bb.encoder.double()
        gen_enformer.randomize(bb.encoder, gen)
        return bb, "dna"
    if cls.startswith("aido_rna"):
        bb = gen_rnabert.backbone(cls, over, **kw)
        bb.double()
        randomize_(bb, gen)
        bb._omic = omic
        return bb, "rna"
    if cls.startswith("esm2"):
        from transformers import EsmModel
        cfg = gen_esm2.esm_config(cls.split("_")[1])
        for k, v in over.items():
            setattr(cfg, k, v)
        model = EsmModel(cfg, add_pooling_layer=True)
        if kw.get("use_peft"):
            model = gen_esm2.peftify(model, kw.get("lora_r", 16), kw.get("lora_alpha", 32),
                                     kw.get("lora_dropout", 0.1))
        elif kw.get("frozen"):
            for p in model.parameters():
                p.requires_grad = False
        model.double()
        randomize_(model, gen)
        return EsmBackbone(model), "prot"
    raise ValueError(cls)


def make_adapter(spec, nout, sizes):
    from modelgenerator import adapters as A
    from modelgenerator.adapters import fusion as F

    def ctor(sp, mod):
        name = sp["class_path"].rsplit(".", 1)[1]
        return getattr(mod, name), {k: v for k, v in (sp.get("init_args") or {}).items()
                                    if k not in ("fusion", "adapter")}
    cls, kw = ctor(spec, A)
    ia = spec.get("init_args") or {}
    if "fusion" in ia or cls in (A.MMFusionSeqAdapter, A.MMFusionTokenAdapter):
        fcls, fkw = ctor(ia["fusion"], F)
        acls, akw = ctor(ia["adapter"], A)
        return cls(nout, *sizes, fusion=lambda a, b, c: fcls(a, b, c, **fkw),
                   adapter=lambda i, o: acls(i, o, **akw))
    return cls(sizes[0], nout, **kw)


def make_task(case, gen):
    torch.manual_seed(7)
    init, _ = model_args(case)
    nout = init.get("num_outputs", 1)
    if case == "sr":
        bb, kind = make_backbone(init["backbone"], gen, "sequences")
        sizes = [bb.get_embedding_size()]
        return Task([bb], make_adapter(init["adapter"], nout, sizes).double(), [kind])
    order = init.get("backbone_order", ["dna_seq", "rna_seq"])
    bbs, kinds, sizes = [], [], []
    for i, key in enumerate(["backbone", "backbone1", "backbone2"][:len(order)]):
        bb, kind = make_backbone(init[key], gen, order[i])
        bbs.append(bb)
        kinds.append(kind)
        sizes.append(bb.get_embedding_size() if kind != "prot"
                     else bb.encoder.config.hidden_size)
    if len(sizes) == 2:
        sizes.append(None)
    return Task(bbs, make_adapter(init["adapter"], nout, sizes).double(), kinds)


def exact_rmsnorm(dt):
    """f64: the peer's RnaRMSNorm computes in float32 whatever the model dtype; aidomm computes
    in the compute dtype, so the f64 golden does too (f32 runs the peer unchanged)."""
    from modelgenerator.huggingface_models.rnabert import modeling_rnabert as mr
    if not hasattr(mr.RnaRMSNorm, "_peer_forward"):
        mr.RnaRMSNorm._peer_forward = mr.RnaRMSNorm.forward

    def fwd(self, h):
        var = h.pow(2).mean(-1, keepdim=True)
        return self.weight * (h * torch.rsqrt(var + self.variance_epsilon))
    mr.RnaRMSNorm.forward = fwd if dt == torch.float64 else mr.RnaRMSNorm._peer_forward


def exact_rotary(task, dt):
    """f64: the peers keep inv_freq in float32; aidomm's rotary uses the compute dtype (as the
    backbone goldens do)."""
    if dt != torch.float64:
        return
    for n, kind in zip(task.names, task.kinds):
        bb = getattr(task, n)
        if kind == "rna":
            rot = gen_rnabert.hf_model(bb).rotary_pos_emb
            d = rot.inv_freq.numel() * 2
            exps = torch.arange(0, d, 2, dtype=torch.int64).to(torch.float64) / d
            rot.inv_freq = 1.0 / (10000.0 ** exps)
        elif kind == "prot":
            gen_esm2.exact_inv_freq(bb.encoder, dt)


def inputs_for(task, dt):
    ins = {}
    if "dna" in task.kinds:
        ins["dna_seq_one_hot"] = me.str_to_one_hot(DNA).to(dt)
        ins["dna_seq_bytes"] = torch.tensor([list(s.encode()) for s in DNA], dtype=torch.uint8)
    for n, kind in zip(task.names, task.kinds):
        bb = getattr(task, n)
        if kind == "rna":
            tok = bb.tokenize(RNA)
            ins[f"{bb._omic}_input_ids"] = torch.tensor(tok["input_ids"], dtype=torch.long)
            ins[f"{bb._omic}_attention_mask"] = torch.tensor(tok["attention_mask"]).to(dt)
        elif kind == "prot":
            ids, m = gen_esm2.tokenize(esm_tokenizer(), PROT)
            ins["protein_seq_input_ids"] = ids
            ins["protein_seq_attention_mask"] = m.to(dt)
    return ins


def state_entries(task):
    """state_dict entries, Enformer's _trunk aliases once under their top-level names."""
    seen, out = {}, {}
    sd = task.state_dict(keep_vars=True)
    for k, v in sd.items():
        if ".encoder._trunk." in k:
            continue
        out[k] = v
        seen[id(v)] = k
    for k, v in sd.items():
        if ".encoder._trunk." in k and id(v) not in seen:
            out[k] = v
    return out


def golden(case, dt_name):
    # Lightning's trainer.precision 64 runs the forward with float64 as the default dtype
    # (DoublePrecision.forward_context): Enformer's positional features are built in it.
    saved = torch.get_default_dtype()
    torch.set_default_dtype(DTYPES[dt_name])
    try:
        golden_at_default_dtype(case, dt_name)
    finally:
        torch.set_default_dtype(saved)


def golden_at_default_dtype(case, dt_name):
    dt = DTYPES[dt_name]
    gen = torch.Generator().manual_seed(4321 + len(case))
    task = make_task(case, gen)
    f32able_(task)
    task = task.to(dt)
    exact_rotary(task, dt)
    exact_rmsnorm(dt)
    _, applied = model_args(case)
    ins = inputs_for(task, dt)
    lab_gen = torch.Generator().manual_seed(55)
    labels = torch.randn(B, NOUT, generator=lab_gen, dtype=torch.float64).float().to(dt)
    tensors = {}
    # eval first: train mode would update the BatchNorm running statistics
    task.eval()
    with torch.no_grad():
        ep = task(ins)
    tensors["eval_pred"] = ep.contiguous()
    tensors["eval_loss"] = torch.nn.MSELoss()(ep, labels).reshape(())
    for k, v in state_entries(task).items():
        if ".encoder._heads." in k:
            continue  # unused by the forward (slots flagged unused): no values needed
        tensors[f"p/{k}"] = v.detach().clone().contiguous()
    task.train()
    fused = {}
    if hasattr(task.adapter, "fusion_module"):
        task.adapter.fusion_module.register_forward_hook(
            lambda m, i, o: fused.__setitem__("out", o.detach().clone()))
    pred = task(ins)
    loss = torch.nn.MSELoss()(pred, labels)
    loss.backward()
    tensors["pred"] = pred.detach().contiguous()
    tensors["loss"] = loss.detach().reshape(())
    if "out" in fused:
        tensors["fused"] = fused["out"].contiguous()
    for k, p in task.named_parameters():
        if p.grad is not None:
            tensors[f"g/{k}"] = p.grad.detach().clone().contiguous()
    for k, v in ins.items():
        tensors[f"in/{k}"] = v.contiguous()
    tensors["in/labels"] = labels.contiguous()
    # shard
    shards, cur, size = [], {}, 0
    for k in sorted(tensors):
        nb = tensors[k].numel() * tensors[k].element_size()
        if cur and size + nb > SHARD_BYTES:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = tensors[k]
        size += nb
    shards.append(cur)
    meta = {"case": case, "dtype": dt_name, "shards": str(len(shards)),
            "config": CASES[case][0], "overrides": json.dumps(applied),
            "kinds": json.dumps(task.kinds), "generator": "tools/golden/tasks.py",
            **{k: str(v) for k, v in versions().items()}}
    gdir = os.path.join(repo_root(), "tests", "golden")
    for i, s in enumerate(shards):
        path = os.path.join(gdir, f"task_{case}_{dt_name}_{i}.safetensors")
        save_file(s, path, metadata=meta)
        print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(s)} tensors)")


# ---- full-size key tables ------------------------------------------------------------------
FULL_ESM = "150m"
LORA = dict(use_peft=True, lora_r=32, lora_alpha=64, lora_dropout=0.1,
            lora_target_modules=["query", "value"], save_peft_only=True)
SEED_CONFIGS = {
    # config: (rna class, rna init_args, esm init_args or None, adapter kind)
    "isoform_expression_dna_rna_attention": ("aido_rna_650m", LORA, None, "attn"),
    "isoform_expression_dna_rna_concat": ("aido_rna_1b600m_cds", LORA, None, "concat"),
    "isoform_expression_dna_rna_prot_attention": (
        "aido_rna_650m", dict(frozen=True, save_peft_only=True),
        dict(frozen=True, save_peft_only=True), "attn"),
    "isoform_expression_dna_rna_prot_concat": ("aido_rna_1b600m_cds", LORA, LORA, "concat"),
}


def esm_full(kw):
    from transformers import EsmModel
    model = EsmModel(gen_esm2.esm_config(FULL_ESM), add_pooling_layer=True)
    if kw.get("use_peft"):
        model = gen_esm2.peftify(model, kw["lora_r"], kw["lora_alpha"], kw["lora_dropout"])
    elif kw.get("frozen"):
        for p in model.parameters():
            p.requires_grad = False
    return EsmBackbone(model)


def full_task(rna_cls, rna_kw, esm_kw, kind):
    bbs = [gen_enformer.wrapper({}),
           gen_rnabert.backbone(rna_cls, gen_rnabert.FULL[rna_cls], max_length=1024, **rna_kw)]
    if esm_kw is not None:
        bbs.append(esm_full(esm_kw))
    h1 = gen_rnabert.FULL[rna_cls]["hidden_size"]
    h2 = 640 if esm_kw is not None else None
    if kind == "attn":
        adapter = MMFusionSeqAdapter(
            NOUT, 3072, h1, h2, fusion=lambda a, b, c: CrossAttentionFusion(a, b, c, 16),
            adapter=lambda i, o: MLPPoolAdapter(i, o, pooling="mean_pooling", hidden_sizes=[128],
                                                bias=True, dropout=0.1, dropout_in_middle=False))
    else:
        adapter = MMFusionTokenAdapter(
            NOUT, 3072, h1, h2, fusion=lambda a, b, c: ConcatFusion(a, b, c, 1024, "mean_pooling"),
            adapter=lambda i, o: MLPAdapter(i, o, hidden_sizes=[1024], bias=True, dropout=0.1,
                                            dropout_in_middle=False))
    return Task(bbs, adapter, ["dna", "rna", "prot"][:len(bbs)])


# SequenceRegression baselines: config: (backbone class, backbone init_args, embedding size)
BASELINES = {
    "isoform_expression_dna_only": ("enformer", {}, 3072),
    "isoform_expression_rna_only": (
        "aido_rna_1b600m", dict(use_peft=True, lora_r=16, lora_alpha=32, lora_dropout=0.1,
                                lora_target_modules=["query", "value"], save_peft_only=True),
        2048),
}


def baseline_task(cls, kw, emb):
    if cls == "enformer":
        bb, kind = gen_enformer.wrapper({}), "dna"
    else:
        bb = gen_rnabert.backbone(cls, gen_rnabert.FULL[cls], max_length=1024, **kw)
        kind = "rna"
    adapter = MLPPoolAdapter(emb, NOUT, pooling="mean_pooling", hidden_sizes=[], bias=True,
                             dropout=0.0, dropout_in_middle=True)
    return Task([bb], adapter, [kind])


def saved_keys(task, esm_kw, rna_kw):
    """MMSequenceRegression.on_save_checkpoint: each backbone prunes under its prefix."""
    from modelgenerator.backbones.backbones import ESM
    ck = {"state_dict": {k: None for k in task.state_dict().keys()}}
    if hasattr(task.backbone, "on_save_checkpoint"):
        task.backbone.on_save_checkpoint(ck)
    if hasattr(task, "backbone1"):  # SequenceRegression (TaskInterface): the backbone only
        task.backbone1.on_save_checkpoint(ck, prefix="backbone1")
    if esm_kw is not None:
        fake = types.SimpleNamespace(use_peft=esm_kw.get("use_peft", False),
                                     frozen=esm_kw.get("frozen", False),
                                     save_peft_only=esm_kw.get("save_peft_only", True),
                                     encoder=task.backbone2.encoder)
        ESM.on_save_checkpoint(fake, ck, prefix="backbone2")
    return set(ck["state_dict"])


def key_tables():
    kdir = os.path.join(repo_root(), "tests", "golden", "keys")
    os.makedirs(kdir, exist_ok=True)
    todo = [(n, lambda a=a: full_task(*a), a[2]) for n, a in SEED_CONFIGS.items()]
    todo += [(n, lambda a=a: baseline_task(*a), None) for n, a in BASELINES.items()]
    for name, make, esm_kw in todo:
        with torch.device("meta"):
            task = make()
        kept = saved_keys(task, esm_kw, None)
        ents = state_entries(task)
        lines, total, trainable, saved = [], 0, 0, 0
        for k, v in ents.items():
            n = v.numel()
            tr = isinstance(v, torch.nn.Parameter) and v.requires_grad
            sv = k in kept
            total += n
            trainable += n if tr else 0
            saved += n if sv else 0
            lines.append(f"{k}\t{','.join(str(d) for d in v.shape)}\t{int(tr)}\t{int(sv)}")
        path = os.path.join(kdir, f"task_{name}.txt")
        with open(path, "w") as f:
            f.write("# generated by tools/golden/tasks.py from the peer's modules; do not edit\n")
            f.write(f"# config configs/{name}.yaml; Enformer _trunk aliases listed once\n")
            f.write(f"# keys {len(lines)} total {total} trainable {trainable} saved {saved}\n")
            f.write("\n".join(lines) + "\n")
        print(f"{path}: {len(lines)} keys, total {total}, trainable {trainable}, saved {saved}")


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    key_tables()
    for case in CASES:
        for dt in ("f32", "f64"):
            golden(case, dt)
