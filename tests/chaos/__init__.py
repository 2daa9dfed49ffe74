"""The chaos command: `python -m tests.chaos` runs a fault matrix against the real services and prints what became
of every record it sent (see `tests/chaos/__main__.py`)."""
