"""The reliability suite's CI-sized subset (reliability/, the whole run is bin/attack): gunicorn
with several workers and threads and a real qcluster on the test database, attacked on loopback;
every row must hold."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import connection

from reliability.harness import running_stack
from reliability.suite import CI, run_all, table
from testkit.processes import database_url_of

pytestmark = pytest.mark.e2e


@pytest.mark.django_db(transaction=True)
def test_the_ci_sized_reliability_suite_holds(tmp_path, demo_model_repo):
    assert connection.settings_dict["NAME"].startswith("test_"), "only on the test database"
    with running_stack(
        database_url=database_url_of(connection.settings_dict),
        root=tmp_path / "stack",
        model_repo=demo_model_repo,
        secret_key=django_settings.SECRET_KEY,
        web_workers=2,
        web_threads=8,
        separation_workers=2,
        max_upload_mb=CI.max_upload_mb,
        extra_env=CI.server_env(),
    ) as stack:
        rows = run_all(stack, CI)
        if not all(row.holds for row in rows):
            print(f"\n--- gunicorn ---\n{stack.log_tail('gunicorn')}\n--- qcluster ---\n{stack.log_tail('qcluster')}")
    print("\n" + table(rows))
    failed = {row.name: row.problems or row.figure for row in rows if not row.holds}
    assert not failed, failed
