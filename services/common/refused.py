"""Settings refused at start: one line per problem on stderr naming the variable, never its value; exit status 2.

Settings are built before logging is configured, so pydantic's report of a refused value reached stderr as it is,
and it quotes the value (`input_value='kek-2:...'`): a key given in the wrong variable was printed whole. Exit
status 2 is the project's for bad configuration (the CLI's for missing keys, argparse's for bad usage).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings, SettingsError

BAD_SETTINGS = 2
"""Exit status of a process whose settings are refused."""
REDACTED = "(the value given)"


@contextmanager
def settings_checked(program: str) -> Iterator[None]:
    """Settings built inside are refused as `program: VARIABLE: problem` lines and exit status 2. A validation
    error of anything but a settings class (a record's model) goes on as it is."""
    try:
        yield
    except ValidationError as exc:
        settings = _settings_class(exc.title)
        if settings is None:
            raise
        lines = problems(exc, settings)
    except SettingsError as exc:  # a value pydantic-settings could not decode (JSON): the variable named, no value
        lines = [undecodable(exc)]
    else:
        return
    sys.stderr.write("".join(f"{program}: {line}\n" for line in lines))
    sys.stderr.flush()
    raise SystemExit(BAD_SETTINGS) from None


def problems(exc: ValidationError, settings: type[BaseSettings]) -> list[str]:
    """`VARIABLE: problem` for each error of `exc`, without the value (nor a message quoting it)."""
    lines = []
    for error in exc.errors(include_url=False):
        message = _without(error["msg"], error.get("input"))
        name = variable(settings, error["loc"])
        lines.append(f"{name}: {message}" if name else message)
    return lines


def undecodable(exc: SettingsError) -> str:
    """`VARIABLE: not valid JSON (why, at column N)` for a value pydantic-settings could not decode. Its own message
    names the field (`error parsing value for field "rate_per_s" from source ...`), which no operator sets; the
    settings class is the one being built in the traceback. JSON's reason and place quote nothing of the value."""
    field = re.search(r'field "(\w+)"', str(exc))
    settings = _building(exc)
    if field is None or settings is None:
        return str(exc)
    cause = exc.__cause__
    why = f" ({cause.msg}, at column {cause.colno})" if isinstance(cause, json.JSONDecodeError) else ""
    return f"{variable(settings, (field.group(1),))}: not valid JSON{why}"


def _building(exc: BaseException) -> type[BaseSettings] | None:
    """The class of the settings whose `__init__` raised `exc` (the innermost, for settings built inside others)."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, BaseSettings):
                found = type(value)
        tb = tb.tb_next
    return found


def variable(settings: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    """The environment variable an error's location names (`INTAKE_MAX_RECORD_BYTES`, `KAFKA_BOOTSTRAP`), and the
    place inside it for a mapping's entry; empty for an error of the whole (a check across fields)."""
    if not loc:
        return ""
    head, rest = str(loc[0]), "".join(f"[{part}]" for part in loc[1:])
    field = settings.model_fields.get(head)
    if field is None:  # reported under its alias already (`KAFKA_*`, a choice of `AliasChoices`)
        return head.upper() + rest
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        alias = next((choice for choice in alias.choices if isinstance(choice, str)), None)
    if isinstance(alias, str):
        return alias.upper() + rest
    return (str(settings.model_config.get("env_prefix", "")) + head).upper() + rest


def _without(message: str, value: Any) -> str:
    """`message` with any text of `value` (a string, or one inside a mapping or list) replaced: a validator's own
    message may quote what it refused."""
    for text in sorted(_texts(value), key=len, reverse=True):
        message = message.replace(text, REDACTED)
    return message


def _texts(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value} if len(value) >= 3 else set()  # shorter ones are no secret, and would mangle the message
    if isinstance(value, dict):
        return set().union(*(_texts(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple | set):
        return set().union(*(_texts(v) for v in value)) if value else set()
    return set()


def _settings_class(name: str) -> type[BaseSettings] | None:
    """The settings class (a subclass of `BaseSettings`, loaded) whose validation error is titled `name`."""
    seen: list[type[BaseSettings]] = [BaseSettings]
    while seen:
        cls = seen.pop()
        if cls.__name__ == name and cls is not BaseSettings:
            return cls
        seen.extend(cls.__subclasses__())
    return None
