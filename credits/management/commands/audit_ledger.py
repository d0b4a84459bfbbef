from django.core.management.base import BaseCommand, CommandError

from credits.selectors import ledger_violations


class Command(BaseCommand):
    help = "Check that every balance equals the sum of its ledger rows and their last balance_after."

    def handle(self, *args, **options):
        violations = ledger_violations()
        for violation in violations:
            self.stderr.write(violation)
        if violations:
            raise CommandError(f"{len(violations)} ledger violation(s)")
        self.stdout.write(self.style.SUCCESS("Ledger consistent: every balance matches its transactions."))
