"""`python -m services.privacy.keys DIR`: a key-encryption key and a pepper for a local run, made once.

Writes `DIR/privacy.kek` and `DIR/privacy.pepper` (32 random bytes each, base64url, mode 0600) unless they
exist, and prints the `PRIVACY_KEK_FILE=` / `PRIVACY_PEPPER_FILE=` lines that point intake, notify and the CLI
at them. A real deployment keeps both in its secret store and sets the same variables.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from services.privacy import crypto


def ensure(folder: Path) -> dict[str, str]:
    """The PRIVACY_* variables of the key files in `folder`, created (0600) if missing."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = {}
    for name, variable in (("privacy.kek", "PRIVACY_KEK_FILE"), ("privacy.pepper", "PRIVACY_PEPPER_FILE")):
        path = folder / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(crypto.b64(os.urandom(32)) + "\n")
        env[variable] = str(path.resolve())
    return env


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for variable, value in ensure(Path(args[0] if args else ".secrets")).items():
        sys.stdout.write(f"{variable}={value}\n")


if __name__ == "__main__":
    main()
