"""The synthetic export generator: schema, contract, consistency, determinism, planted effects.

No database. The real sample (headers only) is read from ``../shared/data/irembo-sample``
relative to the project root; the tests that need it are skipped when it is absent.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import FrozenInstanceError, fields
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voice_analytics_dagster.defs.ingestion.batches import DATED_FOLDER_RE
from voice_analytics_dagster.defs.ingestion.reader import compare_header, read_header
from voice_analytics_dagster.lib import contract
from voice_analytics_dagster.tools import generator as g

# The textual forms the contract asks for (the generator writes exactly these).
DATE_RE = r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
INTEGER_RE = r"^[+-]?[0-9]{1,18}$"
DECIMAL_RE = r"^[+-]?([0-9]{1,30}([.][0-9]{0,30})?|[.][0-9]{1,30})([eE][+-]?[0-9]{1,3})?$"

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = PROJECT_ROOT.parent / "shared" / "data" / "irembo-sample"
FILES = [t.file for t in contract.TABLES]
SEED = 7
SESSIONS = 3_000


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read(folder: Path, table: contract.Table) -> pd.DataFrame:
    """A generated file as text, exactly as written (empty field = empty string)."""
    return pd.read_csv(folder / table.file, dtype=str, keep_default_na=False)


def sample_header(file: str) -> tuple[str, ...]:
    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"the real sample is not available at {SAMPLE_DIR} (needed to compare headers)")
    return read_header(SAMPLE_DIR / file).columns


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, g.GenerationSummary]:
    out = tmp_path_factory.mktemp("export")
    return out, g.generate_export(out, SESSIONS, SEED, progress=False)


@pytest.fixture(scope="module")
def frames(export) -> dict[str, pd.DataFrame]:
    out, _ = export
    return {t.name: read(out, t) for t in contract.TABLES}


# -- determinism ----------------------------------------------------------------------------------

def test_same_seed_gives_identical_files_and_another_seed_different_files(tmp_path):
    a = g.generate_export(tmp_path / "a", 1_500, seed=3, progress=False)
    b = g.generate_export(tmp_path / "b", 1_500, seed=3, progress=False)
    g.generate_export(tmp_path / "c", 1_500, seed=4, progress=False)
    assert a.rows == b.rows and a.bytes == b.bytes
    for file in FILES:
        assert sha256(tmp_path / "a" / file) == sha256(tmp_path / "b" / file), file
        assert sha256(tmp_path / "a" / file) != sha256(tmp_path / "c" / file), file


def test_rewriting_an_existing_folder_replaces_the_files(tmp_path):
    g.generate_export(tmp_path, 500, seed=1, progress=False)
    first = {f: sha256(tmp_path / f) for f in FILES}
    g.generate_export(tmp_path, 800, seed=2, progress=False)
    g.generate_export(tmp_path, 500, seed=1, progress=False)
    assert {f: sha256(tmp_path / f) for f in FILES} == first


def test_summary_counts_rows_and_bytes_of_the_files(export):
    out, summary = export
    assert set(summary.rows) == set(FILES)
    assert summary.paths == tuple(out / f for f in FILES)
    for file in FILES:
        data = (out / file).read_bytes()
        assert summary.bytes[file] == len(data)
        assert summary.rows[file] == data.count(b"\n") - 1
    assert summary.rows["voice_sessions.csv"] == SESSIONS
    assert summary.rows["users.csv"] == summary.users == round(0.42 * SESSIONS)
    assert summary.rows["voice_turns.csv"] == summary.turns
    assert summary.rows["applications.csv"] == summary.applications
    assert summary.effects is g.PLANTED and summary.seed == SEED


# -- headers ---------------------------------------------------------------------------------------

def test_headers_equal_the_sample_plus_the_optional_version_column(export):
    out, _ = export
    for t in contract.TABLES:
        written = read_header(out / t.file).columns
        expected = sample_header(t.file)
        if t is contract.VOICE_SESSIONS:
            expected = (*expected, "asr_model_version")
        assert written == expected, t.file
        assert compare_header(t, written).ok, t.file
        assert not compare_header(t, written).reordered


def test_without_the_version_column_headers_equal_the_sample_and_nothing_else_changes(tmp_path, export):
    out, _ = export
    g.generate_export(tmp_path, SESSIONS, SEED, asr_model_version=False, progress=False)
    for t in contract.TABLES:
        written = read_header(tmp_path / t.file).columns
        assert written == sample_header(t.file), t.file
        assert compare_header(t, written).ok
        if t is not contract.VOICE_SESSIONS:
            assert sha256(tmp_path / t.file) == sha256(out / t.file), t.file
    with_version = read(out, contract.VOICE_SESSIONS)
    pd.testing.assert_frame_equal(
        read(tmp_path, contract.VOICE_SESSIONS), with_version.drop(columns="asr_model_version")
    )


# -- format and contract --------------------------------------------------------------------------

def test_files_are_plain_utf8_csv_with_newline_endings(export):
    out, _ = export
    for file in FILES:
        data = (out / file).read_bytes()
        data.decode("utf-8")
        assert not data.startswith(b"\xef\xbb\xbf")
        assert data.endswith(b"\n") and b"\r" not in data and b'"' not in data
        widths = {line.count(b",") for line in data.splitlines()}
        assert len(widths) == 1, f"{file}: rows with different numbers of fields"


def check_value_rules(t: contract.Table, df: pd.DataFrame) -> None:
    """Every value passes the contract's rule for its column (as the loader's SQL would judge)."""
    yes_no = {*contract.YES_VALUES, *contract.NO_VALUES}
    for c in t.columns:
        if c.name not in df.columns:
            assert c.optional_in_file, f"{t.file}: required column {c.name} missing"
            continue
        values = df[c.name]
        assert (values == values.str.strip()).all(), f"{t.file}.{c.name}: surrounding whitespace"
        present = values[values != ""]
        if c.required:
            assert len(present) == len(values), f"{t.file}.{c.name}: empty values in a required column"
        if c.case == "lower":
            assert (present == present.str.lower()).all(), f"{t.file}.{c.name}: not lower case"
        if c.case == "upper":
            assert (present == present.str.upper()).all(), f"{t.file}.{c.name}: not upper case"
        assert (present.str.len() <= contract.MAX_TEXT_LENGTH).all()
        if c.type == "integer":
            assert present.str.fullmatch(INTEGER_RE).all(), f"{t.file}.{c.name}: not an integer"
        elif c.type == "decimal":
            assert present.str.fullmatch(DECIMAL_RE).all(), f"{t.file}.{c.name}: not a number"
        elif c.type == "date":
            assert present.str.fullmatch(DATE_RE).all(), f"{t.file}.{c.name}: not a date"
            pd.to_datetime(present, format="%Y-%m-%d")  # real calendar days
        elif c.type == "yesno":
            assert present.str.lower().isin(yes_no).all(), f"{t.file}.{c.name}: not yes/no"
        elif c.type == "enum":
            assert present.str.lower().isin(c.accepted).all(), (
                f"{t.file}.{c.name}: values outside {c.accepted}: {set(present) - set(c.accepted)}"
            )
        if c.minimum is not None or c.maximum is not None:
            numbers = present.astype(float)
            if c.minimum is not None:
                assert (numbers >= c.minimum).all(), f"{t.file}.{c.name}: below {c.minimum}"
            if c.maximum is not None:
                assert (numbers <= c.maximum).all(), f"{t.file}.{c.name}: above {c.maximum}"
    for k in t.key:
        assert df[k].is_unique, f"{t.file}: duplicate {k}"


def test_every_value_passes_the_contract(frames):
    for t in contract.TABLES:
        check_value_rules(t, frames[t.name])


def test_values_have_the_sample_formats_and_distributions(frames):
    users, sessions, turns = frames["users"], frames["voice_sessions"], frames["voice_turns"]
    metrics, apps = frames["voice_ai_metrics"], frames["applications"]
    n = len(sessions)
    assert list(users.user_id) == [f"U{1000 + i}" for i in range(len(users))]
    assert list(sessions.session_id) == [f"S{2000 + i}" for i in range(n)]
    assert list(turns.turn_id) == [f"T{3000 + i}" for i in range(len(turns))]
    assert list(apps.application_id) == [f"A{4000 + i}" for i in range(len(apps))]
    assert set(sessions.channel) == {"voice"} and set(apps.channel) == {"voice"}
    assert set(apps.service_code) == set(g.SERVICE_CODES)
    # two-decimal confidences written like the sample (0.6, not 0.60), clipped to [0.05, 1]
    for col in ("intent_confidence", "asr_confidence"):
        x = turns[col].astype(float)
        assert (turns[col] == [repr(round(v, 2)) for v in x]).all()
        assert x.min() >= 0.05 and x.max() <= 1.0
    # metrics with full float precision (Python repr round-trips)
    for col in ("avg_asr_confidence", "avg_intent_confidence", "misunderstanding_rate", "silence_rate"):
        assert (metrics[col] == [repr(float(v)) for v in metrics[col]]).all()
    assert any(len(v) > 10 for v in metrics.avg_asr_confidence)
    # integers
    tts = apps.time_to_submit_sec.astype(int)
    assert tts.min() >= 1 and 380 < tts.median() < 580 and 480 < tts.mean() < 700
    secs = turns.turn_duration_sec.astype(int)
    assert secs.min() == 2 and secs.max() == 14
    # distributions close to the brief's
    assert 0.55 < (users.region == "rural").mean() < 0.63
    assert 0.06 < (users.disability_flag == "yes").mean() < 0.11
    assert 0.38 < (users.first_time_digital_user == "yes").mean() < 0.46
    lang = sessions.language.value_counts(normalize=True)
    assert 0.82 < lang["KINYARWANDA"] < 0.88 and 0.08 < lang["ENGLISH"] < 0.12 and 0.03 < lang["FRENCH"] < 0.07
    per_session = sessions.total_turns.astype(int)
    assert per_session.min() >= 1 and per_session.max() <= 13 and 5.2 < per_session.mean() < 5.7
    intents = turns.detected_intent.value_counts(normalize=True)
    for intent, p in zip(g.INTENTS, g.P_INTENT, strict=True):
        assert abs(intents[intent] - p) < 0.02, intent
    errors = turns.error_type.value_counts(normalize=True)
    assert 0.17 < errors["misunderstanding"] < 0.23
    assert 0.13 < errors["silence"] < 0.17 and 0.04 < errors["noise"] < 0.06
    outcomes = sessions.final_outcome.value_counts(normalize=True)
    assert 0.24 < outcomes["abandoned"] < 0.32 and 0.12 < outcomes["transferred"] < 0.20
    # some users return often, most users appear
    visits = sessions.user_id.value_counts()
    assert visits.max() >= 8 and 0.75 < len(visits) / len(users) < 0.95
    # volume rises over the period; v1 before the switch day, v2 from then on
    day = (pd.to_datetime(sessions.created_at) - pd.Timestamp("2025-01-01")).dt.days
    assert day.min() >= 0 and day.max() <= 119
    assert (day < 60).sum() < (day >= 60).sum()
    assert (sessions.asr_model_version == np.where(day < 60, "v1", "v2")).all()
    assert sessions.created_at.is_monotonic_increasing  # ids are chronological


def test_version_switch_and_period_are_parameters(tmp_path):
    g.generate_export(tmp_path, 400, 1, start_date=date(2024, 12, 30), days=5, switch_day=2, progress=False)
    s = read(tmp_path, contract.VOICE_SESSIONS)
    days = [(date(2024, 12, 30) + timedelta(days=d)).isoformat() for d in range(5)]
    assert set(s.created_at) <= set(days) and len(set(s.created_at)) == 5
    assert (s.asr_model_version == np.where(s.created_at < "2025-01-01", "v1", "v2")).all()


# -- internal consistency -------------------------------------------------------------------------

def test_tables_agree_with_each_other(frames):
    sessions = frames["voice_sessions"].set_index("session_id")
    turns, metrics, apps = frames["voice_turns"], frames["voice_ai_metrics"], frames["applications"]
    users = set(frames["users"].user_id)

    assert set(turns.session_id) <= set(sessions.index)
    assert set(sessions.user_id) <= users and set(apps.user_id) <= users
    assert set(apps.session_id) <= set(sessions.index)
    assert apps.session_id.is_unique  # at most one application per session
    assert list(metrics.session_id) == list(sessions.index)

    t = turns.assign(
        n=turns.turn_number.astype(int),
        asr=turns.asr_confidence.astype(float),
        intent=turns.intent_confidence.astype(float),
        sec=turns.turn_duration_sec.astype(int),
        mis=turns.error_type == "misunderstanding",
        sil=turns.error_type == "silence",
        err=turns.error_type != "",
    )
    by = t.groupby("session_id")
    agg = pd.DataFrame({
        "turns": by.size(), "max_n": by.n.max(), "unique_n": by.n.nunique(), "sec": by.sec.sum(),
        "asr": by.asr.mean(), "intent": by.intent.mean(), "mis": by.mis.mean(), "sil": by.sil.mean(),
        "n_mis": by.mis.sum(), "err": by.err.any(),
    }).reindex(sessions.index)
    assert agg.turns.notna().all(), "a session without turns"
    assert (agg.turns == sessions.total_turns.astype(int)).all()
    assert (agg.max_n == agg.turns).all() and (agg.unique_n == agg.turns).all()
    assert (agg.sec == sessions.total_duration_sec.astype(int)).all()
    # speaker alternates starting with the user; a turn is logged on its session's day
    assert (t.speaker == np.where(t.n % 2 == 1, "user", "system")).all()
    assert (t.created_at.values == sessions.created_at.loc[t.session_id].values).all()

    m = metrics.set_index("session_id")
    for col, a in (("avg_asr_confidence", "asr"), ("avg_intent_confidence", "intent"),
                   ("misunderstanding_rate", "mis"), ("silence_rate", "sil")):
        np.testing.assert_allclose(m[col].astype(float), agg[a], rtol=0, atol=1e-12, err_msg=col)

    outcome = sessions.final_outcome
    assert ((m.escalation_flag == "yes") == (outcome == "transferred")).all()
    recovered = agg.err & (outcome != "abandoned")
    assert (m.recovery_success[recovered] == "yes").all()
    assert (m.recovery_success[~recovered] == "no").mean() > 0.9
    reason = sessions.transfer_reason
    assert (reason[outcome != "transferred"] == "").all()
    transferred = outcome == "transferred"
    assert (reason[transferred & (agg.n_mis >= 2)] == "repeated_errors").all()
    assert reason[transferred & (agg.n_mis < 2)].isin(["user_request", "system"]).all()

    a = apps.set_index("session_id")
    s = sessions.loc[a.index]
    assert (a.user_id == s.user_id).all()
    assert (a.submitted_at == s.created_at).all()
    expected_status = {"completed": "completed", "abandoned": "abandoned", "transferred": "failed"}
    assert (a.status == s.final_outcome.map(expected_status)).all()
    share = s.final_outcome.value_counts() / outcome.value_counts()
    assert 0.64 < share["completed"] < 0.76 and 0.24 < share["abandoned"] < 0.36
    assert 0.13 < share["transferred"] < 0.27


# -- dated folders ---------------------------------------------------------------------------------

def test_by_day_folders_hold_each_days_rows_and_together_the_whole_export(tmp_path, export):
    out, flat = export
    summary = g.generate_export(tmp_path, SESSIONS, SEED, by_day=True, progress=False)
    folders = sorted(p for p in tmp_path.iterdir())
    days = [(date(2025, 1, 1) + timedelta(days=d)).isoformat() for d in range(120)]
    assert [f.name for f in folders] == days
    assert all(DATED_FOLDER_RE.match(f.name) and f.is_dir() for f in folders)
    assert summary.rows == flat.rows
    assert len(summary.paths) == 120 * 5
    sessions = read(out, contract.VOICE_SESSIONS)
    first_day = sessions.groupby("user_id").created_at.min()
    for t in contract.TABLES:
        parts = []
        for folder in folders:
            assert read_header(folder / t.file).columns == read_header(out / t.file).columns
            part = read(folder, t)
            if t.date_column:
                assert (part[t.date_column] == folder.name).all(), (folder.name, t.file)
            if t is contract.USERS:
                expected = first_day.reindex(part.user_id).fillna(days[0])
                assert (expected == folder.name).all(), folder.name
            parts.append(part)
        union = pd.concat(parts, ignore_index=True)
        whole = read(out, t)
        key = list(t.key)
        pd.testing.assert_frame_equal(
            union.sort_values(key).reset_index(drop=True), whole.sort_values(key).reset_index(drop=True)
        )
    metrics_day = {}
    for folder in folders:
        for sid in read(folder, contract.VOICE_AI_METRICS).session_id:
            metrics_day[sid] = folder.name
    assert (sessions.created_at == sessions.session_id.map(metrics_day)).all()


def test_no_sessions_gives_headers_only(tmp_path):
    summary = g.generate_export(tmp_path / "flat", 0, progress=False)
    assert summary.rows["voice_sessions.csv"] == 0 and summary.users == 1
    assert summary.rows["users.csv"] == 1  # a user without session is still delivered
    for t in contract.TABLES:
        assert compare_header(t, read_header(tmp_path / "flat" / t.file).columns).ok
    g.generate_export(tmp_path / "daily", 0, by_day=True, days=3, progress=False)
    first = tmp_path / "daily" / "2025-01-01"
    assert len(read(first, contract.USERS)) == 1
    assert (tmp_path / "daily" / "2025-01-03" / "voice_turns.csv").read_text().count("\n") == 1
    assert g.simulate_sessions(0).empty


def test_invalid_arguments_are_refused(tmp_path):
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="sessions"):
            g.generate_export(tmp_path, bad, progress=False)
    with pytest.raises(ValueError, match="seed"):
        g.simulate_sessions(10, seed=-1)
    with pytest.raises(ValueError, match="days"):
        g.simulate_sessions(10, days=0)
    with pytest.raises(TypeError, match="Effects"):
        g.simulate_sessions(10, effects={"b0": 0})


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    g.generate_export(tmp_path, 50, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "50/50" in captured.err
    g.generate_export(tmp_path, 50, progress=False)
    assert capsys.readouterr().err == ""


# -- simulate_sessions = the written features -------------------------------------------------------

def test_simulate_sessions_equals_the_features_recomputed_from_the_files(frames):
    sim = g.simulate_sessions(SESSIONS, SEED)
    sessions, turns, users = frames["voice_sessions"], frames["voice_turns"], frames["users"]
    t = turns.assign(
        asr=turns.asr_confidence.astype(float),
        intent=turns.intent_confidence.astype(float),
        mis=(turns.error_type == "misunderstanding").astype(float),
        sil=(turns.error_type == "silence").astype(float),
        noise=(turns.error_type == "noise").astype(float),
    )
    agg = t.groupby("session_id")[["asr", "intent", "mis", "sil", "noise"]].mean()
    s = sessions.merge(users, on="user_id", how="left").set_index("session_id")
    assert list(sim.session_id) == list(sessions.session_id)
    sim = sim.set_index("session_id")
    agg = agg.reindex(sim.index)
    for col, a in (("avg_asr_confidence", "asr"), ("avg_intent_confidence", "intent"),
                   ("misunderstanding_rate", "mis"), ("silence_rate", "sil"), ("noise_rate", "noise")):
        np.testing.assert_allclose(sim[col], agg[a], rtol=0, atol=1e-12, err_msg=col)
    assert (sim.is_first_time_digital_user == (s.first_time_digital_user == "yes")).all()
    assert (sim.has_disability == (s.disability_flag == "yes")).all()
    for col in ("user_id", "region", "language", "asr_model_version", "final_outcome"):
        assert (sim[col] == s[col]).all(), col
    assert (sim.total_turns == s.total_turns.astype(int)).all()
    assert (sim.created_at == pd.to_datetime(s.created_at)).all()
    assert (sim.is_abandoned == (s.final_outcome == "abandoned")).all()
    assert sim.is_abandoned.dtype == bool and sim.has_disability.dtype == bool


# -- property test -------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sessions=st.integers(1, 300), seed=st.integers(0, 2**32 - 1), version=st.booleans())
def test_any_small_export_is_well_formed(sessions, seed, version):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        summary = g.generate_export(out, sessions, seed, asr_model_version=version, progress=False)
        for t in contract.TABLES:
            assert (out / t.file).is_file()
            columns = read_header(out / t.file).columns
            assert columns == g.header(t, version)
            assert compare_header(t, columns).ok
        s = read(out, contract.VOICE_SESSIONS)
        assert len(s) == sessions == len(read(out, contract.VOICE_AI_METRICS))
        assert s.total_turns.astype(int).sum() == len(read(out, contract.VOICE_TURNS))
        assert len(read(out, contract.USERS)) == max(1, round(0.42 * sessions))
        assert summary.rows["voice_turns.csv"] == summary.turns
        check_value_rules(contract.VOICE_SESSIONS, s)


# -- planted effects -------------------------------------------------------------------------------

def test_effects_are_frozen_and_no_effect_zeroes_every_slope():
    with pytest.raises(FrozenInstanceError):
        g.PLANTED.b_asr = 0.0  # type: ignore[misc]
    assert (g.PLANTED.b_asr, g.PLANTED.b_silence, g.PLANTED.b_first_time, g.PLANTED.b_disability) == (
        -8.0, 1.5, 0.35, 0.30)
    slopes = {f.name for f in fields(g.Effects)} - {"b0", "c0", "mis0", "mis_asr"}
    assert all(getattr(g.NO_EFFECT, name) == 0 for name in slopes)
    assert g.NO_EFFECT.b0 == g.PLANTED.b0


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return g.simulate_sessions(20_000, 0, g.PLANTED)


@pytest.mark.parametrize("effects", [g.PLANTED, g.NO_EFFECT], ids=["planted", "no_effect"])
def test_outcome_rates_are_plausible(effects, planted):
    sim = planted if effects is g.PLANTED else g.simulate_sessions(20_000, 0, effects)
    assert 0.22 < sim.is_abandoned.mean() < 0.34
    assert 0.13 < (sim.final_outcome == "transferred").mean() < 0.19
    assert 0.15 < sim.misunderstanding_rate.mean() < 0.25


def standardised_features(sim: pd.DataFrame) -> pd.DataFrame:
    x = pd.DataFrame({
        "avg_asr_confidence": sim.avg_asr_confidence,
        "avg_intent_confidence": sim.avg_intent_confidence,
        "misunderstanding_rate": sim.misunderstanding_rate,
        "silence_rate": sim.silence_rate,
        "noise_rate": sim.noise_rate,
        "first_time": sim.is_first_time_digital_user.astype(float),
        "disability": sim.has_disability.astype(float),
        "urban": (sim.region == "urban").astype(float),
        "english": (sim.language == "ENGLISH").astype(float),
        "french": (sim.language == "FRENCH").astype(float),
        "v2": (sim.asr_model_version == "v2").astype(float),
    })
    return (x - x.mean()) / x.std()


def test_logit_recovers_asr_as_the_strongest_driver(planted):
    fit = sm.Logit(planted.is_abandoned.astype(float), sm.add_constant(standardised_features(planted))).fit(
        disp=0
    )
    coefs = fit.params.drop("const")
    assert coefs.abs().idxmax() == "avg_asr_confidence"
    planted_std = g.PLANTED.b_asr * planted.avg_asr_confidence.std()
    lo, hi = fit.conf_int().loc["avg_asr_confidence"]
    assert lo <= planted_std <= hi, (planted_std, lo, hi)
    assert -0.85 < planted_std < -0.65
    # the weaker planted drivers have the planted sign; the others are not detected strongly
    for name in ("silence_rate", "first_time", "disability"):
        assert coefs[name] > 0, name
    assert abs(coefs[["avg_intent_confidence", "misunderstanding_rate", "urban", "v2"]]).max() < 0.1


def test_v2_lowers_the_misunderstanding_rate_only_when_planted(planted):
    by_version = planted.groupby("asr_model_version")[["avg_asr_confidence", "misunderstanding_rate"]].mean()
    assert by_version.loc["v2", "avg_asr_confidence"] - by_version.loc["v1", "avg_asr_confidence"] > 0.03
    assert by_version.loc["v1", "misunderstanding_rate"] - by_version.loc["v2", "misunderstanding_rate"] > 0.05
    null = g.simulate_sessions(20_000, 0, g.NO_EFFECT).groupby("asr_model_version").misunderstanding_rate.mean()
    assert abs(null["v1"] - null["v2"]) < 0.01


def test_no_effect_has_no_driver(planted):
    null = g.simulate_sessions(20_000, 1, g.NO_EFFECT)
    fit = sm.Logit(null.is_abandoned.astype(float), sm.add_constant(standardised_features(null))).fit(disp=0)
    assert fit.params.drop("const").abs().max() < 0.1
