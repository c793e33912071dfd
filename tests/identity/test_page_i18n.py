# ruff: noqa: RUF001
"""The enrollment and login pages in Simplified Chinese (the default) and English."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from identity import services
from identity.models import Identity
from identity.notify import SentSms
from tests.factories import IdentityFactory

pytestmark = pytest.mark.django_db


def test_without_a_choice_the_page_is_in_the_default_language_chinese(
    client: Client, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.LANGUAGE_CODE = "zh-hans"
    page = client.get(reverse("identity:login")).content.decode()
    assert '<html lang="zh-hans">' in page
    assert "用手机号登录" in page and "中国大陆号码无需输入 +86" in page
    # the switch names each language in that language
    assert ">English</button>" in page and ">简体中文</button>" in page


def test_the_enrollment_links_first_page_is_in_the_browsers_language(client: Client) -> None:
    link = reverse("identity:enroll-link")
    chinese = client.get(link, HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()
    assert "确认是您本人" in chinese and "发送验证码" in chinese and "改用手机号登录" in chinese
    assert "Text me a code" not in chinese
    english = client.get(link, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Confirm it is you" in english and "Text me a code" in english


def test_the_browser_language_and_the_switch_choose_the_language(client: Client) -> None:
    assert (
        "用手机号登录"
        in client.get(
            reverse("identity:login"), HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9"
        ).content.decode()
    )
    switched = client.post(
        reverse("set_language"), {"language": "en", "next": reverse("identity:login")}
    )
    assert switched.status_code == 302
    page = client.get(reverse("identity:login"), HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "Log in with your phone" in page


def test_the_login_text_is_in_the_language_of_the_page_that_asked(
    client: Client,
    sms_outbox: list[SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    IdentityFactory(phone="+8613800000003")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("identity:login"), {"phone": "13800000003"}, HTTP_ACCEPT_LANGUAGE="zh-CN"
        )
    (sms,) = sms_outbox
    assert sms.phone == "+8613800000003"
    assert "登录" in sms.text and "不是取件码" in sms.text


def _enrolled_page(client: Client, identity: Identity, **headers: str) -> str:
    from tests.identity.test_page import logged_in

    logged_in(client, identity)
    return client.get(reverse("identity:enroll"), **headers).content.decode()


def test_a_refusal_reason_is_shown_in_the_page_language_on_reload(client: Client) -> None:
    from identity.models import EnrollmentPhoto, EnrollmentStatus, PhotoStatus

    person = IdentityFactory()
    services.consent_give(identity=person, source="web")
    enrollment = services.enrollment_start(identity=person, actor=services_actor(person))
    EnrollmentPhoto.objects.create(
        enrollment=enrollment, data=b"", content_type="jpeg", size_bytes=0,
        status=PhotoStatus.REFUSED, refusal_code="too_dark", processed_at=timezone.now(),
        refusal_message="Too dark: move somewhere brighter or switch on the light.",
    )  # fmt: skip
    type(enrollment).objects.filter(pk=enrollment.pk).update(status=EnrollmentStatus.FAILED)

    english = _enrolled_page(client, person)
    assert "Please retake your photo. Too dark: move somewhere brighter" in " ".join(
        english.split()
    )
    chinese = _enrolled_page(client, person, HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert "请重新拍照。 光线太暗：请到明亮处或打开灯。" in " ".join(chinese.split())


def services_actor(person: Identity):  # type: ignore[no-untyped-def]
    from core.actors import Actor, ActorKind

    return Actor(kind=ActorKind.RECIPIENT, label=f"identity {person.pk}")
