"""Refinement (fitting, beyond the paper): optimise regressed coefficients against the training losses.

The objective of one face is the training objective restricted to what a photo offers: the landmark
term (Eq 12, only for faces with given landmarks), photometric (Eq 14) and SSIM (Eq 15) terms on the
rendered face region, and the coefficient prior (Eq 17), weighted as in training. As in training, the
face region (the render's coverage) is held fixed inside each step (stop-gradient), so the photometric
terms cannot shrink the face to lower their loss. Adam runs `steps` times inside one jitted `lax.scan`.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from facernet_jax import losses


def build_refine_fn(decoder, config, steps, learning_rate):
  """Jitted `run(params, coefficients, images, targets, has_targets, valid) -> (coefficients, before,
  after)` for a batch (`valid` is 1 for real faces, 0 for padding); before / after are per-face
  (total (B,), weighted terms {name: (B,)})."""
  size = int(config.image_size)
  w = losses.LossWeights.from_config(config.get('loss_weights', {}))

  def one(image, render, mask, landmarks, target, has_target, coefficients):
    """Weighted terms of one face (the loss functions take a batch: give them a batch of one)."""
    t = {'land': has_target * losses.landmark_loss(landmarks[None], target[None], None, size),
         'photo': losses.photometric_loss(image[None], render[None], mask[None]),
         'ssim': losses.ssim_loss(image[None], render[None], mask[None]),
         'reg': losses.regularisation_loss(coefficients[None])}
    return losses.total_loss(t, w)

  def terms(params, coefficients, images, targets, has_targets, valid):
    """Per-face (total (B,), weighted terms {name: (B,)}) and the objective: the sum over real faces
    (padding excluded), so each face's coefficients follow their own loss."""
    out = decoder.apply({'params': params['decoder']}, coefficients)
    mask = jax.lax.stop_gradient(out['render'].alpha)
    total, weighted = jax.vmap(one)(images, out['render'].image, mask, out['landmarks'], targets,
                                    has_targets, coefficients)
    return jnp.sum(total * valid), (total, weighted)

  tx = optax.adam(learning_rate)

  def run(params, coefficients, images, targets, has_targets, valid):
    _, before = terms(params, coefficients, images, targets, has_targets, valid)

    def step(carry, _):
      c, opt_state = carry
      g, _ = jax.grad(lambda c: terms(params, c, images, targets, has_targets, valid), has_aux=True)(c)
      g = jnp.where(jnp.isfinite(g), g, 0.0)
      updates, opt_state = tx.update(g, opt_state, c)
      return (optax.apply_updates(c, updates), opt_state), None

    (c, _), _ = jax.lax.scan(step, (coefficients, tx.init(coefficients)), None, length=int(steps))
    _, after = terms(params, c, images, targets, has_targets, valid)
    return c, before, after

  return jax.jit(run)


def per_face_losses(terms, n):
  """(total (B,), {name: (B,)}) -> one dict {'total', name: value} per real face (the first n)."""
  total, weighted = np.asarray(terms[0]), {k: np.asarray(v) for k, v in terms[1].items()}
  return [dict({k: float(v[i]) for k, v in weighted.items()}, total=float(total[i])) for i in range(n)]
