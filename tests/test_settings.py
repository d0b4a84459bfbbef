"""Settings come from the environment, and a bad value stops the process naming the variable."""

import subprocess
import sys
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from demucs_service.environment import Env, credit_packs
from testkit.processes import REPO_ROOT
from tests.settings_probe import PRODUCTION_SECRET, SETUP, run_python, settings_env, settings_values

pytestmark = pytest.mark.slow


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off(tmp_path):
    result = run_python(tmp_path, SETUP, DEBUG="0")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY is required" in result.stderr


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_unset(tmp_path):
    result = run_python(tmp_path, SETUP)

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_it_refuses_a_debug_value_it_does_not_understand(tmp_path):
    result = run_python(tmp_path, SETUP, DEBUG="maybe", SECRET_KEY=PRODUCTION_SECRET)

    assert result.returncode != 0
    assert "DEBUG must be one of" in result.stderr
    assert "'maybe'" in result.stderr


def test_it_refuses_to_start_with_a_bad_credit_packs_value(tmp_path):
    result = run_python(tmp_path, SETUP, DEBUG="1", CREDIT_PACKS="starter:five:1.00")

    assert result.returncode != 0
    assert "ImproperlyConfigured: CREDIT_PACKS must look like id:credits:price" in result.stderr


@pytest.mark.parametrize(
    "value", ["starter:5", "starter:5:1:2", "starter:0:1.00", "starter:5:-1", ":5:1.00", "a:1:1,a:2:2"]
)
def test_it_names_credit_packs_for_every_kind_of_bad_value(monkeypatch, value):
    monkeypatch.setenv("CREDIT_PACKS", value)

    with pytest.raises(ImproperlyConfigured, match="^CREDIT_PACKS"):
        Env()("CREDIT_PACKS", cast=credit_packs)


def test_it_reads_credit_packs_from_the_environment(tmp_path):
    values = settings_values(tmp_path, ["CREDIT_PACKS"], DEBUG="1", CREDIT_PACKS="solo:1:0.50, bulk:500:40")

    assert values["CREDIT_PACKS"] == [
        {"id": "solo", "credits": "1", "price": "0.50"},
        {"id": "bulk", "credits": "500", "price": "40"},
    ]


@pytest.mark.django_db
def test_it_sells_the_configured_packs_through_the_api(api_client, settings, monkeypatch):
    monkeypatch.setenv("CREDIT_PACKS", "solo:1:0.50,bulk:500:40")
    settings.CREDIT_PACKS = Env()("CREDIT_PACKS", cast=credit_packs)
    settings.CREDIT_CURRENCY = "eur"

    response = api_client.get("/api/credits/packages")

    assert response.status_code == 200
    assert response.json() == [
        {"id": "solo", "credits": "1.00", "price": "0.50", "currency": "eur"},
        {"id": "bulk", "credits": "500.00", "price": "40.00", "currency": "eur"},
    ]


def test_it_uses_a_sqlite_file_in_the_data_dir_without_database_url(tmp_path):
    values = settings_values(tmp_path, ["DATABASES"], DEBUG="1", DATABASE_URL=None)

    database = values["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(tmp_path / "data" / "db.sqlite3")
    assert database["ATOMIC_REQUESTS"] is False
    assert not (tmp_path / "data").exists()  # reading settings makes no folders; bin/run does


def test_it_uses_postgres_from_database_url(tmp_path):
    values = settings_values(
        tmp_path, ["DATABASES"], DEBUG="1", DATABASE_URL="postgres://someone:pw@db.internal:5433/stems"
    )

    database = values["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert database["NAME"] == "stems"
    assert (database["HOST"], database["PORT"], database["USER"]) == ("db.internal", 5433, "someone")
    assert database["ATOMIC_REQUESTS"] is False


def test_it_does_not_wrap_requests_in_a_transaction():
    from django.conf import settings

    assert settings.DATABASES["default"]["ATOMIC_REQUESTS"] is False


def test_it_passes_the_deploy_checks_with_a_production_environment(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env=settings_env(tmp_path, DEBUG="0", SECRET_KEY=PRODUCTION_SECRET, ALLOWED_HOSTS="example.com"),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


SECURITY = ["SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "ALLOWED_HOSTS"]


def test_it_turns_on_hsts_and_secure_cookies_when_debug_is_off(tmp_path):
    values = settings_values(
        tmp_path, SECURITY, DEBUG="0", SECRET_KEY=PRODUCTION_SECRET, ALLOWED_HOSTS="example.com, www.example.com"
    )

    assert values["SECURE_HSTS_SECONDS"] > 0
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["ALLOWED_HOSTS"] == ["example.com", "www.example.com"]


def test_it_starts_without_a_secret_key_and_without_hsts_or_secure_cookies_when_debug_is_on(tmp_path):
    values = settings_values(tmp_path, ["DEBUG", "SECRET_KEY", *SECURITY], DEBUG="1")

    assert values["DEBUG"] is True
    assert values["SECRET_KEY"]
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["CSRF_COOKIE_SECURE"] is False


def test_it_parses_credit_packs_into_decimals(monkeypatch):
    monkeypatch.setenv("CREDIT_PACKS", "one:2.5:0.99")

    assert Env()("CREDIT_PACKS", cast=credit_packs) == [
        {"id": "one", "credits": Decimal("2.5"), "price": Decimal("0.99")}
    ]


# --- how a value is read ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reader", "value", "expected"),
    [
        (lambda env: env.bool("X", default=True), "off", False),
        (lambda env: env.bool("X", default=False), " Yes ", True),
        (lambda env: env.int("X", default=1), "42", 42),
        (lambda env: env.float("X", default=0.5, minimum=0, maximum=1), "0.25", 0.25),
        (lambda env: env.list("X", default=[]), "a.example, ,b.example,", ["a.example", "b.example"]),
        (lambda env: env.str("X", default=""), "$HOME", "$HOME"),  # taken as written, never a reference
    ],
)
def test_it_reads_typed_values(monkeypatch, reader, value, expected):
    monkeypatch.setenv("X", value)

    assert reader(Env()) == expected


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_value_counts_as_unset(monkeypatch, blank):
    monkeypatch.setenv("X", blank)
    env = Env()

    assert env.bool("X", default=True) is True
    assert env.int("X", default=7, minimum=5) == 7
    assert env.float("X", default=None, minimum=1, maximum=2) is None
    assert env.str("X", default="kept") == "kept"
    assert env("X", cast=credit_packs, default="a:1:1", parse_default=True)[0]["id"] == "a"


@pytest.mark.parametrize(
    ("reader", "value", "message"),
    [
        (
            lambda env: env.bool("X", default=False),
            "maybe",
            "X must be one of 1/0, true/false, yes/no, on/off",
        ),
        (lambda env: env.bool("X", default=False), "2", "X must be one of 1/0"),
        (lambda env: env.int("X", default=1), "1.5", "X must be a whole number; got '1.5'"),
        (lambda env: env.int("X", default=1, minimum=1), "0", "X must be at least 1; got 0"),
        (lambda env: env.float("X", default=0.5, minimum=0, maximum=1), "0.5x", "X must be a number; got '0.5x'"),
        (lambda env: env.float("X", default=0.5, minimum=0, maximum=0.9), "1", "X must be between 0 and 0.9; got 1.0"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_accepts(monkeypatch, reader, value, message):
    monkeypatch.setenv("X", value)

    with pytest.raises(ImproperlyConfigured) as raised:
        reader(Env())
    assert str(raised.value).startswith(message)


def test_export_of_the_example_file_keeps_the_defaults(tmp_path):
    """`.env.example` leaves many variables empty; exported as they are, the defaults hold."""
    example = {}
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        name, equals, value = line.partition("=")
        if equals and not line.startswith("#"):
            example[name] = value.strip('"')
    names = [
        "DEBUG",
        "PAYMENTS_SIMULATED",
        "EMAIL_VERIFICATION",
        "DEMUCS_SEGMENT",
        "DEMUCS_BACKEND",
        "DEMUCS_BATCH",
        "SENTRY_ENVIRONMENT",
        "EMAIL_BACKEND",
    ]

    values = settings_values(tmp_path, names, **{**example, "DEBUG": "1", "DATA_DIR": str(tmp_path / "data")})

    assert values == {
        "DEBUG": True,
        "PAYMENTS_SIMULATED": True,
        "EMAIL_VERIFICATION": "optional",
        "DEMUCS_SEGMENT": None,
        "DEMUCS_BACKEND": "openvino",
        "DEMUCS_BATCH": 1,
        "SENTRY_ENVIRONMENT": "development",
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
    }


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_UPLOAD_MB", "0", "MAX_UPLOAD_MB must be at least 1; got 0"),
        ("DEMUCS_OVERLAP", "0.95", "DEMUCS_OVERLAP must be between 0.0 and 0.9; got 0.95"),
        ("DEMUCS_DEVICE", "gpu", "DEMUCS_DEVICE must be auto, cpu, cuda or cuda:N; got 'gpu'"),
        ("DEMUCS_BACKEND", "tensorrt", "DEMUCS_BACKEND must be openvino, onnxruntime or torch; got 'tensorrt'"),
        ("DEMUCS_PRECISION", "int8", "DEMUCS_PRECISION must be float32, float16 or bfloat16; got 'int8'"),
        ("DEMUCS_BATCH", "0", "DEMUCS_BATCH must be at least 1; got 0"),
        ("THROTTLE_UPLOAD", "lots", "THROTTLE_UPLOAD must look like 10/minute (s, m, h or d); got 'lots'"),
        ("EMAIL_VERIFICATION", "always", "EMAIL_VERIFICATION must be none, optional or mandatory; got 'always'"),
        ("EMAIL_URL", "pigeon://coop", "EMAIL_URL is not a valid email URL"),
        ("GITHUB_CLIENT_ID", "Iv1.0123", "Set both GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET, or neither"),
        ("GOOGLE_CLIENT_SECRET", "GOCSPX-x", "Set both GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET, or neither"),
        # Checked against the separation app's catalogue when the app starts.
        ("DEFAULT_MODEL", "htdemucs_9s", "DEFAULT_MODEL must be one of htdemucs, htdemucs_6s, htdemucs_ft,"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(tmp_path, name, value, message):
    result = run_python(tmp_path, SETUP, DEBUG="1", **{name: value})

    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr


def test_it_refuses_onnxruntime_in_half_precision(tmp_path):
    result = run_python(tmp_path, SETUP, DEBUG="1", DEMUCS_BACKEND="onnxruntime", DEMUCS_PRECISION="float16")

    assert result.returncode != 0
    assert "ImproperlyConfigured: DEMUCS_BACKEND=onnxruntime runs in float32" in result.stderr


def test_a_bad_database_url_is_named_without_repeating_its_password(tmp_path):
    result = run_python(tmp_path, SETUP, DEBUG="1", DATABASE_URL="postgress://someone:hunter2@db/stems")

    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_URL is not a valid database URL" in result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize("url", ["smtp://mailer:hunter2@[mail.example.com:587", "smtp://mailer:hunter2@mail:port"])
def test_a_bad_email_url_is_named_without_repeating_its_password(monkeypatch, url):
    monkeypatch.setenv("EMAIL_URL", url)

    with pytest.raises(ImproperlyConfigured, match="^EMAIL_URL is not a valid email URL") as raised:
        Env().email_url("EMAIL_URL", default="consolemail://")
    assert "hunter2" not in str(raised.value)


def test_it_reads_the_mail_server_from_email_url(tmp_path):
    names = ["EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "EMAIL_USE_TLS"]

    values = settings_values(tmp_path, names, DEBUG="1", EMAIL_URL="smtp+tls://mailer:s3cret@mail.example.com:587")

    assert values == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "mail.example.com",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "mailer",
        "EMAIL_HOST_PASSWORD": "s3cret",
        "EMAIL_USE_TLS": True,
    }


SQUARE = {
    "SQUARE_ACCESS_TOKEN": "EAAAl_token",
    "SQUARE_LOCATION_ID": "L1",
    "SQUARE_WEBHOOK_SIGNATURE_KEY": "key",
    "SITE_URL": "https://stems.example.com",
}
STRIPE = {"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_x"}


@pytest.mark.parametrize("missing", sorted(SQUARE))
def test_it_refuses_to_start_with_square_chosen_and_a_square_setting_missing(tmp_path, missing):
    env = {**SQUARE, missing: None}

    result = run_python(tmp_path, SETUP, DEBUG="1", PAYMENT_PROVIDER="square", **env)

    assert result.returncode != 0
    assert f"PAYMENT_PROVIDER=square needs {missing}" in result.stderr


def test_it_refuses_to_start_with_stripe_chosen_and_not_configured(tmp_path):
    result = run_python(tmp_path, SETUP, DEBUG="1", PAYMENT_PROVIDER="stripe", **SQUARE)

    assert result.returncode != 0
    assert "PAYMENT_PROVIDER=stripe needs STRIPE_SECRET_KEY" in result.stderr


def test_the_payment_provider_is_the_one_configured_and_must_be_chosen_when_both_are(tmp_path):
    names = ["PAYMENT_PROVIDER", "SQUARE_ENVIRONMENT"]
    assert settings_values(tmp_path, names, DEBUG="1", **SQUARE) == {
        "PAYMENT_PROVIDER": "square",
        "SQUARE_ENVIRONMENT": "production",
    }
    assert settings_values(tmp_path, names[:1], DEBUG="1", **STRIPE) == {"PAYMENT_PROVIDER": "stripe"}
    assert settings_values(tmp_path, names[:1], DEBUG="1") == {"PAYMENT_PROVIDER": ""}
    both = run_python(tmp_path, SETUP, DEBUG="1", **SQUARE, **STRIPE)
    assert both.returncode != 0
    assert "set PAYMENT_PROVIDER to stripe or square" in both.stderr
    chosen = settings_values(
        tmp_path, names, DEBUG="1", PAYMENT_PROVIDER="Square", SQUARE_ENVIRONMENT="sandbox", **SQUARE, **STRIPE
    )
    assert chosen == {"PAYMENT_PROVIDER": "square", "SQUARE_ENVIRONMENT": "sandbox"}
    bad = run_python(tmp_path, SETUP, DEBUG="1", PAYMENT_PROVIDER="paypal")
    assert bad.returncode != 0
    assert "PAYMENT_PROVIDER must be stripe or square" in bad.stderr


def test_subscription_plans_are_read_from_the_environment_and_need_stripe(tmp_path):
    names = ["SUBSCRIPTION_PLANS", "SUBSCRIPTION_FAIR_USE_HOURS", "SUBSCRIPTION_GRACE_DAYS"]
    assert settings_values(tmp_path, names, DEBUG="1") == {
        "SUBSCRIPTION_PLANS": [],
        "SUBSCRIPTION_FAIR_USE_HOURS": 30,
        "SUBSCRIPTION_GRACE_DAYS": 3,
    }
    chosen = settings_values(tmp_path, names[:1], DEBUG="1", SUBSCRIPTION_PLANS="unlimited:9.99,pro:19", **STRIPE)
    assert chosen == {"SUBSCRIPTION_PLANS": [{"id": "unlimited", "price": "9.99"}, {"id": "pro", "price": "19"}]}
    without_stripe = run_python(tmp_path, SETUP, DEBUG="1", SUBSCRIPTION_PLANS="unlimited:9.99")
    assert without_stripe.returncode != 0
    assert "SUBSCRIPTION_PLANS are sold through Stripe Billing" in without_stripe.stderr
    for bad in ("unlimited", "unlimited:0", "a:1,a:2", "x:nine"):
        result = run_python(tmp_path, SETUP, DEBUG="1", SUBSCRIPTION_PLANS=bad, **STRIPE)
        assert result.returncode != 0, bad
        assert "SUBSCRIPTION_PLANS" in result.stderr, bad
