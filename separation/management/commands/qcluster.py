"""django-q2's `qcluster`, started so that SIGTERM to the whole process group (`kill -TERM -PGID`,
Ctrl-C in a terminal) stops it as SIGTERM to its leader does (systemd's KillMode=mixed,
`docker stop`): the workers finish the task in hand, then every process exits.

django-q2's sentinel, pusher, monitor and workers keep SIGTERM's default action. A signal to the
group killed them mid-task, and the sentinel could die holding the lock of the stop event its
leader then waits on forever: the leader never exited. So SIGTERM is blocked while the cluster
forks its processes (a blocked signal stays blocked in a forked child, whatever handler the child
installs) and unblocked in the leader only, whose handler stops the cluster the orderly way.

This command takes the place of django_q's because the separation app comes before django_q in
INSTALLED_APPS.
"""

import signal

from django.conf import settings
from django_q.management.commands.qcluster import Command as DjangoQCommand

from monitoring.worker_server import multiprocess_dir_reset, worker_metrics_serve


class Command(DjangoQCommand):
    def handle(self, *args, **options):
        multiprocess_dir_reset()
        if settings.WORKER_METRICS_PORT:
            worker_metrics_serve(address=settings.WORKER_METRICS_ADDRESS, port=settings.WORKER_METRICS_PORT)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            super().handle(*args, **options)  # returns once the cluster's processes are started
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
