"""Building blocks: conv+BN, MobileNetV2 inverted residual (Table 1), residual attention (Eq 9)."""
import functools
from typing import Any, Optional

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

Dtype = Any

DEPTHWISE_IMPLEMENTATIONS = ('auto', 'conv', 'shifted')


def relu6(x):
  """min(max(x, 0), 6) written as `jnp.clip`, which the ONNX exporter (jax2onnx) maps to one Clip op
  that ONNX Runtime fuses into the preceding Conv (`nn.relu6` exports as a Max and a Min).

  Same values as `nn.relu6`; the gradient differs only at exactly 0 and 6 (1/2 there, a subgradient,
  instead of 0).
  """
  return jnp.clip(x, 0.0, 6.0)


def resolve_depthwise(depthwise):
  """'auto' -> 'shifted' on the CPU backend, 'conv' elsewhere (decided at trace time).

  Why: XLA:CPU runs grouped convolutions (`feature_group_count`) far below its dense convs
  (docs/network.md, "Inference speed"); GPUs and TPUs have fast depthwise kernels.
  """
  if depthwise not in DEPTHWISE_IMPLEMENTATIONS:
    raise ValueError(f'model.depthwise must be one of {DEPTHWISE_IMPLEMENTATIONS}, got {depthwise!r}')
  if depthwise == 'auto':
    return 'shifted' if jax.default_backend() == 'cpu' else 'conv'
  return depthwise


def shifted_depthwise_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                           dimension_numbers=None, feature_group_count=1, precision=None):
  """A depthwise conv (NHWC input, HWIO kernel (K, K, 1, C), C groups) as K*K shifted multiply-adds.

  Drop-in for `lax.conv_general_dilated` in `nn.Conv(conv_general_dilated=...)` (so parameter names
  and shapes are those of the grouped conv): out[b, y, x, c] = sum_{i,j} pad(lhs)[b, s*y + d*i,
  s*x + d*j, c] * rhs[i, j, 0, c]. Each tap is a strided slice times a per-channel vector, which
  XLA:CPU fuses into one loop; its gradient is the same slices transposed (pads).
  """
  del precision  # element-wise products: full float32
  kh, kw, one, c = rhs.shape
  if one != 1 or feature_group_count != c or lhs.shape[-1] != c:
    raise ValueError(f'shifted_depthwise_conv needs a depthwise kernel (K, K, 1, C) with C groups '
                     f'over C input channels; got kernel {rhs.shape}, {feature_group_count} groups, '
                     f'input {lhs.shape}')
  if dimension_numbers is not None:
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if dn != lax.conv_dimension_numbers(lhs.shape, rhs.shape, ('NHWC', 'HWIO', 'NHWC')):
      raise ValueError(f'shifted_depthwise_conv needs NHWC / HWIO, got {dimension_numbers}')
  if lhs_dilation is not None and tuple(lhs_dilation) != (1, 1):
    raise ValueError(f'shifted_depthwise_conv does not support input dilation {lhs_dilation}')
  sh, sw = window_strides
  dh, dw = rhs_dilation or (1, 1)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], ((kh - 1) * dh + 1, (kw - 1) * dw + 1),
                                  window_strides, padding)
  (p0, p1), (q0, q1) = padding
  x = jnp.pad(lhs, ((0, 0), (p0, p1), (q0, q1), (0, 0)))
  ho = (x.shape[1] - (kh - 1) * dh - 1) // sh + 1
  wo = (x.shape[2] - (kw - 1) * dw - 1) // sw + 1
  out = None
  for i in range(kh):
    for j in range(kw):
      tap = lax.slice(x, (0, i * dh, j * dw, 0),
                      (x.shape[0], i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, c),
                      (1, sh, sw, 1))
      term = tap * rhs[i, j, 0]
      out = term if out is None else out + term
  return out


def nearest_upsample(x, height, width):
  """Nearest-neighbour resize of NHWC `x` to (height, width) with static gather indices.

  Bit-identical to `jax.image.resize(x, (B, height, width, C), 'nearest')` (source index
  floor((i + 0.5) * in / out), computed in float32 as there), but the indices are constants, so
  the batch dimension stays free in exported graphs (jax.image.resize fixes it).
  """
  def index(n_in, n_out):
    pos = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(pos).astype(np.int32), n_in - 1)

  if x.shape[1] != height:
    x = jnp.take(x, index(x.shape[1], height), axis=1)
  if x.shape[2] != width:
    x = jnp.take(x, index(x.shape[2], width), axis=2)
  return x


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
  act: Optional[Any] = relu6
  zero_bn: bool = False  # gamma = 0: a residual branch starts as the identity
  depthwise: str = 'auto'  # depthwise convs: 'conv' (grouped conv), 'shifted' or 'auto' (per backend)
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    impl = resolve_depthwise(self.depthwise)
    is_depthwise = self.groups > 1 and self.groups == self.features == x.shape[-1]
    x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                padding=_pad(self.kernel, self.dilation),
                kernel_dilation=(self.dilation, self.dilation),
                feature_group_count=self.groups, use_bias=False, dtype=self.dtype,
                param_dtype=jnp.float32,
                kernel_init=nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
                conv_general_dilated=(shifted_depthwise_conv
                                      if is_depthwise and impl == 'shifted' else None))(x)
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
  depthwise: str = 'auto'  # see ConvBN
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(ConvBN, depthwise=self.depthwise, bn_axis_name=self.bn_axis_name,
                             dtype=self.dtype)
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
  depthwise: str = 'auto'  # see ConvBN
  bn_axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(ConvBN, depthwise=self.depthwise, bn_axis_name=self.bn_axis_name,
                             dtype=self.dtype)
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
