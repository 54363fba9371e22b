"""paramlab.models."""
