#!/bin/sh
# build-tree.sh LOCK TREE KEY KIND SUITE MIRROR MMDEBSTRAP-OPTION... : build the OS tree TREE (cache key KEY, KIND
# node or guest) under an exclusive lock on the file LOCK, so that two runs sharing a cache (make test builds the
# local site beside the molecule scenarios) build a tree once: the second waits, then finds it complete. The tree is
# made as TREE.partial (mmdebstrap, customize.sh, for a guest customize-guest.sh), marked complete and moved into
# place; a .partial left by an interrupted run is discarded. Prints "built: TREE" or "cached: TREE".
set -eu
lock=$1 tree=$2 key=$3 kind=$4 suite=$5 mirror=$6
shift 6
here=$(dirname "$0")

exec 9>"$lock"
flock 9
if [ -e "$tree/.magellan-tree-complete" ]; then
  echo "cached: $tree"
  exit 0
fi
rm -rf "$tree.partial"
mmdebstrap "$@" "$suite" "$tree.partial" "$mirror"
sh "$here/customize.sh" "$tree.partial" "$suite" "$mirror" "$kind"
if [ "$kind" = guest ]; then
  sh "$here/customize-guest.sh" "$tree.partial"
fi
echo "$key" > "$tree.partial/.magellan-tree-complete"
mv -T "$tree.partial" "$tree"
echo "built: $tree"
