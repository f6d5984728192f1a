"""Training and evaluation of Mobile-FaceRNet (Sec 3.4, 4.1).

  python -m facernet_jax.train --config=facernet_jax/configs/default.py --workdir=runs/default

Layout follows google/flax examples/imagenet: `create_train_state`, `train_step`, `eval_step`,
`train_and_evaluate`, `main`. One train-state pytree holds params ({'network', 'decoder'}), batch
statistics, optimiser state, the per-landmark running error of Eq 13, the step, the data position
and the non-finite-update counters; Orbax saves it whole. Data parallelism: `pmap` over local
devices (gradients and batch statistics averaged across devices, BatchNorm synchronised through
`bn_axis_name`) or `jit` + NamedSharding over a 1-D mesh (config.parallel). See docs/training.md.
"""
import functools
import json
import math
import os
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging
from clu import metric_writers
from clu import periodic_actions
from flax import serialization
from flax import struct
import jax
import jax.flatten_util
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
from ml_collections import config_flags
import numpy as np
import optax
import orbax.checkpoint as ocp

from facernet_jax import input_pipeline
from facernet_jax import train_eval

AXIS = 'batch'
STATE_KEYS = ('params', 'batch_stats', 'opt_state', 'landmark_error', 'step', 'data_position')


# ----------------------------------------------------------------------------- train state

class TrainState(struct.PyTreeNode):
  """Everything that persists between steps (saved whole by Orbax).

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
  from facernet_jax import face_model as face_model_lib  # pylint: disable=g-import-not-at-top
  key = json.dumps(config.face_model.to_dict(), sort_keys=True, default=str)
  return _face_model_cached(key, face_model_lib)


@functools.lru_cache(maxsize=4)
def _face_model_cached(key, face_model_lib):
  return face_model_lib.from_config(ml_collections.ConfigDict(json.loads(key)))


def raster_settings(config):
  """RasterSettings(image_size=config.image_size, **config.raster)."""
  from facernet_jax.render import RasterSettings  # pylint: disable=g-import-not-at-top
  return RasterSettings(image_size=config.image_size, **config.raster.to_dict())


def create_networks(config, bn_axis_name=None):
  """(network, decoder): the FaceRNet regressor (Sec 3.2-3.3) and the FaceDecoder (Eqs 1-6)."""
  from facernet_jax import forward  # pylint: disable=g-import-not-at-top
  from facernet_jax import models  # pylint: disable=g-import-not-at-top
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
  from facernet_jax.models import NUM_COEFFICIENTS  # pylint: disable=g-import-not-at-top
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


def create_optimizer(config, num_steps):
  """optax Adam (Sec 4.1; or plain SGD) with the configured schedule and optional clipping."""
  optimizers = {'adam': optax.adam, 'sgd': optax.sgd}
  if config.optimizer not in optimizers:
    raise ValueError(f'unknown optimizer {config.optimizer!r}; choose from {sorted(optimizers)}')
  parts = []
  if config.grad_clip_norm and config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
  parts.append(optimizers[config.optimizer](create_learning_rate_fn(config, num_steps)))
  return optax.chain(*parts)


def create_train_state(rng, config, network, decoder, tx):
  """A fresh TrainState (step 0, data position 0)."""
  from facernet_jax import losses  # pylint: disable=g-import-not-at-top
  params, batch_stats = initialized(rng, config, network, decoder)
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
      opt_state=tx.init(jax.flatten_util.ravel_pytree(params)[0]),  # Adam runs on the flat vector
      landmark_error=losses.init_landmark_error_state(),
      data_position=jnp.zeros((), jnp.int32),
      nonfinite={'consecutive': jnp.zeros((), jnp.int32), 'total': jnp.zeros((), jnp.int32)})


# ----------------------------------------------------------------------------- steps

def _pmean(x, axis_name):
  return x if axis_name is None else jax.lax.pmean(x, axis_name)


def preprocess(batch):
  """Images as float32 in [0, 1] (uint8 is scaled), landmarks float32."""
  out = dict(batch)
  image = batch['image']
  out['image'] = (image.astype(jnp.float32) / 255.0 if image.dtype == jnp.uint8
                  else image.astype(jnp.float32))
  if 'landmarks' in batch:
    out['landmarks'] = batch['landmarks'].astype(jnp.float32)
  return out


def apply_model(params, batch_stats, images, *, network, decoder, train):
  """images -> (coefficients (B,495), decoder outputs, new batch statistics)."""
  variables = {'params': params['network']}
  if batch_stats:
    variables['batch_stats'] = batch_stats
  if train and batch_stats:
    coefficients, mutated = network.apply(variables, images, train=True, mutable=['batch_stats'])
    new_batch_stats = mutated['batch_stats']
  else:
    coefficients = network.apply(variables, images, train=train)
    new_batch_stats = batch_stats
  decoded = decoder.apply({'params': params['decoder']}, coefficients)
  return coefficients, decoded, new_batch_stats


def reg_weights(config):
  """Eq 17's per-group weights: `config.reg_weights`, or the paper's when the config has none."""
  from facernet_jax import losses  # pylint: disable=g-import-not-at-top
  return losses.check_reg_weights(config.get('reg_weights', None) or losses.REG_WEIGHTS)


def compute_loss_terms(batch, coefficients, decoded, error_weights, *, config, neighbours):
  """The six unweighted terms of Eq 11 for one (per-device) batch; each is a mean over its images,
  so the mean over equal per-device batches equals the global-batch value."""
  from facernet_jax import losses  # pylint: disable=g-import-not-at-top
  size = config.image_size
  image = batch['image']
  render = decoded['render']
  # Eqs 14-15's V: the projected face region, used as a constant (no gradient through the mask,
  # which would otherwise let the model shrink the face to lower the loss).
  mask = jax.lax.stop_gradient(render.alpha)
  pred, gt = decoded['landmarks'], batch['landmarks']
  return {
      'land': losses.landmark_loss(pred, gt, None, size),
      'land_error': losses.landmark_error_loss(pred, gt, error_weights, size),
      'photo': losses.photometric_loss(image, render.image, mask),
      'ssim': losses.ssim_loss(image, render.image, mask),
      'smooth': losses.smoothness_loss(decoded['vertices'], neighbours),
      'reg': losses.regularisation_loss(coefficients, reg_weights(config)),
  }


def train_step(state, batch, *, network, decoder, tx, config, steps_per_epoch, neighbours,
               axis_name=None):
  """One Adam step on Eq 11; skips (and counts) the update when the loss or a gradient is not finite.

  Under pmap (axis_name set) gradients, losses and batch statistics are averaged across devices;
  under jit + NamedSharding the batch is one global array and no collective is needed.
  """
  from facernet_jax import losses  # pylint: disable=g-import-not-at-top
  batch = preprocess(batch)
  step = state.step
  # Epoch bookkeeping for Eq 13: at each epoch boundary e_i := the finished epoch's mean error.
  boundary = (step > 0) & (step % steps_per_epoch == 0)
  le = jax.tree_util.tree_map(lambda a, b: jnp.where(boundary, a, b),
                              losses.roll_landmark_error_state(state.landmark_error),
                              state.landmark_error)
  error_weights = losses.landmark_error_weights(le)
  epoch = step // steps_per_epoch
  weights = losses.LossWeights.from_config(config.loss_weights)

  def loss_fn(params):
    coefficients, decoded, new_batch_stats = apply_model(
        params, state.batch_stats, batch['image'], network=network, decoder=decoder, train=True)
    terms = compute_loss_terms(batch, coefficients, decoded, error_weights, config=config,
                               neighbours=neighbours)
    loss, weighted = losses.total_loss(terms, weights, epoch=epoch,
                                       land_error_start_epoch=config.land_error_start_epoch)
    return loss, (terms, weighted, new_batch_stats, decoded['landmarks'])

  (loss, (terms, weighted, new_batch_stats, pred)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  # Each device's loss is a mean over its equal share of the global batch: the mean over devices
  # is the global-batch loss and gradient.
  grads = _pmean(grads, axis_name)
  loss = _pmean(loss, axis_name)
  terms = _pmean(terms, axis_name)
  weighted = _pmean(weighted, axis_name)
  # With bn_axis_name the statistics are already global; the mean keeps replicas bit-identical.
  new_batch_stats = _pmean(new_batch_stats, axis_name)

  # A fusion barrier between the backward pass and the update: without it XLA:CPU fuses the Adam
  # update into the gradient computation and compiles several times slower.
  grads, new_batch_stats = jax.lax.optimization_barrier((grads, new_batch_stats))
  grad_norm = optax.global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  for leaf in jax.tree_util.tree_leaves(new_batch_stats):
    finite &= jnp.all(jnp.isfinite(leaf))
  # Adam is elementwise: run it on the flattened parameter vector (identical maths, a few large
  # ops instead of hundreds of small ones, which XLA:CPU compiles much faster).
  flat_params, unravel = jax.flatten_util.ravel_pytree(state.params)
  flat_grads, _ = jax.flatten_util.ravel_pytree(grads)
  updates, new_opt_state = tx.update(flat_grads, state.opt_state, flat_params)
  # The 3DMM layer's FC_shape / FC_texture start at the PCA bases, whose entries are ~1e-3: Adam's
  # per-entry steps of ~learning_rate would erase them, so their steps are scaled down.
  scale = config.get('decoder_lr_scale', 1.0)
  if scale != 1.0:
    lr_scale, _ = jax.flatten_util.ravel_pytree(
        {'network': jax.tree_util.tree_map(jnp.ones_like, state.params['network']),
         'decoder': jax.tree_util.tree_map(lambda x: jnp.full_like(x, scale),
                                           state.params['decoder'])})
    updates = updates * lr_scale
  new_params = unravel(optax.apply_updates(flat_params, updates))
  keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)
  new_le = keep(losses.update_landmark_error_state(le, pred, batch['landmarks'],
                                                   config.image_size, axis_name=axis_name), le)
  nonfinite = {
      'consecutive': jnp.where(finite, 0, state.nonfinite['consecutive'] + 1),
      'total': state.nonfinite['total'] + jnp.where(finite, 0, 1)}
  new_state = state.replace(
      step=step + 1, params=keep(new_params, state.params),
      batch_stats=keep(new_batch_stats, state.batch_stats),
      opt_state=keep(new_opt_state, state.opt_state), landmark_error=new_le,
      data_position=state.data_position + config.batch_size, nonfinite=nonfinite)
  errors = _pmean(per_point_error(pred, batch['landmarks'], config.image_size), axis_name)
  metrics = {'loss': loss, 'grad_norm': grad_norm, 'finite': finite.astype(jnp.float32),
             'epoch': epoch.astype(jnp.float32),
             'nonfinite_consecutive': nonfinite['consecutive'],
             'nonfinite_total': nonfinite['total'], 'landmark_error': jnp.mean(errors)}
  metrics.update({f'loss_{k}': v for k, v in terms.items()})
  metrics.update({f'weighted_{k}': v for k, v in weighted.items()})
  return new_state, metrics


def per_point_error(pred, gt, image_size):
  """(68,) mean over the batch of ||pred - gt||_2 / image_size."""
  return jnp.mean(jnp.linalg.norm(pred - gt, axis=-1), axis=0) / image_size


def eval_step(params, batch_stats, batch, *, network, decoder):
  """Predictions for evaluation and summaries: landmarks (B,68,2) px, render (B,S,S,3), alpha (B,S,S)."""
  images = preprocess(batch)['image']
  coefficients, decoded, _ = apply_model(params, batch_stats, images, network=network,
                                         decoder=decoder, train=False)
  return {'landmarks': decoded['landmarks'], 'render': decoded['render'].image,
          'alpha': decoded['render'].alpha, 'coefficients': coefficients}


# ----------------------------------------------------------------------------- parallelism

class DataParallel:
  """Places state and batches for 'pmap' or 'jit' (NamedSharding) data parallelism and compiles steps.

  Batches arrive from the input pipeline as numpy arrays shaped (local_devices, per_device_batch, ...).
  """

  def __init__(self, config, devices=None, mode=None):
    self.mode = mode or config.parallel
    if self.mode not in ('pmap', 'jit'):
      raise ValueError(f"config.parallel must be 'pmap' or 'jit', got {self.mode!r}")
    # All participating devices, of every process: pmap's `devices` must list them all. Given only
    # this process's devices, each process runs its own pmap and the gradient mean never crosses
    # processes (the replicas on different hosts then train on different gradients).
    self.devices = list(devices) if devices is not None else jax.devices()
    self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
    if self.mode == 'jit':
      self.mesh = Mesh(np.asarray(self.devices), (AXIS,))
      self.replicated = NamedSharding(self.mesh, P())
      self.sharded = NamedSharding(self.mesh, P(AXIS))

  @property
  def bn_axis_name(self):
    return AXIS if self.mode == 'pmap' else None

  @property
  def axis_name(self):
    return AXIS if self.mode == 'pmap' else None

  def put_state(self, state):
    """Replicates the state on every device.

    For pmap the copies are laid out exactly as pmap lays out its outputs (a mesh over the local
    devices whose axis is the pmap axis name): any other layout makes the second step recompile.
    Stacking on the host avoids compiling one stack per leaf shape (flax.jax_utils.replicate).
    """
    state = jax.device_get(state)
    if self.mode == 'pmap':
      n = len(self.local_devices)
      sharding = NamedSharding(Mesh(np.asarray(self.local_devices), (AXIS,)), P(AXIS))
      return jax.tree_util.tree_map(
          lambda x: jax.device_put(np.stack([np.asarray(x)] * n), sharding), state)
    return jax.device_put(state, self.replicated)

  def get_state(self, state):
    """One host (numpy) copy of the replicated state."""
    first = lambda x: np.asarray(jax.device_get(x.addressable_data(0)))
    if self.mode == 'pmap':  # Each device holds a (1, ...) slice of the (devices, ...) array.
      return jax.tree_util.tree_map(lambda x: first(x)[0], state)
    return jax.tree_util.tree_map(first, state)

  def put_batch(self, batch):
    if self.mode == 'pmap':
      return batch
    def put(x):
      x = np.asarray(x)
      x = x.reshape((-1,) + x.shape[2:])
      return jax.make_array_from_process_local_data(self.sharded, x)
    return jax.tree_util.tree_map(put, batch)

  def get_output(self, out):
    """Per-example outputs of this process as numpy (n_local, ...)."""
    if self.mode == 'pmap':
      return jax.tree_util.tree_map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), out)
    def local(x):
      shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
      return np.concatenate([np.asarray(s.data) for s in shards])
    return jax.tree_util.tree_map(local, out)

  def get_metrics(self, metrics):
    """One host copy of the step's metrics (replicated like the state)."""
    return self.get_state(metrics)

  def compile_train_step(self, step_fn):
    if self.mode == 'pmap':
      return jax.pmap(functools.partial(step_fn, axis_name=AXIS), axis_name=AXIS,
                      devices=self.devices, donate_argnums=(0,))
    return jax.jit(functools.partial(step_fn, axis_name=None), donate_argnums=(0,),
                   in_shardings=(self.replicated, self.sharded),
                   out_shardings=(self.replicated, self.replicated))

  def compile_eval_step(self, eval_fn):
    if self.mode == 'pmap':
      return jax.pmap(eval_fn, axis_name=AXIS, devices=self.devices)
    return jax.jit(eval_fn, in_shardings=(self.replicated, self.replicated, self.sharded),
                   out_shardings=self.sharded)

  def eval_args(self, state):
    return state.params, state.batch_stats


def make_steps(config, parallel, steps_per_epoch):
  """(compiled train step, compiled eval step, tx) for `config` on `parallel`'s devices."""
  from facernet_jax.render import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  network, decoder = create_networks(config, bn_axis_name=parallel.bn_axis_name)
  face_model = build_face_model(config)
  neighbours = mesh_lib.vertex_neighbours(face_model.triangles, face_model.num_vertices)
  tx = create_optimizer(config, num_train_steps(config, steps_per_epoch))
  step_fn = functools.partial(train_step, network=network, decoder=decoder, tx=tx, config=config,
                              steps_per_epoch=steps_per_epoch, neighbours=jnp.asarray(neighbours))
  eval_fn = functools.partial(eval_step, network=network, decoder=decoder)
  return parallel.compile_train_step(step_fn), parallel.compile_eval_step(eval_fn), tx


def num_train_steps(config, steps_per_epoch):
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return max(int(math.ceil(config.num_epochs * steps_per_epoch)), 1)


# ----------------------------------------------------------------------------- distributed

def maybe_initialize_distributed(config=None):
  """jax.distributed.initialize() when config.distributed.initialize or FACERNET_DISTRIBUTED=1.

  Explicit coordinator / process count / id come from the config, else from JAX's cluster
  auto-detection (SLURM, Open MPI, Cloud TPU, ...). On CPU, cross-process collectives use gloo.
  """
  dist = config.distributed if config is not None else None
  wanted = os.environ.get('FACERNET_DISTRIBUTED', '') == '1' or (dist is not None and dist.initialize)
  if not wanted:
    return False
  if jax.distributed.is_initialized():
    return True
  kwargs = {}
  if dist is not None:
    if dist.coordinator_address:
      kwargs['coordinator_address'] = dist.coordinator_address
    if dist.num_processes > 0:
      kwargs['num_processes'] = int(dist.num_processes)
    if dist.process_id >= 0:
      kwargs['process_id'] = int(dist.process_id)
  try:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  except Exception:  # pylint: disable=broad-except
    pass
  jax.distributed.initialize(**kwargs)
  logging.info('distributed: process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


# ----------------------------------------------------------------------------- checkpoints

def state_to_host_dict(state):
  """The state as a nested dict of numpy arrays (the checkpoint format)."""
  return serialization.to_state_dict(jax.device_get(state))


def checkpoint_manager(workdir, config, read_only=False):
  """Orbax manager over workdir/checkpoints: items 'state' (the train state) and 'config' (JSON)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=int(config.keep_checkpoints) if config is not None else None,
      enable_async_checkpointing=bool(config.async_checkpointing) if config is not None else False,
      create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options, item_names=('state', 'config'))


def save_checkpoint(manager, host_state, config, force=False):
  """Saves (asynchronously when configured) the host copy of the state; refuses non-finite params."""
  for leaf in jax.tree_util.tree_leaves(host_state['params']):
    if not np.all(np.isfinite(leaf)):
      raise FloatingPointError('refusing to checkpoint non-finite parameters')
  step = int(host_state['step'])
  return manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(host_state),
      config=ocp.args.JsonSave(json.loads(config.to_json()))), force=force)


def restore_latest(manager, template_state):
  """Restores the newest complete checkpoint into `template_state`'s structure (or None)."""
  step = manager.latest_step()
  if step is None:
    return None
  target = state_to_host_dict(template_state)
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  return serialization.from_state_dict(template_state, jax.device_get(restored['state']))


def load_for_inference(path):
  """(config, variables) from a training workdir (newest checkpoint) or one checkpoint directory.

  variables = {'params': {'network': ..., 'decoder': ...}, 'batch_stats': ...} as numpy arrays.
  """
  path = os.path.abspath(os.fspath(path))
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    manager = ocp.CheckpointManager(
        os.path.join(path, 'checkpoints'), item_names=('state', 'config'),
        options=ocp.CheckpointManagerOptions(read_only=True, create=False))
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f'no complete checkpoint under {path}/checkpoints')
    ckpt_dir = os.path.join(path, 'checkpoints', str(step))
    manager.close()
  else:
    ckpt_dir = path
  state_dir = os.path.join(ckpt_dir, 'state')
  if not os.path.isdir(state_dir):
    raise FileNotFoundError(f'{path} is neither a workdir nor a checkpoint directory')
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(state_dir)
  config_file = os.path.join(ckpt_dir, 'config', 'metadata')
  workdir_config = os.path.join(os.path.dirname(os.path.dirname(ckpt_dir)), 'config.json')
  config_json = None
  if os.path.isfile(config_file):
    with open(config_file) as f:
      config_json = json.load(f)
  elif os.path.isfile(workdir_config):
    with open(workdir_config) as f:
      config_json = json.load(f)
  if config_json is None:
    raise FileNotFoundError(f'no config found for checkpoint {ckpt_dir}')
  variables = jax.device_get({'params': restored['params'],
                              'batch_stats': restored.get('batch_stats', {})})
  return ml_collections.ConfigDict(config_json), variables


# ----------------------------------------------------------------------------- main loop

def write_config(workdir, config):
  """workdir/config.json: the resolved config (process 0 only)."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json(indent=2, sort_keys=True))


def create_writer(workdir):
  """TensorBoard + console on process 0; nothing on the others (only process 0 writes logs)."""
  if jax.process_index() == 0:
    return metric_writers.create_default_writer(workdir, asynchronous=False)
  return metric_writers.MultiWriter([])


def _log(msg, *args):
  if jax.process_index() == 0:
    text = msg % args if args else msg
    logging.info(text)
    print(text, flush=True)


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir` (resuming from its newest checkpoint) and returns the final state
  (host copy) and the last evaluation metrics."""
  maybe_initialize_distributed(config)
  workdir = os.path.abspath(workdir)
  if config.batch_size % jax.device_count():
    raise ValueError(f'batch_size {config.batch_size} is not divisible by the '
                     f'{jax.device_count()} devices')
  parallel = DataParallel(config)

  builders = input_pipeline.prepare_datasets(config)
  steps_per_epoch = max(
      input_pipeline.split_size(builders, config.dataset.train_split) // config.batch_size, 1)
  eval_sets = input_pipeline.prepare_eval_datasets(config, builders)
  total_steps = num_train_steps(config, steps_per_epoch)
  p_train_step, p_eval_step, tx = make_steps(config, parallel, steps_per_epoch)
  network, decoder = create_networks(config, bn_axis_name=parallel.bn_axis_name)
  host_state = create_train_state(init_rng(config), config, network, decoder, tx)
  reg_weights(config)  # Checked here so that a bad config stops before the workdir is written.

  write_config(workdir, config)
  writer = create_writer(workdir)
  manager = checkpoint_manager(workdir, config)
  restored = restore_latest(manager, host_state)
  if restored is not None:
    host_state = restored
    _log('resumed from step %d (data position %d)', int(host_state.step),
         int(host_state.data_position))
  start_step = int(host_state.step)
  train_iter = input_pipeline.create_iterator(config, builders, config.dataset.train_split,
                               position=int(host_state.data_position))
  state = parallel.put_state(host_state)
  del host_state

  hooks = []
  report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                           every_steps=config.log_every_steps)
  if jax.process_index() == 0:
    hooks.append(report)
    if config.profile:
      hooks.append(periodic_actions.Profile(logdir=workdir, num_profile_steps=5))

  _log('training %d steps (%d per epoch, global batch %d, %s on %d devices), from step %d',
       total_steps, steps_per_epoch, config.batch_size, parallel.mode, jax.device_count(),
       start_step)
  train_metrics = []
  t_start = t_log = time.time()
  step_log = start_step
  eval_metrics = {}
  for step in range(start_step + 1, total_steps + 1):
    batch = next(train_iter)
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      state, metrics = p_train_step(state, parallel.put_batch(_train_arrays(batch)))
    metrics = parallel.get_metrics(metrics)
    train_metrics.append(metrics)
    for h in hooks:
      h(step)
    try:
      check_nonfinite(metrics, config.max_consecutive_nonfinite, step)
    except FloatingPointError:
      manager.wait_until_finished()
      raise

    if step % config.log_every_steps == 0 or step == total_steps:
      summary = {f'train/{k}': float(np.mean([m[k] for m in train_metrics]))
                 for k in train_metrics[0]}
      summary['train/nonfinite_total'] = float(train_metrics[-1]['nonfinite_total'])
      now = time.time()
      steps_per_sec = (step - step_log) / max(now - t_log, 1e-9)
      summary['train/steps_per_sec'] = steps_per_sec
      summary['train/images_per_sec'] = steps_per_sec * config.batch_size
      writer.write_scalars(step, summary)
      eta = (total_steps - step) / max(steps_per_sec, 1e-9)
      _log('step %d/%d  loss %.4f  land %.5f  photo %.4f  lmk-err %.2f%%  %.2f steps/s  '
           'elapsed %s  ETA %s', step, total_steps, summary['train/loss'],
           summary['train/loss_land'], summary['train/loss_photo'],
           100 * summary['train/landmark_error'], steps_per_sec, _hms(now - t_start), _hms(eta))
      train_metrics, t_log, step_log = [], now, step

    if config.image_every_steps > 0 and (step % config.image_every_steps == 0 or step == total_steps):
      train_eval.write_image_summaries(config, parallel, p_eval_step, state, batch, writer, step)

    if config.eval_every_steps > 0 and (step % config.eval_every_steps == 0 or step == total_steps):
      evals = train_eval.run_evaluation(config, parallel, p_eval_step, state, eval_sets['eval'],
                                        'eval', step, writer, config.num_eval_batches)
      eval_metrics = next(iter(evals.values()))

    if step % config.checkpoint_every_steps == 0 or step == total_steps:
      save_checkpoint(manager, state_to_host_dict(parallel.get_state(state)), config,
                      force=step == total_steps)
  manager.wait_until_finished()
  manager.close()
  writer.flush()

  final_state = parallel.get_state(state)
  result = {'eval': eval_metrics, 'train_seconds': time.time() - t_start}
  if config.final_test:
    tests = train_eval.run_evaluation(config, parallel, p_eval_step, state, eval_sets['test'],
                                      'test', total_steps, writer, -1)
    label, test = next(iter(tests.items()))
    result['test'] = test
    result['test_datasets'] = tests
    # The report reads the training dataset's test split (one source: the default's synthetic faces).
    if config.get('report', False) and jax.process_index() == 0 and len(builders) == 1:
      from facernet_jax import run_report  # pylint: disable=g-import-not-at-top
      network, decoder = create_networks(config)
      params, batch_stats = initialized(init_rng(config), config, network, decoder)
      for line in run_report.end_of_training(config, workdir, state_to_host_dict(final_state),
                                             {'params': params, 'batch_stats': batch_stats}, network,
                                             decoder, test, builders):
        _log(line)
    else:
      _log(verdict(config, test, label))
    if jax.process_index() == 0:
      with open(os.path.join(workdir, 'final_metrics.json'), 'w') as f:
        json.dump({'step': int(final_state.step), **_jsonable(result)}, f, indent=2)
  writer.close()
  return final_state, result


def check_nonfinite(metrics, limit, step):
  """Raises FloatingPointError once `limit` updates in a row were skipped as non-finite."""
  run = int(metrics['nonfinite_consecutive'])
  if limit > 0 and run >= limit:
    raise FloatingPointError(
        f'stopping at step {step}: {run} consecutive updates with a non-finite loss or gradient '
        f'were skipped (limit config.max_consecutive_nonfinite={limit}); parameters were not '
        'updated by them and the newest checkpoint holds finite values')


def _train_arrays(batch):
  keys = ('image', 'landmarks')
  return {k: batch[k] for k in keys}


def verdict(config, test, label=None):
  """The end-of-training line: NME and PSNR on the (first) test set against the configured targets."""
  nme_ok = test['nme'] <= config.target_nme
  psnr_ok = test['psnr'] >= config.target_psnr
  return (f'test split ({label or config.dataset.test_split}, {int(test["num_images"])} images): '
          f'NME {test["nme"]:.2f}% <= {config.target_nme}%: {"PASS" if nme_ok else "FAIL"}; '
          f'PSNR {test["psnr"]:.2f} dB >= {config.target_psnr} dB: '
          f'{"PASS" if psnr_ok else "FAIL"}; SSIM {test["ssim"]:.4f}')


def _hms(seconds):
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def _jsonable(x):
  if isinstance(x, dict):
    return {k: _jsonable(v) for k, v in x.items()}
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  return x


# ----------------------------------------------------------------------------- CLI

FLAGS = flags.FLAGS
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and config.json.')
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Training configuration file (e.g. facernet_jax/configs/default.py).',
    lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  config = _CONFIG.value
  maybe_initialize_distributed(config)
  logging.info('JAX process %d / %d, local devices %s', jax.process_index(), jax.process_count(),
               jax.local_devices())
  train_and_evaluate(config, _WORKDIR.value)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)
