#!/bin/sh
T=mysql
. ./lib/my-restore.sh
