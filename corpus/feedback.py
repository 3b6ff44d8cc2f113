#!/usr/bin/env python3
"""The operators' feedback loop, measured: how fast learning released hard ham helps.

Trains a fresh model on TRAIN, then learns a random 10 % of TEST's hard ham as ham
(`random.Random(1).sample` of the sorted file names, 25 of 250), five at a time, as an
operator does (`portcullis bayes learn --ham FILE`: the learn path and the weight,
`bayes.feedback_weight`, of the quarantine's "release and learn"), and after each step scores the other 225 through the
whole inbound pipeline (`portcullis eval`) at the tag score. Prints the hard-ham
false-positive rate before and after each step and the number of learned messages after
which it is halved.

usage: corpus/feedback.py [--bin target/release/portcullis] [--step 5]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SPLIT = os.path.join(HERE, "cache", "split")


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "portcullis"))
    ap.add_argument("--step", type=int, default=5)
    ap.add_argument("--share", type=float, default=0.10)
    a = ap.parse_args()
    hard = os.path.join(SPLIT, "test", "ham-hard")
    names = sorted(n for n in os.listdir(hard) if not n.startswith("."))
    learned = random.Random(1).sample(names, round(a.share * len(names)))
    rest = [n for n in names if n not in set(learned)]
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "portcullis.toml")
        with open(config, "w") as f:
            f.write(f'data_dir = "{tmp}/data"\nmetrics_bind = ""\n')
        rest_dir = os.path.join(tmp, "rest")
        os.makedirs(rest_dir)
        for n in rest:
            os.symlink(os.path.realpath(os.path.join(hard, n)), os.path.join(rest_dir, n))
        run([a.bin, "bayes", "--config", config, "train",
             "--ham", os.path.join(SPLIT, "train", "ham"), "--spam", os.path.join(SPLIT, "train", "spam")])

        def hard_fpr():
            report = json.loads(run([a.bin, "eval", "--config", config, "--json",
                                     "--ham", rest_dir, "--spam", os.path.join(SPLIT, "test", "spam")]))
            d = next(d for d in report["dirs"] if d["class"] == "ham")
            return d["flagged"], d["messages"], report["spam_recall"]

        flagged, n, recall = hard_fpr()
        before = flagged / n
        print(f"hard ham learned {len(learned)} of {len(names)} (random.Random(1).sample), scored: the other {n}")
        print(f"learned   0: hard-ham FPR {100 * before:5.2f}% ({flagged} of {n}), spam recall {100 * recall:.2f}%")
        halved_at = None
        for k in range(a.step, len(learned) + a.step, a.step):
            for name in learned[k - a.step:k]:
                run([a.bin, "bayes", "--config", config, "learn", "--ham", os.path.join(hard, name)])
            flagged, n, recall = hard_fpr()
            k = min(k, len(learned))
            print(f"learned {k:>3}: hard-ham FPR {100 * flagged / n:5.2f}% ({flagged} of {n}), spam recall {100 * recall:.2f}%")
            if halved_at is None and flagged / n <= before / 2:
                halved_at = k
        print(f"halved after {halved_at} learned messages" if halved_at else "not halved")


if __name__ == "__main__":
    main()
