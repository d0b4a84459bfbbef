"""Read endpoints under load: status, jobs and history from many client threads for a bounded
time. Python threads on urllib (a new connection per request), so nothing to install."""

from __future__ import annotations

import threading
import time
from collections import Counter

from reliability.scenarios.common import Row, make_user, wait_final
from testkit.audio import tone_bytes
from testkit.figures import percentile
from testkit.http import http


def run(stack, *, seconds: float = 10, clients: int = 16) -> Row:
    user, token = make_user("reader", 3)
    reply = stack.upload(token, "read-load.wav", tone_bytes(2.0))
    if reply.status != 202:
        return Row("Read endpoints under load", f"setup upload answered {reply.status}", False)
    job_id = reply.json()["job_id"]
    wait_final([job_id], 300)
    paths = [f"/api/status/{job_id}", "/api/jobs", "/api/credits/history"]
    headers = stack.auth(token)
    latencies: list[float] = []
    outcomes: Counter = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(index: int) -> None:
        mine, counts, turn = [], Counter(), index
        while time.monotonic() < stop_at:
            path = paths[turn % len(paths)]
            turn += 1
            try:
                answer = http("GET", stack.url(path), headers=headers)
                counts[answer.status] += 1
                mine.append(answer.seconds)
            except OSError as error:
                counts[type(error).__name__] += 1
        with lock:
            latencies.extend(mine)
            outcomes.update(counts)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    total = sum(outcomes.values())
    errors = total - outcomes.get(200, 0)
    p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
    figure = (
        f"{clients} clients for {elapsed:.1f} s on status/jobs/history: {total} requests, "
        f"{total / elapsed:.0f} req/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms, {errors} errors"
    )
    problems = (f"outcomes {dict(outcomes)}",) if errors or not total else ()
    return Row("Read endpoints under load", figure, not problems, elapsed, problems)
