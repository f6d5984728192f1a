"""Inference speed: jitted eval-mode forward pass, median milliseconds per call.

Batch 1 and 32 at 64 / 120 / 224 px, on CPU with one thread and with all threads (each setting
runs in its own process, since XLA reads its thread flags at start-up), and on a GPU when JAX
sees one. Timings exclude compilation; every call waits for its result (block_until_ready).
On a machine shared with other jobs the numbers are noisy: read medians, compare within a run.

  python experiments/bench_inference.py [--models facernet mobilenetv2] [--sizes 64 120 224]
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
ONE_THREAD_FLAGS = ('--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1 '
                    'inter_op_parallelism_threads=1')


def time_model(name, kwargs, sizes, batches, min_time=1.0, max_reps=200):
  """Returns rows {model, size, batch, median_ms, p10_ms, p90_ms, reps, compile_s} in this process."""
  sys.path.insert(0, REPO)
  import jax
  import jax.numpy as jnp
  import numpy as np
  from facernet_jax.models import create_model

  model = create_model(name, **kwargs)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  rng = np.random.default_rng(0)
  # Random variables filled on the host: speed does not depend on their values.
  variables = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.05, s.shape), s.dtype), shapes)
  fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
  rows = []
  for size in sizes:
    for batch in batches:
      x = jnp.asarray(rng.uniform(size=(batch, size, size, 3)), jnp.float32)
      t0 = time.perf_counter()
      fwd(variables, x).block_until_ready()
      compile_s = time.perf_counter() - t0
      for _ in range(3):
        fwd(variables, x).block_until_ready()
      times, start = [], time.perf_counter()
      while len(times) < max_reps and (len(times) < 5 or time.perf_counter() - start < min_time):
        t = time.perf_counter()
        fwd(variables, x).block_until_ready()
        times.append(1e3 * (time.perf_counter() - t))
      rows.append(dict(model=name, kwargs=str(kwargs), size=size, batch=batch,
                       median_ms=float(np.median(times)), p10_ms=float(np.percentile(times, 10)),
                       p90_ms=float(np.percentile(times, 90)), reps=len(times),
                       compile_s=compile_s, backend=jax.default_backend(),
                       devices=str(jax.devices()[0])))
      print(json.dumps(rows[-1]), flush=True)
  return rows


def run_child(setting, args):
  env = dict(os.environ)
  if setting == 'gpu':
    env.pop('JAX_PLATFORMS', None)
  else:
    env['JAX_PLATFORMS'] = 'cpu'
    if setting == 'cpu-1-thread':
      env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + ONE_THREAD_FLAGS).strip()
  cmd = [sys.executable, os.path.abspath(__file__), '--child', setting,
         '--sizes', *map(str, args.sizes), '--batches', *map(str, args.batches),
         '--models', *args.models, '--min-time', str(args.min_time),
         '--depthwise', *args.depthwise]
  pre = ['taskset', '-c', '0'] if setting == 'cpu-1-thread' and _has_taskset() else []
  out = subprocess.run(pre + cmd, env=env, capture_output=True, text=True)
  if out.returncode != 0:
    print(out.stderr[-2000:], file=sys.stderr)
  rows = [json.loads(l) for l in out.stdout.splitlines() if l.startswith('{')]
  for r in rows:
    r['setting'] = setting
  return rows


def _has_taskset():
  from shutil import which
  return which('taskset') is not None


def _gpu_available():
  probe = subprocess.run([sys.executable, '-c', 'import jax; print(jax.default_backend())'],
                         env={k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'},
                         capture_output=True, text=True)
  return probe.stdout.strip() in ('gpu', 'cuda', 'rocm')


MODEL_KWARGS = {
    'facernet': ('facernet', {}),
    'facernet-noatt': ('facernet', {'use_attention': False}),
    'facernet-noms': ('facernet', {'use_multiscale': False}),
    'mobilenetv2': ('mobilenetv2', {}),
    'resnet50': ('resnet50', {}),
    'densenet121': ('densenet121', {}),
}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--models', nargs='+', default=['facernet'], choices=list(MODEL_KWARGS))
  parser.add_argument('--sizes', type=int, nargs='+', default=[64, 120, 224])
  parser.add_argument('--batches', type=int, nargs='+', default=[1, 32])
  parser.add_argument('--settings', nargs='+', default=['cpu-1-thread', 'cpu-all-threads', 'gpu'])
  parser.add_argument('--min-time', type=float, default=1.0, help='seconds of timed calls per case')
  parser.add_argument('--depthwise', nargs='+', default=['auto'], choices=['auto', 'conv', 'shifted'],
                      help='depthwise conv implementations to time (config.model.depthwise)')
  parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--json', default=None, help='also write the rows here')
  args = parser.parse_args(argv)

  if args.child:
    for m in args.models:
      name, kw = MODEL_KWARGS[m]
      for depthwise in args.depthwise:
        extra = {} if name in ('resnet50', 'densenet121') else {'depthwise': depthwise}
        time_model(name, dict(kw, **extra), args.sizes, args.batches, args.min_time)
    return

  rows = []
  for setting in args.settings:
    if setting == 'gpu' and not _gpu_available():
      print('gpu: no GPU visible to JAX on this machine; skipped', flush=True)
      continue
    print(f'== {setting} (os.cpu_count()={os.cpu_count()})', flush=True)
    rows += run_child(setting, args)
  print('\n| model | setting | px | batch | median ms | p10-p90 ms | ms / image | compile s |')
  print('| --- | --- | --- | --- | --- | --- | --- | --- |')
  for r in rows:
    print(f"| {r['model']} {r['kwargs'] if r['kwargs'] != '{}' else ''} | {r['setting']} | {r['size']} "
          f"| {r['batch']} | {r['median_ms']:.2f} | {r['p10_ms']:.2f}-{r['p90_ms']:.2f} "
          f"| {r['median_ms'] / r['batch']:.2f} | {r['compile_s']:.1f} |")
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
