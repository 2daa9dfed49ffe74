# One image for every commune-bus process: `python -m services.<name>` (intake, notify, metrics, gateway)
# and the `commune-bus` CLI. Used by infra/compose.yaml; see infra/cluster.md for several workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml constraints.txt ./
COPY schemas ./schemas
COPY services ./services
COPY bench ./bench
# the exact versions make installs and the tests ran with (the project relies on aiokafka 0.14.0 internals)
RUN pip install -c constraints.txt .

COPY infra/sources.yaml ./infra/sources.yaml
RUN useradd --system --uid 10001 commune-bus \
 && mkdir -p /var/lib/commune-bus/keys && chown commune-bus /var/lib/commune-bus/keys
# (a named volume mounted there starts with this owner: the key stores of ADR 0034)
USER commune-bus

# the gateway's API (8080; /healthz and /readyz too); /metrics, /healthz, /readyz: intake, notify, metrics, gateway
EXPOSE 8080 9101 9102 9103 9104
ENTRYPOINT ["python", "-m"]
CMD ["services.intake"]
