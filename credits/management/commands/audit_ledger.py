"""manage.py audit_ledger: run every check of the books and say what each found.

A check is a function returning problem lines. A violation means the books disagree with
themselves (exit 1); a warning is a state someone should look at but the books explain, listed on
stdout (exit 0 unless --strict). Another app adds its check to CHECKS.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.core.management.base import BaseCommand, CommandError

from credits.selectors import ledger_violations, open_shortfalls, payment_violations
from separation.selectors import completed_jobs_missing_files


@dataclass(frozen=True)
class AuditCheck:
    name: str
    problems: Callable[[], list[str]]
    warning: bool = False  # listed, but fails the audit only with --strict


CHECKS: list[AuditCheck] = [
    AuditCheck("balances", ledger_violations),
    AuditCheck("payments", payment_violations),
    # Credits refunded or disputed after they were spent, still owed: the ledger accounts for
    # them (the account's balance is 0 and what comes back repays them first), an operator decides.
    AuditCheck("open shortfalls", open_shortfalls, warning=True),
    # A job charged and marked COMPLETED must have its files (until retention or its owner deletes them).
    AuditCheck("completed jobs", completed_jobs_missing_files),
]


class Command(BaseCommand):
    help = (
        "Check that every balance equals the sum of its ledger rows and their last balance_after, that "
        "payments agree with their ledger rows, and list open shortfalls (and every check in CHECKS)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--strict", action="store_true", help="count warnings (open shortfalls) as violations")

    def handle(self, *args, strict=False, **options):
        violations = []
        for check in CHECKS:
            problems = check.problems()
            if check.warning and not strict:
                if problems:
                    self.stdout.write(self.style.WARNING(f"{check.name} ({len(problems)}, warning):"))
                    for problem in problems:
                        self.stdout.write(f"  {problem}")
            else:
                violations += problems
        for violation in violations:
            self.stderr.write(violation)
        if violations:
            raise CommandError(f"{len(violations)} ledger violation(s)")
        self.stdout.write(self.style.SUCCESS("Ledger consistent: every balance matches its transactions."))
