"""Models a user writes in their own code, reached by ``package.module:factory`` in tests."""

from __future__ import annotations

import torch
from torch import nn


class SharedBlockNet(nn.Module):
    """A stem, one 3×3 conv applied twice (shared weights), a linear head."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(8)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.shared_bn = nn.BatchNorm2d(8)
        self.mix = nn.Conv2d(8, 16, 1)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem(x)))
        for _ in range(2):
            x = torch.relu(self.shared_bn(self.shared(x))) + x
        x = torch.relu(self.mix(x))
        return self.head(x.mean(dim=(2, 3)))


def shared_block_net(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Stem, a shared 3×3 block applied twice, 1×1 mix, linear head (a user model)."""
    return SharedBlockNet(num_classes, in_channels)


shared_block_net.image_size = 8  # type: ignore[attr-defined]


class AttentionNet(nn.Module):
    """Convs around layers eqsearch cannot quantize: a Conv1d and self-attention."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.mix = nn.Conv2d(8, 8, 1)
        self.temporal = nn.Conv1d(8, 8, 3, padding=1)
        self.attention = nn.MultiheadAttention(8, num_heads=2, batch_first=True)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.mix(torch.relu(self.stem(x))))
        tokens = self.temporal(x.flatten(2)).transpose(1, 2)
        attended, _ = self.attention(tokens, tokens, tokens)
        return self.head(attended.mean(dim=1))


def attention_net(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Convs, a Conv1d and multi-head attention (partly unquantizable)."""
    return AttentionNet(num_classes, in_channels)
