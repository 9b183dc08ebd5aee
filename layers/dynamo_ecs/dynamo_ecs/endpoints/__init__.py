"""The endpoint reconciler: keep the GPU task definitions pointed at the infra task now."""
