"""Schemathesis against the live OpenAPI schema: no 5xx, every response as the schema says."""

import pytest
import schemathesis
from django.contrib.auth.models import User
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.tokens import api_token_issue
from config.wsgi import application

# The schema view reads no database: it can be loaded when the tests are collected.
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application).exclude(
    # Triggering a run by ref asks the repository for the ref's head over the network, and a
    # generated repository URL could point anywhere. That endpoint's validation is tested on
    # its own (tests/api/test_api.py).
    method="POST",
    path="/api/v1/runs/",
)


# Committed data (transactional_db): the app closes stale connections around each request, as
# in production, which a test-wide transaction would not survive.
@pytest.fixture
def operator_token(transactional_db: None) -> str:
    user, _ = User.objects.get_or_create(username="schemathesis", defaults={"is_staff": True})
    return api_token_issue(user=user)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_never_fails_and_always_answers_as_its_schema_says(
    case: schemathesis.Case, operator_token: str
) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Token {operator_token}"},
        # What the API promises: no 5xx, and every answer as the schema says. A request the
        # schema allows may still be refused for its meaning (a slug that is taken, a URL that
        # is no repository), so "schema-valid means accepted" is not among the checks.
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            negative_data_rejection,
        ],
    )
