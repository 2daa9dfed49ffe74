"""The metrics service: live service indicators per commune and province from the canonical topics."""
