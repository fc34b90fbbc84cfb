#!/usr/bin/env python3
"""Convert PyTorch pickle checkpoints to safetensors, the only weight format aidomm reads.

aidomm refuses pickle files (.bin, .ckpt, .pt, .pth, or anything opening with the pickle or zip
magic) because unpickling can run arbitrary code. Convert them once with the golden venv
(tools/golden/setup_venv.sh), which has torch and safetensors:

  PY=~/.cache/aidomm/golden-venv/bin/python

  # A Lightning / ModelGenerator checkpoint (mgen fit ... writes logs/.../last.ckpt): the
  # state_dict keys are already the ModelGenerator keys aidomm uses, so the result loads with
  # `--ckpt_path last.safetensors`.
  $PY tools/convert_checkpoint.py logs/last.ckpt last.safetensors

  # A bare state_dict saved with torch.save(model.state_dict(), "w.pt"):
  $PY tools/convert_checkpoint.py w.pt w.safetensors

  # A Hugging Face folder that only has pytorch_model.bin (or a sharded
  # pytorch_model.bin.index.json): writes model.safetensors (sharded input gives one file) and
  # copies config.json, giving the layout `from_scratch: false` looks for under $AIDOMM_MODELS.
  $PY tools/convert_checkpoint.py ~/models/AIDO.RNA-650M-pt $AIDOMM_MODELS/genbio-ai/AIDO.RNA-650M

By default torch.load runs with weights_only=True, which only rebuilds tensors and plain
containers and refuses anything else; --trust-pickle turns that off for files you made yourself
that hold other objects (older Lightning checkpoints with hyper-parameter classes).

Tensors that share storage (tied embeddings, Enformer's _trunk aliases) are written as separate
copies under every name; aidomm recognises byte-identical copies as aliases. Non-tensor entries
are skipped and listed. The output is written to a temporary file and renamed into place.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile


def load_pickle(path, trust):
    import torch
    obj = torch.load(path, map_location="cpu", weights_only=not trust)
    # Lightning checkpoints wrap the model's state_dict; bare state_dicts are the mapping itself.
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        sys.exit(f"{path}: expected a state_dict (a dict of tensors), found {type(obj).__name__}")
    return obj


def tensors_only(sd, strip_prefix, source):
    import torch
    out, skipped = {}, []
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            skipped.append(k)
            continue
        if strip_prefix and k.startswith(strip_prefix):
            k = k[len(strip_prefix):]
        if k in out:
            sys.exit(f"{source}: two keys become '{k}' after --strip-prefix")
        # clone: safetensors refuses tensors sharing storage, and views must be compact
        out[k] = v.detach().contiguous().clone()
    if skipped:
        print(f"{source}: skipped {len(skipped)} non-tensor entries: {', '.join(skipped[:10])}"
              + (" ..." if len(skipped) > 10 else ""), file=sys.stderr)
    if not out:
        sys.exit(f"{source}: no tensors found")
    return out


def write_atomic(tensors, dst, meta):
    from safetensors.torch import save_file
    d = os.path.dirname(os.path.abspath(dst))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".convert-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def convert_folder(src, dst, args):
    single = os.path.join(src, "pytorch_model.bin")
    index = os.path.join(src, "pytorch_model.bin.index.json")
    if os.path.isfile(single):
        sd = load_pickle(single, args.trust_pickle)
    elif os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        sd = {}
        for s in shards:
            if os.path.basename(s) != s:
                sys.exit(f"{index}: shard '{s}' is not a file name in the folder")
            sd.update(load_pickle(os.path.join(src, s), args.trust_pickle))
    else:
        sys.exit(f"{src}: neither pytorch_model.bin nor pytorch_model.bin.index.json")
    if not os.path.isfile(os.path.join(src, "config.json")):
        sys.exit(f"{src}: config.json is missing (aidomm needs it beside the weights)")
    tensors = tensors_only(sd, args.strip_prefix, src)
    os.makedirs(dst, exist_ok=True)
    out = os.path.join(dst, "model.safetensors")
    if os.path.exists(out) and not args.force:
        sys.exit(f"{out} exists (use --force to replace it)")
    write_atomic(tensors, out, {"format": "pt", "converted_from": os.path.abspath(src)})
    for name in os.listdir(src):
        # config and tokenizer files travel with the weights; pickles stay behind
        if name.endswith((".json", ".txt", ".model")) and not name.startswith("pytorch_model"):
            shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
    return out, len(tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("src", help="pickle checkpoint (.ckpt/.bin/.pt/.pth) or HF folder")
    ap.add_argument("dst", help="output .safetensors file (or folder, for an HF folder)")
    ap.add_argument("--strip-prefix", default="",
                    help="drop this prefix from every key (e.g. 'model.' for wrapped modules)")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="torch.load with weights_only=False (runs the pickle's code)")
    ap.add_argument("--force", action="store_true", help="replace an existing output")
    args = ap.parse_args()
    if os.path.isdir(args.src):
        out, n = convert_folder(args.src, args.dst, args)
    else:
        if os.path.exists(args.dst) and not args.force:
            sys.exit(f"{args.dst} exists (use --force to replace it)")
        tensors = tensors_only(load_pickle(args.src, args.trust_pickle), args.strip_prefix,
                               args.src)
        write_atomic(tensors, args.dst,
                     {"format": "pt", "converted_from": os.path.abspath(args.src)})
        out, n = args.dst, len(tensors)
    print(f"wrote {n} tensors to {out}")


if __name__ == "__main__":
    main()
