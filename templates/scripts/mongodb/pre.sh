#!/bin/sh
# Pre-backup: db.fsyncLock() (fsync, then block writes). The lock is held by the server, not by
# the session, so it outlives this exec. A detached helper (lib/hold.sh) unlocks when the post
# hook asks, or after VHI_LOCK_HOLD_SECONDS (default 300) if it never does, so writes can never
# stay blocked for long; a second pre hook does not stack a second lock while the first is held.
T=mongodb
HV=VHI_LOCK_HOLD_SECONDS
. ./lib/common.sh
. ./lib/secs.sh
HOLD=${VHI_LOCK_HOLD_SECONDS:-300}
secs $HV "$HOLD"
. ./lib/mongo.sh
. ./lib/hold.sh
! held || { say "already fsync-locked by an earlier pre hook (helper pid $(cat "$D/pid")); not stacking a second lock"; exit 0; }
out=$(m 'var r = db.getSiblingDB("admin").runCommand({fsync: 1, lock: true}); if (r.ok !== 1) { print("fsyncLock failed: " + JSON.stringify(r)); quit(2); } print("lockCount=" + r.lockCount);') || die "fsyncLock failed: $out; no lock taken"
(
  trap '' HUP
  wait_release ""
  o=$(m 'var a = db.getSiblingDB("admin"), r; do { r = a.runCommand({fsyncUnlock: 1}); } while (r.ok === 1 && r.lockCount > 0); if (r.ok !== 1) { print(JSON.stringify(r)); quit(2); } print("lockCount=" + r.lockCount);') && o="fsync lock released ($o)" || o="ERROR fsyncUnlock failed: $o"
  echo "$o" >"$D/outcome"
) </dev/null >/dev/null 2>&1 &
echo $! >"$D/pid"
say "fsyncLock held ($out); the post hook unlocks it, or the helper (pid $!) after ${HOLD}s"
