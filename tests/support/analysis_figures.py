"""Figures as the analysis jobs read them (``health_inputs``,
``window_summary``), given as a plain dict: for tests of the health,
recommendations and impact jobs."""

from __future__ import annotations


class Figures:
    """The analysis jobs' figure source, answering the same figures for any window."""

    def __init__(self, figures):
        self.figures = figures

    def health_inputs(self, start, end):
        return dict(self.figures)

    def window_summary(self, start, end):
        return {k: self.figures.get(k) for k in ("delivered_per_s", "delivery_p99_ms",
                                                 "drops_per_s")}
