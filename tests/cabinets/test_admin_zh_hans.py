# ruff: noqa: RUF001
"""The admin's own text in Simplified Chinese: a staff user whose browser asks for zh-hans
sees the changelist's actions, a confirmation page, the flash message, the fleet dashboard, the
door grid, the rollout page, field labels and status choices in Chinese; a staff user asking for English still reads English."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest
from django.urls import reverse
from django.utils import translation

from cabinets.models import CabinetEvent, CabinetState, RolloutKind
from cabinets.rollouts.services import rollout_create
from core.actors import Actor
from tests.cabinets.test_admin_operations import retire_selection
from tests.factories import CabinetFactory, CompartmentFactory, ParcelFactory

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


@pytest.fixture(autouse=True)
def _language_restored() -> Iterator[None]:
    """LocaleMiddleware leaves the request's language active in the thread: put it back, so
    the labels of later tests are not read in Chinese."""
    before = translation.get_language()
    yield
    translation.activate(before)


@pytest.mark.django_db
def test_a_zh_hans_staff_user_sees_the_changelist_confirmation_and_flash_in_chinese(
    admin_client,
) -> None:  # type: ignore[no-untyped-def]
    _live, _gone, changelist, chosen = retire_selection()
    listing = admin_client.get(changelist, **ZH).content.decode()
    assert "停用（需填写原因；不可撤销）" in listing
    assert "Retire (asks for a reason; cannot be undone)" not in listing

    page = admin_client.post(changelist, chosen, **ZH).content.decode()
    assert "停用 2 台柜机？" in page and "确认 2 个" in page
    assert "停用的柜机将永久关闭" in page
    assert "Retire 2 cabinet(s)?" not in page and "Confirm for" not in page

    done = admin_client.post(changelist, {**chosen, "reason": "site closed"}, follow=True, **ZH)
    assert CabinetEvent.objects.filter(to_state=CabinetState.RETIRED).count() == 2
    text = " ".join(str(m) for m in done.context["messages"])
    assert "未作更改：1 个。" in text and "Left as they are" not in text
    # the transition map's own refusal, in Chinese too
    assert "柜机不能从" in text and "cannot go from" not in text


EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


def _door_grid_texts(html: str) -> dict[str, str]:
    found = re.search(r'<script id="door-grid-data" type="application/json">(.*?)</script>', html)
    assert found is not None, html
    return json.loads(found.group(1))["texts"]  # type: ignore[no-any-return]


@pytest.mark.django_db
def test_a_zh_hans_staff_user_sees_the_fleet_dashboard_in_chinese(admin_client) -> None:  # type: ignore[no-untyped-def]
    CabinetFactory(region="Zhejiang")
    page = admin_client.get(reverse("admin:cabinets_fleet_dashboard"), **ZH).content.decode()
    for zh in (
        "柜机总览",
        "各区域柜机",
        "每日包裹",
        "进行中的发布",
        "每 30 秒自动刷新",
        "从未连接",
    ):
        assert zh in page, zh
    for en in ("Fleet dashboard", "Cabinets by region", "Parcels per day", "refreshes itself"):
        assert en not in page, en
    # the live refresh's script writes the words the page gives it
    charts = json.loads(
        re.search(r'id="fleet-data" type="application/json">(.*?)</script>', page).group(1)  # type: ignore[union-attr]
    )
    assert charts["texts"]["online"] == "在线" and charts["texts"]["picked_up"] == "已取件"
    assert charts["occupancy"]["labels"] == ["空闲", "使用中", "停用中"]


@pytest.mark.django_db
def test_a_zh_hans_staff_user_sees_the_door_grid_in_chinese(admin_client) -> None:  # type: ignore[no-untyped-def]
    compartment = CompartmentFactory()
    change = reverse("admin:cabinets_cabinet_change", args=[compartment.cabinet_id])
    page = admin_client.get(change, **ZH).content.decode()
    assert "正在加载柜门…" in page and "打开柜门" in page and "轮换凭据" in page
    assert "Loading the doors…" not in page and "Open the door" not in page
    texts = _door_grid_texts(page)
    assert texts["opening"] == "正在打开…" and texts["say_why"] == "请说明开门原因。"
    assert texts["open_door_parcel"] == "打开 %(door)s 号柜门（包裹 %(parcel)s）"
    refused = admin_client.post(
        reverse("admin:cabinets_cabinet_door_open", args=[compartment.cabinet_id, compartment.pk]),
        {"reason": ""},
        **ZH,
    )
    assert refused.status_code == 400 and refused.json()["message"] == "请说明开门原因。"


@pytest.mark.django_db
def test_a_zh_hans_staff_user_sees_the_rollout_page_in_chinese(admin_client) -> None:  # type: ignore[no-untyped-def]
    CabinetFactory.create_batch(2, firmware_version="1.0.0")
    rollout = rollout_create(
        name="fw 2",
        kind=RolloutKind.FIRMWARE,
        version="2.0.0",
        wave_plan="1,100%",
        actor=Actor.system("test operator"),
    )
    page = admin_client.get(
        reverse("admin:cabinets_rollout_change", args=[rollout.pk]), **ZH
    ).content.decode()
    for zh in ("各批次进度", "审计记录", "全部批次", "待下发", "台柜机，各批次数量为"):
        assert zh in page, zh
    for en in ("Progress per wave", "Audit trail", "all waves", "cabinet(s) as targeted now"):
        assert en not in page, en
    live = json.loads(
        re.search(r'id="rollout-live" type="application/json">(.*?)</script>', page).group(1)  # type: ignore[union-attr]
    )
    assert live["texts"]["as_of"] == "数据时间 %(time)s"

    create = admin_client.get(reverse("admin:cabinets_rollout_add"), **ZH).content.decode()
    assert "批次计划" in create and "创建草稿" in create and "新建发布" in create
    assert "Wave plan" not in create and "Create draft" not in create

    rollouts = admin_client.get(reverse("admin:cabinets_rollout_changelist"), **ZH)
    assert "全部柜机" in rollouts.content.decode() and "草稿" in rollouts.content.decode()


@pytest.mark.django_db
def test_an_english_staff_user_still_sees_the_admin_pages_in_english(admin_client) -> None:  # type: ignore[no-untyped-def]
    compartment = CompartmentFactory()
    dashboard = admin_client.get(reverse("admin:cabinets_fleet_dashboard"), **EN).content.decode()
    assert "Cabinets by region" in dashboard and "各区域柜机" not in dashboard
    change = reverse("admin:cabinets_cabinet_change", args=[compartment.cabinet_id])
    page = admin_client.get(change, **EN).content.decode()
    assert "Loading the doors…" in page and "正在加载柜门…" not in page
    assert _door_grid_texts(page)["opening"] == "Opening…"


@pytest.mark.django_db
def test_a_zh_hans_staff_user_sees_field_labels_and_status_choices_in_chinese(admin_client) -> None:  # type: ignore[no-untyped-def]
    compartment = CompartmentFactory(cabinet__state=CabinetState.MAINTENANCE)
    form = admin_client.get(
        reverse("admin:cabinets_cabinet_change", args=[compartment.cabinet_id]), **ZH
    ).content.decode()
    for zh in ("硬件型号", "固件版本", "印在柜机上。", "纬度", "无有效凭据"):
        assert zh in form, zh
    for en in (
        ">Hardware model:<",
        ">Firmware version:<",
        "Printed on the cabinet.",
        "none active",
    ):
        assert en not in form, en

    listing = admin_client.get(reverse("admin:cabinets_cabinet_changelist"), **ZH).content.decode()
    assert "维护中" in listing and ">Maintenance<" not in listing

    ParcelFactory(cabinet=compartment.cabinet)
    parcels = admin_client.get(reverse("admin:courier_parcel_changelist"), **ZH).content.decode()
    assert "已预报" in parcels and ">Announced<" not in parcels
    assert "运单号" in parcels and "Tracking number" not in parcels

    doors = admin_client.get(
        reverse("admin:cabinets_cabinet_doors", args=[compartment.cabinet_id]), **ZH
    ).json()["doors"]
    assert (doors[0]["service_label"], doors[0]["door_label"]) == ("可用", "未知")


@pytest.mark.django_db
def test_an_english_staff_user_still_sees_field_labels_and_choices_in_english(admin_client) -> None:  # type: ignore[no-untyped-def]
    compartment = CompartmentFactory(cabinet__state=CabinetState.MAINTENANCE)
    form = admin_client.get(
        reverse("admin:cabinets_cabinet_change", args=[compartment.cabinet_id]), **EN
    ).content.decode()
    assert "Hardware model" in form and "硬件型号" not in form
    ParcelFactory(cabinet=compartment.cabinet)
    parcels = admin_client.get(reverse("admin:courier_parcel_changelist"), **EN).content.decode()
    assert ">Announced<" in parcels and "已预报" not in parcels


@pytest.mark.django_db
def test_a_zh_hans_staff_user_reads_the_change_pages_summaries_and_confirmations_in_chinese(
    admin_client,
) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import IdentityFactory

    person = IdentityFactory()
    page = admin_client.get(
        reverse("admin:identity_identity_change", args=[person.pk]), **ZH
    ).content.decode()
    assert "从未同意（刷脸取件关闭；取件码可用）" in page and "未录入" in page
    assert "never given" not in page and "not enrolled" not in page
    # the destructive bulk action asks first, with the count, in Chinese
    asked = admin_client.post(
        reverse("admin:identity_identity_changelist"),
        {"action": "withdraw_consent", "_selected_action": [person.pk]},
        **ZH,
    ).content.decode()
    assert "撤回 1 人的生物特征同意？" in asked and "Withdraw the biometric" not in asked

    cabinet = CabinetFactory()
    page = admin_client.get(
        reverse("admin:cabinets_cabinet_change", args=[cabinet.pk]), **ZH
    ).content.decode()
    assert "此柜机的全部指令" in page and "All commands of this cabinet" not in page
    from courier.models import AccessAttempt

    parcel = ParcelFactory(cabinet=cabinet)
    attempt = AccessAttempt.objects.create(
        cabinet=cabinet, method="code", event_id=uuid.uuid4(), success=False, outcome="no_match"
    )
    attempt.parcels.add(parcel)
    page = admin_client.get(
        reverse("admin:courier_parcel_change", args=[parcel.pk]), **ZH
    ).content.decode()
    assert "<th>时间</th>" in page and "<th>已开启</th>" in page and "<td>否</td>" in page
    assert "<th>when</th>" not in page


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("zh-hans", "批次 'x' 既不是数量（5）也不是百分比（10%）。"),
        ("en", "Wave 'x' is neither a count (5) nor a percentage (10%)."),
    ],
)
def test_the_new_rollout_forms_refusal_speaks_the_readers_language(
    language: str, message: str
) -> None:
    from cabinets.rollouts.plans import wave_plan_parse
    from core.errors import ApplicationError

    with translation.override(language), pytest.raises(ApplicationError) as refused:
        wave_plan_parse("5, x")
    assert refused.value.message == message


@pytest.mark.parametrize(
    ("language", "asked", "refused", "not_offered"),
    [
        ("zh-hans", "取消 1 个包裹？", "未作更改：1 个。包裹不能从 '已取件' 变为 '已取消'。",
         "未作更改：1 个。“延长取件期限（限一次）”适用于状态为 '已入柜，待取件' 的包裹，而不是“已预报”。"),
        ("en", "Cancel 1 parcel(s)?",
         "Left as they are: 1. A parcel cannot go from 'Picked up' to 'Cancelled'.",
         "Left as they are: 1. “Extend the pickup deadline (once)” is for a parcel in "
         "'Deposited, ready for pickup', not 'Announced'."),
    ],
)  # fmt: skip
@pytest.mark.django_db
def test_the_parcel_operations_ask_and_refuse_in_the_readers_language(
    admin_client, language: str, asked: str, refused: str, not_offered: str
) -> None:  # type: ignore[no-untyped-def]
    from django.utils import timezone

    from courier.models import ParcelStatus

    reader = {"HTTP_ACCEPT_LANGUAGE": language}
    announced = ParcelFactory()
    picked_up = ParcelFactory(status=ParcelStatus.PICKED_UP, picked_up_at=timezone.now())
    changelist = reverse("admin:courier_parcel_changelist")
    chosen = {"action": "cancel", "_selected_action": [announced.pk, picked_up.pk]}
    assert asked in admin_client.post(changelist, chosen, **reader).content.decode()
    done = admin_client.post(changelist, {**chosen, "confirm": "1"}, follow=True, **reader)
    assert refused in " ".join(str(m) for m in done.context["messages"])

    extend = {"action": "extend", "_selected_action": [ParcelFactory().pk]}
    done = admin_client.post(changelist, extend, follow=True, **reader)
    assert not_offered in " ".join(str(m) for m in done.context["messages"])


@pytest.mark.parametrize(
    ("language", "not_numbers", "upside_down"),
    [
        ("zh-hans", "zoom 为整数，bbox 为四个数字：south,west,north,east。",
         "bbox 为 south,west,north,east，且 south <= north。"),
        ("en", "zoom is an integer and bbox four numbers: south,west,north,east.",
         "bbox is south,west,north,east with south <= north."),
    ],
)  # fmt: skip
@pytest.mark.django_db
def test_the_dashboard_maps_query_errors_speak_the_readers_language(
    admin_client, language: str, not_numbers: str, upside_down: str
) -> None:  # type: ignore[no-untyped-def]
    url = reverse("admin:cabinets_fleet_map")
    reader = {"HTTP_ACCEPT_LANGUAGE": language}
    for query, message in (({"zoom": "x"}, not_numbers), ({"bbox": "5,0,1,1"}, upside_down)):
        response = admin_client.get(url, query, **reader)
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_map_query", "message": message, "details": {}}
