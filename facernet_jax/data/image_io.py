"""Robust image reading: any common file -> uint8 RGB (H, W, 3), or a clear error.

Grayscale -> RGB, RGBA / BGRA -> RGB (alpha dropped), 16-bit -> 8-bit, float
images clipped from [0, 1]. Truncated JPEG / PNG files are rejected (OpenCV
would otherwise return a partly grey image). No pickle is ever involved.

`max_pixels` refuses images larger than that before decoding: the width and height are read from the
file header (`header_size`: JPEG, PNG, BMP, GIF, WebP, TIFF, PBM/PGM/PPM; other formats are decoded
unchecked, within OpenCV's own limit of 2^30 pixels).
"""
import logging
import os
import re
import struct

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


def _jpeg_size(data):
  i = 2
  while i + 9 < len(data):
    if data[i] != 0xFF:
      return None
    marker = data[i + 1]
    if marker == 0xFF:  # fill byte
      i += 1
      continue
    if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
      i += 2
      continue
    length = struct.unpack('>H', data[i + 2:i + 4])[0]
    # Start-of-frame markers (baseline, progressive, lossless, ...), not DHT C4 / JPG C8 / DAC CC.
    if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
      h, w = struct.unpack('>HH', data[i + 5:i + 9])
      return w, h
    i += 2 + length
  return None


def _tiff_size(data):
  end = '<' if data[:2] == b'II' else '>'
  try:
    (ifd,) = struct.unpack(end + 'I', data[4:8])
    (n,) = struct.unpack(end + 'H', data[ifd:ifd + 2])
    size = {}
    for k in range(n):
      tag, typ, _, value = struct.unpack(end + 'HHI4s', data[ifd + 2 + 12 * k:ifd + 14 + 12 * k])
      if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
        size[tag] = struct.unpack(end + ('H' if typ == 3 else 'I'), value[:2 if typ == 3 else 4])[0]
    return size[256], size[257]
  except (struct.error, KeyError):
    return None


def header_size(data):
  """(width, height) from an encoded image's header without decoding it, or None (unknown format or a
  header too broken to read, left to the decoder)."""
  if data[:8] == b'\x89PNG\r\n\x1a\n' and data[12:16] == b'IHDR':
    return struct.unpack('>II', data[16:24])
  if data[:3] == b'\xff\xd8\xff':
    return _jpeg_size(data)
  if data[:2] == b'BM' and len(data) >= 26:
    w, h = struct.unpack('<ii', data[18:26])
    return abs(w), abs(h)
  if data[:6] in (b'GIF87a', b'GIF89a'):
    return struct.unpack('<HH', data[6:10])
  if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
    kind = data[12:16]
    if kind == b'VP8 ':
      w, h = struct.unpack('<HH', data[26:30])
      return w & 0x3FFF, h & 0x3FFF
    if kind == b'VP8L':
      b = int.from_bytes(data[21:25], 'little')
      return (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
    if kind == b'VP8X':
      return int.from_bytes(data[24:27], 'little') + 1, int.from_bytes(data[27:30], 'little') + 1
    return None
  if data[:4] in (b'II*\x00', b'MM\x00*'):
    return _tiff_size(data)
  m = re.match(rb'P[1-6](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)', data[:1024])
  if m:
    return int(m.group(1)), int(m.group(2))
  return None


def decode_image(data, name='<bytes>', max_pixels=None):
  """Decodes encoded bytes to uint8 RGB; raises ImageReadError naming `name`. Images whose header says
  more than `max_pixels` pixels are refused before decoding."""
  if not data:
    raise ImageReadError(name, 'empty file')
  reason = _truncation_reason(data)
  if reason:
    raise ImageReadError(name, reason)
  if max_pixels:
    size = header_size(data)
    if size and size[0] * size[1] > max_pixels:
      raise ImageReadError(name, f'{size[0]} x {size[1]} = {size[0] * size[1]:,} pixels is above the limit of '
                                 f'{int(max_pixels):,} (refused before decoding; shrink the image, or raise '
                                 'the limit, e.g. reconstruct --max-pixels)')
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


def read_image(path, max_pixels=None):
  """Reads `path` to uint8 RGB (H, W, 3); raises ImageReadError naming the file (see decode_image)."""
  path = os.fspath(path)
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise ImageReadError(path, f'cannot open ({e.strerror})') from None
  return decode_image(data, path, max_pixels)


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
