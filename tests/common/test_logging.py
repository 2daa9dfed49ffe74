"""Log lines never carry an exception's message: it may quote a record (the audit's DEBUG crash traceback repeated a
directory's e-mail address and phone number from pydantic's `input_value`)."""

from __future__ import annotations

import io
import json
import sys

import pytest
import structlog
from pydantic import BaseModel, ValidationError

from services.common.logging import configure

pytestmark = pytest.mark.unit


class Contact(BaseModel):
    phone: int


@pytest.mark.parametrize("as_json", [True, False])
def test_an_exception_is_logged_by_type_and_place_without_its_message(monkeypatch: pytest.MonkeyPatch,
                                                                      as_json: bool) -> None:
    """A ValidationError quoting an address and a phone, logged with `exc_info` at DEBUG (as a crash's traceback is),
    in JSON and on a terminal: the type and this file's line are there, the values nowhere."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    configure("DEBUG", json=as_json)
    try:
        try:
            Contact.model_validate({"phone": "lan.nguyen@example.vn 0912345678"})
        except ValidationError as exc:
            structlog.get_logger("t").debug("service.crash_traceback", exc_info=exc)
        try:
            raise ValueError("Nguyễn Thị Lan, Thôn Nà Tàng")
        except ValueError:
            structlog.get_logger("t").error("task.failed", exc_info=True)
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    assert "ValidationError at " in text and "< test_logging.py:" in text and "ValueError at test_logging.py:" in text
    assert "0912345678" not in text and "lan.nguyen" not in text and "Nguy" not in text and "Thôn" not in text
    if as_json:
        assert [json.loads(line)["event"] for line in text.splitlines()] == ["service.crash_traceback", "task.failed"]
