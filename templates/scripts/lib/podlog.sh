# shellcheck shell=sh
# Restore checks only, after lib/common.sh: each result line also goes to the stdout of the
# container's main process, which is what `kubectl logs POD` shows. Velero >= 1.14 keeps a
# restore hook's own output in the Velero server's log, where few look. Best effort: a target
# that is missing, not this user's or not writable is skipped, and the write is given 2 seconds
# (a log pipe nobody drains, or a FIFO nobody reads, would otherwise hold the hook).
PL=${VHI_PODLOG:-/proc/1/fd/1}
podlog() {
  [ -w "$PL" ] || return 0
  if command -v timeout >/dev/null 2>&1; then
    # The inner shell expands its own arguments: the single quotes are meant.
    # shellcheck disable=SC2016
    timeout 2 sh -c 'printf "%s\n" "$1" >"$2"' sh "$1" "$PL"
  else
    printf '%s\n' "$1" >"$PL"
  fi 2>/dev/null
  return 0
}
