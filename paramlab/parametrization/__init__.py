"""paramlab.parametrization."""
