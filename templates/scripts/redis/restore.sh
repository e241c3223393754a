#!/bin/sh
# Post-restore: proves that the restored Redis or Valkey came back. Read-only; safe to run twice.
# While it loads its RDB or AOF the server answers LOADING, so the hook waits, within its own
# deadline, until loading is done. Then it checks what a restore can get wrong: an AOF on the
# volume that the server did not load (appendonly off: only an older dump.rdb was read), AOF
# rewrites left paused by a backup, a dataset that came back empty. One line for the restore
# log: version, persistence, keys per database, memory.
T=redis
. ./lib/common.sh
. ./lib/secs.sh
W=${VHI_RESTORE_WAIT_SECONDS:-900}
secs VHI_RESTORE_WAIT_SECONDS "$W"
. ./lib/redis.sh
until_s "$W"
t=$(date +%s)
until [ "$(r PING)" = PONG ] && [ "$(field loading)" = 0 ]; do
  late && die "not up within ${W}s ($(r PING)). See the container log: a corrupt AOF or dump.rdb stops the server"
  sleep 2
done
m="none (cache)"
d=$(r CONFIG GET dir | sed -n 2p)
if [ "$(field aof_enabled)" = 1 ]; then
  m=AOF
  [ "$(r CONFIG GET auto-aof-rewrite-percentage | sed -n 2p)" != 0 ] || die "auto-aof-rewrite-percentage is 0, as during a backup: the AOF grows without bound; set it back (default 100)"
elif [ -e "$d/appendonlydir" ] || [ -e "$d/appendonly.aof" ]; then
  die "the volume holds an AOF ($d) but appendonly is off: only dump.rdb, maybe older, was loaded"
else
  [ -z "$(r CONFIG GET save | sed -n 2p)" ] || m=RDB
fi
k=$(r INFO keyspace | sed -n 's/^\(db[0-9]*\):keys=\([0-9]*\).*/\1=\2/p' | tr '\n' ' ')
v=$(r INFO server | sed -n 's/^redis_version:/Redis /p; s/^valkey_version:/Valkey /p' | tail -n 1)
[ -n "$k" ] || [ "$m" = "none (cache)" ] || [ "${VHI_RESTORE_ALLOW_EMPTY:-}" = 1 ] || die "$v came back empty ($m persistence), as from an empty volume (VHI_RESTORE_ALLOW_EMPTY=1 if it was empty)"
say "restore check passed: $v, persistence $m, loaded after $(($(date +%s) - t))s; keys: ${k:-none}, memory $(field used_memory_human memory)"
