"""`voice-analytics bench`: how fast and how big, measured on one server in one invocation.

What is measured, per repeat, each in a subprocess of its own (so that its peak memory is its own):

- ours: a real ``voice-analytics run`` on the export. Stage times come from the run's Dagster step
  events (the pipeline job runs in one process, steps one after the other), so they are the times
  of the real run, not of a re-enactment: ingestion = the raw/* steps (COPY + validation +
  quarantine + batch bookkeeping), dbt = the dbt steps (``dbt build``: models and their tests),
  checks = the Python asset-check steps, model = the abandonment model step, publish, report.
  "run" is the wall time of the whole command (start-up and Dagster bookkeeping included).
- the physical limit for loading: ``psql \\copy`` of the same five files into plain typed tables
  (same column types, no constraints) in a scratch schema.
- the common loader: ``pandas.read_csv`` + ``DataFrame.to_sql`` (SQLAlchemy) of the same files into
  another scratch schema.

Peak memory: a sampler reads /proc every 0.2 s for every process below each measured command
(VmHWM, the kernel's own high-water mark per process, so a short peak between samples is still
seen), and the run process's RSS over time, which the step events turn into a peak per stage.
The command's ru_maxrss (through a small wrapper, see WRAPPER) gives the whole tree's peak as a
cross-check. The PostgreSQL server is not a child:
its backends' private memory (RssAnon) is sampled, and its shared_buffers reported separately.

Every repeat uses a fresh database on the configured server (dropped at the end), so the
developer's warehouse is never touched and every repeat loads from empty. The run's database has
the same name in every repeat and every bench (RUN_DATABASE, dropped and created anew): dbt's
partial-parse state depends on the connection, so a new name per repeat made every run parse the
project again (in the background, on the cores that load the files: ingestion 12.8 -> 14.7 s at
1M, measured 1 December 2026), which a warehouse that runs daily never does. A repeat that did
parse (the first after the project or the connection changed) says so.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voice_analytics_dagster.lib.contract import TABLES

FILES = tuple(f"{t.name}.csv" for t in TABLES)
SAMPLE_SECONDS = 0.2
RUN_DATABASE = "voice_analytics_bench_run"

# -- pure helpers (unit-tested) ---------------------------------------------------------------

STAGES = ("ingestion", "dbt", "checks", "model", "publish", "report")


def stage_of_step(step_key: str) -> str:
    """The bench stage a Dagster step of the pipeline job belongs to.

    Step keys are Dagster's: ``raw_export`` (the five raw assets; ``raw__<table>`` when they were
    one step each), ``voice_dbt_models`` and
    ``voice_dbt_models_2`` (the dbt build is split in two steps around the model, whose export
    table dbt builds after it), ``<asset>_<check>`` for Python asset checks, ``abandonment_model``,
    ``publish_certified_schema``, ``reports__voice_analytics_report``."""
    from voice_analytics_dagster.defs.automation.freshness import freshness_checks
    from voice_analytics_dagster.defs.transform.checks import asset_checks

    check_names = set()
    for c in [*asset_checks, *freshness_checks]:
        for spec in getattr(c, "check_specs", ()):
            check_names.add(spec.name)
    if any(step_key.endswith("_" + name) for name in check_names) or step_key.startswith("freshness_check"):
        return "checks"
    if step_key == "raw_export" or step_key.startswith("raw__"):
        return "ingestion"
    if step_key.startswith("voice_dbt_models"):
        return "dbt"
    if step_key == "abandonment_model":
        return "model"
    if step_key == "publish_certified_schema":
        return "publish"
    if "report" in step_key:
        return "report"
    return "other"


def step_intervals(events: list[tuple[float, str, str]]) -> dict[str, tuple[float, float]]:
    """(start, end) per step key from (timestamp, event type, step key) triples."""
    starts: dict[str, float] = {}
    out: dict[str, tuple[float, float]] = {}
    for ts, kind, key in sorted(events):
        if kind == "STEP_START":
            starts[key] = ts
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and key in starts:
            out[key] = (starts[key], ts)
    return out


def stage_seconds(intervals: dict[str, tuple[float, float]]) -> dict[str, float]:
    totals = {s: 0.0 for s in STAGES}
    for key, (a, b) in intervals.items():
        stage = stage_of_step(key)
        totals[stage] = totals.get(stage, 0.0) + (b - a)
    return totals


def peak_in(timeline: list[tuple[float, int]], start: float, end: float) -> int | None:
    """Largest sampled RSS (bytes) within [start, end] (the sample just before counts too: the
    step may have started from it)."""
    inside = [rss for t, rss in timeline if start <= t <= end]
    before = [rss for t, rss in timeline if t < start]
    if before:
        inside.append(before[-1])
    return max(inside) if inside else None


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


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


# -- the measured commands ---------------------------------------------------------------------

PANDAS_LOADER = r"""
# bench_pandas: the common loader, as a tutorial writes it
import sys, time, pandas as pd, sqlalchemy as sa
url, schema, *files = sys.argv[1:]
engine = sa.create_engine(url)
with engine.begin() as c:
    c.exec_driver_sql(f"drop schema if exists {schema} cascade")
    c.exec_driver_sql(f"create schema {schema}")
for path in files:
    name = path.rsplit("/", 1)[-1][:-4]
    df = pd.read_csv(path)
    df.to_sql(name, engine, schema=schema, if_exists="replace", index=False)
print("driver", engine.dialect.driver)
"""


def copy_script(export: Path, schema: str) -> str:
    """The psql script of the physical limit: plain typed tables (the contract's column types,
    no constraints, no metadata) and one ``\\copy`` per file, columns named as in its header."""
    from voice_analytics_dagster.defs.ingestion.reader import read_header

    lines = [f"drop schema if exists {schema} cascade;", f"create schema {schema};"]
    for t in TABLES:
        cols = ", ".join(f"{c.name} {c.pg_type}" for c in t.columns)
        lines.append(f"create table {schema}.{t.name} ({cols});")
    for t in TABLES:
        path = export / f"{t.name}.csv"
        header = ", ".join(read_header(path).columns)
        lines.append(f"\\copy {schema}.{t.name} ({header}) from '{path}' with (format csv, header true)")
    return "\n".join(lines) + "\n"


COPY_FALLBACK = r"""
# bench_copy fallback (no psql binary): psycopg 3 COPY FROM STDIN streamed from the file
import sys, psycopg
url, script = sys.argv[1:]
with psycopg.connect(url, autocommit=True) as conn:
    for line in open(script):
        line = line.strip()
        if line.startswith("\\copy "):
            m = line[len("\\copy "):]
            target, rest = m.split(" from '", 1)
            path = rest.split("'", 1)[0]
            with conn.cursor().copy(f"copy {target} from stdin with (format csv, header true)") as cp, open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    cp.write(chunk)
        elif line:
            conn.execute(line)
"""


@dataclass
class Repeat:
    run_seconds: float
    stages: dict[str, float]
    stage_peaks: dict[str, int | None]
    run_peaks: dict[str, int]
    run_tree_peak: int
    copy_seconds: float
    copy_peak: int
    pandas_seconds: float
    pandas_peak: int
    pg_backend_anon_peak: int
    dbt_nodes: list[tuple[str, float]] = field(default_factory=list)
    dbt_invocations: list[dict] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    dbt_parsed: bool = False  # the run parsed the dbt project (in the background, beside ingestion)


class BenchError(RuntimeError):
    pass


def _check(m: Measured, what: str) -> None:
    if m.returncode != 0:
        tail = "\n".join((m.stdout + m.stderr).strip().splitlines()[-15:])
        raise BenchError(f"{what} failed (exit {m.returncode}):\n{tail}")


def _run_id(stdout: str) -> str:
    found = re.search(r"^run ([0-9a-f-]{36}):", stdout, re.M)
    if not found:
        raise BenchError(f"could not find the run id in the output of run:\n{stdout[-2000:]}")
    return found.group(1)


def _step_events(settings, wh, run_id: str) -> list[tuple[float, str, str]]:
    from voice_analytics_dagster.lib.instance import open_instance

    instance = open_instance(settings, wh)
    out = []
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is not None and ev.step_key and ev.event_type_value in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE"):
            out.append((entry.timestamp, ev.event_type_value, ev.step_key))
    return out


def dbt_node_times(run_id: str) -> list[tuple[str, float]]:
    """Per-node execution times from the run_results.json of this run's dbt steps (dagster-dbt
    writes each invocation to dbt/target/<step>-<run id prefix>-<hash>/)."""
    from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR

    out = []
    for path in (DBT_PROJECT_DIR / "target").glob(f"*-{run_id[:7]}-*/run_results.json"):
        for r in json.loads(path.read_text()).get("results", []):
            out.append((r["unique_id"], float(r.get("execution_time") or 0.0)))
    return sorted(out, key=lambda x: -x[1])


def _iso(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def dbt_invocations(run_id: str) -> list[dict]:
    """Where each dbt step's time goes, from its dbt.log: the whole dbt command, the project
    load (start to "Concurrency: N threads", i.e. parsing), and the nodes' execution
    (run_results.json elapsed_time); split_dbt_step adds what the step spent before dbt's first
    and after its last log line. (Until 1 Dec the whole step time minus the command was reported
    as Dagster's share; 1.7-2.5 s of it per step was the dbt process starting.)"""
    from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR

    out = []
    for folder in sorted((DBT_PROJECT_DIR / "target").glob(f"*-{run_id[:7]}-*")):
        log, results = folder / "dbt.log", folder / "run_results.json"
        if not log.exists():
            continue
        first = threads = last = None
        partial = True
        for line in log.read_text(errors="replace").splitlines():
            try:
                info = json.loads(line)["info"]
            except (ValueError, KeyError):
                continue
            first = first or info["ts"]
            last = info["ts"]
            if info.get("code") == "Q027" and threads is None:
                threads = info["ts"]
            if "Unable to do partial parsing" in info.get("msg", ""):
                partial = False
        item = {"step": folder.name.rsplit("-", 2)[0], "partial_parse": partial,
                "command_s": _iso(last) - _iso(first) if first else None,
                "load_s": _iso(threads) - _iso(first) if threads else None,
                "first_ts": _iso(first) if first else None, "last_ts": _iso(last) if last else None}
        if results.exists():
            item["execute_s"] = json.loads(results.read_text()).get("elapsed_time")
        out.append(item)
    return out


def split_dbt_step(invocation: dict, interval: tuple[float, float] | None) -> dict:
    """The dbt step's time around dbt's command: ``startup_s`` from the step's start to dbt's first
    log line (dagster-dbt preparing the invocation and the dbt process importing dbt, 1.7-2.5 s a
    step at 1M on 1 Dec), ``after_s`` from dbt's last log line to the step's end (Dagster storing
    the step's events). Pure."""
    out = dict(invocation)
    if interval is not None and invocation.get("first_ts") is not None and invocation.get("last_ts") is not None:
        out["startup_s"] = invocation["first_ts"] - interval[0]
        out["after_s"] = interval[1] - invocation["last_ts"]
    return out


def _parse_stamp() -> int | None:
    """When the stored partial-parse state was last written (pipeline.start_dbt_parse)."""
    from voice_analytics_dagster.tools.pipeline import parse_stamp_path

    try:
        return parse_stamp_path().stat().st_mtime_ns
    except OSError:
        return None


class Bench:
    def __init__(self, settings, export: Path, workdir: Path):
        from voice_analytics_dagster.lib.warehouse import Warehouse

        self.settings, self.export, self.workdir = settings, export, workdir
        self.wh = Warehouse(settings)
        self.wh.ensure_databases()  # the server is up before anything is timed
        self.server = self.wh.server()
        self.databases: list[str] = []

    def postmaster(self) -> int | None:
        if not self.settings.is_embedded:
            return None
        try:
            return int((self.settings.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def fresh_database(self, name: str):
        """A new empty database on the same server, and the environment that points every
        process (CLI, Dagster, dbt) at it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.server.url(dbname="postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        self.databases.append(name)
        env = dict(os.environ)
        if self.settings.is_embedded:
            env["VOICE_ANALYTICS_DATABASE"] = name
        else:
            env["VOICE_ANALYTICS_DATABASE_URL"] = self.wh.conninfo().with_dbname(name).url()
        # dagster-dbt looks for dbt on PATH: the interpreter's own bin first
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        return self.wh.conninfo().with_dbname(name), env

    def run(self, source: Path, env: dict[str, str], tag: str) -> tuple[Measured, str]:
        work = self.workdir / tag
        work.mkdir(parents=True, exist_ok=True)
        m = measure([sys.executable, "-m", "voice_analytics_dagster.tools.cli", "run", "--source", str(source),
                     "--no-wait"], env, work, self.postmaster())
        _check(m, f"voice-analytics run ({tag})")
        return m, _run_id(m.stdout)

    def copy_reference(self, info, tag: str) -> Measured:
        from voice_analytics_dagster.lib.warehouse import pg_bin

        work = self.workdir / tag
        work.mkdir(parents=True, exist_ok=True)
        script = work / "copy.sql"
        script.write_text(copy_script(self.export, "bench_copy"))
        psql = pg_bin("psql")
        env = {**os.environ, **info.libpq_env()}
        if shutil.which(psql):
            cmd = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)]
        else:
            self.copy_tool = "psycopg copy (no psql binary found)"
            cmd = [sys.executable, "-c", COPY_FALLBACK, info.url(), str(script)]
        m = measure(cmd, env, work, self.postmaster())
        _check(m, "psql \\copy reference")
        return m

    copy_tool = "psql \\copy"

    def pandas_reference(self, info, tag: str) -> Measured:
        work = self.workdir / tag
        work.mkdir(parents=True, exist_ok=True)
        files = [str(self.export / f) for f in FILES]
        m = measure([sys.executable, "-c", PANDAS_LOADER, info.url(), "bench_pandas", *files],
                    dict(os.environ), work, self.postmaster())
        _check(m, "pandas read_csv + to_sql reference")
        return m

    def drop_databases(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.server.url(dbname="postgres"), autocommit=True) as conn:
            for name in self.databases:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))

    def shared_buffers(self) -> str:
        import psycopg

        with psycopg.connect(self.server.url(dbname="postgres"), autocommit=True) as conn:
            return conn.execute("show shared_buffers").fetchone()[0]

    def one_repeat(self, i: int) -> Repeat:
        base = f"voice_analytics_bench_{os.getpid()}_{i}"
        info, env = self.fresh_database(base)
        # \copy right before the run, pandas after it: ingestion is compared with a \copy taken
        # seconds before, not minutes (this machine's speed drifts by up to a third within an
        # hour: \copy took 7.3 s and 10.4 s in two repeats of one bench, 1 December)
        copy = self.copy_reference(info, f"r{i}-copy")
        # the run gets a database of its own: the references' tables must not sit in its way
        _, run_env = self.fresh_database(RUN_DATABASE)
        stamp = _parse_stamp()
        run, run_id = self.run(self.export, run_env, f"r{i}-run")
        pandas = self.pandas_reference(info, f"r{i}-pandas")
        intervals = step_intervals(_step_events(self.settings, self.wh, run_id))
        stage_peaks: dict[str, int | None] = {}
        for key, (a, b) in intervals.items():
            stage = stage_of_step(key)
            p = peak_in(run.timeline, a, b)
            if p is not None:
                stage_peaks[stage] = max(p, stage_peaks.get(stage) or 0)
        return Repeat(
            run_seconds=run.seconds, stages=stage_seconds(intervals), stage_peaks=stage_peaks,
            run_peaks=run.peaks, run_tree_peak=run.tree_peak,
            copy_seconds=copy.seconds, copy_peak=copy.tree_peak,
            pandas_seconds=pandas.seconds, pandas_peak=pandas.tree_peak,
            pg_backend_anon_peak=max(run.pg_anon_peak, copy.pg_anon_peak, pandas.pg_anon_peak),
            dbt_nodes=dbt_node_times(run_id)[:10],
            dbt_invocations=[split_dbt_step(inv, intervals.get(inv["step"])) for inv in dbt_invocations(run_id)],
            step_seconds={k: b - a for k, (a, b) in intervals.items()},
            dbt_parsed=_parse_stamp() != stamp,
        )

    def stages_of(self, run_id: str) -> dict[str, float]:
        """Seconds per bench stage of a finished run, from its step events."""
        return stage_seconds(step_intervals(_step_events(self.settings, self.wh, run_id)))

    def incremental(self, sessions: int, seed: int, days: int) -> dict:
        """History of ``days`` daily deliveries in a landing folder, one full run on it, then one
        more day delivered and the run timed again: the daily incremental run; then a run with
        nothing delivered since, which is what any daily run pays whatever it brings (the
        history-wide work: marts, tests, the model, publication, and the fixed cost of a run; on a
        history of a few thousand sessions, the fixed cost alone)."""
        from voice_analytics_dagster.tools.generator import generate_export

        by_day = self.workdir / "by-day"
        generate_export(by_day, sessions, seed=seed, days=days + 1, by_day=True, progress=False)
        day_dirs = sorted(p for p in by_day.iterdir() if p.is_dir())
        landing = self.workdir / "landing"
        landing.mkdir()
        for d in day_dirs[:-1]:
            d.rename(landing / d.name)
        _, env = self.fresh_database(f"voice_analytics_bench_{os.getpid()}_incr")
        full, _ = self.run(landing, env, "incr-full")
        day_dirs[-1].rename(landing / day_dirs[-1].name)
        last, run_id = self.run(landing, env, "incr-day")
        stages = self.stages_of(run_id)
        idle, idle_id = self.run(landing, env, "incr-nothing-new")
        idle_stages = self.stages_of(idle_id)
        shutil.rmtree(by_day, ignore_errors=True)
        shutil.rmtree(landing, ignore_errors=True)
        return {"history_days": days, "full_run_s": full.seconds, "one_more_day_run_s": last.seconds,
                "ratio": last.seconds / full.seconds, "one_more_day_stages_s": stages,
                "nothing_new_run_s": idle.seconds, "nothing_new_ratio": idle.seconds / full.seconds,
                "nothing_new_stages_s": idle_stages}


# -- report ------------------------------------------------------------------------------------

def export_size(export: Path) -> tuple[dict[str, int], int]:
    rows, total = {}, 0
    for name in FILES:
        path = export / name
        total += path.stat().st_size
        with open(path, "rb") as f:
            rows[name] = sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 22), b"")) - 1
    return rows, total


def ingestion_over_copy_by_repeat(repeats: list[Repeat]) -> list[float | None]:
    """Each repeat's ingestion over the \\copy taken just before it."""
    return [ratio(r.stages.get("ingestion"), r.copy_seconds) for r in repeats]


def summarise(repeats: list[Repeat], rows: int, size: int) -> dict:
    def med(get):
        return median([get(r) for r in repeats])

    stages = {s: med(lambda r, s=s: r.stages.get(s)) for s in STAGES}
    run = med(lambda r: r.run_seconds)
    copy = med(lambda r: r.copy_seconds)
    pandas = med(lambda r: r.pandas_seconds)
    ingestion = stages["ingestion"]
    mem_labels = sorted({k for r in repeats for k in r.run_peaks})
    return {
        "seconds": {**stages, "run": run, "psql_copy": copy, "pandas_to_sql": pandas},
        "throughput": {
            "ingestion_rows_per_s": ratio(rows, ingestion), "ingestion_mb_per_s": ratio(size / 1e6, ingestion),
            "psql_copy_rows_per_s": ratio(rows, copy), "psql_copy_mb_per_s": ratio(size / 1e6, copy),
            "pandas_rows_per_s": ratio(rows, pandas), "pandas_mb_per_s": ratio(size / 1e6, pandas),
        },
        "ratios": {
            "ingestion_over_psql_copy": ratio(ingestion, copy),
            "ingestion_over_psql_copy_paired": median(ingestion_over_copy_by_repeat(repeats)),
            "ingestion_over_pandas": ratio(ingestion, pandas),
            "run_over_pandas_plus_dbt": ratio(run, (pandas or 0) + (stages["dbt"] or 0)),
        },
        "peak_mb": {
            **{f"run stage {s}": med(lambda r, s=s: (r.stage_peaks.get(s) or 0) / 1e6) for s in STAGES},
            **{f"process {k}": med(lambda r, k=k: r.run_peaks.get(k, 0) / 1e6) for k in mem_labels},
            "process tree of run (ru_maxrss)": med(lambda r: r.run_tree_peak / 1e6),
            "psql \\copy": med(lambda r: r.copy_peak / 1e6),
            "pandas loader": med(lambda r: r.pandas_peak / 1e6),
            "postgres backend private (RssAnon)": med(lambda r: r.pg_backend_anon_peak / 1e6),
        },
    }


def _f(v, fmt="{:,.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def render(result: dict) -> str:
    s, t, r, m = (result["summary"][k] for k in ("seconds", "throughput", "ratios", "peak_mb"))
    lines = [
        f"voice-analytics bench: {result['sessions']:,} sessions, {result['rows']:,} rows, "
        f"{result['bytes'] / 1e6:,.0f} MB of CSV; median of {result['repeat']} repeat(s); "
        f"{result['machine']['cpus']} CPUs, load average at start {result['machine']['loadavg_start']}",
        "",
        f"{'stage':<34}{'median s':>10}{'rows/s':>13}{'MB/s':>8}{'peak MB':>9}",
    ]

    def row(name, sec, rows_s=None, mb_s=None, peak=None):
        lines.append(f"{name:<34}{_f(sec, '{:,.2f}'):>10}{_f(rows_s, '{:,.0f}'):>13}{_f(mb_s):>8}{_f(peak, '{:,.0f}'):>9}")

    row("ingestion (raw/* steps)", s["ingestion"], t["ingestion_rows_per_s"], t["ingestion_mb_per_s"],
        m["run stage ingestion"])
    for stage, label in (("dbt", "dbt build (dbt steps)"), ("checks", "checks (Python asset checks)"),
                         ("model", "model fit (abandonment_model)"), ("publish", "publish"), ("report", "report")):
        row(label, s[stage], peak=m[f"run stage {stage}"])
    row("run end-to-end (whole command)", s["run"], peak=m["process tree of run (ru_maxrss)"])
    row(f"reference: {result['copy_tool']}", s["psql_copy"], t["psql_copy_rows_per_s"], t["psql_copy_mb_per_s"],
        m["psql \\copy"])
    row("reference: pandas read_csv+to_sql", s["pandas_to_sql"], t["pandas_rows_per_s"], t["pandas_mb_per_s"],
        m["pandas loader"])
    lines += [
        "",
        f"ingestion / psql \\copy          {_f(r['ingestion_over_psql_copy'], '{:.2f}x')}   (target <= 1.3x)",
        f"  the same, repeat by repeat     {_f(r.get('ingestion_over_psql_copy_paired'), '{:.2f}x')}   (median of "
        + ", ".join(_f(x, "{:.2f}") for x in result.get("ingestion_over_psql_copy_by_repeat", [])) + ")",
        f"ingestion / pandas              {_f(r['ingestion_over_pandas'], '{:.3f}x')}",
        f"run / (pandas load + dbt build) {_f(r['run_over_pandas_plus_dbt'], '{:.2f}x')}   (target <= 0.40x)",
        "",
        "peak memory per process (MB, VmHWM): "
        + ", ".join(f"{k[len('process '):]} {v:,.0f}" for k, v in m.items() if k.startswith("process ") and v),
        f"PostgreSQL server: shared_buffers {result['shared_buffers']} (shared, not counted above); "
        f"largest backend private memory {_f(m['postgres backend private (RssAnon)'], '{:,.0f}')} MB",
    ]
    parsed = result.get("dbt_parsed_by_repeat")
    if parsed:
        lines.append("dbt project parsed during the run (beside ingestion), by repeat: "
                     + ", ".join("yes" if p else "no" for p in parsed))
    if result.get("dbt_top_nodes"):
        lines += ["", "slowest dbt nodes (run_results.json, median repeat):"]
        lines += [f"  {sec:7.2f} s  {node}" for node, sec in result["dbt_top_nodes"]]
    for inv in result.get("dbt_invocations", []):
        step = result.get("step_seconds", {}).get(inv["step"])
        lines.append(
            f"  dbt step {inv['step']}: step {_f(step, '{:.1f}')} s = dbt start {_f(inv.get('startup_s'), '{:.1f}')} s "
            f"(to dbt's first log line) + dbt command {_f(inv['command_s'], '{:.1f}')} s "
            f"(project load {_f(inv['load_s'], '{:.1f}')} s, {'partial' if inv['partial_parse'] else 'FULL'} parse; "
            f"nodes {_f(inv.get('execute_s'), '{:.1f}')} s) + Dagster after dbt {_f(inv.get('after_s'), '{:.1f}')} s "
            f"(storing the step's events)")
    inc = result.get("incremental")
    if inc:
        lines += ["", *render_incremental(inc)]
    return "\n".join(lines)


def render_incremental(inc: dict) -> list[str]:
    """The incremental figures: the daily run against the full run, and the run with nothing new
    (the part of a daily run that does not depend on what was delivered). Pure."""
    def stages(d: dict) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in d.items() if v)

    lines = [f"incremental: full run on {inc['history_days']} days {inc['full_run_s']:.1f} s; "
             f"one more day {inc['one_more_day_run_s']:.1f} s = {inc['ratio']:.0%} of it (target < 10%)",
             f"  one more day, by stage (s): {stages(inc['one_more_day_stages_s'])}"]
    if "nothing_new_run_s" in inc:
        lines += [f"  nothing new delivered: {inc['nothing_new_run_s']:.1f} s = {inc['nothing_new_ratio']:.0%} "
                  f"of the full run (what every daily run pays, whatever it brings)",
                  f"  nothing new, by stage (s): {stages(inc['nothing_new_stages_s'])}"]
    return lines


# -- entry point -------------------------------------------------------------------------------

def default_export_dir(sessions: int, seed: int) -> Path:
    return Path(tempfile.gettempdir()) / f"va-bench-export-{sessions}-s{seed}"


def ensure_export(export: Path, sessions: int, seed: int, say) -> float | None:
    """Reuse ``export`` when it holds an export of that size and seed, else generate it; the
    generation time, or None when reused."""
    from voice_analytics_dagster.tools.generator import generate_export

    marker = export / ".bench"
    wanted = f"{sessions} {seed}"
    if marker.exists() and marker.read_text() == wanted and all((export / f).exists() for f in FILES):
        say(f"reusing the export in {export}")
        return None
    say(f"generating {sessions:,} sessions in {export}")
    t0 = time.perf_counter()
    generate_export(export, sessions, seed=seed, progress=False)
    marker.write_text(wanted)
    return time.perf_counter() - t0


def run_bench(sessions: int, repeat: int = 3, seed: int = 0, export: Path | None = None,
              json_path: Path | None = None, incremental: bool = False, incremental_days: int = 120,
              clean: bool = False, say=print) -> dict:
    from voice_analytics_dagster.lib.settings import get_settings

    settings = get_settings()
    export = export or default_export_dir(sessions, seed)
    created = not export.exists()
    generated = ensure_export(export, sessions, seed, say)
    rows_by_file, size = export_size(export)
    workdir = Path(tempfile.mkdtemp(prefix="va-bench-"))
    bench = Bench(settings, export, workdir)
    repeats: list[Repeat] = []
    result: dict = {}
    try:
        load = os.getloadavg()
        for i in range(repeat):
            say(f"repeat {i + 1}/{repeat}: psql \\copy, run, pandas ...")
            repeats.append(bench.one_repeat(i))
            last = repeats[-1]
            say(f"  run {last.run_seconds:.1f} s (ingestion {last.stages.get('ingestion') or 0:.1f} s"
                + (", dbt parsed beside it" if last.dbt_parsed else "") + f"), copy {last.copy_seconds:.1f} s, "
                f"pandas {last.pandas_seconds:.1f} s")
        mid = sorted(repeats, key=lambda r: r.run_seconds)[len(repeats) // 2] if repeats else None
        result = {
            "sessions": sessions, "seed": seed, "repeat": repeat, "export": str(export),
            "generate_seconds": generated, "rows_by_file": rows_by_file,
            "rows": sum(rows_by_file.values()), "bytes": size,
            "copy_tool": bench.copy_tool, "shared_buffers": bench.shared_buffers(),
            "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load],
                        "platform": platform.platform(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            "summary": summarise(repeats, sum(rows_by_file.values()), size),
            "dbt_top_nodes": mid.dbt_nodes if mid else [],
            "dbt_invocations": mid.dbt_invocations if mid else [],
            "step_seconds": mid.step_seconds if mid else {},
            "repeats": [asdict(r) for r in repeats],
            "dbt_parsed_by_repeat": [r.dbt_parsed for r in repeats],
            "ingestion_over_psql_copy_by_repeat": ingestion_over_copy_by_repeat(repeats),
        }
        if incremental:
            say(f"incremental: {incremental_days} days of history, then one more day ...")
            result["incremental"] = bench.incremental(sessions, seed, incremental_days)
    finally:
        bench.drop_databases()
        shutil.rmtree(workdir, ignore_errors=True)
        if created and clean:
            shutil.rmtree(export, ignore_errors=True)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2, default=str))
    return result
