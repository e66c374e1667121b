"""The size a whole GGUF file has, read from its own header: where its last tensor's data ends.

A model file cut short (an interrupted copy) keeps its header, so its first bytes alone pass for a model; comparing
the file's size with what its header promises tells. Only the header is read, never the weights: its vocabulary
makes most of it (0.4 s for SmolLM2's, 0.8 s for Qwen2.5's 151,000 tokens on 2 cores).
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Optional

from docqa.errors import ConfigError, LLMError

# Value types of the metadata (GGUF v2 and v3): fixed sizes, 8 is a string, 9 an array
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
DEFAULT_ALIGNMENT = 32
MAX_NESTING = 8  # arrays of arrays: none of the known models nests them at all
# Elements per block and bytes per block of each tensor type, by its number in the file (llama.cpp's ggml.h;
# the gguf package's GGML_QUANT_SIZES, written out so that checking a download needs no extra package)
_TYPE_SIZES = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 40),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
    40: (64, 36),  # NVFP4
    41: (128, 18),  # Q1_0
}


class _Header:
    def __init__(self, data) -> None:
        self.data = data
        self.at = 0

    def take(self, layout: str):
        values = struct.unpack_from("<" + layout, self.data, self.at)
        self.at += struct.calcsize("<" + layout)
        return values[0] if len(values) == 1 else values

    def string(self) -> bytes:
        length = self.take("Q")
        if self.at + length > len(self.data):
            raise struct.error("string past the end")
        self.at += length
        return bytes(self.data[self.at - length:self.at])

    def skip_value(self, kind: int, depth: int = 0) -> None:
        if kind in _FIXED:
            self.at += _FIXED[kind]
        elif kind == _STRING:
            self.string()
        elif kind == _ARRAY and depth < MAX_NESTING:
            item, count = self.take("IQ")
            if item in _FIXED:
                self.at += _FIXED[item] * count
            else:
                for _ in range(count):
                    self.skip_value(item, depth + 1)
        else:
            raise LLMError(f"metadata of unknown type {kind}, or arrays nested over {MAX_NESTING} deep")
        if self.at > len(self.data):
            raise struct.error("a value past the end")


def gguf_size(path: Path) -> Optional[int]:
    """The bytes a whole GGUF file at ``path`` holds; None where that cannot be told (a GGUF version before 2, a
    tensor type newer than this module). LLMError where the header itself is cut short or damaged."""

    with open(path, "rb") as handle:
        try:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            raise LLMError(f"{path} is empty") from None
    try:
        header = _Header(data)
        try:
            magic, version = header.take("4sI")
            if magic != b"GGUF" or version < 2:
                return None
            tensors, entries = header.take("QQ")
            alignment = DEFAULT_ALIGNMENT
            for _ in range(entries):
                key = header.string()
                kind = header.take("I")
                if key == b"general.alignment" and kind == _UINT32:
                    alignment = header.take("I")
                else:
                    header.skip_value(kind)
            end = 0
            for _ in range(tensors):
                header.string()
                dimensions = header.take("I")
                elements = 1
                for _ in range(dimensions):
                    elements *= header.take("Q")
                kind, offset = header.take("IQ")
                if kind not in _TYPE_SIZES:  # a type newer than this table
                    return None
                block, size = _TYPE_SIZES[kind]
                end = max(end, offset + elements // block * size)
        except struct.error:
            raise LLMError(f"{path}: its header is cut short") from None
        if alignment == 0:
            raise LLMError(f"{path}: its header gives an alignment of 0")
        start = -(-header.at // alignment) * alignment  # the tensor data begins at the next multiple of the alignment
        return start + end
    finally:
        data.close()


def cut_short(path: Path) -> Optional[tuple[int, int]]:
    """(the file's size, the size its header promises) where a GGUF file at ``path`` is shorter than its header says;
    None where it is whole or that cannot be told. LLMError where the header itself is cut short or damaged."""
    whole = gguf_size(path)
    size = Path(path).stat().st_size
    return (size, whole) if whole is not None and size < whole else None


def check_whole(path: Path) -> None:
    """ConfigError where a GGUF file at ``path`` is cut short (an interrupted copy or download), in its header or its
    weights: the model file is the user's to fetch again, not a failure of the model."""
    try:
        short = cut_short(path)
    except LLMError as error:  # the header itself cut short or damaged
        raise ConfigError(f"{error}: an interrupted copy? download it again") from None
    if short:
        raise ConfigError(f"{path} is cut short ({short[0]:,} of its {short[1]:,} bytes: an interrupted copy?); "
                          "download it again")
