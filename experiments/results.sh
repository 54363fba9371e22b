#!/usr/bin/env bash
# Regenerates docs/results.md's runs and figures: `make results` (every section, many CPU hours) or
# `make results SECTIONS="12 13"` (those sections). Each section runs its committed command(s) into
# runs/ (git-ignored) and copies its figures to docs/figures/; every table of docs/results.md is a file
# the run writes (optimal_lr.md, alignment.md, layer_constants.md, grad_scale.md, compare_runs.md, ...).
# Wall times are those of the 2-core CPU machine the results were measured on.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
FIG=docs/figures
run() { echo "+ $*" >&2; "$PY" -m "$@"; }
copy() { cp "$1" "$FIG/$2"; }

section_1() {  # Adam LR transfer, 60 steps, one seed (~35 min)
  run experiments.lr_transfer --config.parametrization=sp_global,sp,mup --config.optimizer=adam \
    --config.alignment=full --config.widths=64,128,256,512 \
    --config.learning_rate_grid=0.000244140625,0.125,2 --config.steps=60 --config.warmup_steps=10 \
    --config.seeds=1 --out=runs/lr_transfer_main
  copy runs/lr_transfer_main/lr_transfer.png lr_transfer_adam.png
}

section_2() {  # Adam epsilon at width 512: eps = 1e-8 vs Adam-atan2
  local common="--config.parametrization=ntk,mfp --config.alignment=full --config.widths=512
    --config.learning_rate_grid=0.00390625,0.0625,2 --config.steps=60 --config.warmup_steps=10 --config.seeds=1"
  run experiments.lr_transfer $common --config.optimizer=adam --config.eps=1e-8 --out=runs/lr_transfer_eps_adam
  run experiments.lr_transfer $common --config.optimizer=adam_atan2 --out=runs/lr_transfer_eps_atan2
}

section_4() {  # depth (~1 h)
  local depth="--config.parametrization=mup --config.base_width=64 --config.base_depth=2 --config.seeds=3
    --config.seq_len=32 --config.batch_size=8"
  run experiments.lr_transfer $depth --out=runs/depth_transfer --config.widths=128 --config.depths=2,4,8,16 \
    --config.depth_rule=none,depth_mup,completep --config.learning_rate_grid=0.001953125,0.0625,2 \
    --config.steps=250 --config.warmup_steps=25
  run experiments.lr_transfer $depth --out=runs/depth_grid --config.widths=64,128,256 --config.depths=2,4,8 \
    --config.depth_rule=completep --config.learning_rate_grid=0.001953125,0.0625,2 \
    --config.steps=250 --config.warmup_steps=25
  run experiments.lr_transfer $depth --out=runs/depth_horizon --config.widths=128 --config.depths=2,16 \
    --config.depth_rule=none,completep --config.learning_rates=0.0078125 --config.steps=1000 \
    --config.warmup_steps=100 --config.curve_every=50
  run experiments.depth_check --out=runs/depth_check --config.depths=2,4,8,16,32 --config.seeds=3
  copy runs/depth_transfer/lr_transfer.png depth_lr_transfer.png
  copy runs/depth_transfer/optimal_lr.png depth_optimal_lr.png
  copy runs/depth_grid/lr_transfer.png depth_grid_lr_transfer.png
  copy runs/depth_grid/optimal_lr.png depth_grid_optimal_lr.png
  copy runs/depth_horizon/loss_curves.png depth_horizon_curves.png
  copy runs/depth_check/depth_check.png depth_check.png
}

section_5() {  # weight-decay transfer
  run experiments.weight_decay_transfer --out=runs/wd_transfer \
    --config.learning_rate_grid=0.015625,0.125,2 --config.weight_decays=0.015625,0.0625,0.25,1
  copy runs/wd_transfer/wd_transfer.png wd_transfer.png
  copy runs/wd_transfer/sigma_transfer.png wd_sigma_transfer.png
  copy runs/wd_transfer/sigma_curves.png wd_sigma_curves.png
}

section_6() {  # instabilities: qk-layernorm and z-loss
  run experiments.stability --out=runs/stability
  copy runs/stability/stability_lr.png stability_lr.png
  copy runs/stability/stability_sensitivity.png stability_sensitivity.png
}

section_7() {  # weight normalisation: the coordinate check, 3 seeds
  for seed in 0 1 2; do
    run experiments.coord_check --out=runs/coord_check_wn_seed$seed --config.seed=$seed \
      --config.parametrization=sp_global,mup --config.optimizer=adam --config.weight_norm=True \
      --config.widths=64,128,256,512,1024,2048 --config.steps=5
  done
  copy runs/coord_check_wn_seed0/coord_check.png coord_check_weight_norm.png
}

section_8() {  # u-muP in low precision
  run experiments.low_precision --out=runs/low_precision
  copy runs/low_precision/low_precision_lr.png low_precision_lr.png
  copy runs/low_precision/tensor_rms.png tensor_rms.png
}

section_9() {  # u-muP LR transfer
  run experiments.lr_transfer --out=runs/lr_transfer_umup --config.parametrization=umup \
    --config.optimizer=adam --config.widths=32,64,128 --config.base_width=32 \
    --config.learning_rate_grid=0.0625,8,2 --config.steps=200 --config.seeds=3
  copy runs/lr_transfer_umup/lr_transfer.png lr_transfer_umup.png
}

section_10() {  # coordinate checks, every recipe x optimizer family (4 min)
  run experiments.coord_check_grid --out=runs/coord_check_grid
  copy runs/coord_check_grid/coord_check_grid.png coord_check_grid.png
}

section_11() {  # Adam epsilon: a sweep of epsilon (~16 min), and the gradient scale to width 8192 (~3 min)
  local common="--config.parametrization=ntk,mfp --config.widths=64,256
    --config.learning_rate_grid=0.00390625,0.0625,2 --config.steps=100 --config.warmup_steps=10 --config.seeds=3"
  run experiments.lr_transfer $common --config.optimizer=adam_atan2 --out=runs/eps_atan2
  run experiments.lr_transfer $common --config.optimizer=adam --config.eps=1e-4 --out=runs/eps_const_1e-4
  run experiments.lr_transfer $common --config.optimizer=adam --config.eps=1e-4 --config.eps_mode=per_layer \
    --out=runs/eps_per_layer_1e-4
  run experiments.lr_transfer $common --config.optimizer=adam --config.eps=1e-3 --out=runs/eps_const_1e-3
  run experiments.compare_runs --out=runs/eps_compare "Adam-atan2 (no eps)=runs/eps_atan2" \
    "Adam eps 1e-4=runs/eps_const_1e-4" "Adam eps 1e-4 per layer=runs/eps_per_layer_1e-4" \
    "Adam eps 1e-3=runs/eps_const_1e-3"
  run experiments.grad_scale --out=runs/grad_scale
  copy runs/eps_compare/compare_runs.png eps_underflow.png
  copy runs/grad_scale/grad_scale.png grad_scale.png
}

LONG="--config.optimizer=adam --config.widths=64,128,256 --config.learning_rate_grid=0.0009765625,0.03125,2
  --config.steps=500 --config.warmup_steps=25 --config.seeds=3"

section_12() {  # Adam LR transfer, 500 steps, 3 seeds (~80 min)
  run experiments.lr_transfer $LONG --config.parametrization=sp_global,sp,mup --out=runs/lr_transfer_long
  copy runs/lr_transfer_long/lr_transfer.png lr_transfer_long.png
  copy runs/lr_transfer_long/loss_curves.png lr_transfer_long_curves.png
}

section_13() {  # alignment over training (~10 min), then LR transfer under none / measured / across-widths (~30 min)
  run experiments.lr_transfer --out=runs/alignment --config.parametrization=sp,mup,ntk --config.optimizer=adam \
    --config.widths=64,128,256 --config.learning_rates=0.00390625,0.0078125,0.015625 --config.steps=200 \
    --config.warmup_steps=10 --config.seeds=3 --config.log_alignment=True
  local measured across long2="--config.parametrization=sp --config.optimizer=adam --config.widths=64,256
    --config.learning_rate_grid=0.001953125,0.03125,2 --config.steps=500 --config.warmup_steps=25 --config.seeds=3"
  measured=$("$PY" -c "import json; from experiments.alignment_summary import alignment_flag
print(alignment_flag(json.load(open('runs/alignment/alignment.json'))['measured']['sp']))")
  across=$("$PY" -c "import json; from experiments.alignment_summary import alignment_flag
a = json.load(open('runs/alignment/alignment.json'))['across_widths']['sp']
print(alignment_flag({k: min(1.0, max(0.0, v['mean'])) for k, v in a.items()}))")
  run experiments.lr_transfer $long2 --config.alignment=none --out=runs/lr_transfer_long_none
  run experiments.lr_transfer $long2 --config.alignment="$measured" --out=runs/lr_transfer_long_measured
  run experiments.lr_transfer $long2 --config.alignment="$across" --out=runs/lr_transfer_long_across
  run experiments.compare_runs --out=runs/alignment_compare "full=runs/lr_transfer_long" \
    "none=runs/lr_transfer_long_none" "measured per width ($measured)=runs/lr_transfer_long_measured" \
    "measured across widths ($across)=runs/lr_transfer_long_across"
  copy runs/alignment/alignment.png alignment.png
  copy runs/alignment_compare/compare_runs.png alignment_lr_transfer.png
}

section_14() {  # per-role LR constants at width 64, transferred to 512 (~15 min; the LR from section 13)
  local lr
  lr=$("$PY" -c "import json
print(next(r['best_learning_rate'] for r in json.load(open('runs/alignment/optimal_lr.json'))['optimal']
           if r['recipe'] == 'mup' and r['width'] == 64))")
  run experiments.layer_constants --out=runs/layer_constants --config.learning_rates="$lr"
  copy runs/layer_constants/layer_constants.png layer_constants.png
}

section_15() {  # SGD and Adafactor LR transfer (~20 min)
  for optimizer in sgd adafactor; do
    run experiments.lr_transfer --out=runs/lr_transfer_$optimizer --config.parametrization=sp_global,mup \
      --config.optimizer=$optimizer --config.widths=64,256 --config.learning_rate_grid=0.015625,0.5,2 \
      --config.steps=150 --config.warmup_steps=10 --config.seeds=3
    copy runs/lr_transfer_$optimizer/lr_transfer.png lr_transfer_$optimizer.png
  done
}

mkdir -p runs "$FIG"
for s in ${@:-1 2 4 5 6 7 8 9 10 11 12 13 14 15}; do
  declare -F "section_$s" >/dev/null || { echo "results.sh: no section $s (have 1, 2, 4-15)" >&2; exit 2; }
  "section_$s"
done
