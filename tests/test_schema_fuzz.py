"""schemathesis against our own OpenAPI document, in-process through the WSGI app, with a valid
token: no generated request may get a 5xx, and every documented response must match its schema.

Everything is fuzzed, upload and webhook included: the generator cannot make a playable audio file
or a valid Stripe signature, so those operations only see their refusal paths (400/402/415, and
400 for the webhook), which is exactly where a 500 would hide.
"""

from collections import Counter

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from accounts.tokens import access_token_issue
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = pytest.mark.unit

EXAMPLES_PER_OPERATION = 25

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
CASES: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_case_count(request):
    yield
    # Past pytest's capture, so the count shows in a normal run.
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\nschemathesis: {sum(CASES.values())} cases over {len(CASES)} operations")


@pytest.fixture
def _keep_the_test_connection():
    # The WSGI handler closes the database connection after each request; Django's test Client
    # turns that off, and so must we, or the test's transaction is gone after one request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(db, demo_model, settings, _keep_the_test_connection):
    settings.EMAIL_VERIFICATION = "none"
    user = UserFactory()
    make_job(user)  # something for the job list and the history to show
    return access_token_issue(user=user)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@pytest.mark.django_db
def test_the_api_keeps_to_its_schema_and_never_fails(case, token):
    CASES[case.operation.label] += 1
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
