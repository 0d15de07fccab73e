"""A token provider test double: answers `Bearer token-<n>` and moves to the next token on invalidate."""

from __future__ import annotations


class CountingTokens:
    def __init__(self, *, first: int = 1) -> None:
        self.generation = first
        self.invalidations = 0

    def authorization(self) -> str:
        return f"Bearer token-{self.generation}"

    def invalidate(self) -> None:
        self.invalidations += 1
        self.generation += 1
