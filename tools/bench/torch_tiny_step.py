"""PyTorch's CPU training throughput on the tiny 3-modality LoRA model, the baseline of
tools/bench/train_step_vs_torch.sh.

The task is the peer's real MMSequenceRegression built as tools/golden/trajectory_peer.py builds
it (tests/configs/trajectory/tiny3_lora.yaml; the Hugging Face folders of
tests/golden/predict/models + tests/golden/predict/rest.safetensors, non-strict; loaded backbones
in eval mode as under the peer's fit), fed the 10 recorded batches of
tests/golden/trajectory/steps.safetensors (batch/<k>/<input>) in turn. One timed step is
Lightning's loop without Lightning: zero_grad, forward, MSE loss, backward, clip_grad_norm_,
AdamW.step, scheduler.step. 5 warm-up steps are not timed.

    /root/.cache/aidomm/golden-venv/bin/python tools/bench/torch_tiny_step.py [--threads T] [--steps N]

Prints one JSON line {"steps_per_s": ..., "threads": T}.
"""
import argparse
import contextlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
import trajectory_peer as tp  # noqa: E402  (sets the offline environment before torch loads)

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

WARMUP = 5


def peer_batches():
    """The recorded batches as the task's collated batches (the peer's key names and dtypes)."""
    st = load_file(os.path.join(tp.OUT, "steps.safetensors"))
    out = []
    for k in range(1, 11):
        b = {}
        for peer, name in tp.INPUT_NAMES.items():
            v = st[f"batch/{k}/{name}"]
            if name.endswith("attention_mask"):
                v = v.to(torch.long)  # the recorder widened the 0/1 masks to f32
            b[peer] = v
        out.append(b)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float32)
    from modelgenerator.lr_schedulers import CosineWithWarmup
    cfg = tp.load_config(tp.CONFIG)
    with contextlib.redirect_stdout(sys.stderr):  # PEFT prints; stdout is the JSON line only
        task, _ = tp.make_task(cfg, tp.pp.SEED + 11)
    init = cfg["model"]["init_args"]
    okw = dict(init["optimizer"]["init_args"])
    okw["betas"] = tuple(okw["betas"])
    params = [p for p in task.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, **okw)
    sch = CosineWithWarmup(opt, **init["lr_scheduler"]["init_args"])
    total = WARMUP + args.steps  # the cosine over the whole run, as aidomm's bench
    sch.initialize(type("T", (), {"estimated_stepping_batches": total})())
    clip = cfg["trainer"]["gradient_clip_val"]
    batches = peer_batches()

    def step(i):
        b = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = task.loss(task.forward(b), b["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        sch.step()
        return loss

    for i in range(WARMUP):
        loss = step(i)
        if i == 0:  # step 1 (lr 0) is the fixture's step 1: checks the start and the feeds
            want = float(load_file(os.path.join(tp.OUT, "steps.safetensors"))["loss"][0])
            assert abs(float(loss) - want) <= 1e-5 * abs(want), (float(loss), want)
    t0 = time.perf_counter()
    for i in range(WARMUP, total):
        loss = step(i)
    dt = time.perf_counter() - t0
    assert torch.isfinite(loss)
    print(json.dumps({"steps_per_s": args.steps / dt, "threads": args.threads}))


if __name__ == "__main__":
    main()
