"""The gateway's keys files: the secrets file (source id -> API key and/or HMAC key, `GATEWAY_SECRETS_FILE`) and the
operators' file's keys. A key is a `SecretStr` from the moment it is read and never logged or quoted: a file the
gateway does not start with is refused by its place and entry, never its content.

A key names its holder: the gateway takes a request for the source, or the operator, whose key it carries. Two
entries holding one key loaded without a word, and the last one won: an integrator with its own key published as
another source (202), and an erasure's audit record could name the wrong operator (audit of 2026-12-06). A YAML id
written twice kept only its last entry, as silently. Both now stop the gateway at start, in one line that names the
entries or the lines, never a key (`KeysFileError`; `__main__` exits with the status of refused settings).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Protocol

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError

from services.common.yaml_files import problem_at

SHARED_RULE = "every source and operator needs a key of its own (a request is taken for the key's one holder)"


class KeysFileError(ValueError):
    """A secrets or operators file the gateway does not start with: says which entry and why, never a key."""


class DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping key written twice: YAML would keep the last entry and drop the first without a word."""


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that names one key twice (`DuplicateKey`, by its place only: the key
    itself may be a secret written in the wrong place)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_at: dict[Any, str] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a merge (`<<`) may override on purpose; other non-scalar keys are refused as YAML does
            key = str(self.construct_object(key_node))  # as the loaders name an id: `1:` and `"1":` are one id
            at = f"line {key_node.start_mark.line + 1}, column {key_node.start_mark.column + 1}"
            if key in first_at:
                raise DuplicateKey(problem=f"{at}: an id or field written twice (first at {first_at[key]}): YAML "
                                   "would keep only the last")
            first_at[key] = at
        return super().construct_mapping(node, deep)


def keys_file(path: Path) -> dict[Any, Any]:
    """A keys file's YAML mapping (empty for an empty file). Raises KeysFileError for a file that cannot be read, is
    not YAML or names a key twice, naming the place and never quoting it: YAML's own error shows the line it stopped
    on, a key's."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise KeysFileError(f"{path}: cannot be read: {reason}") from None
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader) or {}  # a safe loader: plain data only
    except DuplicateKey as exc:
        raise KeysFileError(f"{path}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise KeysFileError(f"{path}: not valid YAML{problem_at(exc)}") from None
    if not isinstance(raw, dict):
        raise KeysFileError(f"{path}: not a mapping of ids to keys")
    return raw


class HoldsKeys(Protocol):
    """A source's credential (`keys.Credential`)."""

    @property
    def api_key(self) -> SecretStr | None: ...

    @property
    def hmac_key(self) -> SecretStr | None: ...


def source_keys(credentials: Mapping[str, HoldsKeys]) -> Iterator[tuple[str, SecretStr | None]]:
    """Each source's keys, labelled for `refuse_shared_keys`."""
    for source_id, credential in credentials.items():
        yield f"source {source_id}'s api_key", credential.api_key
        yield f"source {source_id}'s hmac_key", credential.hmac_key


def operator_keys(keys: Mapping[str, SecretStr]) -> Iterator[tuple[str, SecretStr | None]]:
    """Each operator's key, labelled for `refuse_shared_keys`."""
    for operator, key in keys.items():
        yield f"operator {operator}", key


def refuse_shared_keys(where: str, *entries: Iterator[tuple[str, SecretStr | None]]) -> None:
    """Raises KeysFileError naming, after `where`, the first two entries that hold one key (an API key that is also
    an HMAC key, its own source's included: it would go out in every request's headers), never the key."""
    holders: dict[str, str] = {}
    for labelled in entries:
        for label, key in labelled:
            if key is None:
                continue
            if (other := holders.get(key.get_secret_value())) is not None:
                raise KeysFileError(f"{where}{other} and {label} hold the same key: {SHARED_RULE}")
            holders[key.get_secret_value()] = label


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


class Credential(BaseModel):
    """One source system's secrets. Either may be absent; a source with neither cannot authenticate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: Key | None = None
    hmac_key: Key | None = None


def load_credentials(path: Path | None) -> dict[str, Credential]:
    """Source id -> credential, from the secrets file (empty when there is none: every request is 401).
    Raises KeysFileError for an entry that is not a credential or holds a key shorter than `MIN_KEY_CHARS`, and for
    a key held twice (`refuse_shared_keys`)."""
    if path is None:
        return {}
    credentials = {}
    for source_id, entry in keys_file(path).items():
        try:
            credentials[str(source_id)] = Credential.model_validate(entry)
        except ValidationError as exc:
            raise KeysFileError(f"{path}: source {source_id}: {entry_problems(exc)}") from None
    refuse_shared_keys(f"{path}: ", source_keys(credentials))
    return credentials


def entry_problems(exc: ValidationError) -> str:
    """What is wrong with an entry, from pydantic's errors without their input (which may be a key) or its length."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        problem = {"too_short": KEY_RULE, "value_error": PLACEHOLDER_RULE}.get(error["type"], error["msg"])
        problems.append(f"{where}: {problem}")
    return "; ".join(problems)
