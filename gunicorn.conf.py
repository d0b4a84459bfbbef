"""gunicorn's settings for every way the service is served (bin/run with DEBUG=0, the Docker
image, the systemd unit): gunicorn reads this file from the working directory. The command line
still wins, e.g. --bind."""

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "3"))
# Threads are cheap while they wait on the network; an upload holds one for as long as it lasts
# (demucs_service/middleware/slow_clients.py bounds how slowly).
threads = int(os.environ.get("WEB_THREADS", "16"))
timeout = 120
accesslog = "-"


def on_starting(server):
    # prometheus-client's multiprocess files from an earlier run would add to this one's counts.
    from monitoring.worker_server import multiprocess_dir_reset

    multiprocess_dir_reset()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
