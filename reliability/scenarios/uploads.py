"""Concurrent uploads: every user fires more uploads at once than their credits pay for."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from reliability.scenarios.common import Row, audit_ledger, balance, make_user, orphan_charges, wait_final
from testkit.audio import tone_bytes


def run(stack, *, users: int = 20, uploads: int = 10, credits: int = 3, job_timeout: float = 600) -> Row:
    started = time.monotonic()
    accounts = [make_user("load", credits) for _ in range(users)]
    clip = tone_bytes(2.0)

    def fire(index: int) -> tuple[int, int, str]:
        user_index = index % users
        _, token = accounts[user_index]
        try:
            reply = stack.upload(token, f"load-{index}.wav", clip)
        except OSError as error:
            return user_index, -1, str(error)
        job_id = reply.json().get("job_id", "") if reply.status == 202 else ""
        return user_index, reply.status, job_id

    with ThreadPoolExecutor(max_workers=min(users * uploads, 64)) as pool:
        results = list(pool.map(fire, range(users * uploads)))
    upload_seconds = time.monotonic() - started

    problems = []
    statuses = Counter(status for _, status, _ in results)
    accepted = [job for _, status, job in results if status == 202]
    for user_index, (user, _) in enumerate(accounts):
        mine = Counter(status for index, status, _ in results if index == user_index)
        if mine != Counter({202: credits, 402: uploads - credits}):
            problems.append(f"user {user.username}: {dict(mine)}")
    low = [str(balance(user)) for user, _ in accounts if balance(user) < 0]
    if low:
        problems.append(f"balances below zero: {low}")
    clean, said = audit_ledger(stack)
    if not clean:
        problems.append(f"audit_ledger: {said}")
    orphans = orphan_charges()
    if orphans:
        problems.append(f"charges without a job: {orphans}")

    final = wait_final(accepted, job_timeout)
    finished = Counter(final.values())
    if sum(count for state, count in finished.items() if state in ("COMPLETED", "FAILED", "CANCELLED")) != len(
        accepted
    ):
        problems.append(f"jobs not final after {job_timeout:g} s: {dict(finished)}")
    if finished.get("COMPLETED", 0) != len(accepted):
        problems.append(f"not every accepted job completed: {dict(finished)}")
    clean_after, said_after = audit_ledger(stack)
    if not clean_after:
        problems.append(f"audit_ledger after the jobs: {said_after}")
    elapsed = time.monotonic() - started
    figure = (
        f"{users} users x {uploads} uploads ({credits} credits each) in {upload_seconds:.1f} s: "
        f"{statuses.get(202, 0)} x 202, {statuses.get(402, 0)} x 402, "
        f"{sum(n for s, n in statuses.items() if s not in (202, 402))} other; "
        f"min balance {min(balance(user) for user, _ in accounts)}; "
        f"audit_ledger {'clean' if clean_after else 'BROKEN'}; "
        f"{finished.get('COMPLETED', 0)}/{len(accepted)} jobs COMPLETED after {elapsed:.0f} s"
    )
    return Row("Concurrent uploads", figure, not problems, elapsed, tuple(problems))
