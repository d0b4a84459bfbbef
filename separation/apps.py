from django.apps import AppConfig


class SeparationConfig(AppConfig):
    name = "separation"

    def ready(self):
        # Connecting is all that happens here: the receiver runs only inside django-q2 worker
        # processes, after the fork (separation/worker_warmup.py). Nothing here imports torch.
        from django_q.signals import post_spawn

        from separation import worker_warmup

        post_spawn.connect(worker_warmup.worker_started, dispatch_uid="separation.worker_started")
