# shellcheck shell=sh
# The restore check of MySQL and MariaDB, included last by the entry script, which set the
# deadline (until_s) and t, its start: by the snapshot-mode restore hook (lib/my-restore.sh), and
# by the dump-mode one when the data volume came back with its database (lib/load-or-check.sh).
# Read-only; safe to run twice. The server refuses connections while InnoDB applies its redo
# log, so the hook waits, within its own deadline, for an answer (a refused login ends it at
# once). Then it checks that InnoDB really runs (a server whose InnoDB failed can come up without
# it) outside forced-recovery mode, opens every user table, and prints one line: version, role,
# and each schema's tables and size. A replica (one that has a source) passes only once it
# replicates and holds user tables: after a dump-mode restore its empty volume fills from the
# primary, so it is waited for within the same deadline.
# shellcheck disable=SC2154 # n, s: dbs (lib/my-dbs.sh); end: until_s; t: the caller
until s=$(my -e "SELECT VERSION(), (SELECT SUPPORT FROM information_schema.ENGINES WHERE ENGINE = 'InnoDB'), @@innodb_force_recovery" 2>"$E"); do
  den "$(cat "$E")"
  late && die "no answer within ${W}s ($(cat "$E")): see the container log"
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
# 8.4 knows only REPLICA), one "Name: value" a line; v NAME: the value of the field NAME.
rs() { q=$(my -E --column-names -e 'SHOW REPLICA STATUS' 2>/dev/null || my -E --column-names -e 'SHOW SLAVE STATUS' 2>/dev/null); }
v() { printf '%s
' "$q" | sed -n "s/^ *$1: //p"; }
rs
h=$(v '.*_Host')
r=primary
# A Galera node (cluster size above 0) says so.
g=$(my -e "SHOW STATUS LIKE 'wsrep_cluster_size'" 2>/dev/null)
[ "${g#*	}" -gt 0 ] 2>/dev/null && r="Galera node of ${g#*	}"
dbs
while [ -n "$h" ]; do
  i="$(v '.*_IO_Running') $(v '.*_SQL_Running')"
  r="replica of $h:$(v '.*_Port'), replication running, $(v 'Seconds_Behind_[^:]*')s behind"
  [ "$i" != "Yes Yes" ] || [ "$n" -eq 0 ] || break
  late && die "replica of $h not replicating after ${W}s (IO/SQL $i, $n tables): $(v Last_IO_Error) $(v Last_SQL_Error)"
  sleep 2
  rs
  dbs
done
[ "$n" -gt 0 ] || [ "${VHI_RESTORE_ALLOW_EMPTY:-}" = 1 ] || die "$1 has no user table (VHI_RESTORE_ALLOW_EMPTY=1 if the volume was empty)"
# Every user table opened, one row at most (a page, not a scan), in one session bounded by the
# deadline: a table whose file is missing fails ("Tablespace is missing", "doesn't exist in
# engine"). Views and tables of remote engines are not opened.
o=$(my -e "SELECT CONCAT('SELECT 1 FROM \`',REPLACE(table_schema,'\`','\`\`'),'\`.\`',REPLACE(table_name,'\`','\`\`'),'\` LIMIT 1;') FROM information_schema.TABLES WHERE table_schema NOT IN ($S) AND table_type<>'VIEW' AND IFNULL(engine,'') NOT IN ('FEDERATED','CONNECT','SPIDER')" 2>"$E") || die "cannot list tables: $(cat "$E")"
# The client's blank and dash-only lines are dropped: a regular expression, not a glob.
# shellcheck disable=SC2063
printf '%s\n' "$o" | X=$((end - $(date +%s) + 30)) my >/dev/null 2>"$E" || die "a table cannot be read (copy incomplete): $(grep -vx -- '-*' "$E" | tr '\n' ' ')"
say "restore check passed: $1, InnoDB recovered, $r, up after $(($(date +%s) - t))s; schemas:${s%,}${x:+; client warning: $x}"
