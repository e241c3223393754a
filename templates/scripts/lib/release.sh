# shellcheck shell=sh
# Post-backup: asks the pre hook's helper (lib/hold.sh) to undo its hold, and reports. A hold
# that ended before this hook ran means the copy may not be consistent: that is a failure.
set -u
say() { printf 'velero-hook[%s]: %s\n' "$T" "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }
bad() { die "$*: the copy may not be consistent"; }
D=${TMPDIR:-/tmp}/velero-hook-$T
{ [ -f "$D/pid" ] && [ ! -f "$D/release" ]; } || { say "nothing to release"; exit 0; }
trap 'rm -rf "$D"' EXIT
[ ! -f "$D/expired" ] || bad "the hold expired before this hook (raise $(cat "$D/expired"))"
: >"$D/release"
i=0
while kill -0 "$(cat "$D/pid")" 2>/dev/null && [ $i -lt 20 ]; do
  sleep 1
  i=$((i + 1))
done
o=$(cat "$D/outcome" 2>/dev/null)
case $o in "" | ERROR*) bad "the hold ended badly (${o:-no outcome})" ;; esac
say "$o"
