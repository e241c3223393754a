#!/bin/sh
# Post-restore in dump mode (lib/dump.sh): loads the dump into the database the image
# initialised on the empty data volume, exactly once; when the data volume came back with its
# database instead (a snapshot, a retained volume) it loads nothing and checks it, and it never
# loads over other user data (lib/load-or-check.sh). A load that began but did not finish
# (marker loading-ID) is reported, not repeated. Waits up to VHI_RESTORE_WAIT_SECONDS (default
# 600) for a primary that accepts connections and listens on TCP: the images initialise an empty
# volume with a temporary server on the socket only (listen_addresses ''), stopped when that is
# done, and a load into it would race the image's own setup and be cut off. The load is stopped
# after VHI_LOAD_SECONDS (default 2700).
# "already exists" errors for roles and databases are expected (the image creates the
# superuser and POSTGRES_DB); any other error fails the hook.
T=postgres
. ./lib/common.sh
W=${VHI_RESTORE_WAIT_SECONDS:-600}
[ "$W" -ge 0 ] 2>/dev/null || die "VHI_RESTORE_WAIT_SECONDS is not a number"
L=${VHI_LOAD_SECONDS:-2700}
[ "$L" -gt 0 ] 2>/dev/null || die "VHI_LOAD_SECONDS is not a number above 0"
. ./lib/pg.sh
. ./lib/podlog.sh
. ./lib/pg-dbs.sh
. ./lib/pg-id.sh
. ./lib/dump.sh
. ./lib/load.sh
until_s "$W"
t=$(date +%s)
until pick && pq "$via" "SELECT pg_is_in_recovery()OR current_setting('listen_addresses')=''" && [ "$o" = f ]; do
  late && die "no primary up within ${W}s:$errs ${o:-}, nothing loaded"
  sleep 2
done
dbs
ident
. ./lib/load-or-check.sh
if [ -z "$k" ]; then
  date >"$V/loading-$id" || die "cannot write $V/loading-$id"
  e=$F.err
  until_s "$L"
  t=$(date +%s)
  timeout "$L" psql -Xwq -v ON_ERROR_STOP=0 -U "$u" ${via:+-h"$via"} -d postgres -f "$F" >/dev/null 2>"$e"
  c=$?
  b=$(grep 'ERROR:' "$e" | grep -Ev '(role|database) ".*" already exists' | head -n 3)
  if [ $c -ne 0 ] || [ -n "$b" ]; then
    die "loading dump $id failed$(late && echo " (over ${L}s)"): ${b:-$(tail -n 3 "$e")}"
  fi
  mv -f "$V/loading-$id" "$V/loaded-$id"
  sync
  dbs
  say "loaded dump $id ($(wc -c <"$F") bytes) into the freshly initialised database (identity ${now:-unreadable}, the dump's ${org:-not recorded}) in $(($(date +%s) - t))s, databases:${s%,}"
  exit 0
fi
. ./lib/pg-check.sh
