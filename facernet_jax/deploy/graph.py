"""The function that is exported: eval-mode network with its weights as constants, plus input scaling."""
import jax.numpy as jnp
import numpy as np

from facernet_jax import models

INPUT_DTYPES = ('float32', 'uint8')


def network_from_config(config):
  """The regressor named by config.model, with grouped (not shifted) depthwise convs.

  Exporters map a grouped conv to one Conv op that ONNX Runtime / XNNPACK run well; the 'shifted'
  CPU form (models.layers.shifted_depthwise_conv) would export as 9 slices and multiply-adds.
  """
  kwargs = {k: v for k, v in config.model.to_dict().items() if k != 'name'}
  if 'output_scales' in kwargs:  # {group: scale} in the config; a hashable tuple for the module
    kwargs['output_scales'] = tuple(sorted((kwargs['output_scales'] or {}).items()))
  kwargs['depthwise'] = 'conv'
  return models.create_model(config.model.name, **kwargs)


def network_for_export(config, variables, input_dtype='float32'):
  """fn(images (B, S, S, 3)) -> (B, 495) float32 in eval mode (BatchNorm from its running statistics).

  `variables` holds the network's {'params', 'batch_stats'} (numpy; closed over, so they become
  constants of the exported graph). input_dtype 'uint8': images are 0-255 and divided by 255 inside.
  """
  if input_dtype not in INPUT_DTYPES:
    raise ValueError(f'input dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}')
  network = network_from_config(config)
  variables = {k: v for k, v in variables.items() if k in ('params', 'batch_stats') and v}

  def fn(images):
    if input_dtype == 'uint8':
      images = images.astype(jnp.float32) * np.float32(1.0 / 255.0)
    return network.apply(variables, images, train=False)

  return fn


def network_variables(variables):
  """The network's part of a training checkpoint's variables (train.load_for_inference)."""
  params = variables['params']
  params = params['network'] if 'network' in params else params
  return {'params': params, 'batch_stats': variables.get('batch_stats') or {}}


def sidecar(config, fmt, image_size, batch, input_dtype, extra=None):
  """The JSON sidecar: what a user needs to feed the file and read its output."""
  slices = models.coefficient_slices()
  out = {
      'format': fmt,
      'model': config.model.name,
      'image_size': int(image_size),
      'input': {'name': 'images', 'layout': 'NHWC', 'channels': 'RGB',
                'shape': [batch, int(image_size), int(image_size), 3], 'dtype': input_dtype,
                'range': [0, 255] if input_dtype == 'uint8' else [0.0, 1.0],
                'crop': 'face crop as facernet_jax.detect makes it (square, sqrt(2) x the landmark box)'},
      'output': {'name': 'coefficients', 'shape': [batch, models.NUM_COEFFICIENTS], 'dtype': 'float32',
                 'layout': [{'name': k, 'start': s.start, 'stop': s.stop} for k, s in slices.items()],
                 'units': 'Eq 10 of the paper; rotation in radians (pitch, yaw, roll); docs/architecture.md'},
      'config': config.to_dict(),
  }
  out.update(extra or {})
  return out
