"""An UNTRAINED demo checkpoint written through the training checkpoint path (for tests and the notebook).

Every network weight is zero (batch-norm variances one), so the network outputs the bias of its last
layer for any image; the decoder (3DMM layer) keeps its real initial values. Making one avoids the slow
jitted network init on a busy CPU.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

from facernet_jax import coefficients as coefficients_lib
from facernet_jax import forward
from facernet_jax import train
from facernet_jax.configs import test as test_config
from facernet_jax.models import facernet


def make_demo_checkpoint(workdir, config=None, coefficients=None):
  """Saves the demo model in `workdir` (config: default configs/test.py) and returns the workdir.

  The network outputs `coefficients` (default zeros: the mean face, frontal, centred) for any image.
  """
  if config is None:
    config = test_config.get_config()
  config = config.copy_and_resolve_references()
  config.async_checkpointing = False
  network, decoder = train.create_networks(config)
  x = jnp.zeros((1, config.image_size, config.image_size, 3), jnp.float32)
  shapes = jax.eval_shape(lambda: network.init(jax.random.PRNGKey(0), x, train=False))

  def fill(path, s):
    ones = 'batch_stats' in jax.tree_util.keystr(path) and jax.tree_util.keystr(path).endswith("['var']")
    return (np.ones if ones else np.zeros)(s.shape, s.dtype)

  num = coefficients_lib.NUM_COEFFICIENTS
  net_vars = jax.tree_util.tree_map_with_path(fill, shapes)
  if coefficients is not None:
    bias = [v for p, v in jax.tree_util.tree_leaves_with_path(net_vars['params'])
            if v.shape == (num,) and 'bias' in jax.tree_util.keystr(p)]
    if len(bias) != 1:
      raise ValueError(f'expected one ({num},) output bias, found {len(bias)}')
    # The head multiplies its output by the config's fixed output scales; divide them out so the
    # network outputs exactly `coefficients`.
    scales = tuple(sorted(config.model.get('output_scales', {}).items()))
    bias[0][...] = np.asarray(coefficients, np.float32) / np.asarray(facernet.output_scale_vector(scales))
  dec0 = forward.FaceDecoder(face_model=decoder.face_model, image_size=config.image_size,
                             trainable_bases=config.trainable_bases, raster=None)
  dec_vars = dec0.init(jax.random.PRNGKey(1), jnp.zeros((1, num), jnp.float32))
  state = {'params': {'network': net_vars['params'], 'decoder': jax.device_get(dec_vars.get('params', {}))},
           'batch_stats': net_vars.get('batch_stats', {}), 'step': np.int32(0)}
  manager = train.checkpoint_manager(workdir, config)
  train.write_config(workdir, config)
  train.save_checkpoint(manager, state, config, force=True)
  manager.wait_until_finished()
  manager.close()
  return os.fspath(workdir)
