"""The model split at its last Linear, so one pass gives both its outputs and its features: the 128 numbers
(convnet; lenet's 84) the final Linear reads, what a writer's memory compares drawings by
(handler/adapt.py, docs/writers.md).

The exported model.pt is a Sequential (the CNN, then Temperature and NotADigitShift: train/train.py),
nested; its leaves are flattened and cut before the last Linear: body (everything up to the features),
head (the Linear and whatever follows it). Scripted together they return (outputs, features), and freezing
then fuses each half as it fused the whole. A model that is no Sequential ending in a Linear has no such
cut: split() gives None, and the handler answers without adaptation.
"""

import torch
from torch import nn


class Split(nn.Module):
    def __init__(self, body: list, head: list):
        super().__init__()
        self.body = nn.Sequential(*body)
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features


def _leaves(module) -> list:
    found = []
    for child in module.children():
        if getattr(child, "original_name", type(child).__name__) == "Sequential":
            found += _leaves(child)
        else:
            found.append(child)
    return found


def split(model) -> torch.jit.ScriptModule | None:
    """model (a TorchScript Sequential, eval mode) as one module returning (outputs, features), or None when
    it has no last Linear to cut before."""
    leaves = _leaves(model)
    names = [getattr(leaf, "original_name", type(leaf).__name__) for leaf in leaves]
    if "Linear" not in names:
        return None
    cut = len(names) - 1 - names[::-1].index("Linear")
    if cut == 0:
        return None
    return torch.jit.script(Split(leaves[:cut], leaves[cut:]).eval())
