#!/bin/sh
# Pre-backup: CHECKPOINT, so that everything committed before the hook returned is in the data
# files and the WAL replay after a restore is short. It takes no lock and freezes nothing: the
# copy is consistent only because PostgreSQL recovers an atomic snapshot of the whole data
# directory, as after a crash. Backup mode (pg_backup_start) is session-scoped since 15 and would
# end with this exec.
T=postgres
. ./lib/common.sh
. ./lib/pg.sh
pick || die "CHECKPOINT failed, cannot connect as $u:$errs"
o=$(pq "$via" CHECKPOINT) || die "CHECKPOINT failed as $u: $o"
say "CHECKPOINT completed (connection: ${via:-socket}, user: $u, port: ${PGPORT:-default})"
