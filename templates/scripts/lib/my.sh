# shellcheck shell=sh
# MySQL and MariaDB client settings from the container's environment, read as the images read
# it: official (MYSQL_/MARIADB_ROOT_PASSWORD[_FILE]), Bitnami (*_ROOT_USER, *_PORT_NUMBER). A
# Bitnami replication secondary (*_REPLICATION_MODE=slave) creates no account of its own: it
# holds the primary's, copied by replication, and logs in (its probes too) with the primary's
# root, *_MASTER_ROOT_USER and *_MASTER_ROOT_PASSWORD[_FILE]; so do the hooks (m=MASTER_). The
# password travels in MYSQL_PWD, never on argv. MYSQL_HOST, MYSQL_TCP_PORT and MYSQL_UNIX_PORT
# are honoured. src/pod/deployment/mysql.rs reads the same names at admission.
cli=$(command -v mariadb || command -v mysql) || die "no mariadb/mysql client"
m='' u='' f='' p=''
[ "${MARIADB_REPLICATION_MODE:-${MYSQL_REPLICATION_MODE:-}}" != slave ] || m=MASTER_
# m is empty or MASTER_: eval only picks the variable names.
eval "u=\${MARIADB_${m}ROOT_USER:-\${MYSQL_${m}ROOT_USER:-root}}
f=\${MARIADB_${m}ROOT_PASSWORD_FILE:-\${MYSQL_${m}ROOT_PASSWORD_FILE:-}}
p=\${MARIADB_${m}ROOT_PASSWORD:-\${MYSQL_${m}ROOT_PASSWORD:-}}"
[ -z "$f" ] || p=$(cat "$f") || die "cannot read $f"
[ -z "$p" ] || export MYSQL_PWD="$p"
# No password: the login fails unless root's is empty (*_ALLOW_EMPTY_*); a random or hash-only
# root password (official images) is refused the same way, and den says what to give.
P=${MYSQL_TCP_PORT:-${MARIADB_PORT_NUMBER:-${MYSQL_PORT_NUMBER:-}}}
# The client's error output of the last query: answers are read from stdout only.
E=${TMPDIR:-/tmp}/vhi-$T-$$.err
trap 'rm -f "$E"' EXIT
# cl PROGRAM ARG...: a client program (mariadb, mariadb-dump) with its arguments and then the
# connection options (the clients take options after names), under timeout(1) when X holds a
# number of seconds (a dump or a load: Velero's timeout kills nothing).
# shellcheck disable=SC2086 # X splits into timeout and its seconds
cl() { ${X:+timeout $X} "$@" ${MYSQL_HOST:+-h"$MYSQL_HOST"} ${P:+-P"$P"} ${MYSQL_UNIX_PORT:+-S"$MYSQL_UNIX_PORT"} -u"$u"; }
my() { cl "$cli" --connect-timeout=10 -BN "$@"; }
# den TEXT [now]: a refused login (1045 wrong password, 1698 socket-only account) ends the hook
# at once with the fix: waiting would not change the password. On a secondary (m) it is retried
# until the deadline (late) unless "now": after a restore its accounts come only by replication.
den() {
  case $1 in *"ERROR 1045"* | *"ERROR 1698"*)
    # shellcheck disable=SC2015 # die when not (a secondary, not now, not late)
    [ "$m${2:-}" = MASTER_ ] && ! late || die "the server refused $u ($1): set MARIADB_${m}ROOT_PASSWORD[_FILE] to its password" ;;
  esac
}
