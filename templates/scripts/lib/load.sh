# shellcheck shell=sh
# The restore side of dump mode (lib/dump.sh), before anything is loaded: the id in $F's end
# marker into $id, or a loud failure when the dump is missing or cut short; a dump loaded before
# ends the hook (a second run is a no-op), and a load that began and did not finish fails it
# (never a second load over half of one).
[ -f "$F" ] || die "no dump at $F: the backup holds none, nothing loaded"
l=$(tail -n 1 "$F")
case $l in
  "$M"*) id=${l#"$M"} ;;
  *) die "dump $F is truncated (no end marker), nothing loaded" ;;
esac
[ ! -f "$V/loaded-$id" ] || { say "dump $id was loaded before ($(cat "$V/loaded-$id")), nothing done"; exit 0; }
[ ! -f "$V/loading-$id" ] || die "a load of dump $id did not finish: empty the data volume, restart the pod"
