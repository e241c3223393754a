#!/bin/sh
# Oracle MySQL and Percona: FLUSH TABLES WITH READ LOCK, held by a detached session.
T=mysql
LOCK='FLUSH TABLES WITH READ LOCK'
. ./lib/my-pre.sh
