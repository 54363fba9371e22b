"""paramlab.models: an MLP (Linen and NNX), a decoder-only Transformer (Linen) and LM losses."""

from paramlab.models.losses import cross_entropy
from paramlab.models.mlp import MLP, NNXMLP, MLPConfig
from paramlab.models.transformer import Transformer, TransformerConfig
