"""Each django-q2 worker loads its separation models (and runs each once) when it starts, before its first task,
so the first job after a (re)start is as fast as any other (no job pays for a model load).

How it hooks in: django-q2 (1.11) sends `django_q.signals.post_spawn` from `worker()`, the
function its cluster runs in each forked worker process, after the fork and before the worker
reads its task queue; `SeparationConfig.ready()` connects `worker_started` to it. Tasks the
pusher hands out meanwhile wait in the worker's queue, and the cluster's guard sees the worker
as idle (its timer is not running), so a long load is never taken for a hung task.

Fork safety (docs/architecture.md, Fork safety): loading runs torch work, so it must never run in a process that forks
afterwards. post_spawn fires only inside a worker (never in the cluster or sentinel, which fork
the workers, and never in the web process); `worker_started` also refuses to run in a main
process (no multiprocessing parent), which is where django-q2's sync mode would send the signal.

Which models: settings.WORKER_PRELOAD_MODELS (installed, default, none, or a list of names).
A model that fails to load is logged and skipped: the worker still starts, and a job for that
model fails with its usual message and refund.

Every model load in a worker is logged: one line per model loaded at start here, and a line for
any job that had to load its model (a model that was not preloaded; separation/worker.py), so an
operator (and the tests and benchmarks, which read the worker's log) can see that jobs do not load
models.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time

from django.conf import settings

logger = logging.getLogger(__name__)


def preload_model_names() -> list[str]:
    """The models WORKER_PRELOAD_MODELS names, in catalogue order for the keywords (an ensemble's
    parts for an ensemble)."""
    from separation.catalog import default_model_name, loadable_names, models_list

    choice = settings.WORKER_PRELOAD_MODELS
    if choice == "none":
        return []
    if choice == "installed":
        return loadable_names([model.name for model in models_list() if model.installed])
    if choice == "default":
        return loadable_names([default_model_name(models_list())])
    return loadable_names(list(choice))


def _import_job_modules() -> None:
    """What a job imports on top of the model (codecs, resampling, images), paid here once."""
    import demucs.apply  # noqa: F401
    import demucs.audio  # noqa: F401
    import julius  # noqa: F401
    import lameenc  # noqa: F401
    import soundfile  # noqa: F401
    from PIL import Image  # noqa: F401


def preload_models(proc_name: str = "") -> list[str]:
    """Load the configured models into this process (and run each once); the names that succeeded."""
    from separation import engine
    from separation.services import engine_config

    config = engine_config()
    warmed = []
    loads = 0
    for name in preload_model_names():
        started = time.monotonic()
        try:
            loaded = engine.warm_up(name, config)
        except Exception as error:  # never stop the worker: its jobs fail and refund as usual
            logger.warning("Worker %s (pid %d) could not preload the model %r: %s", proc_name, os.getpid(), name, error)
            continue
        warmed.append(name)
        if not loaded:
            continue  # WORKER_PRELOAD_MODELS names it twice
        loads += 1
        logger.info(
            "Worker %s (pid %d) loaded the model %r in %.2f s before its first task (model loads in this worker: %d)",
            proc_name,
            os.getpid(),
            name,
            time.monotonic() - started,
            loads,
        )
    try:
        _import_job_modules()
    except Exception as error:
        logger.warning("Worker %s (pid %d) could not import the job modules: %r", proc_name, os.getpid(), error)
    return warmed


def worker_started(sender=None, proc_name: str = "", **kwargs) -> None:
    """post_spawn receiver: runs in a freshly forked django-q2 worker, before its first task."""
    if multiprocessing.parent_process() is None:
        return  # not a forked worker (sync mode, the web process, a test): never load here
    from django_q.conf import Conf

    if Conf.CLUSTER_NAME != settings.SEPARATION_CLUSTER:
        return  # the maintenance cluster never separates
    if settings.WORKER_PRELOAD_MODELS == "none":
        logger.info("Worker %s (pid %d) preloads no models (WORKER_PRELOAD_MODELS=none)", proc_name, os.getpid())
        return
    preload_models(proc_name)
