#!/bin/sh
# Pre-backup: db.fsyncLock() (fsync, then block writes). The lock is held by the server, not by
# the session, so it outlives this exec. A detached helper (lib/hold.sh) unlocks when the post
# hook asks, or after VHI_LOCK_HOLD_SECONDS (default 300) if it never does, so writes can never
# stay blocked for long; a second pre hook does not stack a second lock while the first is held.
T=mongodb
HV=VHI_LOCK_HOLD_SECONDS
. ./lib/common.sh
HOLD=${VHI_LOCK_HOLD_SECONDS:-300}
[ "$HOLD" -ge 0 ] 2>/dev/null || die "$HV must be a number of seconds, got '$HOLD'"
. ./lib/mongo.sh
. ./lib/hold.sh
! held || { say "already fsync-locked by an earlier pre hook; not stacking a second lock"; exit 0; }
out=$(m 'var r = db.adminCommand({fsync: 1, lock: true}); print(r.ok === 1 ? "lockCount=" + r.lockCount : JSON.stringify(r)); quit(r.ok === 1 ? 0 : 2)') || { refused "$out"; die "fsyncLock failed: $out"; }
(
  trap '' HUP
  wait_release ""
  o=$(m 'var r; do r = db.adminCommand({fsyncUnlock: 1}); while (r.ok === 1 && r.lockCount > 0); print(JSON.stringify(r)); quit(r.ok === 1 ? 0 : 2)') && o="fsync lock released: $o" || o="ERROR fsyncUnlock failed: $o"
  echo "$o" >"$D/outcome"
) </dev/null >/dev/null 2>&1 &
echo $! >"$D/pid"
say "fsyncLock held ($out) until the post hook, at most ${HOLD}s"
