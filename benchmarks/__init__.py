"""paramlab benchmarks: write JSON, compare against optax / plain training in the same run."""
