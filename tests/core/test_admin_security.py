"""Staff security in the admin (issue 10, items 2, 3, 7 and 9), each attack performed:
destructive actions without their permission, carrier staff reading what is not their
carrier's, secret columns read through changelist filters, password guessing at the login,
long staff sessions, credentials issued without the second factor."""

from __future__ import annotations

import re
from base64 import b32decode
from io import StringIO
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from cabinets.models import CabinetCredential, CabinetState, CompartmentEvent
from cabinets.services.credentials import cabinet_credential_issue
from core.actors import Actor
from core.admin import StaffScopedAdmin, lookup_is_secret
from core.staff_otp import staff_totp_enroll
from courier.models import AccessAttempt, CarrierApiKey, CarrierStaff, Courier
from identity.models import BiometricConsent, ConsentStatus, Identity
from tests.factories import (
    BiometricConsentFactory,
    CabinetFactory,
    CarrierFactory,
    CompartmentFactory,
    CourierFactory,
    IdentityFactory,
    ParcelFactory,
)
from tests.staff import totp_token, verified_client

pytestmark = pytest.mark.django_db

PASSWORD = "staff-password-123"


def staff_user(username: str, *codenames: str, platform: bool = False) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    perms = Permission.objects.filter(codename__in=codenames) if codenames else []
    user.user_permissions.set(perms)
    if platform:
        group, _ = Group.objects.get_or_create(name="Platform staff")
        user.groups.add(group)
    return user


def all_view_permissions() -> list[str]:
    return list(
        Permission.objects.filter(codename__startswith="view_").values_list("codename", flat=True)
    )


def messages_of(response: Any) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


def changelist_urls() -> dict[str, str]:
    return {
        f"{model._meta.app_label}.{model._meta.model_name}": reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"
        )
        for model in admin.site._registry
    }


# --- Item 3: one scoping mechanism, default-deny --------------------------------------------


def test_every_model_admin_uses_the_one_scoping_mechanism() -> None:
    unscoped = [
        f"{model._meta.label}: {type(model_admin).__name__}"
        for model, model_admin in admin.site._registry.items()
        if not isinstance(model_admin, StaffScopedAdmin)
    ]
    assert unscoped == []
    # Django's and the packages' admins are there too, wrapped.
    labels = {model._meta.label for model in admin.site._registry}
    assert {"auth.User", "auth.Group", "otp_totp.TOTPDevice", "axes.AccessAttempt"} <= labels


def test_carrier_staff_with_every_view_permission_see_only_their_carriers_rows(
    client: Client,
) -> None:
    own, rival = CarrierFactory(code="own", name="Own Express"), CarrierFactory(code="rival")
    user = staff_user("own-ops", *all_view_permissions())
    CarrierStaff.objects.create(user=user, carrier=own)
    rival_recipient = IdentityFactory(name="Rival Recipient", email="rival@example.com")
    rival_parcel = ParcelFactory(carrier=rival, recipient=rival_recipient)
    rival_courier = CourierFactory(carrier=rival, name="Rival Courier", badge_number="R-1")
    BiometricConsentFactory(identity=rival_recipient)
    CompartmentEvent.objects.create(
        compartment=CompartmentFactory(),
        from_state="in_service",
        to_state="out_of_service",
        actor_kind="courier",
        actor_label="Rival Courier",
    )
    client.force_login(user)

    scoped = {
        "courier.carrier",
        "courier.courier",
        "courier.carrierapikey",
        "courier.parcel",
        "courier.parcelevent",
        "courier.notification",
        "courier.accessattempt",
    }
    for label, url in changelist_urls().items():
        response = client.get(url)
        if label in scoped:
            assert response.status_code == 200, label
            body = response.content.decode()
            assert "Rival" not in body and "rival" not in body, label
        else:
            assert response.status_code == 403, label
    # Other carriers' rows do not exist for them, by URL either.
    for name, obj in [
        ("admin:courier_parcel_change", rival_parcel),
        ("admin:courier_courier_change", rival_courier),
        ("admin:identity_identity_change", rival_recipient),
        ("admin:auth_user_change", user),
    ]:
        response = client.get(reverse(name, args=[obj.pk]))
        assert response.status_code in (302, 403), name
        assert b"Rival" not in response.content
    index = client.get(reverse("admin:index")).content.decode()
    assert "Identities" not in index and "Cabinet commands" not in index


def test_a_scope_through_a_many_valued_path_lists_each_row_once(rf: Any) -> None:
    """Rows reachable several ways (a person with two parcels of the carrier) appear once."""

    class RecipientsOfTheCarrier(StaffScopedAdmin):
        carrier_scope = "parcels_received__carrier"

    own = CarrierFactory(code="own")
    person, stranger = IdentityFactory(), IdentityFactory()
    ParcelFactory.create_batch(2, carrier=own, recipient=person)
    ParcelFactory(carrier=CarrierFactory(code="rival"), recipient=stranger)
    user = staff_user("own-ops")
    CarrierStaff.objects.create(user=user, carrier=own)
    request = rf.get("/")
    request.user = user
    rows = RecipientsOfTheCarrier(Identity, admin.site).get_queryset(request)
    assert list(rows) == [person]


def test_staff_without_a_carrier_or_the_platform_group_see_nothing(client: Client) -> None:
    IdentityFactory(name="Somebody")
    user = staff_user("flag-only", *all_view_permissions())
    client.force_login(user)
    for label, url in changelist_urls().items():
        assert client.get(url).status_code == 403, label


def test_platform_staff_are_the_group_and_see_every_carrier(client: Client) -> None:
    ParcelFactory(carrier=CarrierFactory(code="a"), tracking_number="A-1")
    ParcelFactory(carrier=CarrierFactory(code="b"), tracking_number="B-1")
    client.force_login(staff_user("platform", *all_view_permissions(), platform=True))
    body = client.get(reverse("admin:courier_parcel_changelist")).content.decode()
    assert "A-1" in body and "B-1" in body
    assert client.get(reverse("admin:identity_identity_changelist")).status_code == 200


# --- Item 2: destructive actions declare their permissions -----------------------------------


OUR_APPS = {"cabinets", "courier", "identity", "core"}


def test_every_admin_action_of_ours_declares_its_permissions() -> None:
    undeclared = []
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in OUR_APPS:
            continue
        for name in [*admin.site._actions, *(model_admin.actions or [])]:
            func, *_ = model_admin.get_action(name) or (None,)
            if func is not None and not getattr(func, "allowed_permissions", ()):
                undeclared.append(f"{model._meta.label}.{name}")
    assert undeclared == []


def test_an_action_without_declared_permissions_is_not_offered(rf: Any, admin_user: User) -> None:
    from axes.models import AccessAttempt as AxesAttempt

    request = rf.get("/admin/axes/accessattempt/")
    request.user = admin_user
    model_admin = admin.site._registry[AxesAttempt]
    assert "cleanup_expired_attempts" in (model_admin.actions or [])  # the package's, undeclared
    offered = model_admin.get_actions(request)
    assert "cleanup_expired_attempts" not in offered and "delete_selected" in offered


def withdraw(client: Client, identity: Identity) -> Any:
    return client.post(
        reverse("admin:identity_identity_changelist"),
        {"action": "withdraw_consent", "_selected_action": [identity.pk], "confirm": "1"},
        follow=True,
    )


def test_a_view_only_staff_member_cannot_withdraw_consent_or_delete_face_data(
    client: Client,
) -> None:
    consent = BiometricConsentFactory()
    client.force_login(staff_user("viewer", "view_identity", platform=True))
    withdraw(client, consent.identity)
    client.post(
        reverse("admin:identity_identity_changelist"),
        {"action": "delete_face_data", "_selected_action": [consent.identity.pk], "confirm": "1"},
    )
    consent.refresh_from_db()
    assert consent.status == ConsentStatus.GIVEN
    page = client.get(reverse("admin:identity_identity_changelist")).content.decode()
    assert "withdraw_consent" not in page and "delete_face_data" not in page


def test_carrier_staff_holding_the_permission_cannot_withdraw_anyones_consent(
    client: Client,
) -> None:
    carrier = CarrierFactory(code="own")
    consent = BiometricConsentFactory()
    ParcelFactory(carrier=carrier, recipient=consent.identity)  # even their own recipient
    user = staff_user("own-ops", "view_identity", "withdraw_consent", "delete_face_data")
    CarrierStaff.objects.create(user=user, carrier=carrier)
    client.force_login(user)
    assert withdraw(client, consent.identity).status_code == 403
    consent.refresh_from_db()
    assert consent.status == ConsentStatus.GIVEN


def test_carrier_staff_issue_no_keys_or_pins_even_for_their_own_carrier(client: Client) -> None:
    carrier = CarrierFactory(code="own")
    courier = CourierFactory(carrier=carrier, pin_hash="unchanged")
    user = staff_user(
        "own-ops", "view_carrier", "issue_api_key", "view_courier", "reset_courier_pin"
    )
    CarrierStaff.objects.create(user=user, carrier=carrier)
    verified_client(client, user)  # even with the second factor
    issue_key(client, carrier)
    client.post(
        reverse("admin:courier_courier_changelist"),
        {"action": "reset_pin", "_selected_action": [courier.pk]},
    )
    assert not CarrierApiKey.objects.exists()
    assert Courier.objects.get(pk=courier.pk).pin_hash == "unchanged"


def test_platform_staff_holding_the_permission_withdraw_consent(client: Client) -> None:
    consent = BiometricConsentFactory()
    client.force_login(staff_user("privacy", "view_identity", "withdraw_consent", platform=True))
    withdraw(client, consent.identity)
    assert BiometricConsent.objects.get(pk=consent.pk).status == ConsentStatus.WITHDRAWN


# --- Item 9: secret columns refuse lookups ------------------------------------------------


SECRET_FILTERS = [
    ("admin:courier_courier_changelist", "pin_hash__regex=^pbkdf2"),
    ("admin:courier_parcel_changelist", "pickup_code_hash__startswith=a"),
    ("admin:courier_carrierapikey_changelist", "secret_hash__startswith=0"),
    ("admin:courier_accessattempt_changelist", "courier__pin_hash__regex=^p"),
    ("admin:identity_identity_changelist", "id_number_hash__startswith=a"),
    ("admin:identity_onetimecode_changelist", "code_hash__startswith=a"),
    ("admin:identity_facetemplate_changelist", "embedding_encrypted__isnull=False"),
    ("admin:identity_realidcheck_changelist", "id_number_hash__startswith=a"),
    ("admin:cabinets_cabinetcredential_changelist", "secret_hash__regex=^a"),
    ("admin:auth_user_changelist", "password__startswith=md5"),
    ("admin:otp_totp_totpdevice_changelist", "key__startswith=a"),
]


@pytest.mark.parametrize(("name", "query"), SECRET_FILTERS)
def test_secret_columns_cannot_be_filtered_on(admin_client: Client, name: str, query: str) -> None:
    courier = CourierFactory(pin_hash="pbkdf2_sha256$fake")
    ParcelFactory(pickup_code_hash="abc")
    AccessAttempt.objects.create(
        cabinet=CabinetFactory(),
        method="courier",
        success=False,
        outcome="wrong_pin",
        courier=courier,
    )
    response = admin_client.get(f"{reverse(name)}?{query}")
    assert response.status_code == 400, (name, query)
    assert b"pbkdf2_sha256$fake" not in response.content


def test_ordinary_filters_still_work(admin_client: Client) -> None:
    CourierFactory(name="Active One")
    response = admin_client.get(reverse("admin:courier_courier_changelist") + "?is_active__exact=1")
    assert response.status_code == 200 and b"Active One" in response.content


def test_lookup_names_are_judged_at_any_depth() -> None:
    assert lookup_is_secret("recipient__user__password__startswith")
    assert lookup_is_secret("templates__embedding_encrypted__isnull")
    assert not lookup_is_secret("carrier__code__exact")
    assert not lookup_is_secret("key_id")


# --- Item 7: login throttling, short sessions, second factor -------------------------------


def login(client: Client, username: str, password: str, token: str = "") -> Any:
    return client.post(
        reverse("admin:login"),
        {"username": username, "password": password, "otp_token": token, "next": "/admin/"},
    )


@override_settings(AXES_ENABLED=True)
def test_five_wrong_passwords_lock_the_admin_login(client: Client) -> None:
    staff_user("target", platform=True)
    answers = [login(client, "target", "wrong-guess").status_code for _ in range(5)]
    assert answers == [200, 200, 200, 200, 429]  # the fifth wrong password locks
    locked = login(client, "target", PASSWORD)
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # The lockout is per username too: another client address does not get around it.
    other = Client(REMOTE_ADDR="198.51.100.7")
    assert login(other, "target", PASSWORD).status_code == 429


def test_a_staff_session_ends_eight_hours_after_it_began(client: Client) -> None:
    client.force_login(staff_user("ops", platform=True))
    first = client.get(reverse("admin:index"))
    assert 0 < client.session.get_expiry_age() <= 8 * 3600
    assert 0 < int(first.cookies["sessionid"]["max-age"]) <= 8 * 3600
    end = client.session.get_expiry_date()
    client.get(reverse("admin:index"))
    assert client.session.get_expiry_date() == end  # activity does not push it back


def issue_key(client: Client, carrier: Any) -> Any:
    return client.post(
        reverse("admin:courier_carrier_changelist"),
        {"action": "issue_api_key", "_selected_action": [carrier.pk]},
        follow=True,
    )


def test_credentials_are_not_issued_without_the_second_factor(
    client: Client, admin_user: User
) -> None:
    carrier = CarrierFactory()
    courier = CourierFactory(pin_hash="unchanged")
    cabinet = CabinetFactory()
    cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    client.force_login(admin_user)  # a password login, no TOTP code

    assert "second factor" in messages_of(issue_key(client, carrier))
    client.post(
        reverse("admin:courier_courier_changelist"),
        {"action": "reset_pin", "_selected_action": [courier.pk]},
    )
    changelist = reverse("admin:cabinets_cabinet_changelist")
    client.post(
        changelist,
        {"action": "rotate_credentials", "_selected_action": [cabinet.pk], "confirm": "on"},
    )
    client.post(
        changelist,
        {"action": "revoke_credentials", "_selected_action": [cabinet.pk], "reason": "x"},
    )
    single = client.post(
        reverse("admin:cabinets_cabinet_operation", args=[cabinet.pk, "rotate_credential"]),
        {"reason": "x"},
        follow=True,
    )
    assert "second factor" in messages_of(single)
    imported = client.get(reverse("admin:cabinets_cabinet_import"), follow=True)
    assert "second factor" in messages_of(imported)

    assert not CarrierApiKey.objects.exists()
    assert Courier.objects.get(pk=courier.pk).pin_hash == "unchanged"
    credential = CabinetCredential.objects.get(cabinet=cabinet)
    assert credential.revoked_at is None


@override_settings(OTP_TOTP_THROTTLE_FACTOR=0)
def test_enrolled_staff_log_in_with_their_code_and_then_issue_credentials(
    client: Client,
) -> None:
    user = staff_user("keys", "view_carrier", "issue_api_key", platform=True)
    device = staff_totp_enroll(user=user)
    carrier = CarrierFactory()

    assert b"Enter the current code" in login(client, "keys", PASSWORD).content
    assert b"Enter the current code" in login(client, "keys", PASSWORD, "000000").content
    assert "_auth_user_id" not in client.session

    assert login(client, "keys", PASSWORD, totp_token(device)).status_code == 302
    assert "New carrier API keys" in issue_key(client, carrier).content.decode()
    assert CarrierApiKey.objects.filter(carrier=carrier).exists()


@override_settings(OTP_TOTP_THROTTLE_FACTOR=3600)
def test_a_wrong_code_throttles_the_next_attempts(client: Client) -> None:
    user = staff_user("keys", platform=True)
    device = staff_totp_enroll(user=user)
    assert b"Enter the current code" in login(client, "keys", PASSWORD, "000000").content
    refused = login(client, "keys", PASSWORD, totp_token(device))
    assert b"Too many wrong authenticator codes" in refused.content
    assert "_auth_user_id" not in client.session


def test_a_used_code_does_not_log_in_again(client: Client) -> None:
    user = staff_user("keys", platform=True)
    device = staff_totp_enroll(user=user)
    token = totp_token(device)
    assert login(client, "keys", PASSWORD, token).status_code == 302
    assert login(Client(), "keys", PASSWORD, token).status_code == 200  # replayed: refused


def test_staff_totp_enroll_prints_a_uri_whose_codes_verify(client: Client) -> None:
    user = staff_user("newcomer", platform=True)
    out = StringIO()
    call_command("staff_totp_enroll", "newcomer", stdout=out)
    text = out.getvalue()
    assert "otpauth://totp/" in text
    secret = re.search(r"secret \(base32\): (\w+)", text)[1]  # type: ignore[index]
    device = TOTPDevice.objects.get(user=user)
    assert b32decode(secret) == device.bin_key
    token = f"{TOTP(b32decode(secret)).token():06d}"
    assert login(client, "newcomer", PASSWORD, token).status_code == 302
    # Enrolling again replaces the device: a lost phone's codes stop working.
    call_command("staff_totp_enroll", "newcomer", stdout=StringIO())
    assert TOTPDevice.objects.filter(user=user).count() == 1
    assert TOTPDevice.objects.get(user=user).key != device.key


def test_a_verified_superuser_rotates_from_the_changelist(admin_client: Client) -> None:
    """The positive side of the second-factor check (admin_client passed it)."""
    cabinet = CabinetFactory(state=CabinetState.ACTIVE)
    response = admin_client.post(
        reverse("admin:cabinets_cabinet_changelist"),
        {"action": "rotate_credentials", "_selected_action": [cabinet.pk], "confirm": "on"},
        follow=True,
    )
    assert response.redirect_chain
    assert CabinetCredential.objects.filter(cabinet=cabinet, revoked_at__isnull=True).exists()


def test_carrier_staff_follow_their_parcel_to_its_attempts_and_not_to_another_carriers(
    client: Client,
) -> None:
    own, rival = CarrierFactory(code="own"), CarrierFactory(code="rival")
    user = staff_user("own-ops", "view_parcel", "view_accessattempt")
    CarrierStaff.objects.create(user=user, carrier=own)
    cabinet = CabinetFactory()
    mine, theirs = ParcelFactory(carrier=own), ParcelFactory(carrier=rival)
    attempts = {}
    for parcel in (mine, theirs):
        attempt = AccessAttempt.objects.create(
            cabinet=cabinet, method="code", success=True, outcome="opened"
        )
        attempt.parcels.add(parcel)
        attempts[parcel.pk] = attempt
    client.force_login(user)

    page = client.get(reverse("admin:courier_parcel_change", args=[mine.pk])).content.decode()
    link = reverse("admin:courier_accessattempt_change", args=[attempts[mine.pk].pk])
    assert link in page
    assert client.get(link).status_code == 200
    rival_link = reverse("admin:courier_accessattempt_change", args=[attempts[theirs.pk].pk])
    assert client.get(rival_link).status_code in (302, 403, 404)
    listing = client.get(reverse("admin:courier_accessattempt_changelist"))
    shown = {a.pk for a in listing.context["cl"].result_list}
    assert shown == {attempts[mine.pk].pk}
