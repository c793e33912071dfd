# ruff: noqa: RUF001
"""The admin's own text in Simplified Chinese: a staff user whose browser asks for zh-hans
sees the changelist's actions, a confirmation page and the flash message in Chinese."""

from __future__ import annotations

import pytest

from cabinets.models import CabinetEvent, CabinetState
from tests.cabinets.test_admin_operations import retire_selection

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


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
