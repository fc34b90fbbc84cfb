"""Golden forward/backward of aidomm.testing.TinyTransformer (configs/tiny_transformer.yaml).

Run with the golden venv from the repository root:
    /root/.cache/aidomm/golden-venv/bin/python tools/golden/tiny_transformer.py
writes tests/golden/tiny_transformer.safetensors, read by tests/test_frontend.c:

  params/<slot name>   every parameter, f64, named as the frontend names its state slots
  grads/<slot name>    d loss / d parameter from torch autograd
  input_ids  i64[B, L], attention_mask f64[B, L] (row 1 and 2 padded), labels f64[B, 4]
  pred f64[B, 4], loss f64[]
at actual sizes B = 3, L = 9 (the config's bounds are 4 and 12), dropout off.
__metadata__["config"] holds the model's init_args as JSON.

The module below is the PyTorch definition the frontend's builder documents in
frontend/tiny_transformer.c; the rotary embedding is the ESM one from transformers (the
rotate-half RoPE), with inv_freq in float64 as tools/golden/ops_attention.py does for f64.
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file
from torch import nn
from transformers.models.esm.modeling_esm import RotaryEmbedding, apply_rotary_pos_emb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import repo_root, versions  # noqa: E402

CONFIG = dict(vocab_size=16, hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
              intermediate_size=48, num_outputs=4, hidden_dropout_prob=0.0, layer_norm_eps=1e-5)


class SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.d = h // self.nh
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.rotary = RotaryEmbedding(self.d)
        exps = torch.arange(0, self.d, 2, dtype=torch.int64).to(torch.float64) / self.d
        self.rotary.inv_freq = 1.0 / (10000.0 ** exps)

    def forward(self, x, mask_add):
        b, l, _ = x.shape
        def heads(t):
            return t.view(b, l, self.nh, self.d).transpose(1, 2)  # [B, nh, L, d]
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        cos, sin = self.rotary._update_cos_sin_tables(k, seq_dimension=-2)
        q, k = apply_rotary_pos_emb(q, cos, sin), apply_rotary_pos_emb(k, cos, sin)
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.d)) + mask_add
        o = torch.matmul(torch.softmax(s, dim=-1), v)
        return o.transpose(1, 2).reshape(b, l, self.nh * self.d)


class Dense(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])

    def forward(self, x):
        return self.dropout(self.dense(x))


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.self = SelfAttention(c)
        self.output = Dense(c)

    def forward(self, x, mask_add):
        return x + self.output(self.self(self.ln(x), mask_add))


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, i = c["hidden_size"], c["intermediate_size"]
        self.ln = nn.LayerNorm(h, eps=c["layer_norm_eps"])
        self.gate_proj = nn.Linear(h, i)
        self.up_proj = nn.Linear(h, i)
        self.down_proj = nn.Linear(i, h)
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])

    def forward(self, x):
        h = self.ln(x)
        return x + self.dropout(self.down_proj(nn.functional.silu(self.gate_proj(h)) * self.up_proj(h)))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = Attention(c)
        self.mlp = Mlp(c)

    def forward(self, x, mask_add):
        return self.mlp(self.attention(x, mask_add))


class Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])

    def forward(self, ids):
        return self.dropout(self.word_embeddings(ids))


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])
        self.ln = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, x, mask_add):
        for layer in self.layer:
            x = layer(x, mask_add)
        return self.ln(x)


class TinyTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)
        self.head = nn.Linear(c["hidden_size"], c["num_outputs"])

    def forward(self, ids, mask, labels):
        mask_add = (1.0 - mask)[:, None, None, :] * torch.finfo(mask.dtype).min  # [B,1,1,L]
        h = self.encoder(self.embeddings(ids), mask_add)
        m = mask.unsqueeze(-1)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        pred = self.head(pooled)
        return pred, torch.mean((pred - labels) ** 2)


def main():
    torch.manual_seed(0)
    model = TinyTransformer(CONFIG).double()
    # Larger than the init rule so every path (attention, gating, norms) matters in the output.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    model.train()
    b, l = 3, 9
    ids = torch.randint(0, CONFIG["vocab_size"], (b, l), dtype=torch.int64)
    mask = torch.ones(b, l, dtype=torch.float64)
    mask[1, 5:] = 0.0
    mask[2, 8:] = 0.0
    labels = torch.randn(b, CONFIG["num_outputs"], dtype=torch.float64)
    pred, loss = model(ids, mask, labels)
    names = [n for n, _ in model.named_parameters()]
    grads = torch.autograd.grad(loss, [p for _, p in model.named_parameters()])

    tensors = {"input_ids": ids, "attention_mask": mask, "labels": labels,
               "pred": pred.detach().contiguous(), "loss": loss.detach().reshape(())}
    for n, p in model.named_parameters():
        tensors["params/" + n] = p.detach().contiguous()
    for n, g in zip(names, grads):
        tensors["grads/" + n] = g.detach().contiguous()
    path = os.path.join(repo_root(), "tests", "golden", "tiny_transformer.safetensors")
    meta = {"config": json.dumps(CONFIG, sort_keys=True), "params": json.dumps(names),
            "generator": "tools/golden/tiny_transformer.py"}
    meta.update({k: str(v) for k, v in versions().items()})
    save_file(tensors, path, metadata=meta)
    print(f"wrote {path}: {len(names)} parameters, loss {loss.item():.6f}, "
          f"{os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
