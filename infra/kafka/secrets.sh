#!/usr/bin/env bash
# Credentials of the secure local broker, created on first use (idempotent: what exists is kept).
#   infra/kafka/secrets.sh DIR BOOTSTRAP
# DIR (git-ignored; infra/kafka/secrets by default in kafka.sh) receives, all private files mode 0600:
#   ca.key ca.crt                the local CA (EC P-256, 10 years); clients trust ca.crt
#   broker.pem                   the broker's key + certificate (SAN 127.0.0.1, localhost) + CA, Kafka's PEM keystore
#   <principal>.password         a random SCRAM-SHA-512 password per principal (python -m services.common.acls --principals)
#   <principal>.env              KAFKA_* settings of that principal (source it, or `set -a; . file`)
#   <principal>.librdkafka.conf  the same for kcat -F / librdkafka clients
#   principals.txt               every principal's name
# The env and kcat files name BOOTSTRAP of the broker that created them: brokers of a test's own that share the
# folder (same passwords, so the same clients get in) do not rewrite them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${1:?usage: secrets.sh DIR BOOTSTRAP}"
bootstrap="${2:?usage: secrets.sh DIR BOOTSTRAP}"
py="${PYTHON:-$root/.venv/bin/python}"
umask 077
mkdir -p "$dir"
chmod 700 "$dir"
dir="$(cd "$dir" && pwd)"

if [ ! -f "$dir/ca.crt" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 -subj "/CN=commune-bus local CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.crt" 2>/dev/null
  chmod 644 "$dir/ca.crt"
  rm -f "$dir/broker.pem"
fi
if [ ! -f "$dir/broker.pem" ]; then
  # PKCS#8 key (Kafka's PEM keystore reads it); serverAuth for clients, clientAuth for the controller listener
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/broker.key" 2>/dev/null
  openssl req -new -key "$dir/broker.key" -subj "/CN=commune-bus-broker" -out "$dir/broker.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth,clientAuth" > "$dir/broker.ext"
  openssl x509 -req -in "$dir/broker.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 825 \
    -sha256 -extfile "$dir/broker.ext" -out "$dir/broker.crt" 2>/dev/null
  cat "$dir/broker.key" "$dir/broker.crt" "$dir/ca.crt" > "$dir/broker.pem"
  rm -f "$dir/broker.csr" "$dir/broker.ext" "$dir/ca.srl"
fi

# the principal list (services.common.acls over infra/sources.yaml), asked again only when either changed
list="$dir/principals.txt"
if [ ! -s "$list" ] || [ "$root/infra/sources.yaml" -nt "$list" ] || [ "$root/services/common/acls.py" -nt "$list" ]; then
  (cd "$root" && "$py" -m services.common.acls --principals) > "$list.new" && mv "$list.new" "$list"
fi
principals="$(cat "$list")"
for p in $principals; do
  [ -f "$dir/$p.password" ] || openssl rand -hex 24 > "$dir/$p.password"
  pw="$(cat "$dir/$p.password")"
  [ ! -f "$dir/$p.env" ] || [ ! -f "$dir/$p.librdkafka.conf" ] || continue
  cat > "$dir/$p.env" <<EOF
KAFKA_BOOTSTRAP=$bootstrap
KAFKA_SECURITY_PROTOCOL=SASL_SSL
KAFKA_SASL_MECHANISM=SCRAM-SHA-512
KAFKA_SASL_USERNAME=$p
KAFKA_SASL_PASSWORD=$pw
KAFKA_SSL_CAFILE=$dir/ca.crt
EOF
  cat > "$dir/$p.librdkafka.conf" <<EOF
bootstrap.servers=$bootstrap
security.protocol=sasl_ssl
sasl.mechanisms=SCRAM-SHA-512
sasl.username=$p
sasl.password=$pw
ssl.ca.location=$dir/ca.crt
EOF
done
# the broker's own password, as the FileConfigProvider of server-secure.properties reads it
printf 'password=%s\n' "$(cat "$dir/broker.password")" > "$dir/broker.jaas.properties"
echo "$dir"
