"""Call quality figures: the E-model MOS of DESIGN.md, its grades, and the statistics a probe or a
call's stats samples are summarised with (percentiles, RFC 3550 interarrival jitter).

The E-model variant is the simplified one Twilio and LiveKit use for live calls: an effective latency
`EL = rtt + 2·jitter + 10` (ms; jitter counts double because a jitter buffer trades it for delay,
10 ms is codec delay), an R factor from 94.768 that drops slowly below 160 ms and fast above, minus
2.5 per percent of loss, mapped to MOS by ITU-T G.107's formula (1.0 .. 4.5).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

GRADES = ("excellent", "good", "fair", "poor")
UNREACHABLE = "unreachable"
_THRESHOLDS = ((4.2, "excellent"), (3.7, "good"), (3.1, "fair"))


def r_factor(rtt_ms: float, jitter_ms: float = 0.0, loss_pct: float = 0.0) -> float:
    effective = rtt_ms + 2 * jitter_ms + 10.0
    if effective < 160:
        r = 94.768 - effective / 40
    elif effective < 1000:
        r = 94.768 - (effective - 120) / 10
    else:
        r = 0.0
    return max(0.0, r - 2.5 * loss_pct)


def mos(rtt_ms: float, jitter_ms: float = 0.0, loss_pct: float = 0.0) -> float:
    """Mean opinion score, 1.0 (unusable) .. ~4.5 (best narrowband-equivalent), rounded to 2 places."""
    r = r_factor(rtt_ms, jitter_ms, loss_pct)
    value = 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)
    return round(min(4.5, max(1.0, value)), 2)


def grade(score: float) -> str:
    for floor, name in _THRESHOLDS:
        if score >= floor:
            return name
    return "poor"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def rfc3550_jitter(samples: Sequence[float]) -> float:
    """RFC 3550 §6.4.1 smoothed jitter over consecutive differences of `samples` (here: RTTs in
    arrival order): J += (|D| - J) / 16."""
    jitter = 0.0
    for prev, cur in itertools.pairwise(samples):
        jitter += (abs(cur - prev) - jitter) / 16
    return jitter


def public_quality(q: Mapping[str, Any], role: str) -> dict[str, Any]:
    """A call record's `quality` as a party sees it in their history: their own probe before the
    call, per minute each party's average/min/max figures, and the refunded minutes with why."""
    minutes = []
    for minute in sorted(q.get("minutes", {}), key=int):
        row: dict[str, Any] = {"minute": int(minute)}
        for party, figures in q["minutes"][minute].items():
            row[party] = {name: {"avg": round(m["sum"] / m["n"], 2), "min": m["min"], "max": m["max"]}
                          for name, m in figures.items() if isinstance(m, dict) and m.get("n")}
        minutes.append(row)
    out: dict[str, Any] = {"probe": q.get("probes", {}).get(role), "minutes": minutes}
    if q.get("refunds"):
        out["refunds"] = [{"minute": r["minute"], "credits": r["credits"], "reason": r["reason"]}
                          for r in q["refunds"]]
    return out
