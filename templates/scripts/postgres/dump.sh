#!/bin/sh
# Pre-backup in dump mode (lib/dump.sh): pg_dumpall (every database, roles, tablespaces) into
# the dump volume, one consistent snapshot per database. Free space is checked first: the
# databases' size on disk, an upper bound for a plain dump of most data (indexes are dumped as
# one line each). The dump is written under a temporary name, flushed, checked for pg_dumpall's
# own end line, marked complete and renamed: a copy of the volume holds the previous complete
# dump or the new one, never part of one. It is stopped after VHI_DUMP_SECONDS (default 3300,
# under the hook's 1h timeout). Writes go on meanwhile (pg_dumpall takes no lock that blocks them).
T=postgres
. ./lib/common.sh
W=${VHI_DUMP_SECONDS:-3300}
[ "$W" -gt 0 ] 2>/dev/null || die "VHI_DUMP_SECONDS is not a number above 0"
. ./lib/pg.sh
. ./lib/pg-id.sh
. ./lib/dump.sh
[ -w "$V" ] || die "dump volume $V missing or not writable"
pick || die "no dump: cannot connect as $u:$errs"
pq "$via" "SELECT rolsuper,CASE WHEN rolsuper THEN(SELECT sum(pg_database_size(oid))::bigint/1024 FROM pg_database)END FROM pg_roles WHERE rolname=current_user" || die "no dump: $w"
case $o in t*) k=${o#*|} ;; *) die "no dump: pg_dumpall needs a superuser and $u is not one. Give the container the superuser's password (POSTGRES_POSTGRES_PASSWORD[_FILE]; Bitnami chart: auth.enablePostgresUser=true)" ;; esac
f=$(df -Pk "$V" | awk 'NR==2{print $4}')
[ "${f:-0}" -gt "$k" ] || die "no dump: $V has ${f:-?} KiB free, the databases take $k KiB"
p=$F.partial
e=$F.err
trap 'rm -f "$p" "$e"' EXIT
until_s "$W"
t=$(date +%s)
timeout "$W" pg_dumpall -w -U "$u" ${via:+-h"$via"} -l postgres >"$p" 2>"$e" || {
  late && die "pg_dumpall not done within ${W}s (VHI_DUMP_SECONDS), no new dump"
  die "pg_dumpall failed, no new dump: $(tail -n 5 "$e")"
}
tail -n 4 "$p" | grep -q '^-- PostgreSQL database cluster dump complete' || die "pg_dumpall output has no end, no new dump"
. ./lib/seal.sh
say "dumped every database to $F ($(wc -c <"$F") bytes, id $id) in $(($(date +%s) - t))s"
