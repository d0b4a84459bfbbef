"""Download catalogue models' official weights into the model folder, or list the catalogue: how it
is done is in separation/model_install.py."""

import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from separation.catalog import CATALOGUE, models_list
from separation.model_install import InstallError, install, size_on_disk


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size else "-"


class Command(BaseCommand):
    help = (
        "Download the official weights of catalogue models into DEMUCS_MODEL_REPO, with a progress bar, "
        "resuming a cut download, checking each file against the catalogue's checksum and moving the model's "
        "files into place only when all are checked; "
        "--list prints the catalogue."
    )

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="Catalogue names, e.g. htdemucs mel_roformer_vocals.")
        parser.add_argument("--list", action="store_true", help="Print the catalogue with what is installed here.")
        parser.add_argument(
            "--repo", type=Path, default=None, help="Model folder (default: settings.DEMUCS_MODEL_REPO)."
        )
        parser.add_argument(
            "--if-no-model",
            action="store_true",
            help="Do nothing when any separation model is installed already (what bin/first-model uses).",
        )
        parser.add_argument(
            "--allow-unverified",
            action="store_true",
            help="Install a model with a file that has no checksum in the catalogue (the default refuses it), "
            "with a warning.",
        )

    def handle(self, *args, **options):
        repo = Path(options["repo"] or settings.DEMUCS_MODEL_REPO)
        if options["list"]:
            self.print_list(repo)
            if not options["names"]:
                return
        if not options["names"]:
            raise CommandError("Name the models to install, or pass --list.")
        installed = [model.name for model in models_list() if model.installed]
        if options["if_no_model"] and installed:
            self.stdout.write(f"Models installed ({', '.join(installed)}); nothing to install.")
            return
        failed = []
        for name in options["names"]:
            try:
                written = install(
                    name,
                    repo=repo,
                    base_url=settings.MODEL_DOWNLOAD_BASE_URL,
                    allow_unverified=options["allow_unverified"],
                    progress_for=self.progress_bar,
                    warn=self.warn,
                )
            except InstallError as error:
                self.stderr.write(f"{name}: {error}")
                failed.append(name)
                continue
            self.stdout.write(self.style.SUCCESS(f"Installed {name}: {', '.join(path.name for path in written)}"))
        if failed:
            raise CommandError(f"Not installed: {', '.join(failed)}.")

    def warn(self, message: str) -> None:
        self.stderr.write(self.style.WARNING(f"Warning: {message}"))

    def progress_bar(self, target: Path):
        """A tqdm bar on stderr for one file, closed when the file is whole."""
        from tqdm import tqdm

        bar = tqdm(desc=target.name, unit="B", unit_scale=True, file=sys.stderr, mininterval=0.5)

        def update(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)
            if total is not None and done >= total:
                bar.close()

        return update

    def print_list(self, repo: Path) -> None:
        offered = {model.name: model for model in models_list()}
        rows = [("name", "family", "installed", "on disk", "licence", "quality (published SDR)", "price")]
        for name, entry in CATALOGUE.items():
            model = offered.get(name)
            if model is None:
                rows.append((name, entry.family, "not offered", "-", entry.licence, "-", "-"))
                continue
            rows.append(
                (
                    name,
                    model.family,
                    "yes" if model.installed else "no",
                    megabytes(size_on_disk(name, repo)),
                    model.licence,
                    model.quality_text,
                    f"{model.price_multiplier}/10 min",
                )
            )
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        self.stdout.write(
            f"Model folder: {repo}. Models marked 'not offered' have weights without a commercial licence "
            "(MODELS_NONCOMMERCIAL=1 offers them)."
        )
