"""paramlab.train."""
