"""CSV export benchmark: the web process's memory while it streams an export, 1,000 rows against
100,000 (issue 14: "memory stays flat for 100,000 rows").

    .venv/bin/python -m bench.csv_export                      # 1,000 and 100,000 rows, both exports
    .venv/bin/python -m bench.csv_export --sizes 1000 10000 100000

A fresh PostgreSQL database (`demucs_bench_csv`, BENCH_DATABASE_URL to move it) is migrated and
given one user per size with that many jobs and that many ledger rows (bulk inserts: the bench
needs rows, not the ledger's arithmetic). Then, for each export and size, a fresh process sets
Django up, sends one small export first (every import and first-call cost paid), notes its resident
memory, sends the measured export through Django's full request handling (middleware, DRF, the
view, the server-side cursor) and reads every chunk of the body as a server would send it, and
reports the growth of its peak resident memory (VmHWM) over that baseline. For contrast, the same
rows made into one CSV string in memory (what an export that is not streamed holds) are measured
the same way.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    sys.path[0] = os.path.dirname(_HERE)

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/demucs_bench_csv"
EXPORTS = {"jobs": "/api/jobs/export", "history": "/api/credits/history/export"}
BATCH = 5000


def _django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demucs_service.settings")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")  # Django's test Client's host name
    import django

    django.setup()


def _memory_mib() -> tuple[float, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmHWM"], fields["VmRSS"]


def seed(database_url: str, sizes: list[int]) -> None:
    """One user per size, each with `size` jobs and `size` ledger rows (plus one small user for warm-ups)."""
    _django(database_url)
    import uuid
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from accounts.models import User
    from credits.models import CreditTransaction
    from separation.models import Job

    now = timezone.now()
    for size in [10, *sizes]:
        user = User.objects.create(username=f"rows{size}", email=f"rows{size}@example.com", credits=Decimal(size))
        for start in range(0, size, BATCH):
            count = min(BATCH, size - start)
            CreditTransaction.objects.bulk_create(
                CreditTransaction(
                    user=user,
                    amount=Decimal("1.00"),
                    balance_after=Decimal(start + n + 1),
                    kind=CreditTransaction.Kind.ADMIN_GRANT,
                    description=f"Bench grant {start + n} (granted by bench)",
                    reference=f"bench:{user.pk}:{start + n}",
                )
                for n in range(count)
            )
            Job.objects.bulk_create(
                Job(
                    id=uuid.uuid4(),
                    user=user,
                    original_filename=f"Song number {start + n}.mp3",
                    model="htdemucs",
                    cost=Decimal("1.00"),
                    status=Job.Status.COMPLETED,
                    progress=100,
                    duration_seconds=201.5,
                    started_at=now - timedelta(minutes=3),
                    finished_at=now,
                )
                for n in range(count)
            )


def measure(database_url: str, size: int, export: str, mode: str) -> dict:
    """In this (fresh) process: peak memory growth while one export of `size` rows is made and read."""
    _django(database_url)
    from django.test import Client

    from accounts.models import User

    client = Client()
    client.force_login(User.objects.get(username="rows10"))
    warm = client.get(EXPORTS[export])
    b"".join(warm.streaming_content)
    client.force_login(User.objects.get(username=f"rows{size}"))
    peak_before, rss_before = _memory_mib()
    started = time.monotonic()
    response = client.get(EXPORTS[export])
    assert response.status_code == 200, response.status_code
    if mode == "streamed":
        total = chunks = 0
        for chunk in response.streaming_content:  # sent and forgotten, as a server does
            total += len(chunk)
            chunks += 1
    else:  # the contrast: the whole CSV held at once
        body = b"".join(response.streaming_content)
        total, chunks = len(body), 1
    seconds = time.monotonic() - started
    peak_after, _ = _memory_mib()
    return {
        "export": export,
        "rows": size,
        "mode": mode,
        "bytes": total,
        "chunks": chunks,
        "seconds": round(seconds, 2),
        "rss_before_mib": round(rss_before, 1),
        "peak_growth_mib": round(peak_after - max(peak_before, rss_before), 1),
    }


def _drop_database(url: str) -> None:
    import urllib.parse

    import psycopg

    parts = urllib.parse.urlsplit(url)
    name = urllib.parse.unquote(parts.path.lstrip("/"))
    with psycopg.connect(urllib.parse.urlunsplit(parts._replace(path="/postgres")), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100000])
    parser.add_argument("--exports", nargs="+", default=list(EXPORTS), choices=list(EXPORTS))
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE))
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=3, metavar=("SIZE", "EXPORT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.seed:
        seed(args.database_url, args.sizes)
        return
    if args.measure:
        size, export, mode = args.measure
        print(json.dumps(measure(args.database_url, int(size), export, mode)))
        return

    from bench._common import recreate_database

    if not args.database_url.rsplit("/", 1)[-1].startswith("demucs_bench"):
        raise SystemExit("The bench database's name must start with demucs_bench")
    recreate_database(args.database_url)
    env = {**os.environ, "DATABASE_URL": args.database_url, "DEBUG": "0", "SECRET_KEY": "bench-only-not-secret"}
    me = [sys.executable, "-m", "bench.csv_export", "--database-url", args.database_url]
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        started = time.monotonic()
        subprocess.run([*me, "--seed", "--sizes", *map(str, args.sizes)], cwd=ROOT, env=env, check=True)
        print(f"seeded {args.sizes} rows per table in {time.monotonic() - started:.1f} s", flush=True)
        results = []
        for export in args.exports:
            for mode in ("streamed", "held"):
                for size in args.sizes:
                    out = subprocess.run(
                        [*me, "--measure", str(size), export, mode],
                        cwd=ROOT,
                        env=env,
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    results.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    print(json.dumps(results[-1]), flush=True)
    finally:
        _drop_database(args.database_url)
    print()
    print("| export | rows | body | peak RSS growth, streamed | peak RSS growth, held in memory | time streamed |")
    print("|---|---|---|---|---|---|")
    for export in args.exports:
        for size in args.sizes:
            streamed = next(r for r in results if (r["export"], r["rows"], r["mode"]) == (export, size, "streamed"))
            held = next(r for r in results if (r["export"], r["rows"], r["mode"]) == (export, size, "held"))
            print(
                f"| {EXPORTS[export]} | {size:,} | {streamed['bytes'] / 1e6:.1f} MB in {streamed['chunks']} chunks "
                f"| {streamed['peak_growth_mib']:+.1f} MiB | {held['peak_growth_mib']:+.1f} MiB "
                f"| {streamed['seconds']} s |"
            )


if __name__ == "__main__":
    main()
