"""A cabinet's link credential: issued once at provisioning, rotated, revoked. Only hashes are
stored; an open socket whose credential stops being valid is closed after commit (4401 when
rotated, 4403 when revoked: protocol §1). The close names the credential it is about: a
cabinet that already reconnected with its new credential keeps that link.

Two ways to replace a credential: `cabinet_credential_issue` revokes the old one at once and
shows the new one to the operator (provisioning, a stolen key with `cabinet_credential_revoke`);
`cabinet_credentials_rotate` delivers the new one over the open link and keeps the old one
valid until the cabinet connects with the new one (protocol §17)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cabinet_agent import protocol
from cabinets.keys import secret_seal, signing_key_for
from cabinets.models import (
    COMMAND_OPEN_STATUSES,
    Cabinet,
    CabinetCommand,
    CabinetCredential,
    CommandAction,
    CommandStatus,
)
from cabinets.push import push_after_commit, push_many_after_commit
from cabinets.services.commands import command_issue
from core.actors import Actor

logger = logging.getLogger(__name__)


def _revoke_message(*, reason: str, key_ids: list[str]) -> dict[str, Any]:
    # key_id: only links authenticated with this credential close (protocol §1, rotation).
    # Both sides of an overlap revoked at once: no key_id, every link of the cabinet closes.
    message = {"type": "link.revoke", "reason": reason}
    return {**message, "key_id": key_ids[0]} if len(key_ids) == 1 else message


@dataclass(frozen=True)
class IssuedCredential:
    """Shown once to the operator who provisions the cabinet; only hashes are kept."""

    cabinet_id: int
    serial: str
    credential: str
    signing_key_hex: str


def cabinet_credential_issue(*, cabinet: Cabinet, actor: Actor) -> IssuedCredential:
    """Issue a new credential; any active one is revoked (this is also rotation)."""
    credential, key_id, secret_hash = protocol.new_credential()
    with transaction.atomic():
        # Locking the cabinet serialises two rotations: one active credential at most.
        Cabinet.objects.select_for_update().filter(pk=cabinet.pk).first()
        for old_key_ids in _active_revoke(cabinet_ids=[cabinet.pk], reason="rotated").values():
            push_after_commit(cabinet.pk, _revoke_message(reason="rotated", key_ids=old_key_ids))
        CabinetCredential.objects.create(
            cabinet=cabinet, key_id=key_id, secret_hash=secret_hash, **actor.event_fields()
        )
    return IssuedCredential(
        cabinet_id=cabinet.pk,
        serial=cabinet.serial,
        credential=credential,
        signing_key_hex=signing_key_for(key_id).hex(),
    )


def cabinet_credentials_issue_bulk(
    *, cabinets: list[Cabinet], actor: Actor
) -> list[IssuedCredential]:
    """cabinet_credential_issue for many cabinets in a few queries (a fleet import, a
    simulation): active credentials are revoked and their open links closed after commit."""
    ids = [cabinet.pk for cabinet in cabinets]
    issued: list[IssuedCredential] = []
    with transaction.atomic():
        # Locked in primary-key order, like cabinet_credential_issue one at a time: at most
        # one active credential per cabinet even against a concurrent rotation.
        list(Cabinet.objects.select_for_update().filter(pk__in=ids).order_by("pk").values("pk"))
        rotated = _active_revoke(cabinet_ids=ids, reason="rotated")
        rows = []
        for cabinet in cabinets:
            credential, key_id, secret_hash = protocol.new_credential()
            rows.append(
                CabinetCredential(
                    cabinet=cabinet, key_id=key_id, secret_hash=secret_hash, **actor.event_fields()
                )
            )
            issued.append(
                IssuedCredential(
                    cabinet_id=cabinet.pk,
                    serial=cabinet.serial,
                    credential=credential,
                    signing_key_hex=signing_key_for(key_id).hex(),
                )
            )
        CabinetCredential.objects.bulk_create(rows, batch_size=1000)
        push_many_after_commit(
            {
                cabinet_id: _revoke_message(reason="rotated", key_ids=old_key_ids)
                for cabinet_id, old_key_ids in rotated.items()
            }
        )
    return issued


def cabinet_credential_revoke(*, cabinet: Cabinet, actor: Actor, reason: str) -> int:
    with transaction.atomic():
        revoked = _active_revoke(cabinet_ids=[cabinet.pk], reason=reason[:255] or "revoked")
        key_ids = revoked.get(cabinet.pk, [])
        if key_ids:
            logger.warning("credential of cabinet %s revoked by %s", cabinet.serial, actor.label)
            push_after_commit(cabinet.pk, _revoke_message(reason="revoked", key_ids=key_ids))
    return len(key_ids)


def _active_revoke(*, cabinet_ids: list[int], reason: str) -> dict[int, list[str]]:
    """Revoke the active credentials of these cabinets (two during a rotation's overlap);
    cabinet id -> the key ids revoked. The caller holds the cabinets' locks."""
    active = CabinetCredential.objects.filter(cabinet_id__in=cabinet_ids, revoked_at__isnull=True)
    revoked: dict[int, list[str]] = {}
    for cabinet_id, key_id in active.values_list("cabinet_id", "key_id"):
        revoked.setdefault(cabinet_id, []).append(key_id)
    active.update(revoked_at=timezone.now(), revoked_reason=reason)
    return revoked


@dataclass(frozen=True)
class RotationStarted:
    cabinet_id: int
    key_id: str
    # Until then the replaced credential is accepted, unless the cabinet switches earlier.
    old_valid_until: datetime | None


def _rotate_commands_close(*, cabinet_id: int, key_ids: list[str], status: str) -> int:
    """Finish the open `credential_rotate` commands delivering these keys (compare-and-set on
    the open statuses: a result that came first wins)."""
    if not key_ids:
        return 0
    return CabinetCommand.objects.filter(
        cabinet_id=cabinet_id,
        action=CommandAction.CREDENTIAL_ROTATE,
        status__in=COMMAND_OPEN_STATUSES,
        payload__key_id__in=key_ids,
    ).update(status=status, completed_at=timezone.now())


def _rotate_one(cabinet: Cabinet, *, actor: Actor, now: datetime) -> RotationStarted:
    overlap = timedelta(seconds=settings.CABINET_CREDENTIAL_OVERLAP_S)
    valid = list(
        CabinetCredential.objects.filter(cabinet=cabinet, revoked_at__isnull=True).exclude(
            expires_at__lte=now
        )
    )
    # Expired but never revoked (the overlap ran out): revoked now, for the record.
    CabinetCredential.objects.filter(
        cabinet=cabinet, revoked_at__isnull=True, expires_at__lte=now
    ).update(revoked_at=now, revoked_reason="overlap expired")
    retiring = next((c for c in valid if c.expires_at is not None), None)
    current = next((c for c in valid if c.expires_at is None), None)
    old: CabinetCredential | None
    if retiring is not None and current is not None:
        # A second rotation during the overlap: the cabinet never connected with `current`,
        # so it still holds `retiring`. `current` is withdrawn and the new credential
        # replaces `retiring`, whose deadline does not move.
        current.revoked_at, current.revoked_reason = now, "superseded before use"
        current.save(update_fields=["revoked_at", "revoked_reason"])
        _rotate_commands_close(
            cabinet_id=cabinet.pk, key_ids=[current.key_id], status=CommandStatus.EXPIRED
        )
        push_after_commit(cabinet.pk, _revoke_message(reason="rotated", key_ids=[current.key_id]))
        old = retiring
    else:
        old = current or retiring
        if old is not None and old.expires_at is None:
            old.expires_at = now + overlap
            old.save(update_fields=["expires_at"])
    credential, key_id, secret_hash = protocol.new_credential()
    CabinetCredential.objects.create(
        cabinet=cabinet,
        key_id=key_id,
        secret_hash=secret_hash,
        supersedes=old,
        **actor.event_fields(),
    )
    if old is None:
        # Nothing to deliver over: no link can exist without a credential.
        return RotationStarted(cabinet_id=cabinet.pk, key_id=key_id, old_valid_until=None)
    assert old.expires_at is not None
    command_issue(
        cabinet=cabinet,
        action=CommandAction.CREDENTIAL_ROTATE,
        actor=actor,
        reason="credential rotation",
        # The secret is sealed at rest; the signing key is derived from key_id, not stored.
        payload={
            "key_id": key_id,
            "previous_key_id": old.key_id,
            "sealed_credential": secret_seal(credential),
        },
        # Never outlives the credential it replaces (whole seconds, rounded down).
        ttl_s=max(1, int((old.expires_at - timezone.now()).total_seconds()) - 1),
    )
    return RotationStarted(cabinet_id=cabinet.pk, key_id=key_id, old_valid_until=old.expires_at)


def cabinet_credentials_rotate(*, cabinets: list[Cabinet], actor: Actor) -> list[RotationStarted]:
    """Rotation with overlap: each cabinet gets a new credential over its link (a signed
    `credential_rotate` command, re-sent on reconnect until acknowledged); the old one stays
    valid until the cabinet connects with the new one, at most CABINET_CREDENTIAL_OVERLAP_S."""
    now = timezone.now()
    ids = sorted(cabinet.pk for cabinet in cabinets)
    by_id = {cabinet.pk: cabinet for cabinet in cabinets}
    with transaction.atomic():
        # Locked in primary-key order, like every credential operation: two rotations of one
        # cabinet are serialised, so the overlap never holds more than two credentials.
        list(Cabinet.objects.select_for_update().filter(pk__in=ids).order_by("pk").values("pk"))
        return [_rotate_one(by_id[pk], actor=actor, now=now) for pk in ids]


def cabinet_credential_rotation_complete(*, cabinet_id: int, key_id: str) -> bool:
    """The cabinet connected with `key_id`, the successor of a still-valid credential: the old
    one is revoked and any link still using it closed (4401); the delivery commands are done."""
    with transaction.atomic():
        Cabinet.objects.select_for_update().filter(pk=cabinet_id).first()
        new = (
            CabinetCredential.objects.select_related("supersedes")
            .filter(cabinet_id=cabinet_id, key_id=key_id, revoked_at__isnull=True)
            .first()
        )
        old = new.supersedes if new is not None else None
        if old is None or old.revoked_at is not None:
            return False  # a concurrent connection completed it first
        old.revoked_at, old.revoked_reason = timezone.now(), "rotated"
        old.save(update_fields=["revoked_at", "revoked_reason"])
        _rotate_commands_close(
            cabinet_id=cabinet_id, key_ids=[key_id], status=CommandStatus.SUCCEEDED
        )
        push_after_commit(cabinet_id, _revoke_message(reason="rotated", key_ids=[old.key_id]))
    logger.info("cabinet %s: rotation to %s complete", cabinet_id, key_id)
    return True


def cabinet_credentials_overlap_expire(*, now: datetime | None = None) -> int:
    """Retiring credentials whose overlap ran out: revoked, and a link still open with one is
    closed (4401), so that no cabinet keeps a connection its credential no longer allows."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            CabinetCredential.objects.select_for_update()
            .filter(revoked_at__isnull=True, expires_at__lte=now)
            .order_by("pk")
            .values_list("pk", "cabinet_id", "key_id")
        )
        CabinetCredential.objects.filter(pk__in=[pk for pk, _, _ in due]).update(
            revoked_at=now, revoked_reason="overlap expired"
        )
        for _, cabinet_id, key_id in due:
            push_after_commit(cabinet_id, _revoke_message(reason="rotated", key_ids=[key_id]))
    return len(due)
