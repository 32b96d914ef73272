"""Fixtures shared by the REST tests: the local Stripe API server (third party, replaced)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.fake_stripe import FakeStripe


@pytest.fixture
async def stripe_api() -> AsyncIterator[FakeStripe]:
    fake = FakeStripe()
    await fake.start()
    yield fake
    await fake.stop()
