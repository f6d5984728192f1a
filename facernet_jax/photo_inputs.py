"""Inputs of `python -m facernet_jax.reconstruct`: photos, folders and videos, their faces and crops.

Faces come from the annotation file (--faces: boxes or 68 landmarks), the bundled detector
(facernet_jax.detect) or the whole image; each face becomes a `FaceJob` holding the training crop
(square, sqrt 2 x the landmark box) and the map from crop pixels back to photo pixels.
"""
import dataclasses
import os
import time

import cv2
import numpy as np

from facernet_jax import detect
from facernet_jax.data import image_io

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.pbm', '.tif', '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv')
# Photos (and video frames) above this many pixels are refused before decoding (reconstruct --max-pixels):
# 100 M pixels is 300 MB as RGB, already above any phone camera's output; the detectors work on a
# downscaled copy anyway.
MAX_PIXELS = 100_000_000


class InputError(Exception):
  """One input failed (message for the user); the others go on."""


@dataclasses.dataclass
class FaceJob:
  """One face to reconstruct: the photo, its crop and where outputs go."""
  input_path: str
  prefix: str  # output path prefix (<out>/<stem>[_f<frame>]_face<k>)
  photo: np.ndarray  # uint8 (H, W, 3)
  face: detect.Face
  crop_box: np.ndarray
  crop: np.ndarray  # float32 (S, S, 3)
  to_photo: object
  target_landmarks: np.ndarray | None  # crop pixels, when given in --faces


def list_inputs(paths):
  """Expands folders (sorted, images and videos directly inside). Returns [(path, kind, error or None)]."""
  out = []
  for p in paths:
    if os.path.isdir(p):
      names = sorted(os.listdir(p))
      files = [os.path.join(p, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
               and os.path.isfile(os.path.join(p, n))]
      if not files:
        out.append((p, 'folder', f'folder {p!r} has no image or video files '
                                 f'({", ".join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)})'))
      for f in files:
        out.append((f, 'video' if f.lower().endswith(VIDEO_EXTENSIONS) else 'image', None))
    elif os.path.isfile(p):
      out.append((p, 'video' if p.lower().endswith(VIDEO_EXTENSIONS) else 'image', None))
    else:
      out.append((p, 'missing', f'input {p!r} does not exist'))
  return out


def read_photo(path, max_pixels=MAX_PIXELS):
  """RGB uint8 (H, W, 3) of an image file; InputError naming the file when it cannot be read or its
  header says more than `max_pixels` pixels (checked before decoding)."""
  try:
    return image_io.read_image(path, max_pixels)
  except image_io.ImageReadError as e:
    raise InputError(str(e)) from None


def unique_stem(path, used):
  """Output stem of an input (its file name), made unique among `used` with -2, -3, ..."""
  stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or 'input'
  name, k = stem, 1
  while name in used:
    k += 1
    name = f'{stem}-{k}'
  used.add(name)
  return name


def find_faces(photo, path, args, annotations):
  """Faces of one photo: from the annotation file, the detector, or the whole image."""
  given = detect.faces_for_image(annotations, path)
  if given:
    return given
  if annotations is not None and args.detector == 'file':
    raise InputError(f'{path}: no entry in --faces {args.faces!r} (keys are paths or file names)')
  if args.detector == 'none':
    h, w = photo.shape[:2]
    return [detect.Face(box=detect.whole_image_box(h, w), source='image')]
  name = args.face_detector
  faces = detect.detect_faces(photo, detector=name, rotations=args.rotations,
                              min_neighbours=args.min_neighbours)
  if not faces:
    hint = ('lower --min-neighbours, ' if name == 'cascade' else
            'try --rotations=0,-30,30,-60,60,90,-90 for a face far from upright, ')
    raise InputError(f'{path}: no face found (detector {name}); give a box or 68 landmarks with --faces FILE, '
                     f'{hint}or use --detector=none for a photo that is already a face crop')
  return faces[:args.max_faces] if args.max_faces > 0 else faces


def make_jobs(photo, path, prefix, args, annotations, image_size, timing=None):
  """One FaceJob per face of a photo (crop, crop-to-photo map, given landmarks in crop pixels). Adds the
  seconds spent finding faces and cropping to timing['detection'] and timing['crop'] when given."""
  jobs = []
  t0 = time.perf_counter()
  try:
    faces = find_faces(photo, path, args, annotations)
  finally:
    t1 = time.perf_counter()
    if timing is not None:
      timing['detection'] = timing.get('detection', 0.0) + (t1 - t0)
  for k, face in enumerate(faces):
    box = face.crop_box(args.box_scale)
    crop, to_photo = detect.crop(photo, box, image_size)
    target = None
    if face.landmarks is not None:
      s = image_size / (box[2] - box[0])
      target = (np.asarray(face.landmarks) - box[:2]) * s
    jobs.append(FaceJob(path, f'{prefix}_face{k}', photo, face, box, crop, to_photo, target))
  if timing is not None:
    timing['crop'] = timing.get('crop', 0.0) + (time.perf_counter() - t1)
  return jobs


def iterate_frames(path, every=1, max_frames=0, max_pixels=MAX_PIXELS):
  """Yields (frame index, RGB uint8) from a video; InputError when it cannot be opened, is empty, or its
  frames have more than `max_pixels` pixels (from the container, before decoding a frame)."""
  cap = cv2.VideoCapture(path)
  if not cap.isOpened():
    raise InputError(f'{path}: cannot open the video (unknown format or codec)')
  try:
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if max_pixels and w * h > max_pixels:
      raise InputError(f'{path}: frames of {w} x {h} = {w * h:,} pixels are above the limit of '
                       f'{int(max_pixels):,}; shrink the video or raise --max-pixels')
    index = got = 0
    while True:
      ok, frame = cap.read()
      if not ok:
        break
      if index % every == 0:
        got += 1
        yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if max_frames and got >= max_frames:
          break
      index += 1
    if index == 0 and got == 0:
      raise InputError(f'{path}: the video has no readable frames')
  finally:
    cap.release()
