"""The docs cannot rot silently: what they name exists, their links resolve, every alert has its runbook."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
ADR_DIR = ROOT / "docs/adr"
NAMING_DOCS = ["README.md", "CONTRIBUTING.md", "docs/architecture.md",
               *sorted(str(p.relative_to(ROOT)) for p in ADR_DIR.glob("*.md"))]
"""Docs whose repository paths and dotted module names must exist."""
LINKING_DOCS = [*NAMING_DOCS, "docs/runbooks.md", "docs/benchmarks.md"]

PATH = re.compile(r"(?<![\w./-])((?:services|schemas|infra|tests|docs|bench|typings|\.ci)/[\w./*-]*[\w/*])")
MADE_BY_THE_READER = {"infra/gateway-secrets.yaml"}
"""Paths a doc tells the reader to create (git-ignored: they hold secrets)."""
DOTTED = re.compile(r"(?<![\w./-])((?:services|schemas)(?:\.[A-Za-z_]\w*)+)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
TOPIC = re.compile(r"\bcommune\.(?:raw|events|dlq|intake|notify|metrics)\.[a-z-]+\b")


def text(doc: str) -> str:
    return (ROOT / doc).read_text(encoding="utf-8")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def defines(source: str, name: str) -> bool:
    """Whether a module's source defines or imports `name` at top level."""
    return re.search(rf"^(?:async\s+def|def|class)\s+{name}\b|^{name}\s*[:=]|^from\s+\S+\s+import\s+.*\b{name}\b",
                     source, flags=re.M) is not None


def resolves(dotted: str) -> bool:
    """`a.b.c[.attr]`: the longest prefix is a module or package of the repository, the rest one name defined in it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            rest = parts[cut:]
            return not rest or (len(rest) == 1 and defines(module.read_text(encoding="utf-8"), rest[0]))
    return False


@pytest.mark.parametrize("doc", NAMING_DOCS)
def test_every_repository_path_named_exists(doc: str) -> None:
    """Each `services/…`, `schemas/…`, `infra/…` (and tests, docs, bench, typings) path or glob a doc names exists."""
    named = set(PATH.findall(text(doc))) - MADE_BY_THE_READER
    missing = sorted(p for p in named if not (any(ROOT.glob(p)) if "*" in p else (ROOT / p).exists()))
    assert missing == [], f"{doc} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", NAMING_DOCS)
def test_every_dotted_module_named_exists(doc: str) -> None:
    """Each dotted `services.…` / `schemas.…` name a doc uses is a module, or a name defined in one."""
    missing = sorted({d for d in DOTTED.findall(text(doc)) if not resolves(d)})
    assert missing == [], f"{doc} names modules that do not exist: {missing}"


@pytest.mark.parametrize("doc", LINKING_DOCS)
def test_relative_links_resolve(doc: str) -> None:
    """Every relative link of a doc reaches a file or directory, and its #anchor a heading of the target."""
    broken = []
    for target in LINK.findall(text(doc)):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (ROOT / doc).parent / path if path else ROOT / doc
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file.read_text("utf-8"))):
            broken.append(target)
    assert broken == [], f"{doc} has broken links: {broken}"


@pytest.mark.parametrize("doc", LINKING_DOCS)
def test_every_topic_named_is_a_registry_topic(doc: str) -> None:
    """Topic names written in the docs exist in schemas.topics (no stale names)."""
    from schemas.topics import TOPICS

    stale = set(TOPIC.findall(text(doc))) - {t.name for t in TOPICS}
    assert stale == set(), f"{doc} names topics not in the registry: {sorted(stale)}"


RUNBOOKS_BASE = '{{ or $externalLabels.runbooks_url "docs/runbooks.md" }}'
"""Where every runbook_url starts: Prometheus' external label `runbooks_url` (the absolute address where
docs/runbooks.md is published, set per deployment in infra/prometheus/prometheus.yml), else the repository path.
infra/prometheus/tests/*_test.yml render it both ways."""


def test_every_alert_links_its_runbook_section() -> None:
    """Every alert rule has a runbook_url into docs/runbooks.md (at the configured address, else the repository path)
    whose anchor is a section named after the alert."""
    rules = [rule for path in sorted((ROOT / "infra/prometheus/rules").glob("*.yml"))
             for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]
    alerts = {rule["alert"]: rule.get("annotations", {}).get("runbook_url", "") for rule in rules if "alert" in rule}
    sections = anchors(text("docs/runbooks.md"))
    assert alerts, "no alert rules found"
    for alert, url in alerts.items():
        base, _, anchor = url.partition("#")
        assert base == RUNBOOKS_BASE, f"{alert}: runbook_url {url!r}"
        assert anchor == alert.lower() and anchor in sections, f"{alert}: no section #{anchor} in docs/runbooks.md"


def test_the_runbook_address_is_configured_where_the_alerts_read_it() -> None:
    """The shipped Prometheus configs say where to set `runbooks_url` and drop it from the labels of alerts sent."""
    for config in ("infra/prometheus/prometheus.yml", "infra/compose/prometheus.yml"):
        assert "#   runbooks_url: https://" in text(config), config
        relabel = yaml.safe_load(text(config))["alerting"]["alert_relabel_configs"]
        assert {"action": "labeldrop", "regex": "runbooks_url"} in relabel, config


def test_decision_records_are_numbered_and_complete() -> None:
    """ADRs are numbered 0001.. without gaps, each with Context, Decision, Consequences and Status, 20-80 lines."""
    records = sorted(ADR_DIR.glob("[0-9][0-9][0-9][0-9]-*.md"))
    assert [p.name[:4] for p in records] == [f"{n:04d}" for n in range(1, len(records) + 1)]
    for path in records:
        body = path.read_text(encoding="utf-8")
        assert re.search(rf"^# {int(path.name[:4]):04d}\. ", body, flags=re.M), path.name
        assert [h for h in re.findall(r"^## (.+)$", body, flags=re.M)] == [
            "Context", "Decision", "Consequences", "Status"], path.name
        assert 20 <= len(body.splitlines()) <= 80, f"{path.name}: {len(body.splitlines())} lines"
        assert path.name in text("docs/adr/README.md"), f"{path.name} is missing from the index"


def test_readme_settings_are_real_settings() -> None:
    """Every `<SERVICE>_*` and `KAFKA_*` variable the README names is a field of that service's settings class (or,
    for `KAFKA_*`, a variable `infra/kafka/kafka.sh` reads: `KAFKA_PORT`)."""
    from services.common.settings import KafkaConnection
    from services.gateway.settings import GatewaySettings
    from services.intake.settings import IntakeSettings
    from services.metrics.settings import MetricsSettings
    from services.notify.settings import NotifySettings

    classes = {"KAFKA": KafkaConnection, "INTAKE": IntakeSettings, "NOTIFY": NotifySettings,
               "METRICS": MetricsSettings, "GATEWAY": GatewaySettings}
    variable = r"\b(KAFKA|INTAKE|NOTIFY|METRICS|GATEWAY)_([A-Z0-9_]+\*?(?:/[A-Z0-9_]+)?)"
    named = set(re.findall(variable, text("README.md")))
    assert named
    broker_script = set(re.findall(r"\$\{(KAFKA_[A-Z0-9_]+):-", text("infra/kafka/kafka.sh")))  # kafka.sh's own
    unknown = []
    for prefix, rest in sorted(named):
        if f"{prefix}_{rest}" in broker_script:
            continue
        fields = set(classes[prefix].model_fields)
        head, _, alternative = rest.partition("/")  # NOTIFY_SMTP_HOST/PORT
        names = [head.lower(), *([head.rsplit("_", 1)[0].lower() + "_" + alternative.lower()] if alternative else [])]
        for name in names:
            ok = any(f.startswith(name[:-1]) for f in fields) if name.endswith("*") else name in fields
            if not ok:
                unknown.append(f"{prefix}_{name.upper()}")
    assert unknown == [], f"README names settings that do not exist: {unknown}"


RUNBOOK_COMMAND = re.compile(r"`(commune-bus [^`]+)`|^ *(commune-bus [^#\n]*)", flags=re.M)


def runbook_commands(markdown: str) -> list[str]:
    """Each `commune-bus …` a page gives, inline (across a line break too) or on a line of its own in a code block."""
    return [" ".join((inline or block).split()) for inline, block in RUNBOOK_COMMAND.findall(markdown)]


def unknown_in(command: str, cli: Any) -> list[str]:
    """The subcommands and options of `command` the CLI does not have (placeholders `<...>` and `...` left out; an
    optional part in brackets is checked as if given). `cli`: typer's click command (typer's own click classes)."""
    words = [w for w in command.replace("[", " ").replace("]", " ").split()[1:] if not w.startswith(("<", "..."))]
    while words and hasattr(cli, "commands") and not words[0].startswith("-"):
        if words[0] not in cli.commands:
            return [words[0]]
        cli = cli.commands[words.pop(0)]
    options = {opt for param in cli.params for opt in param.opts}
    return [w.split("=")[0] for w in words if w.startswith("--") and w.split("=")[0] not in options]


@pytest.mark.parametrize("doc", ["docs/runbooks.md", "docs/integrators.md"])
def test_runbook_commands_are_real_commands_and_options(doc: str) -> None:
    """Every `commune-bus` command the runbooks (and the integrators' guide) give names a subcommand and options the
    CLI has: an option renamed in the CLI fails here, not at 3 a.m. (runbooks audit: each was run on the demo)."""
    from services.cli.main import app

    cli = typer.main.get_command(app)
    commands = runbook_commands(text(doc))
    assert len(commands) >= 15, commands  # the pattern still finds them
    wrong = {c: unknown for c in commands if (unknown := unknown_in(c, cli))}
    assert wrong == {}, f"{doc} gives commands the CLI does not have: {wrong}"
