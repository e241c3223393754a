#!/bin/sh
# Post-restore: proves that the restored PostgreSQL came back. Read-only; safe to run twice.
# The container can run while the server still replays WAL ("the database system is starting
# up"), so the hook waits, within its own deadline, for a server that accepts connections and
# has left recovery (a standby streaming from a primary stays in recovery by design). Then one
# line for the restore log: version, role, and each database's tables and size.
T=postgres
. ./lib/common.sh
W=${VHI_RESTORE_WAIT_SECONDS:-600}
[ "$W" -ge 0 ] 2>/dev/null || die "VHI_RESTORE_WAIT_SECONDS must be a number of seconds, got '$W'"
. ./lib/pg.sh
. ./lib/pg-dbs.sh
until_s "$W"
t=$(date +%s)
up() {
  pick || return 1
  s=$(pq "$via" "SELECT pg_is_in_recovery(), current_setting('primary_conninfo', true) > ''") || { errs=" $s"; return 1; }
  case $s in
    f*) r=primary ;;
    "t|t") r=standby ;;
    *) errs=" in recovery but not a streaming standby (recovery.signal or standby.signal left in the data directory?)" && return 1 ;;
  esac
}
until up; do
  # The server answered and refused the credentials: waiting does not change that.
  case $errs in
    *"password authentication failed"* | *"no password supplied"* | *"role \""*"\" does not exist"*) die "the server refuses $u:$errs. Check the password variables the hook reads (POSTGRES_PASSWORD[_FILE], ...) against the restored database" ;;
  esac
  late && die "not up within ${W}s:$errs. See the container log: a copy without its WAL (pg_wal) or pg_control cannot start"
  sleep 2
done
v=$(pq "$via" "SHOW server_version")
dbs
[ $n -gt 0 ] || [ "${VHI_RESTORE_ALLOW_EMPTY:-}" = 1 ] || die "PostgreSQL $v came back without a user table, as from an empty volume (VHI_RESTORE_ALLOW_EMPTY=1 if it was empty):$s"
say "restore check passed: PostgreSQL $v, $r, up after $(($(date +%s) - t))s; databases:${s%,}"
