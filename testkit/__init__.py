"""What the tests (tests/), the attack suite (reliability/) and the benchmarks (bench/) share:
audio to upload, a small HTTP client on urllib, waiting, processes started and stopped as
process groups, the test database's URL, and Stripe as it looks from outside (signed events,
a fake API on loopback).

No Django at import time: the attack suite and the benchmarks import this before they set
Django up. Everything that starts a process is fork+exec (subprocess.Popen), never
multiprocessing: the calling process may have run torch (docs/architecture.md, Fork safety).
"""
