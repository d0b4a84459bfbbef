"""Production password hashing: bcrypt over SHA-256, so long passwords are not cut at 72 bytes."""

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher, check_password, make_password

from accounts.models import User
from demucs_service import settings as project_settings

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

# 80 ASCII bytes; the two differ only in the last byte, well past bcrypt's 72-byte limit.
LONG = "correct-horse-battery-staple-" * 2 + "x" * 22
LONG_VARIANT = LONG[:-1] + "y"


@pytest.fixture(autouse=True)
def _production_hashers(settings):
    settings.PASSWORD_HASHERS = list(project_settings.PASSWORD_HASHERS)


def _register(client, username, password):
    response = client.post(
        "/api/auth/register",
        {"email": f"{username}@example.com", "username": username, "password": password},
        format="json",
    )
    assert response.status_code == 201, response.content
    return User.objects.get(username=username)


def _login(client, username, password):
    return client.post("/api/auth/login", {"username": username, "password": password}, format="json")


def test_it_configures_bcrypt_sha256_first():
    assert project_settings.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.BCryptSHA256PasswordHasher"


def test_it_hashes_a_registered_password_with_bcrypt_sha256(api_client):
    user = _register(api_client, "hashed", "a-long-test-password-42")

    assert user.password.startswith("bcrypt_sha256$")
    assert "a-long-test-password-42" not in user.password
    assert user.check_password("a-long-test-password-42")


def test_it_salts_each_hash(api_client):
    first = _register(api_client, "first", "a-long-test-password-42")
    second = _register(api_client, "second", "a-long-test-password-42")

    assert first.password != second.password


def test_it_does_not_cut_a_password_longer_than_72_bytes(api_client):
    assert len(LONG.encode()) == 80 and LONG.encode()[:72] == LONG_VARIANT.encode()[:72]
    user = _register(api_client, "longpass", LONG)

    assert user.password.startswith("bcrypt_sha256$")
    assert user.check_password(LONG)
    assert not user.check_password(LONG_VARIANT)
    assert not user.check_password(LONG[:72])
    assert _login(api_client, "longpass", LONG).status_code == 200
    assert _login(api_client, "longpass", LONG_VARIANT).status_code == 401


def test_it_does_not_cut_a_multibyte_password_past_72_bytes():
    long_unicode = "пароль-" * 8 + "ä"  # 105 bytes in UTF-8
    variant = long_unicode[:-1] + "ö"
    assert len(long_unicode.encode()) > 72 and long_unicode.encode()[:72] == variant.encode()[:72]

    encoded = make_password(long_unicode)

    assert encoded.startswith("bcrypt_sha256$")
    assert check_password(long_unicode, encoded)
    assert not check_password(variant, encoded)


def test_it_upgrades_a_legacy_hash_on_login(api_client):
    user = User.objects.create_user(username="legacy", email="legacy@example.com", password=None)
    user.password = PBKDF2PasswordHasher().encode("a-long-test-password-42", "legacysalt", iterations=1000)
    user.save(update_fields=["password"])

    assert _login(api_client, "legacy", "a-long-test-password-42").status_code == 200

    user.refresh_from_db()
    assert user.password.startswith("bcrypt_sha256$")
