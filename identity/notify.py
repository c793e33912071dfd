"""Text messages to people, through a backend chosen by SMS_BACKEND.

Generic on purpose: enrollment login codes use it today, parcel notifications later. A
backend is any class with `send(phone, text)`; a real gateway goes in its own module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


class SmsBackend(Protocol):
    def send(self, phone: str, text: str) -> None: ...


class ConsoleSmsBackend:
    """Development: the message goes to the log, where the person running the demo reads it."""

    def send(self, phone: str, text: str) -> None:
        logger.info("SMS to %s: %s", phone, text)


@dataclass(frozen=True)
class SentSms:
    phone: str
    text: str


outbox: list[SentSms] = []


class LocmemSmsBackend:
    """Tests: messages are appended to `identity.notify.outbox`."""

    def send(self, phone: str, text: str) -> None:
        outbox.append(SentSms(phone=phone, text=text))


@lru_cache(maxsize=4)
def _backend(path: str) -> SmsBackend:
    backend: SmsBackend = import_string(path)()
    return backend


def send_sms(phone: str, text: str) -> None:
    """Send now. Callers inside a transaction wrap this in `transaction.on_commit`."""
    _backend(settings.SMS_BACKEND).send(phone, text)
