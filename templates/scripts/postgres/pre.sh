#!/bin/sh
# Pre-backup: CHECKPOINT, so that everything committed before the hook returned is in the data
# files and the WAL replay after a restore is short (on a standby it is a restartpoint). It takes
# no lock and freezes nothing: the copy is consistent only because PostgreSQL recovers an atomic
# snapshot of the whole data directory, as after a crash. Backup mode (pg_backup_start) is
# session-scoped since 15 and would end with this exec. CHECKPOINT needs a superuser, or on 15+
# a member of pg_checkpoint: an app user alone is told what to grant.
T=postgres
. ./lib/common.sh
. ./lib/pg.sh
pick || die "CHECKPOINT failed, cannot connect as $u:$errs"
pq "$via" CHECKPOINT || case $w in
  *superuser* | *"permission denied"*) die "CHECKPOINT refused: $u is not a superuser. On PostgreSQL 15+ run GRANT pg_checkpoint TO \"$u\" as a superuser; on any version give the container the superuser's password (POSTGRES_POSTGRES_PASSWORD[_FILE]; Bitnami chart: auth.enablePostgresUser=true)" ;;
  *) die "CHECKPOINT failed as $u: $w" ;;
esac
say "CHECKPOINT completed (connection: ${via:-socket}, user: $u, port: ${PGPORT:-default}${ws:+, warnings:$ws})"
