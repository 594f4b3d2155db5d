"""Superset serving the dashboards of metabase/, as a user runs it: the real sample published by
`voice-analytics run`, then `voice-analytics superset up` (the embedded server's TCP listener for
the BI role, Superset's metadata, admin, server and provisioning), then headless Chromium
(Debian's, driven by Playwright) logs in and opens each of the five dashboards; `superset down`
at the end, even on failure.

The sample is run with VOICE_ANALYTICS_MIN_CELL_SIZE=20 so that withheld cells exist where the
charts can show them: at the default 10 no week and no segment of the sample is suppressed, at 20
two weeks (the first and the partial last, per complementary suppression) and a third of the
segments are. Everything runs on an embedded server and Superset home of this module's own (a
TCP listener restarts the server, which the session's other tests share).

Superset itself is installed by `.ci/run` (`voice-analytics superset install`), not here: without
its virtualenv this test fails, saying so. Timings go to test-artifacts/superset-timings.txt.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from voice_analytics_dagster.defs.bi import spec
from voice_analytics_dagster.tools.superset import install, payloads
from voice_analytics_dagster.tools.superset.api import SupersetClient

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CLI = str(Path(sys.executable).parent / "voice-analytics")
# where `voice-analytics superset install` puts it on a checkout's default home (.ci/run)
VENV = Path(os.environ.get("VOICE_ANALYTICS_SUPERSET_VENV")
            or PROJECT_ROOT / ".voice_analytics" / "superset" / "venv")
MIN_CELL_SIZE = "20"
COLLECTION = spec.load_collection()
RENDER_TIMEOUT_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    env: dict[str, str]
    url: str
    admin_password: str
    bi_url: str
    up_output: str
    timings: dict[str, float] = field(default_factory=dict)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([CLI, *args], env=self.env, capture_output=True, text=True, cwd=PROJECT_ROOT)
        if check and done.returncode != 0:
            pytest.fail(f"voice-analytics {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def client(self) -> SupersetClient:
        client = SupersetClient(self.url)
        client.login("admin", self.admin_password)
        return client


@pytest.fixture(scope="module")
def stack(sample_dir, dbt_manifest):
    if not install.is_installed(VENV):
        pytest.fail(f"Apache Superset is not installed in {VENV}: run `voice-analytics superset install` "
                    "(.ci/run does, before the tests), or point VOICE_ANALYTICS_SUPERSET_VENV at an installed one")
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    ARTIFACTS.mkdir(exist_ok=True)
    # not under pytest's own temporary folder: another pytest session (as root) makes that folder
    # 0700 when it starts, and the server, which runs as another system user, could no longer read
    # its own pg_hba.conf through it
    home = Path(tempfile.mkdtemp(prefix="va-superset-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICE_ANALYTICS_")}
    env.update({"VOICE_ANALYTICS_HOME": str(home), "VOICE_ANALYTICS_MIN_CELL_SIZE": MIN_CELL_SIZE,
                "VOICE_ANALYTICS_SUPERSET_VENV": str(VENV), "VOICE_ANALYTICS_SUPERSET_PORT": str(_free_port()),
                "VOICE_ANALYTICS_EMBEDDED_TCP_PORT": str(_free_port()),
                "VOICE_ANALYTICS_SUPERSET_ADMIN_PASSWORD": "admin-" + os.urandom(6).hex()})
    handle = Stack(env, f"http://127.0.0.1:{env['VOICE_ANALYTICS_SUPERSET_PORT']}",
                   env["VOICE_ANALYTICS_SUPERSET_ADMIN_PASSWORD"], "", "")
    started = time.monotonic()
    try:
        handle.cli("run", "--source", str(sample_dir))
        handle.timings["pipeline run"] = time.monotonic() - started
        started = time.monotonic()
        handle.up_output = handle.cli("superset", "up").stdout
        handle.timings["superset up (fresh home)"] = time.monotonic() - started
        handle.bi_url = handle.cli("db-url", "--tcp").stdout.strip()
        yield handle
    finally:
        down = handle.cli("superset", "down", check=False)
        handle.cli("db-stop", check=False)
        (ARTIFACTS / "superset-timings.txt").write_text(
            "".join(f"{k}: {v:.1f} s\n" for k, v in handle.timings.items()))
        (ARTIFACTS / "superset.log").write_text((home / "superset" / "superset.log").read_text(errors="replace")
                                                if (home / "superset" / "superset.log").exists() else "")
        shutil.rmtree(home, ignore_errors=True)
    assert handle.cli("superset", "status", check=False).returncode == 1, down.stdout


def _rows(bi_url: str, card: spec.Card) -> tuple[list[str], list[tuple]]:
    """The card's rows as the BI role reads them over TCP (what Superset must show)."""
    with psycopg.connect(bi_url) as conn:
        cur = conn.execute(card.sql)
        return [d.name for d in cur.description], cur.fetchall()


def _withheld(columns: list[str], row: tuple) -> bool:
    return any(row[i] for i, c in enumerate(columns) if c == "suppressed" or c.endswith("_suppressed"))


def _epoch_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def test_up_provisioned_every_card_and_a_second_up_creates_nothing(stack):
    first = stack.up_output
    assert "databases   1 created" in first and "datasets    19 created" in first, first
    assert "charts      19 created" in first and "dashboards  5 created" in first, first
    assert "every chart answered through the chart data API (19 charts" in first
    started = time.monotonic()
    second = stack.cli("superset", "up").stdout
    stack.timings["superset up (again)"] = time.monotonic() - started
    for kind, n in (("databases", 1), ("datasets", 19), ("charts", 19), ("dashboards", 5)):
        assert f"{kind:<11} 0 created, 0 updated, {n} unchanged" in second, second
    assert "runs (pid" in stack.cli("superset", "status").stdout


def test_every_chart_answers_through_the_chart_data_api_with_the_warehouse_rows(stack):
    client = stack.client()
    charts = {c["slice_name"]: int(c["id"]) for c in client.list_all("chart")}
    assert set(charts) == {c.name for c in COLLECTION.cards()}
    gaps = 0
    for card in COLLECTION.cards():
        columns, rows = _rows(stack.bi_url, card)
        results = client.chart_data(charts[card.name])
        assert all(r["status"] == "success" for r in results), (card.name, results)
        viz = payloads.viz_type(card)
        if viz == "table":
            [result] = results
            assert result["colnames"] == columns
            assert [[r[c] is None for c in columns] for r in result["data"]] == \
                   [[v is None for v in row] for row in rows], card.name
            continue
        # time series: one point per period, NULL (withheld) never turned into 0
        x = card.chart["x"]
        by_x = {_epoch_ms(row[columns.index(x)]): row for row in rows}
        expected_series = [card.chart["series"]] + ([[card.chart["n"]]] if viz == "mixed_timeseries" else [])
        for result, series in zip(results, expected_series, strict=True):
            points = {p[x]: p for p in result["data"]}
            assert set(points) == set(by_x), card.name
            for at, row in by_x.items():
                for s in series:
                    want = row[columns.index(s)]
                    got = points[at][s]
                    assert (got is None) == (want is None), (card.name, s, at, got, want)
                    if want is None:
                        gaps += 1
                    else:
                        assert got == pytest.approx(float(want)), (card.name, s, at)
    assert gaps > 0, "no withheld value reached a chart: the sample at MIN_CELL_SIZE 20 should have some"


def _chart_states(page) -> list[dict]:
    return page.evaluate("""() => Array.from(document.querySelectorAll('.chart-slice[data-test-chart-id]')).map(e => ({
        id: Number(e.getAttribute('data-test-chart-id')), name: e.getAttribute('data-test-chart-name'),
        viz: e.getAttribute('data-test-viz-type'), canvas: e.querySelectorAll('canvas').length,
        rows: e.querySelectorAll('tbody tr').length, loading: e.querySelectorAll('.loading, [data-test=loading-indicator]').length,
        error: e.querySelectorAll('.ant-alert-error, [data-test=error-alert], [role=alert]').length,
        empty: e.innerText.includes('No results were returned'),
        headers: Array.from(e.querySelectorAll('thead th')).map(th => th.innerText.trim()),
        cells: Array.from(e.querySelectorAll('tbody tr')).map(tr => Array.from(tr.querySelectorAll('td')).map(td => td.innerText.trim())),
        backgrounds: Array.from(e.querySelectorAll('tbody tr')).map(tr => Array.from(tr.querySelectorAll('td')).map(td => getComputedStyle(td).backgroundColor)),
    }))""")


def _rendered(state: dict) -> bool:
    return not state["loading"] and (state["canvas"] > 0 or state["rows"] > 0 or state["empty"] or state["error"] > 0)


def test_the_browser_shows_every_dashboard_with_withheld_cells_as_gaps(stack):
    from playwright.sync_api import sync_playwright

    received: dict[int, list[dict]] = {}

    def on_response(response):
        if "/api/v1/chart/data" in response.url and response.request.method == "POST":
            slice_id = json.loads(response.request.post_data or "{}").get("form_data", {}).get("slice_id")
            if slice_id is not None:
                received[int(slice_id)] = response.json().get("result", []) if response.ok else [{"error": response.status}]

    started = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 2600})
            page.on("response", on_response)
            page.goto(f"{stack.url}/login/", wait_until="domcontentloaded", timeout=120_000)
            page.fill("input#username", "admin")
            page.fill("input#password", stack.admin_password)
            page.keyboard.press("Enter")
            page.wait_for_url(lambda url: "/login" not in url, timeout=60_000)
            for d in COLLECTION.dashboards:
                _check_dashboard(page, stack, d, received)
        finally:
            browser.close()
    stack.timings["browser: five dashboards"] = time.monotonic() - started


def _check_dashboard(page, stack: Stack, d: spec.Dashboard, received: dict[int, list[dict]]) -> None:
    page.goto(f"{stack.url}/superset/dashboard/{d.slug}/", wait_until="domcontentloaded", timeout=120_000)
    deadline = time.monotonic() + RENDER_TIMEOUT_SECONDS
    while True:
        states = _chart_states(page)
        if len(states) == len(d.cards) and all(_rendered(s) for s in states):
            break
        if time.monotonic() > deadline:
            page.screenshot(path=str(ARTIFACTS / f"superset-{d.slug}-timeout.png"), full_page=True)
            pytest.fail(f"{d.name}: the charts did not render within {RENDER_TIMEOUT_SECONDS} s: {states}")
        time.sleep(1)
    page.wait_for_timeout(1500)  # the charts' animations, for the screenshot
    page.screenshot(path=str(ARTIFACTS / f"superset-{d.slug}.png"), full_page=True)
    body = page.inner_text("body")
    assert "Unexpected error" not in body and "Traceback" not in body

    by_name = {s["name"]: s for s in states}
    assert set(by_name) == {c.name for c in d.cards}
    for card in d.cards:
        state = by_name[card.name]
        columns, rows = _rows(stack.bi_url, card)
        assert state["error"] == 0, (d.name, card.name, "error tile")
        assert all(r.get("status") == "success" for r in received.get(state["id"], [{}])), (card.name, received.get(state["id"]))
        # empty only where the data are empty
        assert state["empty"] == (not rows), (card.name, len(rows))
        if state["viz"] == "table":
            _check_table(card, state, columns, rows)
        elif rows:
            assert state["canvas"] > 0, card.name
            _check_series_gaps(card, received[state["id"]], columns, rows)


def _check_table(card: spec.Card, state: dict, columns: list[str], rows: list[tuple]) -> None:
    assert state["rows"] == len(rows), card.name
    if not rows:
        return  # Superset shows "No results were returned" instead of a table (checked above)
    assert [h.split("\n")[0] for h in state["headers"]] == columns, card.name
    highlighted = "rgb({}, {}, {})".format(*(int(spec.SUPPRESSED_COLOR[i:i + 2], 16) for i in (1, 3, 5)))
    for row, cells, backgrounds in zip(rows, state["cells"], state["backgrounds"], strict=True):
        for column, value, text in zip(columns, row, cells, strict=True):
            if value is None:
                # a withheld (or not applicable) value is Superset's blank, never a zero
                assert text == "N/A", (card.name, column, text)
        # a withheld row is highlighted whole, and only such a row
        assert (set(backgrounds) == {highlighted}) == _withheld(columns, row), (card.name, row, backgrounds)


def _check_series_gaps(card: spec.Card, results: list[dict], columns: list[str], rows: list[tuple]) -> None:
    """What the browser received for the chart: a withheld period is a point with NULL values (a gap
    in the line or a missing bar: plain series never connect over NULL), not a zero."""
    x = card.chart["x"]
    points = {p[x]: p for result in results for p in result.get("data", []) if x in p}
    withheld = [row for row in rows if _withheld(columns, row)]
    for row in withheld:
        point = {k: v for result in results for p in result["data"] if p.get(x) == _epoch_ms(row[columns.index(x)])
                 for k, v in p.items()}
        assert point, (card.name, row[columns.index(x)], "withheld period missing from the chart")
        for s in card.chart["series"]:
            assert point[s] is None, (card.name, s, point[s])
    assert len(points) == len(rows), card.name
