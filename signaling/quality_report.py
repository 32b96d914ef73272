"""Quality over a time window, for operators (`GET /api/admin/calls/quality`).

A call's quality is what its parties reported with `call:stats`: each party's average MOS in each
billed minute (signaling.quality files the samples per minute). The call's MOS is the mean of those
party-minutes and its worst minute the lowest of them; its grade follows from its MOS by the probe's
scale (signaling.mos). Calls without a single sample are counted apart (`no_stats`): most clients may
not send stats, and a call without them is unknown, not good.

The window is by the time a call was placed: call ids begin with their creation time in milliseconds,
so the window is an `_id` range on the (state, _id) index. At most `scan_max` calls are read; past that
the answer says `truncated` (narrow the window).
"""

from __future__ import annotations

import datetime as dt
import heapq

from pymongo.asynchronous.database import AsyncDatabase

from signaling import mos as quality
from signaling.model import ENDED, Doc, iso

_FIELDS = {"caller": 1, "callee": 1, "media": 1, "reason": 1, "accepted_at": 1, "ended_at": 1, "duration_s": 1,
           "billed_minutes": 1, "credits": 1, "quality": 1}


def _id_at(moment: dt.datetime) -> str:
    return f"c{int(moment.timestamp() * 1000):011x}"


def party_minutes(q: Doc) -> list[tuple[int, str, float]]:
    """(minute, role, average MOS) for every party-minute with MOS samples."""
    out = []
    for minute, parties in (q.get("minutes") or {}).items():
        for role, figures in parties.items():
            m = figures.get("mos") if isinstance(figures, dict) else None
            if isinstance(m, dict) and m.get("n"):
                out.append((int(minute), role, m["sum"] / m["n"]))
    return out


class QualityReport:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.calls = db["calls"]
        self.probes = db["call_probes"]

    async def window(self, since: dt.datetime, until: dt.datetime, *, worst: int, scan_max: int) -> Doc:
        grades = dict.fromkeys((*quality.GRADES, "no_stats"), 0)
        scored: list[tuple[float, str, Doc]] = []
        calls = 0
        truncated = False
        query = {"state": ENDED, "accepted_at": {"$ne": None}, "_id": {"$gte": _id_at(since), "$lt": _id_at(until)}}
        async for doc in self.calls.find(query, _FIELDS).sort("_id", -1).limit(scan_max + 1):
            if calls == scan_max:
                truncated = True
                break
            calls += 1
            cells = party_minutes(doc.get("quality") or {})
            if not cells:
                grades["no_stats"] += 1
                continue
            score = sum(c[2] for c in cells) / len(cells)
            grades[quality.grade(score)] += 1
            # Keep the `worst` lowest: a max-heap by negated score.
            item = (-score, doc["_id"], doc)
            if len(scored) < worst:
                heapq.heappush(scored, item)
            elif worst and item > scored[0]:
                heapq.heapreplace(scored, item)
        probe_grades = dict.fromkeys((*quality.GRADES, quality.UNREACHABLE), 0)
        async for p in self.probes.find({"at": {"$gte": since, "$lt": until}}, {"grade": 1}):
            if p.get("grade") in probe_grades:
                probe_grades[p["grade"]] += 1
        ranked = sorted(scored, key=lambda item: (-item[0], item[1]))
        return {"since": iso(since), "until": iso(until), "calls": calls, "truncated": truncated,
                "grades": grades, "probes": probe_grades,
                "worst": [_worst_view(doc, -neg) for neg, _, doc in ranked]}


def _worst_view(doc: Doc, score: float) -> Doc:
    q = doc.get("quality") or {}
    cells = party_minutes(q)
    low = min(cells, key=lambda c: c[2])
    return {"call_id": doc["_id"], "caller": doc["caller"], "callee": doc["callee"], "media": doc["media"],
            "reason": doc.get("reason"), "accepted_at": iso(doc.get("accepted_at")),
            "ended_at": iso(doc.get("ended_at")), "duration_s": doc.get("duration_s"),
            "billed_minutes": doc.get("billed_minutes"), "credits": doc.get("credits"),
            "mos": round(score, 2), "grade": quality.grade(score),
            "worst_minute": {"minute": low[0], "party": low[1], "mos": round(low[2], 2)},
            "probes": q.get("probes") or {}, "minutes": quality.public_quality(q, "caller")["minutes"],
            "refunds": [{"minute": r["minute"], "credits": r["credits"], "reason": r["reason"]}
                        for r in q.get("refunds", ())]}

