"""The embedding model's ONNX export made two ways, side by side: written from its files without torch
(embeddings.bert_onnx, the default) and traced on torch (the `export` extra, for models bert_onnx does not build).

For each: the time a fresh process takes to make it (the torch-free one twice: checked against the numpy reference
with torch made unimportable, as in a default install, and against torch), the fused operators in its graph, its
vectors' cosine to sentence-transformers and to the other export, and its embedding speed on the same chunks
(ONNX Runtime and OpenVINO bf16, best of --rounds, the rounds alternating between the two exports).

    .venv/bin/python bench/export.py [--pdf FILE] [--chunks 512] [--rounds 3]
"""

from __future__ import annotations

import collections
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from embed import chunk_bench_arguments, normalised, pdf_chunks
from measure import PYTHON, checked, run_measured

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing the package

from docqa.embeddings import Bf16Embedder, OnnxEmbedder, load_sentence_transformer, resolve_model  # noqa: E402
from docqa.settings import load_settings  # noqa: E402

MAKE_EXPORT = """
import sys
if {block_torch}:
    for name in ("torch", "sentence_transformers", "transformers"):
        sys.modules[name] = None
sys.path.insert(0, {source_root!r})
from pathlib import Path
from docqa.embeddings import export
from docqa.settings import load_settings
source, folder = export.resolve_model(load_settings()), Path({folder!r})
if {traced}:
    export._swap_in(folder, lambda staging: export._write_torch_export(source, staging, folder, "measured"))
else:
    export.export_onnx(source, folder)
print(export.read_export_meta(folder)["exporter"])
"""
WAYS = {  # label: (torch importable, traced on torch)
    "from the files, numpy check (no torch)": (False, False),
    "from the files, torch check": (True, False),
    "traced on torch": (True, True),
}


def make_export(folder: Path, torch_importable: bool, traced: bool) -> tuple[float, float]:
    script = MAKE_EXPORT.format(block_torch=not torch_importable, traced=traced, folder=str(folder),
                                source_root=str(REPO / "src"))
    measured = checked(run_measured([PYTHON, "-c", script], quiet=True), f"export into {folder}")
    return measured.seconds, measured.peak_rss_mib


def op_counts(folder: Path) -> collections.Counter:
    import onnx

    return collections.Counter(node.op_type for node in onnx.load(str(folder / "model.onnx"),
                                                                  load_external_data=False).graph.node)


def alternating_best_rates(embedders: dict, chunks: list[str], rounds: int) -> tuple[dict, dict]:
    """Chunks per second of each embedder's fastest round, rounds alternating so that load changes hit both."""
    for embedder in embedders.values():
        embedder.embed_documents(chunks[:8])  # warm-up
    rates = dict.fromkeys(embedders, 0.0)
    vectors = {}
    for _ in range(rounds):
        for label, embedder in embedders.items():
            started = time.perf_counter()
            vectors[label] = embedder.embed_documents(chunks)
            rates[label] = max(rates[label], len(chunks) / (time.perf_counter() - started))
    return rates, vectors


def cosine_line(a: np.ndarray, b: np.ndarray) -> str:
    similarity = (normalised(a) * normalised(b)).sum(axis=1)
    return f"mean {similarity.mean():.8f}, min {similarity.min():.8f}"


def main() -> int:
    args = chunk_bench_arguments(__doc__)
    if args is None:
        return 0
    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="docqa-export-bench-") as scratch:
        folders = {}
        print("making the export in a fresh process (wall time, peak memory):")
        for number, (label, (torch_importable, traced)) in enumerate(WAYS.items()):
            folders[label] = Path(scratch) / f"export-{number}"
            seconds, peak = make_export(folders[label], torch_importable, traced)
            print(f"  {label:<40} {seconds:6.1f} s  {peak:6.0f} MiB")
        free, traced = folders["from the files, numpy check (no torch)"], folders["traced on torch"]

        print("\noperators of the fused graphs (torch-free / traced):")
        free_ops, traced_ops = op_counts(free), op_counts(traced)
        for name in sorted(free_ops.keys() | traced_ops.keys()):
            print(f"  {name:<26} {free_ops[name]:3d} / {traced_ops[name]:3d}")
        print(f"  {'all':<26} {sum(free_ops.values()):3d} / {sum(traced_ops.values()):3d}")

        chunks = pdf_chunks(args.pdf, args.chunks, settings.ingest.chunk_size, settings.ingest.chunk_overlap)
        batch = settings.embeddings.batch_size
        print(f"\n{len(chunks)} chunks of {settings.ingest.chunk_size} characters from {args.pdf.name}, "
              f"batch {batch}, best of {args.rounds} alternating rounds:")
        reference = load_sentence_transformer(resolve_model(settings)).encode(
            chunks, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        for runtime, embedder in (("onnx", OnnxEmbedder), ("openvino bf16", Bf16Embedder)):
            rates, vectors = alternating_best_rates(
                {"torch-free": embedder(free, batch), "traced": embedder(traced, batch)}, chunks, args.rounds)
            print(f"  {runtime}: torch-free {rates['torch-free']:.1f} chunks/s, traced {rates['traced']:.1f} "
                  f"chunks/s, ratio {rates['torch-free'] / rates['traced']:.3f}")
            print(f"    cosine torch-free to traced: {cosine_line(vectors['torch-free'], vectors['traced'])}")
            for label in ("torch-free", "traced"):
                print(f"    cosine {label} to sentence-transformers: {cosine_line(vectors[label], reference)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
