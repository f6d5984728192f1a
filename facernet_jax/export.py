"""Mesh, texture, landmark and pose writers: OBJ (vertex colours), PLY (vertex colours), OBJ + MTL + PNG (UVs).

Every writer is atomic: bytes go to a temporary file in the target folder that is renamed into place,
so a failure never leaves a partial file. `StagedFiles` extends this to a group of files (one face's
outputs): either all of them appear or none does.

UV coordinates (`model_uvs`): the embedded synthetic model is a regular vertex grid, so its UVs are the
grid coordinates; any other model (BFM format) gets a cylindrical unwrap of its mean shape around the
vertical axis (u = angle, v = height). `bake_texture` interpolates per-vertex colours linearly over the
UV layout (a Delaunay triangulation of the UVs, which matches the mesh wherever the unwrap is one-to-one).
"""
import io
import json
import os
import re
import tempfile

import cv2
import numpy as np
from scipy import interpolate


# ----------------------------------------------------------------------------- atomic writing

def atomic_write_bytes(path, data):
  """Writes `data` to `path` through a temporary file and a rename: no partial file on failure."""
  with StagedFiles() as staged:
    staged.write_bytes(path, data)
  return os.fspath(path)


class StagedFiles:
  """Stages several files as temporaries and renames them all on `commit` (or on leaving a `with` block
  without an exception); `abort` (or an exception) deletes the temporaries and leaves no output."""

  def __init__(self):
    self._staged = []  # (temporary path, final path)

  def write_bytes(self, path, data):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='-' + os.path.basename(path), dir=folder)
    self._staged.append((tmp, path))
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    return path

  def write_text(self, path, text):
    return self.write_bytes(path, text.encode('utf-8'))

  @property
  def paths(self):
    return [final for _, final in self._staged]

  def commit(self):
    for tmp, final in self._staged:
      os.replace(tmp, final)
    self._staged = []

  def abort(self):
    for tmp, _ in self._staged:
      if os.path.exists(tmp):
        os.unlink(tmp)
    self._staged = []

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is None:
      self.commit()
    else:
      self.abort()
    return False


# ----------------------------------------------------------------------------- encoders (bytes)

def _check_mesh(vertices, triangles, colours=None, uvs=None):
  v = np.asarray(vertices, np.float64)
  t = np.asarray(triangles)
  if v.ndim != 2 or v.shape[1] != 3:
    raise ValueError(f'vertices must be (N, 3), got {v.shape}')
  if t.ndim != 2 or t.shape[1] != 3 or not np.issubdtype(t.dtype, np.integer):
    raise ValueError(f'triangles must be integer (F, 3), got {t.dtype} {t.shape}')
  if t.size and (t.min() < 0 or t.max() >= len(v)):
    raise ValueError(f'triangle indices must lie in [0, {len(v)}), got [{t.min()}, {t.max()}]')
  if not np.all(np.isfinite(v)):
    raise ValueError('vertices contain NaN/inf')
  if colours is not None and np.shape(colours) != v.shape:
    raise ValueError(f'colours must be (N, 3) = {v.shape}, got {np.shape(colours)}')
  if uvs is not None and np.shape(uvs) != (len(v), 2):
    raise ValueError(f'uvs must be ({len(v)}, 2), got {np.shape(uvs)}')
  return v, t.astype(np.int64)


def _rows(fmt, arr):
  """Formats each row of a 2-D array with `fmt` (a %-format for one row), joined by newlines."""
  if len(arr) == 0:
    return ''
  return '\n'.join(fmt % tuple(r) for r in arr.tolist()) + '\n'


def obj_text(vertices, triangles, colours=None, uvs=None, mtl_name=None, material='face', comment=None):
  """Wavefront OBJ text. Colours in [0, 1] go on the `v` lines (`v x y z r g b`, read by MeshLab/Blender);
  with `uvs`, faces are `f a/a b/b c/c` and `mtl_name` is referenced. Indices are 1-based."""
  v, t = _check_mesh(vertices, triangles, colours, uvs)
  out = io.StringIO()
  out.write(f'# {comment or "facernet_jax"}\n# {len(v)} vertices, {len(t)} triangles\n')
  if mtl_name:
    out.write(f'mtllib {mtl_name}\n')
  if colours is not None:
    c = np.clip(np.asarray(colours, np.float64), 0.0, 1.0)
    out.write(_rows('v %.6f %.6f %.6f %.4f %.4f %.4f', np.concatenate([v, c], 1)))
  else:
    out.write(_rows('v %.6f %.6f %.6f', v))
  if uvs is not None:
    out.write(_rows('vt %.6f %.6f', np.asarray(uvs, np.float64)))
    if mtl_name:
      out.write(f'usemtl {material}\n')
    out.write(_rows('f %d/%d %d/%d %d/%d', np.repeat(t + 1, 2, axis=1)))
  else:
    out.write(_rows('f %d %d %d', t + 1))
  return out.getvalue()


def mtl_text(texture_name, material='face'):
  """MTL text for one diffuse-textured material."""
  return (f'# facernet_jax\nnewmtl {material}\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\n'
          f'Ks 0.000 0.000 0.000\nd 1.0\nillum 1\nmap_Kd {texture_name}\n')


def ply_bytes(vertices, triangles, colours=None, binary=True):
  """PLY (binary little-endian or ASCII): float x y z, uchar red green blue, uchar-counted int faces."""
  v, t = _check_mesh(vertices, triangles, colours)
  fmt = 'binary_little_endian' if binary else 'ascii'
  header = [f'ply', f'format {fmt} 1.0', 'comment facernet_jax', f'element vertex {len(v)}',
            'property float x', 'property float y', 'property float z']
  if colours is not None:
    header += ['property uchar red', 'property uchar green', 'property uchar blue']
  header += [f'element face {len(t)}', 'property list uchar int vertex_indices', 'end_header']
  head = ('\n'.join(header) + '\n').encode('ascii')
  c8 = None if colours is None else np.round(np.clip(np.asarray(colours, np.float64), 0, 1) * 255).astype(np.uint8)
  if binary:
    fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
    if c8 is not None:
      fields += [('r', 'u1'), ('g', 'u1'), ('b', 'u1')]
    vrec = np.zeros(len(v), dtype=fields)
    vrec['x'], vrec['y'], vrec['z'] = v[:, 0], v[:, 1], v[:, 2]
    if c8 is not None:
      vrec['r'], vrec['g'], vrec['b'] = c8[:, 0], c8[:, 1], c8[:, 2]
    frec = np.zeros(len(t), dtype=[('n', 'u1'), ('i', '<i4', (3,))])
    frec['n'] = 3
    frec['i'] = t
    return head + vrec.tobytes() + frec.tobytes()
  body = io.StringIO()
  if c8 is not None:
    for p, c in zip(v.astype(np.float32).tolist(), c8.tolist()):
      body.write('%r %r %r %d %d %d\n' % (*p, *c))
  else:
    body.write(_rows('%r %r %r', v.astype(np.float32).astype(np.float64)))
  body.write(_rows('3 %d %d %d', t))
  return head + body.getvalue().encode('ascii')


def png_bytes(image):
  """PNG bytes of an RGB (H, W, 3) or grey (H, W) image, float in [0, 1] or uint8 / uint16."""
  a = np.asarray(image)
  if a.dtype.kind == 'f':
    a = np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)
  if a.ndim == 3 and a.shape[2] == 3:
    a = a[..., ::-1]  # RGB -> BGR for OpenCV
  elif a.ndim == 3 and a.shape[2] == 4:
    a = a[..., [2, 1, 0, 3]]
  ok, buf = cv2.imencode('.png', np.ascontiguousarray(a))
  if not ok:
    raise ValueError(f'could not encode an image of shape {a.shape} dtype {a.dtype} as PNG')
  return buf.tobytes()


def json_text(obj):
  """JSON with numpy scalars/arrays converted and NaN written as null."""
  def clean(o):
    if isinstance(o, dict):
      return {str(k): clean(x) for k, x in o.items()}
    if isinstance(o, (list, tuple)):
      return [clean(x) for x in o]
    if isinstance(o, np.ndarray):
      return clean(o.tolist())
    if isinstance(o, (float, np.floating)):
      return float(o) if np.isfinite(o) else None
    if isinstance(o, (np.integer,)):
      return int(o)
    if isinstance(o, np.bool_):
      return bool(o)
    return o
  return json.dumps(clean(obj), indent=1) + '\n'


def npz_bytes(**arrays):
  buf = io.BytesIO()
  np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
  return buf.getvalue()


# ----------------------------------------------------------------------------- UVs and texture

def grid_uvs(resolution):
  """UVs of a row-major `resolution x resolution` vertex grid (row 0 at the top, v up)."""
  i, j = np.meshgrid(np.arange(resolution), np.arange(resolution), indexing='ij')
  return np.stack([j / (resolution - 1), 1.0 - i / (resolution - 1)], -1).reshape(-1, 2)


def cylindrical_uvs(vertices):
  """Cylindrical unwrap around the vertical (y) axis through a point behind the face: u = angle, v = y,
  both scaled to [0, 1] with the same metric scale so the texture is not stretched."""
  v = np.asarray(vertices, np.float64)
  centre = v.mean(0)
  width = np.ptp(v[:, 0])
  radius = 0.75 * max(width, 1e-9)
  axis_z = v[:, 2].max() - radius  # the axis lies about one radius behind the nose tip
  theta = np.arctan2(v[:, 0] - centre[0], v[:, 2] - axis_z)
  arc = theta * radius  # arc length around the cylinder, metric units like y
  u = arc - arc.min()
  h = v[:, 1] - v[:, 1].min()
  span = max(u.max(), h.max(), 1e-9)
  # Centre the shorter extent inside [0, 1].
  return np.stack([u / span + 0.5 * (1 - u.max() / span), h / span + 0.5 * (1 - h.max() / span)], 1)


def model_uvs(model):
  """UVs for a MorphableModel: the grid for the embedded synthetic model, else a cylindrical unwrap."""
  m = re.fullmatch(r'synthetic-r(\d+)-s\d+(?:-m(\d+))?', getattr(model, 'name', '') or '')
  side = m and int(m.group(2) or m.group(1))
  if m and side ** 2 == model.num_vertices:
    return grid_uvs(side)
  return cylindrical_uvs(model.mean_shape)


def bake_texture(uvs, colours, size=512):
  """Bakes per-vertex colours (N, 3) in [0, 1] into a (size, size, 3) UV texture (row 0 is v = 1).

  Linear interpolation inside the UV layout; texels outside it take the nearest vertex colour so that
  bilinear texture filtering does not bleed black into the face at the seams.
  """
  uvs = np.asarray(uvs, np.float64)
  colours = np.asarray(colours, np.float64)
  c = (np.arange(size) + 0.5) / size
  uu, vv = np.meshgrid(c, 1.0 - c)
  pts = np.stack([uu.ravel(), vv.ravel()], 1)
  tex = interpolate.LinearNDInterpolator(uvs, colours, fill_value=np.nan)(pts)
  hole = np.isnan(tex[:, 0])
  if hole.any():
    tex[hole] = interpolate.NearestNDInterpolator(uvs, colours)(pts[hole])
  return np.clip(tex.reshape(size, size, 3), 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- file writers

def write_obj(path, vertices, triangles, colours=None):
  """OBJ with optional per-vertex colours (atomic)."""
  return atomic_write_bytes(path, obj_text(vertices, triangles, colours).encode())


def write_ply(path, vertices, triangles, colours=None, binary=True):
  """PLY with optional per-vertex colours (atomic)."""
  return atomic_write_bytes(path, ply_bytes(vertices, triangles, colours, binary))


def write_json(path, obj):
  return atomic_write_bytes(path, json_text(obj).encode())


def stage_textured_obj(staged, obj_path, vertices, triangles, uvs, texture):
  """Stages `X.obj` + `X.mtl` + `X.png` (texture image (T, T, 3) in [0, 1]) into a `StagedFiles`."""
  obj_path = os.fspath(obj_path)
  stem = os.path.splitext(obj_path)[0]
  base = os.path.basename(stem)
  staged.write_text(obj_path, obj_text(vertices, triangles, uvs=uvs, mtl_name=base + '.mtl'))
  staged.write_text(stem + '.mtl', mtl_text(base + '.png'))
  staged.write_bytes(stem + '.png', png_bytes(texture))
  return [obj_path, stem + '.mtl', stem + '.png']


def write_textured_obj(obj_path, vertices, triangles, uvs, texture):
  """Writes OBJ + MTL + PNG texture together: all three or none."""
  with StagedFiles() as staged:
    return stage_textured_obj(staged, obj_path, vertices, triangles, uvs, texture)
