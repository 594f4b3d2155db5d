"""Measure the adapters' memory and time on synthetic inputs of two sizes.

    python -m voice_analytics_dagster.tools.adapter_bench --format rasa --conversations 100000

generates N/10 and N synthetic conversations in the platform's format (with one value; several
values are taken as given), each conversation split across two of the input files so that the
grouping has work to do, converts each input in a child process and reports the child's peak
resident memory (getrusage of that child) and wall time. Memory flat in the input size means the
peak barely moves while the input grows tenfold.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = 1740992400.0  # 2025-03-03T09:00:00Z
FORMATS = ("lex-v2", "dialogflow-cx", "rasa")
INTENTS = ("renew_id", "check_status", "birth_certificate", "land_transfer")


def _rasa(i: int, rng: random.Random) -> list[dict]:
    sid, t = f"conv-{i}", T0 + i * 7.0
    channel = "audiocodes" if i % 3 else "rest"
    intent = INTENTS[i % len(INTENTS)]

    def user(dt, name, conf):
        return {"sender_id": sid, "event": "user", "timestamp": t + dt, "text": "...", "input_channel": channel,
                "parse_data": {"intent": {"name": name, "confidence": conf}}}

    def bot(dt):
        return {"sender_id": sid, "event": "bot", "timestamp": t + dt, "text": "...", "metadata": {"utter_action": "utter_x"}}
    events = [{"sender_id": sid, "event": "session_started", "timestamp": t},
              user(1, "greet", round(rng.uniform(0.6, 1), 2)), bot(1.5),
              user(5, intent if rng.random() > 0.2 else "nlu_fallback", round(rng.uniform(0.3, 1), 2)), bot(5.5),
              {"sender_id": sid, "event": "slot", "timestamp": t + 6, "name": "region", "value": rng.choice(("rural", "urban"))},
              user(9, "inform", round(rng.uniform(0.5, 1), 2)), bot(9.5)]
    if i % 5 == 0:
        events.append({"sender_id": sid, "event": "action", "timestamp": t + 10, "name": "action_handoff"})
    else:
        events += [{"sender_id": sid, "event": "active_loop", "timestamp": t + 10, "name": "form"},
                   {"sender_id": sid, "event": "active_loop", "timestamp": t + 11, "name": None}]
    return events


def _lex(i: int, rng: random.Random) -> list[dict]:
    sid, t = f"sess-{i:09d}", T0 + i * 7.0
    intent = INTENTS[i % len(INTENTS)]
    out = []
    for k, state in enumerate(("InProgress", "InProgress", "Fulfilled" if i % 4 else "InProgress")):
        speech = (i + k) % 3 != 0
        e = {"sessionId": sid, "timestamp": T0 and _iso(t + 10 * k), "inputMode": "Speech" if speech else "Text",
             "inputTranscript": "...", "bot": {"name": "Bench", "localeId": "en_US", "version": "1"},
             "interpretations": [{"intent": {"name": intent}, "nluConfidence": round(rng.uniform(0.4, 1), 2)}],
             "sessionState": {"intent": {"name": intent, "state": state}, "sessionAttributes": {"region": "rural"}},
             "messages": [{"contentType": "PlainText", "content": "..."}], "missedUtterance": False}
        if speech:
            e["transcriptions"] = [{"transcription": "...", "transcriptionConfidence": round(rng.uniform(0.5, 1), 2)}]
        out.append(e)
    return out


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def _dialogflow(i: int, rng: random.Random) -> list[dict]:
    conv, t = f"projects/p/locations/global/agents/bench/sessions/s-{i}", T0 + i * 7.0
    intent = INTENTS[i % len(INTENTS)]
    rows = []
    for k in range(3):
        last = k == 2 and i % 4 != 0
        qr = {"transcript": "...", "match": {"matchType": "INTENT", "intent": {"displayName": intent},
                                             "confidence": round(rng.uniform(0.4, 1), 2)},
              "responseMessages": [{"text": {"text": ["..."]}}] + ([{"endInteraction": {}}] if last else []),
              "currentPage": {"name": "x/pages/END_SESSION" if last else "x/pages/p", "displayName": "p"}}
        rows.append({"conversation_name": conv, "turn_position": k + 1, "request_time": _iso(t + 10 * k),
                     "language_code": "en", "request": {"queryInput": {"audio": {"config": {"model": "telephony"}}}},
                     "response": {"queryResult": qr},
                     "partial_responses": [{"recognitionResult": {"isFinal": True,
                                                                  "confidence": round(rng.uniform(0.5, 1), 2)}}]})
    return rows


GENERATORS = {"rasa": _rasa, "lex-v2": _lex, "dialogflow-cx": _dialogflow}


def generate(fmt: str, conversations: int, folder: Path, files: int = 8, seed: int = 0) -> tuple[int, int]:
    """Write ``conversations`` synthetic conversations as JSON lines in ``files`` files, the
    first half of each conversation's records in one file and the rest in another, streamed.
    Returns (records, bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    handles = [open(folder / f"part-{k:03d}.jsonl", "w", encoding="utf-8") for k in range(files)]
    records = 0
    try:
        for i in range(conversations):
            recs = GENERATORS[fmt](i, rng)
            half = len(recs) // 2
            for j, r in enumerate(recs):
                fh = handles[(i if j < half else i * 7 + 3) % files]
                fh.write(json.dumps(r, separators=(",", ":")) + "\n")
            records += len(recs)
    finally:
        for fh in handles:
            fh.close()
    return records, sum(p.stat().st_size for p in folder.iterdir())


def _child(fmt: str, source: str, out: str) -> None:
    from voice_analytics_dagster.defs.ingestion.adapters import AdapterSettings, convert

    result = convert(Path(source), Path(out), fmt, AdapterSettings())
    print(json.dumps({"rows": result.rows, "quarantined": result.quarantined}))


def measure(fmt: str, source: Path, out: Path) -> dict:
    """Convert in a child process; its own peak RSS (os.wait4) and wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "voice_analytics_dagster.tools.adapter_bench", "--child",
                             fmt, str(source), str(out)], stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"conversion failed (exit {proc.returncode})")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, **json.loads(stdout)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m voice_analytics_dagster.tools.adapter_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", choices=FORMATS, default="rasa")
    p.add_argument("--conversations", type=int, nargs="+", default=[100_000],
                   help="sizes; one value N runs N/10 and N (default 100000)")
    p.add_argument("--files", type=int, default=8, help="input files per size (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", help="where inputs and outputs go (default: a temporary folder, removed)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    sizes = args.conversations if len(args.conversations) > 1 else [max(1, args.conversations[0] // 10),
                                                                     args.conversations[0]]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="va-adapter-bench-"))
    figures = []
    try:
        print(f"{'format':<14}{'conversations':>14}{'records':>12}{'input MiB':>11}{'seconds':>9}"
              f"{'peak RSS MiB':>14}{'sessions':>10}{'turns':>10}")
        for n in sizes:
            src, out = work / f"{args.format}-{n}" / "input", work / f"{args.format}-{n}" / "output"
            records, size = generate(args.format, n, src, args.files, args.seed)
            fig = {"format": args.format, "conversations": n, "records": records, "input_bytes": size,
                   **measure(args.format, src, out)}
            figures.append(fig)
            print(f"{args.format:<14}{n:>14,}{records:>12,}{size / 2**20:>11.1f}{fig['seconds']:>9.1f}"
                  f"{fig['peak_rss_mib']:>14.1f}{fig['rows']['voice_sessions']:>10,}{fig['rows']['voice_turns']:>10,}")
            if not args.workdir:
                shutil.rmtree(work / f"{args.format}-{n}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
