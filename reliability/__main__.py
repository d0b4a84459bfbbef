"""python -m reliability: the whole suite against the database in DATABASE_URL (migrated, and
given to the suite alone: bin/attack makes one), printing a table of rows and figures.
Exits 1 when any row does not hold."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument("--model-repo", required=True, type=Path, help="a folder holding the demo model")
    parser.add_argument("--ci", action="store_true", help="the CI-sized subset")
    parser.add_argument("--users", type=int)
    parser.add_argument("--uploads", type=int)
    parser.add_argument("--load-seconds", type=float)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--web-threads", type=int, default=8)
    parser.add_argument("--separation-workers", type=int, default=2)
    parser.add_argument("--only", help="comma-separated scenario names (e.g. sigkill,postgres)")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown here")
    parser.add_argument("--logs", type=Path, help="copy the servers' logs into this folder at the end")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demucs_service.settings")
    os.environ.setdefault("SECRET_KEY", f"reliability-{secrets.token_hex(32)}")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from reliability.harness import running_stack
    from reliability.suite import CI, FULL, markdown, run_all, table
    from testkit.processes import database_url_of

    sizes = CI if args.ci else FULL
    overrides = {"users": args.users, "uploads": args.uploads, "load_seconds": args.load_seconds}
    sizes = replace(sizes, **{key: value for key, value in overrides.items() if value is not None})
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        with running_stack(
            database_url=database_url_of(connection.settings_dict),
            root=Path(tmp),
            model_repo=args.model_repo.resolve(),
            secret_key=settings.SECRET_KEY,
            web_workers=args.web_workers,
            web_threads=args.web_threads,
            separation_workers=args.separation_workers,
            max_upload_mb=sizes.max_upload_mb,
            extra_env=sizes.server_env(),
        ) as stack:
            print(f"[reliability] gunicorn {args.web_workers}x{args.web_threads} and a qcluster on {stack.base_url}")
            try:
                rows = run_all(stack, sizes, only=set(args.only.split(",")) if args.only else None)
            finally:
                if args.logs:
                    args.logs.mkdir(parents=True, exist_ok=True)
                    for log in Path(tmp).glob("**/logs/*.log"):
                        shutil.copy(log, args.logs / f"{log.parent.parent.name}-{log.name}")
    print()
    print(table(rows))
    if args.markdown:
        args.markdown.write_text(markdown(rows))
    return 0 if all(row.holds for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
