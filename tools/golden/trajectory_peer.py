"""Training-trajectory golden for issue 5: the peer's own Lightning Trainer.fit of
MMSequenceRegression on tests/configs/trajectory/tiny3_lora.yaml for 10 steps, from the start
that tools/golden/predict_peer.py dumped, recording every step; and one step of the same model
with dropout p = 0.1 (tests/configs/trajectory/tiny3_lora_dropout.yaml) with the peer's realized
dropout masks.

Run with the golden venv from the repository root, after predict_peer.py (it reads its output):
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/trajectory_peer.py
    ... trajectory_peer.py --measure   # only print the unclipped run's gradient norms (how the
                                       # config's gradient_clip_val was chosen); writes nothing
    ... trajectory_peer.py --measure-accum  # the same for the accumulation config
    ... trajectory_peer.py --accum-only     # rewrite only accum_steps.safetensors

Start. The task is predict_peer.make_task's: the peer's MMSequenceRegression with the YAML's
model.init_args, its backbones' setup() loading the Hugging Face folders of
tests/golden/predict/models/<hub id>/, then tests/golden/predict/rest.safetensors (LoRA A/B,
fusion, head) loaded non-strictly. Every state_dict entry comes from one of the two (checked;
the task built under two different torch seeds is identical), so the start needs no init/ dump.
The optimizer and scheduler are the YAML's (what jsonargparse hands the task:
torch.optim.AdamW(params, **init_args), modelgenerator.lr_schedulers.CosineWithWarmup(opt,
**init_args)); TaskInterface.configure_optimizers puts every requires_grad parameter in one group
and steps the scheduler per step.

Training. lightning.pytorch.Trainer(accelerator cpu, devices 1, the YAML's trainer keys: precision
32, max_steps, gradient_clip_val / _algorithm, accumulate_grad_batches 1, deterministic,
limit_val_batches 0, num_sanity_val_steps 0; no logger/checkpoints) .fit(task, datamodule) with the
peer's IsoformExpression data module over tests/golden/predict/data (shuffle false, batch_size 3;
labels z-scored with train + validation statistics). Lightning's order per step (checked here):
training_step (transform, forward, MSE loss), backward, on_before_optimizer_step (recorded: the
lr in the param group, which .grad are set), clip_grad_norm_ over the optimizer's parameters
(recorded: the total norm it returns, before clipping), AdamW.step, then scheduler.step -- so
step k runs at lr = base_lr * lambda(k - 1) and step 1 at lr 0 (lambda(0) = 0 / W; checked: the
step leaves every entry as it was, AdamW only fills its moments and step count).

Peer quirk (recorded in the metadata as eval_mode_modules): Lightning (2.2 and later; 2.6.6 here)
no longer calls .train() at the start of fit, it keeps each submodule's mode, and Hugging Face's
from_pretrained leaves the loaded model in eval mode. With from_scratch: false every backbone's
loaded modules (Enformer, RNABert, ESM: 197 modules) therefore run in EVAL mode for the whole fit:
Enformer's BatchNorm normalizes with its running statistics and never updates them
(num_batches_tracked stays at the folder's value), the backbones' own dropouts are off whatever
their p. Only the modules created after loading are in train mode: PEFT's LoRA wrappers (so
lora_dropout applies), the fusion and the MLPAdapter (its dropout applies).

After the run the script replays it by hand without Lightning (same start and modes, the recorded
batches, forward + MSE, backward, clip_grad_norm_, AdamW.step, scheduler.step) and requires every
loss, lr, norm and final entry to agree bit for bit.

    tests/golden/trajectory/steps.safetensors
      loss f64[10]       the training_step loss (f32 MSE, widened)
      lr f64[10]         the lr AdamW used at each step (a Python double in the param group)
      grad_norm f64[10]  the total gradient L2 norm before clipping, as clip_grad_norm_
                         computed it (f32, widened); checked against an f64 recomputation
      clipped u8[10]     1 where clip_grad_norm_ scaled the gradients (norm + 1e-6 > clip value)
      batch/<k>/<name>   step k = 1..10's inputs as transform produced them, in aidomm's input
                         names: dna_seq_one_hot f32[B,256,4] (the peer's dna_seq_input_ids),
                         rna_seq_input_ids i64[B,Lr], rna_seq_attention_mask f32[B,Lr],
                         protein_seq_input_ids i64[B,Lp], protein_seq_attention_mask f32[B,Lp],
                         labels f32[B,30] (z-scored, cast to f32 by transform)
      final/<key>        every task state_dict entry after step 10 (parameters, frozen and unused
                         ones included; BatchNorm running_mean/var f32, num_batches_tracked i64,
                         unchanged (eval mode); Enformer's _trunk aliases once, under their
                         top-level names)
      metadata: versions, config, T (the scheduler's estimated_stepping_batches), W, warmup_ratio,
        base_lr, weight_decay, gradient_clip_val, clipped_steps, step_rows (transcript ids per
        step), no_grad_params (trainable parameters whose .grad stayed None: not in AdamW's update
        at all, no decay either), frozen_params (requires_grad false), n_trainable, order (the hook
        order above), eval_mode_modules (modules in eval mode during the fit)

Dropout step. tiny3_lora_dropout.yaml: the same config with lora_dropout 0.1 (RNA and ESM) and
the MLPAdapter's dropout 0.1, and max_steps 1 (T = 1, W = int(0.35) = 0: the step runs at the full
lr). Same start, same first batch, one Trainer.fit step; torch.nn.functional.dropout is wrapped to
record, for every call with p > 0 in training, the Bernoulli keep-mask it draws (the wrapper draws
the same bernoulli_(1 - p) from a saved copy of the generator state, restores it, lets torch's
dropout run, and checks its output equals x * (mask / (1 - p)) bitwise), named by the nn.Dropout
module that called it.

    tests/golden/trajectory/dropout_step.safetensors
      mask/<module path>  u8 keep-masks (1 = kept), shaped as the dropout input, e.g.
                          backbone1.encoder.base_model.model.bert.encoder.layer.0.attention.self
                          .query.lora_dropout.default  [B, Lr, 32]; adapter.adapter.0 [B, F]
      scale f32[1]        the realized scale of kept entries, (1 / (1 - p)) in f32
      loss, lr, grad_norm f64[1]; clipped u8[1]
      batch/1/<name>      the step's inputs (= steps.safetensors batch/1)
      grad/<key>          d loss / d parameter before clipping, for every parameter with a grad
      final/<key>         every state_dict entry that the step changed (parameters and BatchNorm
                          buffers); the others are the start's
      metadata: mask_order (JSON list of the mask names in call order), p, versions, T, W, ...

Accumulation run. tiny3_lora_accum.yaml: tiny3_lora.yaml with accumulate_grad_batches 2,
batch_size 4, max_epochs 2, max_steps 4 (clip 4.0, warmup_ratio 0.35). The 11 train rows make 3
micro-batches an epoch (4, 4, 3 rows), so each epoch has the windows [b0, b1] and the short window
[b2]: 6 micro-batches, 4 optimizer steps. Lightning's accumulation (2.6.6, checked here and by a
replay without Lightning, bit for bit): the closure loss is training_step's loss / k, also for the
short window (ClosureResult.from_training_step_output(normalize=k)); zero_grad (to None) runs
only before a window's first micro-batch (batch_idx % k == 0), backward adds into p.grad; the
window closes when (batch_idx + 1) % k == 0 or on the epoch's last batch, and only then run
on_before_optimizer_step, clip_grad_norm_ (of the summed gradients), AdamW.step and
scheduler.step. So optimizer step j runs at base_lr * lambda(j - 1), and T is
estimated_stepping_batches = min(ceil(3 / 2) * max_epochs, max_steps) = 4, W = int(0.35 * 4) = 1.
The hooks' outputs["loss"] is the divided loss; training_step is wrapped to record its own.

    tests/golden/trajectory/accum_steps.safetensors
      loss f64[6]         each micro-batch's training_step loss (f32 MSE, not divided by k)
      step_of_micro i64[6] the optimizer step (1-based) each micro-batch's gradients go to
      lr, grad_norm f64[4]; clipped u8[4]   per optimizer step, as steps.safetensors
      batch/<m>/<name>    micro-batch m = 1..6's inputs (global micro-batch number), aidomm names
      final/<key>         every task state_dict entry after step 4
      metadata: T, W, accumulate_grad_batches, batches_per_epoch, max_epochs, max_steps, steps,
        micro_batches, windows (micro-batch numbers per step), micro_epoch_batch, micro_rows,
        T_rule, accumulation (the semantics above), clipped_steps, no_grad_params,
        frozen_params, n_final, eval_mode_modules, ...

Every file is under 1 MB; running twice gives the same content (CPU, one thread, deterministic
algorithms; compare by content, safetensors writes metadata keys in hash order).
"""
import argparse
import csv
import functools
import json
import math
import os
import shutil
import sys
import tempfile
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import predict_peer as pp  # noqa: E402  (sets the offline environment before torch/HF load)

import torch  # noqa: E402
import yaml  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from fixture import versions  # noqa: E402

ROOT = pp.ROOT
CONFIG = "tests/configs/trajectory/tiny3_lora.yaml"
DROPOUT_CONFIG = "tests/configs/trajectory/tiny3_lora_dropout.yaml"
ACCUM_CONFIG = "tests/configs/trajectory/tiny3_lora_accum.yaml"
OUT = os.path.join(ROOT, "tests", "golden", "trajectory")
REST = os.path.join(pp.OUT, "rest.safetensors")
MAX_FILE = 1 << 20
NORM_TOL = 1e-6  # f32 clip_grad_norm_ total vs an f64 recomputation, relative
ORDER = ("training_step (transform, forward, loss) -> backward -> on_before_optimizer_step -> "
         "clip_grad_norm_ (norm before clipping returned) -> AdamW.step -> scheduler.step; "
         "step k runs at base_lr * lambda(k - 1)")
# aidomm's input names for the peer's collated batch keys
INPUT_NAMES = {"dna_seq_input_ids": "dna_seq_one_hot", "rna_seq_input_ids": "rna_seq_input_ids",
               "rna_seq_attention_mask": "rna_seq_attention_mask",
               "protein_seq_input_ids": "protein_seq_input_ids",
               "protein_seq_attention_mask": "protein_seq_attention_mask", "labels": "labels"}
IGNORED_KEYS = {"rna_seq_special_tokens_mask", "protein_seq_special_tokens_mask"}


def load_config(path):
    with open(os.path.join(ROOT, path)) as f:
        return yaml.safe_load(f)


# ---- the start ---------------------------------------------------------------------------------
def folders_of(cfg):
    """{backbone key: (hub id, folder)} for the folders predict_peer.py wrote."""
    out = {}
    for key in ("backbone", "backbone1", "backbone2"):
        hub = pp.class_of(cfg["model"]["init_args"][key]).model_path
        folder = os.path.join(pp.MODELS, hub)
        assert os.path.isfile(os.path.join(folder, "model.safetensors")), \
            f"{folder}: run tools/golden/predict_peer.py first"
        out[key] = (hub, folder)
    return out


def optim_fns(cfg, record):
    """What jsonargparse gives the task for model.init_args.optimizer / lr_scheduler."""
    from modelgenerator.lr_schedulers import CosineWithWarmup
    init = cfg["model"]["init_args"]
    opt, sch = init["optimizer"], init["lr_scheduler"]
    assert opt["class_path"] == "torch.optim.AdamW", opt["class_path"]
    assert sch["class_path"] == "modelgenerator.lr_schedulers.CosineWithWarmup"
    okw = dict(opt["init_args"])
    okw["betas"] = tuple(okw["betas"])
    skw = dict(sch["init_args"])

    def scheduler(optimizer):
        s = CosineWithWarmup(optimizer, **skw)
        initialize = s.initialize

        def recording_initialize(trainer):  # only observes what the peer's scheduler is given
            record["T"] = trainer.estimated_stepping_batches
            initialize(trainer)
            record["lr_lambda"] = s.lr_lambdas[0]
        s.initialize = recording_initialize
        return s
    return functools.partial(torch.optim.AdamW, **okw), scheduler


def make_task(cfg, seed):
    """predict_peer's task (folders + rest.safetensors) with the YAML's optimizer/scheduler."""
    folders = folders_of(cfg)
    tcfg = json.loads(json.dumps(cfg))
    for k in ("optimizer", "lr_scheduler"):
        tcfg["model"]["init_args"].pop(k)
    torch.manual_seed(seed)  # LoRA / adapter default init: all overwritten by rest.safetensors
    task = pp.make_task(tcfg, folders)
    covered = pp.check_loaded(task, tcfg, folders)
    rest = load_file(REST)
    missing, unexpected = task.load_state_dict(rest, strict=False)
    assert not unexpected, unexpected
    sd = task.state_dict()
    left = sorted(k for k in sd if k not in covered and k not in rest)
    assert not left, f"state_dict entries in neither the folders nor rest: {left[:5]}"
    record = {}
    task.optimizer, task.lr_scheduler = optim_fns(cfg, record)
    return task, record


def state_entries(task):
    """state_dict entries, Enformer's _trunk aliases once under their top-level names (as
    tasks.py / predict_peer.py)."""
    sd = task.state_dict(keep_vars=True)
    out = {k: v for k, v in sd.items() if ".encoder._trunk." not in k}
    top = {id(v) for v in out.values()}
    assert all(id(v) in top for k, v in sd.items() if k not in out), "a _trunk key not aliased"
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


# ---- data --------------------------------------------------------------------------------------
def make_data_module(cfg, cache):
    import datasets.config
    from pathlib import Path
    from modelgenerator.data import IsoformExpression
    datasets.config.HF_DATASETS_CACHE = Path(cache)
    args = dict(cfg["data"]["init_args"])
    args.pop("dna_window")  # aidomm's centre crop: a no-op on 256-bp windows, not a peer arg
    assert os.path.join(ROOT, args["path"]) == pp.DATA, args["path"]
    args["path"] = pp.DATA
    return IsoformExpression(**args)


def train_rows():
    """The train split in file order (train_0.tsv, train_1.tsv), as written by predict_peer."""
    rows = []
    for f in ("train_0.tsv", "train_1.tsv"):
        with open(os.path.join(pp.DATA, f), newline="") as fh:
            rows += list(csv.DictReader(fh, delimiter="\t"))
    return rows


# ---- the recorded run ----------------------------------------------------------------------------
def make_recorder(task):
    import lightning.pytorch as pl

    class Recorder(pl.Callback):
        def __init__(self):
            self.steps = []
            self.cur = None
            transform = task.transform

            def recording_transform(batch, batch_idx=None):
                out = transform(batch, batch_idx)
                if self.cur is not None and task.training:
                    assert "collated" not in self.cur
                    self.cur["collated"] = out
                return out
            task.transform = recording_transform

        def on_train_start(self, trainer, pl_module):
            # Lightning (>= 2.2) keeps each submodule's train/eval mode; from_pretrained leaves
            # the backbones' Hugging Face modules in eval mode (recorded, not changed)
            self.eval_modules = [n for n, m in pl_module.named_modules() if not m.training]

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            modes = [n for n, m in pl_module.named_modules() if not m.training]
            assert modes == self.eval_modules, "a module changed train/eval mode"
            self.cur = {"batch_idx": batch_idx, "raw": batch, "global_step": trainer.global_step,
                        "epoch": trainer.current_epoch}
            self.steps.append(self.cur)

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            assert len(optimizer.param_groups) == 1
            self.cur["lr"] = optimizer.param_groups[0]["lr"]
            self.cur["has_grad"] = {k: p.grad is not None for k, p in pl_module.named_parameters()}
            grads = [p.grad for p in optimizer.param_groups[0]["params"] if p.grad is not None]
            self.cur["norm64"] = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads))
            self.cur["grads"] = {k: p.grad.detach().clone() for k, p in pl_module.named_parameters()
                                 if p.grad is not None}
            self.cur["opt_params"] = {id(p) for p in optimizer.param_groups[0]["params"]}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.cur["loss"] = outputs["loss"].detach().clone()
            self.cur["end_step"] = trainer.global_step
            if len(self.steps) == 1:
                self.after_first = state_entries(pl_module)
    return Recorder()


class ClipRecorder:
    """Wraps torch.nn.utils.clip_grad_norm_ (Lightning's Precision.clip_grad_by_norm calls it
    through the module attribute) to keep the total norm it returns."""

    def __init__(self, rec):
        self.rec, self.orig = rec, torch.nn.utils.clip_grad_norm_

    def __call__(self, parameters, max_norm, *a, **k):
        parameters = list(parameters)
        total = self.orig(parameters, max_norm, *a, **k)
        cur = self.rec.cur
        assert "clip_total" not in cur
        cur["clip_total"] = float(total)
        cur["clip_max"] = float(max_norm)
        cur["clipped"] = bool(float(total) + 1e-6 > float(max_norm))
        cur["clip_params"] = {id(p) for p in parameters}
        return total

    def __enter__(self):
        torch.nn.utils.clip_grad_norm_ = self
        return self

    def __exit__(self, *exc):
        torch.nn.utils.clip_grad_norm_ = self.orig


class DropoutRecorder:
    """Wraps torch.nn.functional.dropout (nn.Dropout.forward calls it through the module
    attribute) to record each p > 0 training call's keep-mask, named by the nn.Dropout module."""

    def __init__(self, task):
        self.orig = torch.nn.functional.dropout
        self.masks, self.order, self.scales, self.ps = {}, [], set(), set()
        self.module = None
        self.handles = []
        for name, m in task.named_modules():
            if isinstance(m, torch.nn.Dropout):
                pre = functools.partial(self.enter, name)
                self.handles.append(m.register_forward_pre_hook(pre))
                self.handles.append(m.register_forward_hook(self.leave))

    def enter(self, name, module, args):
        assert self.module is None
        self.module = name

    def leave(self, module, args, out):
        self.module = None

    def __call__(self, input, p=0.5, training=True, inplace=False):
        if not (training and p > 0):
            return self.orig(input, p, training, inplace)
        assert self.module is not None, "a p > 0 dropout outside an nn.Dropout module"
        assert input.device.type == "cpu" and input.dtype == torch.float32
        x = input.detach().clone()
        state = torch.get_rng_state()
        mask = torch.empty_like(x).bernoulli_(1 - p)  # what aten's CPU _dropout draws
        torch.set_rng_state(state)
        out = self.orig(input, p, training, inplace)
        noise = mask.clone().div_(1 - p)
        assert torch.equal(out.detach(), x * noise), self.module
        name = self.module
        assert name not in self.masks, f"{name} called twice"
        self.masks[name] = mask.to(torch.uint8)
        self.order.append(name)
        self.scales.add(float(noise.max()) if bool(mask.any()) else None)
        self.ps.add(p)
        return out

    def __enter__(self):
        torch.nn.functional.dropout = self
        return self

    def __exit__(self, *exc):
        torch.nn.functional.dropout = self.orig
        for h in self.handles:
            h.remove()


def fit(cfg, task, cache, clip_override=False, n_batches=None):
    """The peer's Trainer.fit with the YAML's trainer keys; returns the recorder. n_batches: the
    training batches the fit runs (max_steps without accumulation)."""
    import lightning.pytorch as pl
    tr = dict(cfg["trainer"])
    if clip_override is not False:
        tr["gradient_clip_val"] = clip_override
    pl.seed_everything(cfg["seed_everything"], verbose=False)
    dm = make_data_module(cfg, cache)
    task.data_module = dm  # what the CLI links; enables the task's data compatibility check
    rec = make_recorder(task)
    root = tempfile.mkdtemp(prefix="trajgold_lightning_")
    try:
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, precision=tr["precision"], max_steps=tr["max_steps"],
            max_epochs=tr.get("max_epochs"),
            accumulate_grad_batches=tr["accumulate_grad_batches"],
            gradient_clip_val=tr["gradient_clip_val"],
            gradient_clip_algorithm=tr["gradient_clip_algorithm"],
            deterministic=tr["deterministic"], limit_val_batches=tr["limit_val_batches"],
            num_sanity_val_steps=tr["num_sanity_val_steps"], logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            default_root_dir=root, callbacks=[rec])
        with ClipRecorder(rec), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(num_workers|pin_memory|does not have "
                                    "many workers|sync_dist|log_every_n_steps).*")
            trainer.fit(task, datamodule=dm)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert trainer.global_step == tr["max_steps"], trainer.global_step
    want = tr["max_steps"] if n_batches is None else n_batches
    assert len(rec.steps) == want, (len(rec.steps), want)
    return rec, trainer


def check_steps(rec, task, record, cfg, clip):
    """Per-step invariants; returns (rows per step, no-grad trainable params, frozen params)."""
    rows = train_rows()
    bs = cfg["data"]["init_args"]["batch_size"]
    n = len(rows)
    per_epoch = math.ceil(n / bs)
    sched = cfg["model"]["init_args"]["lr_scheduler"]["init_args"]
    base_lr = cfg["model"]["init_args"]["optimizer"]["init_args"]["lr"]
    T = record["T"]
    W = int(sched["warmup_ratio"] * T)
    step_rows, no_grad = [], None
    trainable = {k for k, p in task.named_parameters() if p.requires_grad}
    frozen = sorted(k for k, p in task.named_parameters() if not p.requires_grad)
    for i, s in enumerate(rec.steps):
        assert s["global_step"] == i and s["end_step"] == i + 1
        b = i % per_epoch
        assert s["batch_idx"] == b
        want = rows[b * bs:(b + 1) * bs]  # shuffle false: the train split in file order
        assert s["raw"]["dna_seq_sequences"] == [r["dna_seq"] for r in want]
        assert s["raw"]["rna_seq_sequences"] == [r["rna_seq"] for r in want]
        assert s["raw"]["protein_seq_sequences"] == [r["protein_seq"] for r in want]
        step_rows.append([r["transcript_id"] for r in want])
        # the lr used is base_lr * lambda(i): the scheduler stepped after each optimizer step
        assert s["lr"] == base_lr * record["lr_lambda"](i), (i, s["lr"])
        mult = i / max(1, W) if i < W else max(
            0.0, 0.5 * (1.0 + math.cos(math.pi * (i - W) / max(1, T - W))))
        assert abs(s["lr"] - base_lr * mult) <= 1e-15 * base_lr, (i, s["lr"], mult)
        ng = {k for k in trainable if not s["has_grad"][k]}
        assert no_grad is None or ng == no_grad
        no_grad = ng
        if clip is not None:
            assert s["clip_params"] == s["opt_params"]
            assert abs(s["clip_total"] - s["norm64"]) <= NORM_TOL * s["norm64"], (
                s["clip_total"], s["norm64"])
        assert not any(s["has_grad"][k] for k in frozen)
    return step_rows, sorted(no_grad), frozen, T, W


def batch_tensors(collated, prefix):
    keys = set(collated) - IGNORED_KEYS
    assert keys == set(INPUT_NAMES), sorted(keys)
    out = {}
    for k, name in INPUT_NAMES.items():
        v = collated[k].detach()
        if name in ("rna_seq_attention_mask", "protein_seq_attention_mask"):
            assert v.dtype == torch.long and bool(((v == 0) | (v == 1)).all())
            v = v.to(torch.float32)
        elif name == "dna_seq_one_hot":
            assert v.dtype == torch.float32 and v.shape[1:] == (256, 4), v.shape
        elif name == "labels":
            assert v.dtype == torch.float32 and v.shape[1] == pp.NOUT
        else:
            assert v.dtype == torch.long
        out[f"{prefix}/{name}"] = v.contiguous().clone()
    return out


def common_meta(cfg, config, record, W, clip):
    init = cfg["model"]["init_args"]
    return {"generator": "tools/golden/trajectory_peer.py", "config": config,
            "start": ("tests/golden/predict/models/<hub id>/ + "
                      "tests/golden/predict/rest.safetensors"),
            "T": str(record["T"]), "W": str(W),
            "warmup_ratio": repr(init["lr_scheduler"]["init_args"]["warmup_ratio"]),
            "base_lr": repr(init["optimizer"]["init_args"]["lr"]),
            "weight_decay": repr(init["optimizer"]["init_args"]["weight_decay"]),
            "gradient_clip_val": repr(clip), "gradient_clip_algorithm": "norm",
            "batch_size": str(cfg["data"]["init_args"]["batch_size"]), "order": ORDER,
            **{k: str(v) for k, v in versions().items()}}


def write(path, tensors, meta):
    save_file(tensors, path, metadata=meta)
    size = os.path.getsize(path)
    assert size < MAX_FILE, (path, size)
    print(f"{os.path.relpath(path, ROOT)} {size}")


def main_run(cache):
    cfg = load_config(CONFIG)
    clip = cfg["trainer"]["gradient_clip_val"]
    assert cfg["trainer"]["precision"] == 32 and cfg["trainer"]["accumulate_grad_batches"] == 1
    task, record = make_task(cfg, pp.SEED + 11)
    other, _ = make_task(cfg, pp.SEED + 12)  # the start does not depend on torch's seed
    a, b = state_entries(task), state_entries(other)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    del other
    start = a
    rec, _ = fit(cfg, task, cache)
    step_rows, no_grad, frozen, T, W = check_steps(rec, task, record, cfg, clip)
    assert T == cfg["trainer"]["max_steps"] == 10 and W in (2, 3), (T, W)
    assert rec.steps[0]["lr"] == 0.0
    clipped = [s["clipped"] for s in rec.steps]
    assert any(clipped) and not all(clipped), clipped
    # the lr-0 first step leaves every entry as it was (AdamW only fills its moments)
    assert all(torch.equal(rec.after_first[k], start[k]) for k in start)
    tensors = {
        "loss": torch.tensor([float(s["loss"]) for s in rec.steps], dtype=torch.float64),
        "lr": torch.tensor([s["lr"] for s in rec.steps], dtype=torch.float64),
        "grad_norm": torch.tensor([s["clip_total"] for s in rec.steps], dtype=torch.float64),
        "clipped": torch.tensor(clipped, dtype=torch.uint8),
    }
    for s in rec.steps:
        assert s["loss"].dtype == torch.float32 and s["loss"].dim() == 0
    for i, s in enumerate(rec.steps):
        tensors.update(batch_tensors(s["collated"], f"batch/{i + 1}"))
    final = state_entries(task)
    assert final.keys() == start.keys()
    for k, v in final.items():
        tensors[f"final/{k}"] = v
    moved = sorted(k for k in final if not torch.equal(final[k], start[k]))
    replay_check(cfg, rec, final)
    meta = common_meta(cfg, CONFIG, record, W, clip)
    meta.update({
        "steps": str(len(rec.steps)),
        "clipped_steps": json.dumps([i + 1 for i, c in enumerate(clipped) if c]),
        "step_rows": json.dumps(step_rows),
        "no_grad_params": json.dumps(no_grad),
        "frozen_params": json.dumps(frozen),
        "n_trainable": str(sum(1 for p in task.parameters() if p.requires_grad)),
        "n_final": str(len(final)),
        "n_changed": str(len(moved)),
        "eval_mode_modules": json.dumps(rec.eval_modules),
    })
    write(os.path.join(OUT, "steps.safetensors"), tensors, meta)
    print(f"T {T} W {W} clip {clip}")
    for i, s in enumerate(rec.steps):
        print(f"step {i + 1:2d} batch {s['batch_idx']} loss {float(s['loss']):.9g} "
              f"lr {s['lr']:.9g} grad_norm {s['clip_total']:.9g}"
              f"{' clipped' if s['clipped'] else ''}")
    print(f"no-grad trainable params: {no_grad}")
    print(f"{len(frozen)} frozen params; {len(final)} final entries, {len(moved)} changed")
    return start, rec.steps[0]


def replay_check(cfg, rec, final):
    """The recorded run again by hand, without Lightning: the same start and modules' modes, the
    recorded batches, forward + MSE, backward, clip_grad_norm_ over the optimizer's parameters,
    AdamW.step, LambdaLR.step -- the loop of the module docstring. Must agree bit for bit."""
    from modelgenerator.lr_schedulers import CosineWithWarmup
    task, _ = make_task(cfg, pp.SEED + 14)
    assert [n for n, m in task.named_modules() if not m.training] == rec.eval_modules
    init = cfg["model"]["init_args"]
    okw = dict(init["optimizer"]["init_args"])
    okw["betas"] = tuple(okw["betas"])
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], **okw)
    sch = CosineWithWarmup(opt, **init["lr_scheduler"]["init_args"])
    sch.initialize(type("T", (), {"estimated_stepping_batches": cfg["trainer"]["max_steps"]})())
    clip = cfg["trainer"]["gradient_clip_val"]
    for s in rec.steps:
        opt.zero_grad(set_to_none=True)
        preds = task.forward(s["collated"])
        loss = task.loss(preds, s["collated"]["labels"])
        assert torch.equal(loss.detach(), s["loss"])
        loss.backward()
        assert opt.param_groups[0]["lr"] == s["lr"]
        total = torch.nn.utils.clip_grad_norm_(
            [p for p in opt.param_groups[0]["params"]], clip)
        assert float(total) == s["clip_total"]
        opt.step()
        sch.step()
    mine = state_entries(task)
    bad = [k for k in final if not torch.equal(mine[k], final[k])]
    assert not bad, f"the hand-written loop differs from Trainer.fit: {bad[:5]}"
    print("replay without Lightning: bitwise equal")


def dropout_run(cache, start, main_step1):
    cfg = load_config(DROPOUT_CONFIG)
    clip = cfg["trainer"]["gradient_clip_val"]
    assert cfg["trainer"]["max_steps"] == 1
    task, record = make_task(cfg, pp.SEED + 13)
    s0 = state_entries(task)
    assert s0.keys() == start.keys() and all(torch.equal(s0[k], start[k]) for k in s0)
    with DropoutRecorder(task) as dr:
        rec, _ = fit(cfg, task, cache)
    step_rows, no_grad, frozen, T, W = check_steps(rec, task, record, cfg, clip)
    s = rec.steps[0]
    ps = {cfg["model"]["init_args"][k]["init_args"]["lora_dropout"] for k in
          ("backbone1", "backbone2")}
    ps.add(cfg["model"]["init_args"]["adapter"]["init_args"]["adapter"]["init_args"]["dropout"])
    assert dr.ps == ps and len(ps) == 1, (dr.ps, ps)
    assert len(dr.scales) == 1, dr.scales
    (scale,) = dr.scales
    ins = batch_tensors(s["collated"], "batch/1")
    main_ins = batch_tensors(main_step1["collated"], "batch/1")
    assert ins.keys() == main_ins.keys() and all(torch.equal(ins[k], main_ins[k]) for k in ins)
    tensors = {
        "loss": torch.tensor([float(s["loss"])], dtype=torch.float64),
        "lr": torch.tensor([s["lr"]], dtype=torch.float64),
        "grad_norm": torch.tensor([s["clip_total"]], dtype=torch.float64),
        "clipped": torch.tensor([s["clipped"]], dtype=torch.uint8),
        "scale": torch.tensor([scale], dtype=torch.float32),
        **ins,
    }
    for name in dr.order:
        tensors[f"mask/{name}"] = dr.masks[name].contiguous()
    for k, g in s["grads"].items():
        tensors[f"grad/{k}"] = g.contiguous()
    final = state_entries(task)
    changed = sorted(k for k in final if not torch.equal(final[k], start[k]))
    for k in changed:
        tensors[f"final/{k}"] = final[k]
    assert s["lr"] > 0
    meta = common_meta(cfg, DROPOUT_CONFIG, record, W, clip)
    meta.update({
        "p": repr(next(iter(ps))),
        "mask_order": json.dumps(dr.order),
        "mask_shapes": json.dumps({k: list(dr.masks[k].shape) for k in dr.order}),
        "step_rows": json.dumps(step_rows),
        "no_grad_params": json.dumps(no_grad),
        "changed": json.dumps(changed),
        "eval_mode_modules": json.dumps(rec.eval_modules),
        "mask_rule": "out = x * (mask / (1 - p)), mask / (1 - p) computed in f32 (= scale)",
    })
    write(os.path.join(OUT, "dropout_step.safetensors"), tensors, meta)
    print(f"dropout step: T {T} W {W} loss {float(s['loss']):.9g} lr {s['lr']:.9g} "
          f"grad_norm {s['clip_total']:.9g}{' clipped' if s['clipped'] else ''} scale {scale!r}; "
          f"{len(changed)} entries changed")
    for name in dr.order:
        m = dr.masks[name]
        print(f"  mask/{name} {list(m.shape)} kept {float(m.float().mean()):.3f}")


# ---- gradient accumulation ---------------------------------------------------------------------
def accum_windows(cfg):
    """Lightning's optimizer steps as windows of (epoch, batch_idx): a window closes when
    (batch_idx + 1) % k == 0 or on the epoch's last batch (_should_accumulate); the fit ends after
    max_steps windows or max_epochs epochs. Returns (windows, batches per epoch, k)."""
    tr = cfg["trainer"]
    k = tr["accumulate_grad_batches"]
    nb = math.ceil(len(train_rows()) / cfg["data"]["init_args"]["batch_size"])
    assert tr["max_epochs"] and tr["max_steps"] > 0
    windows, cur = [], []
    for e in range(tr["max_epochs"]):
        for b in range(nb):
            if len(windows) == tr["max_steps"]:
                break
            cur.append((e, b))
            if (b + 1) % k == 0 or b + 1 == nb:
                windows.append(cur)
                cur = []
    assert not cur
    return windows, nb, k


def record_step_losses(task):
    """Wraps task.training_step to keep the loss it returns: Lightning divides it by k for the
    closure, and the outputs its hooks see hold the divided loss."""
    losses = []
    step = task.training_step

    def recording_training_step(*a, **kw):
        out = step(*a, **kw)
        loss = out["loss"] if isinstance(out, dict) else out
        losses.append(loss.detach().clone())
        return out
    task.training_step = recording_training_step
    return losses


def check_accum(rec, step_losses, task, record, cfg, clip, windows, nb, k):
    """Per-micro-batch and per-step invariants of the accumulation run; returns (rows per
    micro-batch, no-grad trainable params, frozen params, T, W)."""
    tr = cfg["trainer"]
    rows = train_rows()
    bs = cfg["data"]["init_args"]["batch_size"]
    sched = cfg["model"]["init_args"]["lr_scheduler"]["init_args"]
    base_lr = cfg["model"]["init_args"]["optimizer"]["init_args"]["lr"]
    T = record["T"]
    # Trainer.estimated_stepping_batches with max_epochs set
    assert T == min(math.ceil(nb / k) * max(tr["max_epochs"], 1), tr["max_steps"]), T
    W = int(sched["warmup_ratio"] * T)
    trainable = {n for n, p in task.named_parameters() if p.requires_grad}
    frozen = sorted(n for n, p in task.named_parameters() if not p.requires_grad)
    micro_rows, no_grad, i = [], None, 0
    for j, w in enumerate(windows):  # optimizer step j + 1
        for pos, (e, b) in enumerate(w):
            s = rec.steps[i]
            last = pos == len(w) - 1
            assert s["epoch"] == e and s["batch_idx"] == b, (i, s["epoch"], s["batch_idx"])
            assert s["global_step"] == j and s["end_step"] == j + int(last), (i, j)
            want = rows[b * bs:(b + 1) * bs]  # shuffle false: the train split in file order
            assert s["raw"]["dna_seq_sequences"] == [r["dna_seq"] for r in want]
            assert s["raw"]["rna_seq_sequences"] == [r["rna_seq"] for r in want]
            assert s["raw"]["protein_seq_sequences"] == [r["protein_seq"] for r in want]
            micro_rows.append([r["transcript_id"] for r in want])
            # only a window's last micro-batch reaches the optimizer (hook, clipping, step)
            assert ("lr" in s) == last and ("clip_total" in s) == last, (i, last)
            # the closure loss is training_step's loss / k, for a short window too
            assert step_losses[i].dtype == torch.float32 and step_losses[i].dim() == 0
            assert torch.equal(s["loss"], step_losses[i] / k), (i, s["loss"], step_losses[i])
            i += 1
        s = rec.steps[i - 1]
        # the scheduler steps after each optimizer step only: step j + 1 at base_lr * lambda(j)
        assert s["lr"] == base_lr * record["lr_lambda"](j), (j, s["lr"])
        mult = j / max(1, W) if j < W else max(
            0.0, 0.5 * (1.0 + math.cos(math.pi * (j - W) / max(1, T - W))))
        assert abs(s["lr"] - base_lr * mult) <= 1e-15 * base_lr, (j, s["lr"], mult)
        ng = {n for n in trainable if not s["has_grad"][n]}
        assert no_grad is None or ng == no_grad
        no_grad = ng
        assert s["clip_params"] == s["opt_params"]
        assert abs(s["clip_total"] - s["norm64"]) <= NORM_TOL * s["norm64"], (
            s["clip_total"], s["norm64"])
        assert not any(s["has_grad"][n] for n in frozen)
    assert i == len(rec.steps)
    return micro_rows, sorted(no_grad), frozen, T, W


def accum_replay_check(cfg, rec, windows, step_losses, T, final):
    """The accumulation run again by hand, without Lightning: per window zero_grad (set to None),
    for each micro-batch forward + MSE and backward of loss / k (k also for a short window), then
    clip_grad_norm_, AdamW.step, LambdaLR.step. Must agree bit for bit."""
    from modelgenerator.lr_schedulers import CosineWithWarmup
    task, _ = make_task(cfg, pp.SEED + 17)
    assert [n for n, m in task.named_modules() if not m.training] == rec.eval_modules
    init = cfg["model"]["init_args"]
    okw = dict(init["optimizer"]["init_args"])
    okw["betas"] = tuple(okw["betas"])
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], **okw)
    sch = CosineWithWarmup(opt, **init["lr_scheduler"]["init_args"])
    sch.initialize(type("T", (), {"estimated_stepping_batches": T})())
    clip = cfg["trainer"]["gradient_clip_val"]
    k = cfg["trainer"]["accumulate_grad_batches"]
    i = 0
    for w in windows:
        opt.zero_grad(set_to_none=True)
        for _ in w:
            s = rec.steps[i]
            preds = task.forward(s["collated"])
            loss = task.loss(preds, s["collated"]["labels"])
            assert torch.equal(loss.detach(), step_losses[i])
            (loss / k).backward()
            i += 1
        s = rec.steps[i - 1]
        assert opt.param_groups[0]["lr"] == s["lr"]
        total = torch.nn.utils.clip_grad_norm_(
            [p for p in opt.param_groups[0]["params"]], clip)
        assert float(total) == s["clip_total"]
        opt.step()
        sch.step()
    mine = state_entries(task)
    bad = [n for n in final if not torch.equal(mine[n], final[n])]
    assert not bad, f"the hand-written loop differs from Trainer.fit: {bad[:5]}"
    print("accumulation replay without Lightning: bitwise equal")


def accum_start(cfg, start):
    task, record = make_task(cfg, pp.SEED + 15)
    s0 = state_entries(task)
    if start is None:  # --accum-only: the start does not depend on torch's seed either
        other, _ = make_task(cfg, pp.SEED + 16)
        start = state_entries(other)
        del other
    assert s0.keys() == start.keys() and all(torch.equal(s0[n], start[n]) for n in s0)
    return task, record, s0


def accum_run(cache, start=None):
    cfg = load_config(ACCUM_CONFIG)
    tr = cfg["trainer"]
    clip = tr["gradient_clip_val"]
    assert tr["precision"] == 32 and tr["accumulate_grad_batches"] == 2
    windows, nb, k = accum_windows(cfg)
    micro = [m for w in windows for m in w]
    assert len(windows) == tr["max_steps"] and any(len(w) < k for w in windows)
    task, record, start = accum_start(cfg, start)
    step_losses = record_step_losses(task)
    rec, _ = fit(cfg, task, cache, n_batches=len(micro))
    assert len(step_losses) == len(micro)
    micro_rows, no_grad, frozen, T, W = check_accum(rec, step_losses, task, record, cfg, clip,
                                                     windows, nb, k)
    assert W >= 1 and rec.steps[len(windows[0]) - 1]["lr"] == 0.0
    steps = [s for s in rec.steps if "clip_total" in s]  # a window's last micro-batch
    clipped = [s["clipped"] for s in steps]
    assert any(clipped) and not all(clipped), clipped
    step_of = [j + 1 for j, w in enumerate(windows) for _ in w]
    tensors = {
        "loss": torch.tensor([float(x) for x in step_losses], dtype=torch.float64),
        "step_of_micro": torch.tensor(step_of, dtype=torch.int64),
        "lr": torch.tensor([s["lr"] for s in steps], dtype=torch.float64),
        "grad_norm": torch.tensor([s["clip_total"] for s in steps], dtype=torch.float64),
        "clipped": torch.tensor(clipped, dtype=torch.uint8),
    }
    for i, s in enumerate(rec.steps):
        tensors.update(batch_tensors(s["collated"], f"batch/{i + 1}"))
    final = state_entries(task)
    assert final.keys() == start.keys()
    for n, v in final.items():
        tensors[f"final/{n}"] = v
    moved = sorted(n for n in final if not torch.equal(final[n], start[n]))
    accum_replay_check(cfg, rec, windows, step_losses, T, final)
    meta = common_meta(cfg, ACCUM_CONFIG, record, W, clip)
    meta.update({
        "accumulate_grad_batches": str(k),
        "batches_per_epoch": str(nb),
        "max_epochs": str(tr["max_epochs"]),
        "max_steps": str(tr["max_steps"]),
        "steps": str(len(windows)),
        "micro_batches": str(len(micro)),
        "windows": json.dumps([[i + 1 for i, j in enumerate(step_of) if j == s]
                               for s in range(1, len(windows) + 1)]),
        "micro_epoch_batch": json.dumps([list(m) for m in micro]),
        "T_rule": "estimated_stepping_batches = min(ceil(batches_per_epoch / k) * max_epochs, "
                  "max_steps)",
        "accumulation": ("closure loss = training_step loss / k (a short window too); p.grad "
                         "summed over the window's micro-batches (zero_grad to None at its "
                         "first); the window closes at (batch_idx + 1) % k == 0 or the epoch's "
                         "last batch; clipping, AdamW.step and scheduler.step once per window"),
        "clipped_steps": json.dumps([j + 1 for j, c in enumerate(clipped) if c]),
        "micro_rows": json.dumps(micro_rows),
        "no_grad_params": json.dumps(no_grad),
        "frozen_params": json.dumps(frozen),
        "n_trainable": str(sum(1 for p in task.parameters() if p.requires_grad)),
        "n_final": str(len(final)),
        "n_changed": str(len(moved)),
        "eval_mode_modules": json.dumps(rec.eval_modules),
    })
    write(os.path.join(OUT, "accum_steps.safetensors"), tensors, meta)
    print(f"accumulation: k {k}, {nb} batches an epoch, T {T} W {W} clip {clip}")
    for i, s in enumerate(rec.steps):
        st = (f" -> step {step_of[i]} lr {s['lr']:.9g} grad_norm {s['clip_total']:.9g}"
              f"{' clipped' if s['clipped'] else ''}") if "clip_total" in s else ""
        print(f"micro {i + 1} epoch {s['epoch']} batch {s['batch_idx']} "
              f"loss {float(step_losses[i]):.9g}{st}")
    print(f"{len(final)} final entries, {len(moved)} changed")


def measure_accum(cache):
    cfg = load_config(ACCUM_CONFIG)
    windows, _, _ = accum_windows(cfg)
    task, record = make_task(cfg, pp.SEED + 15)
    rec, _ = fit(cfg, task, cache, clip_override=None,
                 n_batches=sum(len(w) for w in windows))
    steps = [s for s in rec.steps if "norm64" in s]
    print("T", record["T"], "lrs", [s["lr"] for s in steps])
    print("unclipped grad norms", [f"{s['norm64']:.6g}" for s in steps])


def measure(cache):
    cfg = load_config(CONFIG)
    task, record = make_task(cfg, pp.SEED + 11)
    rec, _ = fit(cfg, task, cache, clip_override=None)
    norms = [s["norm64"] for s in rec.steps]
    print("T", record["T"], "lrs", [s["lr"] for s in rec.steps])
    print("unclipped grad norms", [f"{x:.6g}" for x in norms])
    print("median", sorted(norms)[len(norms) // 2 - 1], sorted(norms)[len(norms) // 2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--measure", action="store_true",
                    help="print the unclipped run's gradient norms and write nothing")
    ap.add_argument("--measure-accum", action="store_true",
                    help="the same for the accumulation config")
    ap.add_argument("--accum-only", action="store_true",
                    help="rewrite only accum_steps.safetensors")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)  # trainer.precision 32
    cache = tempfile.mkdtemp(prefix="trajgold_datasets_")
    try:
        if args.measure:
            measure(cache)
            return
        if args.measure_accum:
            measure_accum(cache)
            return
        if args.accum_only:
            os.makedirs(OUT, exist_ok=True)
            accum_run(cache)
            return
        if os.path.isdir(OUT):
            shutil.rmtree(OUT)
        os.makedirs(OUT)
        start, step1 = main_run(cache)
        dropout_run(cache, start, step1)
        accum_run(cache, start)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
