"""A user-supplied adapter, loaded in tests as ``tiny_adapter:TinyAdapter``."""

import torch
from torch import nn

from cldyn.tasks.base import TaskAdapter


class TinyAdapter(TaskAdapter):
    task = "tiny"

    def __init__(self, config=None):
        super().__init__({"width": 4, **(config or {})})
        w = self.config["width"]
        self.model = nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.Conv2d(w, 1, 1))
        self.feature_layer = "2"

    def preprocess(self, image):
        return image * 2 - 1

    def forward(self, image):
        return self.model(self.preprocess(image))

    def loss_from_output(self, output, targets):
        return nn.functional.binary_cross_entropy_with_logits(output, targets)

    @torch.no_grad()
    def predict(self, image):
        return torch.sigmoid(self.forward(image))

    def evaluate(self, predictions, targets):
        errors = [float((p - t).abs().mean()) for p, t in zip(predictions, targets, strict=True)]
        return {"mae": sum(errors) / len(errors)}
