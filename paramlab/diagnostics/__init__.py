"""paramlab.diagnostics."""

from paramlab.diagnostics.alignment import (
    alignment_exponent,
    alignment_metrics,
    alignment_probe,
    capture_dense_inputs,
    layer_alignment,
    make_alignment_fn,
)
from paramlab.diagnostics.coord_check import (
    FAST_CPU_COMPILE,
    CoordCheckSetup,
    coord_check,
    coord_check_summary,
    loglog_slope,
)
from paramlab.diagnostics.depth_check import (
    DEPTH_RECORD_KEYS,
    depth_check,
    depth_check_summary,
    linen_depth_setup,
)
from paramlab.diagnostics.grad_scale import (
    EpsilonUnderflowWarning,
    check_epsilon_underflow,
    epsilon_underflow,
    grad_rms,
    grad_scale_exponents,
    measure_grad_rms,
)
from paramlab.diagnostics.plots import plot_coord_check, plot_depth_check
from paramlab.diagnostics.sensitivity import lr_sensitivity, lr_sensitivity_table
from paramlab.diagnostics.setups import (
    intermediates_by_module,
    linen_forward,
    linen_plan_setup,
    nnx_plan_setup,
)
from paramlab.diagnostics.spectral import spectral_probe, top_singular_values
from paramlab.diagnostics.stability import apply_with_stability, stability_metrics
from paramlab.diagnostics.unit_scale import scale_probe, tensor_rms
