"""paramlab.models: an MLP (Linen and NNX), a residual MLP, a decoder-only Transformer (Linen and
NNX) and LM losses."""

from paramlab.models.losses import cross_entropy
from paramlab.models.mlp import MLP, NNXMLP, MLPConfig, ResidualMLP, ResidualMLPConfig
from paramlab.models.nnx_transformer import NNXTransformer
from paramlab.models.transformer import Transformer, TransformerConfig, stack_blocks
