"""URL import holds a web thread for the whole download, up to URL_IMPORT_TIMEOUT_SECONDS: one
account may run at most URL_IMPORT_MAX_CONCURRENT of them at once, so a handful of slow addresses
cannot take every web thread from everybody else. Past it the answer is 429 at once, before any
request goes out; other accounts are not held back."""

import threading

import pytest
from django.db import connection

from separation.models import Job
from tests.conftest import bearer_client
from tests.factories import UserFactory
from tests.test_url_import import SongServer, import_url

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("demo_model")]


@pytest.fixture
def held_songs():
    """A song server whose /held.wav waits until `release` is set, then answers 404."""
    server = SongServer()
    server.release = threading.Event()

    def held(handler):
        server.release.wait(10)
        handler.send_error(404)

    server.routes["/held.wav"] = held
    server.routes["/missing.wav"] = lambda handler: handler.send_error(404)
    yield server
    server.release.set()
    server.close()


def _import_in_thread(user, url, answers):
    def run():
        try:
            answers.append(import_url(bearer_client(user), url).status_code)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_for_requests(server, count):
    for _ in range(200):
        if len(server.requests) >= count:
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"the server got {len(server.requests)} requests, not {count}")


def test_it_refuses_a_url_import_past_the_concurrency_limit(held_songs, settings):
    settings.URL_IMPORT_ALLOW_PRIVATE = True
    settings.URL_IMPORT_MAX_CONCURRENT = 2
    user, other = UserFactory(), UserFactory()
    answers = []
    threads = [_import_in_thread(user, held_songs.url("/held.wav"), answers) for _ in range(2)]
    try:
        _wait_for_requests(held_songs, 2)

        busy = import_url(bearer_client(user), held_songs.url("/held.wav"))
        assert busy.status_code == 429, busy.content
        assert busy.json()["code"] == "url_imports_busy"
        assert len(held_songs.requests) == 2  # refused before fetching anything

        # Another account still imports (this address answers 404: it was fetched, not refused).
        elsewhere = import_url(bearer_client(other), held_songs.url("/missing.wav"))
        assert elsewhere.status_code == 422, elsewhere.content
    finally:
        held_songs.release.set()
        for thread in threads:
            thread.join(30)
    assert answers == [422, 422]

    # The slots are free again once those imports ended.
    again = import_url(bearer_client(user), held_songs.url("/missing.wav"))
    assert again.status_code == 422, again.content
    assert not Job.objects.exists()
