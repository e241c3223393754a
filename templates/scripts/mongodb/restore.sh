#!/bin/sh
# Post-restore: proves that the restored mongod came back. Read-only; safe to run twice. mongod
# refuses connections while it recovers from its journal, so the hook waits, within its own
# deadline, for an answer (a refused login fails at once: no wait helps); then it lists the
# databases and fails when only the system databases (admin, config, local) came back. One line
# for the restore log: version, databases and sizes.
T=mongodb
. ./lib/common.sh
W=${VHI_RESTORE_WAIT_SECONDS:-420}
[ "$W" -ge 0 ] 2>/dev/null || die "VHI_RESTORE_WAIT_SECONDS must be a number of seconds, got '$W'"
. ./lib/mongo.sh
. ./lib/podlog.sh
until_s "$W"
t0=$(date +%s)
q='var l = db.adminCommand({listDatabases: 1}); if (l.ok !== 1) quit(2); print(db.version() + " " + l.databases.filter(d => !/^(admin|config|local)$/.test(d.name)).map(d => d.name + " (" + (d.sizeOnDisk >> 20) + " MiB)").join(", "))'
until out=$(m "$q"); do
  refused "$out"
  late && die "no answer within ${W}s ($out): see the container log"
  sleep 2
done
ver=${out%% *}
dbs=${out#* }
[ -n "$dbs" ] || [ "${VHI_RESTORE_ALLOW_EMPTY:-}" = 1 ] || die "MongoDB $ver came back with only its system databases, as from an empty volume (VHI_RESTORE_ALLOW_EMPTY=1 if it was empty)"
say "restore check passed: MongoDB $ver, up after $(($(date +%s) - t0))s; databases: ${dbs:-none}"
