#!/bin/sh
# Put FreeBSD's own rc scripts (network.subr, rc.subr, rc.d/netif,
# rc.d/routing, defaults/rc.conf) into tests/fixtures/freebsd/rc/ for tests/unit/test_freebsd_boot.py.
#
# They are FreeBSD's code (BSD licence, headers kept), read from a git
# repository, not copied into this one: the directory is in .gitignore and
# the files must match tests/fixtures/freebsd/rc.sha256 (the pin).
#
#   tools/freebsd-rc-fixtures.sh GIT_DIR [REV]
#
# GIT_DIR is either a freebsd-src clone (files under libexec/rc/) or a
# FreeBSD host's /etc kept in git (files at the top).  The pinned files are
# FreeBSD 12.1-RELEASE's, whose $FreeBSD$ lines read
# "releng/12.1/libexec/rc/<file> <svn revision>"; the copy this project was
# tested with is github.com/cunnie/shay.nono.io-etc at e3b4f69
# ("FreeBSD Release 12.1"): the /etc of a FreeBSD 12.1 host.
set -eu
gitdir=$1
rev=${2:-HEAD}
here=$(cd "$(dirname "$0")/.." && pwd)
out=$here/tests/fixtures/freebsd/rc
mkdir -p "$out/rc.d" "$out/defaults"
for f in network.subr rc.subr rc.d/netif rc.d/routing defaults/rc.conf; do
	if git --git-dir="$gitdir" cat-file -e "$rev:libexec/rc/$f" 2>/dev/null; then
		git --git-dir="$gitdir" show "$rev:libexec/rc/$f" > "$out/$f"
	else
		git --git-dir="$gitdir" show "$rev:$f" > "$out/$f"
	fi
done
cd "$here/tests/fixtures/freebsd"
sha256sum -c rc.sha256
