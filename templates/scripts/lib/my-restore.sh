# shellcheck shell=sh
# Post-restore for MySQL and MariaDB: proves that the restored server came back
# (lib/my-check.sh). Read-only; safe to run twice.
. ./lib/common.sh
W=${VHI_RESTORE_WAIT_SECONDS:-420}
[ "$W" -ge 0 ] 2>/dev/null || die "VHI_RESTORE_WAIT_SECONDS is not a number"
. ./lib/my.sh
. ./lib/my-dbs.sh
. ./lib/podlog.sh
until_s "$W"
t=$(date +%s)
. ./lib/my-check.sh
