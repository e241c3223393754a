# shellcheck shell=sh
# The restore side of dump mode (lib/dump.sh), read before the server is asked: the dump's id
# into $id and the identity of the database it was taken from into $org (lib/seal.sh; empty in
# a dump that did not record it), or, when no dump can be loaded, why into $no: the server's
# state decides what that means (lib/load-or-check.sh). A dump loaded before ends the hook (a
# second run is a no-op); a load that began and did not finish fails it (never a second load
# over half of one).
# shellcheck disable=SC2034 # org and no are read by lib/load-or-check.sh
id='' org='' no=''
if [ ! -f "$F" ]; then
  no="no dump at $F (the backup holds none)"
else
  l=$(tail -n 1 "$F")
  case $l in
    "$M"*) id=${l#"$M"} ;;
    *) no="dump $F is truncated (no end marker)" ;;
  esac
  case $id in *" origin="*) org=${id#*" origin="} ;; esac
  id=${id%% *}
fi
if [ -n "$id" ]; then
  [ ! -f "$V/loaded-$id" ] || { say "dump $id was loaded before ($(cat "$V/loaded-$id")), nothing done"; exit 0; }
  [ ! -f "$V/loading-$id" ] || die "a load of dump $id did not finish: empty the data volume, restart the pod"
fi
