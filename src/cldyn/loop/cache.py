"""The frozen halves of the closed loop, kept per batch.

The VFN and the task networks are frozen, so for a given crop the base fusion's task features and loss, another
task network's features of it, and (when only the tone head trains) the frozen blocks' compensation never change.
With ``--cache-batches N`` each task's stream cycles through its first N batches and these are computed once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


class FrozenPassCache:
    """Results of frozen passes by ``(kind, key)``; a disabled cache computes every time and keeps nothing.

    Example:
        >>> cache, calls = FrozenPassCache(enabled=True), []
        >>> cache.get("base", ("saliency", 0), lambda: calls.append(1) or 42)
        42
        >>> cache.get("base", ("saliency", 0), lambda: calls.append(1) or 42), len(calls)
        (42, 1)
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._kept: dict[tuple[str, Hashable], object] = {}

    def get(self, kind: str, key: Hashable, compute: Callable[[], T]) -> T:
        """The kept result of ``kind`` for ``key``, else ``compute()`` (kept when the cache is enabled)."""
        found = self._kept.get((kind, key))
        if found is None:
            found = compute()
            if self.enabled:
                self._kept[(kind, key)] = found
        return found  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._kept)


__all__ = ["FrozenPassCache"]
