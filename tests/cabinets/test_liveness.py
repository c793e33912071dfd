from __future__ import annotations

import time

import pytest
from asgiref.sync import async_to_sync

from cabinets.models import Cabinet, ConnectionState
from cabinets.presence import presence_snapshot, presence_touch
from cabinets.services.liveness import cabinets_liveness_sync
from tests.factories import CabinetFactory

pytestmark = pytest.mark.django_db


def test_silent_cabinets_are_marked_offline_and_live_ones_refreshed(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CABINET_OFFLINE_AFTER_S = 90
    live, silent, gone = CabinetFactory.create_batch(3, connection_state=ConnectionState.ONLINE)
    now = time.time()
    async_to_sync(presence_touch)(live.pk, now - 5)
    async_to_sync(presence_touch)(silent.pk, now - 300)

    outcome = cabinets_liveness_sync(now=now)

    states = dict(Cabinet.objects.values_list("pk", "connection_state"))
    assert states == {
        live.pk: ConnectionState.ONLINE,
        silent.pk: ConnectionState.OFFLINE,
        gone.pk: ConnectionState.OFFLINE,
    }
    assert outcome == {"alive": 1, "marked_offline": 2}
    live.refresh_from_db()
    assert live.last_seen_at is not None and abs(live.last_seen_at.timestamp() - (now - 5)) < 1
    # the stale entry is dropped from the presence set
    assert set(presence_snapshot()) == {live.pk}


def test_the_sync_is_a_few_queries_for_thousands_of_cabinets(django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    cabinets = CabinetFactory.create_batch(2500)
    now = time.time()
    for cabinet in cabinets:
        async_to_sync(presence_touch)(cabinet.pk, now)
    # bounded by batches, not by cabinets
    with django_assert_max_num_queries(20):
        outcome = cabinets_liveness_sync(now=now)
    assert outcome["alive"] == 2500


def test_a_live_cabinet_s_last_seen_time_is_rewritten_only_when_it_is_a_minute_old(
    settings,
) -> None:  # type: ignore[no-untyped-def]
    settings.CABINET_LAST_SEEN_WRITE_S = 60
    cabinet = CabinetFactory(connection_state=ConnectionState.OFFLINE)
    now = time.time()
    async_to_sync(presence_touch)(cabinet.pk, now)
    assert cabinets_liveness_sync(now=now)["alive"] == 1  # came online: written
    async_to_sync(presence_touch)(cabinet.pk, now + 15)
    assert cabinets_liveness_sync(now=now + 15)["alive"] == 0  # fresh enough: no write
    cabinet.refresh_from_db()
    assert cabinet.connection_state == ConnectionState.ONLINE
    assert abs(cabinet.last_seen_at.timestamp() - now) < 1
    async_to_sync(presence_touch)(cabinet.pk, now + 61)
    assert cabinets_liveness_sync(now=now + 61)["alive"] == 1
    cabinet.refresh_from_db()
    assert abs(cabinet.last_seen_at.timestamp() - (now + 61)) < 1
