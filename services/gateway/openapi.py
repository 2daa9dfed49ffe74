"""`python -m services.gateway.openapi [--check]`: write (or check) the committed docs/openapi.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from services.gateway.app import create_app
from services.gateway.settings import ROOT, GatewaySettings
from services.sources.registry import SourceRegistry

COMMITTED = ROOT / "docs/openapi.json"


class _NoPublisher:
    async def publish(self, records: Any, until: float = float("inf")) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def document() -> str:
    app = create_app(GatewaySettings(), SourceRegistry(), {}, _NoPublisher())
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = document()
    if "--check" in argv:
        same = COMMITTED.exists() and COMMITTED.read_text(encoding="utf-8") == text
        verdict = "up to date" if same else "STALE: run python -m services.gateway.openapi"
        sys.stdout.write(f"docs/openapi.json is {verdict}\n")
        return 0 if same else 1
    Path(COMMITTED).write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {COMMITTED.relative_to(ROOT)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
