# shellcheck shell=sh
# shellcheck disable=SC2154 # p (the finished dump) is the entry script's; F, M, V lib/dump.sh's
# Seals a finished dump $p: appends the end marker with a new id, flushes, renames it to $F, so a
# copy of the volume holds the previous complete dump or this one, never part of one. The load
# markers of the previous dump go with it.
id=$(date +%s)-$$
printf '%s%s\n' "$M" "$id" >>"$p"
sync
mv -f "$p" "$F" || die "cannot rename the dump to $F"
rm -f "$V"/load*
sync
