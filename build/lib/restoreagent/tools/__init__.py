"""Restoration tools and their registry.

A tool is a callable ``image -> image`` (float32 RGB in [0, 1], shape (H, W, 3), same size out)
with metadata. The catalogue of tools is data (``restoreagent/catalog/tools.yaml``); implementations
are imported only when a tool is built, so a missing optional dependency disables only its tools.
"""

from .registry import Tool, ToolSpec, available_tools, get_tool, list_specs, tools_for_task

__all__ = ["Tool", "ToolSpec", "available_tools", "get_tool", "list_specs", "tools_for_task"]
