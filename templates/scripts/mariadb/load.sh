#!/bin/sh
# Dump mode, post-restore: loads the dump once into the freshly initialised server.
T=mariadb
. ./lib/my-load.sh
