"""Webhooks never make the server request what it should not: only http(s), no private,
loopback, link-local or reserved address (literal, or a name resolving to one, checked when
connecting), no redirects followed; unless the operator sets WEBHOOK_ALLOW_PRIVATE=1."""

import socket

import pytest

from separation.services import job_fail
from tests.factories import UserFactory
from tests.jobs import make_job
from tests.webhook_receiver import Receiver
from webhooks import outbound, services, tasks
from webhooks.models import Delivery, Endpoint

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

REFUSED_URLS = [
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "gopher://example.com/",
    "http:///no-host",
    "https://user:password@example.com/hook",
    "http://127.0.0.1/hook",
    "http://127.8.9.10:8000/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.5/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0:8000/",
    "http://[::1]:8000/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://224.0.0.1/hook",
    "http://240.0.0.1/hook",
    "http://localhost:8000/hook",
    "http://api.localhost/hook",
]


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_it_refuses_to_register_an_unsafe_url(url, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(services.WebhookRefused):
        services.endpoint_create(user=UserFactory(), url=url, events=["job.completed"])
    assert not Endpoint.objects.exists()


# IPv4 addresses in the forms inet_aton (and so getaddrinfo) reads besides dotted quads: each is
# 127.0.0.1 or 10.0.0.1, which a check reading only dotted quads took for a host name.
PRIVATE_URLS_SPELT_OTHERWISE = [
    "http://2130706433/hook",
    "http://127.1/hook",
    "http://0x7f000001/hook",
    "http://0x7f.0.0.1/hook",
    "http://017700000001/hook",
    "http://0177.0.0.1:8000/hook",
    "http://10.1/hook",
    # Not a number, but the same kind of miss: the fully qualified name of localhost.
    "http://localhost.:8000/hook",
    "http://api.localhost./hook",
]


@pytest.mark.parametrize("url", PRIVATE_URLS_SPELT_OTHERWISE)
def test_it_refuses_private_addresses_however_they_are_spelt(url, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(services.WebhookRefused):
        services.endpoint_create(user=UserFactory(), url=url, events=["job.completed"])
    with pytest.raises(services.WebhookRefused):
        services.callback_url_check(url=url)
    assert not Endpoint.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
        "http://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
        "http://[::127.0.0.1]/hook",  # IPv4-compatible (deprecated)
        "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
        "http://[2002:a9fe:a9fe::]/hook",  # 6to4 of 169.254.169.254
    ],
)
def test_it_refuses_ipv6_forms_of_private_ipv4_addresses(url, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(services.WebhookRefused):
        services.endpoint_create(user=UserFactory(), url=url, events=["job.completed"])
    assert not Endpoint.objects.exists()


def test_it_accepts_public_addresses_and_names(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    for url in ("https://hooks.example.com/stemfold", "http://93.184.215.14:8080/x?y=1", "https://[2606:4700::1]/"):
        assert outbound.url_check(url, allow_private=False)[0] in ("http", "https")


def send_for_a_failed_job(url, settings) -> Delivery:
    """An endpoint registered while private addresses were allowed, delivered once they are not."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    user = UserFactory()
    services.endpoint_create(user=user, url=url, events=["job.failed"])
    settings.WEBHOOK_ALLOW_PRIVATE = False
    job = make_job(user)
    job_fail(job_id=job.pk, error="It broke.")
    tasks.job_finished(str(job.pk))
    return Delivery.objects.get(job=job)


def test_it_refuses_a_name_that_resolves_to_a_private_address_when_connecting(receiver, media, settings):
    host = socket.gethostname()  # in /etc/hosts: loopback here, a private address in a container
    resolved = {info[4][0] for info in socket.getaddrinfo(host, receiver.port, type=socket.SOCK_STREAM)}
    assert resolved and not any(outbound.address_allowed(address) for address in resolved)  # the premise
    outbound.url_check(f"http://{host}:{receiver.port}/", allow_private=False)  # the name alone passes

    delivery = send_for_a_failed_job(f"http://{host}:{receiver.port}/hooks/stemfold", settings)

    attempt = delivery.attempt_rows.get()
    assert attempt.status_code is None
    assert attempt.error == "Refused: The host resolves to a private, loopback or link-local address."
    assert receiver.received == []


def test_it_refuses_a_literal_private_address_stored_before_the_operator_forbade_them(receiver, media, settings):
    delivery = send_for_a_failed_job(receiver.url, settings)

    assert delivery.attempt_rows.get().error.startswith("Refused: Private, loopback")
    assert receiver.received == []


def test_it_does_not_follow_a_redirect_to_a_private_address(receiver, media, settings):
    inner = Receiver().start()
    try:
        receiver.location = f"http://127.0.0.1:{inner.port}/admin"
        settings.WEBHOOK_ALLOW_PRIVATE = True  # to reach the first receiver at all
        user = UserFactory()
        services.endpoint_create(user=user, url=receiver.url, events=["job.failed"])
        job = make_job(user)
        job_fail(job_id=job.pk, error="It broke.")
        tasks.job_finished(str(job.pk))
    finally:
        inner.stop()

    attempt = Delivery.objects.get(job=job).attempt_rows.get()
    assert attempt.status_code == 302
    assert attempt.error == "Answered 302 (redirects are not followed)"
    assert len(receiver.received) == 1
    assert inner.received == []


def test_it_connects_to_a_private_name_only_when_the_operator_allows_it(receiver):
    url = f"http://{socket.gethostname()}:{receiver.port}/"
    with pytest.raises(outbound.UnsafeAddress):
        outbound.post(url, body=b"{}", headers={}, timeout=2, allow_private=False)
    assert receiver.received == []
    answer = outbound.post(url, body=b"{}", headers={}, timeout=2, allow_private=True)
    assert answer.status_code == 200 and answer.body == b"ok"
    assert len(receiver.received) == 1
