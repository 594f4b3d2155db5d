"""Deterministic synthetic Voice AI export, in exactly the schema of the real sample.

Writes the five files of the export contract (``contract.py``): ``users.csv``,
``voice_sessions.csv``, ``voice_turns.csv``, ``voice_ai_metrics.csv`` and ``applications.csv``,
header row first, comma separated, UTF-8, ``\\n`` line ends, no quoting, numbers formatted like
the sample (two-decimal turn confidences such as ``0.6``; per-session metrics with full float
precision such as ``0.7116666666666666``). Same arguments and seed => byte-identical files.

Unlike the real sample, this export is *clean*: every derived column agrees with its source
(``total_turns`` = turns written, ``total_duration_sec`` = sum of the written turn durations,
metrics = aggregates of the written turn values, an application's user = its session's user,
``transfer_reason`` only on transferred sessions). Session ids are chronological.

How a session is made
---------------------
* Users ``U{1000+i}``, about ``round(0.42 x sessions)`` of them: rural 59 %, disability 8.6 %,
  first-time digital user 42 %. Each user has a Gamma(shape 6) propensity to call, so that the
  number of sessions per user is over-dispersed (some users return often; at 1,200 sessions 429
  of the 504 users appear, 85 %; the sample: 447 of 500).
* Sessions ``S{2000+i}`` over ``days`` days from ``start_date``, daily volume rising linearly by
  40 % over the period (adoption). Language KINYARWANDA 85 %, ENGLISH 10 %, FRENCH 5 %.
  ``asr_model_version`` is ``v1`` before ``switch_day`` (day index from 0) and ``v2`` from then on.
  The column can be left out of the file (``asr_model_version=False``); the data are the same.
* Turns ``T{3000+i}``: 1-13 per session from the sample's own distribution (mean 5.43); speaker
  alternates starting with the user; intents service_lookup 39 %, start_application 30 %,
  repeat 16 %, unknown 15 %; intent confidence N(0.71, 0.16); ASR confidence = session mean
  N(0.75, 0.08) (+ ``asr_v2_shift`` under v2) + turn noise N(0, 0.11); both clipped to
  [0.05, 1] and rounded to 2 decimals; duration 2-14 s.
* Errors per turn: silence 15 %, noise 5 %, otherwise misunderstanding with probability
  logistic(mis0 + mis_asr x (asr - 0.75) + mis_v2 x is_v2) (about 20 % of all turns).
* The outcome is drawn AFTER the turns, from the session's written (rounded) aggregates, i.e.
  from exactly the features a downstream model sees, so a logistic regression on them is
  correctly specified:

      P(abandoned) = logistic(b0 + b_asr (avg_asr_confidence - 0.75) + b_silence (silence_rate - 0.15)
                              + b_first_time is_first_time_digital_user + b_disability has_disability)
      P(transferred | not abandoned) = logistic(c0 + c_mis misunderstanding_rate), else completed.

  transfer_reason: repeated_errors when the session had >= 2 misunderstandings, else
  user_request (60 %) or system (40 %); empty unless transferred. recovery_success: yes when the
  session had an error turn and was not abandoned, else yes with probability 5 % (noise).
  escalation_flag: yes iff transferred.
* Applications ``A{4000+i}``: a completed session yields one (status completed) with p = 0.7, an
  abandoned one (status abandoned) with p = 0.3, a transferred one (status failed) with p = 0.2;
  same user and day as the session, channel voice, service uniform over ID_REPLACEMENT, LAND, DL,
  BIRTH_CERT, time_to_submit_sec = round(lognormal(median 480 s, sigma 0.64)) (mean ~588 s).

Planted effects (``PLANTED``), measured on 1,000,000 sessions, seed 0, default options
-------------------------------------------------------------------------------------
Abandonment (log-odds). Standardised = raw coefficient x SD of the feature in the generated
sessions; "refit" is a statsmodels Logit of is_abandoned on all standardised features
(also intent confidence, misunderstanding, noise, region, language, version), with its 95 % CI:

====================  ============================  ======  ============  =======================
feature               raw coefficient               SD      standardised  refit (95 % CI)
====================  ============================  ======  ============  =======================
avg_asr_confidence    b_asr = -8.0 per unit         0.0946  -0.757        -0.758 (-0.763, -0.753)
                      (-0.8 per 0.1)
silence_rate          b_silence = +1.5 per unit     0.1735  +0.260        +0.256 (+0.251, +0.260)
first_time_digital    b_first_time = +0.35          0.4935  +0.173        +0.175 (+0.170, +0.180)
has_disability        b_disability = +0.30          0.2803  +0.084        +0.085 (+0.080, +0.089)
====================  ============================  ======  ============  =======================

ASR confidence is by far the strongest driver (about 3x silence). b0 = -1.0525 gives 28.0 %
abandoned sessions (sample: 27.8 %). Intent confidence, misunderstanding rate, noise rate,
region, language and asr_model_version have NO direct effect on abandonment (all refit
|coefficients| < 0.006 per SD): v2 acts only through its better ASR confidence, and the
misunderstanding rate is correlated with ASR confidence but has no effect of its own.
The session ASR mean has SD 0.0946 (not 0.08: turn noise and the v2 shift add to the
session-level N(0.75, 0.08)); it averages 0.748 under v1 and 0.796 under v2.

Transfer: c_mis = +2.5 per unit of misunderstanding rate (SD 0.197 among sessions not abandoned:
+0.49 per SD), c0 = -1.7834: 16.0 % of all sessions transferred (sample: 15.8 %), 56.0 % completed.

ASR model version (the planted improvement of the error rate): v2 raises the session ASR mean by
``asr_v2_shift`` = +0.05 and lowers the log-odds of a misunderstanding by ``mis_v2`` = -0.30 on
top of what the better ASR gives (``mis_asr`` = -5.0 per unit of turn ASR confidence,
``mis0`` = -0.9303). Share of turns with a misunderstanding: 24.1 % under v1, 16.5 % under v2,
a drop of 7.6 points (3.6 through the ASR shift alone, which would give 20.5 %; 4.0 direct);
20.0 % overall with the default switch on day 60 of 120 (54 % of the sessions are v2 because
volume rises; the sample: 19.8 %).

``NO_EFFECT`` (for false-positive tests) keeps b0 and the recogniser's physics ``mis_asr`` (low
ASR confidence -> more misunderstandings: a correlation among features, not an effect on an
outcome or a version difference) and sets every other effect to 0: b_asr = b_silence =
b_first_time = b_disability = c_mis = asr_v2_shift = mis_v2 = 0, with the other intercepts
recalibrated to keep the marginal rates: c0 = -1.2890 (16.0 % transferred) and mis0 = -1.2103
(20.0 % misunderstandings under both versions). Abandoned: 25.8 % = logistic(b0): with the
same b0 but no spread of the linear predictor (SD ~0.8 log-odds under PLANTED, which pulls the
average probability towards 0.5), a little below PLANTED's 28.0 %.

Determinism and size
--------------------
Every random draw comes from ``numpy.random.default_rng(SeedSequence([seed, stream, chunk]))``
with fixed chunks of ``CHUNK_SESSIONS`` = 20,000 sessions, so the files depend only on the
arguments. Each chunk is generated with vectorised numpy and turned into CSV bytes by a
vectorised scatter of pre-formatted values (no Python loop per row); memory is one chunk plus
O(users + days) arrays. 1,000,000 sessions (420,000 users, 5.43 M turns, 508,000 applications,
522 MB of CSV): 8.6 s and 164 MB peak RSS (by_day: 8.8 s, 167 MB) on the development machine
(2 cores).
"""

from voice_analytics_dagster.tools.generator.export import (
    GenerationSummary,
    generate_export,
    simulate_sessions,
)
from voice_analytics_dagster.tools.generator.world import (
    CHUNK_SESSIONS,
    INTENTS,
    NO_EFFECT,
    P_INTENT,
    PLANTED,
    SERVICE_CODES,
    Effects,
    header,
)

__all__ = [
    "CHUNK_SESSIONS",
    "INTENTS",
    "NO_EFFECT",
    "P_INTENT",
    "PLANTED",
    "SERVICE_CODES",
    "Effects",
    "GenerationSummary",
    "generate_export",
    "header",
    "simulate_sessions",
]
