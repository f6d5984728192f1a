"""How well can shape and expression hide a wrong yaw from the landmark loss? (Eq 12 + Eq 17)

  python experiments/pose_shape_ambiguity.py [--reg_shape=0.2 --reg_expression=0.1]

Takes synthetic test faces with |yaw| > 50 degrees, starts from their true coefficients with the yaw
multiplied by a fraction (1.0, 0.8, 0.6) and held there, and fits shape, expression, the other two
angles and the translation per image to the true landmarks (1e4 x Eq 12 + Eq 17, Adam). It prints the
objective at the optimum, its two parts, the NME and the spread of the fitted shape and expression.
A small NME at a wrong yaw means the landmarks barely tell the yaw from a shape change, so a network
trained on them can under-predict large yaws at little cost (docs/training.md).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from facernet_jax import input_pipeline  # noqa: E402
from facernet_jax import losses  # noqa: E402
from facernet_jax import metrics  # noqa: E402
from facernet_jax import models  # noqa: E402
from facernet_jax.configs import default  # noqa: E402
from facernet_jax.data import synthetic_faces  # noqa: E402
from facernet_jax.face_model.synthetic import build_synthetic_model  # noqa: E402
from facernet_jax.forward import FaceDecoder  # noqa: E402


def main():
  defaults = default.get_config()
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--reg_shape', type=float, default=defaults.reg_weights.shape)
  p.add_argument('--reg_expression', type=float, default=defaults.reg_weights.expression)
  p.add_argument('--num_images', type=int, default=48)
  p.add_argument('--steps', type=int, default=1500)
  p.add_argument('--lr', type=float, default=3e-3)
  a = p.parse_args()
  size = defaults.image_size
  data_config = synthetic_faces.config_from_dict(input_pipeline.synthetic_dataset_config(defaults))
  test = synthetic_faces.generate_examples(data_config, 'test', 0, 256)
  keep = np.where(np.abs(test['yaw']) > 50)[0][:a.num_images]
  truth = jnp.asarray(test['coefficients'][keep])
  target = jnp.asarray(test['landmarks'][keep])
  decoder = FaceDecoder(build_synthetic_model(defaults.face_model.resolution, defaults.face_model.seed),
                        size, trainable_bases=False, raster=None)
  dec_vars = decoder.init(jax.random.PRNGKey(0), truth[:1])
  weights = {'shape': a.reg_shape, 'expression': a.reg_expression}
  slices = models.coefficient_slices()
  yaw = slices['rotation'].start + 1
  free = np.zeros(models.NUM_COEFFICIENTS, bool)
  for group in ('shape', 'expression', 'rotation', 'translation'):
    free[slices[group]] = True
  free[yaw] = False

  def objective(c):
    land = 1e4 * losses.landmark_loss(decoder.apply(dec_vars, c)['landmarks'], target, None, size)
    reg = losses.regularisation_loss(c, weights)
    return land + reg, (land, reg)

  tx = optax.adam(a.lr)

  @jax.jit
  def step(c, opt_state):
    (_, parts), g = jax.value_and_grad(objective, has_aux=True)(c)
    updates, opt_state = tx.update(g * free, opt_state, c)
    return optax.apply_updates(c, updates), opt_state, parts

  print(f'{len(keep)} test faces, mean |yaw| {np.abs(test["yaw"][keep]).mean():.1f} deg; '
        f'Eq 17 weights {weights}')
  for fraction in (1.0, 0.8, 0.6):
    c = truth.at[:, yaw].multiply(fraction)
    opt_state = tx.init(c)
    for _ in range(a.steps):
      c, opt_state, (land, reg) = step(c, opt_state)
    nme = 100.0 * metrics.nme_per_image(np.asarray(decoder.apply(dec_vars, c)['landmarks']),
                                        np.asarray(target)).mean()
    print(f'yaw x {fraction:.1f}: objective {float(land + reg):7.2f} (landmarks {float(land):7.2f}, '
          f'Eq 17 {float(reg):6.2f}), NME {nme:.2f} %, spread of shape '
          f'{float(c[:, slices["shape"]].std()):.2f} / expression {float(c[:, slices["expression"]].std()):.2f}')


if __name__ == '__main__':
  main()
