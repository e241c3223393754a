#!/bin/sh
T=mariadb
. ./lib/my-restore.sh
