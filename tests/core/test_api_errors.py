"""Every API error is a 4xx (or a logged 500) in the one JSON shape, whatever produces it:
pagination out of range, bodies too deep or too large, unmatched paths, unhandled bugs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from core.pagination import MAX_LIMIT
from courier.authentication import carrier_api_key_issue
from tests.factories import CarrierFactory

pytestmark = pytest.mark.django_db

PARCELS = "/api/v1/carrier/parcels/"
LOGIN_CODE = "/api/v1/identity/login/code/"


def _shape(response: Any, status: int, error: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message", "details"}
    if error is not None:
        assert body["error"] == error, body
    return body


@pytest.fixture
def api() -> APIClient:
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Api-Key {carrier_api_key_issue(carrier=CarrierFactory())}"
    )
    return client


@pytest.mark.parametrize(
    "query",
    [
        "limit=99999999999999999999",
        f"limit={MAX_LIMIT + 1}",
        "limit=0",
        "limit=-1",
        "limit=ten",
        "limit=\uff11\uff10",  # full-width digits: str.isdigit() says yes, int() accepts them
        "offset=99999999999999999999",
        "offset=-5",
        "limit=",  # empty: no integer, not "not given"
        "offset=",
    ],
)
def test_pagination_out_of_range_is_a_400_not_a_500(api: APIClient, query: str) -> None:
    body = _shape(api.get(f"{PARCELS}?{query}"), 400, "validation_error")
    assert set(body["details"]) <= {"limit", "offset"} and body["details"]


def test_pagination_within_range_pages(api: APIClient) -> None:
    page = api.get(f"{PARCELS}?limit={MAX_LIMIT}&offset=0")
    assert page.status_code == 200
    assert set(page.json()) == {"count", "next", "previous", "results"}


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_a_1000_deep_body_to_an_unauthenticated_endpoint_is_a_400() -> None:
    response = Client().post(LOGIN_CODE, _deep(1000), content_type="application/json")
    body = _shape(response, 400, "parse_error")
    assert "deeper" in body["message"]


def test_a_1000_deep_body_to_the_carrier_api_is_a_400(api: APIClient) -> None:
    nested: str = '{"a":' * 1000 + "1" + "}" * 1000
    _shape(api.post(PARCELS, nested, content_type="application/json"), 400, "parse_error")


def test_a_deep_body_without_a_key_is_refused_before_parsing() -> None:
    response = Client().post(PARCELS, _deep(1000), content_type="application/json")
    _shape(response, 401, "not_authenticated")


def test_brackets_inside_strings_do_not_count_as_nesting(api: APIClient) -> None:
    body = json.dumps({"tracking_number": "[" * 1000, "size": "M"})
    response = api.post(PARCELS, body, content_type="application/json")
    assert "tracking_number" in _shape(response, 400, "validation_error")["details"]


def test_nan_is_not_json(api: APIClient) -> None:
    _shape(api.post(PARCELS, '{"size": NaN}', content_type="application/json"), 400, "parse_error")


def test_a_json_body_over_the_upload_limit_is_a_413(api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"tracking_number": "x" * 20_000})
    _shape(api.post(PARCELS, body, content_type="application/json"), 413, "request_too_large")


def test_a_form_body_over_the_upload_limit_is_json_not_html(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = Client().post(
        LOGIN_CODE, "phone=" + "1" * 20_000, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code in (400, 413)
    _shape(response, response.status_code)


@pytest.mark.parametrize("path", ["/api/v1/nope/", "/api/", "/api/v1/carrier/parcels/x/y/z/"])
def test_unmatched_api_paths_are_json_404s(path: str) -> None:
    _shape(Client().get(path), 404, "not_found")


def test_unmatched_pages_outside_the_api_stay_html() -> None:
    response = Client().get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


@pytest.mark.urls("tests.core.boom_urls")
def test_a_bug_under_the_api_is_a_logged_json_500(caplog: pytest.LogCaptureFixture) -> None:
    response = Client(raise_request_exception=False).get("/api/v1/boom/")
    body = _shape(response, 500, "server_error")
    assert "RuntimeError" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    assert any(r.name == "django.request" and r.exc_info for r in caplog.records)


@pytest.mark.urls("tests.core.boom_urls")
def test_a_bug_outside_the_api_keeps_the_html_500() -> None:
    response = Client(raise_request_exception=False).get("/boom/")
    assert response.status_code == 500
    assert not response["Content-Type"].startswith("application/json")


def test_api_responses_are_never_stored(api: APIClient) -> None:
    assert api.get(PARCELS)["Cache-Control"] == "no-store"
    assert Client().get("/api/v1/nope/")["Cache-Control"] == "no-store"
    assert APIClient().get(PARCELS)["Cache-Control"] == "no-store"


@pytest.mark.parametrize("query", ["limit=", "limit=0", "limit=501", "limit=ten"])
def test_a_changes_feed_limit_that_is_not_a_number_in_range_is_a_400(
    api: APIClient, query: str
) -> None:
    # `?limit=` (empty) once read as "not given" and answered 200 (schemathesis found it).
    body = _shape(api.get(f"/api/v1/carrier/changes/?{query}"), 400, "validation_error")
    assert set(body["details"]) == {"limit"}


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (f"{PARCELS}?status=", "status"),
        (f"{PARCELS}?status=nope", "status"),
        ("/api/v1/carrier/cabinets/?city=", "city"),
        ("/api/v1/carrier/cabinets/?city=%20", "city"),
        ("/api/v1/carrier/cabinets/?city=Shang%00hai", "city"),
        (f"/api/v1/carrier/cabinets/?city={'x' * 81}", "city"),
    ],
)
def test_a_query_value_the_schema_does_not_allow_is_a_400(
    api: APIClient, path: str, field: str
) -> None:
    body = _shape(api.get(path), 400, "validation_error")
    assert set(body["details"]) == {field}


@pytest.mark.parametrize("number", ["%00", "DX%000001", "abc", "DX 0001", "x" * 41])
@pytest.mark.parametrize("suffix", ["", "cancel/"])
def test_a_tracking_number_that_no_announce_accepts_is_a_404(
    api: APIClient, number: str, suffix: str
) -> None:
    method = api.post if suffix else api.get
    _shape(method(f"{PARCELS}{number}/{suffix}"), 404, "not_found")


@pytest.mark.parametrize("serial", ["\x00", "SH\x00-1", "-SH-1", "SH 1", "SH/1", "S" * 33])
def test_an_announce_to_a_serial_no_cabinet_can_have_is_a_400(api: APIClient, serial: str) -> None:
    from tests.courier.test_carrier_api import ANNOUNCE

    body = _shape(api.post(PARCELS, {**ANNOUNCE, "cabinet": serial}, format="json"), 400)
    assert body["error"] == "validation_error" and set(body["details"]) == {"cabinet"}


@pytest.mark.parametrize("after", ["%20", "%1F", "%00", "A" * 22])
def test_a_changes_feed_cursor_it_never_issued_is_a_400(api: APIClient, after: str) -> None:
    # Not trimmed to "" (the start of the feed): schemathesis sent `?after=%1F`.
    body = _shape(api.get(f"/api/v1/carrier/changes/?after={after}"), 400)
    assert body["error"] in {"invalid_cursor", "validation_error"}
    assert set(body["details"]) == {"after"}
