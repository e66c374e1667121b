"""The checkout that main.py, db_build.py and download_model.py belong to: their project folder.

They put its src/ first on sys.path, so this module is its src/docqa/checkout.py. Only they take it for their
project (docqa.cli); the library never does: in an installed docqa it is a folder inside the environment.
Kept apart from docqa.settings so that ``python main.py --help`` needs neither it nor pydantic.
"""

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
