# shellcheck shell=sh
# What a pre hook holds (a lock, a paused setting) is undone by a detached helper it starts, not
# by the post hook: the helper already has the connection and credentials, and it also undoes
# the hold after HOLD seconds without a post hook (a dead-man limit, should Velero die between
# the hooks). The post hook (lib/release.sh) asks it to finish and reports how it went.
# Files in $D: pid (the helper), release (asked), outcome (its result), expired (HV, the
# setting that sets HOLD, when time ran out).
D=${TMPDIR:-/tmp}/velero-hook-$T
# wait_release [PID]: also returns when process PID (what holds) is gone.
wait_release() {
  until_s "$HOLD"
  until [ -f "$D/release" ]; do
    late && { echo "$HV" >"$D/expired"; return; }
    [ -z "${1:-}" ] || kill -0 "$1" 2>/dev/null || return
    sleep 1
  done
}
# held: a helper of an earlier pre hook still holds.
held() { [ -f "$D/pid" ] && [ ! -f "$D/release" ] && kill -0 "$(cat "$D/pid")" 2>/dev/null; }
[ -d "$D" ] || mkdir -m 700 "$D" || die "cannot create $D"
held || rm -f "$D/release" "$D/outcome" "$D/expired"
