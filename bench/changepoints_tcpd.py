"""TCPD (the Turing Change Point Dataset, van den Burg & Williams 2020): the
31 vendored series in bench/data/tcpd, the paper's F1 implemented from its
definition, and leave-one-out cross-validation of the detector's settings.

The F1 (the paper's, section 4): margin 5 points; the point 0 is added to
every annotator's set and to the predictions; precision is against the
union of all annotators' points, recall is averaged over annotators; each
true point is matched at most once, to the nearest prediction within the
margin."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "tcpd"
MARGIN = 5


def true_positives(truth: Iterable[int], predicted: Iterable[int], margin: int = MARGIN) -> int:
    """True points matched to a distinct prediction: in the order of ``truth``,
    each to its nearest still unmatched prediction within ``margin`` (ties: the
    earlier one). ``f1`` passes sets, iterated in Python's set order, as the
    paper's own code does: greedy matching depends on the order, and so the
    figures agree with the paper's code to the last digit."""
    left, hits = set(predicted), 0
    for tau in truth:
        close = [(abs(tau - x), x) for x in left if abs(tau - x) <= margin]
        if close:
            hits += 1
            left.remove(min(close)[1])
    return hits


def f1(annotations: Sequence[Sequence[int]], predicted: Iterable[int],
       margin: int = MARGIN) -> float:
    """The paper's F1 of ``predicted`` against each annotator's points."""
    sets = [set(a) | {0} for a in annotations]
    found = set(predicted) | {0}
    union = set().union(*sets)
    precision = true_positives(union, found, margin) / len(found)
    recall = sum(true_positives(s, found, margin) / len(s) for s in sets) / len(sets)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def load() -> dict[str, tuple[list[float], list[list[int]]]]:
    """name -> (values, each annotator's change points)."""
    annotations = json.loads((DATA / "annotations.json").read_text())
    out = {}
    for name in sorted(annotations):
        with open(DATA / f"{name}.csv", newline="") as handle:
            values = [float(row["value"]) for row in csv.DictReader(handle)]
        out[name] = (values, [list(points) for points in annotations[name].values()])
    return out


def paper_figures(names: Iterable[str]) -> dict[str, float]:
    """The paper's mean default-parameter F1 per method over ``names``."""
    with open(DATA / "paper_default_f1.tsv", newline="") as handle:
        rows = {r["series"]: r for r in csv.DictReader(handle, delimiter="\t")}
    names = list(names)
    return {m: round(sum(float(rows[n][m]) if rows[n][m] != "-" else 0.0 for n in names)
                     / len(names), 3) for m in ("binseg", "pelt", "bocpd", "zero")}


Detector = Callable[[list[float], dict], list[int]]


def scores(series: dict, detector: Detector, setting: dict) -> dict[str, float]:
    return {name: f1(ann, detector(values, setting)) for name, (values, ann) in series.items()}


def cross_validate(series: dict, detector: Detector, grid: list[dict],
                   null_ok: Callable[[dict], bool], log: Callable[[str], None],
                   ) -> tuple[float, dict[str, dict]]:
    """Leave-one-out: for each series, the setting (among those that keep the
    generated change-free series within target, ``null_ok``) with the best mean
    F1 on the other 30, scored on the one left out. Returns (mean held-out F1,
    per series the chosen setting and its held-out F1)."""
    allowed = [s for s in grid if null_ok(s)]
    log(f"changepoints: {len(allowed)} of {len(grid)} settings keep the null target")
    table = [scores(series, detector, s) for s in allowed]
    held, out = [], {}
    totals = [sum(row.values()) for row in table]
    for name in series:
        best = max(range(len(allowed)), key=lambda i: totals[i] - table[i][name])
        held.append(table[best][name])
        out[name] = {"setting": allowed[best], "f1": round(table[best][name], 3)}
    return sum(held) / len(held), out
