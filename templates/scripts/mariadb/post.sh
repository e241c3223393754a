#!/bin/sh
# Post-backup: ends the lock holder of the pre hook.
T=mariadb
. ./lib/release.sh
