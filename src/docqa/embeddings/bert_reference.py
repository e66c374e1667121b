"""A BERT sentence encoder in plain numpy: the check of a torch-free export where torch is not installed.

Written for clarity, not speed: one text at a time (so no padding and no mask), float64 throughout, each step as
BERT's paper and sentence-transformers describe it. It shares only the weights and sizes (``bert_onnx.read_bert``)
and the tokenizer file with the ONNX graph it checks; the tests check it against sentence-transformers on torch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from docqa.embeddings.bert_onnx import BertModel
from docqa.optional import require

_erf = np.frompyfunc(math.erf, 1, 1)


def reference_embeddings(model: BertModel, tokenizer_file: Path, texts: list[str]) -> np.ndarray:
    """One L2-normalised row per text: the mean of its tokens' last hidden states."""
    tokenizers = require("tokenizers")
    tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(model.max_seq_length)
    rows = []
    for text in texts:
        encoding = tokenizer.encode(text)
        hidden = _encode(model, np.array(encoding.ids), np.array(encoding.type_ids))
        mean = hidden.mean(axis=0)
        rows.append(mean / np.linalg.norm(mean))
    return np.array(rows, dtype=np.float32)


def _encode(model: BertModel, ids: np.ndarray, type_ids: np.ndarray) -> np.ndarray:
    """The last hidden states of one sequence, [tokens, hidden]."""
    w = lambda name: model.weights[name].astype(np.float64)  # noqa: E731
    table = lambda name, rows: model.weights[name][rows].astype(np.float64)  # noqa: E731 - the rows only
    x = (table("embeddings.word_embeddings.weight", ids)
         + table("embeddings.position_embeddings.weight", np.arange(len(ids)))
         + table("embeddings.token_type_embeddings.weight", type_ids))
    x = _layer_norm(x, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"), model.layer_norm_eps)
    for layer in range(model.num_layers):
        p = f"encoder.layer.{layer}."
        linear = lambda name, h: h @ w(f"{p}{name}.weight").T + w(f"{p}{name}.bias")  # noqa: E731
        attended = _self_attention(
            linear("attention.self.query", x), linear("attention.self.key", x), linear("attention.self.value", x),
            model.num_heads,
        )
        x = _layer_norm(x + linear("attention.output.dense", attended), w(f"{p}attention.output.LayerNorm.weight"),
                        w(f"{p}attention.output.LayerNorm.bias"), model.layer_norm_eps)
        inner = _gelu(linear("intermediate.dense", x))
        x = _layer_norm(x + linear("output.dense", inner), w(f"{p}output.LayerNorm.weight"),
                        w(f"{p}output.LayerNorm.bias"), model.layer_norm_eps)
    return x


def _self_attention(query: np.ndarray, key: np.ndarray, value: np.ndarray, heads: int) -> np.ndarray:
    """softmax(Q Kᵀ / √d) V in each head, the heads side by side again."""
    tokens, width = query.shape
    head_size = width // heads
    split = lambda m: m.reshape(tokens, heads, head_size).transpose(1, 0, 2)  # noqa: E731 - [heads, tokens, d]
    scores = split(query) @ split(key).transpose(0, 2, 1) / math.sqrt(head_size)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return (weights @ split(value)).transpose(1, 0, 2).reshape(tokens, width)


def _layer_norm(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * scale + shift


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact GELU of BERT's "gelu": x · Φ(x) = x (1 + erf(x / √2)) / 2."""
    return x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64)) / 2.0
