"""How much face-region PSNR does a trained run leave on the table, and can its features carry appearance?

  python experiments/appearance_ceiling.py --workdir=runs/default [--num_images=64]

On the first images of the synthetic test split (whose examples carry their true coefficients) it
prints the face-region PSNR (Table 3's region, as the training run reports it) of:
* the run's predictions;
* the predicted geometry with the true lighting and texture put in;
* the predicted geometry with lighting and texture fitted per image by Eq 14 + Eq 17's texture term
  (Adam, `--fit_steps`): the best any appearance prediction could do at this geometry;
* the true geometry with fitted appearance, and all true coefficients.
Then it checks the network's pooled last-conv features: how many units are ever non-zero, and how well
a ridge probe recovers the mean colour of the true face region from them. docs/training.md quotes it.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from coefficient_errors import predict, ridge_predict  # noqa: E402
from facernet_jax import input_pipeline  # noqa: E402
from facernet_jax import losses  # noqa: E402
from facernet_jax import metrics  # noqa: E402
from facernet_jax import models  # noqa: E402
from facernet_jax import train  # noqa: E402
from facernet_jax.data import synthetic_faces  # noqa: E402


def mean_face_colour(examples):
  """(N, 3) mean RGB in [0, 1] over each example's true face mask."""
  mask = examples['mask'].astype(np.float64)
  image = examples['image'].astype(np.float64) / 255.0
  return np.einsum('nhwc,nhw->nc', image, mask) / np.maximum(mask.sum((1, 2)), 1.0)[:, None]


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--num_images', type=int, default=64)
  p.add_argument('--fit_steps', type=int, default=300)
  p.add_argument('--fit_lr', type=float, default=1e-2)
  a = p.parse_args()
  config, variables = train.load_for_inference(a.workdir)
  if config.dataset.name != 'synthetic_faces':
    raise SystemExit(f'{a.workdir} was trained on {config.dataset.name!r}; this needs the '
                     'synthetic faces, whose examples carry their true coefficients')
  network, decoder = train.create_networks(config)
  data_config = synthetic_faces.config_from_dict(input_pipeline.synthetic_dataset_config(config))
  test = synthetic_faces.generate_examples(data_config, 'test', 0, a.num_images)
  probe_train = synthetic_faces.generate_examples(data_config, 'train', 0, 1024)
  pred, features = predict(variables, network, test['image'])
  _, probe_features = predict(variables, network, probe_train['image'])
  truth = jnp.asarray(test['coefficients'])
  pred = jnp.asarray(pred)
  images = jnp.asarray(test['image'], jnp.float32) / 255.0
  slices = models.coefficient_slices()
  appearance = np.zeros(models.NUM_COEFFICIENTS, bool)
  appearance[slices['lighting']] = appearance[slices['texture']] = True
  decoder_vars = {'params': variables['params']['decoder']}
  render = jax.jit(lambda c: decoder.apply(decoder_vars, c)['render'])
  texture_weight = {'texture': train.reg_weights(config)['texture']}

  def region_psnr(c):
    r = render(c)
    return float(np.mean([
        metrics.face_region_metrics(np.asarray(images[k]), np.asarray(r.image[k]),
                                    np.asarray(r.alpha[k]))['psnr'] for k in range(len(images))]))

  def photometric(c):
    r = decoder.apply(decoder_vars, c)['render']
    return (losses.photometric_loss(images, r.image, jax.lax.stop_gradient(r.alpha))
            + losses.regularisation_loss(c, texture_weight) / config.loss_weights.photo)

  def fit_appearance(c):
    tx = optax.adam(a.fit_lr)

    @jax.jit
    def step(c, opt_state):
      g = jax.grad(photometric)(c) * appearance  # geometry stays as given
      updates, opt_state = tx.update(g, opt_state, c)
      return optax.apply_updates(c, updates), opt_state

    opt_state = tx.init(c)
    for _ in range(a.fit_steps):
      c, opt_state = step(c, opt_state)
    return c

  with_true_appearance = jnp.where(appearance, truth, pred)
  true_geometry = jnp.where(appearance, 0.0, truth)
  print(f'{a.workdir}: face-region PSNR on {a.num_images} test images')
  print(f'  predictions:                                {region_psnr(pred):6.2f} dB')
  print(f'  predicted geometry + true appearance:       {region_psnr(with_true_appearance):6.2f} dB')
  print(f'  predicted geometry + fitted appearance:     {region_psnr(fit_appearance(pred)):6.2f} dB')
  print(f'  true geometry + fitted appearance:          {region_psnr(fit_appearance(true_geometry)):6.2f} dB')
  print(f'  all true coefficients:                      {region_psnr(truth):6.2f} dB')

  live = int(np.sum(probe_features.max(0) > 0))
  print(f'pooled last-conv features: {live} of {probe_features.shape[1]} units non-zero on 1024 '
        'training images')
  colour = ridge_predict(probe_features, mean_face_colour(probe_train), features)
  target = mean_face_colour(test)
  corr = [np.corrcoef(colour[:, c], target[:, c])[0, 1] for c in range(3)]
  print('ridge probe of the mean face colour (R, G, B): correlation '
        + ' / '.join(f'{x:.2f}' for x in corr))


if __name__ == '__main__':
  main()
