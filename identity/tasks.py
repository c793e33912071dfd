"""Celery tasks: each takes an id, loads nothing itself and calls one service, imported inside
its body (the services import these tasks at module level: one rule in every app)."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

# Database hiccups are worth a retry; a photo that cannot be read is answered by the
# service itself with a refusal, so it never retries for ever.
_RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": 5,
}


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90, acks_late=True, **_RETRY)
def enrollment_photo_process_task(photo_id: int) -> str:
    from identity.services import enrollment_photo_process

    return enrollment_photo_process(photo_id=photo_id)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90, acks_late=True, **_RETRY)
def real_id_check_process_task(check_id: int) -> str:
    from identity.services import real_id_check_process

    return real_id_check_process(check_id=check_id)


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=180)
def enrollment_photos_purge_task() -> int:
    from identity.services import enrollment_photos_purge

    return enrollment_photos_purge()


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60, **_RETRY)
def sms_send_task(phone: str, text: str) -> None:
    """Texts go out from a worker, so a slow gateway is not on a request's clock (and the
    phone login answers known and unknown numbers in the same time)."""
    from identity.notify import send_sms

    send_sms(phone, text)


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=180)
def access_tokens_purge_task() -> int:
    from identity.services import access_tokens_purge

    return access_tokens_purge()
