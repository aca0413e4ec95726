"""Training helpers of the `fusion` profile: start exactly at the zero-shot bridge, train only the residual.

The `yamnet_fusion` tower (models.towers.cores.fusion) outputs [bridge vector | YAMNet embedding | class scores];
with W_b = I, W_r = 0, b = 0 the projected audio vector is the bridge's, so training starts from zero-shot.
"""

from __future__ import annotations

import torch
from torch import nn

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.dual_encoder import DualEncoder


def bridge_width(model: DualEncoder) -> int:
    core = getattr(model.audio_tower, "core", None)
    width = getattr(core, "bridge_dim", None)
    if width is None:
        raise ModelLoadError("the fusion helpers need a yamnet_fusion audio tower")
    return int(width)


def init_fusion(model: DualEncoder) -> DualEncoder:
    """Make `model` equal the zero-shot bridge: audio projection [I | 0] with zero bias, identity text
    projection, which is then frozen so that queries stay plain MiniLM embeddings."""
    width = bridge_width(model)
    proj, text_proj = model.audio_proj, model.text_proj
    if not isinstance(proj, nn.Linear) or not isinstance(text_proj, nn.Linear):
        raise ModelLoadError("init_fusion needs linear projections")
    if text_proj.in_features != width or proj.out_features < width:
        raise ModelLoadError(f"init_fusion needs a linear text projection from {width}-d and embed_dim >= {width}")
    with torch.no_grad():
        proj.weight.copy_(bridge_identity(proj, width))
        proj.bias.zero_()
        text_proj.weight.copy_(torch.eye(text_proj.out_features, width))
        text_proj.bias.zero_()
    text_proj.requires_grad_(False)
    return model


def bridge_identity(proj: nn.Linear, width: int) -> torch.Tensor:
    """The projection weight that passes the bridge block through and drops the rest: [[I, 0], [0, 0]]."""
    eye = torch.zeros(proj.out_features, proj.in_features)
    eye[:width, :width] = torch.eye(width)
    return eye


def freeze_bridge_block(model: DualEncoder) -> torch.utils.hooks.RemovableHandle:
    """Keep W_b at its value (gradients masked), so training moves the residual and bias only.

    AdamW's decoupled weight decay still shrinks W_b slightly; since the output is normalised, that only
    weighs the residual a little more, like a larger learning rate on it would."""
    weight = model.audio_proj.weight
    mask = torch.ones_like(weight)
    mask[:, : bridge_width(model)] = 0.0
    return weight.register_hook(lambda grad: grad * mask)
