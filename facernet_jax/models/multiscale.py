"""Dilated dense multiscale feature extraction (Sec 3.2, Eqs 7-8)."""
import functools
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from facernet_jax.models.layers import ConvBN

Dtype = Any


class ResBlock(nn.Module):
  """ResNet block with one 3x3 conv: relu(x + BN(conv3x3_d(x)))."""
  dilation: int = 1
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = ConvBN(x.shape[-1], 3, dilation=self.dilation, act=None,
               bn_axis_name=self.bn_axis_name, dtype=self.dtype, name='conv')(x, train)
    return nn.relu(x + y)


class FeatureUnit(nn.Module):
  """Feature extraction unit: 1x1 conv, then 3 residual blocks (dilations 1, d, 1), 8 channels.

  Receptive field (Eqs 7-8): 1 + 2 + 2d + 2 = 11 for d = 3 (7 for d = 1).
  """
  features: int = 8
  dilation: int = 3
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    kw = dict(bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    x = ConvBN(self.features, 1, act=nn.relu, name='reduce', **kw)(x, train)
    for i, d in enumerate((1, self.dilation, 1)):
      x = ResBlock(d, name=f'res{i}', **kw)(x, train)
    return x


class MultiscaleFusion(nn.Module):
  """Densely connected units (Sec 3.2): unit k sees the concatenation of the input and all
  earlier unit outputs; the module returns the concatenation of the unit outputs.

  Receptive field of the last unit (Eq 8): 1 + num_units * (11 - 1) = 51 (31 without dilation).
  """
  num_units: int = 5
  features: int = 8
  dilation: int = 3
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    feats, outs = [x], []
    for k in range(self.num_units):
      y = FeatureUnit(self.features, self.dilation, self.bn_axis_name, self.dtype,
                      name=f'unit{k}')(jnp.concatenate(feats, axis=-1), train)
      feats.append(y)
      outs.append(y)
    return jnp.concatenate(outs, axis=-1)


class FeatureExtraction(nn.Module):
  """Sec 3.2 / Fig 2: two 3x3 convs with 8 channels, then the dense multiscale fusion.

  Receptive field with respect to the image: 5 (the two 3x3 convs) + 50 = 55 pixels.
  """
  num_units: int = 5
  features: int = 8
  dilation: int = 3
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(ConvBN, act=nn.relu, bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    x = conv(self.features, 3, name='stem0')(x, train)
    x = conv(self.features, 3, name='stem1')(x, train)
    return MultiscaleFusion(self.num_units, self.features, self.dilation, self.bn_axis_name,
                            self.dtype, name='fusion')(x, train)
