"""Write a randomly initialised HTDemucs (or a bag of them) or Mel-Band RoFormer into the model folder: the
presets and how they are written are in separation/demo_models.py."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from separation.demo_models import PRESETS, ROFORMER_PRESETS, create_demo_model


class Command(BaseCommand):
    help = (
        "Write a randomly initialised HTDemucs (untrained: tiny 'demo', or of real size: 'htdemucs', "
        "or an htdemucs_ft-like bag 'htdemucs_ft') or Mel-Band RoFormer (tiny 'roformer', or of real size: "
        "'mel_roformer', as NAME/model.ckpt and NAME/config.yaml) into the model folder, for tests, "
        "benchmarks and trying the service without downloading weights."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--repo", type=Path, default=None, help="Model folder (default: settings.DEMUCS_MODEL_REPO)."
        )
        parser.add_argument(
            "--name",
            default="demo",
            help="Model name: NAME.th, or NAME.yaml with members NAME_0.th.. for a bag (default: demo).",
        )
        parser.add_argument(
            "--preset",
            default="demo",
            choices=sorted([*PRESETS, *ROFORMER_PRESETS]),
            help="; ".join(f"{key}: {spec.description}" for key, spec in {**PRESETS, **ROFORMER_PRESETS}.items()),
        )
        parser.add_argument("--force", action="store_true", help="Overwrite an existing model of that name.")
        parser.add_argument(
            "--if-no-model",
            action="store_true",
            help="Do nothing when any separation model is installed already (what bin/run uses).",
        )

    def handle(self, *args, **options):
        repo = options["repo"] or getattr(settings, "DEMUCS_MODEL_REPO", None)
        if repo is None:
            raise CommandError("No model folder: pass --repo or set DEMUCS_MODEL_REPO.")
        if options["if_no_model"]:
            from separation.catalog import models_list

            installed = [model.name for model in models_list() if model.installed]
            if installed:
                self.stdout.write(f"Models installed ({', '.join(installed)}); no demo model needed.")
                return
        try:
            path, written = create_demo_model(
                Path(repo), name=options["name"], preset=options["preset"], force=options["force"]
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        if written:
            self.stdout.write(self.style.SUCCESS(f"Wrote the {options['preset']} model to {path}"))
        else:
            self.stdout.write(f"{path} already exists; nothing written (use --force to overwrite).")
