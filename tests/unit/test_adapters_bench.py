"""The adapter bench's synthetic inputs: every conversation split across two files, converted back
whole; and the measurement of a child's peak memory."""

from __future__ import annotations

import pytest

from tests.unit.adapters_support import run
from voice_analytics_dagster.tools.adapter_bench import FORMATS, generate, measure


@pytest.mark.parametrize("fmt", FORMATS)
def test_generated_conversations_convert_whole(tmp_path, fmt):
    records, size = generate(fmt, 40, tmp_path / "in", files=4)
    assert size > 0 and len(list((tmp_path / "in").iterdir())) == 4
    out = run(tmp_path / "in", tmp_path, fmt)
    assert out.result.format == fmt  # detected
    assert out.manifest["rows"]["voice_sessions"] == 40 and out.result.quarantined == 0
    assert sum(i["records"] for i in out.manifest["inputs"]) == records
    outcomes = {s["final_outcome"] for s in out.rows("voice_sessions.csv")}
    assert len(outcomes) >= 2


def test_measure_reports_the_childs_peak_memory(tmp_path):
    generate("rasa", 20, tmp_path / "in", files=2)
    fig = measure("rasa", tmp_path / "in", tmp_path / "out")
    assert fig["rows"]["voice_sessions"] == 20 and fig["seconds"] > 0 and 10 < fig["peak_rss_mib"] < 2048
