"""Module docstrings as ``--help`` text: the docstrings use reStructuredText literals (``x``) for the
API docs; a terminal shows them plain."""

from __future__ import annotations

import re
import sys


def plain(doc: str | None) -> str:
    """``doc`` without reStructuredText markup: ``x`` -> x, and a trailing ``::`` -> ``:``."""
    text = re.sub(r"``([^`]+)``", r"\1", doc or "")
    return re.sub(r"::$", ":", text, flags=re.M)


def missing_paths(paths) -> str | None:
    """The one line a command prints (and exits 2 with) when some of its input paths do not exist."""
    missing = [str(p) for p in paths if not p.exists()]
    return f"no such file or directory: {', '.join(missing)}" if missing else None


def report_missing(command: str, paths) -> bool:
    """Print ``av-td3 COMMAND: no such file or directory: ...`` to stderr when some of ``paths`` do not
    exist; whether it did (the command then exits 2)."""
    missing = missing_paths(paths)
    if missing:
        print(f"av-td3 {command}: {missing}", file=sys.stderr)
    return missing is not None
