"""Robust image reading: any common file -> uint8 RGB (H, W, 3), or a clear error.

Grayscale -> RGB, RGBA / BGRA -> RGB (alpha dropped), 16-bit -> 8-bit, float
images clipped from [0, 1]. Truncated JPEG / PNG files are rejected (OpenCV
would otherwise return a partly grey image). No pickle is ever involved.
"""
import logging
import os

import cv2
import numpy as np

_FIX = ('re-download or re-export the file (JPEG/PNG, 8- or 16-bit, gray, RGB '
        'or RGBA), or remove it from the folder')


class ImageReadError(ValueError):
  """An image that cannot be decoded; `path` names the file."""

  def __init__(self, path, reason):
    self.path = str(path)
    self.reason = reason
    super().__init__(f'cannot read image {self.path}: {reason}; {_FIX}')


def _truncation_reason(data):
  """Why `data` looks truncated, or None."""
  if data[:3] == b'\xff\xd8\xff':
    # A JPEG ends with the EOI marker (a few padding bytes are tolerated).
    if b'\xff\xd9' not in data[-16:]:
      return 'truncated JPEG (no end-of-image marker)'
  elif data[:8] == b'\x89PNG\r\n\x1a\n':
    if b'IEND' not in data[-16:]:
      return 'truncated PNG (no IEND chunk)'
  return None


def to_rgb_uint8(img):
  """Converts a decoded OpenCV array (BGR order) to uint8 RGB (H, W, 3)."""
  if img.dtype == np.uint16:
    img = (img.astype(np.uint32) * 255 + 32767) // 65535
    img = img.astype(np.uint8)
  elif img.dtype in (np.float32, np.float64):
    img = np.clip(np.nan_to_num(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)
  elif img.dtype != np.uint8:
    raise ValueError(f'unsupported pixel type {img.dtype}')
  if img.ndim == 3 and img.shape[2] == 1:
    img = img[..., 0]
  if img.ndim == 2:
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
  if img.ndim == 3 and img.shape[2] == 3:
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
  if img.ndim == 3 and img.shape[2] == 4:
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
  raise ValueError(f'unsupported image shape {img.shape}')


def decode_image(data, name='<bytes>'):
  """Decodes encoded bytes to uint8 RGB; raises ImageReadError naming `name`."""
  if not data:
    raise ImageReadError(name, 'empty file')
  reason = _truncation_reason(data)
  if reason:
    raise ImageReadError(name, reason)
  img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  if img is None or img.size == 0:
    raise ImageReadError(name, 'not a decodable image (corrupt or unknown format)')
  try:
    img = to_rgb_uint8(img)
  except ValueError as e:
    raise ImageReadError(name, str(e)) from None
  if img.shape[0] < 2 or img.shape[1] < 2:
    raise ImageReadError(name, f'image too small {img.shape[:2]}')
  return np.ascontiguousarray(img)


def read_image(path):
  """Reads `path` to uint8 RGB (H, W, 3); raises ImageReadError naming the file."""
  path = os.fspath(path)
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise ImageReadError(path, f'cannot open ({e.strerror})') from None
  return decode_image(data, path)


def read_image_lenient(path, skipped=None):
  """Like read_image, but logs a warning and returns None for a bad file.

  When `skipped` (a list) is given the path is appended to it, so callers can
  count and report skipped files.
  """
  try:
    return read_image(path)
  except ImageReadError as e:
    logging.warning('skipping image: %s', e)
    if skipped is not None:
      skipped.append(e.path)
    return None


def crop_and_resize(image, box, size, border_value=0):
  """Crops the continuous-pixel box (x0, y0, x1, y1) and resizes it to size x size.

  Returns (crop uint8 (size, size, C), transform) where `transform(points)` maps
  continuous-pixel (..., 2) points of `image` into the crop:
  p' = (p - (x0, y0)) * (size / (x1 - x0), size / (y1 - y0)). Downscaling first
  area-averages by an integer factor (no aliasing); outside is `border_value`.
  """
  x0, y0, x1, y1 = [float(v) for v in box]
  sx, sy = size / (x1 - x0), size / (y1 - y0)
  k = int(max(1, np.floor(1.0 / max(sx, sy))))
  if k > 1:
    h, w = image.shape[:2]
    hh, ww = h // k, w // k
    image = cv2.resize(image[:hh * k, :ww * k], (ww, hh), interpolation=cv2.INTER_AREA)
    # Continuous pixels scale exactly by 1/k under integer area averaging.
    x0, y0, x1, y1 = x0 / k, y0 / k, x1 / k, y1 / k
    sx, sy = sx * k, sy * k
  # warpAffine works in index coordinates (centre at the integer): i' + .5 = (i + .5 - x0) s.
  m = np.array([[sx, 0.0, sx * (0.5 - x0) - 0.5],
                [0.0, sy, sy * (0.5 - y0) - 0.5]], np.float64)
  crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
  ox, oy = float(box[0]), float(box[1])
  fx, fy = size / (float(box[2]) - ox), size / (float(box[3]) - oy)

  def transform(points):
    points = np.asarray(points, np.float64)
    return np.stack([(points[..., 0] - ox) * fx, (points[..., 1] - oy) * fy], -1)

  if crop.ndim == 2:
    crop = crop[..., None]
  return crop, transform
