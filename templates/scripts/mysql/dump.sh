#!/bin/sh
# Dump mode, pre-backup (lib/my-dump.sh). mysqldump (Oracle MySQL, Percona) cannot dump accounts
# except as the mysql schema, and loading that over the fresh server's would replace the accounts
# the image made from its env: the dump holds no accounts, and the hook says so.
T=mysql
acc() { say "WARNING: no accounts dumped: a restore has only those the image makes from its env"; }
. ./lib/my-dump.sh
