# shellcheck shell=sh
# Redis, Valkey and KeyDB client settings from the container's environment: the password from
# REDIS_PASSWORD[_FILE] / VALKEY_PASSWORD[_FILE] travels in REDISCLI_AUTH (never argv); the port
# is REDIS_PORT_NUMBER / VALKEY_PORT_NUMBER (Bitnami) else 6379, on 127.0.0.1. REDIS_PORT is a
# Kubernetes service-link variable ("tcp://..."), not a port, and is ignored.
cli=$(command -v redis-cli || command -v valkey-cli || command -v keydb-cli) || die "no redis-cli, valkey-cli or keydb-cli in PATH"
f=${REDIS_PASSWORD_FILE:-${VALKEY_PASSWORD_FILE:-}}
pw=${REDIS_PASSWORD:-${VALKEY_PASSWORD:-}}
[ -z "$f" ] || pw=$(cat "$f") || die "cannot read $f"
[ -z "$pw" ] || export REDISCLI_AUTH="$pw"
port=${REDIS_PORT_NUMBER:-${VALKEY_PORT_NUMBER:-6379}}
# INFO answers end their lines with CRLF.
r() { "$cli" --no-auth-warning -h 127.0.0.1 -p "$port" "$@" 2>&1 | tr -d '\r'; }
# field NAME [SECTION]: one value of INFO.
field() { r INFO "${2:-persistence}" | sed -n "s/^$1://p"; }
