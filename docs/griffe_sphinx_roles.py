"""Griffe extension: turn Sphinx cross-reference roles in docstrings into inline code for MkDocs.

The code's docstrings are reST (``:class:`~airflow_provider_klar.results.KlarBatchResult```), which
mkdocstrings' Sphinx-style parser reads for parameters but leaves roles as raw text. This renders
``:role:`~a.b.C``` as ```C``` and ``:role:`a.b.C``` as ```a.b.C```, and reST's double backticks as
Markdown's single ones; a reST literal block (a paragraph ending in ``::`` followed by an indented
block) becomes a fenced code block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:meth|class|func|attr|mod|exc|data|obj|const|ref):`(~?)([^`<]+?)(?:\s*<[^>]+>)?`"
)
_DOUBLE = re.compile(r"``([^`]+)``")


def _role(match: re.Match[str]) -> str:
    target = match[2].strip()
    return f"`{target.rsplit('.', 1)[-1] if match[1] else target}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _literal_blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::"):
            out.append(line)
            i += 1
            continue
        head = line.rstrip()[:-2].rstrip()
        base = _indent(line)
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        block_start = j
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
            j += 1
        block = lines[block_start:j]
        while block and not block[-1].strip():
            block.pop()
        if not block:
            out.append(line)
            i += 1
            continue
        strip = min(_indent(b) for b in block if b.strip())
        if head.strip():
            out += [head + ":", ""]
        out += [" " * base + "```python", *(" " * base + b[strip:] for b in block), " " * base + "```", ""]
        i = j
    return "\n".join(out)


def rewrite(text: str) -> str:
    """Return ``text`` with Sphinx roles, reST literals and literal blocks as Markdown."""
    return _literal_blocks(_DOUBLE.sub(r"`\1`", _ROLE.sub(_role, text)))


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring once, when its object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **_: Any) -> None:
        """Rewrite ``obj``'s docstring in place."""
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
