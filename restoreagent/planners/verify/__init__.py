"""The verifying planner: the plan scorer's best pipelines for the detector's likely degradation sets,
run on a view of the photo, and a verifier trained on their scores against clean photos that picks
the one to keep (the ``verify`` planner; its training data and fitting: :mod:`.data`, :mod:`.train`).
"""

from .planner import VerifyPlanner

__all__ = ["VerifyPlanner"]
