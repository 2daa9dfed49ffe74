"""Privacy tests on the real broker reuse notify's fixtures (namespace, fake providers, the worker process)."""

from tests.notify.conftest import fake, namespace, notify_topics, smtp, start_notify

__all__ = ["fake", "namespace", "notify_topics", "smtp", "start_notify"]
