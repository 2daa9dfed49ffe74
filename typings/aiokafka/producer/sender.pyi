# Only the module global that services/common/aiokafka_compat.py adjusts (the CONCURRENT_TRANSACTIONS retry delay).
BACKOFF_OVERRIDE: float
