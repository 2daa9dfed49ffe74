#!/usr/bin/env bash
# Debian packages the tests and the demo run for real: Prometheus (+promtool), kcat, node/npm
# (the official AsyncAPI parser), Java + Maven (the Kafka broker). Installs only what is missing.
set -u
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v kcat >/dev/null || missing+=(kcat)
command -v npm >/dev/null || missing+=(nodejs npm)
command -v java >/dev/null || missing+=(default-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "setup: installing ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null \
    || echo "setup: could not install ${missing[*]}; the tests that need them will fail" >&2
else
  echo "setup: please install ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
fi
