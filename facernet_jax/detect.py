"""Face finding and cropping for reconstruction: a bundled detector, or boxes / 68 landmarks from a file.

Detector. opencv-python-headless 5.0 no longer ships `cv2.CascadeClassifier` nor the Haar cascade files,
and `cv2.FaceDetectorYN` needs a model file we cannot download. The detector here is OpenCV's LBP frontal
face cascade (`lbpcascade_frontalface_opencv.xml`) as bundled and evaluated by scikit-image
(`skimage.feature.Cascade`); raw detections are grouped here (greedy IoU clustering), a group's size is
its score, and groups with fewer than `min_neighbours` members are dropped. On the 30 images of
../shared/data/faces68 (64 annotated faces, many in profile) `min_neighbours=6` finds 47 faces with 4
false positives (`min_neighbours=3`: 52 / 14). It finds frontal-ish faces only; for profiles give boxes
or landmarks in a file, or use `detector='none'` for pre-cropped faces.

Cropping matches the training data builders (facernet_jax/data/real/common.py, 3DDFA's
parse_roi_box_from_landmark): a square of side `box_scale * max(w, h)` (sqrt 2) centred on the box of
the 68 landmarks, resized to image_size. A detector (or file) box is first mapped to the landmark box
it corresponds to on average (`DETECTION_TO_LANDMARK_BOX`, measured on faces68 with this detector).

Annotation files (coordinates in continuous pixels, docs/architecture.md; `offset` converts others):
  JSON: {"photo.jpg": [{"box": [x0, y0, x1, y1]}, {"landmarks": [[x, y], ... 68]}], ...}
        or [{"image": "photo.jpg", "box": [...]} | {"image": ..., "landmarks": [...]}, ...]
  CSV:  rows `image,x0,y0,x1,y1` (a box) or `image,x_0,y_0,...,x_67,y_67` (68 landmarks); a header
        row is allowed. Images are matched by path as given, else by file name.
"""
import csv
import dataclasses
import functools
import json
import os

import numpy as np

from facernet_jax.data import image_io
from facernet_jax.data import landmarks as lmk

BOX_SCALE = float(np.sqrt(2.0))  # crop side / landmark-box side, as the data builders
# Landmark box from a detector box (x0, y0, side): side ratio and centre offset (fractions of the
# detector side), medians over the 47 faces of ../shared/data/faces68 matched by this detector
# (dx measured -0.02, set to 0 by symmetry); crops then overlap the landmark crops with median IoU 0.8.
DETECTION_TO_LANDMARK_BOX = dict(scale=0.83, dx=0.0, dy=0.11)


class AnnotationError(ValueError):
  """An annotation file that cannot be used; the message names the file and the fix."""


@dataclasses.dataclass
class Face:
  """One face in a photo: a box (x0, y0, x1, y1) and/or 68 landmarks, in photo pixels (continuous)."""
  box: np.ndarray | None = None
  landmarks: np.ndarray | None = None
  score: float = 1.0
  source: str = 'detector'  # 'detector' | 'file' | 'image'

  def crop_box(self, box_scale=BOX_SCALE):
    """The square crop (x0, y0, x1, y1) this face is regressed from."""
    if self.landmarks is not None:
      return crop_box_from_landmarks(self.landmarks, box_scale)
    if self.source == 'image':
      return np.asarray(self.box, np.float64)
    return crop_box_from_detection(self.box, box_scale)


# ----------------------------------------------------------------------------- crop boxes

def crop_box_from_landmarks(landmarks, box_scale=BOX_SCALE):
  """Square box of side box_scale * max(w, h) around the landmark box (the training crops)."""
  x0, y0, x1, y1 = lmk.landmark_box(np.asarray(landmarks, np.float64))
  cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
  half = box_scale * max(x1 - x0, y1 - y0) / 2
  return np.array([cx - half, cy - half, cx + half, cy + half], np.float64)


def crop_box_from_detection(box, box_scale=BOX_SCALE, calibration=None):
  """Square crop from a detector box, through the average detector-to-landmark-box mapping."""
  c = DETECTION_TO_LANDMARK_BOX if calibration is None else calibration
  x0, y0, x1, y1 = [float(v) for v in box]
  side = 0.5 * ((x1 - x0) + (y1 - y0))
  cx = 0.5 * (x0 + x1) + c['dx'] * side
  cy = 0.5 * (y0 + y1) + c['dy'] * side
  half = box_scale * c['scale'] * side / 2
  return np.array([cx - half, cy - half, cx + half, cy + half], np.float64)


def whole_image_box(height, width):
  """The centred square of a pre-cropped face photo."""
  s = min(height, width)
  x0, y0 = (width - s) / 2, (height - s) / 2
  return np.array([x0, y0, x0 + s, y0 + s], np.float64)


def crop(image, crop_box, image_size):
  """Crops and resizes like the data builders. Returns (crop float32 [0,1] (S,S,3), to_photo) where
  to_photo maps crop pixels (..., 2) back to photo pixels."""
  patch, _ = image_io.crop_and_resize(image, crop_box, image_size)
  x0, y0, x1, y1 = [float(v) for v in crop_box]
  sx, sy = (x1 - x0) / image_size, (y1 - y0) / image_size

  def to_photo(points):
    p = np.asarray(points, np.float64)
    return np.stack([p[..., 0] * sx + x0, p[..., 1] * sy + y0], -1)

  return patch.astype(np.float32) / 255.0, to_photo


# ----------------------------------------------------------------------------- detector

class DetectorUnavailable(RuntimeError):
  pass


@functools.lru_cache(maxsize=1)
def _cascade():
  try:
    from skimage import data as skdata  # pylint: disable=g-import-not-at-top
    from skimage.feature import Cascade  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DetectorUnavailable(
        'the face detector needs scikit-image (pip install scikit-image), which bundles OpenCV\'s LBP '
        'frontal-face cascade; or pass boxes/landmarks with --faces FILE, or --detector=none for '
        f'pre-cropped faces ({e})') from None
  return Cascade(skdata.lbp_frontal_face_cascade_filename())


def _iou(a, b):
  x0, y0 = max(a[0], b[0]), max(a[1], b[1])
  x1, y1 = min(a[2], b[2]), min(a[3], b[3])
  inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def group_detections(boxes, iou_threshold=0.4):
  """Greedy clustering of raw boxes (largest first) by IoU with each cluster's mean box.

  Returns [(mean box (4,), count)] sorted by count (descending), with clusters that overlap a stronger
  one (IoU > 0.3, or more than half inside it) removed.
  """
  clusters = []
  for b in sorted((np.asarray(b, np.float64) for b in boxes), key=lambda b: -(b[2] - b[0])):
    for c in clusters:
      if _iou(np.mean(c, 0), b) > iou_threshold:
        c.append(b)
        break
    else:
      clusters.append([b])
  groups = sorted(((np.mean(c, 0), len(c)) for c in clusters), key=lambda g: -g[1])
  kept = []
  for box, n in groups:
    area = (box[2] - box[0]) * (box[3] - box[1])
    def inside(k):
      x0, y0 = max(box[0], k[0]), max(box[1], k[1])
      x1, y1 = min(box[2], k[2]), min(box[3], k[3])
      return max(0.0, x1 - x0) * max(0.0, y1 - y0) / area
    if all(_iou(box, k) <= 0.3 and inside(k) <= 0.5 for k, _ in kept):
      kept.append((box, n))
  return kept


def detect_faces(image, min_neighbours=6, max_side=320, scale_factor=1.1, min_size=20):
  """Finds frontal faces in an RGB uint8 image. Returns [Face] (box in photo pixels, score = group size),
  strongest first. The image is downscaled to `max_side` first (the cascade's speed is O(pixels))."""
  import cv2  # pylint: disable=g-import-not-at-top
  grey = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY)
  h, w = grey.shape
  s = max(1.0, max(h, w) / float(max_side))
  if s > 1:
    grey = cv2.resize(grey, (max(int(round(w / s)), 1), max(int(round(h / s)), 1)),
                      interpolation=cv2.INTER_AREA)
  small = grey.astype(np.float32) / 255.0
  if min(small.shape) < min_size:
    return []
  raw = _cascade().detect_multi_scale(
      small, scale_factor=scale_factor, step_ratio=1, min_size=(min_size, min_size),
      max_size=small.shape, min_neighbor_number=1, intersection_score_threshold=1.0)
  # The cascade works on the pixel grid: a box at row r, column c of size w covers [c, c + w).
  boxes = [(d['c'] * s, d['r'] * s, (d['c'] + d['width']) * s, (d['r'] + d['height']) * s) for d in raw]
  return [Face(box=b, score=float(n), source='detector')
          for b, n in group_detections(boxes) if n >= min_neighbours]


# ----------------------------------------------------------------------------- annotation files

def _face_from_numbers(values, where):
  v = np.asarray(values, np.float64).reshape(-1)
  if v.size == 4:
    if not (v[2] > v[0] and v[3] > v[1]):
      raise AnnotationError(f'{where}: box {v.tolist()} must be x0, y0, x1, y1 with x1 > x0 and y1 > y0')
    return Face(box=v, source='file')
  if v.size == 136:
    return Face(landmarks=v.reshape(68, 2), source='file')
  raise AnnotationError(f'{where}: expected 4 numbers (box x0, y0, x1, y1) or 136 (68 landmarks x, y), '
                        f'got {v.size}')


def load_annotations(path, offset=0.0):
  """Reads a JSON or CSV annotation file -> {image key: [Face]} (see the module docstring).

  `offset` is added to every coordinate (0.5 for 0-based pixel indices, -0.5 for 1-based).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise AnnotationError(f'annotation file {path!r} does not exist')
  out = {}
  def add(key, face, where):
    if face.box is not None:
      face.box = face.box + offset
    if face.landmarks is not None:
      if not np.all(np.isfinite(face.landmarks)):
        raise AnnotationError(f'{where}: landmarks contain NaN/inf')
      face.landmarks = face.landmarks + offset
    out.setdefault(str(key), []).append(face)
  try:
    if path.lower().endswith('.json'):
      with open(path) as f:
        data = json.load(f)
      items = data.items() if isinstance(data, dict) else [(d.get('image'), [d]) for d in data]
      for key, faces in items:
        if key is None:
          raise AnnotationError(f'{path}: every list entry needs an "image" field')
        for k, entry in enumerate(faces if isinstance(faces, list) else [faces]):
          where = f'{path}: {key} face {k}'
          if not isinstance(entry, dict) or not ({'box', 'landmarks'} & set(entry)):
            raise AnnotationError(f'{where}: expected {{"box": [x0, y0, x1, y1]}} or {{"landmarks": [[x, y] x 68]}}')
          if 'landmarks' in entry:
            face = _face_from_numbers(entry['landmarks'], where)
            if face.landmarks is None:
              raise AnnotationError(f'{where}: "landmarks" must hold 68 [x, y] pairs')
          else:
            face = _face_from_numbers(entry['box'], where)
            if face.box is None:
              raise AnnotationError(f'{where}: "box" must hold 4 numbers x0, y0, x1, y1')
          add(key, face, where)
    else:
      with open(path, newline='') as f:
        for line_no, row in enumerate(csv.reader(f), 1):
          if not row or row[0].startswith('#'):
            continue
          try:
            numbers = [float(x) for x in row[1:]]
          except ValueError:
            if line_no == 1:
              continue  # header
            raise AnnotationError(f'{path}:{line_no}: non-numeric coordinates in {row[:6]}...') from None
          add(row[0], _face_from_numbers(numbers, f'{path}:{line_no}'), f'{path}:{line_no}')
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise AnnotationError(f'annotation file {path!r} is not valid JSON/CSV text: {e}') from None
  return out


def faces_for_image(annotations, image_path):
  """The annotated faces of `image_path` (matched by the path as given, then by the file name)."""
  if annotations is None:
    return None
  for key in (os.fspath(image_path), os.path.normpath(os.fspath(image_path)), os.path.basename(image_path)):
    if key in annotations:
      return annotations[key]
  return None
