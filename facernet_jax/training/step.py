"""The maths of one step: Eq 11's six terms, the Adam train step and the eval step.

Pure functions of (state, batch); the parallel module compiles them for pmap or jit.
"""
import functools

import jax
import jax.numpy as jnp
import optax

from facernet_jax import losses
from facernet_jax.render import mesh as mesh_lib
from facernet_jax.training import state as state_lib


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
  return losses.check_reg_weights(config.get('reg_weights', None) or losses.REG_WEIGHTS)


def compute_loss_terms(batch, coefficients, decoded, error_weights, *, config, neighbours):
  """The six unweighted terms of Eq 11 for one (per-device) batch; each is a mean over its images,
  so the mean over equal per-device batches equals the global-batch value."""
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


def per_point_error(pred, gt, image_size):
  """(68,) mean over the batch of ||pred - gt||_2 / image_size."""
  return jnp.mean(jnp.linalg.norm(pred - gt, axis=-1), axis=0) / image_size


def train_step(state, batch, *, network, decoder, tx, config, steps_per_epoch, neighbours,
               axis_name=None):
  """One Adam step on Eq 11; skips (and counts) the update when the loss or a gradient is not finite.

  Under pmap (axis_name set) gradients, losses and batch statistics are averaged across devices;
  under jit + NamedSharding the batch is one global array and no collective is needed. Returns
  (new state, metrics): the metrics stay on the device (the loop fetches them at log steps).
  """
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
  updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)
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


def eval_step(params, batch_stats, batch, *, network, decoder):
  """Predictions for evaluation and summaries: landmarks (B,68,2) px, render (B,S,S,3), alpha (B,S,S)."""
  images = preprocess(batch)['image']
  coefficients, decoded, _ = apply_model(params, batch_stats, images, network=network,
                                         decoder=decoder, train=False)
  return {'landmarks': decoded['landmarks'], 'render': decoded['render'].image,
          'alpha': decoded['render'].alpha, 'coefficients': coefficients}


def make_steps(config, parallel, steps_per_epoch):
  """(compiled train step, compiled eval step, tx) for `config` on `parallel`'s devices."""
  network, decoder = state_lib.create_networks(config, bn_axis_name=parallel.bn_axis_name)
  face_model = state_lib.build_face_model(config)
  neighbours = mesh_lib.vertex_neighbours(face_model.triangles, face_model.num_vertices)
  tx = state_lib.create_optimizer(config, state_lib.num_train_steps(config, steps_per_epoch))
  step_fn = functools.partial(train_step, network=network, decoder=decoder, tx=tx, config=config,
                              steps_per_epoch=steps_per_epoch, neighbours=jnp.asarray(neighbours))
  eval_fn = functools.partial(eval_step, network=network, decoder=decoder)
  return parallel.compile_train_step(step_fn), parallel.compile_eval_step(eval_fn), tx
