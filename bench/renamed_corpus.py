"""The corpus under the names users' files have: a folder of symlinks outside the repository, and gold files to match.

FinanceBench names its filings ``COMPANY_YEAR_FORM.pdf``; files saved from EDGAR are named by ticker and period end
(``nke-20190531.pdf``), and files people keep are named anything (``Annual Report 2022.pdf``, ``10-K (2).pdf``). docqa
must not lean on the benchmark's naming, so its retrieval is measured on both. The mapping below was written by
reading each filing's cover page (registrant, trading symbol, the period or report date); it is test data, not
product logic. Earnings releases get the names EDGAR gives exhibits, a few 10-Ks the names people give downloads.

    .venv/bin/python bench/renamed_corpus.py [--corpus ../shared/corpus] [--out ~/.cache/docqa-bench/renamed]

writes OUT/corpus/ (symlinks to the original PDFs) and OUT/<gold name> for every gold file given with --gold
(default: ../shared/eval/financebench_dev.jsonl and eval/manu_questions.jsonl), with ``doc`` renamed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from measure import CACHE, CORPUS, GOLD, REPO

RENAMED = {
    "3M_2018_10K.pdf": "mmm-20181231.pdf",
    "3M_2022_10K.pdf": "mmm-20221231.pdf",
    "ACTIVISIONBLIZZARD_2019_10K.pdf": "atvi-20191231.pdf",
    "ADOBE_2022_10K.pdf": "adbe-20221202.pdf",
    "AMAZON_2017_10K.pdf": "amzn-20171231.pdf",
    "AMAZON_2019_10K.pdf": "amzn-20191231.pdf",
    "AMCOR_2022_8K_dated-2022-07-01.pdf": "amcr-20220701.pdf",
    "AMCOR_2023Q2_10Q.pdf": "amcr-20221231.pdf",
    "AMCOR_2023Q4_EARNINGS.pdf": "exhibit99-1.pdf",
    "AMCOR_2023_10K.pdf": "amcr-20230630.pdf",
    "AMERICANEXPRESS_2022_10K.pdf": "axp-20221231.pdf",
    "BESTBUY_2017_10K.pdf": "bby-20170128.pdf",
    "BESTBUY_2019_10K.pdf": "bby-20190202.pdf",
    "BESTBUY_2023_10K.pdf": "bby-20230128.pdf",
    "BESTBUY_2024Q2_10Q.pdf": "bby-20230729.pdf",
    "BLOCK_2016_10K.pdf": "sq-20161231.pdf",
    "BLOCK_2020_10K.pdf": "sq-20201231.pdf",
    "BOEING_2018_10K.pdf": "ba-20181231.pdf",
    "BOEING_2022_10K.pdf": "ba-20221231.pdf",
    "CORNING_2022_10K.pdf": "glw-20221231.pdf",
    "COSTCO_2021_10K.pdf": "cost-20210829.pdf",
    "CVSHEALTH_2022_10K.pdf": "cvs-20221231.pdf",
    "FOOTLOCKER_2022_8K_dated-2022-05-20.pdf": "fl-20220520.pdf",
    "FOOTLOCKER_2022_8K_dated_2022-08-19.pdf": "fl-20220819.pdf",
    "GENERALMILLS_2019_10K.pdf": "gis-20190526.pdf",
    "JOHNSON_JOHNSON_2022Q4_EARNINGS.pdf": "exhibit99-1 (1).pdf",
    "JOHNSON_JOHNSON_2022_10K.pdf": "jnj-20230101.pdf",
    "JOHNSON_JOHNSON_2023_8K_dated-2023-08-30.pdf": "jnj-20230830.pdf",
    "MGMRESORTS_2022Q4_EARNINGS.pdf": "ex99-1.pdf",
    "MGMRESORTS_2023Q2_10Q.pdf": "mgm-20230630.pdf",
    "MICROSOFT_2016_10K.pdf": "msft-20160630.pdf",
    "MICROSOFT_2023_10K.pdf": "10-K.pdf",
    "NETFLIX_2015_10K.pdf": "nflx-20151231.pdf",
    "NETFLIX_2017_10K.pdf": "10-K (2).pdf",
    "NIKE_2018_10K.pdf": "nke-20180531.pdf",
    "NIKE_2019_10K.pdf": "nke-20190531.pdf",
    "NIKE_2021_10K.pdf": "nke-20210531.pdf",
    "PEPSICO_2022_10K.pdf": "pep-20221231.pdf",
    "PEPSICO_2023Q1_EARNINGS.pdf": "press-release.pdf",
    "PEPSICO_2023_8K_dated-2023-05-05.pdf": "pep-20230503.pdf",
    "PEPSICO_2023_8K_dated-2023-05-30.pdf": "pep-20230526.pdf",
    "PFIZER_2021_10K.pdf": "pfe-20211231.pdf",
    "Pfizer_2023Q2_10Q.pdf": "pfe-20230702.pdf",
    "ULTABEAUTY_2023Q4_EARNINGS.pdf": "ulta-20230309-ex991.pdf",
    "VERIZON_2021_10K.pdf": "Annual Report 2021.pdf",
    "VERIZON_2022_10K.pdf": "Annual Report 2022.pdf",
    "manu-20f-2022-09-24.pdf": "manu-20220630.pdf",
}
DEFAULT_OUT = CACHE / "renamed"
MANU_GOLD = REPO / "eval" / "manu_questions.jsonl"


def make_renamed_corpus(corpus: Path, out: Path) -> Path:
    """OUT/corpus holding one symlink per PDF of ``corpus``, under its new name; returns that folder."""
    folder = out / "corpus"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        stale.unlink()
    originals = {path.name: path for path in corpus.rglob("*.pdf")}
    unmapped = sorted(set(originals) - set(RENAMED))
    if unmapped:
        sys.exit(f"no new name for: {', '.join(unmapped)}")
    if len(set(RENAMED.values())) != len(RENAMED):
        sys.exit("two files would get the same name")
    for name, path in originals.items():
        (folder / RENAMED[name]).symlink_to(path.resolve())
    return folder


def rename_gold(gold: Path, out: Path) -> Path:
    """The gold file with each ``doc`` under its new name, written to OUT/<its name>."""
    target = out / gold.name
    lines = []
    for line in gold.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            item["doc"] = RENAMED[item["doc"]]
            lines.append(json.dumps(item, ensure_ascii=False))
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--gold", type=Path, action="append", help="gold file to rename (repeatable)")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        print(f"skipped: {args.corpus} not found")
        return 0
    folder = make_renamed_corpus(args.corpus, args.out)
    print(f"corpus: {folder} ({len(list(folder.iterdir()))} files)")
    for gold in args.gold or [g for g in (GOLD, MANU_GOLD) if g.is_file()]:
        print(f"gold: {rename_gold(gold, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
