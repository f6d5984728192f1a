"""Face finding and cropping for reconstruction: bundled detectors, or boxes / 68 landmarks from a file.

Detectors (`detect_faces`; weights ship inside the pinned wheels, nothing is downloaded):
  'mtcnn'   MTCNN (Zhang et al. 2016; package mtcnn 1.0.0, P-/R-/O-Net weights in the wheel, run on the
            pinned TensorFlow) on the photo shrunk to 640 px: frontal to full profile faces.
  'hog'     dlib's HOG + linear SVM detector (package dlib-bin, built into dlib) on the photo shrunk to
            1024 px and upsampled twice: frontal and half-profile faces, some that MTCNN misses.
  'auto'    both, merged (MTCNN's box kept where their crops overlap); the default of reconstruct. On
            ../shared/data/faces68 it finds all 80 annotated faces (docs/evaluation.md, measured by
            experiments/detector_recall.py), where the cascade finds 57. Without either package it
            warns and falls back to:
  'cascade' OpenCV's LBP frontal-face cascade as bundled and run by scikit-image (opencv-python-headless
            5.0 dropped `cv2.CascadeClassifier`; `cv2.FaceDetectorYN` needs a model no wheel ships),
            raw windows grouped here (greedy IoU clustering, a group's size is its score, groups below
            `min_neighbours` dropped). Frontal faces only.
`rotations` also searches rotated copies of the photo and maps boxes back, for faces far from upright.

Cropping matches the training data builders (facernet_jax/data/real/common.py, 3DDFA's
parse_roi_box_from_landmark): a square of side `box_scale * max(w, h)` (sqrt 2) centred on the box of
the 68 landmarks, resized to image_size. A detector (or file) box is first mapped to the landmark box
it corresponds to on average (`DETECTION_TO_LANDMARK_BOX`, per detector, measured on faces68).

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
import sys

import cv2
import numpy as np
from skimage import data as skdata
from skimage.feature import Cascade

from facernet_jax.data import image_io
from facernet_jax.landmarks import BOX_SCALE  # crop side / landmark-box side, as the data builders
from facernet_jax.landmarks import crop_box_from_landmarks  # the training crop (one rule for all)

# Landmark box from a detector box (centre, side = mean of width and height), per detector: side ratio
# and centre offset (fractions of the detector side), medians over faces of ../shared/data/faces68
# matched by that detector (dx set to 0 by left-right symmetry). 'cascade': the 47 faces it finds (crops
# then overlap the landmark crops with median IoU 0.8); 'mtcnn' and 'hog': fitted on the calibration half
# of the images by experiments/detector_recall.py, which reports the IoU on the other half
# (docs/evaluation.md). Boxes given in a --faces file use the cascade's.
DETECTION_TO_LANDMARK_BOX = {
    'cascade': dict(scale=0.83, dx=0.0, dy=0.11),
    'mtcnn': dict(scale=0.94, dx=0.0, dy=0.15),
    'hog': dict(scale=0.97, dx=0.0, dy=0.12),
}


class AnnotationError(ValueError):
  """An annotation file that cannot be used; the message names the file and the fix."""


@dataclasses.dataclass
class Face:
  """One face in a photo: a box (x0, y0, x1, y1) and/or 68 landmarks, in photo pixels (continuous)."""
  box: np.ndarray | None = None
  landmarks: np.ndarray | None = None
  score: float = 1.0
  source: str = 'detector'  # 'detector' | 'file' | 'image'
  detector: str = ''  # which detector found it ('mtcnn' | 'hog' | 'cascade'), for its box calibration

  def crop_box(self, box_scale=BOX_SCALE):
    """The square crop (x0, y0, x1, y1) this face is regressed from."""
    if self.landmarks is not None:
      return crop_box_from_landmarks(self.landmarks, box_scale)
    if self.source == 'image':
      return np.asarray(self.box, np.float64)
    return crop_box_from_detection(self.box, box_scale, self.detector or 'cascade')


# ----------------------------------------------------------------------------- crop boxes

def crop_box_from_detection(box, box_scale=BOX_SCALE, calibration='cascade'):
  """Square crop from a detector box, through the average detector-to-landmark-box mapping
  (`calibration`: a detector name of DETECTION_TO_LANDMARK_BOX, or a dict scale, dx, dy)."""
  c = DETECTION_TO_LANDMARK_BOX[calibration] if isinstance(calibration, str) else calibration
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
  """A detector whose package is not installed; the message says what to install."""


_INSTALL_HINT = ('pip install -e . installs both (or: pip install mtcnn==1.0.0 dlib-bin==20.0.1.post1); or '
                 'give boxes/landmarks with --faces FILE, or --detector=none for pre-cropped faces')


@functools.lru_cache(maxsize=1)
def _cascade():
  return Cascade(skdata.lbp_frontal_face_cascade_filename())


@functools.lru_cache(maxsize=1)
def _mtcnn():
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TensorFlow's start-up banner, before its import
  try:
    from mtcnn import MTCNN  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DetectorUnavailable(f'the MTCNN detector needs the mtcnn package ({e}); {_INSTALL_HINT}') from None
  return MTCNN(device='CPU:0')


@functools.lru_cache(maxsize=1)
def _hog():
  try:
    import dlib  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DetectorUnavailable(f'the HOG detector needs dlib (package dlib-bin) ({e}); {_INSTALL_HINT}') from None
  return dlib.get_frontal_face_detector()


def box_iou(a, b):
  """Intersection over union of two boxes (x0, y0, x1, y1)."""
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
      if box_iou(np.mean(c, 0), b) > iou_threshold:
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
    if all(box_iou(box, k) <= 0.3 and inside(k) <= 0.5 for k, _ in kept):
      kept.append((box, n))
  return kept


def _downscale(image, max_side):
  """Image shrunk (INTER_AREA) so that its longer side is at most max_side, and the factor s >= 1 that
  maps its pixels back to the photo (photo = s * small)."""
  h, w = image.shape[:2]
  s = max(1.0, max(h, w) / float(max_side))
  if s > 1:
    image = cv2.resize(image, (max(int(round(w / s)), 1), max(int(round(h / s)), 1)),
                       interpolation=cv2.INTER_AREA)
  return np.ascontiguousarray(image), s


def detect_cascade(image, min_neighbours=6, max_side=320, scale_factor=1.1, min_size=20):
  """OpenCV's LBP frontal-face cascade (via scikit-image). Returns [Face] (score = group size)."""
  grey, s = _downscale(cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY), max_side)
  small = grey.astype(np.float32) / 255.0
  if min(small.shape) < min_size:
    return []
  raw = _cascade().detect_multi_scale(
      small, scale_factor=scale_factor, step_ratio=1, min_size=(min_size, min_size),
      max_size=small.shape, min_neighbor_number=1, intersection_score_threshold=1.0)
  # The cascade works on the pixel grid: a box at row r, column c of size w covers [c, c + w).
  boxes = [(d['c'] * s, d['r'] * s, (d['c'] + d['width']) * s, (d['r'] + d['height']) * s) for d in raw]
  return [Face(box=b, score=float(n), source='detector', detector='cascade')
          for b, n in group_detections(boxes) if n >= min_neighbours]


def detect_mtcnn(image, max_side=640, threshold=0.8, min_face_size=20):
  """MTCNN (Zhang et al. 2016, package mtcnn: P-, R-, O-Net weights ship in its wheel) on the image
  shrunk to max_side. Finds frontal to profile faces. Returns [Face] (score = O-Net probability)."""
  small, s = _downscale(np.asarray(image), max_side)
  if min(small.shape[:2]) < 24:
    return []
  found = _mtcnn().detect_faces(small, box_format='xyxy', min_face_size=min_face_size,
                                threshold_onet=threshold)
  return [Face(box=np.asarray(f['box'], np.float64) * s, score=float(f['confidence']), source='detector',
               detector='mtcnn') for f in found]


def detect_hog(image, max_side=1024, upsample=2, threshold=0.0):
  """dlib's HOG + linear SVM face detector (5 filters: frontal, left/right turned, tilted; built into
  dlib) on the image shrunk to max_side and upsampled `upsample` times. Returns [Face] (score = SVM
  margin)."""
  small, s = _downscale(np.asarray(image), max_side)
  if min(small.shape[:2]) < 24:
    return []
  rects, scores, _ = _hog().run(small, upsample, threshold)
  # dlib rectangles are inclusive pixel indices: [left, right + 1) in continuous pixels.
  return [Face(box=np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float64) * s,
               score=float(c), source='detector', detector='hog') for r, c in zip(rects, scores)]


DETECTORS = ('auto', 'mtcnn', 'hog', 'cascade')


def rotate_image(image, degrees):
  """The image rotated by `degrees` (counter-clockwise) on a canvas that holds all of it, and the 2x3
  affine map from original to rotated pixels (OpenCV's pixel-centre convention)."""
  h, w = image.shape[:2]
  m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
  c, s = abs(m[0, 0]), abs(m[0, 1])
  nw, nh = int(round(h * s + w * c)), int(round(h * c + w * s))
  m[0, 2] += nw / 2 - w / 2
  m[1, 2] += nh / 2 - h / 2
  return cv2.warpAffine(image, m, (nw, nh)), m


def _box_back(face, back):
  """A detection in a rotated copy as a box in the original photo: the face's calibrated crop centre
  (the landmark-box centre, which sits below the box centre in the face's own frame) is mapped back
  through `back`; the box is the square of the detection's mean side placed so that the same
  calibration gives that centre."""
  c = DETECTION_TO_LANDMARK_BOX[face.detector]
  x0, y0, x1, y1 = face.box
  side = ((x1 - x0) + (y1 - y0)) / 2
  shift = np.array([c['dx'], c['dy']]) * side
  centre = back[:, :2] @ (np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + shift) + back[:, 2] - shift
  return np.r_[centre - side / 2, centre + side / 2]


def _available(detector):
  """The detector functions that `detector` runs, in merge priority; 'auto' falls back to the cascade
  (with a warning naming what to install) when neither MTCNN nor dlib is installed."""
  cascade = (detect_cascade,)
  if detector == 'cascade':
    return cascade
  if detector != 'auto':
    (_mtcnn if detector == 'mtcnn' else _hog)()  # raises DetectorUnavailable
    return (detect_mtcnn,) if detector == 'mtcnn' else (detect_hog,)
  runs, missing = [], []
  for load, run in ((_mtcnn, detect_mtcnn), (_hog, detect_hog)):
    try:
      load()
      runs.append(run)
    except DetectorUnavailable as e:
      missing.append(str(e))
  if missing and not _warned:
    _warned.append(True)
    print('warning: ' + '; '.join(missing) + ('' if runs else '. Falling back to the frontal-face LBP cascade, '
          'which misses profile faces.'), file=sys.stderr)
  return tuple(runs) or cascade


_warned = []


def detect_faces(image, detector='auto', rotations=(0,), min_neighbours=6, nms_iou=0.3):
  """Finds faces in an RGB uint8 image. Returns [Face] (box in photo pixels), strongest first.

  detector: 'auto' = MTCNN and dlib HOG together (each finds faces the other misses: MTCNN profiles, HOG
  some small frontal faces; overlapping crops are merged, MTCNN's kept), 'mtcnn', 'hog', or 'cascade'
  (the frontal LBP cascade, `min_neighbours` its threshold). `rotations`: also run on copies rotated by
  these angles (degrees, counter-clockwise) and map the boxes back, for faces rolled far from upright.
  Raises DetectorUnavailable when an explicitly chosen detector's package is missing.
  """
  if detector not in DETECTORS:
    raise ValueError(f'detector must be one of {DETECTORS}, got {detector!r}')
  runs = [functools.partial(r, min_neighbours=min_neighbours) if r is detect_cascade else r
          for r in _available(detector)]
  image = np.asarray(image)
  candidates = []  # (run priority, |angle|, -score, Face)
  for angle in rotations:
    turned = bool(angle % 360)
    if turned:
      rotated, forward = rotate_image(image, angle)
      back = cv2.invertAffineTransform(forward)
    for priority, run in enumerate(runs):
      for face in run(rotated if turned else image):
        if turned:
          face.box = _box_back(face, back)
        candidates.append((priority, abs(angle), -face.score, face))
  kept = []
  for *_, face in sorted(candidates, key=lambda c: c[:3]):
    box = face.crop_box()
    if all(box_iou(box, k.crop_box()) <= nms_iou for k in kept):
      kept.append(face)
  return kept


# ----------------------------------------------------------------------------- annotation files

def _face_from_numbers(values, where):
  v = np.asarray(values, np.float64).reshape(-1)
  if v.size == 4:
    if not (v[2] > v[0] and v[3] > v[1]):
      raise AnnotationError(f'{where}: box {v.tolist()} must be x0, y0, x1, y1 with x1 > x0 and y1 > y0')
    return Face(box=v, source='file')
  if v.size == 136:
    lm = v.reshape(68, 2)
    if not np.all(np.isfinite(lm)):
      raise AnnotationError(f'{where}: landmarks contain NaN/inf')
    w, h = np.ptp(lm[:, 0]), np.ptp(lm[:, 1])
    if not (w > 0 and h > 0):
      raise AnnotationError(f'{where}: the 68 landmarks span a zero-area box ({w:g} x {h:g} pixels; all points '
                            'equal or on one line), so no crop can be made: give the real 68 points, or a box')
    return Face(landmarks=lm, source='file')
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
