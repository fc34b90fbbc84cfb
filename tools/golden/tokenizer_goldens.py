"""Tokenizer goldens: ids and attention masks from the peers' own tokenizers.

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/tokenizer_goldens.py
writes tests/golden/tokenizers/{dna,rna,protein}.txt, read by tests/test_tokenizer_goldens.c
(structure and invariants now) and by the runtime tokenizers' tests (exact match).

(Named tokenizer_goldens.py, not tokenizers.py: a tokenizers.py in tools/golden would shadow
the `tokenizers` package for every generator here, and transformers fails to import.)

The peers:
  dna      modelgenerator.huggingface_models.enformer_pytorch.str_to_one_hot, which the
           Enformer backbone uses as its tokenizer (batch strings must have equal lengths;
           no padding, no truncation: the data module gives fixed-length windows)
  rna      modelgenerator.huggingface_models.rnabert.RNABertTokenizer(vocab.txt shipped with
           modelgenerator, version="v2"), called as GenBioBERT.tokenize does:
           tokenizer(seqs, truncation=max_length is not None, padding=True,
                     max_length=max_length, add_special_tokens=True)
  protein  transformers.EsmTokenizer (4.38.0) over the 33-token ESM2 vocabulary, called as
           ESM.tokenize does: tokenizer(seqs, truncation=max_length is not None, padding=True,
           max_length=max_length). The hub (facebook/esm2_*/vocab.txt) is unreachable here, so
           the vocab file is written from the known list below (modelgenerator.md §5.4, the
           fair-esm alphabet); the hub file holds the same 33 lines.
The peers' batches pad to the longest sample (padding=True), right side.

File format (text, one record per line, '#' lines are comments):
  tokenizer <name> vocab <V> pad <id> [cls <id> eos|sep <id> unk <id> mask <id>]
  batch <name> n <N> max_length <M|none> len <L>
  seq <hex of the UTF-8 bytes, or '-' for the empty string>
  ids <L integers>          (rna, protein)
  mask <L integers 0|1>     (rna, protein)
  onehot <4*L values>       (dna: row-major [L, 4], values 0, 1 or 0.25)
Each batch's N seq lines are each followed by their ids+mask (or onehot) lines.
"""
import os
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))

ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I",
             "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O",
             ".", "-", "<null_1>", "<mask>"]


def repo_root():
    return os.path.dirname(os.path.dirname(HERE))


def esm_tokenizer():
    from transformers import EsmTokenizer
    d = tempfile.mkdtemp(prefix="esm_vocab_")
    path = os.path.join(d, "vocab.txt")
    with open(path, "w") as f:
        f.write("\n".join(ESM_VOCAB) + "\n")
    return EsmTokenizer(path)


def rna_tokenizer():
    import modelgenerator.huggingface_models.rnabert as rb
    from modelgenerator.huggingface_models.rnabert.tokenization_rnabert import RNABertTokenizer
    return RNABertTokenizer(os.path.join(os.path.dirname(rb.__file__), "vocab.txt"),
                            version="v2")


def hexs(s):
    b = s.encode("utf-8")
    return b.hex() if b else "-"


LONG_PROT = "MKTAYIAKQRQISFVKSHFSRQ" * 50  # 1100 aa: truncated at 1024 tokens
PROTEIN = [
    "", "M", "MKV", "mkv", "MkV", "ACDEFGHIKLMNPQRSTVWY", "XBZUO", "MK*V", "MKV*", "*",
    "MK.V", ".", "MK-V", "-", "MK V", " MKV", "MKV ", "M\tK\nV", "MKJV", "J", "MK1V", "123",
    "MK<mask>V", "<mask>", "MK<MASK>V", "<cls>MKV<eos>", "<pad>", "<unk>", "<null_1>",
    "MK<maskV", "MKV>", "MKVé", "ΩMKV", "NNNN", "AAAAAAAAAAAAAAAAAAAA", "GSGSGSGSG",
    "MKVLAGSERTIDPKQNFYMHWC", "LAGVSERTIDPKQNFYMHWCXBUZO.-", "MKV\u00a0LA", "mKv<mask>",
]
RNA = [
    "", "A", "ACGU", "ACGT", "acgu", "AcGu", "UUUU", "TTTT", "NNNNN", "ANNA", "ACGUN",
    "RYKMSWBDHV", "ACGR", "ACG.", ".", "ACG-U", "ACG*U", "*", "ACG U", " ACGU", "ACGU ",
    "A\tC\nG", "ACGX", "X", "ACG1", "[MASK]", "AC[MASK]GU", "[CLS]ACGU[SEP]", "[PAD]",
    "[UNK]", "[BOS]A[EOS]", "[UNUSED1]", "[mask]", "AC[MASKGU", "ACGUé", "ΩACGU",
    "ACGUACGUACGUACGU", "GGCATTAC", "ACGTA", "ACGUACGUACGUACGUACGUACGUACGU" * 40,
]
DNA = [
    "ACGT", "acgt", "AcGt", "NNNN", "nnnn", "ACGN", "....", "AC.T", "ACGU", "acgu", "RYKM",
    "SWBD", "HVRY", "ACG-", "ACG*", "AC T", "A\tCG", "ACGX", "AC1T", "ACé",
    "Ω", "TTTT", "GGGG", "CCCC", "AAAA", "N.N.", "acgn", "ACGTACGTACGTACGTACGTA",
    "ACGTNRYK.acgtnryk.", "U", "u", "T", ".", "n", "-", "*", "$", "z", "Z", "ATATATATATATATATATATATATATATATATATAT",
]


def encode(tok, seqs, max_length):
    enc = tok(seqs, truncation=max_length is not None, padding=True, max_length=max_length,
              return_special_tokens_mask=True)
    return [list(r) for r in enc["input_ids"]], [list(r) for r in enc["attention_mask"]]


def write_token_file(path, header, tok, strings, max_lengths, extra_batches):
    lines = list(header)
    batches = []
    for ml in max_lengths:
        for i, s in enumerate(strings):
            batches.append((f"single{i}_ml{ml}", [s], ml))
        batches.append((f"all_ml{ml}", strings, ml))
    batches += extra_batches
    for name, seqs, ml in batches:
        ids, mask = encode(tok, seqs, ml)
        n = len(ids[0]) if ids else 0
        lines.append(f"batch {name} n {len(seqs)} max_length {ml if ml else 'none'} len {n}")
        for s, r, m in zip(seqs, ids, mask):
            assert len(r) == n and len(m) == n
            lines.append(f"seq {hexs(s)}")
            lines.append("ids " + " ".join(map(str, r)))
            lines.append("mask " + " ".join(map(str, m)))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}: {len(batches)} batches, {os.path.getsize(path)} bytes")


def write_dna(path):
    from modelgenerator.huggingface_models.enformer_pytorch import str_to_one_hot
    lines = ["# DNA one-hot goldens from modelgenerator enformer_pytorch.str_to_one_hot "
             "(generated by tools/golden/tokenizer_goldens.py)",
             "tokenizer str_to_one_hot vocab 4 pad -1"]
    batches = [(f"single{i}", [s]) for i, s in enumerate(DNA)]
    # one equal-length batch (the peer stacks, so lengths must agree)
    batches.append(("equal4", [s for s in DNA if len(s.encode()) == 4]))
    for name, seqs in batches:
        oh = str_to_one_hot(seqs) if len(seqs) > 1 else str_to_one_hot(seqs[0]).unsqueeze(0)
        n = oh.shape[1]
        lines.append(f"batch {name} n {len(seqs)} max_length none len {n}")
        for s, row in zip(seqs, oh):
            lines.append(f"seq {hexs(s)}")
            vals = row.reshape(-1).tolist()
            lines.append("onehot " + " ".join("0.25" if v == 0.25 else str(int(v)) for v in vals))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}: {len(batches)} batches, {os.path.getsize(path)} bytes")


def main():
    import warnings
    warnings.filterwarnings("ignore")
    out = os.path.join(repo_root(), "tests", "golden", "tokenizers")
    os.makedirs(out, exist_ok=True)
    esm = esm_tokenizer()
    gen = "(generated by tools/golden/tokenizer_goldens.py; transformers " + \
          __import__("transformers").__version__ + ")"
    write_token_file(
        os.path.join(out, "protein.txt"),
        ["# protein ids from transformers.EsmTokenizer over the 33-token ESM2 vocab, called as "
         "modelgenerator ESM.tokenize " + gen,
         "# vocab written from the known list (hub unreachable): " + " ".join(ESM_VOCAB),
         "tokenizer esm vocab 33 pad 1 cls 0 eos 2 unk 3 mask 32"],
        esm, PROTEIN, [None, 12], [("long_ml1024", [LONG_PROT, "MKV", ""], 1024)])
    rna = rna_tokenizer()
    write_token_file(
        os.path.join(out, "rna.txt"),
        ["# RNA ids from modelgenerator RNABertTokenizer(vocab.txt, version='v2'), called as "
         "GenBioBERT.tokenize " + gen,
         "tokenizer rnabert vocab 16 pad 0 cls 2 sep 3 unk 4 mask 1"],
        rna, RNA[:-1], [None, 12], [("long_ml1024", [RNA[-1], "ACGU", ""], 1024)])
    write_dna(os.path.join(out, "dna.txt"))


if __name__ == "__main__":
    main()
