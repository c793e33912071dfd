"""The shared shape of our explicit state machines: a map of allowed moves."""

from __future__ import annotations

from collections.abc import Mapping

from core.errors import InvalidTransition


def check_transition(
    transitions: Mapping[str, frozenset[str]], *, kind: str, current: str, target: str
) -> None:
    if target not in transitions.get(current, frozenset()):
        raise InvalidTransition(
            f"A {kind} cannot go from {current!r} to {target!r}.",
            details={"from": current, "to": target},
        )
