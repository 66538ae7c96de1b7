"""Every path into a nested record, for tests that damage records at random places."""

from __future__ import annotations

from typing import Any


def paths_in(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Return the path of ``value`` itself (``prefix``) and of every value nested in its dicts and lists.

    :param value: A record or any part of one.
    :param prefix: The path of ``value``.
    """
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_in(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths_in(child, (*prefix, index))
    return found
