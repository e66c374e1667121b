"""Many questions, one loaded model.

- ``questions``: batch files in (text, JSONL, CSV) and the ``Question`` type;
- ``run``: answering them one record at a time (``iter_batch``), and resumable runs into a file (``run_batch``);
- ``each_doc``: the per-document table (``run_each_doc``);
- ``writers``: the output formats, chosen by file extension.
"""

from docqa.batch.each_doc import each_doc_documents, iter_each_doc, run_each_doc
from docqa.batch.questions import Question, QuestionLike, as_questions, read_questions
from docqa.batch.run import BatchOutput, BatchSummary, answer_record, iter_batch, run_batch
from docqa.batch.writers import CSV_COLUMNS, RECORD_FORMATS, TABLE_FORMATS, csv_row, open_for_writing, table_format

__all__ = [
    "CSV_COLUMNS", "RECORD_FORMATS", "TABLE_FORMATS", "BatchOutput", "BatchSummary", "Question", "QuestionLike",
    "answer_record", "as_questions", "csv_row", "each_doc_documents", "iter_batch", "iter_each_doc",
    "open_for_writing", "read_questions", "run_batch", "run_each_doc", "table_format",
]
