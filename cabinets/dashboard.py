"""Read-only selectors for the fleet dashboard. Every number is one aggregate query, so the
page costs the same dozen queries for five cabinets or ten thousand."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db.models import Avg, Count, F, FloatField, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Floor
from django.utils import timezone
from django.utils.translation import gettext

from cabinets.models import (
    Cabinet,
    CabinetMessage,
    CabinetState,
    Compartment,
    CompartmentEvent,
    ConnectionState,
    DoorState,
    Rollout,
    RolloutState,
    RolloutTarget,
    ServiceState,
)
from cabinets.reports import report_handler
from cabinets.selectors import Occupancy
from cabinets.services.commands import AUTOMATIC_OUT_OF_SERVICE_ACTOR
from core.actors import ActorKind
from core.errors import ApplicationError

ALERT_ROWS = 20


def _parcel_model() -> Any:
    # Through the app registry: `cabinets` does not import `courier` (which imports it); the
    # dashboard is the one read-only place that looks at parcels from here.
    return apps.get_model("courier", "Parcel")


# What the cards, the region chart and the map call a cabinet: each cabinet in exactly one,
# so the counts add up to the fleet (retired cabinets are not part of it).
_IN_SERVICE = ~Q(state__in=(CabinetState.MAINTENANCE, CabinetState.PROVISIONING))
FLEET_STATUSES: dict[str, Q] = {
    "online": _IN_SERVICE & Q(connection_state=ConnectionState.ONLINE),
    "offline": _IN_SERVICE & Q(connection_state=ConnectionState.OFFLINE),
    "never": _IN_SERVICE & Q(connection_state=ConnectionState.NEVER),
    "maintenance": Q(state=CabinetState.MAINTENANCE),
    "provisioning": Q(state=CabinetState.PROVISIONING),
}


@dataclass(frozen=True)
class RegionRow:
    region: str
    total: int
    online: int
    offline: int
    never: int
    maintenance: int
    provisioning: int


def fleet_by_region() -> list[RegionRow]:
    """Cabinets per region in each fleet status (FLEET_STATUSES), adding up to the total."""
    rows = (
        Cabinet.objects.exclude(state=CabinetState.RETIRED)
        .values("region")
        .annotate(
            total=Count("id"),
            **{status: Count("id", filter=q) for status, q in FLEET_STATUSES.items()},
        )
        .order_by("region")
    )
    return [RegionRow(**row) for row in rows]


def occupancy() -> dict[str, int]:
    """Compartments by use across the fleet (retired cabinets excluded): out of service, in
    use (a parcel holds it), free; `occupied` counts every compartment a parcel holds. One
    pass over the compartments: retired cabinets and occupied compartments are hashed
    subqueries (a join with the cabinets cost half the time at 200,000 compartments)."""
    in_use = Q(pk__in=report_handler().occupied_compartment_ids())
    out = Q(service_state=ServiceState.OUT_OF_SERVICE)
    retired = Cabinet.objects.filter(state=CabinetState.RETIRED).values("pk")
    counts = Compartment.objects.exclude(cabinet_id__in=retired).aggregate(
        total=Count("id"),
        occupied=Count("id", filter=in_use),
        **{
            Occupancy.OUT_OF_SERVICE: Count("id", filter=out),
            Occupancy.IN_USE: Count("id", filter=in_use & ~out),
            Occupancy.FREE: Count("id", filter=~in_use & ~out),
        },
    )
    return {key: value or 0 for key, value in counts.items()}


@dataclass(frozen=True)
class DaySeries:
    days: list[date]
    announced: list[int]
    picked_up: list[int]


def parcels_per_day(*, days: int = 14, now: datetime | None = None) -> DaySeries:
    """Parcels announced and picked up per local day, the last `days` days (two queries)."""
    Parcel = _parcel_model()
    now = now or timezone.now()
    tz = timezone.get_current_timezone()
    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=tz)

    day_list = [first + timedelta(days=i) for i in range(days)]
    bounds = [datetime.combine(d, datetime.min.time(), tzinfo=tz) for d in day_list]
    bounds.append(bounds[-1] + timedelta(days=1))

    def series(field: str) -> dict[date, int]:
        # One count per local day over an index range (no per-row time-zone conversion or
        # grouping), counting the indexed column itself: an index-only scan of two weeks.
        counts = Parcel.objects.filter(**{f"{field}__gte": since}).aggregate(
            **{
                f"d{i}": Count(
                    field, filter=Q(**{f"{field}__gte": bounds[i], f"{field}__lt": bounds[i + 1]})
                )
                for i in range(days)
            }
        )
        return {day: counts[f"d{i}"] or 0 for i, day in enumerate(day_list)}

    announced, picked_up = series("created_at"), series("picked_up_at")
    return DaySeries(
        days=day_list,
        announced=[announced.get(d, 0) for d in day_list],
        picked_up=[picked_up.get(d, 0) for d in day_list],
    )


@dataclass(frozen=True)
class Alert:
    count: int
    rows: list[Any]


def offline_cabinets(*, now: datetime | None = None) -> Alert:
    """In service, and silent for longer than FLEET_ALERT_OFFLINE_AFTER_S."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.FLEET_ALERT_OFFLINE_AFTER_S)
    qs = Cabinet.objects.filter(
        state=CabinetState.ACTIVE, connection_state=ConnectionState.OFFLINE, last_seen_at__lt=cutoff
    )
    return _alert(
        qs.order_by("last_seen_at").only("id", "serial", "name", "region", "last_seen_at")
    )


def cabinets_never_connected() -> Alert:
    """Active (live for parcels) but never connected: installed without its credential, or
    never powered on. Apart from the offline alert: they have no last-seen time."""
    qs = Cabinet.objects.filter(
        state=CabinetState.ACTIVE, connection_state=ConnectionState.NEVER
    ).order_by("created_at", "pk")
    return _alert(qs.only("id", "serial", "name", "region", "created_at"))


def compartments_out_of_service_automatically() -> Alert:
    """Out of service, where the last move was the link's own (failed opens in a row)."""
    last_event = CompartmentEvent.objects.filter(compartment=OuterRef("pk")).order_by("-at", "-id")
    qs = (
        Compartment.objects.filter(service_state=ServiceState.OUT_OF_SERVICE)
        .annotate(
            last_actor_kind=Subquery(last_event.values("actor_kind")[:1]),
            last_actor_label=Subquery(last_event.values("actor_label")[:1]),
            last_reason=Subquery(last_event.values("reason")[:1]),
        )
        .filter(last_actor_kind=ActorKind.SYSTEM, last_actor_label=AUTOMATIC_OUT_OF_SERVICE_ACTOR)
        .select_related("cabinet")
        .order_by("-service_changed_at")
    )
    return _alert(qs)


def doors_left_open(*, now: datetime | None = None) -> Alert:
    """Doors reported open for longer than FLEET_ALERT_DOOR_OPEN_AFTER_S. "Open since" is the
    latest door event for that compartment, or its last state change when the door was only
    seen open in telemetry."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.FLEET_ALERT_DOOR_OPEN_AFTER_S)
    last_door_event = (
        CabinetMessage.objects.filter(cabinet_id=OuterRef("cabinet_id"), type="door_event")
        .annotate(label=KT("payload__compartment"))
        .filter(label=OuterRef("label"))
        .order_by("-received_at")
    )
    qs = (
        Compartment.objects.filter(door_state=DoorState.OPEN)
        .annotate(
            open_since=Coalesce(
                Subquery(last_door_event.values("received_at")[:1]), F("service_changed_at")
            )
        )
        .filter(open_since__lt=cutoff)
        .select_related("cabinet")
        .order_by("open_since")
    )
    return _alert(qs)


def parcels_near_expiry(*, now: datetime | None = None) -> Alert:
    Parcel = _parcel_model()
    now = now or timezone.now()
    qs = (
        Parcel.objects.filter(
            status="ready",
            pickup_deadline__gt=now,
            pickup_deadline__lte=now
            + timedelta(seconds=settings.FLEET_ALERT_PARCEL_EXPIRY_WITHIN_S),
        )
        .select_related("carrier", "cabinet", "compartment")
        .order_by("pickup_deadline")
    )
    return _alert(qs)


def _alert(qs: QuerySet[Any]) -> Alert:
    rows = list(qs[:ALERT_ROWS])
    count = len(rows) if len(rows) < ALERT_ROWS else qs.count()
    return Alert(count=count, rows=rows)


@dataclass(frozen=True)
class RolloutRow:
    rollout: Rollout
    total: int
    succeeded: int
    errors: int
    open: int


def active_rollouts() -> list[RolloutRow]:
    counts = (
        RolloutTarget.objects.filter(rollout__state__in=(RolloutState.RUNNING, RolloutState.PAUSED))
        .values("rollout_id")
        .annotate(
            total=Count("id"),
            succeeded=Count("id", filter=Q(state="succeeded")),
            errors=Count("id", filter=Q(state__in=("failed", "timed_out"))),
            open=Count("id", filter=Q(state__in=("scheduled", "sent", "received"))),
        )
        .order_by()
    )
    by_rollout = {row.pop("rollout_id"): row for row in counts}
    rollouts = Rollout.objects.filter(state__in=(RolloutState.RUNNING, RolloutState.PAUSED))
    empty = {"total": 0, "succeeded": 0, "errors": 0, "open": 0}
    return [RolloutRow(rollout=r, **by_rollout.get(r.pk, empty)) for r in rollouts[:10]]


def map_points() -> list[list[Any]]:
    """Every cabinet of the fleet as [id, serial, name, lat, lng, status]; compact, because at
    10,000 cabinets this is the largest response of the dashboard."""
    return _points(Cabinet.objects.exclude(state=CabinetState.RETIRED))


def _points(cabinets: QuerySet[Cabinet]) -> list[list[Any]]:
    rows = cabinets.order_by().values_list(
        "id", "serial", "name", "latitude", "longitude", "state", "connection_state"
    )
    return [
        [pk, serial, name, float(lat), float(lng), _status(state, connection)]
        for pk, serial, name, lat, lng, state, connection in rows.iterator(chunk_size=5000)
    ]


def _status(state: str, connection: str) -> str:
    if state in (CabinetState.MAINTENANCE, CabinetState.PROVISIONING):
        return state
    return connection


# Up to this many cabinets in view are drawn one by one; more are clustered on a grid.
MAP_POINTS_MAX = 500
# Grid cells per 256-pixel tile width: a cluster stands for about 64 pixels of map.
MAP_CELLS_PER_TILE = 4
MAP_MAX_ZOOM = 18
BBox = tuple[float, float, float, float]  # south, west, north, east


@dataclass(frozen=True)
class MapView:
    mode: str  # "points" | "clusters"
    total: int
    points: list[list[Any]]
    # [lat, lng, count, {status: count}] at the mean position of the cell's cabinets
    clusters: list[list[Any]]


def map_query_parse(
    query: Mapping[str, str],
) -> tuple[int, tuple[float, float, float, float] | None]:
    """`?zoom=6&bbox=south,west,north,east` of the map's JSON; both optional."""
    try:
        zoom = int(query.get("zoom", "4"))
        bbox = tuple(float(v) for v in query["bbox"].split(",")) if query.get("bbox") else None
    except ValueError as exc:
        raise ApplicationError(
            gettext("zoom is an integer and bbox four numbers: south,west,north,east."),
            code="invalid_map_query",
        ) from exc
    if bbox is not None and (
        len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or bbox[0] > bbox[2]
    ):
        raise ApplicationError(
            gettext("bbox is south,west,north,east with south <= north."),
            code="invalid_map_query",
        )
    return zoom, bbox  # type: ignore[return-value]


def map_view_get(*, zoom: int, bbox: BBox | None) -> MapView:
    """The cabinets in view (`bbox` = south, west, north, east): one by one when few, else
    clustered server-side on a grid sized by the zoom (one grouped query, a few hundred rows
    at most however large the fleet)."""
    cabinets = Cabinet.objects.exclude(state=CabinetState.RETIRED)
    if bbox is not None:
        south, west, north, east = bbox
        cabinets = cabinets.filter(latitude__gte=south, latitude__lte=north)
        if west <= east:
            cabinets = cabinets.filter(longitude__gte=west, longitude__lte=east)
        else:  # the view crosses the antimeridian
            cabinets = cabinets.filter(Q(longitude__gte=west) | Q(longitude__lte=east))
    total = cabinets.count()
    zoom = max(0, min(zoom, MAP_MAX_ZOOM))
    if total <= MAP_POINTS_MAX or zoom >= MAP_MAX_ZOOM:
        return MapView(mode="points", total=total, points=_points(cabinets), clusters=[])
    cell = 360.0 / (2**zoom) / MAP_CELLS_PER_TILE
    rows = (
        cabinets.annotate(
            gy=Floor(Cast("latitude", FloatField()) / cell),
            gx=Floor(Cast("longitude", FloatField()) / cell),
        )
        .values("gy", "gx")
        .annotate(
            n=Count("id"),
            lat=Avg(Cast("latitude", FloatField())),
            lng=Avg(Cast("longitude", FloatField())),
            **{status: Count("id", filter=q) for status, q in FLEET_STATUSES.items()},
        )
        .order_by()
    )
    clusters = [
        [
            round(row["lat"], 5),
            round(row["lng"], 5),
            row["n"],
            {status: row[status] for status in FLEET_STATUSES if row[status]},
        ]
        for row in rows
    ]
    return MapView(mode="clusters", total=total, points=[], clusters=clusters)


@dataclass(frozen=True)
class Dashboard:
    regions: list[RegionRow]
    totals: dict[str, int]
    occupancy: dict[str, int]
    parcels: DaySeries
    offline: Alert
    never_connected: Alert
    out_of_service: Alert
    doors_open: Alert
    near_expiry: Alert
    rollouts: list[RolloutRow]


def dashboard_get(*, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    regions = fleet_by_region()
    totals = {
        key: sum(getattr(row, key) for row in regions)
        for key in ("total", "online", "offline", "never", "maintenance", "provisioning")
    }
    return Dashboard(
        regions=regions,
        totals=totals,
        occupancy=occupancy(),
        parcels=parcels_per_day(now=now),
        offline=offline_cabinets(now=now),
        never_connected=cabinets_never_connected(),
        out_of_service=compartments_out_of_service_automatically(),
        doors_open=doors_left_open(now=now),
        near_expiry=parcels_near_expiry(now=now),
        rollouts=active_rollouts(),
    )
