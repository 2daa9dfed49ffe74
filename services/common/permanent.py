"""Kafka errors no restart mends: the process ends (exit 1) instead of restarting run after run."""

from __future__ import annotations

from aiokafka import errors
from aiokafka.errors import KafkaError

PERMANENT: tuple[type[KafkaError], ...] = (
    # the principal lacks a right (ACLs): every run would be refused the same way
    errors.TopicAuthorizationFailedError, errors.GroupAuthorizationFailedError,
    errors.ClusterAuthorizationFailedError, errors.TransactionalIdAuthorizationFailed,
    errors.DelegationTokenAuthorizationFailed,
    # its credentials or SASL settings are wrong (a refusal at bootstrap reaches us as a retriable
    # KafkaConnectionError: the restarts getting nowhere, with the broker there, turn /healthz 503 instead)
    errors.SaslAuthenticationFailed, errors.AuthenticationFailedError, errors.AuthenticationMethodNotSupported,
    errors.UnsupportedSaslMechanismError, errors.IllegalSaslStateError,
    # the client's or a topic's configuration is invalid
    errors.KafkaConfigurationError, errors.InvalidConfigurationError,
    # a transaction timeout above the broker's transaction.max.timeout.ms (or 0): refused at every producer's start
    errors.InvalidTransactionTimeout,
)
"""aiokafka marks none of them `retriable`, but neither a fenced producer nor a refused commit is, and a fresh run
does mend those. A send refused for one of them is raised as it is (`transactions.all_sent`), not wrapped."""
