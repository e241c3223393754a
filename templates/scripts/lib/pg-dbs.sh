# shellcheck shell=sh
# dbs: every database that takes connections, with its user tables and size, into $s (for the
# log line) and the total of user tables into $n. Tables are counted from each database's
# catalog, which a restore keeps (crash recovery resets the statistics counters). Each table
# the user may read is opened and its first row read (LIMIT 1: one page, not a scan), so a copy
# that lost a table's file fails here ("could not open file"); unlogged tables are skipped (a
# standby cannot read them, a restore empties them). A database or table the user may not
# read is not opened (the count of opened tables says so), and a database it may not connect to
# is named, not an error: the check reports what its credentials can see.
# shellcheck disable=SC2154 # via, o, w are set by pick and pq (lib/pg.sh)
dbs() {
  pq "$via" "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1" || die "cannot list databases: $w"
  s=
  n=0
  set -f
  IFS='
'
  for d in $o; do
    if ! pq "$via" "SET statement_timeout='5min';SET lock_timeout='1min';SELECT count(*),count(x),pg_size_pretty(pg_database_size(current_database()))FROM(SELECT CASE WHEN relkind='r'AND relpersistence='p'AND has_table_privilege(c.oid,'SELECT')THEN query_to_xml(format('SELECT 1 FROM %s LIMIT 1',c.oid::regclass),false,false,'')END x FROM pg_class c WHERE relkind IN('r','p')AND oid>=16384)t" "$d"; then
      case $w in
        *"permission denied for database"*) s="$s $d (no access for $u)," && continue ;;
      esac
      die "cannot read database $d: $w"
    fi
    m=${o%%|*}
    o=${o#*|}
    n=$((n + m))
    s="$s $d ($m tables, ${o%%|*} opened, ${o#*|}),"
  done
  unset IFS
  set +f
}
