#!/usr/bin/env bash
# Benchmark of the Bayesian filter on the fixed public split (see corpus/fetch.sh):
# train on TRAIN with the release binary, then score TEST once with the shipped defaults.
# Prints training time, spam recall, ham false-positive rate per directory (easy / hard
# ham) and overall, ROC AUC, msgs/s and CPU per message (tokenize + score, one thread), and
# "Bayes classify rate alone, msgs/s per core" (from the scoring thread's CPU time).
#
#   corpus/bench.sh            the figures
#   corpus/bench.sh --json     eval as JSON (keys spam_recall, ham_fpr, auc, msgs_per_sec, ...)
#   corpus/bench.sh --cv       also the 10-fold cross-validation inside TRAIN, random folds
#                              and grouped by source (five assignments of sources to folds,
#                              --seed 0..4: how the defaults are chosen)
#   corpus/bench.sh --compare  also TEST figures of the other scorings (report only; the
#                              defaults are never tuned on TEST)
#   corpus/bench.sh --pipeline also the whole inbound pipeline on TEST (`portcullis eval`,
#                              the same trained model), its ROC curves in corpus/cache/roc.svg
#   corpus/bench.sh --fit      choose the content symbols' points inside TRAIN (grouped
#                              cross-validation, corpus/fit_points.py; nothing from TEST)
#   corpus/bench.sh --partitions
#                              does the threshold carry over: the whole corpus in 5 partitions
#                              by source, each scored by a model of the other 4, 5 assignments
#                              (corpus/partitions.py)
#   corpus/bench.sh --feedback learn 10 % of the hard ham (fixed sample), rescore the rest
#                              (corpus/feedback.py)
# The three Python scripts need only python3's standard library.
set -euo pipefail
cd "$(dirname "$0")/.."
json=""; cv=""; compare=""; pipeline=""; fit=""; partitions=""; feedback=""
for a in "$@"; do
    case "$a" in
        --json) json="--json" ;;
        --cv) cv=1 ;;
        --compare) compare=1 ;;
        --pipeline) pipeline=1 ;;
        --fit) fit=1 ;;
        --partitions) partitions=1 ;;
        --feedback) feedback=1 ;;
        *) echo "usage: corpus/bench.sh [--json] [--cv] [--compare] [--pipeline] [--fit] [--partitions] [--feedback]" >&2; exit 2 ;;
    esac
done
bash corpus/fetch.sh >&2
cargo build --release --quiet >&2
bin="$PWD/target/release/portcullis"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf 'data_dir = "%s"\nmetrics_bind = ""\n' "$tmp/data" > "$tmp/portcullis.toml"
S=corpus/cache/split
[ -n "$json" ] || echo "== train on TRAIN (easy-ham-1 + spam-1), release build"
/usr/bin/time -f "train: %e s wall, %U s user + %S s sys CPU, %M KB peak RSS" \
    "$bin" bayes --config "$tmp/portcullis.toml" train --ham $S/train/ham --spam $S/train/spam >&2
[ -n "$json" ] || echo "== score TEST (easy-ham-2 + hard-ham-1 + spam-2) at the shipped default threshold"
"$bin" bayes --config "$tmp/portcullis.toml" eval \
    --ham $S/test/ham-easy $S/test/ham-hard --spam $S/test/spam $json
if [ -n "$compare" ]; then
    for s in chi-square multinomial combined; do
        echo "== TEST with scoring $s (report only)"
        "$bin" bayes --config "$tmp/portcullis.toml" eval --scoring "$s" \
            --ham $S/test/ham-easy $S/test/ham-hard --spam $S/test/spam
    done
fi
if [ -n "$pipeline" ]; then
    [ -n "$json" ] || echo "== the whole inbound pipeline on TEST (flagged from verdict.tag_score)"
    "$bin" eval --config "$tmp/portcullis.toml" --roc corpus/cache/roc.svg \
        --ham $S/test/ham-easy $S/test/ham-hard --spam $S/test/spam $json
fi
if [ -n "$cv" ]; then
    echo "== 10-fold cross-validation inside TRAIN (random folds, then grouped by source)"
    "$bin" bayes --config "$tmp/portcullis.toml" cv --ham $S/train/ham --spam $S/train/spam --folds 10
    for seed in 0 1 2 3 4; do
        "$bin" bayes --config "$tmp/portcullis.toml" cv --grouped --seed "$seed" --ham $S/train/ham --spam $S/train/spam --folds 10
    done
fi
if [ -n "$fit" ]; then
    echo "== content symbols' points, chosen inside TRAIN (grouped cross-validation, 5 seeds)"
    for seed in 0 1 2 3 4; do
        "$bin" bayes --config "$tmp/portcullis.toml" cv --grouped --seed "$seed" --folds 10 \
            --ham $S/train/ham --spam $S/train/spam --scores "$tmp/oof$seed.tsv" >/dev/null
    done
    "$bin" eval --config "$tmp/portcullis.toml" --ham $S/train/ham --spam $S/train/spam \
        --messages "$tmp/train.tsv" >/dev/null
    python3 corpus/fit_points.py --messages "$tmp/train.tsv" --scores "$tmp"/oof{0,1,2,3,4}.tsv
fi
if [ -n "$partitions" ]; then
    echo "== the whole corpus in 5 partitions by source; each scored by a model of the other 4"
    H="$S/train/ham $S/test/ham-easy $S/test/ham-hard"; P="$S/train/spam $S/test/spam"
    for seed in 0 1 2 3 4; do
        "$bin" bayes --config "$tmp/portcullis.toml" cv --grouped --seed "$seed" --folds 5 \
            --ham $H --spam $P --scores "$tmp/part$seed.tsv" >/dev/null
    done
    "$bin" eval --config "$tmp/portcullis.toml" --ham $H --spam $P --messages "$tmp/all.tsv" >/dev/null
    python3 corpus/partitions.py --messages "$tmp/all.tsv" --scores "$tmp"/part{0,1,2,3,4}.tsv
fi
if [ -n "$feedback" ]; then
    echo "== the feedback loop: learn 10 % of the hard ham, rescore the other 90 %"
    python3 corpus/feedback.py --bin "$bin"
fi
