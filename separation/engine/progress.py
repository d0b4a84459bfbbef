"""The fraction of a separation done, for the progress callback (which is also the job's
heartbeat): the first read, the model's chunks, then writing the files."""

from __future__ import annotations

from collections.abc import Callable

# Share of the progress range the model itself takes; writing files takes the rest.
SEPARATION_SHARE = 0.9
# Share of the model's progress range taken by the first read (the mix's statistics).
STATISTICS_SHARE = 0.02


class Progress:
    """A monotonic fraction: the first read, then chunks done over all the passes that run (in
    [0, share) together), then the files. 1.0 is reported once everything is written."""

    def __init__(self, report: Callable[[float], None] | None, share: float):
        self.report = report
        self.share = share
        self.last = 0.0

    def emit(self, fraction: float) -> None:
        if self.report is None or fraction <= self.last:
            return
        self.last = fraction
        self.report(fraction)

    def reading(self, fraction: float) -> None:
        self.emit(STATISTICS_SHARE * fraction * self.share)

    def separating(self, fraction: float) -> None:
        self.emit((STATISTICS_SHARE + (1 - STATISTICS_SHARE) * fraction) * self.share * 0.999)
