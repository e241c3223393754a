# shellcheck shell=sh
# shellcheck disable=SC2154 # p (the finished dump) is the entry script's; F, M, V lib/dump.sh's
# Seals a finished dump $p: appends the end marker with a new id and the identity of the
# database it comes from (ident: a restore that finds that database on its data volume loads
# nothing, lib/load-or-check.sh), flushes, renames it to $F, so a copy of the volume holds the
# previous complete dump or this one, never part of one. The load markers of the previous dump
# go with it.
ident || say "WARNING: cannot read the database's identity: a restore that brings this data volume back (a snapshot, a retained volume) cannot be told from another database's, and fails"
id=$(date +%s)-$$
printf '%s%s origin=%s\n' "$M" "$id" "$now" >>"$p"
sync
mv -f "$p" "$F" || die "cannot rename the dump to $F"
rm -f "$V"/load*
sync
