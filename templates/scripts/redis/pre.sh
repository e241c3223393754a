#!/bin/sh
# Pre-backup, following Redis's documented backup procedure. Writes are never blocked and
# nothing is deleted.
# - AOF on: automatic AOF rewrites are paused (auto-aof-rewrite-percentage 0) and the hook waits
#   until none runs, so the AOF directory is not rewritten under the copy. A detached helper
#   (lib/hold.sh) sets the saved value back when the post hook asks, or after
#   VHI_AOF_PAUSE_SECONDS (default 4 h) if it never does.
# - RDB only: BGSAVE once no save runs, and success only when LASTSAVE has advanced and the save
#   succeeded: the copy holds a dump.rdb as fresh as the moment the hook started.
# - No persistence: a cache; nothing to do.
# A replica gets the same: its own files are what the copy holds.
T=redis
HV=VHI_AOF_PAUSE_SECONDS
. ./lib/common.sh
HOLD=${VHI_AOF_PAUSE_SECONDS:-14400}
[ "$HOLD" -ge 0 ] 2>/dev/null || die "$HV must be a number of seconds, got '$HOLD'"
. ./lib/redis.sh
o=$(r PING)
refused "$o"
[ "$o" = PONG ] || die "cannot use redis at $at: $o"
until_s 540
if [ "$(field aof_enabled)" = 1 ]; then
  . ./lib/hold.sh
  ! held || { say "AOF mode: already paused by an earlier pre hook"; exit 0; }
  k=auto-aof-rewrite-percentage
  v=$(r CONFIG GET $k | sed -n 2p)
  case $v in '' | *[!0-9]*) die "cannot read $k (CONFIG disabled?): $v" ;; esac
  o=$(r CONFIG SET $k 0)
  [ "$o" = OK ] || die "CONFIG SET $k 0 failed: $o"
  (
    trap '' HUP
    wait_release ""
    o=$(r CONFIG SET $k "$v")
    [ "$o" = OK ] && o="AOF rewrites resumed ($k back to $v)" || o="ERROR cannot set $k back to $v: $o"
    echo "$o" >"$D/outcome"
  ) </dev/null >/dev/null 2>&1 &
  echo $! >"$D/pid"
  until [ "$(field aof_rewrite_in_progress)$(field aof_rewrite_scheduled)" = 00 ]; do
    late && { : >"$D/release"; die "an AOF rewrite still ran after 540s; $k set back"; }
    sleep 1
  done
  say "AOF mode: rewrites paused ($k $v -> 0) until the post hook"
  exit 0
fi
o=$(r CONFIG GET save)
case $o in save*) ;; *) die "CONFIG GET save failed: $o" ;; esac
[ -n "$(echo "$o" | sed -n 2p)" ] || { say "cache only (no persistence), nothing to do"; exit 0; }
b=$(r LASTSAVE)
# LASTSAVE counts seconds: a save ending in the same second as the last one would not show.
sleep 1
until [ "$(field rdb_bgsave_in_progress)" = 0 ] && o=$(r BGSAVE) && case $o in *started*) ;; *) false ;; esac; do
  late && die "BGSAVE could not start within 540s: $o"
  sleep 1
done
until [ "$(field rdb_bgsave_in_progress)" = 0 ]; do
  late && die "BGSAVE did not complete within 540s"
  sleep 1
done
{ [ "$(field rdb_last_bgsave_status)" = ok ] && [ "$(r LASTSAVE)" != "$b" ]; } || die "BGSAVE failed (see the server log): dump.rdb is not fresh"
say "RDB mode: a fresh dump.rdb was written"
