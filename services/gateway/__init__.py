"""HTTP ingest gateway: `POST /v1/events` for systems that cannot run a Kafka client.

It validates synchronously with intake's pure `normalise`, enforces the source
registry, and publishes accepted events to the RAW topics (CloudEvents binary
mode, keyed by commune) in one Kafka transaction per request, so intake stays
the single writer of the canonical topics.
"""
