"""Weight normalisation (Salimans & Kingma 2016) under a parametrization (``docs/reference.md`` §12).

A weight-normalised layer computes with ``W = g * v / ||v||`` (the norm over the fan-in, one gain per
output unit). Flax's ``nn.WeightNorm`` keeps the direction ``v`` where the wrapped layer keeps its
kernel and stores the gain beside it as ``<WeightNorm module>/<kernel path>/scale``;
:func:`weight_norm_gains` finds these pairs. The spec classifies ``v`` as the matrix it replaces and
``g`` as a vector (:attr:`~paramlab.parametrization.ParamSpec.gain_of`), and the plan
(:func:`~paramlab.parametrization.scales.compute_scales`) gives ``g`` the rule that makes the normalised
layer move as the plain one would (``docs/reference.md`` §12):

- ``v``'s scale cancels in ``v / ||v||``, so its init scale is irrelevant to the forward pass and so is
  its forward multiplier; it keeps the plain weight's init and LR, because then (Adam) the direction
  turns by ``dv / ||v||`` with ``||v||`` proportional to the plain weight's scale.
- ``g`` carries the layer's scale: its init is the plain weight's multiplier times init factor, so
  ``W = m s w_0`` at init as without normalisation (``||w_0||`` per unit is 1 for a ``1/fan_in``
  init); its Adam LR has the same width factor (a relative step ``dg / g`` that does not drift with
  width; Adafactor's steps are already relative, so its factor is 1). The rule is derived for the
  Adam and Adafactor families; SGD is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["weight_norm_gains"]


def weight_norm_gains(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, str]:
    """``{gain path: direction path}`` for every ``nn.WeightNorm`` gain among ``shapes``' paths.

    A gain is a path ``<prefix>/<module>/<kernel path>[/value]/scale`` whose direction
    ``<prefix>/<kernel path>`` is a parameter of rank >= 2 ending in the gain's shape (one gain per
    feature of the normalised axes).
    """
    pairs = {}
    for path, shape in shapes.items():
        keys = path.split("/")
        if keys[-1] != "scale" or len(keys) < 3:
            continue
        inner = keys[:-2] if keys[-2] == "value" else keys[:-1]  # a boxed kernel's leaf is its value
        for k in range(1, len(inner)):  # inner[k - 1] is the WeightNorm module
            direction = "/".join(inner[: k - 1] + inner[k:])
            v = shapes.get(direction)
            if v is not None and len(v) >= 2 and tuple(v[len(v) - len(shape) :]) == tuple(shape):
                pairs[path] = direction
                break
    return pairs
