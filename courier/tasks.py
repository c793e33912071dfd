"""Celery tasks of the parcel flows: each takes ids, imports its service inside its body (the
services import these tasks at module level) and calls it."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone


@shared_task(
    ignore_result=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=5,
    soft_time_limit=30,
    time_limit=60,
)
def parcel_notify_task(parcel_id: int, kind: str, code: str = "") -> int:
    from courier.notifications import parcel_notify

    return parcel_notify(parcel_id=parcel_id, kind=kind, code=code)


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=180)
def parcels_remind_task() -> int:
    from courier.models import NotificationKind
    from courier.selectors import parcels_due_for_reminder

    before = timezone.now() + timedelta(hours=settings.PARCEL_REMINDER_BEFORE_H)
    ids = list(parcels_due_for_reminder(before=before).values_list("pk", flat=True))
    for parcel_id in ids:
        parcel_notify_task.delay(parcel_id, NotificationKind.REMINDER)
    return len(ids)


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=180)
def parcels_expire_task() -> int:
    from courier.services.deadlines import parcels_expire

    return parcels_expire()


# Face work is slow (about 0.2 s) and never runs in the consumer or inside a transaction.
# Acknowledged after it ran: a worker that dies mid-match (a crash, an OOM kill) leaves the
# message to run again on another worker (at once when a pool child dies; after the broker's
# visibility timeout when the whole worker does). Running twice is harmless: a scan is
# decided once, by its AccessAttempt row (courier.access.faces.face_scan_answer).
@shared_task(
    ignore_result=True,
    soft_time_limit=20,
    time_limit=30,
    acks_late=True,
    reject_on_worker_lost=True,
)
def face_scan_task(
    cabinet_id: int, scan_id: str, purpose: str, image_b64: str, light_on: bool, taken_at: str
) -> str:
    from courier.access.faces import face_scan_answer

    return face_scan_answer(
        cabinet_id=cabinet_id,
        scan_id=scan_id,
        purpose=purpose,
        image_b64=image_b64,
        light_on=light_on,
        taken_at=taken_at,
    )


# The liveness check of a burst (protocol 1.2): dlib on every frame, about 1-3 s. Acknowledged
# late like face_scan_task; running twice is harmless (the challenge is claimed by this burst
# id, frame hashes are this burst's, and the answer is decided once by its AccessAttempt).
@shared_task(
    ignore_result=True,
    soft_time_limit=45,
    time_limit=60,
    acks_late=True,
    reject_on_worker_lost=True,
)
def face_burst_task(
    cabinet_id: int,
    burst_id: str,
    challenge_id: str,
    nonce: str,
    frames: list[list[object]],
    light_on: bool,
    taken_at: str,
) -> str:
    from courier.access.face_bursts import face_burst_answer

    return face_burst_answer(
        cabinet_id=cabinet_id,
        burst_id=burst_id,
        challenge_id=challenge_id,
        nonce=nonce,
        frames=[(int(str(t)), str(b64)) for t, b64 in frames],
        light_on=light_on,
        taken_at=taken_at,
    )


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=180)
def face_challenges_purge_task() -> int:
    from courier.access.face_bursts import face_challenges_purge

    return face_challenges_purge(
        before=timezone.now() - timedelta(days=settings.FACE_BURST_MEMORY_DAYS)
    )
