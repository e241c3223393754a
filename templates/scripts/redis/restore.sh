#!/bin/sh
# Post-restore: proves that the restored Redis or Valkey came back. Read-only; safe to run twice.
# While it loads its RDB or AOF the server answers LOADING, so the hook waits, within its own
# deadline, until loading is done; a refused password fails at once. Then it checks what a
# restore can get wrong: AOF rewrites left paused by a backup, a dataset that came back empty.
# A replica passes once its link to the primary is up (it then holds the primary's data).
# One line for the restore log: version, role, persistence mode, keys per database.
T=redis
. ./lib/common.sh
W=${VHI_RESTORE_WAIT_SECONDS:-420}
[ "$W" -ge 0 ] 2>/dev/null || die "VHI_RESTORE_WAIT_SECONDS must be a number of seconds, got '$W'"
. ./lib/redis.sh
. ./lib/podlog.sh
until_s "$W"
t=$(date +%s)
until o=$(r PING) && refused "$o" && [ "$o" = PONG ] && [ "$(field loading)" = 0 ]; do
  late && die "not up within ${W}s at $at ($o): see the container log"
  sleep 2
done
m=cache
if [ "$(field aof_enabled)" = 1 ]; then
  m=AOF
  [ "$(r CONFIG GET auto-aof-rewrite-percentage | sed -n 2p)" != 0 ] || die "AOF rewrites left paused (auto-aof-rewrite-percentage 0): set it back (default 100)"
else
  [ -z "$(r CONFIG GET save | sed -n 2p)" ] || m=RDB
fi
ro=primary
x() { field "$1" replication; }
if [ "$(x role)" = slave ]; then
  ro="replica of $(x master_host):$(x master_port)"
  until [ "$(x master_link_status)" = up ]; do
    late && die "$ro: its link to the primary was not up within ${W}s: restore and start the primary"
    sleep 2
  done
  ro="$ro, link up"
fi
k=$(r INFO keyspace | sed -n 's/:keys=\([0-9]*\).*/=\1/p' | tr '\n' ' ')
v=$(r INFO server | sed -n 's/^redis_version:/Redis /p; s/^valkey_version:/Valkey /p' | tail -n 1)
[ -n "$k" ] || [ $m = cache ] || [ "${VHI_RESTORE_ALLOW_EMPTY:-}" = 1 ] || die "$v ($ro) came back empty ($m persistence), as from an empty volume (VHI_RESTORE_ALLOW_EMPTY=1 if it was empty)"
say "restore check passed: $v, $ro, persistence $m, up after $(($(date +%s) - t))s; keys: ${k:-none}"
