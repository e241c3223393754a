# shellcheck shell=sh
# Restore checks only, after lib/common.sh: each result line also goes to the stdout of the
# container's main process, which is what `kubectl logs POD` shows (Velero >= 1.14 keeps a
# restore hook's own output in the Velero server's log, where few look). Best effort, never a
# failure: a target that is missing, not this user's or not writable is skipped, and tee gets
# 2 seconds (a log pipe nobody drains, or a FIFO nobody reads, would otherwise hold the hook).
PL=${VHI_PODLOG:-/proc/1/fd/1}
podlog() { [ ! -w "$PL" ] || printf '%s\n' "$1" | timeout 2 tee -a -- "$PL" >/dev/null 2>&1 || :; }
