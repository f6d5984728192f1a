r"""The 34 AFLW-LFPA landmarks as face-model vertices (the ``--lfpa-points`` file of ``evaluate``).

    python -m facernet_jax.data.real.lfpa_points --model model.npz --out lfpa_points.npy
    python -m facernet_jax.data.real.lfpa_points --write-mapping lfpa_mapping.csv   # to edit, then
    python -m facernet_jax.data.real.lfpa_points --model model.npz --mapping lfpa_mapping.csv --out ...

AFLW-LFPA's 34 points are AFLW's 21 (Koestinger et al. 2011) plus 13 that Jourabloo & Liu added; we
could not see the release, so the order (AFLW's 21 first, in AFLW's order, named from the viewer's
side) is an assumption, and the 13 added points' definitions are not known here. Each LFPA point has a
rule in a small CSV mapping (``DEFAULT_MAPPING``, editable):

* ``68:I`` - the vertex of 68-point landmark I (0-based iBUG order, the model's ``landmark_indices``),
  for the AFLW points that are 68-point points (brow corners and centres, eye corners, nose wings and
  tip, mouth corners, chin);
* ``mean68:I J ...`` - the model vertex nearest (on the mean shape) to the mean of those landmark
  vertices (eye centres: the 6 eye points; mouth centre: inner-lip midpoints 62, 66);
* ``vertex:V`` - a vertex index you chose;
* ``none`` - no vertex (AFLW's ear points are not on the front-face model; the 13 added points are
  unknown): written as -1, which ``evaluate`` leaves out of the NME (still in the crop and in d).
"""
import argparse
import csv
import os
import sys

import numpy as np

from facernet_jax import face_model

NUM_POINTS = 34
# (LFPA index, name, rule). AFLW's 21 landmark types in AFLW's order, then the 13 LFPA additions.
DEFAULT_MAPPING = (
    (0, 'left brow left corner', '68:17'), (1, 'left brow centre', '68:19'),
    (2, 'left brow right corner', '68:21'), (3, 'right brow left corner', '68:22'),
    (4, 'right brow centre', '68:24'), (5, 'right brow right corner', '68:26'),
    (6, 'left eye left corner', '68:36'), (7, 'left eye centre', 'mean68:36 37 38 39 40 41'),
    (8, 'left eye right corner', '68:39'), (9, 'right eye left corner', '68:42'),
    (10, 'right eye centre', 'mean68:42 43 44 45 46 47'), (11, 'right eye right corner', '68:45'),
    (12, 'left ear', 'none'), (13, 'nose left', '68:31'), (14, 'nose centre', '68:30'),
    (15, 'nose right', '68:35'), (16, 'right ear', 'none'), (17, 'mouth left corner', '68:48'),
    (18, 'mouth centre', 'mean68:62 66'), (19, 'mouth right corner', '68:54'),
    (20, 'chin centre', '68:8'),
) + tuple((i, f'LFPA addition {i - 20} (definition not available here)', 'none') for i in range(21, 34))


class MappingError(ValueError):
  """A malformed mapping file or rule; the message names the row."""


def read_mapping(path):
  """mapping CSV (header index,name,rule; 34 rows) -> list of (index, name, rule)."""
  with open(path, newline='') as f:
    rows = list(csv.reader(f))
  if not rows or [c.strip() for c in rows[0]] != ['index', 'name', 'rule']:
    raise MappingError(f'{path}: expected the header index,name,rule '
                       f'(write one with --write-mapping), got {rows[:1]}')
  out = []
  for n, row in enumerate(rows[1:], start=2):
    if not row:
      continue
    if len(row) != 3 or not row[0].strip().isdigit():
      raise MappingError(f'{path}:{n}: expected index,name,rule, got {row}')
    out.append((int(row[0]), row[1], row[2].strip()))
  if sorted(i for i, _, _ in out) != list(range(NUM_POINTS)):
    raise MappingError(f'{path}: needs one row for each LFPA index 0..{NUM_POINTS - 1}')
  return sorted(out)


def write_mapping(path, mapping=DEFAULT_MAPPING):
  tmp = path + '.tmp'
  with open(tmp, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['index', 'name', 'rule'])
    w.writerows(mapping)
  os.replace(tmp, path)


def vertices_from_mapping(mapping, landmark_indices, mean_shape):
  """(34,) int64 vertex indices (-1 for 'none') from the rules, for a model's 68 landmark vertices."""
  lmk = np.asarray(landmark_indices, np.int64).reshape(-1)
  shape = np.asarray(mean_shape, np.float64).reshape(-1, 3)
  if lmk.shape != (68,):
    raise MappingError(f'the model has {lmk.size} landmark vertices; the rules need the 68-point ones')
  out = np.full(NUM_POINTS, -1, np.int64)
  for index, name, rule in mapping:
    kind, _, arg = rule.partition(':')
    try:
      nums = [int(v) for v in arg.split()]
    except ValueError:
      raise MappingError(f'LFPA point {index} ({name}): bad rule {rule!r}') from None
    if kind == 'none' and not arg:
      continue
    if kind in ('68', 'mean68') and nums and all(0 <= v < 68 for v in nums):
      if kind == '68' and len(nums) == 1:
        out[index] = lmk[nums[0]]
        continue
      if kind == 'mean68':
        target = shape[lmk[nums]].mean(0)
        out[index] = int(np.argmin(np.sum((shape - target) ** 2, axis=1)))
        continue
    if kind == 'vertex' and len(nums) == 1 and 0 <= nums[0] < len(shape):
      out[index] = nums[0]
      continue
    raise MappingError(f'LFPA point {index} ({name}): bad rule {rule!r}; use 68:I, mean68:I J ..., vertex:V '
                       f'(0..{len(shape) - 1}) or none')
  return out


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m facernet_jax.data.real.lfpa_points',
                              description=__doc__.split('\n')[0])
  p.add_argument('--model', help='face model (.npz from face_model.convert, or BFM_model_front.mat)')
  p.add_argument('--mapping', help='mapping CSV (index,name,rule); default: the built-in DEFAULT_MAPPING')
  p.add_argument('--out', help='output .npy (34 int64 vertex indices, -1 = not scored)')
  p.add_argument('--write-mapping', help='write the default mapping CSV here (to edit) and exit')
  args = p.parse_args(argv)
  try:
    if args.write_mapping:
      write_mapping(args.write_mapping)
      print(f'wrote {args.write_mapping}: {NUM_POINTS} rules')
      return 0
    if not (args.model and args.out):
      raise MappingError('--model and --out are needed (or --write-mapping)')
    mapping = read_mapping(args.mapping) if args.mapping else DEFAULT_MAPPING
    model = face_model.load_model(args.model)
    idx = vertices_from_mapping(mapping, model.landmark_indices, model.mean_shape)
  except (MappingError, FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  tmp = args.out + '.tmp.npy'
  np.save(tmp, idx)
  os.replace(tmp, args.out)
  print(f'wrote {args.out}: {int(np.sum(idx >= 0))} of {NUM_POINTS} LFPA points on vertices of {model.name} '
        f'({model.num_vertices} vertices); {int(np.sum(idx < 0))} without a vertex are not scored')
  return 0


if __name__ == '__main__':
  sys.exit(main())
