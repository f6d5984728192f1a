"""Building blocks: conv+BN, MobileNetV2 inverted residual (Table 1), residual attention (Eq 9)."""
import functools
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any


def make_divisible(v, divisor=8, min_value=None):
  """Rounds a channel count as MobileNetV2's reference code does (width multiplier)."""
  min_value = min_value or divisor
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


def batch_norm(train, axis_name, dtype, name=None, scale_init=nn.initializers.ones):
  """BatchNorm that runs under jit (axis_name None), pmap (axis name) and in eval mode."""
  return nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5,
      axis_name=axis_name, dtype=dtype, param_dtype=jnp.float32,
      scale_init=scale_init, name=name)


def _pad(kernel, dilation):
  p = dilation * (kernel - 1) // 2
  return ((p, p), (p, p))


class ConvBN(nn.Module):
  """Conv (no bias) -> BatchNorm -> optional activation; padding as PyTorch (k // 2 * dilation)."""
  features: int
  kernel: int = 1
  stride: int = 1
  groups: int = 1
  dilation: int = 1
  act: Optional[Any] = nn.relu6
  zero_bn: bool = False  # gamma = 0: a residual branch starts as the identity
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                padding=_pad(self.kernel, self.dilation),
                kernel_dilation=(self.dilation, self.dilation),
                feature_group_count=self.groups, use_bias=False, dtype=self.dtype,
                param_dtype=jnp.float32,
                kernel_init=nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'))(x)
    x = batch_norm(train, self.bn_axis_name, self.dtype,
                   scale_init=nn.initializers.zeros if self.zero_bn else nn.initializers.ones)(x)
    return self.act(x) if self.act is not None else x


class InvertedResidual(nn.Module):
  """MobileNetV2 block (Table 1 row: expansion t, output c, stride s).

  1x1 expand to t*C_in (skipped when t == 1) -> 3x3 depthwise (stride s) -> 1x1 linear
  projection to c; identity shortcut when s == 1 and C_in == c.
  Parameters: [t != 1] (C_in*h + 2h) + 9h + 2h + h*c + 2c with h = t*C_in (BN: scale, bias).
  """
  features: int
  stride: int
  expand_ratio: int
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(ConvBN, bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    c_in = x.shape[-1]
    hidden = c_in * self.expand_ratio
    y = x
    if self.expand_ratio != 1:
      y = conv(hidden, 1, name='expand')(y, train)
    y = conv(hidden, 3, self.stride, groups=hidden, name='depthwise')(y, train)
    y = conv(self.features, 1, act=None, name='project')(y, train)
    if self.stride == 1 and c_in == self.features:
      y = x + y
    return y


class ResidualAttention(nn.Module):
  """Residual attention module (Sec 3.3, Eq 9): H = (1 + M(x)) * F(x).

  Trunk F: 1x1 conv (+BN) to half the input channels. Soft mask M: two residual blocks
  (depthwise-separable 3x3, linear, identity shortcut) then a sigmoid; it works on the trunk's
  reduced features so that its cost stays within the paper's ~0.16 M attention budget (Table 4).
  With `use_mask=False` (the "no attention" ablation) the module is the trunk alone, H = F(x),
  so the channel plan of the network is unchanged.
  """
  use_mask: bool = True
  features: Optional[int] = None  # default: half the input channels
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(ConvBN, bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    c = self.features or max(1, x.shape[-1] // 2)
    f = conv(c, 1, act=None, name='trunk')(x, train)
    if not self.use_mask:
      return f
    r = f
    for i in range(2):
      y = conv(c, 3, groups=c, name=f'mask{i}_dw')(r, train)
      y = conv(c, 1, act=None, name=f'mask{i}_pw')(y, train)
      r = r + y
    m = nn.sigmoid(r.astype(jnp.float32)).astype(f.dtype)
    return (1.0 + m) * f
