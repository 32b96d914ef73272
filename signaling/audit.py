"""Call records against the ledger: what `python -m server reconcile` checks for calls.

For every settled call: its `call_minute` entries are minutes 1..billed_minutes exactly, their
credits add up to the record's `credits`, and its hold account is empty. Every `call_minute` entry
belongs to a call that exists.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from pymongo.asynchronous.database import AsyncDatabase

from billing import accounts
from signaling.billing import MINUTE_KIND, hold_key
from signaling.model import Doc


@dataclass
class CallAudit:
    calls: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def audit_calls(db: AsyncDatabase[Doc]) -> CallAudit:
    minutes: dict[str, dict[int, int]] = defaultdict(dict)
    # Minutes charged by calls carry their call in `meta` (other tools may use the kind for holds).
    async for e in db["ledger"].find({"k": MINUTE_KIND, "meta.call": {"$exists": True}}, {"meta": 1},
                                     batch_size=2000):
        meta = e["meta"]
        minutes[str(meta["call"])][int(meta.get("minute", 0))] = int(meta.get("credits", 0))
    report = CallAudit()
    seen: set[str] = set()
    async for call in db["calls"].find({}, {"billed_minutes": 1, "credits": 1, "settled": 1}):
        seen.add(call["_id"])
        if not call.get("settled"):
            continue
        report.calls += 1
        charged = minutes.get(call["_id"], {})
        billed = int(call.get("billed_minutes", 0))
        if sorted(charged) != list(range(1, billed + 1)):
            report.problems.append(f"call {call['_id']}: minutes charged {sorted(charged)}, record says {billed}")
        if sum(charged.values()) != int(call.get("credits", 0)):
            report.problems.append(f"call {call['_id']}: ledger {sum(charged.values())} credits, "
                                   f"record {call.get('credits')}")
        hold = await db["ledger_accounts"].find_one({"_id": accounts.hold(hold_key(call["_id"]))}, {"balance": 1})
        if hold is not None and int(hold.get("balance", 0)) != 0:
            report.problems.append(f"call {call['_id']}: {hold['balance']} credits still on hold")
    for call_id in set(minutes) - seen:
        report.problems.append(f"minutes charged for call {call_id}, which has no record")
    return report
