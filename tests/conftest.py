"""Test configuration: 4 virtual CPU devices (for sharding tests) and float64 available on request."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
