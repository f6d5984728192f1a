"""Fingerprints of a training run, to tell whether two runs (or two machines) computed the same thing.

  python experiments/fingerprint.py --workdir=runs/a [--workdir=runs/b] [--data_dir=~/tensorflow_datasets]

Prints, per workdir, SHA-256 digests (first 16 hex digits) of: the dataset's examples (the TFRecord
files of the workdir's config, each record re-serialised deterministically), the sequence of logged training losses (float64 bits from the event files), the
newest checkpoint's parameters and batch statistics, and the final test metrics; plus what the numbers
can depend on (CPU model and flags count, JAX / jaxlib / TF versions, XLA_FLAGS, thread settings).
With two workdirs it says which digests differ. docs/training.md ("Reproducibility") has the findings.
"""
import argparse
import glob
import hashlib
import json
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from facernet_jax import run_report  # noqa: E402  pylint: disable=g-import-not-at-top


def _digest(chunks):
  h = hashlib.sha256()
  for c in chunks:
    h.update(c)
  return h.hexdigest()[:16]


def cpu_description():
  """CPU model name and the number of its feature flags (XLA:CPU compiles for these)."""
  model, flags = platform.processor() or 'unknown', []
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name') and model in ('unknown', '', platform.machine()):
          model = line.split(':', 1)[1].strip()
        if line.startswith('flags'):
          flags = line.split(':', 1)[1].split()
          break
  except OSError:
    pass
  avx = ','.join(f for f in ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_tile') if f in flags)
  return f'{model} ({os.cpu_count()} logical CPUs; {avx or "no AVX2"})'


def fingerprint(workdir, data_dir=None):
  """{name: digest or value} for one workdir."""
  import jax  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from facernet_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from facernet_jax import train  # pylint: disable=g-import-not-at-top
  config, variables = train.load_for_inference(workdir)
  out = {}
  data_dir = data_dir or config.dataset.data_dir or os.path.expanduser('~/tensorflow_datasets')
  if config.dataset.name == 'synthetic_faces':
    from facernet_jax.data import synthetic_faces  # pylint: disable=g-import-not-at-top
    cfg = synthetic_faces.config_from_dict(input_pipeline.synthetic_dataset_config(config))
    builder = synthetic_faces.SyntheticFaces(config=cfg, data_dir=data_dir)
    files = sorted(glob.glob(os.path.join(builder.data_dir, '*.tfrecord*')))
    # Digest of the records' contents: protobuf serialises the features map in a per-process hash
    # order, so two builds of the same examples differ as files (docs/training.md, Reproducibility).
    records = (tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
               for p in files for r in tf.data.TFRecordDataset(p))
    out['dataset'] = _digest(records) if files else 'not found'
  scalars = run_report.read_scalars(workdir)
  if 'train/loss' in scalars:
    steps, values = scalars['train/loss']
    out['train_losses'] = _digest([steps.astype(np.int64).tobytes(), values.astype(np.float64).tobytes()])
    out['last_logged_loss'] = f'step {int(steps[-1])}: {values[-1]!r}'
  leaves = jax.tree_util.tree_leaves_with_path(variables)
  out['parameters'] = _digest(jax.tree_util.keystr(p).encode() + np.ascontiguousarray(v).tobytes()
                              for p, v in leaves)
  final = os.path.join(workdir, 'final_metrics.json')
  if os.path.isfile(final):
    with open(final) as f:
      test = json.load(f).get('test', {})
    out['test'] = ', '.join(f'{k} {test[k]!r}' for k in ('nme', 'psnr', 'ssim') if k in test)
  import jaxlib  # pylint: disable=g-import-not-at-top
  out['machine'] = cpu_description()
  out['versions'] = f'jax {jax.__version__}, jaxlib {jaxlib.__version__}, tensorflow {tf.__version__}'
  out['env'] = ', '.join(f'{k}={os.environ.get(k, "")!r}' for k in
                         ('XLA_FLAGS', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'TF_NUM_INTRAOP_THREADS'))
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--workdir', action='append', required=True, help='a training workdir (give two to compare)')
  p.add_argument('--data_dir', default=None, help='TFDS data dir of the dataset (default: the config\'s)')
  args = p.parse_args(argv)
  prints = [fingerprint(w, args.data_dir) for w in args.workdir]
  for w, fp in zip(args.workdir, prints):
    print(w)
    for k, v in fp.items():
      print(f'  {k}: {v}')
  if len(prints) == 2:
    keys = [k for k in ('dataset', 'train_losses', 'parameters', 'test') if k in prints[0] or k in prints[1]]
    same = [k for k in keys if prints[0].get(k) == prints[1].get(k)]
    print('identical: ' + (', '.join(same) or 'nothing') + '; different: '
          + (', '.join(k for k in keys if k not in same) or 'nothing'))
  return 0


if __name__ == '__main__':
  sys.exit(main())
