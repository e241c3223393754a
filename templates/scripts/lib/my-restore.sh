# shellcheck shell=sh
# Post-restore for MySQL and MariaDB: proves that the restored server came back. Read-only; safe
# to run twice. The server refuses connections while InnoDB applies its redo log, so the hook
# waits, within its own deadline, for an answer (a refused login ends it at once). Then it checks
# that InnoDB really runs (a server whose InnoDB failed can come up without it) outside
# forced-recovery mode, opens every user table, and prints one line for the restore log:
# version, role, and each schema's tables and size. A replica (one that has a source) passes only
# once it replicates and holds user tables: after a dump-mode restore its empty volume fills from
# the primary, so it is waited for within the same deadline.
. ./lib/common.sh
W=${VHI_RESTORE_WAIT_SECONDS:-600}
[ "$W" -ge 0 ] 2>/dev/null || die "VHI_RESTORE_WAIT_SECONDS must be a number of seconds, got '$W'"
. ./lib/my.sh
. ./lib/my-dbs.sh
until_s "$W"
t=$(date +%s)
until s=$(my -e "SELECT VERSION(), (SELECT SUPPORT FROM information_schema.ENGINES WHERE ENGINE = 'InnoDB'), @@innodb_force_recovery" 2>"$E"); do
  den "$(cat "$E")"
  late && die "no answer within ${W}s ($(cat "$E")): see the container log (a copy without its redo log cannot start)"
  sleep 2
done
# A warning the client printed (stderr) is reported with the result, never read as an answer.
x=$(cat "$E")
set -f
IFS='	'
# shellcheck disable=SC2086
set -- $s
unset IFS
case ${2:-} in YES | DEFAULT) ;; *) die "InnoDB did not start (${2:-none}): see the container log" ;; esac
[ "${3:-0}" = 0 ] || die "innodb_force_recovery=$3: InnoDB skipped recovery steps, data may be lost"
# The replication source, if any (SHOW SLAVE STATUS before MariaDB 10.5 and MySQL 8.0.22; MySQL
# 8.4 knows only REPLICA), one "Name: value" a line; v NAME: the value of the first matching field.
q=$(my -E --column-names -e 'SHOW REPLICA STATUS' 2>/dev/null || my -E --column-names -e 'SHOW SLAVE STATUS' 2>"$E") || die "cannot read the replication status: $(cat "$E")"
v() { printf '%s\n' "$q" | sed -n "s/^ *$1: //p" | head -n 1; }
h=$(v '[A-Za-z]*_Host')
[ -n "$h" ] || [ -z "$m" ] || die "the container is a replica (REPLICATION_MODE=slave) but the server replicates from nothing"
r=primary
dbs
while [ -n "$h" ]; do
  r="replica of $h:$(v '[A-Za-z]*_Port'), replication running, $(v 'Seconds_Behind_[A-Za-z]*')s behind"
  [ "$(v '[A-Za-z]*_IO_Running')$(v '[A-Za-z]*_SQL_Running')" != YesYes ] || [ "$n" -eq 0 ] || break
  late && die "replica of $h: replication not running or no user table yet (IO $(v '[A-Za-z]*_IO_Running'), SQL $(v '[A-Za-z]*_SQL_Running'), $n tables) after ${W}s: $(v Last_IO_Error) $(v Last_SQL_Error)"
  sleep 2
  q=$(my -E --column-names -e 'SHOW REPLICA STATUS' 2>/dev/null || my -E --column-names -e 'SHOW SLAVE STATUS' 2>/dev/null)
  dbs
done
[ "$n" -gt 0 ] || [ "${VHI_RESTORE_ALLOW_EMPTY:-}" = 1 ] || die "$1 came back without a user table, as from an empty volume (VHI_RESTORE_ALLOW_EMPTY=1 if it was empty)"
# Every user table opened, one row at most (a page, not a scan), in one session bounded by the
# deadline: a table whose file is missing fails ("Tablespace is missing", "doesn't exist in
# engine"). Views and tables of remote engines are not opened.
o=$(my -e "SELECT CONCAT('SELECT 1 FROM \`', REPLACE(table_schema, '\`', '\`\`'), '\`.\`', REPLACE(table_name, '\`', '\`\`'), '\` LIMIT 1;') FROM information_schema.TABLES WHERE table_schema NOT IN ($S) AND table_type <> 'VIEW' AND IFNULL(engine, '') NOT IN ('FEDERATED', 'CONNECT', 'SPIDER')" 2>"$E") || die "cannot list tables: $(cat "$E")"
printf '%s\n' "$o" | X=$((end - $(date +%s) + 30)) my >/dev/null 2>"$E" || die "a restored table cannot be read, the copy is incomplete: $(grep -v '^-*$' "$E" | tr '\n' ' ')"
# A Galera node (cluster size above 0) is reported with its cluster's state.
g=$(my -e "SHOW STATUS WHERE Variable_name IN ('wsrep_cluster_size', 'wsrep_cluster_status', 'wsrep_local_state_comment')" 2>/dev/null | awk '{v[NR] = $2} NR == 3 && v[1] > 0 {printf "Galera node (%s cluster of %s, %s), ", v[2], v[1], v[3]}')
say "restore check passed: $1, InnoDB recovered, $g$r, up after $(($(date +%s) - t))s; schemas:${s%,}${x:+; the client warned: $x}"
