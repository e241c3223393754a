#!/bin/sh
# Post-restore: proves that the restored PostgreSQL came back (lib/pg-check.sh). Read-only; safe
# to run twice.
T=postgres
. ./lib/common.sh
W=${VHI_RESTORE_WAIT_SECONDS:-420}
[ "$W" -ge 0 ] 2>/dev/null || die "VHI_RESTORE_WAIT_SECONDS must be a number of seconds, got '$W'"
. ./lib/pg.sh
. ./lib/pg-dbs.sh
. ./lib/podlog.sh
until_s "$W"
t=$(date +%s)
. ./lib/pg-check.sh
