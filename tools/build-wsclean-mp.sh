#!/usr/bin/env bash
# shellcheck shell=bash
# Build WSClean's MPI program, wsclean-mp, from Debian's own source package.
#
# Why: Debian's wsclean package ships no wsclean-mp, and --nodes_mpi needs one. The source
# package is the same WSClean (3.1-3 on bookworm) as the wsclean imgpipe runs, with
# Debian's patches, so the MPI build images exactly as the plain one does.
#
#   tools/build-wsclean-mp.sh [PREFIX]      (make wsclean-mp; PREFIX: ~/.cache/imgpipe/wsclean-mp)
#
# Steps, each skipped when already done: a deb-src twin of the machine's Debian sources
# (only if `apt-cache showsrc wsclean` finds nothing), WSClean's build dependencies and
# libopenmpi-dev, `apt-get source wsclean`, a CMake build of the wsclean-mp target alone.
# Result: PREFIX/bin/wsclean-mp; point [mpi] wsclean_mp at it on every MPI node.
# A full C++ compile: about 40 minutes on 2 cores (bench/RESULTS.md, benchmark 13); apt-get
# needs root or sudo. apt's and the compiler's output go to PREFIX/build.log.
set -euo pipefail

prefix=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/imgpipe/wsclean-mp}
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
mkdir -p "$prefix"
log="$prefix/build.log"
# Each long step's output goes to the log; on failure its end is shown.
quiet() { "$@" >>"$log" 2>&1 || { tail -n 30 "$log" >&2; echo "build-wsclean-mp: failed: $* (whole log: $log)" >&2; exit 1; }; }
apt_get() { quiet $sudo env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@"; }

if [ -x "$prefix/bin/wsclean-mp" ]; then
  echo "wsclean-mp is already built: $prefix/bin/wsclean-mp (delete it to rebuild)"
  exit 0
fi

: >"$log"
if ! apt-cache showsrc wsclean 2>/dev/null | grep -q '^Package: wsclean'; then
  twin=/etc/apt/sources.list.d/imgpipe-deb-src.sources
  echo "adding deb-src entries for the machine's Debian archives: $twin"
  tmp=$(mktemp)
  # deb822 files: the same stanzas with Types: deb-src; one-line files: deb → deb-src.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] && [ "$f" != "$twin" ] || continue
    sed -n 's/^Types:[[:space:]]*deb$/Types: deb-src/; p' "$f" >>"$tmp"
    echo >>"$tmp"
  done
  if grep -q '^Types: deb-src' "$tmp"; then
    $sudo install -m 0644 "$tmp" "$twin"
  fi
  rm -f "$tmp"
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] && [ "$f" != "${twin%.sources}.list" ] || continue
    sed -n 's/^deb\([[:space:]]\)/deb-src\1/p' "$f"
  done | $sudo tee "${twin%.sources}.list" >/dev/null
  quiet $sudo apt-get update -q
  apt-cache showsrc wsclean 2>/dev/null | grep -q '^Package: wsclean' || {
    echo "build-wsclean-mp: no source package 'wsclean' in this machine's apt sources" >&2
    exit 1
  }
fi

echo "installing WSClean's build dependencies and libopenmpi-dev"
apt_get build-dep wsclean
apt_get install --no-install-recommends libopenmpi-dev dpkg-dev

src="$prefix/src"
mkdir -p "$src"
cd "$src"
tree=$(find . -maxdepth 1 -type d -name 'wsclean-*' | head -n 1)
if [ -z "$tree" ]; then
  echo "unpacking Debian's wsclean source in $src"
  quiet apt-get source wsclean
  tree=$(find . -maxdepth 1 -type d -name 'wsclean-*' | head -n 1)
fi

echo "building wsclean-mp from $src/${tree#./} (only that target)"
quiet cmake -S "$tree" -B build -DCMAKE_BUILD_TYPE=Release
grep -q '^wsclean-mp:' build/Makefile || {
  echo "build-wsclean-mp: CMake did not find MPI (no wsclean-mp target): see $log" >&2
  exit 1
}
quiet cmake --build build --target wsclean-mp -j "$(nproc)"
mkdir -p "$prefix/bin"
install -m 0755 build/wsclean-mp "$prefix/bin/wsclean-mp"
echo "built: $prefix/bin/wsclean-mp"
echo "use it with [mpi] wsclean_mp = '$prefix/bin/wsclean-mp' (the same path on every MPI node)"
