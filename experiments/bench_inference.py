"""Inference speed side by side: JAX jit, ONNX Runtime and LiteRT, median milliseconds per call.

For each network (paper, default, mobilenetv2, ...) and size, with 1 thread and with all threads, batch
1 and 32: the jitted JAX eval forward pass (config.model.depthwise 'auto', i.e. the shifted depthwise
convs on CPU; `--backends jax-conv` adds the grouped-conv form), the exported ONNX file in onnxruntime
and the exported TFLite file in LiteRT (facernet_jax.deploy). Every setting runs in its own process,
since XLA reads its thread flags at start-up; 1 thread = XLA's single-thread Eigen flags + `taskset -c
0`, 1 ORT / LiteRT thread. Same random weights (with non-trivial BatchNorm statistics) for every
backend; timings exclude compilation / session creation; each JAX call waits for its result. The
files are exported once by the parent process. On a shared machine read medians and compare within
a run; the script prints `uptime` before and after.

  python experiments/bench_inference.py [--models paper default mobilenetv2] [--sizes 64 120]
      [--batches 1 32] [--backends jax onnx tflite] [--settings cpu-1-thread cpu-all-threads]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
sys.path.insert(0, REPO)
ONE_THREAD_FLAGS = ('--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1 '
                    'inter_op_parallelism_threads=1')
BACKENDS = ('jax', 'jax-conv', 'onnx', 'tflite')


def model_config(name, size):
  """A ConfigDict with .model and .image_size for a benchmark network name."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from facernet_jax.configs import default, paper  # pylint: disable=g-import-not-at-top
  if name == 'paper':
    config = paper.get_config()
  else:
    config = default.get_config()
    extra = {'mobilenetv2': {'name': 'mobilenetv2'}, 'resnet50': {'name': 'resnet50'},
             'densenet121': {'name': 'densenet121'}, 'facernet': {'name': 'facernet'},
             'facernet-noatt': {'name': 'facernet', 'use_attention': False},
             'facernet-noms': {'name': 'facernet', 'use_multiscale': False}}
    if name != 'default':
      config.model = ml_collections.ConfigDict(extra[name])
  config.image_size = size
  return config


def random_variables(config, seed=0):
  """Deterministic random weights and BatchNorm statistics, filled on the host (no jitted init)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from facernet_jax.deploy import graph  # pylint: disable=g-import-not-at-top
  net = graph.network_from_config(config)
  x = jnp.zeros((1, config.image_size, config.image_size, 3))
  shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), x))
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if 'kernel' in name:
      return rng.normal(0, np.sqrt(1.0 / np.prod(s.shape[:-1])), s.shape).astype(np.float32)
    if "'var'" in name or "'scale'" in name:
      return rng.uniform(0.5, 1.5, s.shape).astype(np.float32)
    return rng.normal(0, 0.1, s.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def export_all(args, folder):
  """Exports each (model, size) once: dynamic-batch ONNX, and one TFLite file per batch."""
  from facernet_jax import deploy  # pylint: disable=g-import-not-at-top
  for m in args.models:
    for size in args.sizes:
      config = model_config(m, size)
      variables = random_variables(config)
      if 'onnx' in args.backends:
        deploy.export_onnx(config, variables, os.path.join(folder, f'{m}_{size}.onnx'))
      if 'tflite' in args.backends:  # batch 1 only: a phone runs one face at a time
        deploy.export_tflite(config, variables, os.path.join(folder, f'{m}_{size}_b1.tflite'), batch=1)
      print(f'exported {m} {size} px', file=sys.stderr, flush=True)


def timed(call, min_time, max_reps=300):
  """(median, p10, p90, n) ms of call() after a warm-up call, >= 3 calls and >= min_time seconds."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  call()
  times, start = [], time.perf_counter()
  while len(times) < max_reps and (len(times) < 3 or time.perf_counter() - start < min_time):
    t = time.perf_counter()
    call()
    times.append(1e3 * (time.perf_counter() - t))
  return float(np.median(times)), float(np.percentile(times, 10)), float(np.percentile(times, 90)), len(times)


def child(args):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from facernet_jax import deploy  # pylint: disable=g-import-not-at-top
  from facernet_jax import models  # pylint: disable=g-import-not-at-top
  threads = 1 if args.child == 'cpu-1-thread' else os.cpu_count()
  rng = np.random.default_rng(0)
  for m in args.models:
    for size in args.sizes:
      config = model_config(m, size)
      variables = random_variables(config)
      runners = {}
      for backend in args.backends:
        if backend.startswith('jax'):
          kwargs = {k: v for k, v in config.model.to_dict().items() if k != 'name'}
          if 'output_scales' in kwargs:
            kwargs['output_scales'] = tuple(sorted(kwargs['output_scales'].items()))
          kwargs['depthwise'] = 'conv' if backend == 'jax-conv' else 'auto'
          net = models.create_model(config.model.name, **kwargs)
          fwd = jax.jit(lambda v, x, net=net: net.apply(v, x, train=False))
          runners[backend] = lambda x, fwd=fwd: fwd(variables, x).block_until_ready()
        elif backend == 'onnx':
          runner = deploy.OnnxRunner(os.path.join(args.folder, f'{m}_{size}.onnx'), threads=threads)
          runners[backend] = runner
      for batch in args.batches:
        x = rng.random((batch, size, size, 3), dtype=np.float32)
        if 'tflite' in args.backends and batch == 1:
          runners['tflite'] = deploy.TFLiteRunner(os.path.join(args.folder, f'{m}_{size}_b1.tflite'),
                                                  threads=threads)
        for backend in args.backends:
          if backend == 'tflite' and batch != 1:
            continue
          run = runners[backend]
          t0 = time.perf_counter()
          run(x)
          first_s = time.perf_counter() - t0
          med, p10, p90, reps = timed(lambda: run(x), args.min_time)
          print(json.dumps(dict(model=m, backend=backend, size=size, batch=batch, median_ms=med, p10_ms=p10,
                                p90_ms=p90, reps=reps, first_call_s=first_s, threads=threads)), flush=True)


def run_child(setting, args, folder):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  if setting == 'cpu-1-thread':
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + ONE_THREAD_FLAGS).strip()
  cmd = [sys.executable, os.path.abspath(__file__), '--child', setting, '--folder', folder,
         '--sizes', *map(str, args.sizes), '--batches', *map(str, args.batches), '--models', *args.models,
         '--backends', *args.backends, '--min-time', str(args.min_time)]
  from shutil import which  # pylint: disable=g-import-not-at-top
  pre = ['taskset', '-c', '0'] if setting == 'cpu-1-thread' and which('taskset') else []
  rows = []
  with subprocess.Popen(pre + cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
    for line in proc.stdout:  # printed as they come, so a stopped run keeps its rows
      if line.startswith('{'):
        rows.append(dict(json.loads(line), setting=setting))
        print(line.strip(), flush=True)
    err = proc.stderr.read()
  if proc.returncode != 0:
    print(err[-3000:], file=sys.stderr)
  return rows


def uptime():
  return subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--models', nargs='+', default=['paper', 'default', 'mobilenetv2'],
                      choices=['paper', 'default', 'mobilenetv2', 'facernet', 'facernet-noatt', 'facernet-noms',
                               'resnet50', 'densenet121'])
  parser.add_argument('--sizes', type=int, nargs='+', default=[64, 120])
  parser.add_argument('--batches', type=int, nargs='+', default=[1, 32])
  parser.add_argument('--backends', nargs='+', default=['jax', 'onnx', 'tflite'], choices=BACKENDS)
  parser.add_argument('--settings', nargs='+', default=['cpu-1-thread', 'cpu-all-threads'],
                      choices=['cpu-1-thread', 'cpu-all-threads'])
  parser.add_argument('--min-time', type=float, default=1.0, help='seconds of timed calls per case')
  parser.add_argument('--json', default=None, help='also write the rows here')
  parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--folder', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    child(args)
    return
  print(f'uptime before: {uptime()}', flush=True)
  rows = []
  with tempfile.TemporaryDirectory() as folder:
    if {'onnx', 'tflite'} & set(args.backends):
      export_all(args, folder)
    for setting in args.settings:
      print(f'== {setting} (os.cpu_count()={os.cpu_count()})', flush=True)
      rows += run_child(setting, args, folder)
  print(f'uptime after: {uptime()}', flush=True)
  print('\n| model | px | batch | threads | ' + ' | '.join(f'{b} ms' for b in args.backends) +
        ' | ' + ' | '.join(f'jax / {b}' for b in args.backends if not b.startswith('jax')) + ' |')
  print('| --- ' * (4 + len(args.backends) + sum(not b.startswith('jax') for b in args.backends)) + '|')
  cases = {}
  for r in rows:
    cases.setdefault((r['model'], r['size'], r['batch'], r['threads']), {})[r['backend']] = r['median_ms']
  for (m, size, batch, threads), t in cases.items():
    cells = [f"{t[b]:.2f}" if b in t else '-' for b in args.backends]
    ratios = [f"{t['jax'] / t[b]:.1f}x" if 'jax' in t and b in t else '-'
              for b in args.backends if not b.startswith('jax')]
    print(f'| {m} | {size} | {batch} | {threads} | ' + ' | '.join(cells + ratios) + ' |')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
