"""Retrieval evaluation: the hit rule of ../shared/eval/README.md, the metrics, and exact recall on generated PDFs."""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
from pathlib import Path

import pytest

from docqa.cli import ask_main
from docqa.errors import InputError
from docqa.evaluate import GoldQuestion, Retrieved, evaluate, is_hit, llm_token_counter, read_gold, summarize
from docqa.settings import LLM, Settings
from docqa.qa import DocQA
from docqa.text import fold_text
from tests.test_batch import config, fake_embedder, indexed  # noqa: F401 - fixtures: an index of REPORTS

# Over REPORTS (8 single-chunk pages in 3 files). Why each question does or does not count:
GOLD = [
    # g1, g2, g4: the question's words stand on the gold page, which comes first.
    {"id": "g1", "doc": "acme-2023.pdf", "question": "What was Acme revenue in 2023?", "pages": [0],
     "answers": ["150  MILLION"]},  # rule 3 after folding case and collapsing whitespace
    # (g2's file name in another case: the indexed beta-2023.pdf all the same, as --doc finds it)
    {"id": "g2", "doc": "Beta-2023.PDF", "question": "How many bakers did Beta employ in Bristol?", "pages": [1]},
    # g3: right document and page, but the answer string stands nowhere: never a hit.
    {"id": "g3", "doc": "acme-2022.pdf", "question": "What dividend did Acme propose in 2022?", "pages": [2],
     "answers": ["7 pence"]},
    {"id": "g4", "doc": "acme-2022.pdf", "question": "How many people did Acme employ in Leeds in 2022?",
     "pages": [1]},
    # g5: the gold page is the dividend page of a revenue question: found only deep in the ranking,
    # but within k = 8, which retrieves all 8 chunks, and within k = 3 restricted to its 3-page file.
    {"id": "g5", "doc": "acme-2023.pdf", "question": "What was Acme revenue in 2023?", "pages": [2]},
    # g6: a document that is not indexed: a miss, and an error when restricted to it.
    {"id": "g6", "doc": "missing.pdf", "question": "What was Gamma revenue?", "pages": [0]},
]


@pytest.fixture
def gold_file(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in GOLD) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- the hit rule


def gold(**fields) -> GoldQuestion:
    base = {"id": "x", "doc": "BOEING_2022_10K.pdf", "question": "?", "pages": frozenset({3, 4}), "answers": ()}
    return GoldQuestion(**{**base, **fields})


@pytest.mark.parametrize(
    "chunk, answers, expected",
    [
        (Retrieved("reports/BOEING_2022_10K.pdf", 3, "anything"), (), True),  # file names compared, not paths
        (Retrieved("BOEING_2022_10K.pdf", 4, "anything"), (), True),
        (Retrieved("BOEING_2022_10K.pdf", 5, "anything"), (), False),  # not a gold page
        (Retrieved("BOEING_2021_10K.pdf", 3, "anything"), (), False),  # another document
        # the same name in another case or Unicode form (accents apart, as a Mac writes them): as --doc finds it
        (Retrieved("boeing_2022_10k.PDF", 3, "anything"), (), True),
        (Retrieved("BOEING_2022_10K.pdf", 3, "Total\n revenue  was $66,608\tMILLION."), ("$66,608 million",), True),
        (Retrieved("BOEING_2022_10K.pdf", 3, "Total revenue was $66,608 million."), ("$62,286 million",), False),
        (Retrieved("BOEING_2022_10K.pdf", 3, "Total revenue was $66,608 million."), ("62,286", "66,608"), True),
        (Retrieved("BOEING_2022_10K.pdf", 5, "Total revenue was $66,608 million."), ("66,608",), False),
    ],
)
def test_hit_rule(chunk, answers, expected):
    assert is_hit(gold(answers=answers), chunk) is expected


def test_a_gold_document_named_with_its_accents_composed_is_the_indexed_one_written_apart():
    decomposed = Retrieved("Socie\u0301te\u0301 Ge\u0301ne\u0301rale 8-K.pdf", 3, "anything")
    assert is_hit(gold(doc="Société Générale 8-K.pdf"), decomposed)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": "a", "doc": "x.pdf", "question": "q", "pages": [1]}\n{"id": "b"', "line 2: not valid JSON"),
        ('{"id": "a", "doc": "x.pdf", "question": "q"}', 'line 1: missing "pages"'),
        ('{"id": "a", "doc": "x.pdf", "question": "q", "pages": ["3"]}', "0-based page indices"),
        ('{"id": "a", "doc": "x.pdf", "question": "q", "pages": [1], "answers": "7"}', '"answers" must be a list'),
        ('{"id": "a", "doc": "x.pdf", "question": "q", "pages": [1]}\n'
         '{"id": "a", "doc": "x.pdf", "question": "r", "pages": [1]}', "id 'a' appears twice"),
        ("\n", "no questions found"),
        ('{"id": "a", "doc": "x.pdf", "question": "q", "pages": []}', 'line 1: "pages" is empty'),
        ('{"id": null, "doc": "x.pdf", "question": "q", "pages": [1]}', '"id" must be a text or a number, not None'),
        ('{"id": " ", "doc": "x.pdf", "question": "q", "pages": [1]}', '"id" must be a text or a number'),
        # an empty cell turned rule 3 off ("" is in every passage); "" for no answers passed too
        ('{"id": "a", "doc": "x.pdf", "question": "q", "pages": [1], "answers": ["7", " "]}',
         "line 1: an empty answer string would match every passage"),
        ('{"id": "a", "doc": "x.pdf", "question": "q", "pages": [1], "answers": ""}', '"answers" must be a list'),
        # what batch takes as questions: said to be no JSON Lines
        ('[{"id": "a", "doc": "x.pdf", "question": "q", "pages": [1]}]',
         "line 1: a JSON array; a gold file is JSON Lines, one JSON object per line"),
        ("id,doc,question,pages\na,x.pdf,q,1\n", "line 1: not valid JSON (Expecting value); a gold file is JSON Lines"),
    ],
)
def test_bad_gold_files_say_where(tmp_path, content, message):
    path = tmp_path / "gold.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(message)):
        read_gold(path)



def test_a_gold_line_may_hold_any_character_json_allows_in_a_string(tmp_path):
    """U+2028, NEL and a form feed, as json.dumps(ensure_ascii=False) writes them, split a line in two."""
    path = tmp_path / "gold.jsonl"
    items = [{"id": "a", "doc": "x.pdf", "question": f"What was revenue{sep}in 2022?", "pages": [1]}
             for sep in ("\u2028", "\x85", "\x0c")]
    path.write_text("\n".join(json.dumps({**item, "id": str(n)}, ensure_ascii=False) for n, item in enumerate(items)),
                    encoding="utf-8")
    assert [question.question for question in read_gold(path)] == [item["question"] for item in items]

def test_summarize_counts_the_first_hit_within_each_k():
    records = [{"first_hit_rank": rank, "latency_ms": ms} for rank, ms in ((1, 10.0), (3, 20.0), (None, 30.0), (2, 40.0))]
    summary = summarize(records, [4, 1, 2])
    assert {key: summary[key] for key in ("questions", "recall@1", "recall@2", "recall@4", "mrr", "mrr_cutoff")} == {
        "questions": 4, "recall@1": 0.25, "recall@2": 0.5, "recall@4": 0.75,
        "mrr": round((1 + 1 / 3 + 0 + 1 / 2) / 4, 4), "mrr_cutoff": 4}
    assert (summary["latency_ms_p50"], summary["latency_ms_p95"]) == (25.0, 38.5)
    assert summarize(records, [2])["mrr"] == round((1 + 0 + 0 + 1 / 2) / 4, 4)  # ranks past max(ks) count 0


# ---------------------------------------------------------------- on generated PDFs


def test_exact_recall_on_generated_pdfs(indexed, gold_file):
    details = io.StringIO()
    with DocQA(indexed, retrieval_only=True) as qa:
        result = evaluate(qa, gold_file, [1, 3, 8], per_doc=True, details=details)
        top_two = {item["id"]: qa.retrieve(item["question"], k=2) for item in GOLD}
    lines = [json.loads(line) for line in details.getvalue().splitlines()]
    ranks = {line["id"]: line["first_hit_rank"] for line in lines}
    assert {key: ranks[key] for key in ("g1", "g2", "g3", "g4", "g6")} == {"g1": 1, "g2": 1, "g3": None, "g4": 1, "g6": None}
    assert ranks["g5"] > 3
    assert (result["questions"], result["recall@1"], result["recall@8"]) == (6, 0.5, round(4 / 6, 4))
    assert result["recall@3"] == 0.5
    assert result["mrr"] == round(sum(1 / r for r in ranks.values() if r) / 6, 4)
    assert result["documents_not_indexed"] == ["missing.pdf"]
    per_doc = result["per_doc"]
    assert (per_doc["recall@1"], per_doc["recall@3"], per_doc["recall@8"], per_doc["errors"]) == (
        0.5, round(4 / 6, 4), round(4 / 6, 4), 1)
    assert lines[5]["per_doc"]["error"].startswith("no indexed document matches 'missing.pdf'")
    assert all(item["document"] == "acme-2023.pdf" for item in lines[4]["per_doc"]["retrieved"])

    # a gold "doc" given as a path is the file of that name, for --per-doc as for the hit rule (it was an error)
    as_path = gold_file.with_name("by_path.jsonl")
    as_path.write_text(json.dumps({**GOLD[0], "doc": f"data/{GOLD[0]['doc']}"}) + "\n", encoding="utf-8")
    with DocQA(indexed, retrieval_only=True) as qa:
        by_path = evaluate(qa, as_path, [1], per_doc=True)
    assert by_path["recall@1"] == by_path["per_doc"]["recall@1"] == 1.0 and by_path["per_doc"]["errors"] == 0

    g1 = lines[0]
    assert len(g1["retrieved"]) <= 8 and g1["hit_ranks"] == [1]  # near-copies are skipped, so up to 8
    assert g1["retrieved"][0] == {"rank": 1, "document": "acme-2023.pdf", "page_index": 0, "hit": True}
    contexts = {item: len("\n\n".join(s.text for s in sources)) for item, sources in top_two.items()}
    assert {line["id"]: line["context_chars"] for line in lines} == contexts
    assert [line["context_tokens"] for line in lines] == [math.ceil(contexts[line["id"]] / 4) for line in lines]
    assert result["default_k"] == 2 and result["context_tokens_estimated"] is True
    assert result["context_chars_max"] == max(contexts.values())
    assert 0 < result["latency_ms_p50"] <= result["latency_ms_p95"]


def test_a_retriever_and_a_token_counter_work_as_well(indexed, gold_file):
    with DocQA(indexed, retrieval_only=True) as qa:
        result = evaluate(qa.retriever, gold_file, [1, 8], count_tokens=lambda text: len(text.split()))
        contexts = [" ".join(s.text for s in qa.retrieve(item["question"], k=2)) for item in GOLD]
    assert (result["recall@1"], result["recall@8"]) == (0.5, round(4 / 6, 4))
    assert "per_doc" not in result and result["context_tokens_estimated"] is False
    assert result["context_tokens_max"] == max(len(text.split()) for text in contexts)


def test_cli_prints_one_json_object_and_writes_details(config, gold_file, tmp_path, capsys):
    details = tmp_path / "details" / "run.jsonl"
    argv = ["--config", str(config), "--evaluate", str(gold_file), "--k", "1", "8", "--details", str(details)]
    assert ask_main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert (result["recall@1"], result["recall@8"], result["questions"]) == (0.5, round(4 / 6, 4), 6)
    assert "recall@16" not in result and "per_doc" not in result
    assert "gold documents not in the index: missing.pdf" in captured.err
    assert [json.loads(line)["id"] for line in details.read_text(encoding="utf-8").splitlines()] == [
        item["id"] for item in GOLD]
    assert ask_main(argv) == 0  # an earlier run's details are written over
    capsys.readouterr()
    assert len(details.read_text(encoding="utf-8").splitlines()) == len(GOLD)

    assert ask_main(["--config", str(config), "--evaluate", str(gold_file), "--per-doc"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [key for key in result if key.startswith("recall@")] == ["recall@1", "recall@2", "recall@4", "recall@8",
                                                                    "recall@16"]
    assert result["per_doc"]["recall@4"] == round(4 / 6, 4)


def test_cli_says_when_gold_pages_look_numbered_from_1(config, tmp_path, capsys):
    """Pages copied from a PDF viewer (from 1) made recall drop with no word: the answers stood a page before."""
    one_based = [
        {"id": "a", "doc": "acme-2023.pdf", "question": "What was Acme revenue in 2023?", "pages": [1],
         "answers": ["150 million"]},
        {"id": "b", "doc": "beta-2023.pdf", "question": "How many bakers did Beta employ in Bristol?", "pages": [2],
         "answers": ["90 bakers"]},
        {"id": "c", "doc": "acme-2022.pdf", "question": "How many people did Acme employ in Leeds in 2022?",
         "pages": [2], "answers": ["300 people"]},
    ]
    gold = tmp_path / "one-based.jsonl"
    for pages_from in (1, 0):
        gold.write_text("".join(json.dumps({**item, "pages": [item["pages"][0] - 1 + pages_from]}) + "\n"
                                for item in one_based), encoding="utf-8")
        assert ask_main(["--config", str(config), "--evaluate", str(gold), "--k", "8"]) == 0
        out, err = capsys.readouterr()
        result = json.loads(out)
        if pages_from == 1:
            assert result["recall@8"] == 0 and result["gold_pages_look_one_based"] == {"questions": 3, "with_answers": 3}
            assert ("warning: for 3 of the 3 questions with answers, an answer string stands on the page before a gold "
                    "page: are the gold pages numbered as a viewer shows them?") in err
        else:
            assert result["recall@8"] == 1 and "gold_pages_look_one_based" not in result and "page before" not in err


def test_cli_reads_a_gold_file_given_through_a_pipe(config, gold_file, capsys):
    """It was read twice, and the second reading of a pipe is empty: 'no questions found'."""
    read, write = os.pipe()
    with os.fdopen(write, "w", encoding="utf-8") as pipe:
        pipe.write(gold_file.read_text(encoding="utf-8"))
    try:
        assert ask_main(["--config", str(config), "--evaluate", f"/dev/fd/{read}", "--k", "1", "8"]) == 0
    finally:
        os.close(read)
    assert json.loads(capsys.readouterr().out)["questions"] == len(GOLD)


def test_cli_refuses_to_call_a_run_that_found_none_of_the_gold_documents_a_measurement(config, tmp_path, capsys):
    """Gold file names that the index does not have (a renamed corpus) gave recall 0.0 and exit 0."""
    gold = tmp_path / "renamed.jsonl"
    gold.write_text(json.dumps({"id": "a", "doc": "ACME_2023_10K.pdf", "question": "Revenue?", "pages": [0]}) + "\n",
                    encoding="utf-8")
    assert ask_main(["--config", str(config), "--evaluate", str(gold)]) == 2
    assert capsys.readouterr().err.splitlines() == [  # alone: no progress bar of a measurement that never began
        (
        "error: none of the gold file's documents is in the index (ACME_2023_10K.pdf): nothing was measured; build "
        "the index from them, or check the names in the gold file")]


def test_the_library_refuses_it_too(indexed, tmp_path):
    """evaluate() from Python returned recall 0.0 for it, where the command line refused."""
    gold = tmp_path / "renamed.jsonl"
    gold.write_text(json.dumps({"id": "a", "doc": "ACME_2023_10K.pdf", "question": "Revenue?", "pages": [0]}) + "\n",
                    encoding="utf-8")
    with DocQA(indexed, retrieval_only=True) as qa, pytest.raises(InputError, match="nothing was measured"):
        evaluate(qa, gold)


def test_cli_refuses_a_bad_gold_file_before_loading_anything(tmp_path, capsys):
    bad = tmp_path / "gold.jsonl"
    bad.write_text('{"id": "a"}\n', encoding="utf-8")
    assert ask_main(["--config", str(tmp_path / "none.yml"), "--evaluate", str(bad)]) == 2
    assert 'line 1: missing "doc"' in capsys.readouterr().err



@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_cli_refuses_details_it_cannot_write_before_loading_the_index(config, gold_file, tmp_path, capsys,
                                                                      monkeypatch, where):
    details = tmp_path if where == "a folder" else gold_file / "run.jsonl"
    monkeypatch.setattr("docqa.qa.DocQA.__init__", lambda *a, **k: pytest.fail("the index was loaded"))
    assert ask_main(["--config", str(config), "--evaluate", str(gold_file), "--details", str(details)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write to {details}: ") and err.count("\n") == 1


@pytest.mark.parametrize("content", ['{"id": "q1", "question": "Q?", "answer": "A", "error": null}\n',
                                     "paths:\n  data: data\n", "How much?\n", "\xff\xfe"])
def test_cli_never_writes_details_over_a_file_of_something_else(config, gold_file, tmp_path, capsys, content):
    """A batch's answers, a config or a questions file given as --details was written over without a word."""
    kept = tmp_path / "kept.jsonl"
    kept.write_bytes(content.encode("latin-1") if content == "\xff\xfe" else content.encode())
    before = kept.read_bytes()
    assert ask_main(["--config", str(config), "--evaluate", str(gold_file), "--details", str(kept)]) == 2
    err = capsys.readouterr().err
    assert f"--details {kept} holds something other than an evaluation's details" in err and err.count("\n") == 1
    assert kept.read_bytes() == before


def test_cli_leaves_an_existing_details_file_alone_when_the_run_fails(gold_file, tmp_path, capsys):
    details = tmp_path / "details.jsonl"
    earlier = '{"id": "q1", "doc": "a.pdf", "pages": [0], "question": "Q?", "context_chars": 9}\n'  # a run's details
    details.write_text(earlier, encoding="utf-8")
    config = tmp_path / "no-index.yml"
    config.write_text(f"paths:\n  vectorstore: {tmp_path / 'nothing'}\n", encoding="utf-8")
    assert ask_main(["--config", str(config), "--evaluate", str(gold_file), "--details", str(details)]) == 3
    assert "no index in" in capsys.readouterr().err
    assert details.read_text(encoding="utf-8") == earlier
    absent = tmp_path / "new.jsonl"
    assert ask_main(["--config", str(config), "--evaluate", str(gold_file), "--details", str(absent)]) == 3
    assert not absent.exists()


def test_cli_warns_of_gold_pages_past_a_document_s_end(config, tmp_path, capsys):
    """A page index that no passage can have (a typo, or pages counted from 1) was scored as a miss in silence."""
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "far", "doc": "acme-2023.pdf", "question": "Acme revenue?", "pages": [500, 600]})
                    + "\n" + json.dumps({"id": "part", "doc": "acme-2023.pdf", "question": "Acme revenue?",
                                          "pages": [0, 500]})
                    + "\n" + json.dumps(GOLD[0]) + "\n", encoding="utf-8")
    assert ask_main(["--config", str(config), "--evaluate", str(gold)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["gold_pages_beyond_document"] == [
        {"id": "far", "doc": "acme-2023.pdf", "pages": [500, 600], "document_pages": 3, "findable": False},
        {"id": "part", "doc": "acme-2023.pdf", "pages": [500], "document_pages": 3, "findable": True}]
    assert ("warning: question far: gold page indices 500, 600 past the end of acme-2023.pdf (3 pages, indices 0 to "
            "2); it can never be found") in captured.err
    # one of its pages lies in the document: it can be found there, and was said never to be
    assert ("warning: question part: gold page index 500 past the end of acme-2023.pdf (3 pages, indices 0 to 2); "
            "only its other pages can be found") in captured.err


def test_gold_pages_of_a_file_name_two_folders_share_are_not_said_to_be_past_the_end(indexed, config, tmp_path, capsys):
    """A report.pdf in two folders: the pages of the last one listed were taken for both, and a page of the longer
    one, found at rank 1, was 'past the end' and 'can never be found'."""
    from docqa.ingest import build_index
    from tests.test_batch import write_reports

    write_reports(indexed.paths.data, {"a/report.pdf": ["Alpha one.", "Alpha two.", "Alpha three: 77 ships."],
                                       "b/report.pdf": ["Beta only page."]})
    build_index(indexed)
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "q", "doc": "a/report.pdf", "question": "How many ships?", "pages": [2],
                                "answers": ["77 ships"]}) + "\n", encoding="utf-8")
    assert ask_main(["--config", str(config), "--evaluate", str(gold)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["gold_pages_beyond_document"] == [] and "past the end" not in captured.err


def test_cli_refuses_to_write_details_over_the_gold_file_or_count_with_a_model_it_cannot_read(
        config, gold_file, tmp_path, capsys, monkeypatch):
    before = gold_file.read_bytes()
    assert ask_main(["--config", str(config), "--evaluate", str(gold_file), "--details", str(gold_file)]) == 2
    assert "--details must not be the gold file" in capsys.readouterr().err and gold_file.read_bytes() == before
    hard_link = tmp_path / "same-gold.jsonl"
    hard_link.hardlink_to(gold_file)  # another name of the same file: writing it wrote the gold
    assert ask_main(["--config", str(config), "--evaluate", str(gold_file), "--details", str(hard_link)]) == 2
    assert "--details must not be the gold file" in capsys.readouterr().err and gold_file.read_bytes() == before
    monkeypatch.chdir(tmp_path)
    assert ask_main(["--config", str(config), "--evaluate", str(gold_file), "--details", "-"]) == 2
    assert "--details needs a file name" in capsys.readouterr().err and not (tmp_path / "-").exists()  # it made "-"
    assert ask_main(["--config", str(config), "--evaluate", str(gold_file), "--model", str(tmp_path / "nope.gguf")]) == 2
    assert f"no such model file: {tmp_path / 'nope.gguf'}" in capsys.readouterr().err
    text = tmp_path / "notes.gguf"
    text.write_text("not a model", encoding="utf-8")
    assert ask_main(["--config", str(config), "--evaluate", str(gold_file), "--model", str(text)]) == 2
    assert "evaluate counts tokens with a GGUF model's tokenizer" in capsys.readouterr().err

# ---------------------------------------------------------------- counting context tokens


def test_no_cheap_tokenizer_without_a_gguf_model_file(tmp_path, tiny_ggml):
    assert llm_token_counter(Settings(llm=LLM(model_path=tmp_path / "absent.gguf"))) is None
    assert llm_token_counter(Settings(llm=LLM(model_path=tiny_ggml))) is None  # GGML: ctransformers loads weights


def test_cheap_tokenizer_counts_like_the_llama_cpp_backend(tiny_gguf):
    pytest.importorskip("llama_cpp")
    from docqa.llm.llama_cpp import LlamaCppLLM

    settings = Settings(llm=LLM(model_path=tiny_gguf, backend="llama-cpp"))
    count = llm_token_counter(settings)
    text = "Revenue was 120 million dollars.\n\nAcme employed 300 people."
    assert count is not None and count(text) == LlamaCppLLM(settings.llm, tiny_gguf).count_tokens(text) > 0


# ---------------------------------------------------------------- with the real embedding model

FACT_GOLD = [
    {"id": "f1", "doc": "alpha-annual-report.pdf", "question": "What is the minimum guarantee payable by adidas?",
     "pages": [1], "answers": ["seven hundred and fifty   MILLION"]},
    {"id": "f2", "doc": "beta-10k.pdf", "question": "What was capital expenditure for fiscal 2022?", "pages": [1]},
    {"id": "f3", "doc": "beta-10k.pdf", "question": "What quarterly dividend did the board declare?", "pages": [2],
     "answers": ["43 cents"]},  # the page says 42: never a hit
    {"id": "f4", "doc": "alpha-annual-report.pdf", "question": "How many people did Alpha employ?", "pages": [0, 2]},
    {"id": "f5", "doc": "beta-10k.pdf", "question": "What quarterly dividend did the board declare?", "pages": [0]},
]


def test_exact_recall_with_the_real_embedder(built_fact_index, tmp_path):
    gold_file = tmp_path / "facts.jsonl"
    gold_file.write_text("\n".join(json.dumps(item) for item in FACT_GOLD), encoding="utf-8")
    with DocQA(built_fact_index.settings, retrieval_only=True) as qa:
        result = evaluate(qa, gold_file, [1, 8], per_doc=True)
    # f1, f2, f4 first; f3 never; f5's gold page is in the index (6 chunks) but not first.
    assert (result["recall@1"], result["recall@8"]) == (0.6, 0.8)
    assert (result["per_doc"]["recall@1"], result["per_doc"]["recall@8"]) == (0.6, 0.8)
    assert result["documents_not_indexed"] == []


# Our own questions on the Manchester United report (eval/), checked against the report itself.
EVAL = Path(__file__).resolve().parents[1] / "eval"
MANU_REPORT = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "manu-20f-2022-09-24.pdf"


@pytest.mark.skipif(not MANU_REPORT.is_file(), reason="needs ../shared/corpus/manu-20f-2022-09-24.pdf")
@pytest.mark.parametrize("gold_file", sorted(path.name for path in EVAL.glob("manu_questions*.jsonl")))
def test_every_gold_page_of_our_questions_holds_an_answer_string(gold_file):
    questions = read_gold(EVAL / gold_file)
    assert len({question.id for question in questions}) == len(questions) >= 13
    assert {question.doc for question in questions} == {MANU_REPORT.name}
    assert_gold_pages_hold_an_answer(questions, {MANU_REPORT.name: folded_pages(MANU_REPORT)})


@functools.cache
def folded_pages(path: Path) -> list[str]:
    """A PDF's page texts, case and whitespace folded; read once per test session (the sets share documents)."""
    from docqa.documents import read_pages

    return [fold_text(page.text) for page in read_pages(path)]


def assert_gold_pages_hold_an_answer(questions, pages: dict[str, list[str]]) -> None:
    """Every gold page of every question (``pages``: each document's folded page texts) holds an answer string."""
    for question in questions:
        assert question.answers and question.pages, question.id
        for page in question.pages:
            assert page < len(pages[question.doc]), (question.id, page)
            assert any(fold_text(answer) in pages[question.doc][page] for answer in question.answers), (question.id, page)


# Our held-out questions on the FinanceBench filings (eval/filings_questions*.jsonl), checked against the filings.
FINANCEBENCH = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "financebench"


@pytest.mark.skipif(not FINANCEBENCH.is_dir() or not MANU_REPORT.is_file(), reason="needs ../shared/corpus/")
@pytest.mark.parametrize("gold_file", sorted(path.name for path in EVAL.glob("filings_questions*.jsonl")))
def test_every_gold_page_of_the_filings_questions_holds_an_answer_string(gold_file):
    questions = read_gold(EVAL / gold_file)
    assert len({question.id for question in questions}) == len(questions) >= 30
    docs = {question.doc for question in questions}
    assert len(docs) >= 12
    # The second set also asks six questions on the Manchester United report, which lies one folder up.
    paths = {doc: MANU_REPORT if doc == MANU_REPORT.name else FINANCEBENCH / doc for doc in docs}
    assert not [path for path in paths.values() if not path.is_file()]
    assert_gold_pages_hold_an_answer(questions, {doc: folded_pages(path) for doc, path in paths.items()})


def test_the_answer_benchmark_takes_the_demo_model_and_refuses_a_gold_file_it_cannot_find(tmp_path):
    """A typo in --gold said 'skipped' with exit 0 (as on a machine without the shared corpus), and --model demo,
    which docqa's own errors advise, was taken as a file named demo."""
    import subprocess
    import sys

    from docqa.checkout import CHECKOUT
    from tests.support.pdfs import write_pdf

    done = subprocess.run([sys.executable, str(CHECKOUT / "bench" / "answers.py"), "--model", "demo", "--gold",
                           str(tmp_path / "nosuch.jsonl"), "--corpus", str(tmp_path), "--out", str(tmp_path / "a.jsonl")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.splitlines()[-1].endswith(f"error: {tmp_path / 'nosuch.jsonl'} not found")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_pdf(corpus / "acme.pdf", ["Acme revenue was 150 million dollars."])
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "a", "doc": "acme.pdf", "question": "Acme revenue?", "pages": [0],
                                "answers": ["150 million"]}) + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(CHECKOUT / "bench" / "answers.py"), "--model", "demo", "--gold",
                           str(gold), "--corpus", str(corpus), "--out", str(tmp_path / "a.jsonl"),
                           "--max-new-tokens", "8"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "HOME": str(tmp_path)})  # its index cache, ~/.cache/docqa-bench
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["questions"] == 1
