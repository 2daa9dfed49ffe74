"""Personal data protection (ADR 0015): per-applicant data keys, sealing, the key store, erasure."""
