"""What rich writes to a file (no terminal, no colour): the text an operator's terminal receives, less styles."""

from __future__ import annotations

import io

from rich.console import Console, RenderableType
from rich.measure import Measurement

WIDEST = 100_000
"""Wide enough that nothing a test renders wraps."""


def rendered(renderable: RenderableType, width: int | None = None) -> str:
    """`renderable` as text, `width` columns wide; by default as wide as it needs and no wider, so nothing wraps and
    a panel is not padded to `WIDEST` columns (48 ms a panel padded, 4 ms measured)."""
    out = io.StringIO()
    console = Console(file=out, width=WIDEST, color_system=None, soft_wrap=True, emoji=False)
    if width is None:
        width = max(1, Measurement.get(console, console.options, renderable).maximum)
    console.width = width
    console.print(renderable)
    return out.getvalue()
