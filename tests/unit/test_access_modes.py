"""AUTH_MODE and PRODUCT_READS at start-up: what the app logs, and what AUTH_MODE=off leaves out
(the open contract itself is what the integration suite runs against, with AUTH_MODE=off)."""

from __future__ import annotations

import logging
import secrets

from server.app import create_app
from server.keys import OBSERVER


def start_up_records(caplog, settings) -> list[logging.LogRecord]:
    caplog.set_level(logging.INFO)
    app = create_app(settings)
    assert app is not None
    return [r for r in caplog.records if r.getMessage().startswith("access.")]


def test_auth_mode_off_logs_a_warning_at_start_up(caplog, offline_settings):
    (record,) = start_up_records(caplog, offline_settings.replace(auth_mode="off"))
    assert record.getMessage() == "access.auth_off"
    assert record.levelno == logging.WARNING
    assert "gateway" in record.note


def test_auth_mode_off_checks_nothing_and_has_no_key_routes(offline_settings):
    app = create_app(offline_settings.replace(auth_mode="off"))
    assert not app[OBSERVER].checks_access
    paths = {route.resource.canonical for route in app.router.routes() if route.resource}
    assert "/users" in paths
    assert not [path for path in paths if "api-keys" in path]


def test_public_reads_log_a_warning_at_start_up(caplog, offline_settings):
    settings = offline_settings.replace(auth_mode="api_key", product_reads="public")
    (record,) = start_up_records(caplog, settings)
    assert record.getMessage() == "access.public_reads"
    assert record.levelno == logging.WARNING


def test_api_keys_log_their_rules_but_not_the_admin_keys(caplog, offline_settings):
    admin_key = secrets.token_urlsafe(32)
    settings = offline_settings.replace(auth_mode="api_key", admin_api_keys=admin_key)
    (record,) = start_up_records(caplog, settings)
    assert record.getMessage() == "access.api_keys"
    assert record.levelno == logging.INFO
    assert record.admin_keys == 1
    assert admin_key not in repr(record.__dict__)
    assert create_app(settings)[OBSERVER].checks_access
