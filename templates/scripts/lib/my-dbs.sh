# shellcheck shell=sh
# dbs: each user schema with its tables and size into $s (for the log line) and the number of
# their tables into $n (sizes are the statistics' estimates, the count is exact). The answer is
# read from stdout only: a warning on stderr is not mistaken for a schema.
. ./lib/my-sys.sh
# shellcheck disable=SC2034 # n is read by the entry scripts
dbs() {
  s=$(my -e "SELECT table_schema, COUNT(*), SUM(data_length + index_length) >> 20 FROM information_schema.TABLES WHERE table_schema NOT IN ($S) GROUP BY 1" 2>"$E") || die "cannot list tables: $(cat "$E")"
  s=$(printf '%s\n' "$s" | awk -F'\t' 'NF {n += $2; printf " %s (%s tables, %s MiB),", $1, $2, $3} END {print "/" n + 0}')
  n=${s##*/}
  s=${s%/*}
}
