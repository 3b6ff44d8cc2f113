#!/usr/bin/env python3
"""Does the threshold carry over? The whole corpus split into partitions by origin.

Inputs (corpus/bench.sh --partitions makes them):
  --scores FILE...  `portcullis bayes cv --grouped --folds K --seed N --scores` over the whole
                    corpus (every source — List-Id, else From domain — in one partition):
                    each message's Bayes probability from a model trained on the other
                    partitions, one file per seed
  --messages FILE   `portcullis eval --messages` over the same directories in the same order:
                    every other symbol of every message

For each partition: its easy-ham and hard-ham false-positive rates and its spam recall at
the tag score of the whole score (Bayes points of the out-of-partition probability plus
every other symbol), and of the Bayes stage alone at bayes.spam_threshold; then the spread
over all partitions of all seeds. Standard library only.
"""
import argparse
import sys
from collections import defaultdict

from scorelib import SPAM_T, TAG, bayes_points, other_points, read_messages, read_scores


def kind(directory, spam):
    if spam:
        return "spam"
    return "hard" if "hard" in directory else "easy"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", required=True)
    ap.add_argument("--scores", required=True, nargs="+")
    a = ap.parse_args()
    msgs = read_messages(a.messages)
    rows = []
    print(f"{'seed':>4} {'part':>4} {'easy ham':>16} {'hard ham':>16} {'spam':>16}   Bayes alone at p >= {SPAM_T}: easy / hard FPR, recall")
    for k, path in enumerate(a.scores):
        seed = read_scores(path)
        if len(seed) != len(msgs):
            sys.exit(f"{path} and {a.messages} list different messages: make both from the same directories")
        parts = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))  # part → kind → [n, flagged, bayes flagged]
        for (directory, spam, sy), (p, _, fold) in zip(msgs, seed):
            c = parts[fold][kind(directory, spam)]
            c[0] += 1
            c[1] += other_points(sy) + bayes_points(p) >= TAG
            c[2] += p >= SPAM_T
        for fold in sorted(parts):
            c = parts[fold]
            rate = lambda x, i: 100 * c[x][i] / c[x][0] if c[x][0] else float("nan")
            rows.append((rate("easy", 1), rate("hard", 1), rate("spam", 1), rate("easy", 2)))
            print(
                f"{k:>4} {fold:>4} {rate('easy', 1):>6.2f}% of {c['easy'][0]:>5} {rate('hard', 1):>6.2f}% of {c['hard'][0]:>5}"
                f" {rate('spam', 1):>6.2f}% of {c['spam'][0]:>5}   {rate('easy', 2):.2f}% / {rate('hard', 2):.2f}%, {rate('spam', 2):.2f}%"
            )
    print("spread over every partition (min / mean / max):")
    for i, name in enumerate(["easy-ham FPR", "hard-ham FPR", "spam recall", "easy-ham FPR, Bayes alone"]):
        vals = [r[i] for r in rows if r[i] == r[i]]
        print(f"  {name:<26} {min(vals):6.2f}% / {sum(vals)/len(vals):6.2f}% / {max(vals):6.2f}%")


if __name__ == "__main__":
    main()
