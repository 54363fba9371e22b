"""paramlab.sweep: hyperparameter sweeps as one vmapped program, result tables and plots."""

from paramlab.sweep.members import check_members, product_members
from paramlab.sweep.results import (
    format_table,
    load_records,
    mean_over_seeds,
    optimal_settings,
    optimum_shift,
    save_records,
    strict_json,
)
from paramlab.sweep.statistics import fitted_log2_optimum, optimum_statistics, seed_mean, seed_std
from paramlab.sweep.vmapped import (
    SweepResult,
    SweepState,
    evaluate_members,
    init_sweep,
    make_sweep_step,
    member_sharding,
    run_sweep,
)
