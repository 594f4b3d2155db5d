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

from voice_analytics_dagster.tools.bench.report import render, render_incremental
from voice_analytics_dagster.tools.bench.runner import BenchError, run_bench
from voice_analytics_dagster.tools.bench.stages import STAGES

__all__ = ["STAGES", "BenchError", "render", "render_incremental", "run_bench"]
