"""`voice-analytics metabase ...` and `voice-analytics superset ...`: the BI tools' commands, apart
from the pipeline's (tools/cli.py builds the parser and calls these)."""

from __future__ import annotations

import argparse
import sys


def _print(msg: str = "") -> None:
    print(msg, flush=True)


def cmd_metabase(args: argparse.Namespace) -> int:
    """`metabase provision`: create or update Metabase from metabase/; `metabase exposures`:
    write (or check) the dbt exposures generated from the same specs."""
    import json
    import os

    from voice_analytics_dagster.defs.bi import spec
    from voice_analytics_dagster.lib.settings import DBT_TARGET_DIR, SettingsError
    from voice_analytics_dagster.tools import metabase as client

    collection = spec.load_collection()
    # the manifest file itself: importing dagster-dbt's DbtProject costs seconds for nothing here
    manifest_path = DBT_TARGET_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    if args.metabase_command == "exposures":
        if manifest is None:
            raise SettingsError("no dbt manifest: run `voice-analytics prepare` first")
        text = spec.exposures_text(collection, manifest)
        current = spec.EXPOSURES_FILE.read_text() if spec.EXPOSURES_FILE.exists() else ""
        if args.write:
            spec.EXPOSURES_FILE.write_text(text)
            _print(f"wrote {spec.EXPOSURES_FILE}")
            return 0
        _print("dbt exposures agree with metabase/" if current == text else
               f"{spec.EXPOSURES_FILE} is out of date: run `voice-analytics metabase exposures --write`")
        return 0 if current == text else 1

    from voice_analytics_dagster.lib.settings import get_settings

    settings = get_settings()
    password = os.environ.get("VOICE_ANALYTICS_METABASE_ADMIN_PASSWORD")
    if not password:
        raise SettingsError("set VOICE_ANALYTICS_METABASE_ADMIN_PASSWORD (the Metabase admin's password)")
    host, port, dbname = args.warehouse_host, args.warehouse_port, args.warehouse_db
    if settings.database_url:
        from urllib.parse import urlsplit

        url = urlsplit(settings.database_url)
        host, port, dbname = host or url.hostname, port or url.port or 5432, dbname or url.path.lstrip("/")
    if not host:
        raise SettingsError("Metabase reaches the warehouse over TCP: set VOICE_ANALYTICS_DATABASE_URL "
                            "or --warehouse-host (the embedded server listens on a unix socket only)")
    warehouse = client.WarehouseConnection(host, int(port or 5432), dbname or settings.database_name,
                                           settings.bi_role, settings.bi_password)
    if args.wait_for_publication:
        from voice_analytics_dagster.lib.warehouse import ConnInfo

        bi_url = ConnInfo(args.bi_host or warehouse.host, warehouse.port, warehouse.user, warehouse.password,
                          warehouse.dbname).url()
        client.wait_for_publication(bi_url, args.wait_for_publication, _print)
    opts = client.ProvisionOptions(
        url=args.url, admin_email=args.admin_email, admin_password=password, warehouse=warehouse,
        database_name=args.database_name, ready_timeout=args.ready_timeout, sync_timeout=args.sync_timeout,
        update_password=args.update_password,
        descriptions=client.manifest_descriptions(manifest) if manifest and not args.no_descriptions else None,
    )
    try:
        report = client.provision(opts, collection, log=_print)
    except client.MetabaseError as exc:
        print(f"voice-analytics: Metabase: {exc}", file=sys.stderr)
        return 1
    _print(report.render())
    return 0


def cmd_superset(args: argparse.Namespace) -> int:
    """`superset install | up | down | status` (voice_analytics_dagster/tools/superset/)."""
    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.tools.superset import commands

    settings = get_settings()
    if args.superset_command == "install":
        commands.do_install(settings, _print)
        return 0
    if args.superset_command == "down":
        _print(commands.down(settings))
        return 0
    if args.superset_command == "status":
        running, text = commands.status(settings)
        _print(text)
        return 0 if running else 1
    from voice_analytics_dagster.lib.warehouse_tcp import TcpListenerError
    from voice_analytics_dagster.tools.superset.api import SupersetError
    from voice_analytics_dagster.tools.superset.install import InstallError
    from voice_analytics_dagster.tools.superset.server import SupersetServerError

    try:
        result = commands.up(settings, _print)
    except (SupersetError, InstallError, SupersetServerError, TcpListenerError) as exc:
        print(f"voice-analytics superset up: {exc}", file=sys.stderr)
        return 1
    from voice_analytics_dagster.lib.settings import load_superset_settings
    from voice_analytics_dagster.tools.cli import me

    demo = " --demo" if getattr(args, "demo", False) else ""
    _print(result.render(load_superset_settings(settings), settings, stop=f"{me()}{demo} superset down"))
    return 0


def add_bi_parsers(sub) -> None:
    """The metabase and superset subcommands, on the CLI's subparsers."""
    mb = sub.add_parser("metabase", help="provision Metabase from metabase/ (REST API), or write its dbt exposures")
    mb_sub = mb.add_subparsers(dest="metabase_command", required=True)
    prov = mb_sub.add_parser("provision", help="create or update the connection, collection, cards and dashboards")
    prov.add_argument("--url", required=True, help="Metabase base URL, e.g. http://metabase:3000")
    prov.add_argument("--admin-email", default="admin@voice-analytics.local",
                      help="Metabase admin (created on first run); password from VOICE_ANALYTICS_METABASE_ADMIN_PASSWORD")
    prov.add_argument("--database-name", default="Voice analytics (certified)", help="name of the connection in Metabase")
    prov.add_argument("--warehouse-host", help="warehouse host as Metabase sees it (default: VOICE_ANALYTICS_DATABASE_URL's)")
    prov.add_argument("--warehouse-port", type=int)
    prov.add_argument("--warehouse-db", help="warehouse database (default: VOICE_ANALYTICS_DATABASE_URL's)")
    prov.add_argument("--bi-host", help="warehouse host as this command sees it, for --wait-for-publication")
    prov.add_argument("--wait-for-publication", type=float, default=0, metavar="SECONDS",
                      help="first wait until the BI role can read a publication (the role exists only after one)")
    prov.add_argument("--ready-timeout", type=float, default=300, metavar="SECONDS", help="wait for /api/health")
    prov.add_argument("--sync-timeout", type=float, default=120, metavar="SECONDS",
                      help="wait for Metabase to list the certified tables after the schema sync")
    prov.add_argument("--update-password", action="store_true",
                      help="rewrite the connection even if unchanged (Metabase never shows the stored password)")
    prov.add_argument("--no-descriptions", action="store_true", help="do not push dbt descriptions to tables and fields")
    prov.set_defaults(func=cmd_metabase)
    exp = mb_sub.add_parser("exposures", help="check (or --write) dbt/models/exposures/ against metabase/")
    exp.add_argument("--write", action="store_true")
    exp.set_defaults(func=cmd_metabase)

    ss = sub.add_parser("superset", help="serve the dashboards of metabase/ with Apache Superset on 127.0.0.1")
    ss_sub = ss.add_subparsers(dest="superset_command", required=True)
    ss_sub.add_parser("install", help="install the pinned Superset into its virtualenv "
                                      "(VOICE_ANALYTICS_SUPERSET_VENV) if missing").set_defaults(func=cmd_superset)
    ss_sub.add_parser("up", help="install if missing, initialise, start in the background, open the warehouse "
                                 "to the BI role over TCP and provision the dashboards").set_defaults(func=cmd_superset)
    ss_sub.add_parser("down", help="stop the Superset started by `up`").set_defaults(func=cmd_superset)
    ss_sub.add_parser("status", help="whether Superset runs, and where (exit 1 when it does not)"
                      ).set_defaults(func=cmd_superset)
