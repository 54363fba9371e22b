"""paramlab experiments: absl entry points and ml_collections configs."""
