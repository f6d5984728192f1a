"""Benchmarks of Sec 4.2 and the standalone NME protocol tool.

  python -m facernet_jax.evaluate nme --pred PRED.npy --gt GT.npy [--yaw YAW.npy] [--csv F] [--json F] [--ced F.png]
      scores any method's landmarks under one protocol (Eq 18, 3DDFA's yaw bins).
  python -m facernet_jax.evaluate --workdir=DIR [--config=FILE.py] [--out=DIR] [--benchmarks=...]
      runs the benchmarks on a trained model (see docs/evaluation.md).
"""
import argparse
import csv
import io
import os
import sys

import numpy as np

from facernet_jax import metrics


class InputError(ValueError):
  """A user-facing input problem; main() prints it and exits with status 2."""


# ----------------------------------------------------------------------------- the `nme` protocol tool

def _check_npy_magic(path, what):
  with open(path, 'rb') as f:
    head = f.read(6)
  if head != b'\x93NUMPY':
    raise InputError(f'{what} file {path!r} is not a readable .npy array (no NumPy header); '
                     f'save it with np.save')


def load_landmark_array(path, what='landmarks'):
  """Loads (n, K, 2|3) or 3DDFA's (n, 2|3, K) (or a single (K, 2)) landmarks from .npy, returns (n, K, 2).

  No pickles (allow_pickle=False). Errors name the file, the shape and the fix.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(f'{what} file {path!r} does not exist')
  _check_npy_magic(path, what)
  try:
    a = np.load(path, allow_pickle=False)
  except ValueError as e:
    raise InputError(f'{what} file {path!r} holds Python objects (a pickle); save a plain float array with '
                     f'np.save(path, np.asarray(x, np.float32)) ({e})') from None
  except Exception as e:  # pylint: disable=broad-except
    raise InputError(f'{what} file {path!r} is not a readable .npy array: {e}') from None
  if not isinstance(a, np.ndarray) or a.dtype.kind not in 'fiu':
    raise InputError(f'{what} file {path!r} has dtype {getattr(a, "dtype", type(a))}; expected a numeric array')
  if a.ndim == 2:
    a = a[None]
  if a.ndim != 3:
    raise InputError(f'{what} file {path!r} has shape {a.shape}; expected (n, 68, 2), (n, 68, 3), '
                     f'or 3DDFA\'s (n, 2, 68) / (n, 3, 68)')
  coord_last = a.shape[2] in (2, 3)
  coord_mid = a.shape[1] in (2, 3)
  if coord_last and coord_mid:
    raise InputError(f'{what} file {path!r} has ambiguous shape {a.shape}: cannot tell points from '
                     f'coordinates; save it as (n, K, 2) with K > 3')
  if coord_mid:
    a = np.swapaxes(a, 1, 2)  # 3DDFA layout (n, 2|3, K) -> (n, K, 2|3)
  elif not coord_last:
    raise InputError(f'{what} file {path!r} has shape {a.shape}; expected (n, 68, 2), (n, 68, 3), '
                     f'or 3DDFA\'s (n, 2, 68) / (n, 3, 68)')
  a = a[..., :2].astype(np.float64)
  if not np.all(np.isfinite(a)):
    bad = int((~np.isfinite(a)).any(axis=(1, 2)).sum())
    raise InputError(f'{what} file {path!r}: {bad} image(s) have NaN/inf coordinates; '
                     f'remove them from both files or fill them in')
  return a


def load_yaw(path, n):
  """Loads n yaw angles in degrees from .npy (any shape with n elements)."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(f'yaw file {path!r} does not exist')
  _check_npy_magic(path, 'yaw')
  try:
    y = np.load(path, allow_pickle=False)
  except Exception as e:  # pylint: disable=broad-except
    raise InputError(f'yaw file {path!r} is not a readable numeric .npy array: {e}') from None
  if y.dtype.kind not in 'fiu':
    raise InputError(f'yaw file {path!r} has dtype {y.dtype}; expected numbers (degrees)')
  y = np.asarray(y, np.float64).reshape(-1)
  if y.size != n:
    raise InputError(f'yaw file {path!r} has {y.size} values (shape {np.shape(y)}) but there are {n} images; '
                     f'give one yaw angle in degrees per image, in the same order')
  if np.all(np.abs(y) <= np.pi + 1e-6) and np.abs(y).max() > 0.1 and y.size > 10:
    print(f'warning: yaw values in {path!r} are all within +-pi; they must be degrees, not radians',
          file=sys.stderr)
  return y


def score_landmarks(pred, gt, yaw=None, pred_shift=0.0):
  """Per-image NME and the yaw-bin table for arrays already loaded as (n, K, 2)."""
  if pred.shape != gt.shape:
    raise InputError(f'prediction shape {pred.shape} and ground-truth shape {gt.shape} differ '
                     f'(after converting to (n, K, 2)); both need the same images and points, in order')
  degenerate = metrics.landmark_box_size(gt) <= 0
  if degenerate.any():
    raise InputError(f'{int(degenerate.sum())} ground-truth landmark boxes have zero area '
                     f'(first: image {int(np.argmax(degenerate))}); the NME is undefined for them')
  nme = metrics.nme_per_image(pred + pred_shift, gt)
  return nme, metrics.nme_table(nme, yaw)


def per_image_csv(nme, yaw=None):
  """CSV text: index, nme (fraction), nme_percent, yaw, yaw_bin."""
  buf = io.StringIO()
  w = csv.writer(buf)
  w.writerow(['index', 'nme', 'nme_percent', 'yaw_degrees', 'yaw_bin'])
  bins = None if yaw is None else metrics.yaw_bin_index(yaw)
  for i, e in enumerate(nme):
    w.writerow([i, f'{e:.8f}', f'{100 * e:.6f}',
                '' if yaw is None else f'{yaw[i]:.4f}',
                '' if yaw is None else metrics.YAW_BIN_NAMES[int(bins[i])]])
  return buf.getvalue()


def nme_main(argv):
  """`nme` subcommand: returns the exit status."""
  p = argparse.ArgumentParser(
      prog='python -m facernet_jax.evaluate nme',
      description='NME (Eq 18) of landmark predictions, normalised by sqrt(w*h) of the ground-truth '
                  'landmark box, by |yaw| bin [0,30], (30,60], (60,90] (3DDFA protocol: >90 counts as III).')
  p.add_argument('--pred', required=True, help='.npy predictions: (n,68,2), (n,68,3), (n,2,68) or (n,3,68)')
  p.add_argument('--gt', required=True, help='.npy ground truth, same layouts (e.g. 3DDFA AFLW2000-3D.pts68.npy)')
  p.add_argument('--yaw', help='.npy yaw angles in degrees, one per image (e.g. 3DDFA AFLW2000-3D.pose.npy)')
  p.add_argument('--pred-shift', type=float, default=0.0,
                 help='added to predicted x and y before scoring, to reconcile pixel conventions '
                      '(e.g. -0.5 to turn continuous coordinates into 0-based pixel indices)')
  p.add_argument('--name', default='method', help='row name in the table')
  p.add_argument('--csv', help='write per-image NME to this CSV file')
  p.add_argument('--json', help='write the summary table (percent) to this JSON file')
  p.add_argument('--ced', help='write the CED curve to this PNG file')
  p.add_argument('--ced-max', type=float, default=10.0, help='x-axis limit of the CED plot, percent')
  args = p.parse_args(argv)

  pred = load_landmark_array(args.pred, 'prediction')
  gt = load_landmark_array(args.gt, 'ground-truth')
  yaw = load_yaw(args.yaw, len(gt)) if args.yaw else None
  nme, table = score_landmarks(pred, gt, yaw, args.pred_shift)
  print(metrics.format_nme_table([(args.name, table)],
                                 title=f'NME (%) of {len(nme)} images, {pred.shape[1]} points, '
                                       f'normalised by sqrt(w*h) of the GT landmark box'))
  if yaw is None:
    print('(no --yaw: only the plain mean is defined)')
  if args.csv:
    metrics.atomic_write_bytes(args.csv, per_image_csv(nme, yaw).encode())
  if args.json:
    summary = table.as_dict()
    summary.update(pred=os.path.abspath(args.pred), gt=os.path.abspath(args.gt), points=int(pred.shape[1]),
                   pred_shift=args.pred_shift, name=args.name)
    metrics.write_json(args.json, summary)
  if args.ced:
    metrics.plot_ced({args.name: nme}, args.ced, max_error=args.ced_max / 100.0,
                     title=f'CED ({len(nme)} images, {pred.shape[1]} points)')
  return 0


# ----------------------------------------------------------------------------- entry point

def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    if argv[:1] == ['nme']:
      return nme_main(argv[1:])
    return benchmark_main(argv)
  except InputError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2


def benchmark_main(argv):  # replaced below once the model code lands
  raise InputError('benchmarks need a trained model (--workdir); not available yet')


if __name__ == '__main__':
  sys.exit(main())
