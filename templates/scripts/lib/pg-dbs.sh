# shellcheck shell=sh
# dbs: every database that takes connections, with its user tables and size, into $s (for the
# log line) and the total of user tables into $n. Tables are counted from each database's
# catalog, which a restore keeps (crash recovery resets the statistics counters).
# shellcheck disable=SC2154 # via is set by pick (lib/pg.sh)
dbs() {
  l=$(pq "$via" "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1") || die "cannot list databases: $l"
  s=
  n=0
  set -f
  IFS='
'
  for d in $l; do
    c=$(pq "$via" "SELECT count(*) FILTER (WHERE relkind IN ('r', 'p') AND oid >= 16384), pg_size_pretty(pg_database_size(current_database())) FROM pg_class" "$d") || die "cannot read database $d: $c"
    n=$((n + ${c%%|*}))
    s="$s $d (${c%%|*} tables, ${c#*|}),"
  done
  unset IFS
  set +f
}
