"""Prediction golden for issue 4: the peer's own MMSequenceRegression, built from
tests/configs/predict/tiny3_concat.yaml with pretrained weights read from Hugging Face-layout
folders written by the peers' own save_pretrained, predicting a small GenBio-format TSV set.

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/predict_peer.py

Steps (everything below is the peer's code unless said otherwise):
 1. Data: tests/golden/predict/data/{train_0,train_1,validation,test}.tsv in the format of
    genbio-ai/transcript_isoform_expression_prediction (modelgenerator.md §6): header
    transcript_id gene_id labels_0..labels_29 chromosome tss tes strand rna_seq protein_seq
    dna_seq, tab-separated, LF. Generated here from a fixed seed: DNA windows of exactly 256 bp
    (the config's Enformer max_length and dna_window), soft-masked, with N runs; cDNA-alphabet
    RNA (ACGT, a few N) of varied lengths, several longer than the RNA max_length (truncated by
    the tokenizer); proteins, empty for non-coding rows, several longer than the ESM max_length;
    labels log2(1e-4 + TPM) rounded to 12 significant digits (see label()), many at the floor
    log2(1e-4) = -13.2877123795.
 2. Base weights: each backbone's inner Hugging Face model at the config's sizes, built from the
    hub class's config (EnformerConfig() defaults / tools/golden/rnabert.py FULL[class] /
    tools/golden/esm2.py esm_config(size)) with the YAML's config_overwrites applied, every
    parameter random (and Enformer's BatchNorm running statistics), f32, written with its own
    save_pretrained(safe_serialization=True) to
      tests/golden/predict/models/<hub id>/   config.json, model.safetensors
    where <hub id> is the backbone class's model_path (EleutherAI/enformer-official-rough,
    genbio-ai/AIDO.RNA-1.6B-CDS, facebook/esm2_t30_150M_UR50D). The ESM folder also gets the
    tokenizer files (vocab.txt, tokenizer_config.json, special_tokens_map.json) that a hub folder
    holds, because the peer's ESM.setup reads its tokenizer from there. The folders hold the base
    weights only (no LoRA tensors), as a hub folder does.
 3. The task: modelgenerator.tasks.MMSequenceRegression with the YAML's model.init_args (the
    backbones' class_path + init_args as jsonargparse would pass them; each backbone's
    model_path pointed at its folder above, as aidomm's $AIDOMM_MODELS/<hub id> lookup does),
    then configure_model(): the peer's Enformer/GenBioBERT/ESM setup() load the folders with
    from_pretrained and apply config_overwrites, get_peft_model wraps RNA and ESM, the adapter is
    built. Every loaded tensor is checked equal to the one written. The LoRA (lora_A, lora_B;
    PEFT leaves lora_B zero) and the fusion/head parameters are then set random and written in
    ModelGenerator state_dict keys to
      tests/golden/predict/rest.safetensors   f32; every state_dict entry not in a folder
    (the C test loads the folders, then this file with strict_loading false).
 4. Predictions: the peer's IsoformExpression data module (HF datasets csv reader with
    keep_default_na=False; z-scored labels with the mean and population std of train +
    validation) with the YAML's data.init_args (less aidomm's dna_window, a no-op at 256 bp);
    the task in eval mode runs predict_step (transform: the peers' tokenizers, RNA/ESM truncated
    to max_length and padded to each batch's longest; forward) over test_dataloader() (= the
    predict loader: the test split, unshuffled, the config's batch_size) and val_dataloader().
      tests/golden/predict/peer_predict.safetensors
        mean f64[30], std f64[30]   train+validation label statistics (np.mean, np.std ddof 0)
                                    over the peer's Fortran-ordered label array (label_stats():
                                    a C reduction of the same doubles differs by ~1e-15, so
                                    compare mean/std/labels with a tolerance, not bitwise)
        test_pred f32[Ntest, 30]    eval-mode predictions in test.tsv order (z-scored space)
        test_labels f64[Ntest, 30]  z-scored test labels as the data module holds them
        val_pred f32[Nval, 30], val_labels f64[Nval, 30]   the same for validation.tsv
        metadata: versions, generator, config, batch_size, test_ids / val_ids (JSON lists of
        transcript ids in file order), max_batching_rel_diff, hub_ids
    Batching is checked: every row predicted alone and all rows in one batch agree with the
    loader's batches to 1e-6 (max|a - b| / max|b|; f32 kernels differ by a few ulps with the
    batch shape and padding, ~4e-7 here).
 5. The peer on aidomm's checkpoint, when tests/golden/predict/aidomm_ckpt.safetensors exists
    (written by aidomm after a few training steps from the folders + rest.safetensors; an input
    here: part 1-4's clean-up keeps it). Also alone with --from-aidomm-ckpt, which regenerates
    nothing but checks that the TSVs on disk are make_data()'s. A fresh task is built as in
    part 3 (base weights from the folders), then restored as Lightning restores it with
    strict_loading: false, task.load_state_dict(ckpt, strict=False). Checked: no unexpected key;
    the missing keys are exactly those the peer's own on_save_checkpoint (save_peft_only) drops,
    the RNA/ESM base weights, plus Enformer's _trunk aliases of loaded tensors (a safetensors
    file holds a shared tensor once; the _trunk num_batches_tracked keys are not reported,
    BatchNorm fills them from the module); every checkpoint tensor is then in the task; the
    metadata's aidomm.label_zscore equals the data module's train+validation mean/std to 1e-12.
    Eval-mode predictions over the test split exactly as in part 4 (loader, batching check):
      tests/golden/predict/peer_on_aidomm_ckpt.safetensors
        test_pred f32[Ntest, 30]    in test.tsv order (z-scored space)
        metadata: versions, generator, config, batch_size, test_ids, aidomm_ckpt and
        aidomm_ckpt_sha256 (the checkpoint's sha256: a golden for another checkpoint is stale),
        aidomm_global_step, missing_keys, max_batching_rel_diff
Every file is under 1 MB; running twice gives the same content (fixed seeds, CPU, deterministic
algorithms; peer_predict's metadata keys come out in safetensors' hash order, so compare by
content). With --aidommc PATH (a built aidommc) the script also checks that the compiled config's
parameter/buffer slots are the peer task's state_dict entries, names, shapes and dtypes.
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# No hub or dataset downloads: every model and data file is local.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

sys.path.insert(0, HERE)
from fixture import versions  # noqa: E402
import enformer as gen_enformer  # noqa: E402
import esm2 as gen_esm2  # noqa: E402
import rnabert as gen_rnabert  # noqa: E402
from tokenizer_goldens import esm_tokenizer  # noqa: E402

CONFIG = "tests/configs/predict/tiny3_concat.yaml"
OUT = os.path.join(ROOT, "tests", "golden", "predict")
DATA = os.path.join(OUT, "data")
MODELS = os.path.join(OUT, "models")
CKPT = os.path.join(OUT, "aidomm_ckpt.safetensors")  # written by aidomm; input to part 5
CKPT_OUT = os.path.join(OUT, "peer_on_aidomm_ckpt.safetensors")
NOUT = 30
FLOOR = math.log2(1e-4)  # log2(1e-4 + 0): a transcript not expressed in a tissue
SEED = 20240604
MAX_FILE = 1 << 20
BATCH_TOL = 1e-6

# ---- 1. data ----------------------------------------------------------------------------------
HEADER = (["transcript_id", "gene_id"] + [f"labels_{i}" for i in range(NOUT)]
          + ["chromosome", "tss", "tes", "strand", "rna_seq", "protein_seq", "dna_seq"])
AMINO = "ACDEFGHIKLMNPQRSTVWY"
# file: (rows, chromosomes); train_i.tsv hold chromosomes as the dataset's per-chromosome files
SPLITS = [("train_0.tsv", 6, ["chr1"]), ("train_1.tsv", 5, ["chr2"]),
          ("validation.tsv", 5, ["chr20"]), ("test.tsv", 7, ["chr21", "chr22"])]
# Per split, per row: (RNA length, protein length or 0 for non-coding, expression class).
# RNA content beyond max_length - 2 = 30 nt is truncated by the tokenizer; proteins beyond 30 aa
# likewise. Test rows are laid out so that the config's batch_size 3 gives batches of 3, 3, 1,
# the last a lone non-coding transcript (an ESM batch of only <cls> <eos>).
ROWS = {
    "train_0.tsv": [(1480, 212, "high"), (22, 0, "off"), (31, 30, "mid"), (64, 31, "low"),
                    (300, 0, "low"), (9, 4, "mid")],
    "train_1.tsv": [(30, 29, "mid"), (812, 640, "high"), (45, 0, "low"), (17, 12, "off"),
                    (120, 95, "mid")],
    "validation.tsv": [(33, 0, "low"), (27, 3, "high"), (640, 180, "mid"), (12, 0, "off"),
                       (95, 31, "mid")],
    "test.tsv": [(256, 77, "mid"), (8, 0, "low"), (30, 30, "high"), (1024, 410, "mid"),
                 (14, 1, "off"), (61, 33, "low"), (40, 0, "mid")],
}


def dna_window(rng):
    """256 bp, soft-masked (lowercase repeat runs), with N runs and a few lone Ns."""
    s = [rng.choice("ACGT") for _ in range(256)]
    for _ in range(rng.randint(1, 3)):  # repeat-masked runs
        a = rng.randrange(0, 240)
        for i in range(a, min(256, a + rng.randint(8, 60))):
            s[i] = s[i].lower()
    if rng.random() < 0.5:  # an assembly gap at one end
        n = rng.randint(5, 40)
        rng_side = rng.random() < 0.5
        for i in (range(n) if rng_side else range(256 - n, 256)):
            s[i] = "N"
    for _ in range(rng.randint(0, 3)):
        s[rng.randrange(256)] = "N" if rng.random() < 0.7 else "n"
    return "".join(s)


def rna_seq(rng, n):
    """cDNA alphabet (the dataset's RNA column uses T), upper case, an occasional N."""
    s = "".join(rng.choice("ACGT") for _ in range(n))
    if n > 20 and rng.random() < 0.3:
        i = rng.randrange(n)
        s = s[:i] + "N" + s[i + 1:]
    return s


def protein_seq(rng, n):
    if n == 0:
        return ""
    s = "M" + "".join(rng.choice(AMINO) for _ in range(n - 1))
    if n > 40 and rng.random() < 0.5:  # an unknown residue, in the ESM vocabulary as X
        i = rng.randrange(1, n)
        s = s[:i] + "X" + s[i + 1:]
    return s


def label(x):
    """12 significant digits: pandas' default float parser (which the peer's datasets csv reader
    uses) is not correctly rounded beyond about 13 (it misreads 17-digit reprs by an ulp), and
    the fixture wants the peer's doubles to equal a correct strtod's."""
    return float(f"{x:.12g}")


def expression(rng, cls):
    """30 labels log2(1e-4 + TPM); TPM 0 (the floor) with a class-dependent probability."""
    if cls == "off":
        return [label(FLOOR)] * NOUT
    p0, mu = {"low": (0.6, -1.0), "mid": (0.25, 1.5), "high": (0.05, 4.0)}[cls]
    out = []
    for _ in range(NOUT):
        if rng.random() < p0:
            out.append(label(FLOOR))
        else:
            tpm = math.exp(rng.gauss(mu, 1.5))
            out.append(label(math.log2(1e-4 + tpm)))
    return out


def make_data(write=True):
    rng = random.Random(SEED)
    splits = {}
    tid = 100000
    for fname, n, chroms in SPLITS:
        rows = []
        for i, (lr, lp, cls) in enumerate(ROWS[fname]):
            assert len(ROWS[fname]) == n
            tid += rng.randint(7, 900)
            chrom = chroms[i % len(chroms)]
            strand = rng.choice("+-")
            tss = rng.randint(10_000, 200_000_000)
            span = rng.randint(500, 90_000)
            tes = tss + span if strand == "+" else tss - span
            rows.append({
                "transcript_id": f"ENST00000{tid}.{rng.randint(1, 9)}",
                "gene_id": f"ENSG00000{tid + rng.randint(1, 5000)}.{rng.randint(1, 19)}",
                "labels": expression(rng, cls), "chromosome": chrom, "tss": str(tss),
                "tes": str(tes), "strand": strand, "rna_seq": rna_seq(rng, lr),
                "protein_seq": protein_seq(rng, lp), "dna_seq": dna_window(rng)})
        splits[fname] = rows
    # every label column must vary over train + validation (else its std is 0)
    fit = [r["labels"] for f in ("train_0.tsv", "train_1.tsv", "validation.tsv")
           for r in splits[f]]
    arr = np.array(fit)
    assert (arr.std(axis=0) > 0).all(), "a constant label column"
    if write:
        os.makedirs(DATA, exist_ok=True)
    for fname, rows in splits.items():
        lines = ["\t".join(HEADER)]
        for r in rows:
            fields = ([r["transcript_id"], r["gene_id"]] + [repr(float(v)) for v in r["labels"]]
                      + [r[k] for k in ("chromosome", "tss", "tes", "strand", "rna_seq",
                                        "protein_seq", "dna_seq")])
            assert all("\t" not in f and "\n" not in f for f in fields)
            lines.append("\t".join(fields))
        text = "\n".join(lines) + "\n"
        path = os.path.join(DATA, fname)
        if write:
            with open(path, "w", newline="\n") as f:
                f.write(text)
        else:  # --from-aidomm-ckpt alone: the TSVs on disk must be the ones generated here
            with open(path, newline="") as f:
                assert f.read() == text, f"{path} is not what make_data() writes; rerun part 1"
    return splits


# ---- 2. base weights in HF folders ------------------------------------------------------------
def load_config():
    with open(os.path.join(ROOT, CONFIG)) as f:
        return yaml.safe_load(f)


def class_of(spec):
    import modelgenerator.backbones as mb
    return getattr(mb, spec["class_path"].rsplit(".", 1)[1])


def randomize_hf(model, gen, one_suffixes):
    """Every parameter random, norm weights near 1 (as tasks.py / hf_folders.py)."""
    with torch.no_grad():
        for k, p in model.named_parameters():
            base = 1.0 if any(s in k for s in one_suffixes) else 0.0
            p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64) + base)


def build_enformer(over, gen):
    from modelgenerator.huggingface_models.enformer_pytorch import Enformer, EnformerConfig
    cfg = EnformerConfig()  # the hub config.json holds the defaults (modelgenerator.md §5.2)
    for k, v in over.items():
        setattr(cfg, k, v)
    model = Enformer(cfg).to(torch.float32)
    gen_enformer.randomize(model, gen)  # trunk weights and BatchNorm running statistics
    with torch.no_grad():  # the unused output heads too, so no value depends on torch's RNG
        for name, p in model.named_parameters():
            if name.startswith("_heads."):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return model


def build_rnabert(cls_name, over, gen):
    from modelgenerator.huggingface_models.rnabert import RNABertConfig, RNABertModel
    cfg = RNABertConfig(**gen_rnabert.FULL[cls_name])  # the hub config of the class
    for k, v in over.items():
        setattr(cfg, k, v)
    model = RNABertModel(cfg).to(torch.float32)
    randomize_hf(model, gen, ("ln.weight",))
    return model


def build_esm(cls_name, over, gen):
    from transformers import EsmModel
    cfg = gen_esm2.esm_config(cls_name.split("_")[1])  # esm2_150m -> "150m"
    for k, v in over.items():
        setattr(cfg, k, v)
    model = EsmModel(cfg, add_pooling_layer=True).to(torch.float32)  # AutoModel's EsmModel
    randomize_hf(model, gen, ("LayerNorm.weight", "emb_layer_norm_after.weight"))
    return model


def write_folder(hub_id, model, tokenizer=None):
    folder = os.path.join(MODELS, hub_id)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


def make_folders(cfg):
    init = cfg["model"]["init_args"]
    gen = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)  # module constructors draw their default init from it
    folders = {}
    for key in ("backbone", "backbone1", "backbone2"):
        spec = init[key]
        cls = class_of(spec)
        name = spec["class_path"].rsplit(".", 1)[1]
        over = dict(spec["init_args"].get("config_overwrites") or {})
        if name == "enformer":
            model, tok = build_enformer(over, gen), None
        elif name.startswith("aido_rna"):
            model, tok = build_rnabert(name, over, gen), None
        elif name.startswith("esm2"):
            model, tok = build_esm(name, over, gen), esm_tokenizer()
        else:
            raise ValueError(name)
        folders[key] = (cls.model_path, write_folder(cls.model_path, model, tok))
    return folders


# ---- 3. the peer's task -----------------------------------------------------------------------
def make_adapter_fn(spec):
    """What jsonargparse gives MMSequenceRegression for the adapter's class_path/init_args: a
    callable (num_outputs, E0, E1, E2) whose nested fusion/adapter callables are partials."""
    from modelgenerator import adapters as A
    from modelgenerator.adapters import fusion as F

    def ctor(sp, mod):
        return getattr(mod, sp["class_path"].rsplit(".", 1)[1]), dict(sp.get("init_args") or {})
    cls, kw = ctor(spec, A)
    fspec, aspec = kw.pop("fusion"), kw.pop("adapter")
    fcls, fkw = ctor(fspec, F)
    acls, akw = ctor(aspec, A)
    return lambda n, e0, e1, e2: cls(n, e0, e1, e2, fusion=lambda a, b, c: fcls(a, b, c, **fkw),
                                     adapter=lambda i, o: acls(i, o, **akw), **kw)


def make_task(cfg, folders):
    from modelgenerator.tasks import MMSequenceRegression
    init = dict(cfg["model"]["init_args"])
    kw = {}
    for key in ("backbone", "backbone1", "backbone2"):
        spec = init.pop(key)
        cls = class_of(spec)
        bargs = dict(spec.get("init_args") or {})
        path = folders[key][1]

        def make(lat, dc, cls=cls, bargs=bargs, path=path):
            bb = cls(lat, dc, **bargs)
            bb.model_path = path  # the hub id resolved to its local folder
            return bb
        kw[key] = make
    kw["adapter"] = make_adapter_fn(init.pop("adapter"))
    task = MMSequenceRegression(**kw, **init)
    task.configure_model()
    return task


def folder_slot(prefix, key, peft):
    """The task state_dict key a folder key K lands in (runtime/weights.h's rule)."""
    enc = f"{prefix}.encoder." + ("base_model.model." if peft else "")
    return enc + key


def check_loaded(task, cfg, folders):
    """Every folder tensor is in the task, equal; returns {task key} covered by the folders."""
    sd = task.state_dict()
    covered_ptrs, covered = set(), set()
    init = cfg["model"]["init_args"]
    for key, (_, folder) in folders.items():
        peft = bool(init[key]["init_args"].get("use_peft"))
        ft = load_file(os.path.join(folder, "model.safetensors"))
        for k, v in ft.items():
            slot = folder_slot(key, k, peft)
            if slot not in sd:  # a LoRA-wrapped linear: X.weight -> X.base_layer.weight
                head, _, leaf = slot.rpartition(".")
                slot = f"{head}.base_layer.{leaf}"
            assert slot in sd, (k, slot)
            assert sd[slot].dtype == v.dtype and torch.equal(sd[slot], v), slot
            covered.add(slot)
            covered_ptrs.add(sd[slot].data_ptr())
    for k, v in sd.items():  # Enformer's _trunk aliases share the folder's tensors
        if k not in covered and v.data_ptr() in covered_ptrs and v.numel() > 0:
            covered.add(k)
    return covered


def randomize_rest(task, covered, gen):
    """LoRA A/B and the fusion/head parameters random; the rest is the folders'."""
    rest = {}
    with torch.no_grad():
        for k, p in task.named_parameters():
            if k in covered:
                continue
            scale = 0.1 if "lora_" in k else 0.3
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    for k, v in task.state_dict().items():
        if k not in covered:
            assert ".lora_A." in k or ".lora_B." in k or k.startswith("adapter."), k
            assert v.dtype == torch.float32, k
            rest[k] = v.detach().clone().contiguous()
    return rest


# ---- 4. predictions ---------------------------------------------------------------------------
def make_data_module(cfg, cache):
    """The peer's data module over DATA. datasets.load_dataset caches its Arrow conversion; it
    goes to `cache` (a temporary directory) instead of the user's ~/.cache."""
    import datasets.config
    from pathlib import Path
    from modelgenerator.data import IsoformExpression
    datasets.config.HF_DATASETS_CACHE = Path(cache)
    args = dict(cfg["data"]["init_args"])
    args.pop("dna_window")  # aidomm's centre crop: a no-op on 256-bp windows, not a peer arg
    args["path"] = DATA
    dm = IsoformExpression(**args)
    dm.setup()
    return dm


def predict(task, loader):
    preds = []
    with torch.no_grad():
        for i, batch in enumerate(loader):
            out = task.predict_step(batch, i)
            preds.append(out["predictions"].detach())
    return torch.cat(preds)


def rebatch(ds, bs):
    from torch.utils.data import DataLoader
    return DataLoader(ds, batch_size=bs, shuffle=False)


def label_stats(dm, splits):
    """The data module's label statistics, recomputed with its own arithmetic
    (RegressionDataModule.setup). Peer quirk: select_label_columns returns
    to_pandas().to_numpy(), a Fortran-ordered array, so np.mean/np.std reduce each column
    contiguously (numpy's pairwise summation) rather than row by row; the results differ from a
    C-ordered reduction of the same values in the last bits (~1e-15)."""
    train, valid, test = dm.load_and_split_dataset(**dm.extra_reader_kwargs)
    train, valid, test = (dm.select_label_columns(d) for d in (train, valid, test))
    for got, files in ((train, ("train_0.tsv", "train_1.tsv")), (valid, ("validation.tsv",)),
                       (test, ("test.tsv",))):  # parsed to exactly the values written
        want = np.array([r["labels"] for f in files for r in splits[f]], dtype=np.float64)
        assert np.array_equal(got, want), files
    fit = np.concatenate([train, valid])
    mean, std = np.mean(fit, axis=0), np.std(fit, axis=0)
    return mean, std, (test - mean) / std, (valid - mean) / std


def check_aidommc(aidommc, task):
    """Optional (--aidommc PATH): the compiled config's parameter and buffer slots (the IR that
    `aidommc compile --print-after=all` prints last) are the peer task's state_dict entries,
    Enformer's _trunk aliases counted once, with the same shapes and dtypes."""
    with tempfile.TemporaryDirectory(prefix="predgold_plan_") as d:
        r = subprocess.run([aidommc, "compile", CONFIG, "-o", os.path.join(d, "p.plan"),
                            "--print-after=all"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    last = r.stdout[r.stdout.rindex("aidomm-ir 1"):]
    slots = {}
    for m in re.finditer(r'^slot "([^"]*)": (\w+)\[([^\]]*)\] \{([^}]*)\}', last, re.M):
        flags = [f.strip() for f in m.group(4).split(",")]
        if "param" in flags or "buffer" in flags:
            shape = tuple(int(x) for x in m.group(3).split(",") if x)
            slots[m.group(1)] = (m.group(2), shape)
    dt = {torch.float32: "f32", torch.int64: "i64"}
    sd = task.state_dict(keep_vars=True)
    peer = {k: (dt[v.dtype], tuple(v.shape)) for k, v in sd.items() if ".encoder._trunk." not in k}
    top = {id(v) for k, v in sd.items() if k in peer}
    assert all(id(v) in top for k, v in sd.items() if k not in peer), "a _trunk key not aliased"
    missing = sorted(set(peer) - set(slots))
    extra = sorted(set(slots) - set(peer))
    wrong = sorted(k for k in set(peer) & set(slots) if peer[k] != slots[k])
    assert not (missing or extra or wrong), (missing[:5], extra[:5],
                                              [(k, peer[k], slots[k]) for k in wrong[:5]])
    print(f"aidommc slots match the peer's state_dict: {len(slots)} entries")


def predictions(cfg, task, splits, folders, cache):
    dm = make_data_module(cfg, cache)
    bs = cfg["data"]["init_args"]["batch_size"]
    assert dm.batch_size == bs
    mean, std, test_z, val_z = label_stats(dm, splits)
    # the data module parsed the TSVs to the same doubles and z-scored them the same way
    dm_test = np.stack([dm.test_dataset[i]["labels"] for i in range(len(dm.test_dataset))])
    dm_val = np.stack([dm.val_dataset[i]["labels"] for i in range(len(dm.val_dataset))])
    assert np.array_equal(dm_test, test_z) and np.array_equal(dm_val, val_z)
    test_ids = [r["transcript_id"] for r in splits["test.tsv"]]
    val_ids = [r["transcript_id"] for r in splits["validation.tsv"]]
    for ds, rows in ((dm.test_dataset, splits["test.tsv"]), (dm.val_dataset,
                                                             splits["validation.tsv"])):
        for i, r in enumerate(rows):  # file order, strings as written (empty protein kept)
            item = ds[i]
            assert item["rna_seq_sequences"] == r["rna_seq"]
            assert item["dna_seq_sequences"] == r["dna_seq"]
            assert item["protein_seq_sequences"] == r["protein_seq"]

    test_pred = predict(task, dm.predict_dataloader())
    val_pred = predict(task, dm.val_dataloader())
    assert test_pred.dtype == torch.float32 and test_pred.shape == (len(test_ids), NOUT)
    assert torch.equal(test_pred, predict(task, dm.test_dataloader()))
    # Batching changes the padded lengths (RNA, protein) and the kernels' blocking; in f32 that
    # moves the backbone outputs by a few ulps. Measured as max|a - b| / max|b|, the harness's
    # relative error.
    diff = 0.0
    for ds, ref in ((dm.test_dataset, test_pred), (dm.val_dataset, val_pred)):
        for other in (1, len(ds)):
            d = (predict(task, rebatch(ds, other)) - ref).abs().max().item()
            diff = max(diff, d / ref.abs().max().item())
    assert diff <= BATCH_TOL, diff
    tensors = {
        "mean": torch.from_numpy(mean).contiguous(),
        "std": torch.from_numpy(std).contiguous(),
        "test_pred": test_pred.contiguous(),
        "test_labels": torch.from_numpy(test_z).contiguous(),
        "val_pred": val_pred.contiguous(),
        "val_labels": torch.from_numpy(val_z).contiguous(),
    }
    meta = {"generator": "tools/golden/predict_peer.py", "config": CONFIG,
            "batch_size": str(bs), "test_ids": json.dumps(test_ids),
            "val_ids": json.dumps(val_ids), "max_batching_rel_diff": f"{diff:.3g}",
            "hub_ids": json.dumps({k: v[0] for k, v in folders.items()}),
            **{k: str(v) for k, v in versions().items()}}
    save_file(tensors, os.path.join(OUT, "peer_predict.safetensors"), metadata=meta)
    print(f"test_pred {tuple(test_pred.shape)} max|.| {test_pred.abs().max().item():.4g} "
          f"mean|.| {test_pred.abs().mean().item():.4g}; val_pred max|.| "
          f"{val_pred.abs().max().item():.4g}; batching rel diff {diff:.3g}")


# ---- 5. the peer on aidomm's checkpoint -------------------------------------------------------
def existing_folders(cfg):
    """The folders part 2 wrote, as make_folders returns them (--from-aidomm-ckpt alone)."""
    folders = {}
    for key in ("backbone", "backbone1", "backbone2"):
        hub = class_of(cfg["model"]["init_args"][key]).model_path
        folder = os.path.join(MODELS, hub)
        assert os.path.isfile(os.path.join(folder, "model.safetensors")), \
            f"{folder}: no model.safetensors; run the script without --from-aidomm-ckpt first"
        folders[key] = (hub, folder)
    return folders


def peer_checkpoint_keys(task):
    """What the peer's own checkpoint of this task would hold: Lightning's dump_checkpoint takes
    the task's state_dict(), then MMSequenceRegression.on_save_checkpoint lets each backbone drop
    keys (save_peft_only: the LoRA backbones keep only get_peft_model_state_dict's entries under
    <prefix>.encoder.; Enformer, not frozen, keeps everything). Returns (kept, dropped)."""
    full = task.state_dict()
    ckpt = {"state_dict": dict(full)}
    task.on_save_checkpoint(ckpt)
    kept = set(ckpt["state_dict"])
    return kept, set(full) - kept


def aliases_of(task, names):
    """{state_dict key not in names: the key in names whose tensor it is}. Enformer's _trunk
    Sequential re-registers stem/conv_tower/transformer/..., so its keys name the same tensors; a
    safetensors file stores a shared tensor once (under the non-_trunk name)."""
    sd = task.state_dict(keep_vars=True)
    ident = lambda v: (v.data_ptr(), tuple(v.shape), v.stride(), v.dtype)  # noqa: E731
    canon = {ident(sd[k]): k for k in names if k in sd and sd[k].numel() > 0}
    out = {}
    for k, v in sd.items():
        if k not in names and v.numel() > 0 and ident(v) in canon:
            out[k] = canon[ident(v)]
    return out


def sha256_file(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def on_aidomm_ckpt(cfg, splits, folders, cache):
    """The peer restoring aidomm's checkpoint: the task built as in part 3 (base weights from the
    folders), then model.load_state_dict(ckpt, strict=False) as Lightning does with
    strict_loading: false; eval-mode predictions over the test split as in part 4."""
    from safetensors import safe_open
    with safe_open(CKPT, "pt") as f:
        ckpt_meta = f.metadata() or {}
    sd = load_file(CKPT)
    digest = sha256_file(CKPT)

    torch.manual_seed(SEED + 1)  # LoRA / adapter default init (all overwritten by the checkpoint)
    task = make_task(cfg, folders)
    check_loaded(task, cfg, folders)
    rest_path = os.path.join(OUT, "rest.safetensors")
    rest = load_file(rest_path) if os.path.isfile(rest_path) else {}
    before = {k: v.detach().clone() for k, v in task.state_dict().items()}
    kept, dropped = peer_checkpoint_keys(task)
    assert dropped and all(k.startswith(("backbone1.encoder.", "backbone2.encoder."))
                           and ".lora_" not in k for k in dropped), "save_peft_only drops more"

    res = task.load_state_dict(sd, strict=False)
    unexpected, missing = list(res.unexpected_keys), set(res.missing_keys)
    assert not unexpected, f"{len(unexpected)} unexpected keys: {unexpected[:5]}"
    # A key of the peer's own checkpoint that aidomm's lacks must be an alias of one it holds.
    alias = aliases_of(task, set(sd))
    absent = kept - set(sd)
    assert absent <= set(alias), f"checkpoint lacks {sorted(absent - set(alias))[:5]}"
    assert all(k.startswith("backbone.encoder._trunk.") for k in absent), sorted(absent)[:5]
    # torch's BatchNorm._load_from_state_dict (state_dict without _metadata, so "version 1")
    # fills an absent <prefix>num_batches_tracked with the module's own, i.e. the value just
    # loaded under the non-_trunk name; those aliases are not reported missing.
    want = dropped | {k for k in absent if not k.endswith(".num_batches_tracked")}
    assert missing == want, (sorted(missing - want)[:5], sorted(want - missing)[:5])
    print(f"aidomm checkpoint: {len(sd)} tensors, global_step "
          f"{ckpt_meta.get('aidomm.global_step')}; load_state_dict(strict=False): 0 unexpected, "
          f"{len(missing)} missing = {len(dropped)} RNA/ESM base weights save_peft_only drops "
          f"+ {len(missing) - len(dropped)} Enformer _trunk aliases of loaded tensors "
          f"({len(absent)} _trunk keys absent, {len(absent) - len(missing) + len(dropped)} "
          f"num_batches_tracked filled by BatchNorm)")

    after = task.state_dict()
    for k, v in sd.items():
        assert after[k].dtype == v.dtype and torch.equal(after[k], v), k
    for k, a in alias.items():
        assert torch.equal(after[k], sd[a]), k
    for k in dropped:  # the base weights stay the folders'
        assert torch.equal(after[k], before[k]), k
    params = {k for k, _ in task.named_parameters()}
    changed, maxd = 0, {True: 0.0, False: 0.0}  # parameters / buffers
    for k, v in sd.items():
        init = rest.get(k, before[k])
        if not torch.equal(v, init):
            changed += 1
            d = (v.double() - init.double()).abs().max().item()
            maxd[k in params] = max(maxd[k in params], d)
    print(f"  {changed} of {len(sd)} checkpoint tensors differ from the folders + "
          f"rest.safetensors{'' if rest else ' (no rest.safetensors: LoRA vs default init)'}: "
          f"max|delta| parameters {maxd[True]:.4g}, buffers {maxd[False]:.4g}")

    dm = make_data_module(cfg, cache)
    bs = cfg["data"]["init_args"]["batch_size"]
    mean, std, test_z, _ = label_stats(dm, splits)
    z = json.loads(ckpt_meta["aidomm.label_zscore"])
    zm, zs = np.array(z["mean"], dtype=np.float64), np.array(z["std"], dtype=np.float64)
    assert zm.shape == (NOUT,) and zs.shape == (NOUT,)
    dmean, dstd = np.abs(zm - mean).max(), np.abs(zs - std).max()
    assert dmean <= 1e-12 and dstd <= 1e-12, (dmean, dstd)
    print(f"  label_zscore vs the peer's train+validation stats: max|d mean| {dmean:.3g}, "
          f"max|d std| {dstd:.3g}")
    dm_test = np.stack([dm.test_dataset[i]["labels"] for i in range(len(dm.test_dataset))])
    assert np.array_equal(dm_test, test_z)
    test_ids = [r["transcript_id"] for r in splits["test.tsv"]]

    task.eval()
    test_pred = predict(task, dm.predict_dataloader())
    assert test_pred.dtype == torch.float32 and test_pred.shape == (len(test_ids), NOUT)
    assert torch.isfinite(test_pred).all()
    assert torch.equal(test_pred, predict(task, dm.test_dataloader()))
    diff = 0.0
    for other in (1, len(dm.test_dataset)):
        d = (predict(task, rebatch(dm.test_dataset, other)) - test_pred).abs().max().item()
        diff = max(diff, d / test_pred.abs().max().item())
    assert diff <= BATCH_TOL, diff
    meta = {"generator": "tools/golden/predict_peer.py --from-aidomm-ckpt", "config": CONFIG,
            "batch_size": str(bs), "test_ids": json.dumps(test_ids),
            "aidomm_ckpt": os.path.relpath(CKPT, ROOT), "aidomm_ckpt_sha256": digest,
            "aidomm_global_step": str(ckpt_meta.get("aidomm.global_step", "")),
            "missing_keys": str(len(missing)), "max_batching_rel_diff": f"{diff:.3g}",
            **{k: str(v) for k, v in versions().items()}}
    save_file({"test_pred": test_pred.contiguous()}, CKPT_OUT, metadata=meta)
    print(f"  test_pred {tuple(test_pred.shape)} max|.| {test_pred.abs().max().item():.4g} "
          f"mean|.| {test_pred.abs().mean().item():.4g}; batching rel diff {diff:.3g}; "
          f"ckpt sha256 {digest[:16]}...")


def list_outputs():
    for dirpath, _, files in sorted(os.walk(OUT)):
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            size = os.path.getsize(p)
            assert size < MAX_FILE, (p, size)
            print(f"{os.path.relpath(p, ROOT)} {size}")


def clean_out():
    """Empty OUT for a fresh part 1-4, keeping aidomm's checkpoint (an input written by aidomm,
    not by this script)."""
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        p = os.path.join(OUT, name)
        if p == CKPT:
            continue
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.remove(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aidommc", help="also check the compiled config's slots against the "
                    "peer's state_dict (path of a built aidommc)")
    ap.add_argument("--from-aidomm-ckpt", action="store_true",
                    help="only part 5: the peer's predictions with aidomm_ckpt.safetensors "
                    "loaded, using the data and folders already in tests/golden/predict/")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)  # trainer.precision 32
    cfg = load_config()
    assert cfg["trainer"]["precision"] == 32
    if args.from_aidomm_ckpt:
        assert os.path.isfile(CKPT), f"{CKPT}: no aidomm checkpoint"
        splits = make_data(write=False)
        folders = existing_folders(cfg)
        cache = tempfile.mkdtemp(prefix="predgold_datasets_")
        try:
            on_aidomm_ckpt(cfg, splits, folders, cache)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        list_outputs()
        return
    clean_out()
    splits = make_data()
    folders = make_folders(cfg)

    torch.manual_seed(SEED + 1)  # LoRA / adapter default init (overwritten below)
    task = make_task(cfg, folders)
    covered = check_loaded(task, cfg, folders)
    rest = randomize_rest(task, covered, torch.Generator().manual_seed(SEED + 2))
    save_file(rest, os.path.join(OUT, "rest.safetensors"),
              metadata={"generator": "tools/golden/predict_peer.py", "config": CONFIG})
    task.eval()
    if args.aidommc:
        check_aidommc(args.aidommc, task)

    cache = tempfile.mkdtemp(prefix="predgold_datasets_")
    try:
        predictions(cfg, task, splits, folders, cache)
        if os.path.isfile(CKPT):
            on_aidomm_ckpt(cfg, splits, folders, cache)
        else:
            print(f"{os.path.relpath(CKPT, ROOT)} absent: part 5 skipped")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    list_outputs()


if __name__ == "__main__":
    main()
