"""The plan scorer: a small network that scores (image, pipeline) pairs, trained on every candidate of
the labeled search data (not only the best). It picks a plan among all pipelines over the detector's
set (the ``ranker`` planner) and re-ranks other planners' candidates (the VLM's constrained beam).
"""

from .planner import RankerPlanner

__all__ = ["RankerPlanner"]
