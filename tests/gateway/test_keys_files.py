"""Keys files: an empty, null or short key stops the gateway at start, in one line that names the entry and never
a key; and an empty key header authenticates no one, whatever the files hold."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.common.refused import BAD_SETTINGS
from services.demo import processes
from services.demo.settings import DemoSettings
from services.gateway import __main__ as gateway_main
from services.gateway.auth import RequestLine, Unauthenticated, identify
from services.gateway.keys import Credential, KeysFileError, load_credentials
from services.gateway.operators import load_operators, operator_of
from services.gateway.settings import ROOT

pytestmark = pytest.mark.unit
SHORT = "short-key-8c1"
LINE = RequestLine(b"POST", b"/v1/events", b"")


@pytest.mark.parametrize("entry", ["alice:", "alice: ''", "alice: ~", f"alice: {SHORT}", "alice: 12345678901234567890",
                                   "alice: [a-list-of-a-key-0123456789]"])
def test_an_operator_without_a_usable_key_stops_the_gateway(tmp_path: Path, entry: str) -> None:
    """`alice:` was the key "None" and `alice: ''` let an empty X-Operator-Key in: now neither loads."""
    message = refusal_of_alice(tmp_path, entry)
    assert "operator alice: a key is a string of at least 16 characters" in message
    assert SHORT not in message and "1234567890" not in message


def refusal_of_alice(tmp_path: Path, entry: str) -> str:
    """The message that refuses an operators file of a good key and `entry` (alice's)."""
    path = tmp_path / "operators.yaml"
    path.write_text(f"duty-officer: {secrets.token_urlsafe(32)}\n{entry}\n", encoding="utf-8")
    with pytest.raises(KeysFileError) as refused:
        load_operators(path)
    return str(refused.value)


@pytest.mark.parametrize("operator", ["x" * 65, "two words", "tab\there"])
def test_an_operator_id_that_could_not_name_an_audits_requester_stops_the_gateway(tmp_path: Path,
                                                                                    operator: str) -> None:
    """An erasure's audit record names `operator:<id>` in 128 characters: a longer id, or one with spaces, is refused
    at start (it was a 500 after the keys were destroyed)."""
    path = tmp_path / "operators.yaml"
    path.write_text(f'"{operator}": {secrets.token_urlsafe(32)}\n', encoding="utf-8")
    with pytest.raises(KeysFileError, match="entry 1: an operator id is 1 to 64 characters"):
        load_operators(path)


@pytest.mark.parametrize("entry", ["{api_key: ''}", "{hmac_key: ''}", f"{{api_key: {SHORT}}}",
                                   "{api_key: 12345678901234567890}", "~", "{api_kee: a-long-enough-key-0123}"])
def test_a_source_without_a_usable_key_stops_the_gateway(tmp_path: Path, entry: str) -> None:
    """`api_key: ""` let an empty X-Api-Key in as that source: an empty, short or non-string key is refused, and the
    message says which source and why without the key (nor its length)."""
    path = tmp_path / "secrets.yaml"
    path.write_text(f"province: {{hmac_key: {secrets.token_urlsafe(32)}}}\none-stop: {entry}\n", encoding="utf-8")
    with pytest.raises(KeysFileError, match="source one-stop: ") as refused:
        load_credentials(path)
    message = str(refused.value)
    assert SHORT not in message and "1234567890" not in message and "not 0" not in message


def test_the_keys_the_docs_make_load() -> None:
    """A key made as the docs say (`secrets.token_urlsafe(32)`) loads."""
    assert Credential(api_key=SecretStr(secrets.token_urlsafe(32))).api_key is not None


def test_the_examples_placeholders_stop_the_gateway() -> None:
    """infra/gateway-secrets.example.yaml copied as it is: refused, naming the source, never the key (its
    `replace-me-with-a-long-random-key` passed the length check: a gateway ran on keys anyone reads in git)."""
    placeholder = "source thuong-lam-one-stop: api_key: the example's placeholder"
    with pytest.raises(KeysFileError, match=placeholder) as refused:
        load_credentials(ROOT / "infra/gateway-secrets.example.yaml")
    assert "replace-me" not in str(refused.value)


@pytest.mark.parametrize("key", ["replace-me-with-a-long-random-key", "CHANGEME-CHANGEME-CHANGEME", "x" * 40,
                                 "your-placeholder-key-0123456789"])
def test_an_operators_placeholder_stops_the_gateway(tmp_path: Path, key: str) -> None:
    """An operator's key left as a placeholder (or one character repeated) is refused like a short one."""
    message = refusal_of_alice(tmp_path, f"alice: {key}")
    assert "operator alice: the example's placeholder" in message and key not in message


def test_the_demo_runs_with_keys_of_its_own(tmp_path: Path) -> None:
    """The demo's gateway gets the example's sources with random keys (once: a later demo keeps them), which load."""
    settings = DemoSettings(run_dir=tmp_path)
    processes.write_configs(settings)
    path = processes.gateway_secrets_file(settings)
    loaded = load_credentials(path)
    assert set(loaded) == {"thuong-lam-one-stop", "lang-son-dossiers"}
    first = path.read_text(encoding="utf-8")
    processes.write_configs(settings)
    assert path.read_text(encoding="utf-8") == first and path.stat().st_mode & 0o077 == 0


def test_the_gateway_does_not_start_with_a_bad_keys_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m services.gateway` with an operator lacking a key: exits with one line, before serving anything,
    and the status of bad configuration (2, as for refused settings; it was 1, a crash's)."""
    (tmp_path / "operators.yaml").write_text("alice:\n", encoding="utf-8")
    monkeypatch.setenv("GATEWAY_OPERATORS_FILE", str(tmp_path / "operators.yaml"))

    def serve(*_: object, **__: object) -> None:
        pytest.fail("the gateway started with an operator who has no key")

    monkeypatch.setattr(gateway_main.runtime, "main", serve)
    with pytest.raises(SystemExit) as exited:
        gateway_main.main()
    assert exited.value.code == BAD_SETTINGS
    refusal = capsys.readouterr().err
    assert re.fullmatch(r"gateway: \S*operators.yaml: operator alice: a key is a string[^\n]*\n", refusal)


@pytest.mark.parametrize("text", ['one-stop:\n  api_key: "{key}\n', "one-stop:\n  api_key: {key}\n  :: [\n",
                                  "one-stop: {{api_key: {key}\n", "one-stop:\n\tapi_key: {key}\n"])
def test_a_keys_file_that_is_not_yaml_is_refused_by_its_place_never_quoted(tmp_path: Path, text: str) -> None:
    """YAML's own error quoted the line it stopped on, a key's: a 43-character key went out as its first 30
    characters and a traceback. Now one line names the file and the place only."""
    key = secrets.token_urlsafe(32)
    path = tmp_path / "secrets.yaml"
    path.write_text(text.format(key=key), encoding="utf-8")
    with pytest.raises(KeysFileError, match=r"secrets.yaml: not valid YAML \(line \d+, column \d+\)$") as refused:
        load_credentials(path)
    assert key[:8] not in str(refused.value)


def test_a_keys_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    """A missing file (or one that is not UTF-8) is one line naming it, not a traceback."""
    with pytest.raises(KeysFileError, match=r"missing.yaml: cannot be read: No such file or directory$"):
        load_operators(tmp_path / "missing.yaml")
    (tmp_path / "latin1.yaml").write_bytes("alice: clé-\xe9\n".encode("latin-1"))
    with pytest.raises(KeysFileError, match=r"latin1.yaml: cannot be read: not UTF-8 text$"):
        load_operators(tmp_path / "latin1.yaml")


def test_an_empty_key_header_authenticates_no_one() -> None:
    """Even with an empty key in memory (built past validation), an empty X-Api-Key or X-Operator-Key matches
    nothing."""
    empty = {"one-stop": Credential.model_construct(api_key=SecretStr(""), hmac_key=None)}
    with pytest.raises(Unauthenticated):
        identify({"x-api-key": ""}, LINE, empty, 0.0, 300)
    assert operator_of({"bob": SecretStr("")}, "") is None
