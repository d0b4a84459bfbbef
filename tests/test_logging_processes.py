"""LOG_FORMAT and LOG_LEVEL as the service's processes read them at start: JSON lines, readable text
by default, a bad value stopping start-up. Slow: each check is a fresh Python process reading the
settings (what the lines hold is in test_logging.py)."""

import json

import pytest

from tests.settings_probe import run_python, settings_values

pytestmark = pytest.mark.slow


def test_log_format_json_configures_json_lines(tmp_path):
    assert settings_values(tmp_path, ["LOG_FORMAT"], LOG_FORMAT="JSON", SECRET_KEY="x" * 50) == {"LOG_FORMAT": "json"}
    code = (
        "import django, os, logging; os.environ['DJANGO_SETTINGS_MODULE'] = 'demucs_service.settings'; "
        "django.setup(); logging.getLogger('separation').warning('hello %s', 'there')"
    )
    result = run_python(tmp_path, code, LOG_FORMAT="json", SECRET_KEY="x" * 50)

    assert result.returncode == 0, result.stderr
    [line] = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert line["message"] == "hello there" and line["level"] == "WARNING" and line["logger"] == "separation"


def test_logs_are_readable_text_by_default(tmp_path):
    code = (
        "import django, os, logging; os.environ['DJANGO_SETTINGS_MODULE'] = 'demucs_service.settings'; "
        "django.setup(); logging.getLogger('separation').warning('hello')"
    )
    result = run_python(tmp_path, code, SECRET_KEY="x" * 50)

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("WARNING separation hello")


@pytest.mark.parametrize(("name", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD")])
def test_a_bad_log_setting_stops_start_up_naming_it(tmp_path, name, value):
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'demucs_service.settings'; django.setup()"
    result = run_python(tmp_path, code, SECRET_KEY="x" * 50, **{name: value})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr
