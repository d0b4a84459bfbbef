"""Real concurrency for the tests: callables released together in threads, each on its own
database connection."""

import threading

from django.db import connection


def run_together(*workers):
    """Run each worker (no arguments) in its own thread, released together by a barrier; each
    one's result or exception, in order."""
    barrier = threading.Barrier(len(workers))
    results = [None] * len(workers)

    def run(index):
        try:
            barrier.wait(timeout=30)
            results[index] = workers[index]()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results
