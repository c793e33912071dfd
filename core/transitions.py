"""The shared shape of our explicit state machines: a map of allowed moves."""

from __future__ import annotations

from collections.abc import Mapping

from django.db.models import Choices
from django.utils.translation import gettext

from core.errors import InvalidTransition


def _shown(value: str, choices: type[Choices] | None) -> str:
    """A state as people read it: its label when the caller passed a choices member."""
    if choices is not None:
        try:
            return str(choices(value).label)
        except ValueError:
            pass
    return str(value)


def check_transition(
    transitions: Mapping[str, frozenset[str]], *, kind: str, current: str, target: str
) -> None:
    if target not in transitions.get(current, frozenset()):
        choices = type(target) if isinstance(target, Choices) else None
        raise InvalidTransition(
            # The kind is a model's verbose name ("cabinet"), in the catalogue already.
            gettext("A %(kind)s cannot go from %(current)r to %(target)r.")
            % {
                "kind": gettext(kind),
                "current": _shown(current, choices),
                "target": _shown(target, choices),
            },
            details={"from": str(current), "to": str(target)},
        )
