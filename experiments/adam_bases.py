"""Bare optax Adam on a tensor the size of the paper's FC_shape + FC_texture, on this machine.

  python experiments/adam_bases.py

The paper config trains the 3DMM layer's bases (2 x 199 x 107,163 float32, 170 MB); this times one
jitted, donated `optax.adam(1e-3)` update + `optax.apply_updates` of just those two leaves (median of
5 calls), so that the optimiser row of `train_throughput.py --breakdown` can be read against the
floor of the memory traffic (parameters, gradient and two moments read, three written: 1.19 GB).
"""
import json
import time

import jax
import jax.numpy as jnp
import optax

SHAPE = (199, 3 * 35721)  # components x (3 x vertices) of the BFM-size synthetic model


def main():
  params = {'shape': jnp.zeros(SHAPE), 'texture': jnp.zeros(SHAPE)}
  grads = jax.tree_util.tree_map(lambda x: jnp.full_like(x, 1e-3), params)
  tx = optax.adam(1e-3)

  def update(p, s, g):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  step = jax.jit(update, donate_argnums=(0, 1))
  p, s = step(params, tx.init(params), grads)
  jax.block_until_ready(p)
  times = []
  for _ in range(5):
    t0 = time.perf_counter()
    p, s = step(p, s, grads)
    jax.block_until_ready(p)
    times.append(time.perf_counter() - t0)
  n = 2 * SHAPE[0] * SHAPE[1]
  ms = 1e3 * sorted(times)[2]
  print(json.dumps({'parameters_M': round(n / 1e6, 1), 'adam_ms': round(ms, 1),
                    'traffic_GB': round(7 * 4 * n / 1e9, 2),
                    'GB_per_s': round(7 * 4 * n / 1e9 / (ms / 1e3), 1)}))


if __name__ == '__main__':
  main()
