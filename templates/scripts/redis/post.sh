#!/bin/sh
# Post-backup: the pre hook's helper sets auto-aof-rewrite-percentage back to the saved value.
T=redis
. ./lib/release.sh
