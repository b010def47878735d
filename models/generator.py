"""The refinement generator: a small U-Net on the aligned face crop, built for INT8 on the edge.

Inputs: one NCHW float32 tensor `crop` (1, C, S, S), values 0..1, channels named by `INPUT_CHANNELS`
(the bundle's contract carries the list, so the device builds what the model was trained on):
0-2 the warped crop in RGB (nothing painted), 3 the repair mask (where the output may change: the
whole mouth, lips and opening, and the eyes), 4 the mouth opening of this frame (inside the inner
lips: there the warp has nothing true to show, and the generator draws teeth, tongue and the dark of
the mouth), 5-7 the photo's own face aligned the same way (its teeth, lip colour and lids to copy).
Output: `refined` (1, 3, S, S) RGB 0..1 = warped + mask * residual, clamped: outside the mask the
crop passes through unchanged, so the network only has to be right where the warp fails.

Only PixelUnshuffle/PixelShuffle (space-to-depth and back), Conv2d, BatchNorm2d (folded into the
convolutions for export), ReLU, nearest upsampling, concatenation, add, mul and clamp: every op
INT8-quantizes on ONNX Runtime, OpenVINO and TFLite. 1.39 M parameters, 1.15 GMAC at 256x256 (see
`macs`), none of it at full resolution.

Why space-to-depth: a first U-Net with full- and half-resolution layers (0.66 GMAC) was memory-bound,
and its INT8 builds were only 1.2-1.3x faster than FP32 on OpenVINO and ONNX Runtime. Folding the crop
4x4 into channels first makes every layer compute-bound: INT8 is 2.0-2.3x (ONNX Runtime) and 2.6-3.1x
(OpenVINO) faster at twice the MACs (models/README.md).
"""

from __future__ import annotations

import torch
from torch import nn

ARCH = "unet-s2d"
DEFAULT_WIDTHS = (48, 96, 128, 48)  # 1/4, 1/8, 1/16 resolution, 1/4-resolution head
DEFAULT_BLOCKS = 3
DEFAULT_S2D = 4  # space-to-depth factor at the input, depth-to-space at the output
INPUT_CHANNELS = (
    "red", "green", "blue", "repair_mask", "mouth_interior", "reference_red", "reference_green", "reference_blue",
)  # fmt: skip
# The first generators (trained on stills, the mouth's inside painted) saw only these.
STILL_INPUT_CHANNELS = ("red", "green", "blue", "repair_mask")
INPUT_MEANING = (
    "the aligned face crop after the landmark warp (nothing painted); the repair mask (where the output may "
    "change: the whole mouth and the eyes, feathered); the mouth opening of this frame (inside the inner lips, "
    "anti-aliased, drawn in the crop); the photo's own face aligned the same way (RGB)"
)
# A generator that draws the mouth's inside needs the full range there (dark cavity over pale lips, teeth
# over a dark slot). The first one, trained on stills with the inside painted, was held to +-0.25: unbounded,
# toothy training smiles taught it to paint lower lips white. Real talking video is the cure for that.
DEFAULT_RESIDUAL_LIMIT = 1.0


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = ConvBNReLU(channels, channels)
        self.b = ConvBNReLU(channels, channels, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.b(self.a(x)))


class Generator(nn.Module):
    """Space-to-depth U-Net: the crop is folded into s2d x s2d blocks (4 -> 64 channels at 1/4 resolution),
    so every convolution runs on few pixels with many channels (compute-bound, INT8-friendly); the head
    predicts the residual of each s2d x s2d block and depth-to-space unfolds it to full resolution."""

    def __init__(
        self,
        widths: tuple[int, ...] = DEFAULT_WIDTHS,
        blocks: int = DEFAULT_BLOCKS,
        s2d: int = DEFAULT_S2D,
        residual_limit: float = DEFAULT_RESIDUAL_LIMIT,
        inputs: tuple[str, ...] = INPUT_CHANNELS,
    ) -> None:
        super().__init__()
        w1, w2, w3, w0 = widths
        self.widths, self.blocks, self.s2d, self.residual_limit = tuple(widths), blocks, s2d, float(residual_limit)
        self.input_channels = list(inputs)
        if tuple(inputs) == INPUT_CHANNELS:
            self.input_meaning = INPUT_MEANING  # the contract's text (export falls back to the still model's)
        self.trained_crop = 256
        c0 = len(inputs) * s2d * s2d
        self.unshuffle = nn.PixelUnshuffle(s2d)
        self.shuffle = nn.PixelShuffle(s2d)
        self.enc1 = ConvBNReLU(c0, w1)
        self.enc2 = ConvBNReLU(w1, w2, stride=2)
        self.enc3 = ConvBNReLU(w2, w3, stride=2)
        self.mid = nn.Sequential(*[ResBlock(w3) for _ in range(blocks)])
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = ConvBNReLU(w3 + w2, w2)
        self.dec1 = ConvBNReLU(w2 + w1, w1)
        self.dec0 = ConvBNReLU(w1 + c0, w0)
        self.head = nn.Conv2d(w0, 3 * s2d * s2d, 3, 1, 1)
        nn.init.zeros_(self.head.weight)  # start as the identity: output = the warped crop
        nn.init.zeros_(self.head.bias)

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        rgb, mask = crop[:, :3], crop[:, 3:4]
        x0 = self.unshuffle(crop)
        e1 = self.enc1(x0)
        e2 = self.enc2(e1)
        e3 = self.mid(self.enc3(e2))
        d2 = self.dec2(torch.cat([self.up(e3), e2], 1))
        d1 = self.dec1(torch.cat([self.up(d2), e1], 1))
        split = isinstance(self.dec0, SplitConvReLU)  # the export form, see split_input_concat
        d0 = self.dec0(d1, x0) if split else self.dec0(torch.cat([d1, x0], 1))
        residual = torch.clamp(self.shuffle(self.head(d0)), -self.residual_limit, self.residual_limit)
        if getattr(self, "outputs_change", False):  # the export form, see change_output
            return mask * residual
        return torch.clamp(rgb + mask * residual, 0.0, 1.0)

    def config(self) -> dict:
        return {
            "arch": ARCH,
            "widths": list(self.widths),
            "blocks": self.blocks,
            "s2d": self.s2d,
            "residual_limit": self.residual_limit,
            "crop": self.trained_crop,
            "inputs": self.input_channels,
        }


def fuse_batchnorm(model: Generator) -> Generator:
    """Fold every BatchNorm into the convolution before it (in place, eval mode): export sees only convs."""
    model.eval()
    for module in model.modules():
        if isinstance(module, ConvBNReLU) and isinstance(module[1], nn.BatchNorm2d):
            conv, bn = module[0], module[1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, 3, conv.stride, 1, bias=True)
            with torch.no_grad():
                fused.weight.copy_(conv.weight * scale[:, None, None, None])
                fused.bias.copy_(bn.bias - bn.running_mean * scale)
            module[0] = fused
            module[1] = nn.Identity()
    return model


class SplitConvReLU(nn.Module):
    """relu(conv(cat([a, b]))) written as relu(conv_a(a) + conv_b(b)): the same function, no concat."""

    def __init__(self, conv: nn.Conv2d, channels_a: int) -> None:
        super().__init__()
        shape = {"kernel_size": conv.kernel_size, "stride": conv.stride, "padding": conv.padding}
        self.a = nn.Conv2d(channels_a, conv.out_channels, **shape, bias=True)
        self.b = nn.Conv2d(conv.in_channels - channels_a, conv.out_channels, **shape, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(conv.weight[:, :channels_a])
            self.a.bias.copy_(conv.bias)
            self.b.weight.copy_(conv.weight[:, channels_a:])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.a(a) + self.b(b))


def split_input_concat(model: Generator) -> Generator:
    """Replace the head's concat with the space-to-depth input by two convolutions and an add (in place,
    after fuse_batchnorm). Same outputs; but ONNX Runtime keeps the quantized network in NHWC and the
    input fold in NCHW, so that concat cost a transpose each way (a fifth of its INT8 time went into
    transposes, profiled), while a convolution reads either layout."""
    if isinstance(model.dec0, SplitConvReLU) or isinstance(model.dec0[1], nn.BatchNorm2d):  # done, or not fused
        return model
    model.dec0 = SplitConvReLU(model.dec0[0], model.widths[0])
    return model.eval()


def change_output(model: Generator) -> Generator:
    """The export form's output: the change to the crop (mask x residual) instead of the refined crop; the
    device adds it to the crop and clips. The same picture, but INT8 no longer carries the crop itself
    through the network's last layers: quantized at the scale a full-range residual needs, the copied crop
    lost 0.018 on average outside the mask (TFLite, worst held-out crop 27 dB against FP32), where the
    change is exactly 0."""
    model.outputs_change = True
    return model.eval()


def macs(model: nn.Module, size: int = 256) -> int:
    """Multiply-accumulates of one forward pass at size x size (convolutions only)."""
    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, len(getattr(model, "input_channels", STILL_INPUT_CHANNELS)), size, size))
    for handle in handles:
        handle.remove()
    return total


def load_checkpoint(path, fuse: bool = True) -> Generator:
    state = torch.load(path, map_location="cpu", weights_only=True)
    config = state["config"]
    if config.get("arch") != ARCH:
        raise ValueError(f"{path}: checkpoint of architecture {config.get('arch')!r}, this code builds {ARCH!r}")
    inputs = tuple(config.get("inputs", STILL_INPUT_CHANNELS))
    model = Generator(tuple(config["widths"]), config["blocks"], config["s2d"], config["residual_limit"], inputs)
    model.load_state_dict(state["generator"])
    model.trained_crop = int(config.get("crop", 256))  # the crop size it was trained at: export's default
    model.eval()
    return split_input_concat(fuse_batchnorm(model)) if fuse else model


class PatchDiscriminator(nn.Module):
    """PatchGAN (70x70-style, smaller): real/fake per patch, conditioned on the mask."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        act = nn.LeakyReLU(0.2, inplace=True)
        self.net = nn.Sequential(
            nn.Conv2d(4, width, 4, 2, 1),
            act,
            nn.Conv2d(width, width * 2, 4, 2, 1),
            nn.BatchNorm2d(width * 2),
            act,
            nn.Conv2d(width * 2, width * 4, 4, 2, 1),
            nn.BatchNorm2d(width * 4),
            act,
            nn.Conv2d(width * 4, 1, 3, 1, 1),
        )

    def forward(self, rgb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([rgb * 2 - 1, mask], 1))
