#!/usr/bin/env python3
"""Choose the content symbols' points inside TRAIN, by cross-validation grouped by source.

Inputs (corpus/fit-points.sh makes them):
  --messages FILE   `portcullis eval --messages` on TRAIN: every symbol of every message
  --scores FILE...  `portcullis bayes cv --grouped --seed N --scores` on TRAIN: out-of-fold
                    Bayes probabilities and each message's source group, one file per seed

The Bayes points of a message are its out-of-fold probability's points (the mapping of
filters::bayes::symbol_for), so the content points are fitted against a Bayes that never saw
the message, as on live mail. Each content symbol's points are chosen from a grid by
coordinate ascent on the ROC AUC of the whole score; a tie keeps the smaller value. The grids
are below (GRID, GRID_COMMON). The procedure is itself cross-validated: points
fitted on nine folds of sources, scored on the tenth, for every seed. Standard library only.
"""
import argparse
import random
import sys

from scorelib import auc, at_tag, bayes_points, other_points, read_messages, read_scores, TAG

# Points a symbol may get. Shapes that legitimate bulk and notification mail commonly has
# (HTML without a text part, many links, no List-Unsubscribe) stop at 0.5: the training ham
# (mailing lists) has no such mail, so it cannot tell their ham rate, and in practice it is
# high. Shapes that legitimate mail rarely has go up to half the tag score: no structural
# shape alone may tag a message.
GRID = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
COMMON_IN_HAM = {"CONTENT_HTML_ONLY", "CONTENT_IMAGE_ONLY", "CONTENT_BULK_NO_UNSUBSCRIBE"}
GRID_COMMON = [0.0, 0.5]


def score_all(base, hits, points, idx):
    return [base[i] + sum(points[s] for s in hits[i]) for i in idx]


def fit(bases, hits, truth, candidates, idx):
    """Coordinate ascent over the grid; the objective is the mean AUC over the seeds."""
    points = {s: 0.0 for s in candidates}
    grid = {s: GRID_COMMON if s in COMMON_IN_HAM else GRID for s in candidates}
    t = [truth[i] for i in idx]

    def objective():
        return sum(auc(score_all(b, hits, points, idx), t) for b in bases) / len(bases)

    best = objective()
    for _ in range(3):
        changed = False
        for s in candidates:
            keep = points[s]
            for v in grid[s]:
                if v == keep:
                    continue
                points[s] = v
                o = objective()
                if o > best + 1e-6 or (abs(o - best) <= 1e-6 and v < keep):
                    best, keep, changed = o, v, True
            points[s] = keep
        if not changed:
            break
    return points, best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", required=True)
    ap.add_argument("--scores", required=True, nargs="+")
    ap.add_argument("--folds", type=int, default=10)
    a = ap.parse_args()
    msgs = [(spam, sy) for _, spam, sy in read_messages(a.messages)]
    seeds = [read_scores(p) for p in a.scores]
    if any(len(s) != len(msgs) for s in seeds):
        sys.exit("the messages file and the scores files list different messages: make both from TRAIN")
    truth = [spam for spam, _ in msgs]
    candidates = sorted({n for _, sy in msgs for n in sy if n.startswith("CONTENT_")})
    hits = [[n for n in sy if n.startswith("CONTENT_")] for _, sy in msgs]
    # Everything that is neither Bayes nor a candidate keeps its points (header sanity, ...).
    rest = [other_points(sy, ("BAYES_", "CONTENT_")) for _, sy in msgs]
    bases = [[r + bayes_points(p) for r, (p, _, _) in zip(rest, seed)] for seed in seeds]
    n_ham = truth.count(False)
    n_spam = truth.count(True)
    print(f"TRAIN: {n_ham} ham, {n_spam} spam; content symbols that fired: {len(candidates)}")
    print(f"{'symbol':<30} {'ham hits':>14} {'spam hits':>14}")
    for s in candidates:
        h = sum(1 for i in range(len(msgs)) if s in hits[i] and not truth[i])
        p = sum(1 for i in range(len(msgs)) if s in hits[i] and truth[i])
        print(f"{s:<30} {h:>6} {100*h/n_ham:>6.2f}% {p:>6} {100*p/n_spam:>6.2f}%")

    # The procedure, cross-validated: fit on nine folds of sources, score the tenth.
    print(f"\n{a.folds}-fold cross-validation grouped by source, per seed (AUC; recall / ham FPR at {TAG}):")
    for k, seed in enumerate(seeds):
        groups = sorted({g for _, g, _ in seed})
        rng = random.Random(k)
        rng.shuffle(groups)
        fold_of = {g: i % a.folds for i, g in enumerate(groups)}
        fitted = [0.0] * len(msgs)
        zero = [0.0] * len(msgs)
        for f in range(a.folds):
            train = [i for i in range(len(msgs)) if fold_of[seed[i][1]] != f]
            held = [i for i in range(len(msgs)) if fold_of[seed[i][1]] == f]
            pts, _ = fit([bases[k]], hits, truth, candidates, train)
            for i, s in zip(held, score_all(bases[k], hits, pts, held)):
                fitted[i] = s
            for i in held:
                zero[i] = bases[k][i]
        r0, f0 = at_tag(zero, truth)
        r1, f1 = at_tag(fitted, truth)
        print(
            f"  seed {k}: without content points AUC {auc(zero, truth):.4f} {100*r0:.1f}% / {100*f0:.2f}%"
            f"   with fitted points AUC {auc(fitted, truth):.4f} {100*r1:.1f}% / {100*f1:.2f}%"
        )

    points, best = fit(bases, hits, truth, candidates, list(range(len(msgs))))
    print(f"\npoints fitted on all of TRAIN (mean AUC over the seeds {best:.4f}):")
    for s in candidates:
        print(f"  {s:<30} {points[s]:.1f}")


if __name__ == "__main__":
    main()
