"""Restart policy: exponential backoff, reset after a stable run, crash-loop budget."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from daemon.config import DaemonConfig


@dataclass(frozen=True)
class RestartPolicy:
    """When and whether to restart a crashed worker."""

    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    stable_after_s: float = 30.0
    budget: int = 5  # crashes allowed within window_s
    window_s: float = 60.0

    @classmethod
    def from_config(cls, cfg: DaemonConfig) -> RestartPolicy:
        return cls(
            cfg.restart_backoff_min_s,
            cfg.restart_backoff_max_s,
            cfg.stable_after_s,
            cfg.crash_budget,
            cfg.crash_window_s,
        )


@dataclass
class CrashHistory:
    """One worker's crashes; decides the delay before its next start."""

    policy: RestartPolicy
    times: deque[float] = field(default_factory=deque)
    consecutive: int = 0

    def record(self, now: float, ran_s: float) -> float | None:
        """Record a crash; the restart delay in seconds, or None once over budget."""
        if ran_s >= self.policy.stable_after_s:
            self.consecutive = 0  # it had been running fine: start the backoff over
        self.consecutive += 1
        self.times.append(now)
        while self.times and now - self.times[0] > self.policy.window_s:
            self.times.popleft()
        if len(self.times) > self.policy.budget:
            return None
        delay = self.policy.backoff_min_s * 2.0 ** (self.consecutive - 1)
        return min(delay, self.policy.backoff_max_s)
