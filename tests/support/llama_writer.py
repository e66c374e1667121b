"""Random-weight Llama models in the two formats docqa loads: GGUF and GGML v3 ("ggjt").

The files carry a real llama-style tokenizer (byte fallback plus word pieces) and the exact
tensor names, shapes and q8_0 layout llama.cpp expects, so llama-cpp-python and ctransformers
load and run them like the downloaded Llama-2-7B-Chat files; the text they generate is gibberish.

    write_gguf(path, preset="tiny", seed=0)
    write_ggml(path, preset="llama-2-7b", seed=0)   # 7 GB, streamed tensor by tensor
    tensor_data_size("llama-2-7b")                   # a lower bound on either file's size
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple

import gguf
import numpy as np

GGJT_MAGIC = 0x67676A74
GGJT_VERSION = 3
GGML_FTYPE_MOSTLY_Q8_0 = 7
GGML_TYPE_F32 = 0
GGML_TYPE_Q8_0 = 8
GGJT_ALIGNMENT = 32

Q8_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "i1", (32,))])
# int8 quants uniform in [-128, 127] have a standard deviation of about 74; this scale gives
# weights a standard deviation of about 0.02, like an initialised transformer.
Q8_0_SCALE = 0.02 / 74

UNK, BOS, EOS = 0, 1, 2
N_SPECIAL = 3
N_BYTES = 256
SPACE = "\u2581"  # SentencePiece's word-boundary marker

LLAMA_2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

WORDS = (
    "the of and to in a is that for it as was with be by on not this are or from at which but have an "
    "they you were there been one all we their has would when if so no will can more other its what about "
    "question answer context helpful information revenue profit loss company year group financial report "
    "total net income operating million billion share shares dividend cash assets liabilities equity "
    "growth market sales cost costs tax earnings board directors risk customers employees business annual "
    "increase decrease compared per cent percent quarter fiscal statement balance capital"
).split()
CHARACTERS = [SPACE, *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?'\"()-%$"]


@dataclass(frozen=True)
class LlamaPreset:
    """The shape of a Llama model, in the terms of the GGML v3 header."""

    n_vocab: int
    n_embd: int
    n_mult: int
    n_head: int
    n_layer: int
    context_length: int

    @property
    def n_ff(self) -> int:
        """Feed-forward width, derived from n_mult exactly as llama.cpp's GGML loader does."""
        return ((2 * (4 * self.n_embd) // 3 + self.n_mult - 1) // self.n_mult) * self.n_mult

    @property
    def n_rot(self) -> int:
        return self.n_embd // self.n_head


PRESETS = {
    "tiny": LlamaPreset(n_vocab=1024, n_embd=64, n_mult=32, n_head=4, n_layer=2, context_length=4096),
    "llama-2-7b": LlamaPreset(n_vocab=32000, n_embd=4096, n_mult=256, n_head=32, n_layer=32, context_length=4096),
}


class Token(NamedTuple):
    piece: str
    score: float
    type: gguf.TokenType


class Tensor(NamedTuple):
    gguf_name: str
    ggml_name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the contiguous (row) dimension


def write_gguf(path: Path | str, preset: str | LlamaPreset = "tiny", seed: int = 0) -> Path:
    """Write a random-weight Llama GGUF file (q8_0 matrices, F32 norms) with a chat template."""
    preset = _resolve_preset(preset)
    path = Path(path)
    writer = gguf.GGUFWriter(path, "llama")
    _add_gguf_metadata(writer, preset)
    tensors = _tensors(preset)
    for tensor in tensors:
        if len(tensor.ne) == 1:
            writer.add_tensor_info(tensor.gguf_name, tensor.ne, np.dtype(np.float32), 4 * tensor.ne[0])
        else:
            byte_shape = gguf.quant_shape_to_byte_shape(tensor.ne[::-1], gguf.GGMLQuantizationType.Q8_0)
            nbytes = int(np.prod(byte_shape))
            writer.add_tensor_info(tensor.gguf_name, byte_shape, np.dtype(np.uint8), nbytes, gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for data in _tensor_data(preset, tensors, seed):
        writer.write_tensor_data(data)
    writer.close()
    return path


def write_ggml(path: Path | str, preset: str | LlamaPreset = "tiny", seed: int = 0) -> Path:
    """Write a random-weight Llama file in the GGML v3 layout of llama-2-7b-chat.ggmlv3.q8_0.bin."""
    preset = _resolve_preset(preset)
    path = Path(path)
    tensors = _tensors(preset)
    with path.open("wb") as out:
        out.write(struct.pack("<II", GGJT_MAGIC, GGJT_VERSION))
        hparams = (preset.n_vocab, preset.n_embd, preset.n_mult, preset.n_head, preset.n_layer, preset.n_rot)
        out.write(struct.pack("<7i", *hparams, GGML_FTYPE_MOSTLY_Q8_0))
        for token in _vocab(preset.n_vocab):
            text = _ggml_token_text(token)
            out.write(struct.pack("<I", len(text)) + text + struct.pack("<f", token.score))
        for tensor, data in zip(tensors, _tensor_data(preset, tensors, seed)):
            _write_ggml_tensor(out, tensor, data)
    return path


def tensor_data_size(preset: str | LlamaPreset = "tiny") -> int:
    """Bytes of tensor data in either file: a file smaller than this was not written to the end."""
    total = 0
    for tensor in _tensors(_resolve_preset(preset)):
        n_elements = int(np.prod(tensor.ne))
        total += 4 * n_elements if len(tensor.ne) == 1 else n_elements // 32 * Q8_0_BLOCK.itemsize
    return total


def _vocab(n_vocab: int) -> list[Token]:
    """<unk>, <s>, </s>, the 256 byte-fallback tokens, then word pieces; SentencePiece merges a word
    only through pieces in the vocabulary, so every prefix of a word is a piece too."""
    specials = [
        Token("<unk>", 0.0, gguf.TokenType.UNKNOWN),
        Token("<s>", 0.0, gguf.TokenType.CONTROL),
        Token("</s>", 0.0, gguf.TokenType.CONTROL),
    ]
    byte_tokens = [Token(f"<0x{value:02X}>", 0.0, gguf.TokenType.BYTE) for value in range(N_BYTES)]
    pieces = list(dict.fromkeys(_word_pieces()))
    pieces += [f"{SPACE}w{index}" for index in range(n_vocab)]
    n_pieces = n_vocab - N_SPECIAL - N_BYTES
    normal = [Token(piece, -float(rank), gguf.TokenType.NORMAL) for rank, piece in enumerate(pieces[:n_pieces])]
    return specials + byte_tokens + normal


def _word_pieces() -> Iterator[str]:
    yield from CHARACTERS
    for word in WORDS:
        marked = SPACE + word
        for end in range(2, len(marked) + 1):
            yield marked[:end]


def _resolve_preset(preset: str | LlamaPreset) -> LlamaPreset:
    if isinstance(preset, LlamaPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def _add_gguf_metadata(writer: gguf.GGUFWriter, preset: LlamaPreset) -> None:
    writer.add_name("random-llama")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(preset.context_length)
    writer.add_embedding_length(preset.n_embd)
    writer.add_block_count(preset.n_layer)
    writer.add_feed_forward_length(preset.n_ff)
    writer.add_rope_dimension_count(preset.n_rot)
    writer.add_head_count(preset.n_head)
    writer.add_head_count_kv(preset.n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    vocab = _vocab(preset.n_vocab)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([token.piece for token in vocab])
    writer.add_token_scores([token.score for token in vocab])
    writer.add_token_types([token.type for token in vocab])
    writer.add_unk_token_id(UNK)
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(EOS)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(LLAMA_2_CHAT_TEMPLATE)


def _tensors(preset: LlamaPreset) -> list[Tensor]:
    embd, ff, vocab = preset.n_embd, preset.n_ff, preset.n_vocab
    tensors = [
        Tensor("token_embd.weight", "tok_embeddings.weight", (embd, vocab)),
        Tensor("output_norm.weight", "norm.weight", (embd,)),
        Tensor("output.weight", "output.weight", (embd, vocab)),
    ]
    per_layer = [
        ("attn_q", "attention.wq", (embd, embd)),
        ("attn_k", "attention.wk", (embd, embd)),
        ("attn_v", "attention.wv", (embd, embd)),
        ("attn_output", "attention.wo", (embd, embd)),
        ("attn_norm", "attention_norm", (embd,)),
        ("ffn_gate", "feed_forward.w1", (embd, ff)),
        ("ffn_down", "feed_forward.w2", (ff, embd)),
        ("ffn_up", "feed_forward.w3", (embd, ff)),
        ("ffn_norm", "ffn_norm", (embd,)),
    ]
    for layer in range(preset.n_layer):
        for gguf_name, ggml_name, ne in per_layer:
            tensors.append(Tensor(f"blk.{layer}.{gguf_name}.weight", f"layers.{layer}.{ggml_name}.weight", ne))
    return tensors


def _tensor_data(preset: LlamaPreset, tensors: list[Tensor], seed: int) -> Iterator[np.ndarray]:
    """One tensor at a time, so even the 7B shapes never sit in memory whole."""
    rng = np.random.default_rng(seed)
    for tensor in tensors:
        if len(tensor.ne) == 1:
            yield np.ones(tensor.ne, dtype=np.float32)
            continue
        blocks = _random_q8_0(rng, int(np.prod(tensor.ne)))
        if tensor.ggml_name == "output.weight":
            _silence_special_tokens(blocks, preset)
        yield blocks.view(np.uint8)


def _random_q8_0(rng: np.random.Generator, n_elements: int) -> np.ndarray:
    blocks = np.empty(n_elements // 32, dtype=Q8_0_BLOCK)
    blocks["d"] = Q8_0_SCALE
    blocks["qs"] = rng.integers(-128, 128, size=(len(blocks), 32), dtype=np.int8)
    return blocks


def _silence_special_tokens(output_blocks: np.ndarray, preset: LlamaPreset) -> None:
    # Zero logits for <unk>, <s> and </s> keep near-greedy decoding from ending at once, so
    # every generation yields text to test against.
    rows = output_blocks.reshape(preset.n_vocab, -1)
    rows[:N_SPECIAL]["qs"] = 0


def _ggml_token_text(token: Token) -> bytes:
    """Token text as llama.cpp's GGML-era convert.py stored it."""
    if token.type == gguf.TokenType.UNKNOWN:
        return " \u2047 ".encode()
    if token.type == gguf.TokenType.CONTROL:
        return b""
    if token.type == gguf.TokenType.BYTE:
        return bytes([int(token.piece[3:-1], 16)])
    return token.piece.replace(SPACE, " ").encode()


def _write_ggml_tensor(out: BinaryIO, tensor: Tensor, data: np.ndarray) -> None:
    name = tensor.ggml_name.encode()
    ggml_type = GGML_TYPE_F32 if data.dtype == np.float32 else GGML_TYPE_Q8_0
    out.write(struct.pack(f"<3i{len(tensor.ne)}i", len(tensor.ne), len(name), ggml_type, *tensor.ne))
    out.write(name)
    out.write(b"\0" * (-out.tell() % GGJT_ALIGNMENT))
    data.tofile(out)
