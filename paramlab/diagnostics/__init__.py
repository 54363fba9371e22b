"""paramlab.diagnostics."""
