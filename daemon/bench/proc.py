"""What /proc says about a process and the machine: CPU seconds, RSS and PSS, open fds,
parents and children, and the CPUs' busy ticks (Linux only). The benchmarks read the
daemon's processes from the outside with these, as an operator's tools would."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

CLK_TCK_HZ = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    """One process at one moment: CPU seconds used so far, memory, open fds.

    RSS counts every page the process maps, so shared ones (libraries, the rings) are
    counted once per process; PSS divides each shared page among its sharers, so the PSS
    of all processes adds up to what they use together.
    """

    pid: int
    cpu_s: float
    rss_bytes: int
    pss_bytes: int
    fds: int


def read_proc(pid: int) -> ProcSample | None:
    """A sample of process `pid`, or None if it is gone (or became a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    rss = re.search(r"^Rss:\s+(\d+) kB", rollup, re.MULTILINE)
    pss = re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE)
    if fields[0] == "Z" or rss is None or pss is None:
        return None
    cpu_s = (int(fields[11]) + int(fields[12])) / CLK_TCK_HZ  # utime + stime
    return ProcSample(pid, cpu_s, int(rss.group(1)) * 1024, int(pss.group(1)) * 1024, fds)


def parent_pid(pid: int) -> int:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0
    return int(raw[raw.rindex(")") + 2 :].split()[1])


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (a scan of /proc: there is no cheaper portable way)."""
    return sorted(int(d) for d in os.listdir("/proc") if d.isdigit() and parent_pid(int(d)) == pid)


def process_label(pid: int) -> str:
    """A name for a helper process no stats block names (e.g. multiprocessing's tracker)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return f"pid{pid}"
    match = re.search(r"multiprocessing\.(\w+)", cmdline)
    return match.group(1) if match else f"pid{pid}"


def system_cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    # user nice system idle iowait irq softirq steal; guest time is already in user/nice.
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)
