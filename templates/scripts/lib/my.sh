# shellcheck shell=sh
# MySQL and MariaDB client settings from the container's environment: the official images
# (MYSQL_/MARIADB_ROOT_PASSWORD[_FILE]) and Bitnami (*_ROOT_USER, *_PORT_NUMBER). The password
# travels in MYSQL_PWD, never on argv. MYSQL_HOST, MYSQL_TCP_PORT and MYSQL_UNIX_PORT are honoured.
cli=$(command -v mariadb || command -v mysql) || die "no mariadb or mysql client in PATH"
u=${MARIADB_ROOT_USER:-${MYSQL_ROOT_USER:-root}}
f=${MARIADB_ROOT_PASSWORD_FILE:-${MYSQL_ROOT_PASSWORD_FILE:-}}
p=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}
[ -z "$f" ] || p=$(cat "$f") || die "cannot read $f"
[ -z "$p" ] || export MYSQL_PWD="$p"
P=${MYSQL_TCP_PORT:-${MARIADB_PORT_NUMBER:-${MYSQL_PORT_NUMBER:-}}}
# cl PROGRAM ARG...: a client program (mariadb, mariadb-dump) with its arguments and then the
# connection options (the clients take options after names), under timeout(1) when X holds a
# number of seconds (a dump or a load: Velero's timeout kills nothing).
# shellcheck disable=SC2086 # X splits into timeout and its seconds
cl() { ${X:+timeout $X} "$@" ${MYSQL_HOST:+-h"$MYSQL_HOST"} ${P:+-P"$P"} ${MYSQL_UNIX_PORT:+-S"$MYSQL_UNIX_PORT"} -u"$u"; }
my() { cl "$cli" --connect-timeout=10 -BN "$@"; }
