"""The credit packages users can buy: credits for a price, in one or more currencies (minor units).

Defaults are the product's (Small/Medium/Large/X-Large). `PAIRLY_CREDIT_PACKAGES` replaces the whole
catalogue with a JSON list, validated at start-up:

    [{"id": "small", "name": "Small", "credits": 50, "prices": {"inr": 5000, "usd": 60}}, ...]

Prices are integers in the currency's minor unit (paise, cents); currencies are ISO 4217 codes,
stored lower-case (the form Stripe and our purchase records use; Razorpay gets them upper-case).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from config.errors import InvalidPayload
from config.settings import ConfigError, Env

PACKAGES_VAR = "PAIRLY_CREDIT_PACKAGES"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_CURRENCY_RE = re.compile(r"^[a-z]{3}$")
# Currencies whose minor unit is not 1/100 of the major unit (display only; amounts are minor units).
_ZERO_DECIMAL = {"jpy", "krw", "vnd", "clp", "isk", "ugx", "xaf", "xof"}
_SYMBOLS = {"inr": "₹", "usd": "$", "eur": "€", "gbp": "£"}
_MAX_PACKAGES = 50


def minor_digits(currency: str) -> int:
    """Decimal digits of the currency's minor unit: 2 (cents, paise), 0 for zero-decimal currencies."""
    return 0 if currency.lower() in _ZERO_DECIMAL else 2


@dataclass(frozen=True, slots=True)
class Price:
    currency: str
    amount: int
    """Minor units (paise, cents)."""

    def display(self) -> str:
        if self.currency in _ZERO_DECIMAL:
            number = f"{self.amount:,}"
        else:
            number = f"{self.amount // 100:,}.{self.amount % 100:02d}"
        symbol = _SYMBOLS.get(self.currency)
        return f"{symbol}{number}" if symbol else f"{self.currency.upper()} {number}"

    def public(self) -> dict[str, Any]:
        return {"currency": self.currency, "amount": self.amount, "display": self.display()}


@dataclass(frozen=True, slots=True)
class CreditPackage:
    id: str
    name: str
    credits: int
    prices: tuple[Price, ...]

    def price(self, currency: str) -> Price | None:
        currency = currency.lower()
        return next((p for p in self.prices if p.currency == currency), None)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "credits": self.credits,
                "prices": [p.public() for p in self.prices]}


DEFAULT_PACKAGES: tuple[CreditPackage, ...] = (
    CreditPackage("small", "Small", 50, (Price("inr", 5_000), Price("usd", 60))),
    CreditPackage("medium", "Medium", 120, (Price("inr", 10_000), Price("usd", 120))),
    CreditPackage("large", "Large", 300, (Price("inr", 20_000), Price("usd", 240))),
    CreditPackage("xlarge", "X-Large", 600, (Price("inr", 35_000), Price("usd", 420))),
)


class Catalogue:
    """The packages on sale, in display order."""

    def __init__(self, packages: Sequence[CreditPackage] = DEFAULT_PACKAGES) -> None:
        self._packages = tuple(packages)
        self._by_id = {p.id: p for p in self._packages}

    def replace(self, packages: Sequence[CreditPackage]) -> None:
        """Put a new catalogue on sale (runtime pricing); purchases already created keep their package."""
        self._packages = tuple(packages)
        self._by_id = {p.id: p for p in self._packages}

    def __iter__(self) -> Iterator[CreditPackage]:
        return iter(self._packages)

    def __len__(self) -> int:
        return len(self._packages)

    def get(self, package_id: object) -> CreditPackage:
        if not isinstance(package_id, str) or package_id not in self._by_id:
            raise InvalidPayload(f"unknown package {package_id!r}; one of: {', '.join(self._by_id)}")
        return self._by_id[package_id]

    def public(self) -> list[dict[str, Any]]:
        return [p.public() for p in self._packages]

    @classmethod
    def from_env(cls, env: Env) -> Catalogue:
        raw = env.text(PACKAGES_VAR)
        if raw is None:
            return cls()
        return cls(parse_packages(raw))


def parse_packages(raw: str, var: str = PACKAGES_VAR) -> list[CreditPackage]:
    """Parse and validate a JSON catalogue; every problem raises ConfigError naming `var`."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(var, f"must be a JSON list of packages: {exc}") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(var, "must be a non-empty JSON list of packages")
    if len(data) > _MAX_PACKAGES:
        raise ConfigError(var, f"at most {_MAX_PACKAGES} packages")
    packages: list[CreditPackage] = []
    seen: set[str] = set()
    for n, item in enumerate(data):
        where = f"package #{n + 1}"
        if not isinstance(item, Mapping):
            raise ConfigError(var, f"{where} must be an object")
        pid = item.get("id")
        if not isinstance(pid, str) or not _ID_RE.match(pid):
            raise ConfigError(var, f"{where}: id must match {_ID_RE.pattern}")
        if pid in seen:
            raise ConfigError(var, f"{where}: duplicate id {pid!r}")
        seen.add(pid)
        name = item.get("name", pid)
        if not isinstance(name, str) or not name.strip() or len(name) > 60:
            raise ConfigError(var, f"{pid}: name must be a non-empty string (<= 60 chars)")
        credits = item.get("credits")
        if not _positive_int(credits):
            raise ConfigError(var, f"{pid}: credits must be a positive integer")
        prices = item.get("prices")
        if not isinstance(prices, Mapping) or not prices:
            raise ConfigError(var, f"{pid}: prices must be an object like {{\"inr\": 5000, \"usd\": 60}}")
        parsed: list[Price] = []
        for currency, amount in prices.items():
            code = str(currency).lower()
            if not _CURRENCY_RE.match(code):
                raise ConfigError(var, f"{pid}: {currency!r} is not an ISO 4217 currency code")
            if not _positive_int(amount):
                raise ConfigError(var, f"{pid}: price in {code} must be a positive integer in minor units")
            parsed.append(Price(code, amount))
        packages.append(CreditPackage(pid, name.strip(), credits, tuple(parsed)))
    return packages


def _positive_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
