"""Messages to recipients about their parcels, to the contact the parcel's own carrier gave:
SMS to its recipient phone always, email to its recipient email when that carrier gave one.
Nothing here reads contact data from the shared person record, which no carrier writes.
An enrollment link goes only by SMS, and redeeming it still asks for a code texted to that
phone: an email address, whoever gave it, never leads to enrolling a face."""

from __future__ import annotations

import logging
import zoneinfo

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import timezone

from courier.models import Notification, NotificationKind, Parcel
from identity.notify import send_sms

logger = logging.getLogger(__name__)

EXTEND_SALT = "parcel-extend"


def extension_token(parcel: Parcel) -> str:
    return signing.dumps({"parcel": parcel.pk}, salt=EXTEND_SALT)


def parcel_from_extension_token(token: str, *, max_age_s: int) -> int | None:
    try:
        return int(signing.loads(token, salt=EXTEND_SALT, max_age=max_age_s)["parcel"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None


def _absolute(path: str) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + path


def _deadline_text(parcel: Parcel) -> str:
    if parcel.pickup_deadline is None:
        return ""
    local = timezone.localtime(parcel.pickup_deadline, zoneinfo.ZoneInfo(parcel.cabinet.time_zone))
    return local.strftime("%Y-%m-%d %H:%M")


def message_text(*, parcel: Parcel, kind: str, code: str = "", channel: str = "sms") -> str:
    from identity.selectors import identity_has_face
    from identity.services import enrollment_link

    where = f"{parcel.cabinet.name}, {parcel.cabinet.address}"
    extend = _absolute(reverse("parcel-extend", args=[extension_token(parcel)]))
    if kind == NotificationKind.READY:
        if identity_has_face(identity=parcel.recipient):
            face = "You can also open it with a face scan at the cabinet."
        elif channel == "sms":
            face = "Skip the code next time: " + _absolute(
                enrollment_link(identity=parcel.recipient)
            )
        else:
            face = "Skip the code next time: set up face pickup from the link in our text message."
        return (
            f"Parcel {parcel.tracking_number} from {parcel.carrier.name} is ready at {where}. "
            f"Pickup code: {code}. Collect it by {_deadline_text(parcel)}. {face} "
            f"Need more time? {extend}"
        )
    if kind == NotificationKind.REMINDER:
        return (
            f"Reminder: parcel {parcel.tracking_number} waits for you at {where} until "
            f"{_deadline_text(parcel)}. Use the pickup code from our first message, or your face. "
            f"Need more time? {extend}"
        )
    return (
        f"Parcel {parcel.tracking_number} was not collected in time and goes back to "
        f"{parcel.carrier.name}."
    )


def parcel_notify(*, parcel_id: int, kind: str, code: str = "") -> int:
    """Send one kind of message for a parcel, once per channel, however often it is called."""
    parcel = Parcel.objects.select_related("recipient", "cabinet", "carrier").get(pk=parcel_id)
    channels = [("sms", parcel.recipient_phone or parcel.recipient.phone)]
    if parcel.recipient_email:
        channels.append(("email", parcel.recipient_email))
    sent = 0
    for channel, to in channels:
        notification, _ = Notification.objects.get_or_create(
            parcel=parcel, kind=kind, channel=channel, defaults={"to": to}
        )
        if notification.sent_at is not None:
            continue
        text = message_text(parcel=parcel, kind=kind, code=code, channel=channel)
        # No transaction around the send: a slow gateway must not hold database locks.
        try:
            if channel == "sms":
                send_sms(to, text)
            else:
                send_mail(f"Your parcel {parcel.tracking_number}", text, None, [to])
        except Exception as exc:
            Notification.objects.filter(pk=notification.pk).update(error=str(exc)[:255])
            logger.warning("notification %s failed: %s", notification.pk, type(exc).__name__)
            raise
        Notification.objects.filter(pk=notification.pk).update(sent_at=timezone.now(), error="")
        sent += 1
    return sent
