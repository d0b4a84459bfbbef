"""A separation worker host's own /metrics port (WORKER_METRICS_PORT), for workers on machines
that serve no web pages: what its processes measured (multiprocess mode) and nothing else."""

import logging
import os
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess, start_http_server

logger = logging.getLogger(__name__)


def multiprocess_dir_reset() -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR when a service starts: files of processes from an earlier
    run would add their old counts to the new ones. Each service (web, worker) needs its own folder."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    path = Path(folder)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def worker_metrics_serve(*, address: str, port: int) -> None:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        logger.warning(
            "WORKER_METRICS_PORT is set without PROMETHEUS_MULTIPROC_DIR: the port would show only the "
            "cluster's leader, not its workers. Set PROMETHEUS_MULTIPROC_DIR to an empty folder."
        )
        return
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=address, registry=registry)
    logger.info("Worker metrics on %s:%d", address, port)
