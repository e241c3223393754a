# shellcheck shell=sh disable=SC2034 # F and M are read by the entry scripts
# Dump mode, for pods whose data volume Velero copies file by file (kopia), which is not a
# consistent copy of a running database: the pre hook writes a logical dump into the dump volume
# (the webhook adds it and opts it into file-system backup, and keeps the live data volume out),
# and the restore hook loads it into the database the image initialised on the empty volume.
# In $V: $F, complete or absent (written as $F.partial, renamed when done, its last line the end
# marker with the dump's id), loading-ID and loaded-ID (a load began / finished: a second
# restore hook does nothing).
V=${VHI_DUMP_DIR:-/vhi-dump}
F=$V/pg_dumpall.sql
# The end marker, always the dump's last line: a copy cut short anywhere has lost it.
M='-- vhi-dump complete, id='
# Velero's timeout does not kill the exec: the dump and the load run under timeout(1)
# (coreutils and BusyBox both have it), bounded by the hook's own deadline.
