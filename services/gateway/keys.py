"""The gateway's keys files: the secrets file (source id -> API key and/or HMAC key, `GATEWAY_SECRETS_FILE`) and the
operators' file's keys. A key is a `SecretStr` from the moment it is read and never logged or quoted: a file the
gateway does not start with is refused by its place and entry, never its content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError

MIN_KEY_CHARS = 16
"""The shortest API, HMAC or operator key the gateway starts with. A key made as the docs say
(`secrets.token_urlsafe(32)`) has 43 characters; an empty, null or placeholder-short one is refused."""
KEY_RULE = (f"a key is a string of at least {MIN_KEY_CHARS} characters; make one with "
            "python -c \"import secrets; print(secrets.token_urlsafe(32))\"")
PLACEHOLDER_WORDS = ("replace-me", "replace_me", "changeme", "change-me", "placeholder", "example")
"""Words of a key that was never replaced (infra/gateway-secrets.example.yaml's `replace-me-with-a-long-random-key`
passed the length check: a gateway started with the example's keys, which anyone can read in git)."""
PLACEHOLDER_RULE = "the example's placeholder, not a key: put a key of your own in its place; " + KEY_RULE


def is_placeholder(key: str) -> bool:
    """`key` is a placeholder left in (a word of `PLACEHOLDER_WORDS`, or one character repeated), never a key."""
    text = key.lower()
    return any(word in text for word in PLACEHOLDER_WORDS) or len(set(text)) <= 1


def _not_placeholder(key: SecretStr) -> SecretStr:
    if is_placeholder(key.get_secret_value()):
        raise ValueError(PLACEHOLDER_RULE)
    return key


Key = Annotated[SecretStr, Field(min_length=MIN_KEY_CHARS), AfterValidator(_not_placeholder)]


class KeysFileError(ValueError):
    """A secrets or operators file the gateway does not start with: says which entry and why, never a key."""


class Credential(BaseModel):
    """One source system's secrets. Either may be absent; a source with neither cannot authenticate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: Key | None = None
    hmac_key: Key | None = None


def load_credentials(path: Path | None) -> dict[str, Credential]:
    """Source id -> credential, from the secrets file (empty when there is none: every request is 401).
    Raises KeysFileError for an entry that is not a credential or holds a key shorter than `MIN_KEY_CHARS`."""
    if path is None:
        return {}
    credentials = {}
    for source_id, entry in keys_file(path).items():
        try:
            credentials[str(source_id)] = Credential.model_validate(entry)
        except ValidationError as exc:
            raise KeysFileError(f"{path}: source {source_id}: {entry_problems(exc)}") from None
    return credentials


def keys_file(path: Path) -> dict[Any, Any]:
    """A keys file's YAML mapping (empty for an empty file). Raises KeysFileError for a file that cannot be read or
    is not YAML, naming the place and never quoting it: YAML's own error shows the line it stopped on, a key's."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise KeysFileError(f"{path}: cannot be read: {reason}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise KeysFileError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise KeysFileError(f"{path}: not a mapping of ids to keys")
    return raw


def entry_problems(exc: ValidationError) -> str:
    """What is wrong with an entry, from pydantic's errors without their input (which may be a key) or its length."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        problem = {"too_short": KEY_RULE, "value_error": PLACEHOLDER_RULE}.get(error["type"], error["msg"])
        problems.append(f"{where}: {problem}")
    return "; ".join(problems)
