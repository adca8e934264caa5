"""Small differentiable image operators shared by the model and the losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def sobel_xy(image: torch.Tensor, normalized: bool = False) -> torch.Tensor:
    """Horizontal and vertical Sobel responses of every channel, replicate-padded.

    Args:
        image: ``(B, C, H, W)``.
        normalized: divide the kernels by 8 (kornia's ``spatial_gradient`` convention).

    Returns:
        ``(B, C, 2, H, W)``: index 0 is d/dx, index 1 is d/dy.

    Example:
        >>> ramp = torch.arange(4.0).repeat(1, 1, 4, 1)  # +1 per column
        >>> sobel_xy(ramp)[0, 0, 0, 1:-1, 1:-1]
        tensor([[8., 8.],
                [8., 8.]])
    """
    if image.dim() != 4:
        raise ValueError(f"sobel_xy: expected (B, C, H, W), got {tuple(image.shape)}")
    b, c, h, w = image.shape
    kx = torch.tensor(_SOBEL_X, dtype=image.dtype, device=image.device)
    if normalized:
        kx = kx / 8.0
    kernel = torch.stack((kx, kx.t()))[:, None]  # (2, 1, 3, 3)
    # Depthwise over B*C planes: one conv call with both kernels.
    planes = F.pad(image.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(planes, kernel).reshape(b, c, 2, h, w)


def sobel_kernels(channels: int, normalized: bool = False, dtype: torch.dtype = torch.float32,
                  device: torch.device | None = None) -> torch.Tensor:
    """Depthwise Sobel kernels ``(2 * channels, 1, 3, 3)``: the d/dx kernels of every channel, then the d/dy ones
    (4-D, so a module holding them can move to channels-last memory)."""
    kx = torch.tensor(_SOBEL_X, dtype=dtype, device=device)
    if normalized:
        kx = kx / 8.0
    return torch.cat((kx.expand(channels, 1, 3, 3), kx.t().expand(channels, 1, 3, 3))).contiguous()


def sobel_l1_magnitude(image: torch.Tensor, normalized: bool = False, kernels: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """``|d/dx| + |d/dy|`` of the Sobel responses, shape ``(B, C, H, W)``; equals ``sobel_xy(...).abs().sum(2)``.

    The fusion literature (SeAFusion, CLDyN) uses this L1 magnitude as "the Sobel gradient". Computed with two
    depthwise convolutions so a channels-last input stays channels-last (the (B*C, 1, H, W) reshape of
    :func:`sobel_xy` would force a copy into NCHW and slow every later layer). ``kernels`` (from
    :func:`sobel_kernels`) may be passed precomputed, e.g. as a module buffer, which ONNX export needs.
    """
    if image.dim() != 4:
        raise ValueError(f"sobel_l1_magnitude: expected (B, C, H, W), got {tuple(image.shape)}")
    c = image.shape[1]
    if kernels is None:
        kernels = sobel_kernels(c, normalized, image.dtype, image.device)
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, kernels[:c], groups=c)
    gy = F.conv2d(padded, kernels[c:], groups=c)
    return gx.abs() + gy.abs()


def gaussian_kernel(window: int, sigma: float, dtype: torch.dtype = torch.float32,
                    device: torch.device | None = None) -> torch.Tensor:
    """Normalised 2-D Gaussian ``(1, 1, window, window)``, the outer product of the sampled 1-D Gaussian."""
    x = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = (g / g.sum()).to(dtype=dtype, device=device)
    return (g[:, None] * g[None, :])[None, None]


def unsharp(x: torch.Tensor, gain: float, sigma: float = 1.0) -> torch.Tensor:
    """``x + gain * (x - G_sigma * x)``: ``x`` with its detail (what a Gaussian blur removes) amplified by
    ``1 + gain``. ``(B, 1, H, W)``; the blur is OpenCV's ``GaussianBlur(x, (0, 0), sigma)`` for float images (a
    ``2 * round(4 * sigma) + 1`` tap kernel, mirrored borders without repeating the edge pixel; images with a side
    no longer than the kernel's radius, which a mirror cannot pad, repeat their edge pixels instead).

    Example:
        >>> x = torch.zeros(1, 1, 9, 9); x[..., 4, 4] = 1.0
        >>> round(float(unsharp(x, 0.5)[0, 0, 4, 4]), 4)  # 1 + 0.5 * (1 - centre tap 0.1592)
        1.4204
    """
    if gain == 0:
        return x
    radius = max(1, round(4 * sigma))
    k = gaussian_kernel(2 * radius + 1, sigma, x.dtype, x.device)
    mode = "reflect" if min(x.shape[-2:]) > radius else "replicate"
    blurred = F.conv2d(F.pad(x, (radius,) * 4, mode=mode), k)
    return x + gain * (x - blurred)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad ``(B, C, H, W)`` on the bottom/right to multiples of ``multiple``; returns the original size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def as_rgb(image: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` -> ``(B, 3, H, W)`` by repetition; RGB passes through."""
    if image.dim() != 4 or image.shape[1] not in (1, 3):
        raise ValueError(f"expected (B, 1, H, W) or (B, 3, H, W), got {tuple(image.shape)}")
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


def exporting() -> bool:
    """Whether the code runs under ``torch.jit`` tracing or an ONNX export (then only traceable ops may run)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``(B, C, H, W)`` ``x`` is laid out channels-last (and not also plainly contiguous)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def adaptive_avg_pool2d_traceable(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, size)`` from running sums, so that a traced graph keeps height and width dynamic
    (ONNX has no adaptive pooling to a size other than 1). Bin ``i`` of ``n`` over ``L`` pixels is
    ``[floor(i L / n), ceil((i + 1) L / n))``, as in PyTorch."""

    def pool(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
        length = t.shape[dim]
        i = torch.arange(n, device=t.device)
        start, end = (i * length) // n, ((i + 1) * length + n - 1) // n
        c = torch.cat((torch.zeros_like(t.narrow(dim, 0, 1)), t.cumsum(dim)), dim)
        shape = [1] * t.dim()
        shape[dim] = n
        return (c.index_select(dim, end) - c.index_select(dim, start)) / (end - start).to(t.dtype).view(shape)

    return pool(pool(x, size[0], x.dim() - 2), size[1], x.dim() - 1)


def adaptive_avg_pool2d(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d``, or :func:`adaptive_avg_pool2d_traceable` while traced for ONNX."""
    return adaptive_avg_pool2d_traceable(x, size) if exporting() else F.adaptive_avg_pool2d(x, size)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (learnable tensors only, BN buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
