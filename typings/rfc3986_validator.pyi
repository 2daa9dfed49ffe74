# rfc3986-validator 0.1.1 ships no types: its one function, as schemas.envelope calls it.
import re

def validate_rfc3986(url: str, rule: str = "URI") -> re.Match[str] | None: ...
