"""Griffe extension: turn Sphinx cross-reference roles in docstrings into inline code for MkDocs.

The code's docstrings are reST (``:class:`~airflow_provider_klar.results.KlarBatchResult```), which
mkdocstrings' Sphinx-style parser reads for parameters but leaves roles as raw text. This renders
``:role:`~a.b.C``` as ```C``` and ``:role:`a.b.C``` as ```a.b.C```, and reST's double backticks as
Markdown's single ones.
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


def rewrite(text: str) -> str:
    """Return ``text`` with Sphinx roles and reST literals as Markdown inline code."""
    return _DOUBLE.sub(r"`\1`", _ROLE.sub(_role, text))


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring once, when its object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **_: Any) -> None:
        """Rewrite ``obj``'s docstring in place."""
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
