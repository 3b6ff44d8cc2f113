"""Shared by the corpus scripts: the Bayes points of a probability (the mapping of
filters::bayes::symbol_for with the default points and thresholds), ROC AUC, the rates at
the tag score, and the readers of `portcullis eval --messages` and `bayes cv --scores`."""
import math

TAG = 5.0
# The defaults of filters::bayes and filters::symbols.
SPAM_T, HAM_T = 0.85, 0.1
BAYES_SPAM, LEAN_SPAM, LEAN_HAM, BAYES_HAM = 10.0, 5.0, -1.5, -3.0


def logit(p):
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def bayes_points(p):
    if p >= SPAM_T:
        return BAYES_SPAM * (0.5 + 0.5 * min((p - SPAM_T) / (1 - SPAM_T), 1.0))
    if p <= HAM_T:
        return BAYES_HAM * (0.5 + 0.5 * min((HAM_T - p) / HAM_T, 1.0))
    l = logit(p)
    if l > 0:
        return LEAN_SPAM * min(l / logit(SPAM_T), 1.0)
    if l < 0:
        return LEAN_HAM * min(l / logit(HAM_T), 1.0)
    return 0.0


def auc(scores, truth):
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and scores[order[j]] == scores[order[i]]:
            j += 1
        for k in range(i, j):
            ranks[order[k]] = (i + j + 1) / 2
        i = j
    pos = sum(truth)
    neg = len(truth) - pos
    rank_sum = sum(r for r, t in zip(ranks, truth) if t)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def at_tag(scores, truth, tag=TAG):
    """(spam recall, ham false-positive rate) from score `tag` up."""
    spam = [s for s, t in zip(scores, truth) if t]
    ham = [s for s, t in zip(scores, truth) if not t]
    rate = lambda xs: sum(s >= tag for s in xs) / len(xs) if xs else 0.0
    return rate(spam), rate(ham)


def read_messages(path):
    """`portcullis eval --messages`: (directory, is spam, {symbol: points}) per message."""
    rows = []
    for line in open(path, encoding="utf-8"):
        f = line.rstrip("\n").split("\t")
        symbols = {}
        for kv in f[4:]:
            name, points = kv.rsplit("=", 1)
            symbols[name] = symbols.get(name, 0.0) + float(points)
        rows.append((f[0], f[2] == "spam", symbols))
    return rows


def read_scores(path, scoring="combined"):
    """`portcullis bayes cv --scores`: (out-of-fold probability, group, fold) per message."""
    lines = open(path, encoding="utf-8").read().splitlines()
    head = lines[0].split("\t")
    ci, gi, fi = head.index(scoring), head.index("group"), head.index("fold")
    out = []
    for line in lines[1:]:
        f = line.split("\t")
        out.append((float(f[ci]), f[gi], int(f[fi])))
    return out


def other_points(symbols, prefixes=("BAYES_",)):
    """The points of every symbol whose name starts with none of `prefixes`."""
    return sum(p for n, p in symbols.items() if not n.startswith(prefixes))
