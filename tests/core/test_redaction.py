"""Secrets never reach a log: not in messages, not in tracebacks, not from a Ray worker's own logging set-up."""

from __future__ import annotations

import io
import logging

import pytest

from ganworks.telemetry import RedactSecrets, register_secrets, setup_worker_logging

SECRET = "wJalrXUtnFEMI-test-secret-key"


@pytest.fixture
def captured():
    """A root handler writing to a buffer, as a Ray worker's logging set-up leaves one (without ganworks' filter)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    register_secrets([SECRET])
    yield stream
    root.handlers[:] = saved


def test_a_worker_logging_set_up_gets_redaction_on_its_existing_handlers(captured):
    setup_worker_logging()
    logging.getLogger("trainer").warning("connecting with %s", SECRET)

    assert SECRET not in captured.getvalue() and "connecting with ***" in captured.getvalue()
    assert sum(isinstance(f, RedactSecrets) for f in logging.getLogger().handlers[0].filters) == 1


def test_a_traceback_whose_exception_text_holds_a_secret_is_logged_redacted(captured):
    setup_worker_logging()
    try:
        raise RuntimeError(f"S3 refused key {SECRET}")
    except RuntimeError:
        logging.getLogger("trainer").exception("upload failed")

    text = captured.getvalue()
    assert "upload failed" in text and "RuntimeError: S3 refused key ***" in text
    assert SECRET not in text

