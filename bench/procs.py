"""CPU and memory of a subject's process tree, read from /proc (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


@dataclass(frozen=True)
class TreeSample:
    cpu_seconds: float
    """utime+stime of every live process in the tree, plus the root's reaped children."""
    rss_bytes: int


def sample(root: int) -> TreeSample:
    ticks, rss = 0, 0
    for pid in descendants(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the ')' split: index 11 = utime, 12 = stime, 13 = cutime, 14 = cstime.
        ticks += int(fields[11]) + int(fields[12])
        if pid == root:
            ticks += int(fields[13]) + int(fields[14])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return TreeSample(cpu_seconds=ticks / _TICKS, rss_bytes=rss)
