"""The OpenAPI schema is the API: schemathesis generates requests for every carrier and
recipient operation from the schema the project serves and checks each answer with every
check it has (no 5xx, status codes, content types, headers and bodies as documented, bad
input refused, auth not ignored). Bounded: a few dozen deterministic examples per operation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from cabinets.models import CabinetState
from cabinets.services.lifecycle import compartments_create
from courier.authentication import carrier_api_key_issue
from identity.face_pipeline import UPLOAD_REFUSALS
from identity.services import api_token_issue
from tests.api.openapi import schema, served_schema
from tests.factories import (
    BiometricConsentFactory,
    CabinetFactory,
    CarrierFactory,
    IdentityFactory,
    ParcelFactory,
)

pytestmark = pytest.mark.django_db

MAX_EXAMPLES = 20


@pytest.fixture
def credentials() -> dict[str, str]:
    """The cast the generated requests meet: a carrier with a cabinet and a parcel, and a
    consenting recipient. Generated tracking numbers mostly name nothing (404s, checked too)."""
    carrier = CarrierFactory(code="demo")
    cabinet = CabinetFactory(serial="SH-API-1", state=CabinetState.ACTIVE, city="Shanghai")
    compartments_create(cabinet=cabinet, layout=[("A01", "S"), ("B01", "M")])
    person = IdentityFactory(phone="+8613800009999")
    BiometricConsentFactory(identity=person)
    ParcelFactory(carrier=carrier, cabinet=cabinet, recipient=person, tracking_number="DX0001")
    return {
        "carrier": f"Api-Key {carrier_api_key_issue(carrier=carrier)}",
        "recipient": f"Enrollment {api_token_issue(identity=person)}",
    }


# Credentials are the test's own (below), not generated; unknown query parameters are ignored
# by design (docs/security.md), so they are not sent as "invalid" input.
schema.config.generation.update(with_security_parameters=False, allow_extra_parameters=False)


def test_the_tested_schema_is_the_served_one(client: Any) -> None:
    served = client.get("/api/schema/?format=json")
    assert served.status_code == 200
    assert served.json() == served_schema()


@schema.include(path_regex=r"^/api/v1/(carrier|identity)/").parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_its_schema_says(
    case: Any, credentials: dict[str, str], connection_kept_open: None
) -> None:
    audience = "carrier" if case.path.startswith("/api/v1/carrier/") else "recipient"
    every_check = CHECKS.get_all()
    response = case.call_and_validate(
        headers={"Authorization": credentials[audience]},
        checks=every_check,
        excluded_checks=[positive_data_acceptance],
    )
    assert positive_data_acceptance in every_check
    _positive_data_accepted(case, response)


# Refusals of well-formed input that no schema can express: a cursor or a code this server
# never issued, a file that is not a photo, an ID number with a wrong check digit.
SEMANTIC_REFUSALS = {"invalid_cursor", "invalid_code", *UPLOAD_REFUSALS, "invalid_id_number"}


def _positive_data_accepted(case: Any, response: Any) -> None:
    """schemathesis' positive_data_acceptance, except that a schema-valid request may get a
    400 whose code is one of the semantic refusals above; any other 400 (validation_error,
    parse_error) means the schema allows what the API refuses, and fails."""
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    if response.status_code == 400:
        error = response.json()["error"]
        assert error in SEMANTIC_REFUSALS, f"schema-valid request refused: {response.text}"
        return
    assert response.status_code < 400 or response.status_code in (401, 403, 404, 409, 429), (
        f"schema-valid request answered {response.status_code}: {response.text}"
    )
