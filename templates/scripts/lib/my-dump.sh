# shellcheck shell=sh
# Pre-backup in dump mode for MySQL and MariaDB (lib/dump.sh); the entry script sets T and
# defines acc, which appends the accounts to the dump (or says why it cannot). One run of
# mariadb-dump (or mysqldump) with --single-transaction: one consistent InnoDB snapshot of every user schema,
# taken as it starts, without blocking writers; routines, events and triggers included. Tables
# of a non-transactional engine (MyISAM, Aria...) are not covered by that snapshot: a WARNING
# names them. Free space is checked first (the schemas' size on disk); the dump is written under
# a temporary name, flushed, checked for the tool's own end line, marked complete and renamed. It
# is stopped after VHI_DUMP_SECONDS (default 3300, under the hook's 1h timeout).
. ./lib/common.sh
W=${VHI_DUMP_SECONDS:-3300}
[ "$W" -gt 0 ] 2>/dev/null || die "VHI_DUMP_SECONDS is not a number above 0"
. ./lib/my.sh
. ./lib/my-sys.sh
. ./lib/my-dm.sh
[ -w "$V" ] || die "dump volume $V missing or not writable"
d=$(command -v mariadb-dump || command -v mysqldump) || die "no mariadb-dump, mysqldump in PATH"
l=$(my -e "SELECT schema_name FROM information_schema.SCHEMATA WHERE schema_name NOT IN ($S)" 2>"$E") || die "no dump: $(cat "$E")"
# The schemas' size on disk (an upper bound for the dump of most data), then the tables of a
# non-transactional engine, one query.
r=$(my -e "SELECT IFNULL(SUM(data_length + index_length), 0) >> 10, GROUP_CONCAT(IF(transactions <> 'YES', CONCAT(table_schema, '.', table_name, ' ', engine), NULL)) FROM information_schema.TABLES LEFT JOIN information_schema.ENGINES USING (engine) WHERE table_schema NOT IN ($S)" 2>"$E") || die "no dump: $(cat "$E")"
k=${r%%[!0-9]*}
f=$(df -Pk "$V" | awk 'NR==2{print $4}')
[ "${f:-0}" -gt "$k" ] || die "no dump: $V has ${f:-?} KiB free, the schemas take $k KiB"
[ "${r#*[!0-9]}" = NULL ] || say "WARNING: not transactional, so not consistent in the dump (--single-transaction covers InnoDB): ${r#*[!0-9]}"
set -f
IFS='
'
# shellcheck disable=SC2086 # one schema name a line
set -- $l
unset IFS
set +f
[ $# -gt 0 ] || die "no dump: the server has no user schema yet, nothing to back up"
p=$F.partial
e=$F.err
trap 'rm -f "$p" "$e" "$E"' EXIT
until_s "$W"
t=$(date +%s)
X=$W cl "$d" --single-transaction --routines --events --triggers --databases "$@" >"$p" 2>"$e" || {
  late && die "$d not done within ${W}s (VHI_DUMP_SECONDS), no new dump"
  die "$d failed, no new dump: $(tail -n 5 "$e")"
}
acc
tail -n 1 "$p" | grep -q '^-- Dump completed' || die "the dump has no end line, no new dump"
. ./lib/seal.sh
say "dumped schemas $* to $F ($(wc -c <"$F") bytes, id $id) in $(($(date +%s) - t))s"
