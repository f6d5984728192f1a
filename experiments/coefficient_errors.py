"""Which coefficients has a trained default run learnt? Errors against the synthetic data's truth.

  python experiments/coefficient_errors.py --workdir=runs/default [--num_images=256]

For a workdir trained on the synthetic faces (whose examples carry the true Eq 10 coefficients), on
the first images of the test split it prints:
* per coefficient (pose, first lighting and texture entries): the correlation of prediction and truth
  and the RMS error next to the truth's standard deviation (an RMS error equal to the standard
  deviation means nothing was learnt);
* the spread of the predicted shape, expression and texture coefficients next to the truth's;
* NME with the predictions, and with the true rotation / translation / shape + expression put in,
  which shows where the landmark error comes from;
* a linear probe: ridge regression from the network's pooled last-conv features (fitted on 1024
  training images) to the same coefficients, i.e. whether the features hold the information at all.
docs/training.md quotes its output.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from facernet_jax import input_pipeline  # noqa: E402
from facernet_jax import metrics  # noqa: E402
from facernet_jax import models  # noqa: E402
from facernet_jax import train  # noqa: E402
from facernet_jax.data import synthetic_faces  # noqa: E402

REPORTED = (('rotation', ('pitch', 'yaw', 'roll')), ('translation', ('tx', 'ty', 'tz')),
            ('lighting', ('ambient R', 'SH1 R', 'SH2 R')), ('texture', ('texture 0', 'texture 1')))


def predict(variables, network, images):
  """(coefficients, pooled last-conv features) of uint8 images, in batches of 64."""
  @jax.jit
  def run(x):
    out, state = network.apply(
        {'params': variables['params']['network'], 'batch_stats': variables['batch_stats']},
        train.preprocess({'image': x})['image'], train=False, capture_intermediates=True)
    return out, jnp.mean(state['intermediates']['last_conv']['__call__'][0], axis=(1, 2))
  parts = [run(jnp.asarray(images[i:i + 64])) for i in range(0, len(images), 64)]
  return (np.concatenate([np.asarray(p[0]) for p in parts]),
          np.concatenate([np.asarray(p[1]) for p in parts]))


def ridge_predict(train_x, train_y, test_x, lam=1.0):
  """Ridge regression (with a bias) fitted on (train_x, train_y), evaluated on test_x."""
  add_bias = lambda x: np.concatenate([x, np.ones((len(x), 1))], axis=1)  # noqa: E731
  a = add_bias(train_x.astype(np.float64))
  w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ train_y)
  return add_bias(test_x.astype(np.float64)) @ w


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--num_images', type=int, default=256)
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
  truth = test['coefficients']
  slices = models.coefficient_slices()

  print(f'{a.workdir}: {a.num_images} test images')
  print(f'{"coefficient":12s} {"corr":>6s} {"rms err":>8s} {"true std":>8s} {"probe corr":>10s}')
  for group, names in REPORTED:
    for k, name in enumerate(names):
      i = slices[group].start + k
      probe = ridge_predict(probe_features, probe_train['coefficients'][:, i], features)
      print(f'{name:12s} {np.corrcoef(pred[:, i], truth[:, i])[0, 1]:6.2f} '
            f'{np.sqrt(np.mean((pred[:, i] - truth[:, i]) ** 2)):8.3f} {truth[:, i].std():8.3f} '
            f'{np.corrcoef(probe, truth[:, i])[0, 1]:10.2f}')

  for group in ('shape', 'expression', 'texture'):
    print(f'{group}: spread of the predictions {pred[:, slices[group]].std():.3f}, '
          f'of the truth {truth[:, slices[group]].std():.3f}')

  decode = jax.jit(lambda c: decoder.apply({'params': variables['params']['decoder']}, c))

  def nme(c):
    return 100.0 * float(metrics.nme_per_image(np.asarray(decode(jnp.asarray(c))['landmarks']),
                                               test['landmarks']).mean())

  print(f'NME, predictions: {nme(pred):.2f} %')
  for groups in (('rotation',), ('translation',), ('rotation', 'translation'),
                 ('shape', 'expression')):
    c = pred.copy()
    for g in groups:
      c[:, slices[g]] = truth[:, slices[g]]
    print(f'NME, true {" + ".join(groups)}: {nme(c):.2f} %')
  yaw_pred, yaw_true = np.rad2deg(pred[:, slices['rotation']][:, 1]), test['yaw']
  for low in (0, 30, 60):
    m = (np.abs(yaw_true) >= low) & (np.abs(yaw_true) < low + 30)
    print(f'|yaw| {low}-{low + 30}: mean |predicted yaw| {np.abs(yaw_pred[m]).mean():5.1f} deg '
          f'(true {np.abs(yaw_true[m]).mean():5.1f}, {m.sum()} images)')


if __name__ == '__main__':
  main()
