"""Training curves of a workdir: reads its TensorBoard events, writes CSV + PNG.

  python experiments/train_curves.py --workdir=runs/default --out=docs/figures/default_curves

Writes `<out>.csv` (step, wall seconds since the first event, tag, value) and `<out>.png`
(train loss, eval NME and PSNR against step and wall-clock minutes).
"""
import argparse
import csv
import os

import numpy as np


def read_scalars(workdir):
  """{tag: [(step, wall_time, value)]} from every events file under `workdir`."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(
      workdir, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
  acc.Reload()
  out = {}
  for tag in acc.Tags().get('tensors', []):
    values = [(e.step, e.wall_time, np.asarray(_tensor_value(e.tensor_proto)))
              for e in acc.Tensors(tag)]
    if values and values[0][2].ndim == 0:  # Scalars only (images are tensors too).
      out[tag] = [(step, wall, float(v)) for step, wall, v in values]
  for tag in acc.Tags().get('scalars', []):
    out.setdefault(tag, [(e.step, e.wall_time, float(e.value)) for e in acc.Scalars(tag)])
  return out


def _tensor_value(proto):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.make_ndarray(proto)


def write_csv(scalars, path):
  t0 = min(v[1] for series in scalars.values() for v in series)
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['step', 'seconds', 'tag', 'value'])
    for tag in sorted(scalars):
      for step, wall, value in scalars[tag]:
        w.writerow([step, f'{wall - t0:.1f}', tag, f'{value:.6g}'])
  return t0


def plot(scalars, t0, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = [('train/loss', 'train loss', True), ('eval/nme', 'eval NME (%)', False),
            ('eval/psnr', 'eval PSNR (dB)', False)]
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
  for ax, (tag, title, log) in zip(axes, panels):
    series = scalars.get(tag, [])
    if not series:
      ax.set_title(f'{title}: no data')
      continue
    minutes = [(w - t0) / 60 for _, w, _ in series]
    ax.plot(minutes, [v for *_, v in series], marker='.' if not log else None)
    ax.set_xlabel('wall-clock minutes')
    ax.set_title(title)
    if log:
      ax.set_yscale('log')
    ax.grid(alpha=0.3)
  for ax, target, tag in ((axes[1], 3.5, 'eval/nme'), (axes[2], 25.0, 'eval/psnr')):
    if scalars.get(tag):
      ax.axhline(target, color='r', ls='--', lw=1, label=f'target {target}')
      ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--out', required=True, help='output path without extension')
  args = parser.parse_args()
  scalars = read_scalars(args.workdir)
  if not scalars:
    raise SystemExit(f'no scalar events under {args.workdir}')
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  t0 = write_csv(scalars, args.out + '.csv')
  plot(scalars, t0, args.out + '.png')
  for tag in ('eval/nme', 'eval/psnr', 'test/nme', 'test/psnr'):
    if scalars.get(tag):
      step, wall, value = scalars[tag][-1]
      print(f'{tag}: {value:.3f} at step {step} ({(wall - t0) / 60:.1f} min)')


if __name__ == '__main__':
  main()
