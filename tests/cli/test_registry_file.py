"""A source registry file the CLI cannot use (`topics create --sources`, the gateway's `GATEWAY_SOURCES_FILE`): one
line naming the file, the place and why, exit 1, never a traceback (audit: a file cut short, one not UTF-8 and an
entry unlike a source were each a traceback, the last quoting the entry's value)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from services.cli import main as cli_main
from services.common import logging as cli_logging
from services.sources.registry import RegistryFileError, load_registry

pytestmark = pytest.mark.unit
FILES = {
    "cut-short.yaml": (b"sources:\n  - id: portal-08\n    owns: [\"/provinces/08/*\"\n", "not valid YAML (line 4"),
    "latin-1.yaml": (b"sources:\n  - id: x\n    name: Ph\xfa\n", "not UTF-8 (byte 31)"),
    "not-a-source.yaml": (b"sources:\n  - id: A B\n    secret_field: s3cr3t-value\n", "not a source registry: "),
}


@pytest.mark.parametrize("name", FILES)
def test_a_registry_file_unlike_one_is_one_line(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The loader's error, then the CLI's line and exit status for it; the entry's input (a secret written in the
    wrong place) not quoted."""
    body, why = FILES[name]
    path = tmp_path / name
    path.write_bytes(body)
    with pytest.raises(RegistryFileError, match=f"^{re.escape(f'{path}: {why}')}"):
        load_registry(path)
    monkeypatch.setattr(sys, "argv", ["commune-bus", "topics", "create", "--sources", str(path)])
    monkeypatch.setattr(cli_logging, "configure", lambda *_, **__: None)  # the process's, not this test's
    with pytest.raises(SystemExit) as ended:
        cli_main.main()
    err = capsys.readouterr().err
    assert ended.value.code == 1 and err.startswith(f"commune-bus: {path}: {why}"), err
    assert "Traceback" not in err and "s3cr3t" not in err and len(err.strip().splitlines()) == 1


def test_intake_and_the_acl_tool_end_at_start_in_one_line_on_a_bad_registry(tmp_path: Path) -> None:
    """Intake (its registry read at start too, not only in each run: a bad file failed every run, restarted with
    back-off) and `python -m services.common.acls` (a traceback) end at once with one line naming the file."""
    from services.common import acls
    from services.intake.settings import IntakeSettings
    from services.intake.worker import intake

    path = tmp_path / "sources.yaml"
    path.write_bytes(FILES["cut-short.yaml"][0])
    for start, program in ((lambda: intake(IntakeSettings(sources_file=str(path), seal_personal_data=False)), "intake"),
                           (lambda: acls.main(["--sources", str(path), "--principals"]), "acls")):
        with pytest.raises(SystemExit) as ended:
            start()
        assert str(ended.value.code).startswith(f"{program}: {path}: not valid YAML (line 4"), ended.value.code
