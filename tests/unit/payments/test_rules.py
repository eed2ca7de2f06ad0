"""Payment rules that need no database: failure codes, recheck waits, settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from bazaar.payments.models import FailureCode
from bazaar.payments.service import failure_code_of, recheck_delay
from bazaar.payments.settings import PaymentsSettings


@pytest.mark.parametrize(
    ("provider_code", "code"),
    [
        ("card_declined", FailureCode.CARD_DECLINED),
        ("insufficient_funds", FailureCode.INSUFFICIENT_FUNDS),
        ("expired_card", FailureCode.EXPIRED_CARD),
        ("do_not_honor", FailureCode.CARD_DECLINED),
        (None, FailureCode.CARD_DECLINED),
        ("cancelled", FailureCode.CARD_DECLINED),
    ],
)
def test_provider_decline_codes_map_to_platform_codes(
    provider_code: str | None, code: FailureCode
) -> None:
    assert failure_code_of(provider_code) is code


def test_rechecks_wait_longer_each_time_up_to_a_ceiling() -> None:
    waits = [recheck_delay(n, first=1.0, longest=30.0) for n in range(8)]
    assert waits[:5] == [timedelta(seconds=s) for s in (1, 2, 4, 8, 16)]
    assert waits[5:] == [timedelta(seconds=30)] * 3
    assert recheck_delay(10_000, first=1.0, longest=30.0) == timedelta(seconds=30)


def test_settings_come_from_the_payments_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAZAAR_PAYMENTS_PSP_URL", "http://psp.example:9000")
    monkeypatch.setenv("BAZAAR_PAYMENTS_PSP_API_KEY", "sk_live_secret")
    monkeypatch.setenv("BAZAAR_PAYMENTS_PROVIDER_TIMEOUT_SECONDS", "2.5")
    settings = PaymentsSettings()
    assert settings.port == 8104
    assert settings.psp_url == "http://psp.example:9000"
    assert settings.psp_api_key.get_secret_value() == "sk_live_secret"
    assert "sk_live_secret" not in repr(settings)
    assert settings.provider_timeout_seconds == 2.5


def test_defaults() -> None:
    settings = PaymentsSettings()
    assert settings.psp_url == "http://127.0.0.1:8099"
    assert settings.psp_api_key.get_secret_value() == "sk_test_bazaar"
    assert settings.provider_timeout_seconds == 5.0


def test_a_lease_too_short_for_a_lookup_and_a_charge_is_refused() -> None:
    with pytest.raises(ValidationError):
        PaymentsSettings(provider_timeout_seconds=5.0, claim_lease_seconds=10.0)
    PaymentsSettings(provider_timeout_seconds=5.0, claim_lease_seconds=12.5)
