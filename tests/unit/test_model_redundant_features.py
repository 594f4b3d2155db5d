"""A feature that is a linear combination of others is left out of the model's design, named with
the features it repeats: from a platform's logs the intent detection rate is exactly 1 - the
no-match share - the no-input share (a platform records no intent on exactly its error turns),
and the model still fits the others instead of claiming nothing. No database."""

from __future__ import annotations

import numpy as np

from voice_analytics_dagster.defs.model import fit
from voice_analytics_dagster.defs.model.features import (
    build_design,
    frame_from_simulation,
    redundant_features,
)
from voice_analytics_dagster.tools import generator as g


def platform_like(sessions: int, seed: int):
    frame = frame_from_simulation(g.simulate_sessions(sessions, seed, g.PLANTED))
    return frame.assign(intent_detection_rate=1 - frame.misunderstanding_rate - frame.silence_rate)


def test_the_intent_detection_rate_of_platform_logs_is_left_out_and_the_model_fits():
    design = build_design(platform_like(3_000, 7))
    assert design.unused["intent_detection_rate"] == "a linear combination of misunderstanding_rate, silence_rate"
    assert "intent_detection_rate" not in design.feature_names
    assert set(design.mean.index) == set(design.sd.index) == set(design.feature_names) == set(design.kinds)
    gram = design.Z.to_numpy().T @ design.Z.to_numpy()
    assert np.linalg.matrix_rank(gram, hermitian=True) == len(design.feature_names)
    result = fit.fit_abandonment_model(design)
    assert result.status == "fitted" and result.drivers
    assert {d.feature for d in result.drivers} == set(design.feature_names)


def test_a_design_without_redundancy_is_unchanged():
    frame = frame_from_simulation(g.simulate_sessions(2_000, 3, g.PLANTED))
    design = build_design(frame)
    assert not any(why.startswith("a linear combination") for why in design.unused.values())
    assert "intent_detection_rate" in design.feature_names


def test_redundant_features_names_the_later_copy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=500), rng.normal(size=500)
    columns = {"a": a, "b": b, "c": 2 * a - b, "d": rng.normal(size=500), "e": a.copy()}
    assert redundant_features(columns) == {"c": "a linear combination of a, b", "e": "a linear combination of a"}
    assert redundant_features({}) == {}
