"""URL import: POST /api/upload with `url` (and the dashboard's address field) fetches the song
from a real HTTP server on loopback, safely, then accepts it as an uploaded file; nothing is
charged unless the audio is valid."""

import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from separation import safe_fetch
from separation.models import Job
from testkit.audio import tone_bytes
from tests.conftest import balance, bearer_client, logged_in

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]

SONG = tone_bytes()


class SongServer:
    """An HTTP server on 127.0.0.1 answering by path; it records the paths it was asked for."""

    def __init__(self):
        self.requests: list[str] = []
        self.routes = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append(self.path)
                route = owner.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                route(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def answer(body: bytes, content_type: str = "audio/wav", length: bool = True, status: int = 200, headers=None):
    def respond(handler):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        if length:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def redirect(location: str):
    def respond(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return respond


def trickle(handler):
    handler.send_response(200)
    handler.send_header("Content-Type", "audio/wav")
    handler.end_headers()
    for byte in SONG[:40]:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.2)


@pytest.fixture
def songs():
    server = SongServer()
    server.routes["/song.wav"] = answer(SONG)
    yield server
    server.close()


@pytest.fixture
def private_allowed(settings):
    settings.URL_IMPORT_ALLOW_PRIVATE = True


def import_url(client, url, **fields):
    return client.post("/api/upload", {"url": url, **fields}, format="json")


def refused(response, status: int, code: str):
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    return response.json()["detail"]


def test_it_imports_a_song_from_an_address(user, songs, private_allowed):
    response = import_url(bearer_client(user), songs.url("/song.wav"), stems="vocals", format="mp3")
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job_id"])
    assert (job.original_filename, job.stem_mode, job.output_format) == ("song.wav", "vocals", "mp3")
    assert job.cost == Decimal("1.00") and balance(user) == Decimal("2.00")
    assert songs.requests == ["/song.wav"]


def test_it_names_the_job_from_content_disposition(user, songs, private_allowed):
    songs.routes["/download"] = answer(SONG, headers={"Content-Disposition": 'attachment; filename="My Tune.wav"'})
    response = import_url(bearer_client(user), songs.url("/download?id=7"))
    assert response.status_code == 202
    assert Job.objects.get(pk=response.json()["job_id"]).original_filename == "My Tune.wav"


def test_it_imports_from_the_dashboard_form(user, songs, private_allowed):
    page = logged_in(user).post("/upload/", {"url": songs.url("/song.wav"), "model": "demo", "token": "t1"})
    job = Job.objects.get(user=user)
    assert page.status_code == 302 and page["Location"] == f"/jobs/{job.pk}/"


def test_it_refuses_loopback_and_private_addresses(user, songs):
    client = bearer_client(user)
    for url in (
        songs.url("/song.wav"),
        songs.url("/song.wav", host="[::1]"),
        "http://10.1.2.3/song.wav",
        "http://192.168.0.1/song.wav",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/song.wav",
        "http://[::ffff:127.0.0.1]/song.wav",
        "http://2130706433/song.wav",  # 127.0.0.1 as a number
    ):
        assert "private" in refused(import_url(client, url), 400, "url_not_allowed"), url
    assert songs.requests == []
    assert balance(user) == Decimal("3.00") and not Job.objects.exists()


def test_it_refuses_a_dns_name_that_resolves_to_loopback(user, songs):
    detail = refused(import_url(bearer_client(user), songs.url("/song.wav", host="localhost")), 400, "url_not_allowed")
    assert "localhost" in detail
    assert songs.requests == []


def test_it_refuses_a_redirect_to_another_host(user, songs, private_allowed):
    songs.routes["/elsewhere"] = redirect(songs.url("/song.wav", host="localhost"))
    songs.routes["/metadata"] = redirect("http://169.254.169.254/latest/meta-data/")
    client = bearer_client(user)
    assert "redirect" in refused(import_url(client, songs.url("/elsewhere")), 400, "url_not_allowed")
    assert "redirect" in refused(import_url(client, songs.url("/metadata")), 400, "url_not_allowed")
    assert songs.requests == ["/elsewhere", "/metadata"]
    assert balance(user) == Decimal("3.00")


def test_it_follows_a_redirect_on_the_same_host(user, songs, private_allowed):
    songs.routes["/latest"] = redirect("/song.wav")
    assert import_url(bearer_client(user), songs.url("/latest")).status_code == 202
    assert songs.requests == ["/latest", "/song.wav"]


def test_it_refuses_addresses_that_are_not_http(user):
    client = bearer_client(user)
    for url in ("ftp://example.com/song.wav", "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO"):
        assert "http" in refused(import_url(client, url), 400, "url_not_allowed"), url
    with pytest.raises(safe_fetch.FetchRefused):
        safe_fetch.target_parse("file:///etc/passwd")
    with pytest.raises(safe_fetch.FetchRefused):
        safe_fetch.target_parse("http://user:secret@example.com/song.wav")


def test_it_answers_415_when_the_address_is_a_page(user, songs, private_allowed):
    songs.routes["/page"] = answer(b"<html>not a song</html>", content_type="text/html")
    songs.routes["/noise"] = answer(b"\x00\x01garbage" * 100, content_type="application/octet-stream")
    client = bearer_client(user)
    assert "text/html" in refused(import_url(client, songs.url("/page")), 415, "not_audio")
    refused(import_url(client, songs.url("/noise")), 415, "not_audio")
    assert balance(user) == Decimal("3.00") and not Job.objects.exists()


def test_it_answers_422_when_the_address_does_not_answer_with_a_file(user, songs, private_allowed):
    client = bearer_client(user)
    assert "404" in refused(import_url(client, songs.url("/missing.wav")), 422, "url_fetch_failed")
    closed = SongServer()
    closed.close()
    assert "did not answer" in refused(import_url(client, closed.url("/song.wav")), 422, "url_fetch_failed")
    refused(import_url(client, "http://no-such-host.invalid/song.wav"), 422, "url_fetch_failed")
    assert balance(user) == Decimal("3.00")


def test_it_stops_a_download_past_the_size_limit(user, songs, private_allowed, settings):
    settings.MAX_UPLOAD_MB = 1
    big = b"\x00" * (2 * 1024 * 1024)
    songs.routes["/declared"] = answer(big)
    songs.routes["/undeclared"] = answer(big, length=False)  # no Content-Length: counted as it arrives
    client = bearer_client(user)
    refused(import_url(client, songs.url("/declared")), 413, "file_too_large")
    refused(import_url(client, songs.url("/undeclared")), 413, "file_too_large")
    assert balance(user) == Decimal("3.00") and not Job.objects.exists()


def test_it_holds_the_duration_limit_by_decoding(user, songs, private_allowed, settings):
    settings.MAX_DURATION_MINUTES = 1
    songs.routes["/long.wav"] = answer(tone_bytes(seconds=61.0, samplerate=8000, channels=1))
    refused(import_url(bearer_client(user), songs.url("/long.wav")), 400, "bad_duration")
    assert balance(user) == Decimal("3.00") and not Job.objects.exists()


def test_it_gives_up_on_a_download_past_the_deadline(user, songs, private_allowed, settings):
    settings.URL_IMPORT_TIMEOUT_SECONDS = 1
    songs.routes["/slow.wav"] = trickle
    started = time.monotonic()
    assert "longer than 1 seconds" in refused(
        import_url(bearer_client(user), songs.url("/slow.wav")), 422, "url_fetch_failed"
    )
    assert time.monotonic() - started < 5
    assert balance(user) == Decimal("3.00")


def test_the_upload_gate_runs_before_anything_is_fetched(user, songs, private_allowed, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "upload": "1/hour"},
    }
    client = bearer_client(user)
    assert import_url(client, songs.url("/song.wav")).status_code == 202
    refused(import_url(client, songs.url("/song.wav")), 429, "throttled")
    assert songs.requests == ["/song.wav"]


def test_it_refuses_a_file_and_an_address_together(user, songs, private_allowed):
    response = bearer_client(user).post(
        "/api/upload", {"file": SimpleUploadedFile("a.wav", SONG), "url": songs.url("/song.wav")}, format="multipart"
    )
    refused(response, 400, "bad_option")
    assert songs.requests == []


def test_it_sees_through_ipv4_mapped_and_reserved_addresses():
    assert safe_fetch.address_is_public("93.184.216.34")
    assert safe_fetch.address_is_public("2606:2800:220:1:248:1893:25c8:1946")
    for address in ("127.0.0.1", "::1", "::ffff:10.0.0.1", "100.64.0.1", "fe80::1%eth0", "224.0.0.1", "240.0.0.1"):
        assert not safe_fetch.address_is_public(address), address


def test_it_sees_through_6to4_addresses_of_private_ones():
    # 2002:AABB:CCDD::/48 is the 6to4 network of IPv4 AA.BB.CC.DD: a relay delivers it there.
    for address in ("2002:7f00:1::1", "2002:a00:1::", "2002:c0a8:101::1", "2002:a9fe:a9fe::"):
        assert not safe_fetch.address_is_public(address), address
    assert safe_fetch.address_is_public("2002:5db8:d70e::1")  # 93.184.215.14


def test_it_stops_a_song_past_the_duration_limit_while_it_downloads(user, songs, private_allowed, settings):
    settings.MAX_DURATION_MINUTES = 1
    long_song = tone_bytes(seconds=30 * 60.0, samplerate=8000, channels=1)  # 28.8 MB, 30 minutes
    sent = {"bytes": 0}
    finished = threading.Event()

    def stream(handler):
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "audio/wav")
            handler.send_header("Content-Length", str(len(long_song)))
            handler.end_headers()
            for start in range(0, len(long_song), 64 * 1024):
                handler.wfile.write(long_song[start : start + 64 * 1024])
                sent["bytes"] = start + 64 * 1024
        except OSError:
            pass  # the importer hung up
        finally:
            finished.set()

    songs.routes["/long.wav"] = stream
    refused(import_url(bearer_client(user), songs.url("/long.wav")), 400, "bad_duration")
    assert finished.wait(10)
    assert sent["bytes"] < len(long_song) / 2  # stopped a few MB in, not after the whole file
    assert balance(user) == Decimal("3.00") and not Job.objects.exists()
