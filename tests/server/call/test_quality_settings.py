"""Call-quality settings: safe defaults, and every bad value refused at start-up naming its variable."""

from __future__ import annotations

import pytest

from config.settings import ConfigError, Env
from signaling.mos import grade, mos
from signaling.probe import ProbeSettings
from signaling.quality import QualitySettings


def test_defaults_are_safe() -> None:
    probe, quality = ProbeSettings.from_env(Env({})), QualitySettings.from_env(Env({}))
    assert (probe.duration_s, probe.packets, probe.max_concurrent, probe.host_addresses) == (5.0, 100, 20, None)
    assert quality.refund is False and quality.refund_mos == 2.5


@pytest.mark.parametrize(("var", "value"), [
    ("PAIRLY_ICE_HOST_ADDRESSES", "127.0.0.1,localhost"),
    ("PAIRLY_PROBE_INTERVAL_MS", "9000"),  # longer than the 5 s probe
    ("PAIRLY_PROBE_MAX_CONCURRENT", "0"),
    ("PAIRLY_PROBE_TIMEOUT_S", "0"),
    ("PAIRLY_PROBE_MAX_SDP_BYTES", "10"),
    ("PAIRLY_CALL_QUALITY_REFUND", "maybe"),
    ("PAIRLY_CALL_QUALITY_REFUND_MOS", "4.8"),
    ("PAIRLY_CALL_QUALITY_MIN_SAMPLES", "0"),
    ("PAIRLY_CALL_MAX_STATS_PER_PARTY", "-1"),
])
def test_bad_values_are_refused(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        ProbeSettings.from_env(Env({var: value}))
        QualitySettings.from_env(Env({var: value}))
    assert err.value.var == var


def test_host_addresses_accept_ipv4_and_ipv6() -> None:
    hosts = ProbeSettings.from_env(Env({"PAIRLY_ICE_HOST_ADDRESSES": "127.0.0.1, ::1"})).host_addresses
    assert hosts == ("127.0.0.1", "::1")


def test_the_e_model_grades() -> None:
    assert mos(0.5) == 4.43 and grade(mos(0.5)) == "excellent"
    assert grade(mos(150)) == "excellent" and mos(150) < mos(0.5)  # delay alone costs little below 160 ms
    assert grade(mos(20, loss_pct=10)) == "fair" and grade(mos(300, 40, 5)) == "poor"
    assert mos(900, 100, 20) == 1.0 and grade(4.2) == "excellent" and grade(3.7) == "good" and grade(3.1) == "fair"
