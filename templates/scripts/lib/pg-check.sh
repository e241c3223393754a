# shellcheck shell=sh
# The restore check of PostgreSQL, included last by the entry script, which set the deadline
# (until_s) and t, its start: by the snapshot-mode restore hook (postgres/restore.sh), and by the
# dump-mode one when the data volume came back with its database (lib/load-or-check.sh).
# Read-only; safe to run twice. The container can run while the server still replays WAL ("the
# database system is starting up"), so the hook waits, within its own deadline, for a primary
# (out of recovery) or a standby whose WAL receiver runs (a standby stays in recovery by
# design). A standby re-cloned from its primary after a restore holds no table until the
# primary's data has replicated: it waits for one too. Then it opens every table it may read
# (lib/pg-dbs.sh) and prints one line: version, role, each database's tables and size, and
# psql's warnings.
# shellcheck disable=SC2154 # via, o, w, errs, ws: pick and pq (lib/pg.sh); n, s: dbs; t: the caller
# shellcheck disable=SC2086 # n is a number (dbs)
f="Re-clone it from its primary: empty its data volume and restart the pod"
# up: a server that answers, as a primary or a streaming standby (its WAL receiver's source
# shows to a superuser or pg_read_all_stats only; read through to_json, as 9.6 and 10 have no
# sender_host column).
up() {
  pick || return 1
  pq "$via" "SELECT pg_is_in_recovery(),(SELECT coalesce((to_json(r)->>'sender_host')||':'||(to_json(r)->>'sender_port'),'(sender hidden from '||current_user||')')FROM pg_stat_wal_receiver r WHERE coalesce(status,'streaming')='streaming')" || { errs=" $w"; return 1; }
  case $o in
    f*) r=primary ;;
    "t|") errs=" in recovery and not streaming from a primary: its primary is not up, or this standby's copy is newer than its primary's (then: $f), or a recovery.signal or standby.signal was left in the data directory" && return 1 ;;
    *) r="standby streaming from ${o#*|}" ;;
  esac
}
until up; do
  # The server answered and refused the credentials: waiting does not change that.
  case $errs in
    *"password authentication failed"* | *"no password supplied"* | *"role \""*"\" does not exist"*) die "the server refuses $u:$errs. Check the password variables the hook reads (POSTGRES_PASSWORD[_FILE], ...) against the restored database" ;;
  esac
  late && die "not up within ${W}s:$errs. See the container log: a copy without its WAL (pg_wal) or pg_control cannot start"
  sleep 2
done
pq "$via" "SHOW server_version" || die "cannot read the version: $w"
v=$o
# A standby must replay what its primary sends: up to the primary's WAL end as first reported
# to its WAL receiver. A copy taken after its primary's copy can have replayed changes the
# restored primary lost: then it is ahead of it, or stops at WAL that differs from its own.
e=
z=0
while [ "$r" != primary ]; do
  q=NULL && [ -z "$e" ] || q="'$e'"
  pq "$via" "SELECT coalesce(status,'hidden'),latest_end_lsn,pg_last_wal_replay_lsn(),latest_end_lsn<pg_last_wal_replay_lsn(),pg_last_wal_replay_lsn()>=coalesce($q,latest_end_lsn) FROM pg_stat_wal_receiver" || die "cannot read the WAL receiver: $w"
  case $o in
    hidden*) r="$r (replay not compared: $u lacks pg_read_all_stats)" && break ;;
    *"|t|"?) die "the standby is ahead of its primary: it replayed WAL to $(echo "$o" | cut -d'|' -f3), its primary has only $(echo "$o" | cut -d'|' -f2), so it holds changes the restored primary does not (its copy is newer). $f" ;;
    *"|f|t") break ;;
    streaming"|"[0-9]*) [ -n "$e" ] || e=$(echo "$o" | cut -d'|' -f2) ;;
    # Streaming for 10 s and the primary sent nothing: the standby starts at the primary's end.
    streaming"||"*) z=$((z + 1)) && [ $z -ge 5 ] && break ;;
  esac
  late && die "the standby does not replay its primary's WAL to ${e:-its end} within ${W}s (stopped at $(echo "$o" | cut -d'|' -f3)): its copy may be newer than its primary's and differ from it. $f"
  sleep 2
done
dbs
# A standby cloned afresh from its primary gets the primary's tables when they replicate.
until [ $n -gt 0 ] || [ "${VHI_RESTORE_ALLOW_EMPTY:-}" = 1 ] || [ "$r" = primary ] || late; do
  sleep 5
  dbs
done
[ $n -gt 0 ] || [ "${VHI_RESTORE_ALLOW_EMPTY:-}" = 1 ] || die "PostgreSQL $v came back as $r without a user table, as from an empty volume (VHI_RESTORE_ALLOW_EMPTY=1 if it was empty):$s"
say "restore check passed: PostgreSQL $v, $r, up after $(($(date +%s) - t))s; databases:${s%,}${ws:+; warnings:$ws}"
