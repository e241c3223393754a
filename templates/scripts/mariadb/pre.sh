#!/bin/sh
# MariaDB 10.4+: BACKUP STAGE BLOCK_COMMIT, lighter than FLUSH TABLES WITH READ LOCK (reads and
# uncommitted work go on; commits and DDL wait), held by a detached session.
T=mariadb
LOCK='BACKUP STAGE START; BACKUP STAGE BLOCK_COMMIT'
. ./lib/my-pre.sh
