# ruff: noqa: RUF001
"""Cabinet screens and texts to recipients speak the configured language (Chinese by
default): cabinets and phones have no browser to ask for one. The carrier API answers in the
language its caller asks for (Accept-Language), in the one error shape."""

from __future__ import annotations

import pytest

from cabinet_agent import protocol
from courier.models import NotificationKind
from courier.notifications import message_subject, message_text
from tests.courier.conftest import cabinet_says, courier_asks, results

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("language", "wrong", "right"),
    [("zh-hans", "取件码无效。", "A01 号格口正在打开。"),
     ("en", "This code is not valid.", "Compartment A01 is opening.")],
)  # fmt: skip
def test_the_cabinet_screen_answers_in_the_cabinet_language(
    cabinet, ready_parcel, pushes, settings, django_capture_on_commit_callbacks,
    language: str, wrong: str, right: str,
) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    settings.CABINET_LANGUAGE_CODE = language
    for code in ("654321", "123456"):
        with django_capture_on_commit_callbacks(execute=True):
            cabinet_says(cabinet, protocol.make_code_entry(code=code, entered_at=protocol.now_ms()))
    answers = results(pushes, "code_result")
    # the outcome stays a language-free code a screen may translate itself
    assert [(a["outcome"], a["message"]) for a in answers] == [
        ("no_match", wrong),
        ("unlocking", right),
    ]


def test_texts_to_recipients_are_in_the_recipient_language(ready_parcel, settings) -> None:  # type: ignore[no-untyped-def]
    settings.RECIPIENT_LANGUAGE_CODE = "zh-hans"
    text = message_text(parcel=ready_parcel, kind=NotificationKind.READY, code="123456")
    assert "取件码：123456" in text and ready_parcel.tracking_number in text
    assert "需要延期？" in text
    assert message_subject(parcel=ready_parcel) == f"您的包裹 {ready_parcel.tracking_number}"
    settings.RECIPIENT_LANGUAGE_CODE = "en"
    assert "Pickup code: 123456" in message_text(
        parcel=ready_parcel, kind=NotificationKind.READY, code="123456"
    )


def test_an_english_preferring_recipient_gets_english_and_a_default_one_chinese(
    ready_parcel, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.RECIPIENT_LANGUAGE_CODE = "zh-hans"
    assert ready_parcel.recipient.language == ""  # the platform's language
    text = message_text(parcel=ready_parcel, kind=NotificationKind.READY, code="123456")
    assert "取件码：123456" in text and "Pickup code" not in text
    ready_parcel.recipient.language = "en"
    ready_parcel.recipient.save(update_fields=["language"])
    text = message_text(parcel=ready_parcel, kind=NotificationKind.READY, code="123456")
    assert "Pickup code: 123456" in text and "取件码" not in text
    assert message_subject(parcel=ready_parcel) == f"Your parcel {ready_parcel.tracking_number}"


@pytest.mark.parametrize(
    ("language", "unknown"),
    [("zh-hans", "包裹 NOPE-1 未预报。"), ("en", "Parcel NOPE-1 is not announced.")],
)  # fmt: skip
def test_a_couriers_refusal_from_the_deposit_service_speaks_the_cabinet_language(
    cabinet, courier, pushes, settings, django_capture_on_commit_callbacks,
    language: str, unknown: str,
) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    settings.CABINET_LANGUAGE_CODE = language
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", "NOPE-1")
    [answer] = results(pushes, "courier_result")
    assert (answer["outcome"], answer["message"]) == ("unknown_parcel", unknown)


@pytest.mark.parametrize(
    ("language", "texts"),
    [
        ("zh-hans", {
            "missing": "本快递公司没有运单号为 NOPE-1 的包裹。",
            "no_cabinet": "没有在用的柜机 SH-NONE-1。",
            "duplicate": "运单号 SF1234567890 已预报。",
            "invalid": "请求无效，详见 details。",
            "status": "可选值：announced, ready, picked_up, expired, returned, cancelled, dropped_off, collected。",
            "cancel": "包裹不能从 '已取消' 变为 '已取消'。",
            "bad_key": "API 密钥格式不正确。",
            "cursor": "未知的游标：请传入本接口返回的 next_cursor，或不传以从头开始。",
            "not_cursor": "不是本接口的游标。",
            "no_endpoint": "没有这个 API 接口。",
        }),
        ("en", {
            "missing": "No parcel NOPE-1 for this carrier.",
            "no_cabinet": "No active cabinet SH-NONE-1.",
            "duplicate": "Tracking number SF1234567890 is already announced.",
            "invalid": "The request is invalid; see details.",
            "status": "One of: announced, ready, picked_up, expired, returned, cancelled, dropped_off, collected.",
            "cancel": "A parcel cannot go from 'Cancelled' to 'Cancelled'.",
            "bad_key": "Malformed API key.",
            "cursor": "Unknown cursor: pass a next_cursor this feed returned, or none to start over.",
            "not_cursor": "Not a cursor of this feed.",
            "no_endpoint": "No such API endpoint.",
        }),
    ],
)  # fmt: skip
def test_the_carrier_apis_refusals_speak_the_callers_language(
    carrier, cabinet, language: str, texts: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    from courier.authentication import carrier_api_key_issue
    from tests.courier.test_carrier_api import ANNOUNCE

    api = APIClient(HTTP_ACCEPT_LANGUAGE=language)
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {carrier_api_key_issue(carrier=carrier)}")
    parcels = "/api/v1/carrier/parcels/"

    def refused(response, status: int, error: str, message: str, details=None) -> None:  # type: ignore[no-untyped-def]
        assert response.status_code == status, response.json()
        # the one error shape, its message in the caller's language
        assert response.json() == {"error": error, "message": message, "details": details or {}}

    refused(api.get(parcels + "NOPE-1/"), 404, "not_found", texts["missing"])
    elsewhere = {**ANNOUNCE, "cabinet": "SH-NONE-1"}
    refused(
        api.post(parcels, elsewhere, format="json"), 404, "unknown_cabinet", texts["no_cabinet"]
    )
    refused(
        api.get(parcels, {"status": "lost"}),
        400,
        "validation_error",
        texts["invalid"],
        {"status": [texts["status"]]},
    )
    assert api.post(parcels, ANNOUNCE, format="json").status_code == 201
    duplicate = api.post(parcels, ANNOUNCE, format="json")
    assert duplicate.status_code == 409
    assert duplicate.json()["message"] == texts["duplicate"]
    assert api.post(parcels + "SF1234567890/cancel/").status_code == 200
    refused(
        api.post(parcels + "SF1234567890/cancel/"),
        409,
        "invalid_transition",
        texts["cancel"],
        {"from": "cancelled", "to": "cancelled"},
    )
    refused(
        api.get("/api/v1/carrier/changes/", {"after": "not-a-cursor"}),
        400,
        "invalid_cursor",
        texts["cursor"],
        {"after": [texts["not_cursor"]]},
    )
    refused(api.get("/api/v1/carrier/nowhere/"), 404, "not_found", texts["no_endpoint"])
    forged = APIClient(HTTP_ACCEPT_LANGUAGE=language, HTTP_AUTHORIZATION="Api-Key no-dot")
    refused(forged.get(parcels), 401, "authentication_failed", texts["bad_key"])
