"""Shared defaults for ``experiments.train``: every key, documented. Other configs start from this one.

Override any key on the command line: ``--config.optimizer.learning_rate=1e-2``. Unknown keys and
bad values are errors (exit code 2). Units: losses are in nats per byte (the vocabulary is the 256
byte values), so they compare directly with the corpus's unigram entropy.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()

    # Seed of the parameter initialization (the data order has its own seed, data.seed).
    c.seed = 0

    # --- model: a decoder-only byte-level Transformer (paramlab.models.TransformerConfig) --------
    # vocab_size is 256 (bytes), max_len is data.seq_len and the compute dtype is train.compute_dtype.
    c.model = ml_collections.ConfigDict()
    c.model.d_model = 128  # residual width: the width the parametrization scales
    c.model.n_layers = 2  # Transformer blocks (the depth the depth rule scales)
    c.model.scan_layers = False  # nn.scan over the blocks: compile time independent of depth
    c.model.remat = False  # recompute each block's activations in the backward pass (jax.checkpoint)
    # what remat saves: "nothing_saveable", "dots_saveable" or "dots_with_no_batch_dims_saveable"
    c.model.remat_policy = "nothing_saveable"
    c.model.n_heads = 4  # attention heads (scale with d_model at fixed d_head)
    c.model.d_head = 32  # per-head width (fixed across widths)
    c.model.d_ff = 512  # MLP hidden width (scales with d_model at a fixed ratio d_ff / d_model)
    c.model.norm = "rms"  # "rms" (RMSNorm) or "layer" (LayerNorm); pre-norm blocks
    c.model.qk_layernorm = False  # normalize queries and keys per head before the dot product
    c.model.positions = "rotary"  # "rotary" or "learned" positions
    c.model.tied_embeddings = False  # readout with the input embedding table's transpose
    c.model.use_bias = False  # biases in every Dense layer (and LayerNorm)
    c.model.activation = "gelu"  # MLP activation: "gelu", "relu", "silu" or "tanh"
    # "auto" (the parametrization's rule: "linear" for mup/mfp, "sqrt" for sp/ntk), "linear" (1/d_head,
    # with a factor sqrt(d_head) so it equals "sqrt" at the base width) or "sqrt" (1/sqrt(d_head))
    c.model.attention_scale = "auto"
    c.model.attention_multiplier = 1.0  # constant factor on the attention scale
    c.model.zero_init_readout = True  # readout kernel starts at zero (muP practice; untied only)
    c.model.zero_init_query = True  # query kernel starts at zero (muP practice)
    c.model.rope_theta = 10_000.0  # rotary base wavelength
    c.model.norm_eps = 1e-6  # epsilon of every norm
    # u-muP's unit-scaled ops (activation / RMS, residual (x + tau f) / sqrt(1 + tau^2)); with the
    # parametrization "umup" (docs/reference.md §13)
    c.model.unit_scaling = False
    c.model.residual_mult = 1.0  # u-muP: the residual branches' contribution against the embedding's
    c.model.residual_attn_ratio = 1.0  # u-muP: attention branches' contribution against the MLP's
    c.model.matmul_format = ""  # "" (compute dtype) or "float8_e4m3fn", ...: simulated low-precision matmuls

    # --- loss --------------------------------------------------------------------------------------
    c.loss = ml_collections.ConfigDict()
    c.loss.z_loss = 1e-4  # weight of the z-loss z_loss * mean(logsumexp(logits)^2); 0 disables

    # --- data: byte-level language modelling -------------------------------------------------------
    c.data = ml_collections.ConfigDict()
    c.data.path = ""  # "" = the embedded corpus (the Python standard library's source); or a file / dir
    c.data.max_bytes = 4_000_000  # read at most this many bytes of the corpus (0: all)
    c.data.eval_fraction = 0.05  # the held-out split: the corpus's last eval_fraction of bytes
    c.data.seq_len = 128  # tokens (bytes) per training sequence
    c.data.batch_size = 32  # sequences per optimizer step (all devices together)
    c.data.seed = 0  # the training batches' order
    c.data.eval_batches = 8  # held-out batches (of data.batch_size sequences) per evaluation

    # --- parametrization: how init, multipliers and per-layer LRs scale with width -----------------
    c.parametrization = ml_collections.ConfigDict()
    c.parametrization.name = "mup"  # "sp", "ntk", "mup", "mfp" or "mup_table8" (microsoft/mup's form)
    c.parametrization.alignment = "full"  # "full", "none" or a measured exponent (e.g. "0.75")
    # the proxy width where every parametrization equals the base model (d_ff and n_heads scale with
    # it at the ratios of model.d_ff and model.n_heads to model.d_model; d_head is fixed)
    c.parametrization.base_d_model = 64
    c.parametrization.lr_mode = "per_layer"  # "per_layer" (each role its LR exponent) or "global"
    c.parametrization.eps_mode = "constant"  # "constant" or "per_layer" (Adam epsilon follows grad scale)
    c.parametrization.weight_decay_mode = "lr_coupled"  # "lr_coupled" (AdamW) or "independent" of the LR
    # how the decay scales with width: "width_invariant" (per-step decay the same at every width),
    # "transfer" (the same, vectors undecayed) or "fixed" (one coefficient: plain AdamW)
    c.parametrization.weight_decay_rule = "width_invariant"
    # depth: "none" (width rules only), "depth_mup" (branches (L/L0)^-1/2) or "completep"
    # (branches (L/L0)^-alpha, with its LR and epsilon rules); docs/reference.md section 11
    c.parametrization.depth_rule = "none"
    c.parametrization.depth_alpha = 1.0  # CompleteP's alpha in [0.5, 1] (only "completep" reads it)
    c.parametrization.base_n_layers = 2  # the proxy depth where every depth rule equals "none"

    # --- optimizer ---------------------------------------------------------------------------------
    c.optimizer = ml_collections.ConfigDict()
    # "adam" / "adamw" (the same: decoupled decay), "adam_atan2" (no epsilon), "factored" (Adam with
    # fan-factored second moments), "adafactor" (the paper's: b1, b2, eps unused; steps scale with
    # RMS(weight), so it needs model.zero_init_readout=zero_init_query=False and an LR near 1e-1)
    # or "sgd" (momentum b1)
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 3e-3  # the global (peak) LR; per-layer LRs = this * plan multipliers
    c.optimizer.b1 = 0.9  # first-moment decay (momentum for sgd)
    c.optimizer.b2 = 0.95  # second-moment decay (adam, adamw, adam_atan2, factored)
    c.optimizer.eps = 1e-8  # Adam epsilon at the base width (scaled per layer by the plan)
    c.optimizer.weight_decay = 0.0  # decoupled weight decay (AdamW convention: multiplied by the LR)
    c.optimizer.clip_norm = 1.0  # clip the global gradient norm to this; 0 disables

    # --- learning-rate schedule --------------------------------------------------------------------
    c.schedule = ml_collections.ConfigDict()
    c.schedule.name = "cosine"  # "cosine" (warmup then cosine decay) or "constant" (warmup then flat)
    c.schedule.warmup_steps = 50  # linear warmup from 0
    c.schedule.final_fraction = 0.1  # cosine's final LR as a fraction of the peak

    # --- training ----------------------------------------------------------------------------------
    c.train = ml_collections.ConfigDict()
    c.train.steps = 1000  # optimizer updates
    c.train.microbatches = 1  # gradient accumulation: split each batch into this many microbatches
    c.train.compute_dtype = "float32"  # "float32" or "bfloat16" (float32 params either way)

    # --- evaluation --------------------------------------------------------------------------------
    c.eval = ml_collections.ConfigDict()
    c.eval.every = 200  # evaluate on the held-out batches every this many steps (and at the end)

    # --- checkpoints -------------------------------------------------------------------------------
    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 200  # save every this many steps (and at the end, and on SIGTERM)
    c.checkpoint.max_to_keep = 3  # keep the newest this many

    # --- logging -----------------------------------------------------------------------------------
    c.logging = ml_collections.ConfigDict()
    c.logging.every = 10  # a metrics.jsonl record (and a divergence check) every this many steps
    c.logging.progress_bar = True  # tqdm bar with ETA on stderr
    # the instability proxies of every logged step: attention_logit/<layer> (max |s q.k|),
    # attention_logit/max and output_logit (max |logit|), docs/reference.md §8
    c.logging.stability = True
    c.logging.tensorboard = False  # also TensorBoard event files in <workdir>/tensorboard (tensorboardX)
    # status lines go through absl logging: --verbosity=1 adds orbax's own, --log_dir writes them to files

    # --- devices -----------------------------------------------------------------------------------
    c.sharding = ml_collections.ConfigDict()
    c.sharding.data = -1  # data-parallel mesh axis (-1: all devices left after sharding.fsdp)
    c.sharding.fsdp = 1  # FSDP mesh axis: params and optimizer state split over this many devices

    # --- many processes (jax.distributed; docs/training.md §13) -------------------------------------
    c.distributed = ml_collections.ConfigDict()
    c.distributed.coordinator_address = ""  # "": one process; "host:port" of process 0; "auto": the cluster's
    c.distributed.num_processes = 1  # processes in the run (with a host:port coordinator)
    c.distributed.process_id = 0  # this process's index (with a host:port coordinator)

    return c
