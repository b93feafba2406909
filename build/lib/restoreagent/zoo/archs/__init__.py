"""Architectures the project loads itself (those spandrel does not cover)."""
