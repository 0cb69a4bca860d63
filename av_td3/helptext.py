"""Module docstrings as ``--help`` text: the docstrings use reStructuredText literals (``x``) for the
API docs; a terminal shows them plain."""

from __future__ import annotations

import re


def plain(doc: str | None) -> str:
    """``doc`` without reStructuredText markup: ``x`` -> x, and a trailing ``::`` -> ``:``."""
    text = re.sub(r"``([^`]+)``", r"\1", doc or "")
    return re.sub(r"::$", ":", text, flags=re.M)
