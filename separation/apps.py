import sys

from django.apps import AppConfig


class SeparationConfig(AppConfig):
    name = "separation"

    def ready(self):
        # Nothing here imports torch, and the receiver runs only inside django-q2 worker processes,
        # after the fork (separation/worker_warmup.py).
        from django_q.signals import post_spawn

        from separation import catalog, notifications, worker_warmup

        # Here rather than in a system check, which gunicorn and the workers never run: a model
        # name not on offer stops every process at start-up, as a bad setting does.
        catalog.model_settings_validate()
        # The workers send the job mails; the web process never does.
        if sys.argv[1:2] == ["qcluster"]:
            notifications.mail_settings_validate()

        post_spawn.connect(worker_warmup.worker_started, dispatch_uid="separation.worker_started")
