"""paramlab.sweep."""
