# shellcheck shell=sh
# Dump mode for MySQL and MariaDB (lib/dump.sh): the dump holds every user schema, never the
# mysql schema (loaded over the fresh server's, it would replace the accounts and system tables
# the image has just created from its env).
. ./lib/dump.sh
# shellcheck disable=SC2034 # read by the entry scripts
F=$V/mysqldump.sql
