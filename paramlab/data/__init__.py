"""paramlab.data."""
