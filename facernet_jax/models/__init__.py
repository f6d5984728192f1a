"""Networks: Mobile-FaceRNet and the Table 4 baselines, plus the coefficient split (Eq 10).

`create_model(name, **kwargs)` returns a linen module called as
`model.apply(variables, images, train=bool, mutable=['batch_stats'] if train else False)`
with NHWC float32 images in [0, 1]; the output is (B, num_outputs) float32, near zero at init.
"""
import jax

from facernet_jax.models.coefficients import COEFFICIENT_SIZES
from facernet_jax.models.coefficients import NUM_COEFFICIENTS
from facernet_jax.models.coefficients import coefficient_slices
from facernet_jax.models.coefficients import join_coefficients
from facernet_jax.models.coefficients import split_coefficients
from facernet_jax.models.baselines import DenseNet121
from facernet_jax.models.baselines import ResNet50
from facernet_jax.models.facernet import FaceRNet
from facernet_jax.models.facernet import MobileNetV2
from facernet_jax.models.layers import InvertedResidual
from facernet_jax.models.layers import ResidualAttention
from facernet_jax.models.layers import resolve_depthwise
from facernet_jax.models.multiscale import FeatureExtraction
from facernet_jax.models.multiscale import MultiscaleFusion

MODELS = {
    'facernet': FaceRNet,
    'mobilenetv2': MobileNetV2,
    'resnet50': ResNet50,
    'densenet121': DenseNet121,
}


def create_model(name, **kwargs):
  """Builds a model by name: 'facernet' | 'mobilenetv2' | 'resnet50' | 'densenet121'.

  kwargs are module fields (e.g. use_attention, use_multiscale, use_decoder, width, dilation,
  num_outputs, depthwise, bn_axis_name, dtype); `image_size` is accepted and ignored (the networks
  are fully convolutional) so a config can pass it through. `depthwise` ('auto' | 'conv' |
  'shifted', see layers.resolve_depthwise) is checked for every model and ignored by the ones
  without depthwise convs (ResNet50, DenseNet-121).
  """
  if name not in MODELS:
    raise ValueError(f'unknown model {name!r}; choose one of {sorted(MODELS)}')
  kwargs.pop('image_size', None)
  if 'depthwise' in kwargs:
    resolve_depthwise(kwargs['depthwise'])  # raises on an unknown value
    if 'depthwise' not in MODELS[name].__dataclass_fields__:
      kwargs.pop('depthwise')
  return MODELS[name](**kwargs)


def count_params(params):
  """Number of parameters (batch statistics are not parameters)."""
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
