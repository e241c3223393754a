#!/bin/sh
# Post-backup: ends the lock holder of the pre hook.
T=mysql
. ./lib/release.sh
