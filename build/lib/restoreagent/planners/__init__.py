"""Planners: given a degraded image (and, for baselines, privileged facts), return a plan."""

from .base import Planner, PlanRequest, get_planner, planner_names

__all__ = ["Planner", "PlanRequest", "get_planner", "planner_names"]
