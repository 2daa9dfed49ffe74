"""Source registry: which source system may publish which event families for which communes."""

from services.sources.registry import Source, SourceRegistry, is_allowed, load_registry

__all__ = ["Source", "SourceRegistry", "is_allowed", "load_registry"]
