"""Table 4 baselines with the same regression head: ResNet50 and DenseNet-121.

(MobileNetV2 lives in facernet.py since it shares Table 1's layers.)
"""
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from facernet_jax.models.coefficients import NUM_COEFFICIENTS
from facernet_jax.models.facernet import RegressionHead
from facernet_jax.models.facernet import normalise
from facernet_jax.models.layers import ConvBN
from facernet_jax.models.layers import batch_norm

Dtype = Any


def _stem(images, train, kw, dtype):
  """ResNet / DenseNet stem: normalise, 7x7 ConvBN stride 2 with ReLU, 3x3 max-pool stride 2."""
  x = normalise(images, dtype)
  x = ConvBN(64, 7, 2, act=nn.relu, name='stem', **kw)(x, train)
  return nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


class Bottleneck(nn.Module):
  """ResNet-50 bottleneck (1x1, 3x3 with stride, 1x1 x4), torchvision v1.5 layout."""
  features: int
  stride: int = 1
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(ConvBN, bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    y = conv(self.features, 1, act=nn.relu)(x, train)
    y = conv(self.features, 3, self.stride, act=nn.relu)(y, train)
    y = conv(self.features * 4, 1, act=None, zero_bn=True)(y, train)
    if x.shape[-1] != self.features * 4 or self.stride != 1:
      x = conv(self.features * 4, 1, self.stride, act=None, name='shortcut')(x, train)
    return nn.relu(x + y)


class ResNet50(nn.Module):
  """ResNet-50 (He et al. 2016), stages (3, 4, 6, 3); global pool -> 1x1 conv to 495."""
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  num_outputs: int = NUM_COEFFICIENTS
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images, train: bool = False):
    kw = dict(bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    x = _stem(images, train, kw, self.dtype)
    for i, n in enumerate(self.stage_sizes):
      for j in range(n):
        x = Bottleneck(64 * 2**i, 2 if (i > 0 and j == 0) else 1, name=f'stage{i + 1}_{j}', **kw)(x, train)
    return RegressionHead(self.num_outputs, self.dtype, name='head')(x)


class DenseLayer(nn.Module):
  """DenseNet BN-ReLU-1x1 (4k) -> BN-ReLU-3x3 (k); output concatenated to the input."""
  growth: int = 32
  bn_size: int = 4
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32)
    y = nn.relu(batch_norm(train, self.bn_axis_name, self.dtype)(x))
    y = conv(self.bn_size * self.growth, (1, 1))(y)
    y = nn.relu(batch_norm(train, self.bn_axis_name, self.dtype)(y))
    y = conv(self.growth, (3, 3), padding=((1, 1), (1, 1)))(y)
    return jnp.concatenate([x, y], axis=-1)


class DenseNet121(nn.Module):
  """DenseNet-121 (Huang et al. 2017): growth 32, blocks (6, 12, 24, 16), compression 0.5."""
  block_sizes: Sequence[int] = (6, 12, 24, 16)
  growth: int = 32
  num_outputs: int = NUM_COEFFICIENTS
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images, train: bool = False):
    kw = dict(bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    x = _stem(images, train, kw, self.dtype)
    for i, n in enumerate(self.block_sizes):
      for j in range(n):
        x = DenseLayer(self.growth, name=f'block{i + 1}_{j}', **kw)(x, train)
      if i < len(self.block_sizes) - 1:  # transition: BN-ReLU-1x1 (half) - 2x2 avg pool
        x = nn.relu(batch_norm(train, self.bn_axis_name, self.dtype)(x))
        x = nn.Conv(x.shape[-1] // 2, (1, 1), use_bias=False, dtype=self.dtype,
                    param_dtype=jnp.float32, name=f'transition{i + 1}')(x)
        x = nn.avg_pool(x, (2, 2), (2, 2))
    x = nn.relu(batch_norm(train, self.bn_axis_name, self.dtype, name='final_bn')(x))
    return RegressionHead(self.num_outputs, self.dtype, name='head')(x)
