# shellcheck shell=sh
# Post-backup: asks the pre hook's helper (lib/hold.sh) to undo its hold, and reports. A hold
# that ended before this hook ran means the copy may not be consistent: that is a failure.
. ./lib/common.sh
D=${TMPDIR:-/tmp}/velero-hook-$T
{ [ -f "$D/pid" ] && [ ! -f "$D/release" ]; } || { say "nothing held (already released, or no hold taken)"; exit 0; }
trap 'rm -f "$D/pid" "$D/release" "$D/outcome" "$D/expired"' EXIT
[ ! -f "$D/expired" ] || die "the hold expired before this hook: the copy may not be consistent (raise $(cat "$D/expired"))"
: >"$D/release"
until_s 20
while kill -0 "$(cat "$D/pid")" 2>/dev/null && ! late; do sleep 1; done
o=$(cat "$D/outcome" 2>/dev/null)
case $o in "" | ERROR*) die "the hold ended badly, the copy may not be consistent: ${o:-no outcome}" ;; esac
say "$o"
