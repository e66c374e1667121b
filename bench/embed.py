"""Embedding throughput: sentence-transformers on torch against docqa's ONNX embedder, in one run.

The torch side is what the original tutorial ran (LangChain's HuggingFaceEmbeddings: SentenceTransformer.encode
with its default batch size of 32). The goal: at least twice its chunks/s at equal quality (cosine >= 0.9999).

It also measures the chunk embedders of `embeddings.chunk_precision`: bf16 (OpenVINO on the export) and the int8
copy (its quality is recall, measured by bench/variants.py; its cosine to torch is printed here).

    .venv/bin/python bench/embed.py [--chunks 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from measure import CORPUS

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from docqa.embeddings import (  # noqa: E402
    Bf16Embedder,
    OnnxEmbedder,
    ensure_onnx_export,
    ensure_quantized_export,
    load_sentence_transformer,
    resolve_model,
)
from docqa.settings import load_settings  # noqa: E402

CORPUS_PDF = CORPUS / "manu-20f-2022-09-24.pdf"


def pdf_chunks(pdf: Path, count: int, size: int, overlap: int) -> list[str]:
    import pypdfium2

    document = pypdfium2.PdfDocument(str(pdf))
    chunks: list[str] = []
    for page in document:
        text = page.get_textpage().get_text_range()
        chunks += [text[start : start + size] for start in range(0, max(len(text) - overlap, 1), size - overlap)]
        if len(chunks) >= count:
            break
    return [chunk for chunk in chunks if chunk.strip()][:count]


def best_rate(embed: Callable[[list[str]], np.ndarray], chunks: list[str], rounds: int) -> tuple[float, np.ndarray]:
    """Chunks per second of the fastest round (the machine may be shared), and the vectors."""
    embed(chunks[:8])  # warm-up: first-call allocations and thread start-up
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        vectors = embed(chunks)
        best = max(best, len(chunks) / (time.perf_counter() - started))
    return best, vectors


def normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def report(label: str, rate: float, vectors: np.ndarray, torch_rate: float, torch_vectors: np.ndarray) -> None:
    similarity = (normalised(vectors) * torch_vectors).sum(axis=1)
    print(f"{label:<22} {rate:7.1f} chunks/s  {rate / torch_rate:5.2f}x  "
          f"cosine to torch: mean {similarity.mean():.6f}, min {similarity.min():.6f}")


def chunk_bench_arguments(description: str) -> argparse.Namespace | None:
    """The options of the benchmarks that embed chunks of one report (this one and bench/export.py); None, said on
    stdout, when the report is not there."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--pdf", type=Path, default=CORPUS_PDF)
    parser.add_argument("--chunks", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.pdf.is_file():
        print(f"skipped: {args.pdf} not found")
        return None
    return args


def main() -> int:
    args = chunk_bench_arguments(__doc__)
    if args is None:
        return 0

    settings = load_settings()
    chunks = pdf_chunks(args.pdf, args.chunks, settings.ingest.chunk_size, settings.ingest.chunk_overlap)
    export = ensure_onnx_export(settings)
    model = load_sentence_transformer(resolve_model(settings))
    print(f"{len(chunks)} chunks of {settings.ingest.chunk_size} characters from {args.pdf.name}, "
          f"best of {args.rounds} rounds")

    def tutorial_encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, show_progress_bar=False)

    torch_rate, torch_vectors = best_rate(tutorial_encode, chunks, args.rounds)
    torch_vectors = normalised(torch_vectors)
    print(f"{'torch (batch 32)':<22} {torch_rate:7.1f} chunks/s")
    onnx = OnnxEmbedder(export, settings.embeddings.batch_size)
    onnx_rate, onnx_vectors = best_rate(onnx.embed_documents, chunks, args.rounds)
    report(f"onnx (batch {onnx.batch_size})", onnx_rate, onnx_vectors, torch_rate, torch_vectors)
    bf16 = Bf16Embedder(export, settings.embeddings.batch_size)
    bf16_rate, bf16_vectors = best_rate(bf16.embed_documents, chunks, args.rounds)
    report(f"openvino bf16 (batch {bf16.batch_size})", bf16_rate, bf16_vectors, torch_rate, torch_vectors)
    int8 = OnnxEmbedder(ensure_quantized_export(settings), settings.embeddings.batch_size)
    int8_rate, int8_vectors = best_rate(int8.embed_documents, chunks, args.rounds)
    report("onnx int8 (quantized)", int8_rate, int8_vectors, torch_rate, torch_vectors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
