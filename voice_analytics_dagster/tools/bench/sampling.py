"""Peak memory of a measured command: every process below it sampled from /proc (VmHWM), the
whole tree's ru_maxrss through a small wrapper as a cross-check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from voice_analytics_dagster.tools.bench.stages import SAMPLE_SECONDS

# -- process sampling ------------------------------------------------------------------------

def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:", "RssAnon:", "PPid:")):
                    name, value = line.split(":", 1)
                    parts = value.split()
                    out[name] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    except OSError:
        pass
    return out


def _cmd(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _parents() -> dict[int, int]:
    ppid = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    # the command is in parentheses and may hold spaces: ppid follows the last ')'
                    ppid[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return ppid


def _descendants(root: int, ppid: dict[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in ppid.items():
        children.setdefault(parent, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def label_of(cmd: str) -> str:
    """A short name for a process from its command line (dbt runs as ``python .../dbt build``)."""
    words = cmd.split()
    if not words:
        return "?"
    if any(os.path.basename(w) == "dbt" for w in words[:2]):
        return "dbt"
    if "voice_analytics_dagster.tools.cli" in cmd or os.path.basename(words[0]) == "voice-analytics":
        return "voice-analytics"
    if "bench_pandas" in cmd:
        return "pandas loader"
    return os.path.basename(words[0])


class Sampler(threading.Thread):
    """Samples the process tree under ``root`` (and the PostgreSQL backends under ``postmaster``)."""

    def __init__(self, root: int, postmaster: int | None):
        super().__init__(daemon=True)
        self.root, self.postmaster = root, postmaster
        self.hwm: dict[int, tuple[str, int]] = {}
        self.timeline: list[tuple[float, int]] = []
        self.pg_anon_peak = 0
        self._halt = threading.Event()

    def sample(self) -> None:
        ppid = _parents()
        now = time.time()
        # the measured command is the wrapper's (self.root's) child
        main = min((p for p, parent in ppid.items() if parent == self.root), default=None)
        for pid in _descendants(self.root, ppid):
            st = _status(pid)
            if "VmHWM" not in st or pid == self.root:
                continue
            label = self.hwm.get(pid, (None, 0))[0] or label_of(_cmd(pid))
            self.hwm[pid] = (label, max(st["VmHWM"], self.hwm.get(pid, ("", 0))[1]))
            if pid == main:
                self.timeline.append((now, st.get("VmRSS", 0)))
        if self.postmaster:
            for pid in _descendants(self.postmaster, ppid):
                self.pg_anon_peak = max(self.pg_anon_peak, _status(pid).get("RssAnon", 0))

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def peaks_by_label(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for label, hwm in self.hwm.values():
            out[label] = max(out.get(label, 0), hwm)
        return out


@dataclass
class Measured:
    seconds: float
    returncode: int
    tree_peak: int  # bytes, the command's ru_maxrss: the largest process of its tree
    peaks: dict[str, int]  # bytes per process label (VmHWM)
    timeline: list[tuple[float, int]]
    pg_anon_peak: int
    stdout: str
    stderr: str


# Why a wrapper: a child's ru_maxrss starts from its parent's resident size at fork, and Linux
# keeps it across exec, so os.wait4 in the bench process (hundreds of MB once Dagster is
# imported) reported psql at 300 MB. The wrapper is a bare interpreter (-I -S, ~10 MB): it
# spawns the command, waits for it and writes the command's ru_maxrss (KiB) to stderr's last line.
WRAPPER = r"""
import os, sys
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
os.write(2, b"\nbench-maxrss-kib %d\n" % usage.ru_maxrss)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""
WRAPPER_MARK = "bench-maxrss-kib"


def measure(cmd: list[str], env: dict[str, str], workdir: Path, postmaster: int | None) -> Measured:
    out, err = workdir / "stdout.txt", workdir / "stderr.txt"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", WRAPPER, *cmd], env=env, stdout=fo, stderr=fe)
        sampler = Sampler(proc.pid, postmaster)
        sampler.start()
        proc.wait()
        seconds = time.perf_counter() - t0
        sampler.stop()
    stderr = err.read_text(errors="replace")
    found = re.findall(WRAPPER_MARK + r" (\d+)", stderr)
    tree_peak = int(found[-1]) * 1024 if found else 0
    stderr = stderr.rsplit("\n" + WRAPPER_MARK, 1)[0]
    return Measured(seconds, proc.returncode, tree_peak, sampler.peaks_by_label(), sampler.timeline,
                    sampler.pg_anon_peak, out.read_text(errors="replace"), stderr)


