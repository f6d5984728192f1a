"""Start-up: the networks, the optimiser and the TrainState pytree (Sec 3.2-3.4, 4.1)."""
import functools
import json
import math
from typing import Any

from flax import struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from facernet_jax import face_model as face_model_lib
from facernet_jax import forward
from facernet_jax import losses
from facernet_jax import models
from facernet_jax.models import NUM_COEFFICIENTS
from facernet_jax.render import RasterSettings


class TrainState(struct.PyTreeNode):
  """Everything that persists between steps (saved whole by Orbax).

  params: {'network', 'decoder'}; opt_state: optax state with the same per-leaf layout as params
    (so the 3DMM layer's ~42 M entries can be sharded or donated leaf by leaf).
  landmark_error: losses.LandmarkErrorState: per-point landmark error (image-size units) summed
    over the current epoch, and the previous epoch's mean (Eq 13's e_i).
  nonfinite: {'consecutive' (), 'total' ()}: skipped updates (non-finite loss or gradients).
  """
  step: Any
  params: Any
  batch_stats: Any
  opt_state: Any
  landmark_error: Any
  data_position: Any
  nonfinite: Any


def build_face_model(config):
  """The morphable model named by config.face_model (cached: building it is not free)."""
  key = json.dumps(config.face_model.to_dict(), sort_keys=True, default=str)
  return _face_model_cached(key)


@functools.lru_cache(maxsize=4)
def _face_model_cached(key):
  return face_model_lib.from_config(ml_collections.ConfigDict(json.loads(key)))


def raster_settings(config):
  """RasterSettings(image_size=config.image_size, **config.raster)."""
  return RasterSettings(image_size=config.image_size, **config.raster.to_dict())


def create_networks(config, bn_axis_name=None):
  """(network, decoder): the FaceRNet regressor (Sec 3.2-3.3) and the FaceDecoder (Eqs 1-6)."""
  kwargs = {k: v for k, v in config.model.to_dict().items() if k != 'name'}
  if 'output_scales' in kwargs:  # {group: scale} in the config; a hashable tuple for the module
    kwargs['output_scales'] = tuple(sorted(kwargs['output_scales'].items()))
  network = models.create_model(config.model.name, bn_axis_name=bn_axis_name, **kwargs)
  decoder = forward.FaceDecoder(face_model=build_face_model(config), image_size=config.image_size,
                                trainable_bases=config.trainable_bases,
                                raster=raster_settings(config),
                                render_geometry_gradient=config.get('render_geometry_gradient', True))
  return network, decoder


def initialized(rng, config, network, decoder):
  """Initial variables: params {'network', 'decoder'} and the network's batch statistics."""
  rng_net, rng_dec = jax.random.split(rng)
  images = jnp.zeros((1, config.image_size, config.image_size, 3), jnp.float32)

  @jax.jit
  def init(rng_net, rng_dec):
    net_vars = network.init(rng_net, images, train=False)
    dec_vars = decoder.init(rng_dec, jnp.zeros((1, NUM_COEFFICIENTS), jnp.float32))
    return net_vars, dec_vars

  net_vars, dec_vars = init(rng_net, rng_dec)
  params = {'network': net_vars['params'], 'decoder': dec_vars.get('params', {})}
  return params, net_vars.get('batch_stats', {})


def init_rng(config):
  """The initialisation key. 'rbg' compiles the initialisers several times faster than threefry."""
  return jax.random.key(config.seed, impl='rbg')


def num_train_steps(config, steps_per_epoch):
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return max(int(math.ceil(config.num_epochs * steps_per_epoch)), 1)


def create_learning_rate_fn(config, num_steps):
  """Constant or linear-warmup + cosine schedule around config.learning_rate (Adam 1e-3, Sec 4.1)."""
  warmup = max(int(config.warmup_steps), 0)
  if config.lr_schedule == 'constant':
    if warmup:
      return optax.join_schedules(
          [optax.linear_schedule(0.0, config.learning_rate, warmup),
           optax.constant_schedule(config.learning_rate)], [warmup])
    return optax.constant_schedule(config.learning_rate)
  if config.lr_schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup_steps=warmup,
        decay_steps=max(num_steps, warmup + 1), end_value=0.01 * config.learning_rate)
  raise ValueError(f'unknown lr_schedule {config.lr_schedule!r}')


OPTIMIZERS = {'adam': optax.adam, 'sgd': optax.sgd}


def _decoder_scale(scale):
  """Multiplies the updates of params['decoder'] (the 3DMM layer) by `scale`, leaf by leaf."""
  def update_fn(updates, state, params=None):
    del params
    return {**updates, 'decoder': jax.tree_util.tree_map(lambda u: u * scale, updates['decoder'])
            }, state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def create_optimizer(config, num_steps):
  """optax Adam (Sec 4.1; or plain SGD) with the configured schedule and optional clipping.

  Per-leaf state (optax's own layout). The 3DMM layer's FC_shape / FC_texture start at the PCA
  bases, whose entries are ~1e-3: Adam's per-entry steps of ~learning_rate would erase them, so
  their steps are scaled by config.decoder_lr_scale.
  """
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f'unknown optimizer {config.optimizer!r}; choose from {sorted(OPTIMIZERS)}')
  parts = []
  if config.grad_clip_norm and config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
  parts.append(OPTIMIZERS[config.optimizer](create_learning_rate_fn(config, num_steps)))
  scale = float(config.get('decoder_lr_scale', 1.0))
  if scale != 1.0:
    parts.append(_decoder_scale(scale))
  return optax.chain(*parts)


def create_train_state(rng, config, network, decoder, tx):
  """A fresh TrainState (step 0, data position 0)."""
  params, batch_stats = initialized(rng, config, network, decoder)
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
      opt_state=tx.init(params), landmark_error=losses.init_landmark_error_state(),
      data_position=jnp.zeros((), jnp.int32),
      nonfinite={'consecutive': jnp.zeros((), jnp.int32), 'total': jnp.zeros((), jnp.int32)})
