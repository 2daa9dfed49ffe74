"""The notify service: canonical events -> the right message to the right person or system, once."""
