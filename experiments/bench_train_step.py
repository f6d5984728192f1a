"""Step time of the network alone: jitted forward + backward + Adam, median over repeats.

Compares FaceRNet variants side by side in one process on one random batch (no face model, no
renderer; the loss is the mean square of the 495 outputs), so the ratios are what matter:

  python experiments/bench_train_step.py
  python experiments/bench_train_step.py --variants width=0.5 width=0.5,size=64

Each variant: FaceRNet(use_multiscale=False, **fields) at `size` px (default 32) and batch `bs`
(default 16); 5 repeats of 10 steps after a compile step.
"""
import argparse
import ast
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from facernet_jax import models  # noqa: E402

DEFAULT_VARIANTS = (
    'width=0.5', 'width=0.5,bs=64', 'width=1.0', 'width=0.5,attention_reduction=1',
    'width=0.5,size=64', 'width=0.5,stem_stride=1', 'width=0.5,coord_channels=True')


def parse_variant(text):
  """'width=0.5,size=64' -> {'width': 0.5, 'size': 64} (values are Python literals)."""
  return {k.strip(): ast.literal_eval(v.strip())
          for k, v in (item.split('=', 1) for item in text.split(',') if item.strip())}


def median_step_seconds(fields, size, batch_size, repeats=5, steps=10):
  net = models.create_model('facernet', use_multiscale=False, **fields)
  x = jnp.asarray(np.random.default_rng(0).random((batch_size, size, size, 3)), jnp.float32)
  variables = net.init(jax.random.PRNGKey(0), x[:1])
  tx = optax.adam(1e-3)

  def loss_fn(params, batch_stats):
    out, new = net.apply({'params': params, 'batch_stats': batch_stats}, x, train=True,
                         mutable=['batch_stats'])
    return jnp.mean(out ** 2), new['batch_stats']

  @jax.jit
  def step(params, batch_stats, opt_state):
    (_, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state

  state = (variables['params'], variables['batch_stats'], tx.init(variables['params']))
  state = jax.block_until_ready(step(*state))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      state = step(*state)
    jax.block_until_ready(state)
    times.append((time.perf_counter() - start) / steps)
  n = sum(a.size for a in jax.tree_util.tree_leaves(variables['params']))
  return float(np.median(times)), n


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--variants', nargs='+', default=list(DEFAULT_VARIANTS),
                 help='comma-separated FaceRNet fields (name=value), plus size= and bs=')
  a = p.parse_args()
  for text in a.variants:
    fields = parse_variant(text)
    size, batch_size = fields.pop('size', 32), fields.pop('bs', 16)
    seconds, n = median_step_seconds(fields, size, batch_size)
    print(f'{text:35s} {size:3d} px  batch {batch_size:3d}: {1000 * seconds:7.1f} ms/step  '
          f'{batch_size / seconds:6.0f} images/s  {n / 1e6:.2f} M params', flush=True)


if __name__ == '__main__':
  main()
