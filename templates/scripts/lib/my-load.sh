# shellcheck shell=sh
# Post-restore in dump mode for MySQL and MariaDB (lib/dump.sh): loads the dump into the server
# the image initialised on the empty data volume, exactly once; when the data volume came back
# with its database instead (a snapshot, a retained volume) it loads nothing and checks it, and
# it never loads over other user data (lib/load-or-check.sh). Waits up to
# VHI_RESTORE_WAIT_SECONDS (default 600) for the server the pod runs: the image's initialisation
# server (skip_networking) is not it, it stops before the pod starts. The client stops at the
# first error, which fails the hook; the load is stopped after VHI_LOAD_SECONDS (default 2700).
. ./lib/common.sh
W=${VHI_RESTORE_WAIT_SECONDS:-600}
[ "$W" -ge 0 ] 2>/dev/null || die "VHI_RESTORE_WAIT_SECONDS is not a number"
L=${VHI_LOAD_SECONDS:-2700}
[ "$L" -gt 0 ] 2>/dev/null || die "VHI_LOAD_SECONDS is not a number above 0"
. ./lib/my.sh
. ./lib/my-dbs.sh
. ./lib/podlog.sh
. ./lib/my-dm.sh
. ./lib/load.sh
until_s "$W"
t=$(date +%s)
until r=$(my -e "SELECT @@skip_networking, VERSION()" 2>"$E") && [ "${r%%[!0-9]*}" = 0 ]; do
  den "$(cat "$E")"
  late && die "no server up within ${W}s ($(cat "$E")$r), nothing loaded"
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
  # The client's blank and dash-only lines are dropped: a regular expression, not a glob.
  # shellcheck disable=SC2063
  X=$L cl "$cli" <"$F" >/dev/null 2>"$e" || die "loading dump $id failed$(late && echo " (over ${L}s)"): $(grep -vx -- '-*' "$e" | tail -n 3)"
  mv -f "$V/loading-$id" "$V/loaded-$id"
  dbs
  say "loaded dump $id ($(wc -c <"$F") bytes) into the freshly initialised ${r#*[!0-9]} (identity ${now:-unreadable}, the dump's ${org:-not recorded}) in $(($(date +%s) - t))s, schemas:${s%,}"
  exit 0
fi
. ./lib/my-check.sh
