import io
import os
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tokens import access_token_issue
from testkit.audio import tone_bytes
from testkit.stripe import assert_ledger_consistent, configure_stripe
from tests import e2e
from tests.factories import UserFactory

# --- kinds: every test says what it needs (pytest.ini's markers) -----------------------

KINDS = ("unit", "slow", "e2e", "browser")


@pytest.hookimpl(tryfirst=True)  # before -m deselects: a run of one kind checks them all
def pytest_collection_modifyitems(config, items):
    wrong = []
    for item in items:
        kinds = sorted({mark.name for mark in item.iter_markers() if mark.name in KINDS})
        if len(kinds) != 1:
            wrong.append(f"  {item.nodeid}: {', '.join(kinds) or 'no kind'}")
    if not wrong:
        return
    message = (
        f"Every test needs exactly one kind marker of {', '.join(KINDS)} (see pytest.ini); declare it in "
        "the module's `pytestmark` (one kind a module: a test of another kind goes in its own file):\n"
        + "\n".join(wrong[:20])
        + (f"\n  ... and {len(wrong) - 20} more" if len(wrong) > 20 else "")
    )
    if hasattr(config, "workerinput"):
        # A pytest-xdist worker: its UsageError would never reach the terminal (the run would end
        # in an INTERNALERROR naming a test). Run nothing and stop; xdist ends the run with this.
        items[0].session.shouldstop = message
        items.clear()
        return
    raise pytest.UsageError(message)


def pytest_configure(config):
    # Under pytest-xdist (`-n N`) each worker is a process sharing this machine's cores, like the
    # separation workers: the engine's once-per-process torch set-up gives each its share of the
    # threads (measured on 2 cores, two processes at once: the demo model took 3 s a song with
    # both cores' threads each, 0.4 s with one thread each).
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is not None:
        from separation.engine.models import _configure_torch

        _configure_torch(int(workers), "cpu")


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Throttle counters live in the cache; each test starts with a clean slate.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


def bearer_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_issue(user=user)}")
    return client


def logged_in(user, **options) -> Client:
    """A Django test client with `user` logged in (options go to Client)."""
    client = Client(**options)
    client.force_login(user)
    return client


def balance(user) -> Decimal:
    """The user's credits as the database has them now."""
    return User.objects.values_list("credits", flat=True).get(pk=user.pk)


@pytest.fixture
def user_client(user):
    return bearer_client(user)


@pytest.fixture
def admin_user(db):
    return UserFactory(username="boss", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(admin_user):
    return logged_in(admin_user)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # bcrypt costs ~0.2 s a hash; tests that check the production hasher set it back.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _static_files_without_collectstatic(settings):
    # Pages render {% static %}; the manifest storage needs collectstatic, which tests do not run.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


# --- payments ----------------------------------------------------------------------------


@pytest.fixture
def stripe_on(settings):
    """Stripe on with testkit.stripe's test secrets, simulated payments off; the ledger and every
    payment must be consistent when the test ends."""
    configure_stripe(settings)
    yield
    assert_ledger_consistent()


@pytest.fixture
def consistent_ledger(db):
    """The ledger and every payment must be consistent when the test ends."""
    yield
    assert_ledger_consistent()


@pytest.fixture
def page_client(user) -> Client:
    """A browser-like client logged in as `user`."""
    return logged_in(user)


# --- the demo model and where jobs keep their files -------------------------------------


@pytest.fixture(scope="session")
def demo_model_repo(tmp_path_factory) -> Path:
    """A model folder holding the demo model, written once per test session. Shared: copy
    demo.th elsewhere before changing anything."""
    from django.core.management import call_command

    repo = tmp_path_factory.mktemp("demucs-models")
    call_command("create_demo_model", repo=str(repo), stdout=io.StringIO())
    return repo


@pytest.fixture
def hf_offline(monkeypatch, tmp_path):
    """HuggingFace offline with an empty cache, so no model but those in the repo counts as installed."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture
def offline(hf_offline, monkeypatch):
    """No network either: demucs falls back to its legacy download URL after the hub, so a dead
    proxy makes sure nothing is downloaded even on a networked machine."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    # urlopen builds its opener, proxies included, on first use and keeps it: a fresh one here,
    # and the one before put back after, so the dead proxy does not outlive the test.
    monkeypatch.setattr(urllib.request, "_opener", None)


@pytest.fixture
def demo_model(settings, hf_offline, tmp_path, demo_model_repo) -> Path:
    """The service on the demo model (on the CPU, HuggingFace offline with an empty cache) and a
    fresh MEDIA_ROOT, which it returns."""
    settings.DEMUCS_MODEL_REPO = demo_model_repo
    settings.DEMUCS_DEVICE = "cpu"
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def media(demo_model) -> Path:
    """MEDIA_ROOT, for tests that look at the files jobs leave there."""
    return demo_model


@pytest.fixture(scope="session")
def song() -> bytes:
    """A two-second stereo wav to upload."""
    return tone_bytes(seconds=2.0)


# --- end to end: the live server and real qcluster workers ------------------------------


@pytest.fixture
def folders(tmp_path, settings, demo_model_repo):
    """MEDIA_ROOT and a model folder of its own, shared with the workers (tests.e2e)."""
    return e2e.prepare_folders(tmp_path, settings, demo_model_repo)


@pytest.fixture
def cluster_factory(live_server, folders, tmp_path):
    """Starts qclusters; set up after the live server, so every qcluster is stopped before it
    and the test database go away."""
    media, models = folders
    with e2e.Clusters(media_root=media, model_repo=models, log_dir=tmp_path) as clusters:
        yield clusters.start
