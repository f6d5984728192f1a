"""How fast can a network variant learn the landmarks? A landmark-only proxy of the default run.

Trains FaceRNet (or plain MobileNetV2) on the synthetic faces with Eq 12 (weight 1e4) + Eq 17 only, no
rendering, Adam with warm-up + cosine decay, and prints the test and train NME every 500 steps. It
isolates the regression problem from the photometric terms, so variants can be compared side by side
in a few minutes (docs/training.md, "Learning speed" and "Beyond the budget"):

  python experiments/landmark_proxy.py --steps=1500                       # the default's network
  python experiments/landmark_proxy.py --steps=1500 --coord --lr=1e-2
  python experiments/landmark_proxy.py --steps=1000 --num_train=64        # can it memorise 64 images?
  python experiments/landmark_proxy.py --fit_coefficients --num_train=64  # per-image fitting instead
  python experiments/landmark_proxy.py --steps=1500 --lr=1e-2 --softargmax_head  # + 2D landmark head
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from facernet_jax import losses  # noqa: E402
from facernet_jax import metrics  # noqa: E402
from facernet_jax import models  # noqa: E402
from facernet_jax.data import synthetic_faces  # noqa: E402
from facernet_jax.face_model.synthetic import build_synthetic_model  # noqa: E402
from facernet_jax.forward import FaceDecoder  # noqa: E402
from facernet_jax.models.facernet import output_scale_vector  # noqa: E402
from facernet_jax.models.layers import ConvBN  # noqa: E402

# FaceRNet's RA outputs (16, 8, 4, 2 px at 32 px input) and its decoder output, read by SoftArgmaxHead.
SOFTARGMAX_FEATURES = ('ra1', 'ra2', 'ra3', 'ra4', 'decoder_ra0')
WARMUP_STEPS = 200


def captured_features(state):
  """The SOFTARGMAX_FEATURES outputs from an apply's 'intermediates' collection, in that order."""
  return [state['intermediates'][name]['__call__'][0] for name in SOFTARGMAX_FEATURES]


class SoftArgmaxHead(nn.Module):
  """Beyond the paper, tried here only: 68 heatmaps on a grid x grid map built from the trunk's
  features, soft-argmax to 2D points (trained by their own Eq 12 term), and an MLP from those points
  to an offset added to the 495 coefficients, so the regression sees explicit landmark positions."""
  image_size: int
  output_scales: tuple = ()
  grid: int = 16
  hidden: int = 256

  @nn.compact
  def __call__(self, features, train=False):
    g = self.grid
    y = jnp.concatenate([jax.image.resize(f, (f.shape[0], g, g, f.shape[-1]), 'bilinear')
                         for f in features], axis=-1)
    y = ConvBN(64, 3, name='conv0')(y, train)
    y = ConvBN(64, 3, name='conv1')(y, train)
    logits = nn.Conv(68, (1, 1), name='logits')(y).reshape(y.shape[0], g * g, 68)
    centres = (jnp.arange(g) + 0.5) * (self.image_size / g)  # continuous pixels
    grid_x, grid_y = jnp.meshgrid(centres, centres, indexing='xy')
    grid = jnp.stack([grid_x.ravel(), grid_y.ravel()], axis=-1)  # (g*g, 2)
    points = jnp.einsum('bpk,pd->bkd', jax.nn.softmax(logits, axis=1), grid)  # (B, 68, 2)
    z = (points / self.image_size * 2.0 - 1.0).reshape(points.shape[0], -1)
    z = nn.relu(nn.Dense(self.hidden, name='mlp0')(z))
    z = nn.relu(nn.Dense(self.hidden, name='mlp1')(z))
    offset = nn.Dense(models.NUM_COEFFICIENTS, name='coefficients',
                      kernel_init=nn.initializers.variance_scaling(1e-6, 'fan_in', 'truncated_normal'))(z)
    if self.output_scales:
      offset = offset * output_scale_vector(self.output_scales)
    return points, offset


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--image_size', type=int, default=32)
  p.add_argument('--model_resolution', type=int, default=16)
  p.add_argument('--arch', default='facernet', choices=['facernet', 'mobilenetv2'])
  p.add_argument('--width', type=float, default=0.5)
  p.add_argument('--coord', action='store_true', help='FaceRNet coord_channels')
  p.add_argument('--attention_reduction', type=int, default=2)
  p.add_argument('--steps', type=int, default=1500)
  p.add_argument('--seed', type=int, default=0, help='initialisation and batch order')
  p.add_argument('--batch_size', type=int, default=16)
  p.add_argument('--lr', type=float, default=3e-3)
  p.add_argument('--num_train', type=int, default=4000)
  p.add_argument('--reg_shape', type=float, default=losses.REG_WEIGHTS['shape'])
  p.add_argument('--reg_expression', type=float, default=losses.REG_WEIGHTS['expression'])
  p.add_argument('--output_scale', default='', help='e.g. rotation=0.3,translation=0.05')
  p.add_argument('--softargmax_head', action='store_true',
                 help='FaceRNet + SoftArgmaxHead (2D landmarks, their own Eq 12 term, MLP to coefficients)')
  p.add_argument('--fit_coefficients', action='store_true',
                 help='optimise free per-image coefficients instead of a network (a lower bound)')
  a = p.parse_args()
  if a.steps <= WARMUP_STEPS:
    p.error(f'--steps={a.steps}: must exceed the {WARMUP_STEPS} warm-up steps')
  if a.softargmax_head and a.arch != 'facernet':
    p.error('--softargmax_head needs --arch=facernet')
  print(vars(a), flush=True)

  data_config = synthetic_faces.make_config(image_size=a.image_size, model_resolution=a.model_resolution,
                                            num_train=4000, num_validation=200, num_test=500)
  train = synthetic_faces.generate_examples(data_config, 'train', 0, a.num_train)
  test = synthetic_faces.generate_examples(data_config, 'test', 0, 256)
  decoder = FaceDecoder(build_synthetic_model(a.model_resolution, 0), a.image_size,
                        trainable_bases=False, raster=None)
  dec_vars = decoder.init(jax.random.PRNGKey(1), jnp.zeros((1, models.NUM_COEFFICIENTS)))
  landmarks_of = lambda c: decoder.apply(dec_vars, c)['landmarks']
  schedule = optax.warmup_cosine_decay_schedule(0.0, a.lr, WARMUP_STEPS, a.steps, 0.01 * a.lr)
  tx = optax.adam(schedule)

  def nme(pred, gt):
    return 100.0 * float(metrics.nme_per_image(np.asarray(pred), gt).mean())

  if a.fit_coefficients:
    coefficients = jnp.zeros((a.num_train, models.NUM_COEFFICIENTS))
    gt = jnp.asarray(train['landmarks'])
    loss = lambda c: 1e4 * losses.landmark_loss(landmarks_of(c), gt, None, a.image_size)
    tx = optax.adam(a.lr)  # constant: every image has its own parameters, nothing to anneal
    state = tx.init(coefficients)

    @jax.jit
    def fit_step(c, s):
      g = jax.grad(loss)(c)
      u, s = tx.update(g, s, c)
      return optax.apply_updates(c, u), s

    for step in range(1, a.steps + 1):
      coefficients, state = fit_step(coefficients, state)
      if step in (100, 300, 1000, 2000) or step == a.steps:
        print(f'step {step} train_nme {nme(landmarks_of(coefficients), train["landmarks"]):.2f}')
    return

  kwargs = dict(width=a.width)
  if a.arch == 'facernet':
    kwargs.update(use_multiscale=False, coord_channels=a.coord,
                  attention_reduction=a.attention_reduction)
  scales = dict(kv.split('=') for kv in a.output_scale.split(',') if kv)
  kwargs['output_scales'] = tuple((k, float(v)) for k, v in scales.items())
  net = models.create_model(a.arch, **kwargs)
  head = SoftArgmaxHead(a.image_size, kwargs['output_scales'])
  slices = models.coefficient_slices()
  images = lambda x: jnp.asarray(x, jnp.float32) / 255.0
  capture = lambda module, method: module.name in SOFTARGMAX_FEATURES

  def forward(params, batch_stats, x, train):
    """(coefficients, 2D points or None, new batch statistics)."""
    mutable = ['batch_stats', 'intermediates'] if a.softargmax_head else ['batch_stats']
    c, state = net.apply({'params': params['net'], 'batch_stats': batch_stats['net']}, images(x),
                         train=train, mutable=mutable,
                         capture_intermediates=capture if a.softargmax_head else False)
    new = {'net': state['batch_stats']}
    if not a.softargmax_head:
      return c, None, new
    (points, offset), head_state = head.apply(
        {'params': params['head'], 'batch_stats': batch_stats['head']}, captured_features(state),
        train=train,
        mutable=['batch_stats'])
    new['head'] = head_state['batch_stats']
    return c + offset, points, new

  x0 = images(train['image'][:2])
  variables = net.init(jax.random.PRNGKey(a.seed), x0)
  params, batch_stats = {'net': variables['params']}, {'net': variables['batch_stats']}
  if a.softargmax_head:
    _, state = net.apply(variables, x0, mutable=['intermediates'], capture_intermediates=capture)
    head_vars = head.init(jax.random.PRNGKey(a.seed + 2), captured_features(state))
    params['head'], batch_stats['head'] = head_vars['params'], head_vars['batch_stats']
  print('parameters', models.count_params(params), flush=True)
  opt_state = tx.init(params)

  def loss_fn(params, batch_stats, x, gt):
    c, points, new = forward(params, batch_stats, x, train=True)
    loss = 1e4 * losses.landmark_loss(landmarks_of(c), gt, None, a.image_size)
    if points is not None:
      loss += 1e4 * losses.landmark_loss(points, gt, None, a.image_size)
    reg = losses.regularisation_loss(c, {'shape': a.reg_shape, 'expression': a.reg_expression})
    return loss + reg, new

  @jax.jit
  def train_step(params, batch_stats, opt_state, x, gt):
    (loss, batch_stats), g = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, x, gt)
    u, opt_state = tx.update(g, opt_state, params)
    return optax.apply_updates(params, u), batch_stats, opt_state, loss

  @jax.jit
  def predict(params, batch_stats, x):
    c, points, _ = forward(params, batch_stats, x, train=False)
    return landmarks_of(c), c, (points if points is not None else landmarks_of(c))

  def split_predictions(split):
    """(landmarks, coefficients, 2D head points) for the first 256 images of a split, in batches of
    64; without --softargmax_head the points are the mesh landmarks."""
    n = min(256, len(split['image']))
    pred = [predict(params, batch_stats, split['image'][i:i + 64]) for i in range(0, n, 64)]
    return tuple(np.concatenate([p[k] for p in pred]) for k in range(3))

  def pose_errors(split, c):
    """RMS error of the predicted pitch / yaw / roll (degrees) and translation x / y / z."""
    truth = split['coefficients'][:len(c)]
    rms = lambda name: np.sqrt(np.mean((c[:, slices[name]] - truth[:, slices[name]]) ** 2, axis=0))
    return (' rot_rmse_deg ' + ' '.join(f'{v:.1f}' for v in np.rad2deg(rms('rotation')))
            + ' trans_rmse ' + ' '.join(f'{v:.3f}' for v in rms('translation')))

  rng = np.random.default_rng(a.seed)
  start = time.time()
  for step in range(1, a.steps + 1):
    idx = rng.integers(0, a.num_train, a.batch_size)
    params, batch_stats, opt_state, loss = train_step(
        params, batch_stats, opt_state, train['image'][idx], train['landmarks'][idx])
    if step % 500 == 0 or step == a.steps:
      test_landmarks, test_coefficients, test_points = split_predictions(test)
      train_landmarks, _, _ = split_predictions(train)
      n = len(test_landmarks)
      points = (f' test_nme_2d_head {nme(test_points, test["landmarks"][:n]):.2f}'
                if a.softargmax_head else '')
      print(f'step {step} loss {float(loss):.1f} '
            f'test_nme {nme(test_landmarks, test["landmarks"][:n]):.2f}{points} '
            f'train_nme {nme(train_landmarks, train["landmarks"][:len(train_landmarks)]):.2f}'
            f'{pose_errors(test, test_coefficients)} wall {time.time() - start:.0f}s', flush=True)


if __name__ == '__main__':
  main()
