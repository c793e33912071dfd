# ruff: noqa: RUF001
"""Simplified Chinese first, English second; the compiled catalogue is committed and current."""

from __future__ import annotations

import gettext
import importlib.util
from pathlib import Path

import pytest

from config.settings import base
from tests.factories import CabinetFactory

ROOT = Path(__file__).resolve().parents[2]
MO = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.mo"
PO = MO.with_suffix(".po")


def _texts() -> dict[str, str | list[str]]:
    spec = importlib.util.spec_from_file_location(
        "zh_hans_texts", ROOT / "locale" / "zh_hans_texts.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ZH  # type: ignore[no-any-return]


def test_the_platform_speaks_simplified_chinese_first_then_english() -> None:
    assert base.LANGUAGE_CODE == "zh-hans"
    assert [code for code, _ in base.LANGUAGES] == ["zh-hans", "en"]
    assert base.RECIPIENT_LANGUAGE_CODE == base.CABINET_LANGUAGE_CODE == "zh-hans"
    assert "django.middleware.locale.LocaleMiddleware" in base.MIDDLEWARE
    middleware = base.MIDDLEWARE
    assert (
        middleware.index("django.contrib.sessions.middleware.SessionMiddleware")
        < middleware.index("django.middleware.locale.LocaleMiddleware")
        < middleware.index("django.middleware.common.CommonMiddleware")
    )


def test_the_committed_catalogue_is_compiled_from_the_translation_table() -> None:
    """A fresh machine needs no gettext: the .mo is in the repository, and holds every
    translation of the table (a stale .mo, or a .po not filled, fails here)."""
    with MO.open("rb") as handle:
        catalogue = gettext.GNUTranslations(handle)
    texts = _texts()
    assert len(texts) > 100
    for msgid, zh in texts.items():
        if isinstance(zh, list):
            assert catalogue.ngettext(msgid, msgid, 1) == zh[0], msgid
        else:
            assert catalogue.gettext(msgid) == zh, msgid
    # every entry of the .po has a translation
    assert 'msgstr ""\n\n' not in PO.read_text(encoding="utf-8").split("\n\n", 1)[1]


@pytest.mark.django_db
def test_the_admin_speaks_chinese_to_a_chinese_browser(admin_client) -> None:  # type: ignore[no-untyped-def]
    index = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    for name in ("柜机", "格口", "包裹", "快递公司", "人脸模板", "分批发布"):
        assert name in index, name
    CabinetFactory()
    cabinets = admin_client.get("/admin/cabinets/cabinet/", HTTP_ACCEPT_LANGUAGE="zh-CN")
    page = cabinets.content.decode()
    assert "进入维护" in page and "轮换凭据（经连接下发；需确认）" in page  # the actions
    assert "最近在线 (UTC+08:00)" in page
    assert "所有时间：Asia/Shanghai（UTC+08:00）" in page
