# shellcheck shell=sh
# Shared by every hook. The entry script sets T (the template name) first. Velero records a
# hook's output in the backup log or, for restore hooks, its server's log: every line names its
# template.
set -u
say() { printf 'velero-hook[%s]: %s\n' "$T" "$*"; podlog "velero-hook[$T]: $*"; }
# Restore checks copy each line to the pod's own log (lib/podlog.sh); other hooks do not.
podlog() { :; }
die() { say "ERROR: $*" >&2; exit 1; }
# A shell has no timer and Velero's timeout only stops waiting for a hook: every loop checks a
# deadline (until_s SECONDS, then late), so the hook fails with its own message first.
until_s() { end=$(($(date +%s) + $1)); }
late() { [ "$(date +%s)" -ge "$end" ]; }
