"""Stop signals (SIGTERM, SIGINT, Slurm's SIGUSR2): a first one asks the run to stop at the end of the
episode in progress, within ``trainer.stop_grace_s``, and checkpoint there; past the grace period, or
at a second signal, it stops at once without a new checkpoint (a resume then redoes the frames since the
last one). After its own checkpoint the run hands SIGUSR2 to the handler that was there before
(submitit's, which requeues the job)."""

from __future__ import annotations

import logging
import signal
import time

log = logging.getLogger("av_td3")


class StopControl:
    def __init__(self, grace_s: float):
        self.grace_s = grace_s
        self.signal: int | None = None  # the first stop signal received
        self.count = 0
        self.first_at = 0.0
        self._chained: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name

    def overdue(self) -> bool:
        """A stop that must not wait for the episode's end: a second signal, or the grace period gone."""
        return self.requested and (self.count > 1 or time.monotonic() - self.first_at > self.grace_s)

    def install(self) -> None:
        def handler(signum, _frame):
            self.signal = signum
            self.count += 1
            if self.count == 1:
                self.first_at = time.monotonic()
                log.warning("%s: finishing the episode in progress (at most trainer.stop_grace_s=%gs), then "
                            "checkpoint and stop; signal again to stop at once", signal.Signals(signum).name,
                            self.grace_s)

        signals = [signal.SIGTERM, signal.SIGINT]
        if hasattr(signal, "SIGUSR2") and callable(signal.getsignal(signal.SIGUSR2)):
            signals.append(signal.SIGUSR2)
        for sig in signals:
            try:
                previous = signal.signal(sig, handler)
            except ValueError:  # not the main thread (some launchers): leave the handlers alone
                continue
            if sig == getattr(signal, "SIGUSR2", None):
                self._chained[sig] = previous

    def hand_over(self) -> None:
        """Call the handler that was installed before ours for this signal (submitit's requeue)."""
        chained = self._chained.get(self.signal)
        if callable(chained):
            chained(self.signal, None)
