"""Capacity reconciler: desired counts of the frontend and prefill services (docs/scaling.md)."""
