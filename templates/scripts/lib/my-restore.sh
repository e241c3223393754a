# shellcheck shell=sh
# Post-restore for MySQL and MariaDB: proves that the restored server came back. Read-only; safe
# to run twice. The server refuses connections while InnoDB applies its redo log, so the hook
# waits, within its own deadline, for an answer. Then it checks that InnoDB really runs (a server
# whose InnoDB failed can come up without it) outside forced-recovery mode, and prints one line
# for the restore log: version, and each schema's tables and size.
. ./lib/common.sh
W=${VHI_RESTORE_WAIT_SECONDS:-600}
[ "$W" -ge 0 ] 2>/dev/null || die "VHI_RESTORE_WAIT_SECONDS must be a number of seconds, got '$W'"
. ./lib/my.sh
until_s "$W"
t=$(date +%s)
until s=$(my -e "SELECT VERSION(), (SELECT SUPPORT FROM information_schema.ENGINES WHERE ENGINE = 'InnoDB'), @@innodb_force_recovery" 2>&1); do
  late && die "no answer within ${W}s ($s): see the container log (a copy without its redo log cannot start)"
  sleep 2
done
set -f
IFS='	'
# shellcheck disable=SC2086
set -- $s
case ${2:-} in YES | DEFAULT) ;; *) die "InnoDB did not start (${2:-none}): see the container log" ;; esac
[ "${3:-0}" = 0 ] || die "innodb_force_recovery=$3: InnoDB skipped recovery steps, data may be lost"
s=$(my -e "SELECT table_schema, COUNT(*), SUM(data_length + index_length) >> 20 FROM information_schema.TABLES WHERE table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') GROUP BY 1" 2>&1) || die "cannot list tables: $s"
[ -n "$s" ] || [ "${VHI_RESTORE_ALLOW_EMPTY:-}" = 1 ] || die "$1 came back without a user table, as from an empty volume (VHI_RESTORE_ALLOW_EMPTY=1 if it was empty)"
s=$(echo "$s" | while read -r d n z; do printf ' %s (%s tables, %s MiB),' "$d" "$n" "$z"; done)
say "restore check passed: $1, InnoDB recovered, up after $(($(date +%s) - t))s; schemas:${s%,}"
