"""The embedded server's TCP listener, pure parts (voice_analytics_dagster/lib/warehouse_tcp.py)."""

import pytest

from voice_analytics_dagster.lib import warehouse_tcp
from voice_analytics_dagster.lib.settings import SettingsError, load_settings


def test_hba_lets_only_the_bi_role_in_over_tcp_with_scram():
    rules = [line.split() for line in warehouse_tcp.hba_rules("voice_analytics", "metabase").splitlines()
             if line and not line.startswith("#")]
    tcp = [r for r in rules if r[0] == "host"]
    assert tcp[0] == ["host", "voice_analytics", "metabase", "127.0.0.1/32", "scram-sha-256"]
    # everything else over TCP, IPv4 and IPv6, is rejected; the socket keeps initdb's trust
    assert tcp[1:] == [["host", "all", "all", "0.0.0.0/0", "reject"], ["host", "all", "all", "::/0", "reject"]]
    assert [r for r in rules if r[0] == "local"] == [["local", "all", "all", "trust"],
                                                     ["local", "replication", "all", "trust"]]
    assert not [r for r in rules if r[-1] in {"trust", "password", "md5"} and r[0] == "host"]


def test_tcp_options_and_listens_on(tmp_path):
    sock = tmp_path / "a dir"
    assert warehouse_tcp.tcp_options(55432, sock) == f"-h 127.0.0.1 -p 55432 -k '{sock}'"
    assert warehouse_tcp.listens_on("127.0.0.1", 55432, 55432)
    assert not warehouse_tcp.listens_on("127.0.0.1", 5432, 55432)
    assert not warehouse_tcp.listens_on(None, 55432, 55432)  # socket only: postmaster.pid names no host
    assert not warehouse_tcp.listens_on("*", 55432, 55432)


def test_the_tcp_port_setting(tmp_path):
    home = {"VOICE_ANALYTICS_HOME": str(tmp_path)}
    assert load_settings(home).embedded_tcp_port is None
    assert load_settings({**home, "VOICE_ANALYTICS_EMBEDDED_TCP_PORT": "55433"}).embedded_tcp_port == 55433
    for bad in ("80", "70000", "x"):
        with pytest.raises(SettingsError, match="EMBEDDED_TCP_PORT"):
            load_settings({**home, "VOICE_ANALYTICS_EMBEDDED_TCP_PORT": bad})


def test_a_port_taken_is_refused(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(warehouse_tcp.TcpListenerError, match="taken by another program"):
            warehouse_tcp.check_port_free(taken.getsockname()[1])
