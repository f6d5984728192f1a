"""Mobile-FaceRNet (Sec 3.3, Table 1) and the shared regression head."""
from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from facernet_jax.models.coefficients import COEFFICIENT_SIZES
from facernet_jax.models.coefficients import NUM_COEFFICIENTS
from facernet_jax.models.coefficients import coefficient_slices
from facernet_jax.models.coefficients import join_coefficients
from facernet_jax.models.layers import ConvBN
from facernet_jax.models.layers import InvertedResidual
from facernet_jax.models.layers import ResidualAttention
from facernet_jax.models.layers import make_divisible
from facernet_jax.models.layers import nearest_upsample
from facernet_jax.models.multiscale import FeatureExtraction

Dtype = Any

# Table 1: (t, c, n, s) for Layer1 ... Layer7.
MOBILENETV2_LAYERS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def normalise(images, dtype):
  """[0, 1] images -> [-1, 1] in the compute dtype (callers pass raw images)."""
  return ((jnp.asarray(images, jnp.float32) - 0.5) * 2.0).astype(dtype)


def with_coordinates(x):
  """Appends two channels holding each pixel centre's (x, y) in [-1, 1] (CoordConv, Liu et al. 2018).

  Beyond the paper: the global-average-pool head otherwise sees position only through padding,
  and the face's translation is part of the regressed pose (docs/network.md).
  """
  b, h, w, _ = x.shape
  ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) * (2.0 / h) - 1.0
  xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) * (2.0 / w) - 1.0
  grid = jnp.stack(jnp.meshgrid(xs, ys, indexing='xy'), axis=-1).astype(x.dtype)
  return jnp.concatenate([x, jnp.broadcast_to(grid, (b, h, w, 2))], axis=-1)


class RegressionHead(nn.Module):
  """Global average pool -> 1x1 conv to `num_outputs` (Table 1's last row, k = 495).

  The kernel is tiny (std 1e-3 / sqrt(fan_in)) and the bias zero, so the first predictions are
  near the zero vector: mean face, frontal, centred, ambient light (Eq 10). A tiny rather than
  zero kernel lets gradients reach the backbone from the first step.
  """
  num_outputs: int = NUM_COEFFICIENTS
  dtype: Dtype = jnp.float32
  output_scales: Sequence[Tuple[str, float]] = ()  # see `output_scale_vector`

  @nn.compact
  def __call__(self, x):
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    x = nn.Dense(self.num_outputs, dtype=jnp.float32, param_dtype=jnp.float32, name='coefficients',
                 kernel_init=nn.initializers.variance_scaling(1e-6, 'fan_in', 'truncated_normal'),
                 bias_init=nn.initializers.zeros)(x)
    if self.output_scales:
      x = x * output_scale_vector(self.output_scales, self.num_outputs)
    return x


def output_scale_vector(output_scales, num_outputs=NUM_COEFFICIENTS):
  """(num_outputs,) multipliers: 1, except `scale` for every coefficient of each named group.

  Beyond the paper. Adam moves every head weight by about the learning rate per step, so every one
  of the 495 outputs moves by a similar amount, although the groups need very different precision
  (pose to ~0.01, shape to ~0.1: docs/training.md). A fixed multiplier per group (e.g.
  ``(('translation', 0.1),)``) gives that group's output a finer step without changing the model.
  """
  if num_outputs != NUM_COEFFICIENTS:
    raise ValueError(f'output_scales needs the {NUM_COEFFICIENTS} coefficients of Eq 10, '
                     f'not {num_outputs} outputs')
  slices = coefficient_slices()
  scale = np.ones(num_outputs, np.float32)
  for name, value in output_scales:
    if name not in slices:
      raise ValueError(f'output_scales: unknown coefficient group {name!r}; '
                       f'expected one of {list(slices)}')
    if not value > 0:
      raise ValueError(f'output_scales: the scale of {name!r} must be > 0, got {value}')
    scale[slices[name]] = value
  return jnp.asarray(scale)


def last_conv_and_head(module, x, train, kw):
  """Table 1's last two rows for FaceRNet and MobileNetV2: 1x1 ConvBN to 1280 (x width when
  width > 1), then the regression head; called inside `module`'s compact `__call__`."""
  last = make_divisible(module.last_channels * max(1.0, module.width))
  x = ConvBN(last, 1, name='last_conv', **kw)(x, train)
  return RegressionHead(module.num_outputs, module.dtype, module.output_scales, name='head')(x)


class AppearanceBranch(nn.Module):
  """Beyond the paper: a small conv branch from the input image to the texture and lighting.

  Three stride-2 3x3 ConvBN layers, then a Dense layer on the flattened (not pooled) map, so that the
  shading's spatial pattern survives. Its 226 outputs go to the texture and SH lighting slots of
  Eq 10 (zeros elsewhere, times the head's output scales). Only the photometric terms (Eqs 14-15)
  and the texture prior of Eq 17 reach it, so the landmark terms, which train the shared trunk,
  cannot crowd the appearance out (docs/training.md, "The appearance branch").
  Starts near zero, like the head.
  """
  features: Sequence[int] = (32, 64, 128)
  output_scales: Sequence[Tuple[str, float]] = ()
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, c in enumerate(self.features):
      x = ConvBN(c, 3, 2, name=f'conv{i}', bn_axis_name=self.bn_axis_name, dtype=self.dtype)(x, train)
    x = x.astype(jnp.float32).reshape(x.shape[0], -1)
    num_texture = COEFFICIENT_SIZES['texture']
    y = nn.Dense(num_texture + COEFFICIENT_SIZES['lighting'], dtype=jnp.float32,
                 param_dtype=jnp.float32, name='coefficients',
                 kernel_init=nn.initializers.variance_scaling(1e-6, 'fan_in', 'truncated_normal'),
                 bias_init=nn.initializers.zeros)(x)
    parts = {name: jnp.zeros((x.shape[0], size), jnp.float32)
             for name, size in COEFFICIENT_SIZES.items()}
    parts['texture'], parts['lighting'] = y[:, :num_texture], y[:, num_texture:]
    out = join_coefficients(parts)
    if self.output_scales:
      out = out * output_scale_vector(self.output_scales)
    return out


class FaceRNet(nn.Module):
  """Mobile-FaceRNet: multiscale features (Sec 3.2) -> MobileNetV2 encoder with an RA module
  after every layer (Table 1, Eq 9) -> decoder (upsample, concatenate skip, RA) ->
  1x1 conv 1280 -> global average pool -> 1x1 conv to 495 (Eq 10).

  Each RA module halves the channels (its trunk is a 1x1 conv to C/2) and feeds the next layer,
  as Table 1 lists it as an operator between layers. `use_attention=False` keeps the trunks and
  drops the soft masks (M = 0), so only the attention is ablated.
  """
  use_attention: bool = True
  use_multiscale: bool = True
  use_decoder: bool = True
  width: float = 1.0
  num_outputs: int = NUM_COEFFICIENTS
  dilation: int = 3
  num_units: int = 5
  decoder_skips: Sequence[int] = (5,)  # Table 1 layers whose outputs the decoder concatenates
  last_channels: int = 1280
  attention_reduction: int = 2  # each RA trunk maps C -> C // attention_reduction channels
  stem_stride: int = 2
  coord_channels: bool = False  # beyond the paper: (x, y) input channels, see `with_coordinates`
  output_scales: Sequence[Tuple[str, float]] = ()  # beyond the paper: see `output_scale_vector`
  appearance_branch: bool = False  # beyond the paper: see `AppearanceBranch`
  depthwise: str = 'auto'  # depthwise conv implementation: 'conv' | 'shifted' | 'auto' (layers.ConvBN)
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images, train: bool = False):
    kw = dict(bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    dw = dict(kw, depthwise=self.depthwise)
    x = normalise(images, self.dtype)
    appearance = None
    if self.appearance_branch:
      if self.num_outputs != NUM_COEFFICIENTS:
        raise ValueError(f'appearance_branch needs the {NUM_COEFFICIENTS} coefficients of Eq 10, '
                         f'not {self.num_outputs} outputs')
      appearance = AppearanceBranch(output_scales=self.output_scales, name='appearance', **kw)(x, train)
    if self.coord_channels:
      x = with_coordinates(x)
    if self.use_multiscale:
      x = FeatureExtraction(self.num_units, 8, self.dilation, name='features', **kw)(x, train)
    x = ConvBN(make_divisible(32 * self.width), 3, self.stem_stride, name='stem', **kw)(x, train)
    skips = {}
    for i, (t, c, n, s) in enumerate(MOBILENETV2_LAYERS, start=1):
      c = make_divisible(c * self.width)
      for j in range(n):
        x = InvertedResidual(c, s if j == 0 else 1, t, name=f'layer{i}_{j}', **dw)(x, train)
      x = ResidualAttention(self.use_attention, x.shape[-1] // self.attention_reduction,
                            name=f'ra{i}', **dw)(x, train)
      skips[i] = x
    if self.use_decoder:
      for k, i in enumerate(self.decoder_skips):
        skip = skips[i]
        b, h, w, _ = skip.shape
        x = nearest_upsample(x, h, w)
        x = jnp.concatenate([x, skip], axis=-1)
        x = ResidualAttention(self.use_attention, x.shape[-1] // self.attention_reduction,
                              name=f'decoder_ra{k}', **dw)(x, train)
    coefficients = last_conv_and_head(self, x, train, kw)
    return coefficients if appearance is None else coefficients + appearance


class MobileNetV2(nn.Module):
  """Plain MobileNetV2 (Table 4 baseline): Table 1 without RA, multiscale or decoder; same head."""
  width: float = 1.0
  num_outputs: int = NUM_COEFFICIENTS
  last_channels: int = 1280
  output_scales: Sequence[Tuple[str, float]] = ()
  depthwise: str = 'auto'  # see FaceRNet
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images, train: bool = False):
    kw = dict(bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    x = normalise(images, self.dtype)
    x = ConvBN(make_divisible(32 * self.width), 3, 2, name='stem', **kw)(x, train)
    for i, (t, c, n, s) in enumerate(MOBILENETV2_LAYERS, start=1):
      c = make_divisible(c * self.width)
      for j in range(n):
        x = InvertedResidual(c, s if j == 0 else 1, t, name=f'layer{i}_{j}', depthwise=self.depthwise,
                             **kw)(x, train)
    return last_conv_and_head(self, x, train, kw)
