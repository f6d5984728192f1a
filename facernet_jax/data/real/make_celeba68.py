r"""Makes ``celeba_68.csv`` (the 68-point file the ``celeba68`` builder reads) with dlib's 68-point predictor.

    pip install 'facernet_jax[prepare]'   # dlib-bin + face_recognition_models (ships the predictor)
    python -m facernet_jax.data.real.make_celeba68 --celeba-dir CELEBA

CelebA ships 5 points per image (``list_landmarks_align_celeba.txt``); the paper trains on 68 detected
points. For each image listed in the 5-point file the face box is made from the 5 points
(``box_from_five``, calibrated to dlib's HOG detector boxes, which the predictor was trained with;
``--box auto`` runs the HOG detector (compiled into dlib, no weights) and keeps its detection that
contains the 5 points, falling back to the 5-point box: 10x slower, no better on real faces, see
docs/data_and_losses.md); the 68-point shape predictor (``shape_predictor_68_face_landmarks.dat``) places the points; its eye centres, nose
tip and mouth corners are compared with CelebA's 5 points, and images where they disagree by more than
``--max-five-point-error`` (mean distance / inter-ocular distance) are left out and logged with the
reason in ``OUT.failures.csv``, as are missing and unreadable images.

Progress goes to ``OUT.partial`` (one row per finished image, flushed as it goes): a killed run is
resumed by running the same command again; ``OUT`` itself is only written, atomically, at the end.
"""
import argparse
import csv
import importlib.util
import os
import sys
import time

import numpy as np

from facernet_jax.data import image_io
from facernet_jax.data.real import celeba68

FIVE_POINT_FILE = 'list_landmarks_align_celeba.txt'
FIVE_POINT_NAMES = ('lefteye', 'righteye', 'nose', 'leftmouth', 'rightmouth')
PREDICTOR_FILE = 'shape_predictor_68_face_landmarks.dat'
# box_from_five: dlib HOG box centre = eye midpoint + BOX_CENTRE * (mouth midpoint - eye midpoint),
# side = BOX_SIDE * |mouth midpoint - eye midpoint|: medians of the HOG boxes the predictor was trained
# with, over the 43 dlib example faces of ../shared/data/faces68 warped to CelebA's alignment
# (experiments/celeba68_quality.py --calibrate; those faces are not used for the quality numbers).
BOX_CENTRE = 0.49
BOX_SIDE = 2.56
_INSTALL = "pip install 'facernet_jax[prepare]'"


class PrepareError(Exception):
  """A missing input or dependency; the message says what and how to fix it."""


def five_from_68(points):
  """(..., 68, 2) iBUG points -> (..., 5, 2) CelebA-style points: image-left eye centre (mean of 36-41),
  image-right eye centre (42-47), nose tip (30), left mouth corner (48), right mouth corner (54)."""
  p = np.asarray(points, np.float64)
  return np.stack([p[..., 36:42, :].mean(-2), p[..., 42:48, :].mean(-2), p[..., 30, :], p[..., 48, :],
                   p[..., 54, :]], axis=-2)


def five_point_error(points68, five):
  """Mean distance of five_from_68(points68) to `five`, over the inter-ocular distance of `five`."""
  five = np.asarray(five, np.float64)
  iod = max(float(np.linalg.norm(five[1] - five[0])), 1e-6)
  return float(np.linalg.norm(five_from_68(points68) - five, axis=-1).mean() / iod)


def box_from_five(five):
  """(x0, y0, x1, y1) pixel-index box for dlib from CelebA's 5 points (see BOX_CENTRE, BOX_SIDE)."""
  five = np.asarray(five, np.float64)
  eyes, mouth = five[:2].mean(0), five[3:].mean(0)
  centre = eyes + BOX_CENTRE * (mouth - eyes)
  half = BOX_SIDE * max(float(np.linalg.norm(mouth - eyes)), 1.0) / 2
  return tuple(int(round(v)) for v in (centre[0] - half, centre[1] - half, centre[0] + half - 1,
                                        centre[1] + half - 1))


def read_five_points(path):
  """CelebA's list_landmarks_align_celeba.txt -> list of (filename, (5, 2) float pixels).

  Format: a count line, a header line (lefteye_x lefteye_y ... rightmouth_y), then
  `NAME x1 y1 ... x5 y5` rows separated by whitespace.
  """
  with open(path) as f:
    lines = f.read().splitlines()
  if len(lines) < 2 or not lines[0].strip().isdigit():
    raise PrepareError(f'{path}: expected CelebA\'s {FIVE_POINT_FILE} (a count line, a header line, then '
                       f'"NAME x1 y1 ... x5 y5" rows); first line is {lines[:1]}')
  header = lines[1].split()
  want = [f'{n}_{c}' for n in FIVE_POINT_NAMES for c in 'xy']
  if header != want:
    raise PrepareError(f'{path}: header line should be {" ".join(want)}, got {lines[1][:80]!r}')
  rows = []
  for n, line in enumerate(lines[2:], start=3):
    parts = line.split()
    if not parts:
      continue
    if len(parts) != 11:
      raise PrepareError(f'{path}:{n}: expected a file name and 10 numbers, got {len(parts)} fields')
    try:
      pts = np.asarray([float(v) for v in parts[1:]], np.float64).reshape(5, 2)
    except ValueError:
      raise PrepareError(f'{path}:{n}: non-numeric coordinate in {line[:80]!r}') from None
    rows.append((parts[0], pts))
  if int(lines[0]) != len(rows):
    print(f'warning: {path} says {int(lines[0])} images but lists {len(rows)}', file=sys.stderr)
  return rows


def find_five_point_file(celeba_dir):
  """The 5-point file in CELEBA/ or CELEBA/Anno/ (the release's layout)."""
  for c in (os.path.join(celeba_dir, FIVE_POINT_FILE), os.path.join(celeba_dir, 'Anno', FIVE_POINT_FILE)):
    if os.path.isfile(c):
      return c
  raise PrepareError(f'{FIVE_POINT_FILE} not found in {celeba_dir} or {os.path.join(celeba_dir, "Anno")}; '
                     'it is in the CelebA release (Anno/list_landmarks_align_celeba.txt)')


def default_predictor():
  """shape_predictor_68_face_landmarks.dat from the installed face_recognition_models package, or None."""
  spec = importlib.util.find_spec('face_recognition_models')
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(list(spec.submodule_search_locations)[0], 'models', PREDICTOR_FILE)
  return path if os.path.isfile(path) else None


class Landmarker:
  """dlib HOG detector + 68-point shape predictor, with the 5-point box as fallback."""

  def __init__(self, predictor_path, box='five_points', upsample=1):
    try:
      import dlib  # pylint: disable=g-import-not-at-top  (optional dependency, [prepare] extra)
    except ImportError:
      raise PrepareError(f'dlib is not installed; {_INSTALL} (the prebuilt dlib-bin wheel)') from None
    if not os.path.isfile(predictor_path):
      raise PrepareError(f'shape predictor not found: {predictor_path}')
    self._dlib = dlib
    self.predictor = dlib.shape_predictor(predictor_path)
    self.detector = dlib.get_frontal_face_detector() if box == 'auto' else None
    self.upsample = upsample

  def __call__(self, image, five):
    """-> ((68, 2) int 0-based pixel indices, 'detector' or 'five_points')."""
    dlib = self._dlib
    rect, source = None, 'five_points'
    if self.detector is not None:
      x0, y0, x1, y1 = box_from_five(five)
      want = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
      best = None
      for d in self.detector(image, self.upsample):
        inside = all(d.left() <= x <= d.right() and d.top() <= y <= d.bottom() for x, y in five)
        side_ratio = (d.right() - d.left() + 1) / max(x1 - x0 + 1, 1)
        if inside and 0.5 <= side_ratio <= 2.0:
          dist = np.linalg.norm(np.array([(d.left() + d.right()) / 2, (d.top() + d.bottom()) / 2]) - want)
          if best is None or dist < best[0]:
            best = (dist, d)
      if best is not None:
        rect, source = best[1], 'detector'
    if rect is None:
      rect = dlib.rectangle(*box_from_five(five))
    shape = self.predictor(image, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], np.int64), source


def _read_partial(path, known):
  """Valid rows of an interrupted run: {filename: line} for rows and failures (a cut-off last line
  or a row for an unknown file is dropped)."""
  done = {}
  if not os.path.exists(path):
    return done
  with open(path, newline='') as f:
    for row in csv.reader(f):
      if len(row) < 2 or row[0] not in known:
        continue
      if row[1] == 'ok' and len(row) == 3 + 136:
        try:
          [int(v) for v in row[3:]]
        except ValueError:
          continue
        done[row[0]] = row
      elif row[1] == 'failed' and len(row) == 5:
        done[row[0]] = row
  return done


def _atomic_csv(path, header, rows):
  tmp = path + '.tmp'
  with open(tmp, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)
  os.replace(tmp, path)


def make(celeba_dir, out, predictor_path, box='five_points', max_error=0.25, limit=-1, log_every=1000):
  """Runs the maker; returns dict(written, failed, reasons, seconds, box_sources)."""
  image_dir = celeba68.find_image_dir(celeba_dir)
  if image_dir is None:
    raise PrepareError(f'no img_align_celeba/ folder in {celeba_dir} or {os.path.join(celeba_dir, "Img")}; '
                       'unzip CelebA\'s Img/img_align_celeba.zip there')
  listed = read_five_points(find_five_point_file(celeba_dir))
  if limit >= 0:
    listed = listed[:limit]
  landmarker = Landmarker(predictor_path, box)
  partial = out + '.partial'
  done = _read_partial(partial, {name for name, _ in listed})
  if done:
    print(f'resuming: {len(done)} of {len(listed)} images already done in {partial}', file=sys.stderr)
  # Rewrite the partial file with its valid rows only, so appending after a cut-off line is safe.
  with open(partial + '.tmp', 'w', newline='') as f:
    csv.writer(f).writerows(done.values())
  os.replace(partial + '.tmp', partial)
  start, count = time.perf_counter(), 0
  with open(partial, 'a', newline='') as f:
    writer = csv.writer(f)
    for name, five in listed:
      if name in done:
        continue
      path = os.path.join(image_dir, name)
      row = None
      try:
        image = np.ascontiguousarray(image_io.read_image(path))
      except image_io.ImageReadError as e:
        row = [name, 'failed', '', 'unreadable' if os.path.exists(path) else 'missing', str(e)]
      if row is None:
        pts, source = landmarker(image, five)
        err = five_point_error(pts, five)  # both in pixel indices (CelebA's integers, dlib's points)
        if err > max_error:
          row = [name, 'failed', f'{err:.4f}', 'disagrees_with_5_points',
                 f'mean 5-point distance {err:.3f} x inter-ocular > {max_error} (box from {source})']
        else:
          row = [name, 'ok', source] + [str(int(v)) for v in pts.reshape(-1)]
      writer.writerow(row)
      done[name] = row
      count += 1
      if count % log_every == 0:
        f.flush()
        rate = count / (time.perf_counter() - start)
        print(f'{len(done)} / {len(listed)} images ({rate:.1f} images/s)', file=sys.stderr)
  seconds = time.perf_counter() - start
  header = ['filename'] + [f'{c}{i}' for i in range(68) for c in 'xy']
  ok = [done[n] for n, _ in listed if done[n][1] == 'ok']
  failed = [done[n] for n, _ in listed if done[n][1] == 'failed']
  _atomic_csv(out + '.failures.csv', ['filename', 'five_point_error', 'reason', 'detail'],
              [[r[0]] + r[2:] for r in failed])
  _atomic_csv(out, header, [[r[0]] + r[3:] for r in ok])
  os.remove(partial)
  reasons = {}
  for r in failed:
    reasons[r[3]] = reasons.get(r[3], 0) + 1
  sources = {}
  for r in ok:
    sources[r[2]] = sources.get(r[2], 0) + 1
  return dict(written=len(ok), failed=len(failed), reasons=reasons, seconds=seconds, processed=count,
              box_sources=sources)


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m facernet_jax.data.real.make_celeba68',
                              description=__doc__.split('\n')[0])
  p.add_argument('--celeba-dir', '--celeba_dir', dest='celeba_dir', required=True,
                 help='CelebA folder with img_align_celeba/ (or Img/img_align_celeba/) and '
                 f'{FIVE_POINT_FILE} (or Anno/{FIVE_POINT_FILE})')
  p.add_argument('--out', default=None, help=f'output CSV (default: CELEBA_DIR/{celeba68.LANDMARK_FILE}, '
                 'where the celeba68 builder looks)')
  p.add_argument('--predictor', default=None, help=f'{PREDICTOR_FILE} (default: the copy in the installed '
                 'face_recognition_models package)')
  p.add_argument('--box', choices=('five_points', 'auto'), default='five_points',
                 help='five_points: the box from CelebA\'s 5 points; auto: the dlib HOG detection that '
                 'contains the 5 points, else the 5-point box (10x slower)')
  p.add_argument('--max-five-point-error', type=float, default=0.25,
                 help='leave out images whose 68 points put the eyes / nose tip / mouth corners further '
                 'than this (mean, in inter-ocular distances) from CelebA\'s 5 points')
  p.add_argument('--limit', type=int, default=-1, help='only the first N listed images (-1: all)')
  p.add_argument('--overwrite', action='store_true', help='replace an existing OUT')
  args = p.parse_args(argv)
  out = args.out or os.path.join(args.celeba_dir, celeba68.LANDMARK_FILE)
  try:
    if not os.path.isdir(args.celeba_dir):
      raise PrepareError(f'--celeba-dir {args.celeba_dir} is not a folder')
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
      raise PrepareError(f'the folder of --out {out} does not exist')
    if os.path.exists(out) and not args.overwrite:
      raise PrepareError(f'{out} exists; pass --overwrite to make it again')
    predictor = args.predictor or default_predictor()
    if predictor is None:
      raise PrepareError(f'no {PREDICTOR_FILE}: {_INSTALL} (its face_recognition_models package ships it), '
                         'or pass --predictor PATH to your own copy (dlib.net/files, bz2-compressed)')
    if not os.path.isfile(predictor):
      raise PrepareError(f'shape predictor not found: {predictor}')
    if not 0 < args.max_five_point_error:
      raise PrepareError(f'--max-five-point-error must be > 0, got {args.max_five_point_error}')
    stats = make(args.celeba_dir, out, predictor, args.box, args.max_five_point_error, args.limit)
  except PrepareError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  per = stats['seconds'] / max(stats['processed'], 1)
  print(f'wrote {out}: {stats["written"]} images with 68 points (box: {stats["box_sources"]}); '
        f'{stats["failed"]} left out {stats["reasons"]} -> {out}.failures.csv; '
        f'{stats["processed"]} processed in {stats["seconds"]:.1f} s ({1000 * per:.1f} ms/image)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
