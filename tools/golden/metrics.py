"""Regression-metric goldens: the peer's metric classes (modelgenerator.metrics wrappers over
torchmetrics PearsonCorrCoef, SpearmanCorrCoef, MeanAbsoluteError, MeanSquaredError, and
torchmetrics.R2Score) fed f64 inputs, streamed batch by batch as MMSequenceRegression.evaluate
does (modelgenerator.md 4.2).

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/metrics.py

torch's default dtype is set to f64 first: torchmetrics' Spearman ranks are `int32 / int32`,
which is a tensor of the *default* dtype, so under the f32 default the whole Spearman
computation runs in f32 (errors near 1e-7) whatever the input dtype; the metric states
(zeros(num_outputs)) are also created in the default dtype.

File tests/golden/metrics.safetensors; __metadata__ "cases" is a JSON list of
  {"name", "n", "k", "dtype": "f32"|"f64" (the dtype fed to the C accumulator; torchmetrics always
   gets those values as f64), "r2_raises": true when R2Score refuses (fewer than 2 samples)}
and "metrics" the order of the rows below. Tensors per case:
  <name>/preds, <name>/labels  [N, K] in the case's dtype
  <name>/splits                i64 [S], the batch sizes, in order, summing to N
  <name>/per_col               f64 [5, K]: per output column, one num_outputs=1 metric per column
                               fed preds[:, i], labels[:, i] (the test stage's pearson_i, ...);
                               R2 is NaN where R2Score raises
  <name>/avg                   f64 [5]: the stage-level metrics (num_outputs=K, uniform_average)
"""
import json
import math
import os
import sys
import warnings

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import repo_root, versions  # noqa: E402

torch.set_default_dtype(torch.float64)

import torchmetrics as tm  # noqa: E402
from modelgenerator.metrics import (  # noqa: E402
    MeanAbsoluteError, MeanSquaredError, PearsonCorrCoef, SpearmanCorrCoef)

METRICS = ["pearson", "spearman", "mae", "r2", "mse"]
LOG_FLOOR = math.log2(1e-4)  # log2(1e-4 + TPM) at TPM = 0: where real isoform labels pile up


def stage_metrics(k):
    # As MMSequenceRegression.__init__ builds them for every stage.
    return {
        "pearson": PearsonCorrCoef(num_outputs=k, multioutput="uniform_average"),
        "spearman": SpearmanCorrCoef(num_outputs=k, multioutput="uniform_average"),
        "mae": MeanAbsoluteError(num_outputs=k, multioutput="uniform_average"),
        "r2": tm.R2Score(multioutput="uniform_average"),
        "mse": MeanSquaredError(num_outputs=k, multioutput="uniform_average"),
    }


def label_metrics():
    # The test stage's per-label metrics (num_outputs = 1, fed one column).
    return {
        "pearson": PearsonCorrCoef(num_outputs=1),
        "spearman": SpearmanCorrCoef(num_outputs=1),
        "mae": MeanAbsoluteError(num_outputs=1),
        "r2": tm.R2Score(),
        "mse": MeanSquaredError(num_outputs=1),
    }


def compute(metric):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(metric.compute())
    except ValueError:  # R2Score with fewer than two samples
        return float("nan")


def run_case(preds, labels, splits):
    n, k = preds.shape
    p64, l64 = preds.to(torch.float64), labels.to(torch.float64)
    stage = stage_metrics(k)
    per = [label_metrics() for _ in range(k)]
    r0 = 0
    for b in splits:
        pb, lb = p64[r0:r0 + b], l64[r0:r0 + b]
        for m in stage.values():
            m.update(pb, lb)
        for i in range(k):
            for m in per[i].values():
                m.update(pb[:, i], lb[:, i])
        r0 += b
    assert r0 == n
    avg = torch.tensor([compute(stage[name]) for name in METRICS])
    per_col = torch.tensor([[compute(per[i][name]) for i in range(k)] for name in METRICS])
    return per_col, avg


def main():
    g = torch.Generator().manual_seed(4)
    tensors, cases = {}, []

    def add(name, preds, labels, splits, dtype="f64"):
        dt = torch.float32 if dtype == "f32" else torch.float64
        preds, labels = preds.to(dt), labels.to(dt)
        per_col, avg = run_case(preds, labels, splits)
        n, k = preds.shape
        tensors[f"{name}/preds"] = preds.contiguous()
        tensors[f"{name}/labels"] = labels.contiguous()
        tensors[f"{name}/splits"] = torch.tensor(splits, dtype=torch.int64)
        tensors[f"{name}/per_col"] = per_col.contiguous()
        tensors[f"{name}/avg"] = avg
        cases.append({"name": name, "n": n, "k": k, "dtype": dtype, "r2_raises": n < 2})

    def randn(*s):
        return torch.randn(*s, generator=g)

    def isoform_labels(n, k, zero_frac):
        # log2(1e-4 + TPM): a pile at the floor, a lognormal-ish tail above it.
        tpm = torch.exp(randn(n, k) * 2.0)
        zero = torch.rand(n, k, generator=g) < zero_frac
        tpm[zero] = 0.0
        return torch.log2(1e-4 + tpm)

    # Correlated predictions, uneven batches.
    lab = randn(57, 5) * 2.0 + 1.0
    add("random", 0.7 * lab + randn(57, 5), lab, [7, 20, 1, 29])

    # Heavy ties: most labels at the floor, predictions rounded to create ties of their own.
    lab = isoform_labels(64, 4, 0.6)
    pred = torch.round((0.5 * lab + randn(64, 4)) * 2.0) / 2.0
    add("ties", pred, lab, [10, 3, 33, 18])

    # Constant prediction columns (column 1 at 0.1, column 2 at the floor; 0.1 * n does not
    # round-trip, so torchmetrics' batch means are not exactly 0.1).
    lab = isoform_labels(20, 3, 0.3)
    pred = randn(20, 3)
    pred[:, 1] = 0.1
    pred[:, 2] = LOG_FLOOR
    add("const_pred", pred, lab, [6, 14])

    # Constant label column (a tissue where no test transcript is expressed).
    lab = isoform_labels(20, 3, 0.3)
    lab[:, 0] = LOG_FLOOR
    add("const_label", randn(20, 3), lab, [5, 5, 10])

    # N = 1 and N = 2 (one column tied in N = 2).
    add("n1", randn(1, 3), randn(1, 3), [1])
    lab, pred = randn(2, 3), randn(2, 3)
    lab[:, 2] = LOG_FLOOR
    add("n2", pred, lab, [1, 1])

    # The isoform shape: 30 outputs, f32 inputs, streamed in uneven batches.
    lab = isoform_labels(300, 30, 0.5)
    pred = 0.6 * lab + 2.0 * randn(300, 30)
    add("k30", pred, lab, [32, 32, 17, 100, 1, 64, 54], dtype="f32")

    meta = {"cases": json.dumps(cases), "metrics": json.dumps(METRICS),
            "versions": json.dumps({**versions(), "torchmetrics": tm.__version__})}
    path = os.path.join(repo_root(), "tests", "golden", "metrics.safetensors")
    save_file(tensors, path, metadata=meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(cases)} cases)")
    for c in cases:
        print(c["name"], tensors[c["name"] + "/avg"].tolist())


if __name__ == "__main__":
    main()
