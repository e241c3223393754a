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
. ./lib/my-dbs.sh
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
dbs
[ "$n" -gt 0 ] || [ "${VHI_RESTORE_ALLOW_EMPTY:-}" = 1 ] || die "$1 came back without a user table, as from an empty volume (VHI_RESTORE_ALLOW_EMPTY=1 if it was empty)"
say "restore check passed: $1, InnoDB recovered, up after $(($(date +%s) - t))s; schemas:${s%,}"
