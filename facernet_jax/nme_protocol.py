"""The NME protocol (Eq 18, 3DDFA's yaw bins) on landmark files: read plain .npy arrays, score, tabulate.

Used by `python -m facernet_jax.evaluate nme`, which scores any method's landmarks under one protocol.
Arrays are read with allow_pickle=False; every error names the file, what it is for and the fix.
"""
import csv
import io
import os
import sys

import numpy as np

from facernet_jax import metrics


class InputError(ValueError):
  """A user-facing input problem; the evaluate CLI prints it and exits with status 2."""


def _check_npy_magic(path, what):
  """InputError unless the file starts with the NumPy magic (caught before np.load sees it)."""
  with open(path, 'rb') as f:
    head = f.read(6)
  if head != b'\x93NUMPY':
    raise InputError(f'{what} file {path!r} is not a readable .npy array (no NumPy header); '
                     f'save it with np.save')


def read_npy(path, what, kinds='fiu', expected='a numeric array'):
  """Reads a plain .npy array (never a pickle); errors name the file, what it is for and the fix."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(f'{what} file {path!r} does not exist')
  _check_npy_magic(path, what)
  try:
    a = np.load(path, allow_pickle=False)
  except ValueError as e:
    raise InputError(f'{what} file {path!r} holds Python objects (a pickle); save a plain array with '
                     f'np.save(path, np.asarray(x)) ({e})') from None
  except Exception as e:  # pylint: disable=broad-except
    raise InputError(f'{what} file {path!r} is not a readable .npy array: {e}') from None
  if not isinstance(a, np.ndarray) or a.dtype.kind not in kinds:
    raise InputError(f'{what} file {path!r} has dtype {getattr(a, "dtype", type(a))}; expected {expected}')
  return a


def load_landmark_array(path, what='landmarks'):
  """Loads (n, K, 2|3) or 3DDFA's (n, 2|3, K) (or a single (K, 2)) landmarks from .npy, returns (n, K, 2).

  No pickles (allow_pickle=False). Errors name the file, the shape and the fix.
  """
  path = os.fspath(path)
  a = read_npy(path, what)
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
  y = read_npy(path, 'yaw', expected='numbers (degrees)')
  y = np.asarray(y, np.float64).reshape(-1)
  if y.size != n:
    raise InputError(f'yaw file {path!r} has {y.size} values (shape {np.shape(y)}) but there are {n} images; '
                     f'give one yaw angle in degrees per image, in the same order')
  if np.all(np.abs(y) <= np.pi + 1e-6) and np.abs(y).max() > 0.1 and y.size > 10:
    print(f'warning: yaw values in {path!r} are all within +-pi; they must be degrees, not radians',
          file=sys.stderr)
  return y


def load_visibility(path, shape):
  """(n, K) visibility flags (bool or 0/1) from .npy."""
  path = os.fspath(path)
  v = read_npy(path, 'visibility', kinds='biuf', expected='booleans or 0/1')
  if v.shape != tuple(shape):
    raise InputError(f'visibility file {path!r} has shape {v.shape}; expected {tuple(shape)} (images, points)')
  if v.dtype.kind not in 'biuf' or not np.all(np.isin(v, (0, 1))):
    raise InputError(f'visibility file {path!r} must hold booleans or 0/1')
  return v.astype(bool)


def score_landmarks(pred, gt, yaw=None, pred_shift=0.0, visible=None):
  """Per-image NME and the yaw-bin table for arrays already loaded as (n, K, 2)."""
  if pred.shape != gt.shape:
    raise InputError(f'prediction shape {pred.shape} and ground-truth shape {gt.shape} differ '
                     f'(after converting to (n, K, 2)); both need the same images and points, in order')
  if visible is not None and (~visible.any(axis=1)).any():
    raise InputError(f'{int((~visible.any(axis=1)).sum())} image(s) have no visible point')
  degenerate = ~(metrics.landmark_box_size(gt, visible) > 0)
  if degenerate.any():
    raise InputError(f'{int(degenerate.sum())} ground-truth landmark boxes have zero area '
                     f'(first: image {int(np.argmax(degenerate))}); the NME is undefined for them')
  nme = metrics.nme_per_image(pred + pred_shift, gt, visible=visible)
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
