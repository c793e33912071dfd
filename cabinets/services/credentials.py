"""A cabinet's link credential: issued once at provisioning, rotated, revoked. Only hashes are
stored; an open socket whose credential stops being valid is closed after commit (4401 when
rotated, 4403 when revoked: protocol §1). The close names the credential it is about: a
cabinet that already reconnected with its new credential keeps that link."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from cabinet_agent import protocol
from cabinets.keys import signing_key_for
from cabinets.models import Cabinet, CabinetCredential
from cabinets.push import push_after_commit, push_many_after_commit
from core.actors import Actor

logger = logging.getLogger(__name__)


def _revoke_message(*, reason: str, key_id: str) -> dict[str, Any]:
    # key_id: only links authenticated with this credential close (protocol §1, rotation).
    return {"type": "link.revoke", "reason": reason, "key_id": key_id}


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
        for old_key_id in _active_revoke(cabinet_ids=[cabinet.pk], reason="rotated").values():
            push_after_commit(cabinet.pk, _revoke_message(reason="rotated", key_id=old_key_id))
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
                cabinet_id: _revoke_message(reason="rotated", key_id=old_key_id)
                for cabinet_id, old_key_id in rotated.items()
            }
        )
    return issued


def cabinet_credential_revoke(*, cabinet: Cabinet, actor: Actor, reason: str) -> int:
    with transaction.atomic():
        revoked = _active_revoke(cabinet_ids=[cabinet.pk], reason=reason[:255] or "revoked")
        for key_id in revoked.values():
            logger.warning("credential of cabinet %s revoked by %s", cabinet.serial, actor.label)
            push_after_commit(cabinet.pk, _revoke_message(reason="revoked", key_id=key_id))
    return len(revoked)


def _active_revoke(*, cabinet_ids: list[int], reason: str) -> dict[int, str]:
    """Revoke the active credentials of these cabinets (one each at most: a constraint);
    cabinet id -> the key id revoked. The caller holds the cabinets' locks."""
    active = CabinetCredential.objects.filter(cabinet_id__in=cabinet_ids, revoked_at__isnull=True)
    revoked = dict(active.values_list("cabinet_id", "key_id"))
    active.update(revoked_at=timezone.now(), revoked_reason=reason)
    return revoked
