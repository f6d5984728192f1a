"""Tests of facernet_jax.export: files are parsed back with small independent readers written here."""
import struct

import cv2
import numpy as np
import pytest

from facernet_jax import export


def _mesh():
  """A unit square split into two triangles plus a tetrahedron apex: 5 vertices, 4 faces."""
  v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 0.7]], np.float64)
  f = np.array([[0, 1, 2], [0, 2, 3], [0, 1, 4], [1, 2, 4]], np.int32)
  c = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5], [1, 1, 1]], np.float64)
  return v, f, c


def _parse_obj(text):
  v, vt, f, other = [], [], [], []
  for line in text.splitlines():
    parts = line.split()
    if not parts or parts[0] == '#':
      continue
    if parts[0] == 'v':
      v.append([float(x) for x in parts[1:]])
    elif parts[0] == 'vt':
      vt.append([float(x) for x in parts[1:]])
    elif parts[0] == 'f':
      f.append([[int(i) for i in p.split('/')] for p in parts[1:]])
    else:
      other.append(parts)
  return np.array(v), np.array(vt), np.array(f), other


def _parse_ply(data):
  """A tiny PLY reader for exactly the layouts the exporter promises (independent of numpy dtypes)."""
  end = data.index(b'end_header\n') + len(b'end_header\n')
  header = data[:end].decode('ascii').splitlines()
  assert header[0] == 'ply'
  fmt = header[1].split()[1]
  nv = int(next(h for h in header if h.startswith('element vertex')).split()[2])
  nf = int(next(h for h in header if h.startswith('element face')).split()[2])
  has_colour = 'property uchar red' in header
  body = data[end:]
  verts, cols, faces = [], [], []
  if fmt == 'ascii':
    lines = body.decode('ascii').splitlines()
    for line in lines[:nv]:
      x = line.split()
      verts.append([float(a) for a in x[:3]])
      if has_colour:
        cols.append([int(a) for a in x[3:6]])
    for line in lines[nv:nv + nf]:
      x = [int(a) for a in line.split()]
      assert x[0] == 3
      faces.append(x[1:])
    assert len(lines) == nv + nf
  else:
    assert fmt == 'binary_little_endian'
    off = 0
    vsize = 12 + (3 if has_colour else 0)
    for _ in range(nv):
      verts.append(struct.unpack_from('<3f', body, off))
      if has_colour:
        cols.append(struct.unpack_from('<3B', body, off + 12))
      off += vsize
    for _ in range(nf):
      n = struct.unpack_from('<B', body, off)[0]
      faces.append(struct.unpack_from(f'<{n}i', body, off + 1))
      off += 1 + 4 * n
    assert off == len(body)
  return header, np.array(verts), np.array(cols), np.array(faces)


def test_obj_with_vertex_colours(tmp_path):
  v, f, c = _mesh()
  path = export.write_obj(tmp_path / 'm.obj', v, f, c)
  pv, pvt, pf, _ = _parse_obj(open(path).read())
  assert pv.shape == (5, 6) and pvt.size == 0 and pf.shape == (4, 3, 1)
  np.testing.assert_allclose(pv[:, :3], v, atol=1e-6)
  np.testing.assert_allclose(pv[:, 3:], c, atol=1e-4)
  np.testing.assert_array_equal(pf[..., 0] - 1, f)  # 1-based indices


def test_textured_obj_mtl_png(tmp_path):
  v, f, c = _mesh()
  uvs = v[:, :2] * 0.8 + 0.1
  tex = np.zeros((8, 8, 3), np.float32)
  tex[..., 0] = 1.0  # red
  files = export.write_textured_obj(tmp_path / 'face.obj', v, f, uvs, tex)
  assert [p.rsplit('/', 1)[1] for p in files] == ['face.obj', 'face.mtl', 'face.png']
  pv, pvt, pf, other = _parse_obj((tmp_path / 'face.obj').read_text())
  assert ['mtllib', 'face.mtl'] in other and ['usemtl', 'face'] in other
  np.testing.assert_allclose(pvt, uvs, atol=1e-6)
  np.testing.assert_array_equal(pf[..., 0], pf[..., 1])  # vertex index == uv index
  np.testing.assert_array_equal(pf[..., 0] - 1, f)
  mtl = (tmp_path / 'face.mtl').read_text().split('\n')
  assert 'newmtl face' in mtl and 'map_Kd face.png' in mtl
  png = cv2.imread(str(tmp_path / 'face.png'), cv2.IMREAD_UNCHANGED)
  assert png.shape == (8, 8, 3) and np.all(png[..., 2] == 255) and np.all(png[..., :2] == 0)  # BGR on disk
  assert sorted(p.name for p in tmp_path.iterdir()) == ['face.mtl', 'face.obj', 'face.png']


@pytest.mark.parametrize('binary', [True, False])
def test_ply_parsed_back(tmp_path, binary):
  v, f, c = _mesh()
  export.write_ply(tmp_path / 'm.ply', v, f, c, binary=binary)
  header, pv, pc, pf = _parse_ply((tmp_path / 'm.ply').read_bytes())
  assert 'element vertex 5' in header and 'element face 4' in header
  assert ('format binary_little_endian 1.0' in header) == binary
  np.testing.assert_allclose(pv, v, atol=1e-6)
  np.testing.assert_array_equal(pc, np.round(c * 255))
  np.testing.assert_array_equal(pf, f)
  export.write_ply(tmp_path / 'n.ply', v, f, binary=binary)
  header, pv, pc, pf = _parse_ply((tmp_path / 'n.ply').read_bytes())
  assert 'property uchar red' not in header and pc.size == 0 and pf.shape == (4, 3)


def test_writers_reject_bad_meshes_and_leave_no_file(tmp_path):
  v, f, c = _mesh()
  with pytest.raises(ValueError, match='triangle indices'):
    export.write_obj(tmp_path / 'a.obj', v, f + 3)
  with pytest.raises(ValueError, match='NaN'):
    export.write_ply(tmp_path / 'a.ply', v * np.nan, f)
  with pytest.raises(ValueError, match='colours'):
    export.write_ply(tmp_path / 'a.ply', v, f, c[:3])
  assert list(tmp_path.iterdir()) == []


def test_staged_files_all_or_nothing(tmp_path):
  with pytest.raises(RuntimeError):
    with export.StagedFiles() as s:
      s.write_text(tmp_path / 'one.txt', 'a')
      s.write_text(tmp_path / 'two.txt', 'b')
      raise RuntimeError('failure after two files')
  assert list(tmp_path.iterdir()) == []
  with export.StagedFiles() as s:
    s.write_text(tmp_path / 'one.txt', 'a')
    s.write_bytes(tmp_path / 'sub' / 'two.bin', b'b')
  assert (tmp_path / 'one.txt').read_text() == 'a' and (tmp_path / 'sub' / 'two.bin').read_bytes() == b'b'
  assert not [p for p in tmp_path.rglob('.tmp-*')]


def test_json_and_npz(tmp_path):
  export.write_json(tmp_path / 'x.json', {'a': np.float32(1.5), 'b': np.arange(3), 'c': float('nan'),
                                         'd': np.bool_(True)})
  import json
  assert json.loads((tmp_path / 'x.json').read_text()) == {'a': 1.5, 'b': [0, 1, 2], 'c': None, 'd': True}
  export.atomic_write_bytes(tmp_path / 'c.npz', export.npz_bytes(x=np.ones(3)))
  np.testing.assert_array_equal(np.load(tmp_path / 'c.npz')['x'], np.ones(3))


def test_grid_uvs_match_synthetic_model_layout():
  from facernet_jax import face_model
  model = face_model.build_synthetic_model(resolution=12)
  uv = export.model_uvs(model)
  assert uv.shape == (144, 2) and uv.min() == 0 and uv.max() == 1
  # u follows the model's x, v its y (row 0 at the top): ranks agree along a row and a column.
  x, y = model.mean_shape[:, 0].reshape(12, 12), model.mean_shape[:, 1].reshape(12, 12)
  u, vv = uv[:, 0].reshape(12, 12), uv[:, 1].reshape(12, 12)
  assert np.all(np.diff(u[6]) > 0) and np.all(np.diff(x[6]) > 0)
  assert np.all(np.diff(vv[:, 6]) < 0) and np.all(np.diff(y[:, 6]) < 0)
  # Triangles keep their orientation in UV space (no fold-overs).
  t = model.triangles
  a, b, c = uv[t[:, 0]], uv[t[:, 1]], uv[t[:, 2]]
  cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
  assert np.all(cross > 0)


def test_cylindrical_uvs_on_a_cylinder():
  # Points on a cylinder of radius 1 around the y axis (front half): u must be linear in the angle.
  ang = np.linspace(-1.2, 1.2, 25)
  ys = np.linspace(-1, 1, 11)
  aa, yy = np.meshgrid(ang, ys)
  pts = np.stack([np.sin(aa), yy, np.cos(aa)], -1).reshape(-1, 3)
  uv = export.cylindrical_uvs(pts)
  assert uv.min() >= 0 and uv.max() <= 1 + 1e-12
  u = uv[:, 0].reshape(11, 25)
  assert np.all(np.diff(u, axis=1) > 0)
  np.testing.assert_allclose(np.diff(uv[:, 1].reshape(11, 25), axis=0).std(), 0, atol=1e-12)


def test_bake_texture_reproduces_linear_colours():
  rng = np.random.default_rng(0)
  uv = np.concatenate([rng.uniform(0, 1, (300, 2)), [[0, 0], [1, 0], [0, 1], [1, 1]]])
  colours = np.stack([uv[:, 0], uv[:, 1], 0.25 + 0.5 * uv[:, 0] * 0], 1)
  tex = export.bake_texture(uv, colours, size=16)
  c = (np.arange(16) + 0.5) / 16
  np.testing.assert_allclose(tex[0, :, 0], c, atol=1e-5)  # u along columns
  np.testing.assert_allclose(tex[:, 0, 1], c[::-1], atol=1e-5)  # row 0 is v = 1
  np.testing.assert_allclose(tex[..., 2], 0.25, atol=1e-6)
  # Outside the UV hull: nearest vertex colour, never black.
  tex2 = export.bake_texture(np.array([[0.4, 0.4], [0.6, 0.4], [0.5, 0.6]]), np.full((3, 3), 0.7), size=8)
  np.testing.assert_allclose(tex2, 0.7, atol=1e-6)
