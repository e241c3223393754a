#!/bin/sh
# Post-backup: the pre hook's helper unlocks (fsyncUnlock until lockCount is 0).
T=mongodb
. ./lib/release.sh
