# shellcheck shell=sh
# PostgreSQL client settings from the container's environment: the official image
# (POSTGRES_USER, POSTGRES_PASSWORD[_FILE]), Bitnami (POSTGRES_POSTGRES_PASSWORD[_FILE],
# POSTGRESQL_PORT_NUMBER) and sclorg (POSTGRESQL_ADMIN_PASSWORD). The password travels in
# PGPASSWORD, never on argv, where any process in the container could read it.
command -v psql >/dev/null 2>&1 || die "psql not found in PATH=$PATH"
u=${POSTGRES_USER:-postgres}
f=${POSTGRES_POSTGRES_PASSWORD_FILE:-}
p=${POSTGRES_POSTGRES_PASSWORD:-${POSTGRESQL_ADMIN_PASSWORD:-}}
if [ -n "$f$p" ]; then u=postgres; else f=${POSTGRES_PASSWORD_FILE:-}; p=${POSTGRES_PASSWORD:-}; fi
if [ -n "$f" ]; then p=$(cat "$f") || die "cannot read password file $f as uid $(id -u)"; fi
[ -z "$p" ] || export PGPASSWORD="$p"
[ -n "${PGPORT:-}" ] || export PGPORT="${POSTGRESQL_PORT_NUMBER:-5432}"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}"
# pq HOST SQL [DB]: one statement as $u. An empty HOST means PGHOST or the local socket. The
# answer (psql's stdout) goes to $o, what psql printed on stderr to $w: the error, or warnings
# such as a collation version mismatch or a missing locale, which are not part of the answer.
# New warnings are kept, once each, in $ws for the log.
x=$(printf '\037')
ws=
pq() {
  o=$( { w=$(psql -XwqAt -v ON_ERROR_STOP=1 -U "$u" -d "${3:-postgres}" ${1:+-h"$1"} -c "$2" 2>&1 >&3 3>&-); printf '%s%s%s%s' "$x" $? "$x" "$w"; } 3>&1)
  w=${o#*"$x"}
  c=${w%%"$x"*}
  w=$(printf %s "${w#*"$x"}" | tr '\n' ' ')
  o=${o%%"$x"*}
  o=${o%"
"}
  [ "$c" = 0 ] || return 1
  case $ws in *"$w"*) ;; *) ws="$ws $w" ;; esac
}
# pick: the first way in that answers (PGHOST when set, else the local socket, then 127.0.0.1)
# goes to $via; $errs keeps every failed attempt's answer.
pick() {
  errs=
  if [ -n "${PGHOST:-}" ]; then set -- "$PGHOST"; else set -- "" 127.0.0.1; fi
  for via; do
    pq "$via" "SELECT 1" && return 0
    errs="$errs [${via:-socket}] $w"
  done
  return 1
}
