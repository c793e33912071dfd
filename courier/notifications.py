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
from django.utils import timezone, translation
from django.utils.translation import gettext

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
    """In the recipient's language: a text message has no browser to choose one."""
    with translation.override(recipient_language(parcel=parcel)):
        return _message_text(parcel=parcel, kind=kind, code=code, channel=channel)


def recipient_language(*, parcel: Parcel) -> str:
    """The recipient's own choice, else the platform's RECIPIENT_LANGUAGE_CODE."""
    return parcel.recipient.language or settings.RECIPIENT_LANGUAGE_CODE


def message_subject(*, parcel: Parcel) -> str:
    with translation.override(recipient_language(parcel=parcel)):
        return gettext("Your parcel %(tracking)s") % {"tracking": parcel.tracking_number}


def _message_text(*, parcel: Parcel, kind: str, code: str, channel: str) -> str:
    from identity.selectors import identity_has_face
    from identity.services import enrollment_link

    values = {
        "tracking": parcel.tracking_number,
        "carrier": parcel.carrier.name,
        "where": f"{parcel.cabinet.name}, {parcel.cabinet.address}",
        "deadline": _deadline_text(parcel),
        "extend": _absolute(reverse("parcel-extend", args=[extension_token(parcel)])),
        "code": code,
    }
    if kind == NotificationKind.READY:
        if identity_has_face(identity=parcel.recipient):
            face = gettext("You can also open it with a face scan at the cabinet.")
        elif channel == "sms":
            face = gettext("Skip the code next time: %(link)s") % {
                "link": _absolute(enrollment_link(identity=parcel.recipient))
            }
        else:
            face = gettext(
                "Skip the code next time: set up face pickup from the link in our text message."
            )
        return (
            gettext(
                "Parcel %(tracking)s from %(carrier)s is ready at %(where)s. "
                "Pickup code: %(code)s. Collect it by %(deadline)s."
            )
            % values
            + f" {face} "
            + gettext("Need more time? %(extend)s") % values
        )
    if kind == NotificationKind.REMINDER:
        return (
            gettext(
                "Reminder: parcel %(tracking)s waits for you at %(where)s until %(deadline)s. "
                "Use the pickup code from our first message, or your face."
            )
            % values
            + " "
            + gettext("Need more time? %(extend)s") % values
        )
    return (
        gettext("Parcel %(tracking)s was not collected in time and goes back to %(carrier)s.")
        % values
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
                send_mail(message_subject(parcel=parcel), text, None, [to])
        except Exception as exc:
            Notification.objects.filter(pk=notification.pk).update(error=str(exc)[:255])
            logger.warning("notification %s failed: %s", notification.pk, type(exc).__name__)
            raise
        Notification.objects.filter(pk=notification.pk).update(sent_at=timezone.now(), error="")
        sent += 1
    return sent
