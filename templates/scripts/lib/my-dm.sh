# shellcheck shell=sh
# Dump mode for MySQL and MariaDB (lib/dump.sh): the dump holds every user schema, never the
# mysql schema (loaded over the fresh server's, it would replace the accounts and system tables
# the image has just created from its env).
. ./lib/dump.sh
# shellcheck disable=SC2034 # read by the entry scripts
F=$V/mysqldump.sql
# ident: the identity of the initialised data directory into $now (empty when unreadable), kept
# by every copy of it and new in every freshly initialised one: MySQL's server_uuid (auto.cnf,
# written on the first start); MariaDB has none, so the creation time of its privilege table
# (mysql.global_priv, mysql.user before 10.4), made by mariadb-install-db, in UTC. Dump mode
# records it with the dump (lib/seal.sh) and compares it at restore (lib/load-or-check.sh).
ident() {
  now=$(my -e "SELECT @@server_uuid" 2>/dev/null || my -e "SET time_zone='+00:00';SELECT MIN(create_time) FROM information_schema.TABLES WHERE table_schema='mysql' AND table_name IN('global_priv','user') AND table_type='BASE TABLE'" 2>/dev/null) || now=
  [ "$now" != NULL ] || now=
}
