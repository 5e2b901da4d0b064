"""Read the Python code blocks of a Markdown page by the heading they stand under, to run them as written."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_HEADING = re.compile(r"^#{1,6} (.+)$", re.M)


def snippets(page: str) -> dict[str, str]:
    """Heading text -> the code of the (first) python block under it, for ``docs/<page>``."""
    text = (DOCS / page).read_text()
    out: dict[str, str] = {}
    headings = [(m.start(), m.group(1).strip()) for m in _HEADING.finditer(text)]
    for m in _BLOCK.finditer(text):
        title = max((h for h in headings if h[0] < m.start()), default=(0, ""))[1]
        out.setdefault(title, m.group(1))
    return out


def snippet(page: str, heading: str) -> str:
    """The code under ``heading`` in ``docs/<page>``; KeyError lists the headings if it is not there."""
    found = snippets(page)
    if heading not in found:
        raise KeyError(f"no python block under {heading!r} in {page}; have {sorted(found)}")
    return found[heading]
