"""Ledger accounts: their names, which are sharded, and how a payment is split between payees.

Every credit movement is a transfer between accounts whose deltas sum to zero (docs/earnings.md):

| account | what | sign |
|---|---|---|
| `wallet:<user>` | a user's spendable credits (`held` = credits of theirs in call holds) | ≥ 0 from spending |
| `hold:<key>` | credits reserved for one call (escrow), captured per minute, the rest released | ≥ 0 |
| `earnings:<user>` | a creator's earnings, sharded | ≥ 0 |
| `payout:<user>` | a creator's payouts requested and not yet decided | ≥ 0 |
| `platform:revenue` | the platform's share of everything spent, sharded | ≥ 0 |
| `platform:clearing:<provider>` | credits sold for money (negative: money came in), minus refunds | ≤ 0 |
| `platform:promotions` | credits given away (signup bonus, admin grants) | ≤ 0 |
| `platform:payouts` | credits paid out to creators as money (they left the system) | ≥ 0 |

Sharding: an account that many payers credit at once (the platform's revenue, a popular creator's
earnings) would be written by every concurrent batch on every node, and concurrent transactions on
one document conflict. So those accounts are `SHARDS` documents each, `<account>~<n>`, and a
transfer credits the shard chosen by its payer: two batches then only contend when they serve the
same payer, whose wallet they contend on anyway. The account's balance is the sum of its shards.
"""

from __future__ import annotations

import zlib

SHARDS = 8
SEP = "~"

PLATFORM_REVENUE = "platform:revenue"
PLATFORM_PROMOTIONS = "platform:promotions"
PLATFORM_PAYOUTS = "platform:payouts"
_SHARDED_PREFIXES = ("earnings:", "platform:")
# Accounts whose entries users list over REST (indexed per entry); platform accounts are not.
_LISTED_PREFIXES = ("wallet:", "earnings:", "payout:")


def wallet(user: str) -> str:
    return f"wallet:{user}"


def earnings(user: str) -> str:
    return f"earnings:{user}"


def payout(user: str) -> str:
    return f"payout:{user}"


def hold(key: str) -> str:
    return f"hold:{key}"


def clearing(provider: str) -> str:
    return f"platform:clearing:{provider}"


def is_sharded(account: str) -> bool:
    return account.startswith(_SHARDED_PREFIXES)


def is_listed(account: str) -> bool:
    return account.startswith(_LISTED_PREFIXES)


def is_shard(doc_id: str) -> bool:
    """True for one shard's document id of a sharded account (`earnings:bob~3`)."""
    if not is_sharded(doc_id) or SEP not in doc_id:
        return False
    suffix = doc_id.rsplit(SEP, 1)[1]
    return suffix.isdigit() and int(suffix) < SHARDS


def shard_of(account: str, payer: str) -> str:
    """The document a transfer paid by `payer` writes for `account` (a shard's id is used as is)."""
    if not is_sharded(account) or is_shard(account):
        return account
    return f"{account}{SEP}{zlib.crc32(payer.encode()) % SHARDS}"


def shards(account: str) -> list[str]:
    """Every document of `account` (one for an unsharded account)."""
    if not is_sharded(account):
        return [account]
    return [f"{account}{SEP}{n}" for n in range(SHARDS)]


def logical(doc_id: str) -> str:
    """The account a document belongs to."""
    if is_sharded(doc_id) and SEP in doc_id:
        return doc_id.rsplit(SEP, 1)[0]
    return doc_id


def owner(account: str) -> str | None:
    """The user of a `wallet:`/`earnings:`/`payout:` account, else None."""
    for prefix in _LISTED_PREFIXES:
        if account.startswith(prefix):
            return account[len(prefix):]
    return None


def share(gross_before: int, amount: int, pct: int) -> int:
    """The payee's part of `amount`, given the gross it already received at this rate (the carry rule).

    Payee total after any sequence of payments == floor(gross_total * pct / 100): each payment's
    share is the increase of that floor, so rounding never creates or loses a credit, and small
    payments (1 credit at 60%) are paid out as whole credits as they accumulate (0, 1, 0, 1, 1, ...)
    instead of always rounding to 0 or to 1. The rest of each payment goes to the platform.
    """
    return (gross_before + amount) * pct // 100 - gross_before * pct // 100
