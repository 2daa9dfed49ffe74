"""Keys files: an empty, null or short key, one key for two entries and an id written twice stop the gateway at
start, in one line that names the entry and never a key; and an empty key header authenticates no one, whatever the
files hold."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.common.refused import BAD_SETTINGS
from services.demo import processes
from services.demo.settings import DemoSettings
from services.gateway import __main__ as gateway_main
from services.gateway.auth import RequestLine, Unauthenticated, identify
from services.gateway.keys import SHARED_RULE, Credential, KeysFileError, load_credentials
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

    refusal = refused_start(monkeypatch, capsys, "an operator who has no key")
    assert re.fullmatch(r"gateway: \S*operators.yaml: operator alice: a key is a string[^\n]*\n", refusal)


def refused_start(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], what: str) -> str:
    """`python -m services.gateway` as configured: it must exit with the status of bad configuration before serving
    (`what` names the fault, for the failure's message); what it said on stderr."""
    def serve(*_: object, **__: object) -> None:
        pytest.fail(f"the gateway started with {what}")

    monkeypatch.setattr(gateway_main.runtime, "main", serve)
    with pytest.raises(SystemExit) as exited:
        gateway_main.main()
    assert exited.value.code == BAD_SETTINGS
    return capsys.readouterr().err


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


@pytest.mark.parametrize("first, second, named", [
    ("{{api_key: {key}}}", "{{api_key: {key}}}", "source one-stop's api_key and source province's api_key"),
    ("{{api_key: {key}}}", "{{hmac_key: {key}}}", "source one-stop's api_key and source province's hmac_key"),
    ("{{api_key: {key}, hmac_key: {key}}}", "{{hmac_key: {other}}}",
     "source one-stop's api_key and source one-stop's hmac_key"),
], ids=["two API keys", "an API key and an HMAC key", "one source's two keys"])
def test_one_key_for_two_sources_stops_the_gateway(tmp_path: Path, first: str, second: str, named: str) -> None:
    """Two sources holding one key loaded, and a request with it was taken for the last: one-stop's integrator
    published as the province (202). Now refused, naming both entries, never the key; an API key that is also an
    HMAC key, its own source's included, too (it would go out in every request's headers)."""
    key, other = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    path = tmp_path / "secrets.yaml"
    path.write_text(f"one-stop: {first}\nprovince: {second}\n".format(key=key, other=other), encoding="utf-8")
    with pytest.raises(KeysFileError) as refused:
        load_credentials(path)
    assert str(refused.value) == f"{path}: {named} hold the same key: {SHARED_RULE}"


def test_one_key_for_two_operators_stops_the_gateway(tmp_path: Path) -> None:
    """Two operators holding one key: an erasure's audit record named the last (bob for alice's erasure). Now
    refused, naming both, never the key."""
    key = secrets.token_urlsafe(32)
    message = refusal_of_alice(tmp_path, f"alice: {key}\nbob: {key}")
    assert message.endswith("operators.yaml: operator alice and operator bob hold the same key: " + SHARED_RULE)
    assert key not in message


def test_one_key_for_a_source_and_an_operator_stops_the_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m services.gateway` with a source's API key also an operator's: exits with one line naming both
    entries (each file alone is fine) and the status of refused settings, before serving anything."""
    key = secrets.token_urlsafe(32)
    (tmp_path / "secrets.yaml").write_text(f"one-stop: {{api_key: {key}}}\n", encoding="utf-8")
    (tmp_path / "operators.yaml").write_text(f"alice: {key}\n", encoding="utf-8")
    monkeypatch.setenv("GATEWAY_SECRETS_FILE", str(tmp_path / "secrets.yaml"))
    monkeypatch.setenv("GATEWAY_OPERATORS_FILE", str(tmp_path / "operators.yaml"))

    refusal = refused_start(monkeypatch, capsys, "a key that is both a source's and an operator's")
    assert re.fullmatch(r"gateway: \S*secrets.yaml and \S*operators.yaml: source one-stop's api_key and operator "
                        r"alice hold the same key: [^\n]*\n", refusal)
    assert key not in refusal


@pytest.mark.parametrize("name, text, load, second, first", [
    ("operators.yaml", "alice: {key}\nbob: {other}\nalice: {third}\n", load_operators, "line 3, column 1",
     "line 1, column 1"),
    ("secrets.yaml", "one-stop: {{api_key: {key}}}\nprovince: {{hmac_key: {other}}}\none-stop: {{hmac_key: {third}}}\n",
     load_credentials, "line 3, column 1", "line 1, column 1"),
    ("secrets.yaml", "one-stop:\n  api_key: {key}\n  api_key: {other}\n", load_credentials, "line 3, column 3",
     "line 2, column 3"),
    ("secrets.yaml", "one-stop: {{api_key: {key}, api_key: {other}}}\n", load_credentials, "line 1, column 66",
     "line 1, column 12"),
    ("operators.yaml", "1: {key}\n\"1\": {other}\n", load_operators, "line 2, column 1", "line 1, column 1"),
    ("secrets.yaml", "7: {{api_key: {key}}}\n'7': {{api_key: {other}}}\n", load_credentials, "line 2, column 1",
     "line 1, column 1"),
], ids=["an operator twice", "a source twice", "a field twice", "a field twice on one line",
        "an operator twice, as a number and a string", "a source twice, as a number and a string"])
def test_an_id_or_field_written_twice_stops_the_gateway(tmp_path: Path, name: str, text: str,
                                                        load: Callable[[Path], object], second: str,
                                                        first: str) -> None:
    """YAML keeps the last of a key written twice: an operator or source listed twice lost its first entry without a
    word (the gateway started with one of alice's two keys). Now refused by its lines, never quoting them."""
    keys = [secrets.token_urlsafe(32) for _ in range(3)]
    path = tmp_path / name
    path.write_text(text.format(key=keys[0], other=keys[1], third=keys[2]), encoding="utf-8")
    with pytest.raises(KeysFileError) as refused:
        load(path)
    message = str(refused.value)
    assert message == f"{path}: {second}: an id or field written twice (first at {first}): YAML would keep only " \
                      "the last"
    assert not any(key[:8] in message for key in keys)
