# shellcheck shell=sh
# Redis, Valkey and KeyDB client settings from the container's env as the Bitnami images and
# charts set it (REDIS_X, else VALKEY_X), on 127.0.0.1:
# - password *_PASSWORD_FILE, else *_PASSWORD, in REDISCLI_AUTH (never argv);
# - *_TLS_ENABLED yes/true/1: TLS to *_TLS_PORT_NUMBER, else *_TLS_PORT, else 6379, trusting
#   *_TLS_CA_FILE, else *_TLS_CA_DIR, showing *_TLS_CERT_FILE/*_TLS_KEY_FILE (the server's own
#   pair, as the charts mount it) to a server that asks for a client certificate;
# - else *_PORT when all digits (the charts start the server with --port $REDIS_PORT; a service
#   link sets REDIS_PORT=tcp://...), else *_PORT_NUMBER (the image), else 6379.
cli=$(command -v redis-cli || command -v valkey-cli || command -v keydb-cli) || die "no redis-cli/valkey-cli/keydb-cli in PATH"
e() { eval "printf %s \"\${REDIS_$1:-\${VALKEY_$1:-}}\""; }
f=$(e PASSWORD_FILE)
pw=$(e PASSWORD)
[ -z "$f" ] || pw=$(cat "$f") || die "cannot read $f"
[ -z "$pw" ] || export REDISCLI_AUTH="$pw"
tls='' ca='' crt=''
case $(e TLS_ENABLED) in
[Yy][Ee][Ss] | [Tt][Rr][Uu][Ee] | 1)
  tls=--tls port=$(e TLS_PORT_NUMBER)
  [ -n "$port" ] || port=$(e TLS_PORT)
  co=--cacert ca=$(e TLS_CA_FILE)
  [ -n "$ca" ] || co=--cacertdir ca=$(e TLS_CA_DIR)
  crt=$(e TLS_CERT_FILE) key=$(e TLS_KEY_FILE)
  ;;
*)
  port=$(e PORT)
  case $port in '' | *[!0-9]*) port=$(e PORT_NUMBER) ;; esac
  ;;
esac
port=${port:-6379}
at="127.0.0.1:$port${tls:+ (TLS)}"
# INFO answers end their lines with CRLF.
r() { "$cli" --no-auth-warning -h 127.0.0.1 -p "$port" ${tls:+--tls} ${ca:+$co "$ca"} ${crt:+--cert "$crt" --key "$key"} "$@" 2>&1 | tr -d '\r'; }
# field NAME [SECTION]: one value of INFO.
field() { r INFO "${2:-persistence}" | sed -n "s/^$1://p"; }
# refused TEXT: dies when TEXT is the server refusing the password or the TLS peer: no retry helps.
refused() {
  case $1 in
  *NOAUTH* | *WRONGPASS* | *"invalid password"*) die "$at refused the password: set REDIS_PASSWORD[_FILE] (VALKEY_ for Valkey) to its requirepass" ;;
  *"verify failed"*) die "$at: $1: set REDIS_TLS_CA_FILE to the CA of its certificate" ;;
  esac
}
