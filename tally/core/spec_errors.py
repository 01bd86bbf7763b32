"""The errors of spec validation: one line per problem, all found in one pass.

A section parser (:mod:`tally.core.spec_sources`, :mod:`tally.core.spec_metrics`)
raises :class:`Problem` at the first problem of one source or metric; the caller
collects them, so a spec with several broken entries names each of them once, in a
single :class:`SpecError`.
"""

from __future__ import annotations

from collections.abc import Callable


class SpecError(ValueError):
    """The spec file is invalid: one line per problem, each naming the file, source or metric, and field."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class Problem(Exception):
    """One problem found while parsing one source or metric (collected into a SpecError)."""


# Builds the Problem of one field (its first argument) of the entry being parsed.
Fail = Callable[[str, str], Problem]
