"""One bench: an export generated or reused, then per repeat a real run, psql \\copy and pandas, each
in a subprocess of its own, on a fresh database of the configured server."""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voice_analytics_dagster.defs.transform.parse import latest_parse_state
from voice_analytics_dagster.tools.bench.commands import COPY_FALLBACK, PANDAS_LOADER, copy_script
from voice_analytics_dagster.tools.bench.report import export_size, ingestion_over_copy_by_repeat, summarise
from voice_analytics_dagster.tools.bench.sampling import Measured, measure
from voice_analytics_dagster.tools.bench.stages import (
    FILES,
    RUN_DATABASE,
    dbt_invocations,
    dbt_node_times,
    peak_in,
    split_dbt_step,
    stage_of_step,
    stage_seconds,
    step_intervals,
)


@dataclass
class Repeat:
    run_seconds: float
    stages: dict[str, float]
    stage_peaks: dict[str, int | None]
    run_peaks: dict[str, int]
    run_tree_peak: int
    copy_seconds: float | None  # None: the references were not measured (--no-references)
    copy_peak: int | None
    pandas_seconds: float | None
    pandas_peak: int | None
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
    from voice_analytics_dagster.lib.eventlog import step_events
    from voice_analytics_dagster.lib.instance import open_instance

    return step_events(open_instance(settings, wh), run_id)


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

    def one_repeat(self, i: int, references: bool = True) -> Repeat:
        base = f"voice_analytics_bench_{os.getpid()}_{i}"
        info, env = self.fresh_database(base)
        # \copy right before the run, pandas after it: ingestion is compared with a \copy taken
        # seconds before, not minutes (this machine's speed drifts by up to a third within an
        # hour: \copy took 7.3 s and 10.4 s in two repeats of one bench, 1 December)
        copy = self.copy_reference(info, f"r{i}-copy") if references else None
        # the run gets a database of its own: the references' tables must not sit in its way
        _, run_env = self.fresh_database(RUN_DATABASE)
        stamp = latest_parse_state()
        run, run_id = self.run(self.export, run_env, f"r{i}-run")
        pandas = self.pandas_reference(info, f"r{i}-pandas") if references else None
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
            copy_seconds=copy and copy.seconds, copy_peak=copy and copy.tree_peak,
            pandas_seconds=pandas and pandas.seconds, pandas_peak=pandas and pandas.tree_peak,
            pg_backend_anon_peak=max(m.pg_anon_peak for m in (run, copy, pandas) if m is not None),
            dbt_nodes=dbt_node_times(run_id)[:10],
            dbt_invocations=[split_dbt_step(inv, intervals.get(inv["step"])) for inv in dbt_invocations(run_id)],
            step_seconds={k: b - a for k, (a, b) in intervals.items()},
            dbt_parsed=latest_parse_state() != stamp,
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
        # the same day delivered alone to a new warehouse: what the day itself costs, the yardstick
        # of a daily run (the daily-partitions goal: onto the history at most 1.5 times this)
        alone_landing = self.workdir / "landing-alone"
        day_alone(landing, day_dirs[-1].name, alone_landing / day_dirs[-1].name)
        _, alone_env = self.fresh_database(f"voice_analytics_bench_{os.getpid()}_alone")
        alone, alone_id = self.run(alone_landing, alone_env, "incr-day-alone")
        alone_stages = self.stages_of(alone_id)
        shutil.rmtree(by_day, ignore_errors=True)
        shutil.rmtree(landing, ignore_errors=True)
        shutil.rmtree(alone_landing, ignore_errors=True)
        return {"history_days": days, "full_run_s": full.seconds, "one_more_day_run_s": last.seconds,
                "ratio": last.seconds / full.seconds, "one_more_day_stages_s": stages,
                "nothing_new_run_s": idle.seconds, "nothing_new_ratio": idle.seconds / full.seconds,
                "nothing_new_stages_s": idle_stages,
                "day_alone_run_s": alone.seconds, "day_alone_stages_s": alone_stages,
                "day_over_alone": last.seconds / alone.seconds,
                "peak_mb": {tag: m.tree_peak / 1e6 for tag, m in
                            (("full", full), ("one_more_day", last), ("nothing_new", idle), ("day_alone", alone))
                            if m.tree_peak}}




def day_alone(landing: Path, day: str, out: Path) -> None:
    """The delivery ``day`` of ``landing`` as a delivery of its own in ``out``: its files, and as
    users.csv the users its sessions and applications refer to, from every delivery (a day's
    users file holds only the users first seen that day; the others came with earlier days)."""
    out.mkdir(parents=True)
    source = landing / day
    for f in source.iterdir():
        if f.name != "users.csv":
            shutil.copy2(f, out / f.name)
    wanted: set[str] = set()
    for name in ("voice_sessions.csv", "applications.csv"):
        with open(source / name, newline="", encoding="utf-8") as fh:
            wanted.update(row["user_id"] for row in csv.DictReader(fh))
    header: list[str] = []
    latest: dict[str, list[str]] = {}  # a user delivered again later: the later row
    for users in sorted(landing.glob("*/users.csv")):
        with open(users, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            key = header.index("user_id")
            latest.update((row[key], row) for row in reader if row[key] in wanted)
    with open(out / "users.csv", "w", newline="", encoding="utf-8") as dst:
        writer = csv.writer(dst, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(latest.values())


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
              clean: bool = False, references: bool = True, say=print) -> dict:
    """``references=False`` times the run alone: pandas' to_sql takes hours at 10M sessions."""
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
            say(f"repeat {i + 1}/{repeat}: " + ("psql \\copy, run, pandas ..." if references else "run ..."))
            repeats.append(bench.one_repeat(i, references))
            last = repeats[-1]
            say(f"  run {last.run_seconds:.1f} s (ingestion {last.stages.get('ingestion') or 0:.1f} s"
                + (", dbt parsed beside it" if last.dbt_parsed else "") + ")"
                + (f", copy {last.copy_seconds:.1f} s, pandas {last.pandas_seconds:.1f} s" if references else ""))
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
