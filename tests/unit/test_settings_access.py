"""The access settings: weak admin keys are refused at start-up without ever being echoed, and
the modes and budgets read as documented."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from config.rates import Rate
from config.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
GOOD = secrets.token_urlsafe(32)


def load(**env: str) -> Settings:
    return load_settings(env, None)


@pytest.mark.parametrize(
    ("weak", "why"),
    [
        ("correct-horse-battery", "shorter than 32"),
        ("a1" * 20, "too repetitive"),
        ("catk_" + secrets.token_urlsafe(32), "catk_"),
        ("spaced out " + secrets.token_urlsafe(32), "printable ASCII without spaces"),
        ("tab\t" + secrets.token_urlsafe(32), "printable ASCII without spaces"),
        ("é" + secrets.token_urlsafe(32), "printable ASCII without spaces"),
    ],
)
def test_a_weak_admin_key_is_refused_and_never_echoed(weak, why):
    with pytest.raises(SettingsError) as refused:
        load(ADMIN_API_KEYS=f"{GOOD},{weak}")
    message = str(refused.value)
    assert message.startswith("ADMIN_API_KEYS")
    assert why in message
    assert "key 2" in message  # named by its position in the list
    assert weak not in message
    assert weak[:8] not in message
    assert GOOD not in message


def test_the_settings_error_of_a_weak_admin_key_stops_start_up_without_echoing_it(tmp_path):
    weak = "hunter2hunter2"
    result = subprocess.run(
        [sys.executable, "-c", "from config.settings import load_settings_or_exit as l; l()"],
        cwd=tmp_path,  # no .env there
        env={"ADMIN_API_KEYS": weak, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "ADMIN_API_KEYS" in result.stderr
    assert weak not in result.stderr + result.stdout


def test_strong_admin_keys_load_in_order_with_blanks_dropped():
    other = secrets.token_urlsafe(32)
    settings = load(ADMIN_API_KEYS=f" {GOOD} ,,{other},")
    assert settings.admin_keys == (GOOD, other)


def test_no_admin_keys_by_default():
    assert load().admin_keys == ()


def test_the_access_defaults_are_keys_open_sign_up_private_reads():
    settings = load()
    assert settings.auth_mode == "api_key"
    assert settings.user_signup == "open"
    assert settings.product_reads == "private"
    assert settings.rate_limit_reads == Rate(200, 1.0)
    assert settings.rate_limit_writes == Rate(20, 1.0)
    assert settings.image_quota_per_hour == 1000
    assert settings.idempotency_ttl_hours == 24


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTH_MODE", "none"),
        ("USER_SIGNUP", "closed"),
        ("PRODUCT_READS", "everyone"),
        ("RATE_LIMIT_READS", "200"),
        ("RATE_LIMIT_WRITES", "0/s"),
        ("IMAGE_QUOTA_PER_HOUR", "0"),
        ("IDEMPOTENCY_TTL_HOURS", "0"),
    ],
)
def test_a_bad_access_setting_is_refused_naming_its_variable(name, value):
    with pytest.raises(SettingsError, match=f"^{name}="):
        load(**{name: value})


def test_budgets_read_per_second_minute_or_hour():
    settings = load(RATE_LIMIT_READS="50/min", RATE_LIMIT_WRITES="100/h")
    assert settings.rate_limit_reads == Rate(50, 60.0)
    assert settings.rate_limit_writes == Rate(100, 3600.0)
