"""Golden for Lightning's ModelCheckpoint schedule (issue 5): which checkpoint files a real
`lightning.Trainer.fit` writes, links and removes, in order, and in answer to which events.

Each case runs a real Trainer (CPU, one parameter, SGD, 3 epochs x 7 train batches of one
sample, one validation batch) with one ModelCheckpoint. The LightningModule logs, at global step
s, a `train_loss` from a fixed table in `training_step` (on_step only) and `val_spearman`,
`val_r2`, `val_loss` from per-case tables in `on_validation_epoch_end`, so the C replay
(`tests/test_ckpt_policy.c`) can feed exactly the same values. A recorder callback (Lightning
runs ModelCheckpoint callbacks after all others, so the recorder sees each hook first) logs the
events the checkpoint reacts to; patches on `trainer.save_checkpoint`,
`strategy.remove_checkpoint`, `ModelCheckpoint._link_checkpoint` and the checkpoint module's
`warning_cache.warn` log what it did. Files are really written (to a temporary folder), since
ModelCheckpoint asks the file system whether a name is taken before it appends "-v1".

Output: tests/golden/checkpoint/schedule.json
  {"generator", "versions", "cases": [{
      "name", "note",
      "ckpt":    ModelCheckpoint init args (save_last may be "link"; null = None),
      "trainer": Trainer args that matter (val_check_interval, check_val_every_n_epoch,
                 max_epochs, max_steps, accumulate_grad_batches, limit_val_batches),
      "preexisting": files created in dirpath before fit,
      "log": [ {"event": "train_batch_end", "step", "epoch", "batch_idx", "is_last_batch",
                "logged": {name: value}, "callback_metrics": {name: value}}
             | {"event": "validation_end", "step", "epoch", "sanity", "logged", "callback_metrics"}
               (logged and callback_metrics are [[name, value], ...] in insertion order)
             | {"event": "train_epoch_end", "step", "epoch", "callback_metrics"}
             | {"event": "train_end", "step", "epoch"}
             | {"action": "save", "file"} | {"action": "remove", "file"}
             | {"action": "link", "target", "file"} | {"action": "warn", "message"} ],
      "error": null | {"type", "message"},          # what fit raised, if anything
      "final": {"best_model_path", "best_model_score", "kth_best_model_path", "kth_value",
                "last_model_path", "best_k_models": [[file, score], ... in dict order]},
      "files_left": sorted files in dirpath after fit}],
   "format": [{"kind": "float"|"int", "value", "neg_nan", "spec", "result" (null + "error" when
              Python refuses)}]            # Python's format() as Tensor.__format__ reaches it
   "names":  [{"template", "auto_insert", "ver", "epoch", "step", "metrics": [[name, value]],
              "result" (relative to dirpath) or null + "error"}]   # format_checkpoint_name}
File names are relative to the checkpoint's dirpath; "logged" is what the module logged during
that phase (the values after the float32 round trip of self.log), "callback_metrics" what
trainer.callback_metrics held when the hook ran. Non-finite floats are the strings "nan",
"inf", "-inf" (JSON has no NaN).
"""
import json
import math
import os
import shutil
import sys
import tempfile
import warnings

import torch

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.callbacks import model_checkpoint as mc_mod

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "checkpoint", "schedule.json")

NAN = float("nan")

# Per global step tables (index = trainer.global_step when the value is logged). Chosen with
# repeats, near-ties after rounding to 3 decimals and non-monotone runs so the top-k
# bookkeeping is exercised; index 0 is what the sanity check logs (it must never show up).
SPEARMAN = [0.999, 0.11, 0.12, 0.13, 0.4123, 0.2, 0.21, 0.22, 0.3871, 0.1, 0.11, 0.5555,
            0.3, 0.31, 0.32, 0.33, 0.5555, 0.4, 0.6, 0.61, 0.2468, 0.7, 0.7, 0.7]
R2 = [0.888, -0.5, -0.4, -0.3, -0.25, 0.0, 0.01, 0.02, 0.125, 0.1, 0.2, 0.3456,
      0.3, 0.31, 0.32, 0.33, -0.0004, 0.4, 0.6789, 0.5, 0.75, 0.8, 0.8, 0.8]
LOSS = [9.5, 3.0, 2.9, 2.8, 2.5, 2.4, 2.3, 2.2, 1.75, 1.7, 1.6, 1.25,
        1.4, 1.3, 1.2, 1.1, 1.25, 1.0, 2.0, 0.9, 0.8125, 0.8, 0.8, 0.8]
TRAIN_LOSS = [5.0 / (s + 1) for s in range(32)]


def table_metrics(step, spearman=SPEARMAN, r2=R2, loss=LOSS):
    return {"val_spearman": spearman[step], "val_r2": r2[step], "val_loss": loss[step]}


def fval(v):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


class Net(pl.LightningModule):
    def __init__(self, metric_fn, log_sink):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.metric_fn = metric_fn
        self.log_sink = log_sink

    def training_step(self, batch, batch_idx):
        loss = ((self.w - batch[0]) ** 2).sum()
        step = self.trainer.global_step  # before this batch's optimizer step
        self.log("train_loss", TRAIN_LOSS[step], on_step=True, on_epoch=False)
        self.log_sink["train"] = {"train_loss": TRAIN_LOSS[step]}
        return loss

    def validation_step(self, batch, batch_idx):
        return None

    def on_validation_epoch_end(self):
        m = self.metric_fn(self.trainer.global_step)
        for k, v in m.items():
            self.log(k, v)
        self.log_sink["val"] = dict(m)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        x = torch.arange(7, dtype=torch.float32).reshape(7, 1)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=1)

    def val_dataloader(self):
        x = torch.ones(1, 1)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=1)


class Recorder(Callback):
    def __init__(self, log, sink, ckpt):
        self.events, self.sink, self.ckpt = log, sink, ckpt

    def _cm(self, trainer):
        # insertion order: ModelCheckpoint's "could not find the monitored key" message lists it
        return [[k, fval(v)] for k, v in trainer.callback_metrics.items()]

    def _logged(self, which):
        # the values as stored (float32), read back from what self.log kept
        return [[k, fval(torch.tensor(v, dtype=torch.float32))] for k, v in
                self.sink.pop(which, {}).items()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.events.append({"event": "train_batch_end", "step": trainer.global_step,
                         "epoch": trainer.current_epoch, "batch_idx": batch_idx,
                         "is_last_batch": bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch),
                         "logged": self._logged("train"), "callback_metrics": self._cm(trainer)})

    def on_validation_end(self, trainer, pl_module):
        self.events.append({"event": "validation_end", "step": trainer.global_step,
                         "epoch": trainer.current_epoch, "sanity": bool(trainer.sanity_checking),
                         "logged": self._logged("val"), "callback_metrics": self._cm(trainer)})

    def on_train_epoch_end(self, trainer, pl_module):
        self.events.append({"event": "train_epoch_end", "step": trainer.global_step,
                         "epoch": trainer.current_epoch, "callback_metrics": self._cm(trainer)})

    def on_train_end(self, trainer, pl_module):
        self.events.append({"event": "train_end", "step": trainer.global_step,
                         "epoch": trainer.current_epoch})


def run_case(case):
    tmp = tempfile.mkdtemp(prefix="ckptsched-")
    try:
        return _run_case(case, tmp)
    finally:
        shutil.rmtree(tmp)


def _run_case(case, tmp):
    dirpath = os.path.realpath(os.path.join(tmp, "ckpts"))
    os.makedirs(dirpath)
    for f in case.get("preexisting", []):
        with open(os.path.join(dirpath, f), "w") as fh:
            fh.write("old\n")

    log, sink = [], {}
    ck_args = dict(case["ckpt"])
    ckpt = ModelCheckpoint(dirpath=dirpath, **ck_args)
    tr_args = dict(max_epochs=3, val_check_interval=4)
    tr_args.update(case.get("trainer", {}))
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp,
                         callbacks=[Recorder(log, sink, ckpt), ckpt], **tr_args)
    model = Net(case.get("metrics", table_metrics), sink)

    real_save = trainer.save_checkpoint

    def save(filepath, weights_only=False, storage_options=None):
        log.append({"action": "save", "file": os.path.relpath(filepath, dirpath)})
        return real_save(filepath, weights_only, storage_options)

    trainer.save_checkpoint = save
    real_remove = trainer.strategy.remove_checkpoint

    def remove(filepath):
        log.append({"action": "remove", "file": os.path.relpath(filepath, dirpath)})
        return real_remove(filepath)

    trainer.strategy.remove_checkpoint = remove

    real_link = ModelCheckpoint._link_checkpoint

    def link(trainer_, filepath, linkpath):
        if os.path.abspath(filepath) != os.path.abspath(linkpath):  # else Lightning does nothing
            log.append({"action": "link", "target": os.path.relpath(filepath, dirpath),
                        "file": os.path.relpath(linkpath, dirpath)})
        return real_link(trainer_, filepath, linkpath)

    ModelCheckpoint._link_checkpoint = staticmethod(link)
    real_warn = mc_mod.warning_cache.warn

    def warn(m, stacklevel=5, **kwargs):
        if m not in mc_mod.warning_cache:  # WarningCache shows each message once per process
            log.append({"action": "warn", "message": m.replace(dirpath, "<dirpath>")})
        return real_warn(m, stacklevel=stacklevel, **kwargs)

    mc_mod.warning_cache.clear()  # it dedupes across cases otherwise
    mc_mod.warning_cache.warn = warn
    error = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model)
    except Exception as e:  # noqa: BLE001 - recorded, it is what the case checks
        error = {"type": type(e).__name__, "message": str(e)}
        log.append({"error": type(e).__name__})
    finally:
        ModelCheckpoint._link_checkpoint = staticmethod(real_link)
        mc_mod.warning_cache.warn = real_warn

    def relp(p):
        return os.path.relpath(p, dirpath) if p else ""

    final = {
        "best_model_path": relp(ckpt.best_model_path),
        "best_model_score": None if ckpt.best_model_score is None else fval(ckpt.best_model_score),
        "kth_best_model_path": relp(ckpt.kth_best_model_path),
        "kth_value": fval(ckpt.kth_value),
        "last_model_path": relp(ckpt.last_model_path),
        "best_k_models": [[relp(k), fval(v)] for k, v in ckpt.best_k_models.items()],
    }
    files_left = sorted(os.listdir(dirpath))
    out = {"name": case["name"], "note": case["note"], "ckpt": ck_args,
           "trainer": {"max_epochs": 3, "val_check_interval": 4, "check_val_every_n_epoch": 1,
                       "max_steps": -1, "accumulate_grad_batches": 1, "limit_val_batches": 1.0,
                       "train_batches_per_epoch": 7},
           "preexisting": case.get("preexisting", []), "log": log, "error": error,
           "final": final, "files_left": files_left}
    out["trainer"].update(case.get("trainer", {}))
    return out


SEED_CKPT = dict(filename="best_val:{step}-{val_spearman:.3f}-{val_r2:.3f}", monitor="val_spearman",
                 mode="max", save_last=True, save_top_k=1, every_n_train_steps=5, every_n_epochs=None,
                 save_on_train_epoch_end=True)
ACC_CKPT = dict(filename="best_val:{step}-{val_spearman:.3f}", monitor="val_spearman", mode="max",
                save_last=True, save_top_k=2, every_n_train_steps=5)


def with_(base, **kw):
    d = dict(base)
    d.update(kw)
    return d


def nan_metrics(step):
    m = table_metrics(step)
    if step in (4, 18):
        m["val_loss"] = NAN
    return m


TIES = [2.0, 1.5, 1.5, 1.0, 1.5, 1.0, 2.0, 1.0, 0.5, 0.5, 0.75, 0.5, 0.5, 0.25, 1.0, 0.25, 0.25, 3.0,
        0.25, 0.125, 0.125, 0.125]


def tie_metrics(step):
    m = table_metrics(step)
    m["val_loss"] = TIES[step]
    return m


CASES = [
    dict(name="acceptance", ckpt=ACC_CKPT,
         note="issue 5 acceptance: val_check_interval 4 (per epoch), every_n_train_steps 5, top 2 by val_spearman (max), save_last"),
    dict(name="acceptance_min", ckpt=with_(ACC_CKPT, monitor="val_loss", mode="min",
                                          filename="best_val:{step}-{val_loss:.3f}"),
         note="acceptance with val_loss, mode min"),
    dict(name="seed", ckpt=SEED_CKPT, trainer=dict(check_val_every_n_epoch=None),
         note="the seed configs' callback scaled down (every_n_train_steps 500 -> 5, val_check_interval 499 -> 4), check_val_every_n_epoch null"),
    dict(name="seed_max_steps20", ckpt=SEED_CKPT, trainer=dict(check_val_every_n_epoch=None, max_steps=20),
         note="seed with the tiny configs' max_steps 20 (stops one batch before the end of epoch 2)"),
    dict(name="seed_top3", ckpt=with_(SEED_CKPT, save_top_k=3), trainer=dict(check_val_every_n_epoch=None),
         note="seed with save_top_k 3 (the prot_attention config)"),
    dict(name="topk_all", ckpt=with_(ACC_CKPT, save_top_k=-1), note="save_top_k -1"),
    dict(name="topk0", ckpt=with_(ACC_CKPT, save_top_k=0), note="save_top_k 0: only last"),
    dict(name="topk1", ckpt=with_(ACC_CKPT, save_top_k=1), note="save_top_k 1"),
    dict(name="soe_true", ckpt=with_(ACC_CKPT, save_on_train_epoch_end=True),
         note="acceptance with save_on_train_epoch_end true"),
    dict(name="soe_false", ckpt=with_(ACC_CKPT, save_on_train_epoch_end=False),
         note="acceptance with save_on_train_epoch_end false"),
    dict(name="epochs_vci1", ckpt=dict(monitor="val_loss", mode="min", save_top_k=2, save_last=True),
         trainer=dict(val_check_interval=1.0),
         note="default trigger (every_n_epochs 1), validation once per epoch: None resolves to saving at train epoch end"),
    dict(name="epochs_vci4", ckpt=dict(monitor="val_loss", mode="min", save_top_k=2, save_last=True),
         note="default trigger, validation mid-epoch: None resolves to saving at validation end"),
    dict(name="epochs2_soe_false", ckpt=dict(monitor="val_loss", mode="min", save_top_k=2, save_last=True,
                                             every_n_epochs=2, save_on_train_epoch_end=False),
         note="every_n_epochs 2 checked at validation end"),
    dict(name="epochs_vci1_int", ckpt=dict(monitor="val_loss", mode="min", save_top_k=2, save_last=True),
         trainer=dict(val_check_interval=1),
         note="val_check_interval 1 (int: every batch) compares equal to 1.0: None resolves to train epoch end"),
    dict(name="missing_monitor_steps", ckpt=with_(ACC_CKPT, monitor="val_nope"),
         note="monitor never logged, step trigger: deferred at step 5, raises at the next validation end"),
    dict(name="missing_monitor_epoch_noval", ckpt=dict(monitor="val_nope", save_top_k=1, save_last=True,
                                                       save_on_train_epoch_end=True),
         trainer=dict(limit_val_batches=0),
         note="monitor never logged, no validation: warns once, saves nothing until on_train_end writes last"),
    dict(name="missing_monitor_epoch_val", ckpt=dict(monitor="val_nope", save_top_k=1, save_last=True,
                                                     save_on_train_epoch_end=True),
         trainer=dict(val_check_interval=1.0),
         note="monitor never logged, validation has run: raises at the first train epoch end"),
    dict(name="no_monitor_top1", ckpt=dict(save_top_k=1, save_last=True, every_n_train_steps=5),
         note="monitor None: each save replaces the previous"),
    dict(name="no_monitor_all_const", ckpt=dict(save_top_k=-1, every_n_train_steps=5, filename="ckpt"),
         note="monitor None, top -1, constant name: overwrites the previous (del_filepath is best_model_path)"),
    dict(name="no_monitor_all", ckpt=dict(save_top_k=-1, every_n_train_steps=5),
         note="monitor None, top -1, default name {epoch}-{step}"),
    dict(name="collide", ckpt=dict(monitor="val_loss", mode="min", save_top_k=-1, every_n_train_steps=5,
                                   filename="{epoch}"),
         note="name collisions get -v1, -v2"),
    dict(name="collide_top2", ckpt=dict(monitor="val_loss", mode="min", save_top_k=2, every_n_train_steps=5,
                                        filename="{epoch}", save_last=True),
         note="collisions with eviction: the evicted name may be reused"),
    dict(name="collide_nocounter", ckpt=dict(monitor="val_loss", mode="min", save_top_k=-1, every_n_train_steps=5,
                                             filename="{epoch}", enable_version_counter=False),
         note="enable_version_counter false: the same name is overwritten and kept twice in best_k_models"),
    dict(name="preexisting", ckpt=ACC_CKPT,
         preexisting=["last.ckpt", "best_val:step=5-val_spearman=0.412.ckpt", "other.txt"],
         note="files already in dirpath: last-v1 and -v1 names"),
    dict(name="nan_min", ckpt=dict(monitor="val_loss", mode="min", save_top_k=2, save_last=True,
                                   filename="{step}-{val_loss:.2f}"),
         metrics=nan_metrics, note="NaN monitor values (steps 4 and 18) stored as +inf"),
    dict(name="nan_max_topall", ckpt=dict(monitor="val_loss", mode="max", save_top_k=-1,
                                          filename="{step}-{val_loss}"),
         metrics=nan_metrics, note="NaN in max mode (-inf), unformatted value {val_loss} (repr)"),
    dict(name="ties", ckpt=dict(monitor="val_loss", mode="min", save_top_k=2, filename="{step}",
                                save_on_train_epoch_end=False),
         trainer=dict(val_check_interval=1), metrics=tie_metrics, note="ties: strict comparison, first extreme in insertion order"),
    dict(name="link", ckpt=with_(ACC_CKPT, save_last="link"), note="save_last 'link'"),
    dict(name="link_topk0", ckpt=with_(ACC_CKPT, save_last="link", save_top_k=0), note="save_last 'link' with top 0"),
    dict(name="defer_cve_none", ckpt=dict(monitor="val_loss", mode="min", save_top_k=2, save_last=True,
                                          every_n_train_steps=7),
         trainer=dict(check_val_every_n_epoch=None),
         note="every_n_train_steps at the last batch of the epoch, validation by total batches: deferred to the next validation end"),
    dict(name="defer_same_step", ckpt=dict(monitor="val_loss", mode="min", save_top_k=2, save_last=True,
                                           every_n_train_steps=7),
         trainer=dict(val_check_interval=7),
         note="every_n_train_steps at the last batch, validation right after it: deferred to that validation"),
    dict(name="accum2", ckpt=dict(monitor="val_loss", mode="min", save_top_k=2, save_last=True,
                                  every_n_train_steps=2, filename="{epoch}-{step}-{val_loss:.3f}"),
         trainer=dict(accumulate_grad_batches=2),
         note="accumulate_grad_batches 2: on_train_batch_end per batch with a repeated global_step"),
    dict(name="template", ckpt=dict(monitor="val_loss", mode="min", save_top_k=3, every_n_train_steps=5,
                                    auto_insert_metric_name=False,
                                    filename="ep{epoch:02d}_s{step:04d}_{val_loss:.4f}_{train_loss:.3e}_{nokey}_{val_r2:+.2f}"),
         note="auto_insert_metric_name false, format specs, a train metric, a missing key (0)"),
    dict(name="template_auto", ckpt=dict(monitor="val_loss", mode="min", save_top_k=3, every_n_train_steps=5,
                                         filename="x/{epoch}_{step}_{val_r2}_{nokey:.2f}_{train_loss:g}"),
         note="auto-insert with unformatted floats, a sub-folder in the template, a missing key"),
]


FLOAT_VALUES = [0.0, -0.0, 0.5, -0.25, 0.1, 1.0 / 3.0, 0.4122999906539917, 0.5554999709129333,
                -0.00039999998989515007, 2.5, 12.0, 99.99, 100.0, 123.0, 1234.5, 0.0001234, 1.234e-05,
                1e16, 1e15, 123456789012345678.0, 5e-324, 1.7976931348623157e308, 0.0005, 0.0015,
                2.675, 1e-05, 0.0001, float("inf"), float("-inf"), float("nan"), -float("nan")]
FLOAT_SPECS = ["", ".3f", ".2f", ".4f", ".0f", ".3e", "+.2f", " .2f", "g", ".3g", "G", ".3", ".1",
               ".5", ".0", "08.2f", "^9.1f", "=+8.2f", "z.1f", "z.2e", ".2%", "%", "E", "F", ">10",
               "<6.1f", "#.3g", "#.0f", "x<8.1e", "*^11", "+", "010", "-.1f"]
INT_VALUES = [0, 3, 21, -3, 12345]
INT_SPECS = ["", "d", "02d", "04d", "+d", " d", ".2f", "e", "%", ">5", "^5d", "=+6d", "x<4", "05",
             "g", ".3"]


def format_cases():
    """Python's format() on the values ModelCheckpoint formats: float32-valued metrics come
    back as Python floats (Tensor.__format__ -> item()), epoch/step and missing keys as ints."""
    out = []
    for kind, values, specs in (("float", FLOAT_VALUES, FLOAT_SPECS), ("int", INT_VALUES, INT_SPECS)):
        for v in values:
            for spec in specs:
                try:
                    r = format(v, spec)
                except ValueError as e:
                    r = None
                    err = str(e)
                out.append({"kind": kind, "value": fval(v) if kind == "float" else v,
                            "neg_nan": kind == "float" and math.isnan(v) and math.copysign(1, v) < 0,
                            "spec": spec, "result": r} | ({} if r is not None else {"error": err}))
    return out


NAME_CASES = [
    # (template, auto_insert_metric_name, ver)
    (None, True, None), ("{epoch}-{epoch_test}", True, None), ("{epoch_test}-{epoch}", True, 2),
    ("{step}_{step}", True, None), ("{val}_{val_loss}", True, None), ("{val.loss:.2f}", True, None),
    ("{a{b}", True, None), ("{{literal}}-{step}", False, None), ("{missing:d}", True, None),
    ("best_val:{step}-{val_spearman:.3f}-{val_r2:.3f}", True, 3), ("epoch={epoch}-x", False, None),
    ("no fields", True, 1), ("{step:>6}|{val_loss:<9.3f}|", True, None), ("a:{step}:{epoch}", True, None),
    ("{epoch}{epoch}", False, None), ("{step}-{val_loss:.2f}", False, None),
]


def name_cases():
    out = []
    metrics = [["val", 0.5], ["val_loss", 0.12345600128173828], ["val.loss", 1.5],
               ["val_spearman", 0.5554999709129333], ["val_r2", -0.00039999998989515007],
               ["epoch_test", 7.0], ["b", 2.0]]
    for tmpl, auto, ver in NAME_CASES:
        ck = ModelCheckpoint(dirpath="/d", filename=tmpl, auto_insert_metric_name=auto)
        m = {k: torch.tensor(v, dtype=torch.float32) for k, v in metrics}
        m["epoch"], m["step"] = torch.tensor(2), torch.tensor(17)
        try:
            r, err = os.path.relpath(ck.format_checkpoint_name(m, ver=ver), "/d"), None
        except Exception as e:  # noqa: BLE001
            r, err = None, f"{type(e).__name__}: {e}"
        out.append({"template": tmpl, "auto_insert": auto, "ver": ver, "epoch": 2, "step": 17,
                    "metrics": metrics, "result": r} | ({} if err is None else {"error": err}))
    return out


def dump(doc):
    """JSON with one case field, log entry or best_k entry per line (diffable, compact)."""
    j = lambda v: json.dumps(v, separators=(",", ":"), allow_nan=False)
    out = ["{", f'"generator":{j(doc["generator"])},', f'"versions":{j(doc["versions"])},', '"cases":[']
    for ci, c in enumerate(doc["cases"]):
        out.append("{")
        keys = list(c)
        for ki, k in enumerate(keys):
            end = "," if ki + 1 < len(keys) else ""
            if k == "log":
                out.append('"log":[')
                out += [j(e) + ("," if i + 1 < len(c["log"]) else "") for i, e in enumerate(c["log"])]
                out.append("]" + end)
            else:
                out.append(f"{j(k)}:{j(c[k])}{end}")
        out.append("}" + ("," if ci + 1 < len(doc["cases"]) else ""))
    out.append("],")
    for key in ("format", "names"):
        out.append(f'"{key}":[')
        out += [j(e) + ("," if i + 1 < len(doc[key]) else "") for i, e in enumerate(doc[key])]
        out.append("]" + ("," if key == "format" else ""))
    out += ["}", ""]
    return "\n".join(out)


def main():
    from importlib import metadata
    versions = {"python": sys.version.split()[0], "torch": torch.__version__}
    for mod in ("lightning", "pytorch-lightning", "modelgenerator"):
        try:
            versions[mod] = metadata.version(mod)
        except metadata.PackageNotFoundError:
            pass
    only = set(sys.argv[1:])
    cases = [run_case(c) for c in CASES if not only or c["name"] in only]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    doc = {"generator": "tools/golden/checkpoint_schedule.py", "versions": versions, "cases": cases,
           "format": format_cases(), "names": name_cases()}
    if only:
        json.dump(doc, sys.stdout, indent=1)
        return
    with open(OUT, "w") as f:
        f.write(dump(doc))
    for c in cases:
        n_s = sum(1 for e in c["log"] if e.get("action") == "save")
        n_r = sum(1 for e in c["log"] if e.get("action") == "remove")
        print(f"{c['name']:28s} saves {n_s:2d} removes {n_r:2d} error {c['error']['type'] if c['error'] else '-'}")


if __name__ == "__main__":
    main()
