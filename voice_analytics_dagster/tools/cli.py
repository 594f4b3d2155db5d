"""`voice-analytics`: the command line. Thin: it parses, then calls the package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _print(msg: str = "") -> None:
    print(msg, flush=True)


# -- commands ----------------------------------------------------------------------------------

def cmd_generate(args: argparse.Namespace) -> int:
    from voice_analytics_dagster.tools.generator import NO_EFFECT, PLANTED, generate_export

    summary = generate_export(
        Path(args.out),
        args.sessions,
        seed=args.seed,
        effects=NO_EFFECT if args.no_effect else PLANTED,
        asr_model_version=not args.no_asr_model_version,
        days=args.days,
        by_day=args.by_day,
        progress=not args.quiet,
    )
    _print(f"wrote a synthetic export of {args.sessions:,} sessions to {args.out} (seed {args.seed})")
    for name, rows in summary.rows.items():
        _print(f"  {name:<22} {rows:>12,} rows")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from voice_analytics_dagster.defs.transform.parse import prepare_dbt

    path = prepare_dbt(force=True)
    _print(f"dbt manifest prepared: {path}")
    return 0


def source_format(source: Path, given: str | None) -> str | None:
    """The format a run reads ``source`` in: ``given``, or detected, its evidence printed.
    A folder whose format cannot be told raises DetectionError (exit 2, nothing run). A source
    that is not a folder is left to the run, which reports it (and logs the blocked run)."""
    from voice_analytics_dagster.defs.ingestion.sources import resolve_format

    if given is not None or not source.is_dir():
        return given
    found = resolve_format(source)
    _print(f"source {source}: {found.describe()}")
    return found.format


def cmd_run(args: argparse.Namespace) -> int:
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    wait = 0.0 if args.no_wait else args.wait
    fmt = source_format(Path(args.source), args.format)
    outcome = run_pipeline(Path(args.source), verbose=args.verbose, full_refresh=args.full_refresh,
                           wait_seconds=wait, from_date=args.from_date, to_date=args.to_date,
                           lookback_days=args.lookback_days, accept_shrink=args.accept_shrink,
                           source_format=fmt, refit_model=args.refit_model)
    _print(outcome.report())
    return 0 if outcome.published else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    from voice_analytics_dagster.tools.doctor import run_doctor

    report = run_doctor(Path(args.source) if args.source else None, sample_size=args.sample,
                        source_format=args.format)
    _print(report.render())
    return 0 if report.ok else 1


def me() -> str:
    """How to run this command again, as the user can copy it into their shell: the script that
    runs now, relative to the current folder when it is under it (.venv/bin/voice-analytics), else
    its absolute path. Never the bare name: `make` puts .venv/bin on its own PATH, not the user's."""
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if script is None or script.name != "voice-analytics" or not script.exists():
        return f"{sys.executable} -m voice_analytics_dagster.tools.cli"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def use_demo_home() -> Path:
    """Point this process at the demo's own home: its own embedded server, Dagster instance and
    secrets, so that synthetic data never enters a warehouse that holds real data."""
    import os

    from voice_analytics_dagster.lib.settings import (
        get_settings,
        load_superset_settings,
        reset_settings_cache,
    )

    main = get_settings()
    home = main.demo_home
    # one Superset installation serves both homes (its virtualenv is large and slow to install)
    os.environ.setdefault("VOICE_ANALYTICS_SUPERSET_VENV", str(load_superset_settings(main).venv))
    os.environ["VOICE_ANALYTICS_HOME"] = str(home)
    for name in ("VOICE_ANALYTICS_DATABASE_URL", "VOICE_ANALYTICS_DATABASE"):
        os.environ.pop(name, None)
    reset_settings_cache()
    return home


def cmd_demo(args: argparse.Namespace) -> int:
    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.tools.generator import generate_export
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    settings = get_settings()  # the demo's home (main() switched to it)
    out = Path(args.out) if args.out else settings.home / "demo-export"
    if not (out / "voice_sessions.csv").exists() or args.regenerate:
        _print(f"1/2 generating a synthetic export of {args.sessions:,} sessions in {out}")
        generate_export(out, args.sessions, seed=args.seed, progress=True)
    else:
        _print(f"1/2 reusing the synthetic export in {out} (--regenerate to make a new one)")
    _print(f"2/2 running the pipeline on the demo's own embedded PostgreSQL in {settings.home} "
           "(about a minute; real data never goes there)")
    outcome = run_pipeline(out, verbose=args.verbose)
    _print(outcome.report())
    if outcome.published:
        cmd = me()
        _print("\nNext (the demo has a home of its own: add --demo to reach it):")
        _print(f"  {cmd} --demo ui        # Dagster UI on http://127.0.0.1:3000 (lineage, checks, runs)")
        _print(f'  {cmd} --demo psql -c "select * from analytics.publication_log"   # the bundled psql')
        _print(f"  {cmd} --demo superset up  # the five dashboards in a browser, on http://127.0.0.1:8088")
        _print(f"  {cmd} run --source DIR  # your own export, in the default home")
    return 0 if outcome.published else 1


def cmd_psql(args: argparse.Namespace) -> int:
    """The psql that ships with the embedded server (else psql from PATH), on the warehouse, or as
    the read-only BI role with --bi; arguments after the options go to psql."""
    import os

    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.lib.warehouse import ConnInfo, Warehouse, pg_bin

    settings = get_settings()
    wh = Warehouse(settings)
    wh.ensure_databases()
    info = wh.conninfo()
    if args.bi:
        info = ConnInfo(info.host, info.port, settings.bi_role, settings.bi_password, info.dbname)
    psql = pg_bin("psql")
    os.execvpe(psql, [psql, "-X", *args.psql_args], {**os.environ, **info.libpq_env()})
    return 0  # pragma: no cover - exec does not return


def cmd_db_url(args: argparse.Namespace) -> int:
    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.lib.warehouse import Warehouse

    settings = get_settings()
    wh = Warehouse(settings)
    wh.ensure_databases()
    if args.tcp:
        _print(wh.bi_tcp_conninfo().url())
    elif args.bi:
        info = wh.conninfo()
        from voice_analytics_dagster.lib.warehouse import ConnInfo

        _print(ConnInfo(info.host, info.port, settings.bi_role, settings.bi_password, info.dbname).url())
    else:
        _print(wh.url())
    return 0


def cmd_db_stop(args: argparse.Namespace) -> int:
    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.lib.warehouse import stop_embedded

    settings = get_settings()
    if not settings.is_embedded:
        _print("an external server is configured (VOICE_ANALYTICS_DATABASE_URL); nothing to stop")
        return 0
    _print("stopped the embedded PostgreSQL" if stop_embedded(settings) else "the embedded PostgreSQL was not running")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from voice_analytics_dagster.tools.ui import run_ui

    return run_ui(host=args.host, port=args.port)


def cmd_bench(args: argparse.Namespace) -> int:
    from voice_analytics_dagster.tools.bench import BenchError, render, run_bench

    try:
        result = run_bench(args.sessions, repeat=args.repeat, seed=args.seed,
                           export=Path(args.export) if args.export else None,
                           json_path=Path(args.json) if args.json else None,
                           incremental=args.incremental, incremental_days=args.days, clean=args.clean,
                           references=not args.no_references,
                           say=lambda m: print(f"bench: {m}", file=sys.stderr, flush=True))
    except BenchError as exc:
        print(f"voice-analytics bench: {exc}", file=sys.stderr)
        return 1
    _print(render(result))
    if args.json:
        _print(f"\nJSON: {args.json}")
    return 0


def cmd_contract(args: argparse.Namespace) -> int:
    import yaml

    from voice_analytics_dagster.lib.contract import SOURCES_FILE, dbt_sources
    from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR

    text = SOURCES_HEADER + yaml.safe_dump(dbt_sources(), sort_keys=False, width=110)
    if args.write_dbt_sources:
        path = DBT_PROJECT_DIR / SOURCES_FILE
        path.write_text(text)
        _print(f"wrote {path}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_dbt_evaluate(args: argparse.Namespace) -> int:
    from voice_analytics_dagster.tools.dbt_evaluate import EvaluateError, render, run_evaluate

    try:
        report = run_evaluate(Path(args.evaluator), Path(args.dbt_utils), keep=args.keep,
                              say=lambda m: print(f"dbt-evaluate: {m}", file=sys.stderr, flush=True))
    except EvaluateError as exc:
        print(f"voice-analytics dbt-evaluate: {exc}", file=sys.stderr)
        return 2
    _print(render(report))
    return 0


SOURCES_HEADER = (
    "# Generated from voice_analytics_dagster/lib/contract.py (voice-analytics contract --write-dbt-sources)."
    " Do not edit by hand.\n"
)


# -- parser ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from voice_analytics_dagster.defs.ingestion.adapters.detect import FORMATS
    from voice_analytics_dagster.tools.cli_bi import add_bi_parsers

    p = argparse.ArgumentParser(
        prog="voice-analytics",
        description="Certified analytics for Voice AI interaction data (Dagster + dbt + PostgreSQL).",
    )
    p.add_argument("--demo", action="store_true",
                   help="act on the demo's own home ($VOICE_ANALYTICS_HOME/demo), where `demo` runs")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write a synthetic export in the sample's five-file schema")
    g.add_argument("--sessions", type=int, required=True, help="number of sessions")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--days", type=int, default=120, help="days covered (default 120)")
    g.add_argument("--by-day", action="store_true", help="write dated delivery folders YYYY-MM-DD/")
    g.add_argument("--no-effect", action="store_true", help="plant no abandonment driver (null model)")
    g.add_argument("--no-asr-model-version", action="store_true", help="omit the optional asr_model_version column")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="materialize every asset from an export and publish if every blocking check passed")
    r.add_argument("--source", required=True, help="export folder (five CSV files, or Lex V2, Dialogflow CX or Rasa "
                                                   "logs) or landing folder of dated deliveries")
    r.add_argument("--format", choices=FORMATS, help="the source's format (default: detected from its files, "
                                                     "the evidence printed; docs/SOURCES.md)")
    r.add_argument("--full-refresh", action="store_true",
                   help="rebuild incremental models from scratch and train the abandonment model again")
    r.add_argument("--refit-model", action="store_true",
                   help="train the abandonment model now, whether or not it is due "
                        "(VOICE_ANALYTICS_MODEL_REFIT_DAYS, VOICE_ANALYTICS_MODEL_REFIT_GROWTH)")
    r.add_argument("--from-date", metavar="YYYY-MM-DD", help="backfill: also rebuild the session days from this day")
    r.add_argument("--to-date", metavar="YYYY-MM-DD", help="backfill: ... to this day (inclusive)")
    r.add_argument("--lookback-days", type=int, metavar="N",
                   help="days before the latest affected day rebuilt too (default VOICE_ANALYTICS_LOOKBACK_DAYS, 3)")
    r.add_argument("--accept-shrink", action="store_true",
                   help="publish even if a certified table would be emptied or the fact would lose more sessions "
                        "than VOICE_ANALYTICS_MAX_SESSION_DROP allows (logged in analytics.publication_log)")
    r.add_argument("-v", "--verbose", action="store_true", help="show Dagster's event log")
    w = r.add_mutually_exclusive_group()
    w.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                   help="how long to wait for another run that holds the warehouse (default "
                        "VOICE_ANALYTICS_RUN_LOCK_WAIT, 3600)")
    w.add_argument("--no-wait", action="store_true", help="refuse at once (exit 3) when another run holds the warehouse")
    r.set_defaults(func=cmd_run)

    doc = sub.add_parser("doctor", help="check the set-up (server, databases, roles, dbt, Dagster) and an export")
    doc.add_argument("--source", help="an export folder or landing folder to check against the contract "
                                      "(platform logs are converted into a temporary folder first)")
    doc.add_argument("--format", choices=FORMATS, help="the source's format (default: detected)")
    doc.add_argument("--sample", type=int, default=5, help="bad rows shown per file (default 5)")
    doc.set_defaults(func=cmd_doctor)

    d = sub.add_parser("demo", help="generate a synthetic export and run the whole pipeline on the embedded default")
    d.add_argument("--sessions", type=int, default=20_000)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", help="export folder (default: $VOICE_ANALYTICS_HOME/demo-export)")
    d.add_argument("--regenerate", action="store_true")
    d.add_argument("-v", "--verbose", action="store_true")
    d.set_defaults(func=cmd_demo)

    u = sub.add_parser("ui", help="start the Dagster webserver and daemon on 127.0.0.1")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=3000)
    u.set_defaults(func=cmd_ui)

    db = sub.add_parser("db-url", help="print a libpq connection URL of the warehouse")
    db.add_argument("--bi", action="store_true", help="the read-only BI role's URL instead of the pipeline's")
    db.add_argument("--tcp", action="store_true",
                    help="the BI role's URL over TCP (the embedded server's 127.0.0.1 listener, "
                         "VOICE_ANALYTICS_EMBEDDED_TCP_PORT); implies --bi")
    db.set_defaults(func=cmd_db_url)

    ps = sub.add_parser("psql", help="open psql (the one bundled with the embedded server) on the warehouse")
    ps.add_argument("--bi", action="store_true", help="as the read-only BI role")
    ps.epilog = "Every argument after --bi goes to psql, e.g. voice-analytics psql -At -c 'select 1'."
    ps.set_defaults(func=cmd_psql)

    stop = sub.add_parser("db-stop", help="stop the embedded PostgreSQL server")
    stop.set_defaults(func=cmd_db_stop)

    prep = sub.add_parser("prepare", help="parse the dbt project and write its manifest (build step)")
    prep.set_defaults(func=cmd_prepare)

    b = sub.add_parser("bench", help="time ingestion, dbt, checks, model, publish and the whole run against "
                                     "psql \\copy and pandas to_sql on one server (voice_analytics_dagster/tools/bench/)")
    b.add_argument("--sessions", type=int, default=1_000_000, help="sessions in the export (default 1,000,000)")
    b.add_argument("--repeat", type=int, default=3, help="repeats; the table shows medians (default 3)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--export", help="export folder to reuse or create (default $TMPDIR/va-bench-export-N-sS)")
    b.add_argument("--json", help="also write every figure as JSON to this file")
    b.add_argument("--incremental", action="store_true",
                   help="also time a daily run adding one day to --days of history in a landing folder")
    b.add_argument("--days", type=int, default=120, help="days of history for --incremental (default 120)")
    b.add_argument("--clean", action="store_true", help="delete the export if this bench generated it")
    b.add_argument("--no-references", action="store_true",
                   help="time the run only, without the psql \\copy and pandas references (pandas to_sql "
                        "takes hours at 10M sessions)")
    b.set_defaults(func=cmd_bench)

    c = sub.add_parser("contract", help="print (or write) the dbt sources derived from the export contract")
    c.add_argument("--write-dbt-sources", action="store_true")
    c.set_defaults(func=cmd_contract)

    ev = sub.add_parser("dbt-evaluate", help="run dbt Labs' dbt-project-evaluator on a temporary copy of dbt/ "
                                             "and print the rules that warn (docs/DBT_CONVENTIONS.md)")
    ev.add_argument("--evaluator", required=True, help="folder of the dbt-project-evaluator package")
    ev.add_argument("--dbt-utils", required=True, help="folder of the dbt-utils package")
    ev.add_argument("--keep", action="store_true", help="keep the temporary project (its target/ and logs/)")
    ev.set_defaults(func=cmd_dbt_evaluate)

    add_bi_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `psql [--bi] ARGS...`: everything after psql's own option goes to psql, verbatim and in order
    passed: list[str] = []
    if "psql" in argv and all(a == "--demo" for a in argv[:argv.index("psql")]):
        i = argv.index("psql") + 1
        while i < len(argv) and argv[i] in ("--bi", "-h", "--help"):
            i += 1
        argv, passed = argv[:i], argv[i:]
    args = build_parser().parse_args(argv)
    if args.command == "psql":
        args.psql_args = passed
    from voice_analytics_dagster.defs.ingestion.reader import IngestionError
    from voice_analytics_dagster.lib.runlock import RunLockBusy
    from voice_analytics_dagster.lib.settings import SettingsError

    try:
        if args.demo or args.command == "demo":
            use_demo_home()
        return args.func(args)
    except (SettingsError, IngestionError) as exc:
        print(f"voice-analytics: {exc}", file=sys.stderr)
        return 2
    except RunLockBusy as exc:
        print(f"voice-analytics: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a person reads one line; the trace goes to a file
        print(f"voice-analytics: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}\n"
              f"  the stack trace is in {_keep_trace()}", file=sys.stderr)
        return 1


def _keep_trace() -> Path:
    import tempfile
    import traceback

    try:
        from voice_analytics_dagster.lib.settings import get_settings

        folder = get_settings().home / "logs"
        folder.mkdir(parents=True, exist_ok=True)
    except Exception:  # noqa: BLE001 - settings may be what failed
        folder = Path(tempfile.gettempdir())
    path = folder / "last-error.log"
    path.write_text(traceback.format_exc())
    return path


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
