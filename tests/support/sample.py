"""The sample document a fresh clone indexes (data/sample/, shipped as a file): a short, invented annual report.

``python -m tests.support.sample`` writes it again to the data folder's sample/ with the tests' PDF writer.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.pdfs import write_pdf

SAMPLE_NAME = "northwind-annual-report-2023.pdf"
SAMPLE_QUESTION = "How much is the minimum guarantee payable by Apex Sportswear?"

PAGES = [
    "Northwind Athletic Club plc\nAnnual Report 2023\n\nAn invented company. This sample document lets docqa run end to end "
    "on a fresh clone; replace it with your own PDF files in the data folder.",
    "Financial highlights\n\nRevenue for the year ended 30 June 2023 was £412.6 million, an increase of 8% on the prior year. "
    "Operating profit was £38.2 million. Net debt at the year end stood at £96.4 million. "
    "The Board proposes a final dividend of 4.5 pence per share.",
    "Commercial partnerships\n\nOur ten-year kit agreement with Apex Sportswear began on 1 July 2021. "
    "The minimum guarantee payable by Apex Sportswear is £120 million over the term of the agreement, "
    "subject to certain reductions if the first team fails to qualify for European competition for two "
    "or more consecutive seasons.",
    "Employees\n\nAt 30 June 2023 the group employed 1,240 people, of whom 310 were players, coaches and "
    "academy staff. Staff costs for the year were £221.0 million.",
    "Consolidated income statement (£ million)\n\nRevenue 412.6 382.1\nOperating expenses (374.4) (351.7)\n"
    "Operating profit 38.2 30.4\nFinance costs (12.9) (14.3)\nProfit before tax 25.3 16.1",
]


def write_sample(folder: Path) -> Path:
    path = folder / SAMPLE_NAME
    folder.mkdir(parents=True, exist_ok=True)
    write_pdf(path, PAGES, title="Northwind Athletic Club plc Annual Report 2023")
    return path


if __name__ == "__main__":
    from docqa.settings import load_settings

    settings = load_settings(sys.argv[1] if len(sys.argv) > 1 else None)
    print(write_sample(settings.path(settings.paths.data) / "sample"))
