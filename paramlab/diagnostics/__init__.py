"""paramlab.diagnostics."""
from paramlab.diagnostics.alignment import (
    alignment_exponent,
    alignment_metrics,
    alignment_probe,
    capture_dense_inputs,
    layer_alignment,
    make_alignment_fn,
)
from paramlab.diagnostics.sensitivity import lr_sensitivity, lr_sensitivity_table
