"""The each-doc table's file: written whole or not at all, with the rows done kept where the work is stopped."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, TextIO

from docqa.batch.writers import free_name, new_file_beside, open_for_writing, table_rows
from docqa.documents import shown
from docqa.errors import InputError
from docqa.signals import signals_held

log = logging.getLogger(__name__)


@contextmanager
def table_file(path: Optional[str], fmt: str, say: Callable[[str], None] = log.warning) -> Iterator[TextIO]:
    """stdout, or ``path`` written whole or not at all: the table goes to a new file beside it, renamed over it at
    the end. Stopped part way (a failure, Ctrl-C, kill, the terminal closed), ``path`` is as it was; when stopped,
    the rows done so far are kept in NAME.partial.ext (or NAME.partial-2.ext, ...: nothing is written over), since
    each of them may have taken the model minutes. ``say`` is told where (the command line prints it on stderr).
    Stopped means KeyboardInterrupt: the command line turns kill and a closed terminal into it around this."""
    if path is None:
        yield sys.stdout
        return
    target = Path(os.path.realpath(path))  # through a symbolic link to the file it names; the link stays
    temporary = new_file_beside(target)
    if temporary is None:  # a folder that takes no new file, holding a file that can be written: written in place
        say(f"note: {shown(str(target.parent))} takes no new file, so {shown(path)} is written in place: stopped "
            "part way, it holds the rows done by then")
        try:
            with open_for_writing(target, "w") as handle:
                yield handle
        except KeyboardInterrupt:
            say(_rows_kept(table_rows(target, fmt), f"{shown(path)}, written in place (its earlier table is gone)"))
            raise
        return
    try:
        with open_for_writing(temporary, "w") as handle:
            yield handle
    except KeyboardInterrupt:
        say(_keep_rows_done(temporary, target, fmt, path))
        raise
    except BaseException:
        _remove_quietly(temporary)
        raise
    _put_in_place(temporary, target)


def _rows_kept(rows: int, where: str) -> str:
    return f"the {rows} row{'s' if rows != 1 else ''} done so far {'are' if rows != 1 else 'is'} in {where}"


def _keep_rows_done(temporary: Path, target: Path, fmt: str, path: str) -> str:
    """After an interruption: the rows done so far moved to NAME.partial.ext (a free name); what to say of where
    they are. The temporary file is removed when there is none."""
    rows = table_rows(temporary, fmt)
    if not rows:
        _remove_quietly(temporary)
        return f"no document's row was finished; {shown(path)} is as it was"
    partial = free_name(target.with_name(f"{target.stem}.partial{target.suffix}"))
    try:
        os.replace(temporary, partial)
    except OSError as error:  # a name too long for the file system, say: the rows stay where they are
        return _rows_kept(rows, f"{shown(str(temporary))} ({shown(partial.name)} cannot be made: {error.strerror}); "
                                f"{shown(path)} is as it was")
    return _rows_kept(rows, f"{shown(str(partial))}; {shown(path)} is as it was")


def _put_in_place(temporary: Path, target: Path) -> None:
    """The finished table renamed over ``target``, with no signal between (it would leave the table in the
    temporary file); where the folder refuses the rename (a sticky folder, another owner's file), copied in."""
    with signals_held():
        try:
            os.replace(temporary, target)
            return
        except OSError:
            pass
        try:
            shutil.copyfile(temporary, target)
        except OSError as error:
            raise InputError(f"cannot write the table to {target}: {error.strerror}; it is in {temporary}") from None
        _remove_quietly(temporary)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
