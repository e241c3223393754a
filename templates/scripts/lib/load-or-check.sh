# shellcheck shell=sh
# shellcheck disable=SC2154 # id, org, no: lib/load.sh; n, s: dbs; now: ident
# Dump mode's restore decision, once the server runs, for each state Velero can leave the data
# volume in. Kept out of file-system backup, it is still snapshotted wherever Velero can
# snapshot unless a volume policy skips it, and a PV with reclaim policy Retain comes back as
# it was; else it comes back empty and the image initialises a new database on it.
# - The database the dump was taken from came back (same identity): it is at least as new as
#   the dump (the snapshot is taken after the pre hook; a retained volume is the live one), so
#   nothing is loaded and it is checked as a snapshot restore is.
# - No usable dump: user tables that came back are checked the same way (their origin cannot
#   be compared); no user table leaves nothing to restore from, and the hook fails.
# - User tables of another database than the dump's: nothing is loaded over them (the load
#   would merge two databases), the hook fails and says how to choose.
# - Otherwise (a freshly initialised database) the entry script goes on and loads the dump.
# k: set when the entry script checks instead of loading (its check, included last).
# shellcheck disable=SC2034 # k is read by the entry script
k=''
if [ -n "$org" ] && [ "$now" = "$org" ]; then
  k=1 && say "nothing loaded: the data volume came back with the database dump $id was taken from (identity $now), as a volume snapshot or a retained volume brings it; checking it as after a snapshot restore"
elif [ -n "$no" ]; then
  [ "$n" -gt 0 ] || die "$no, and the data volume holds no user table (a freshly initialised database): nothing to restore from. Restore from a backup whose pre hook logged 'dumped', or one with a snapshot of the data volume"
  k=1 && say "nothing loaded: $no, and the data volume came back with $n user tables (a volume snapshot or a retained volume); checking them as after a snapshot restore"
else
  [ "$n" -eq 0 ] || die "dump $id NOT loaded, nothing changed: the data volume holds $n user tables of another database (identity ${now:-unreadable}) than the one the dump was taken from (${org:-not recorded}):${s%,}. To restore the dump, empty the data volume and restart the pod; to keep that data, nothing to do"
fi
