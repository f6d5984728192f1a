"""Camera, mesh and SH tests against hand-built matrices, numpy formulas and numerical integration."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facernet_jax.render import camera as cam
from facernet_jax.render import mesh
from facernet_jax.render import sh


def _rx(a):
  c, s = math.cos(a), math.sin(a)
  return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
  c, s = math.cos(a), math.sin(a)
  return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
  c, s = math.cos(a), math.sin(a)
  return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


# ---------------------------------------------------------------- camera

def test_single_axis_rotations_match_hand_built_matrices():
  a = 0.3
  np.testing.assert_allclose(cam.euler_to_rotation(jnp.array([a, 0.0, 0.0])), _rx(a), atol=1e-6)
  np.testing.assert_allclose(cam.euler_to_rotation(jnp.array([0.0, a, 0.0])), _ry(a), atol=1e-6)
  np.testing.assert_allclose(cam.euler_to_rotation(jnp.array([0.0, 0.0, a])), _rz(a), atol=1e-6)
  # Yaw of +90 degrees turns +x into -z (the face's right side goes away from the camera).
  r = np.asarray(cam.euler_to_rotation(jnp.array([0.0, np.pi / 2, 0.0])))
  np.testing.assert_allclose(r @ [1.0, 0.0, 0.0], [0.0, 0.0, -1.0], atol=1e-6)


def test_rotation_composition_and_orthonormality():
  rng = np.random.default_rng(0)
  angles = rng.uniform(-np.pi, np.pi, (20, 3))
  r = np.asarray(cam.euler_to_rotation(angles), np.float64)
  for ang, ri in zip(angles, r):
    np.testing.assert_allclose(ri, _rz(ang[2]) @ _ry(ang[1]) @ _rx(ang[0]), atol=1e-5)
  np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-5)
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)


def test_euler_round_trip():
  rng = np.random.default_rng(1)
  angles = np.stack([rng.uniform(-3.0, 3.0, 50), rng.uniform(-1.5, 1.5, 50), rng.uniform(-3.0, 3.0, 50)], 1)
  back = np.deg2rad(np.asarray(cam.rotation_to_euler_degrees(cam.euler_to_rotation(angles))))
  np.testing.assert_allclose(back, angles, atol=2e-4)
  np.testing.assert_allclose(cam.rotation_to_euler_degrees(_ry(0.5))[1], np.rad2deg(0.5), atol=1e-4)


@pytest.mark.parametrize("yaw", [np.pi / 2, -np.pi / 2])
def test_euler_gimbal_lock_is_finite_and_consistent(yaw):
  r = _rz(0.2) @ _ry(yaw) @ _rx(0.7)
  e = np.asarray(cam.rotation_to_euler(jnp.asarray(r, jnp.float32)))
  assert np.all(np.isfinite(e))
  np.testing.assert_allclose(e[1], yaw, atol=1e-3)
  np.testing.assert_allclose(cam.euler_to_rotation(e), r, atol=1e-3)
  grad = jax.jit(jax.grad(lambda m: jnp.sum(cam.rotation_to_euler(m))))
  g = grad(jnp.asarray(r, jnp.float32))
  assert np.all(np.isfinite(np.asarray(g)))
  g0 = grad(jnp.zeros((3, 3)))
  assert np.all(np.isfinite(np.asarray(g0)))


def test_camera_for_image_size():
  c = cam.Camera.for_image_size(224)
  assert (c.focal, c.cx, c.cy, c.camera_distance, c.image_size) == (1015.0, 112.0, 112.0, 10.0, 224)
  c64 = cam.Camera.for_image_size(64)
  np.testing.assert_allclose([c64.focal, c64.cx], [1015.0 * 64 / 224, 32.0])


def test_transform_and_project_against_hand_computation():
  c = cam.Camera.for_image_size(224)
  v = np.array([[[0.1, 0.2, 0.5], [0.0, 0.0, 0.0], [-0.3, 0.1, -0.4]]], np.float32)
  r = _ry(np.pi / 2)[None].astype(np.float32)
  t = np.array([[0.0, 0.1, 0.2]], np.float32)
  v_cam = np.asarray(cam.transform(v, r, t))
  expected_cam = np.array([[0.5, 0.3, 0.1], [0.0, 0.1, 0.2], [-0.4, 0.2, 0.5]])
  np.testing.assert_allclose(v_cam[0], expected_cam, atol=1e-6)
  p = np.asarray(cam.project(v_cam, c))[0]
  for (x, y, z), (px, py, d) in zip(expected_cam, p):
    depth = 10.0 - z
    np.testing.assert_allclose([px, py, d], [1015 * x / depth + 112, 112 - 1015 * y / depth, depth], rtol=1e-5)


def test_project_finite_at_and_behind_the_camera():
  c = cam.Camera.for_image_size(64)
  pts = jnp.array([[0.1, 0.1, 10.0], [0.1, 0.1, 12.0], [0.1, -0.2, 0.0]])
  out = cam.project(pts, c)
  assert np.all(np.isfinite(np.asarray(out)))
  np.testing.assert_allclose(np.asarray(out)[:, 2], [0.0, -2.0, 10.0], atol=1e-6)
  g = jax.jit(jax.grad(lambda p: jnp.sum(cam.project(p, c))))(pts)
  assert np.all(np.isfinite(np.asarray(g)))


# ---------------------------------------------------------------- mesh

def _uv_sphere(n_lat=12, n_lon=24):
  """UV sphere with poles, triangles oriented outward (checked by the signed volume below)."""
  verts = [[0.0, 0.0, 1.0]]
  for i in range(1, n_lat):
    th = np.pi * i / n_lat
    for j in range(n_lon):
      ph = 2 * np.pi * j / n_lon
      verts.append([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)])
  verts.append([0.0, 0.0, -1.0])
  ring = lambda i, j: 1 + (i - 1) * n_lon + (j % n_lon)  # noqa: E731
  tris = []
  for j in range(n_lon):
    tris.append([0, ring(1, j), ring(1, j + 1)])
    tris.append([len(verts) - 1, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)])
  for i in range(1, n_lat - 1):
    for j in range(n_lon):
      a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
      tris += [[a, c, d], [a, d, b]]
  v, f = np.array(verts), np.array(tris)
  volume = np.sum(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]]))) / 6
  if volume < 0:
    f = f[:, ::-1].copy()
  return v.astype(np.float32), f.astype(np.int32)


def test_sphere_normals_are_radial():
  v, f = _uv_sphere()
  fn = np.asarray(mesh.face_normals(v, f))
  centres = v[f].mean(1)
  cos = np.sum(fn * centres / np.linalg.norm(centres, axis=1, keepdims=True), 1)
  assert cos.min() > 0.95
  vf = mesh.build_vertex_faces(f, len(v))
  vn = np.asarray(mesh.vertex_normals(v, f, vf))
  np.testing.assert_allclose(np.sum(vn * v, 1), 1.0, atol=2e-3)
  np.testing.assert_allclose(np.linalg.norm(vn, axis=1), 1.0, atol=1e-5)


def test_face_normal_counter_clockwise_points_to_camera():
  v = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)  # CCW seen from +z
  np.testing.assert_allclose(mesh.face_normals(v, np.array([[0, 1, 2]])), [[0.0, 0.0, 1.0]], atol=1e-7)
  np.testing.assert_allclose(mesh.face_normals(v, np.array([[0, 2, 1]])), [[0.0, 0.0, -1.0]], atol=1e-7)
  # Batched vertices give batched normals.
  vb = np.stack([v, v * 2.0])
  assert mesh.face_normals(vb, np.array([[0, 1, 2]])).shape == (2, 1, 3)


def _mesh_with_degenerate_faces():
  v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0.3], [2, 2, 0.6], [5, 5, 5]], np.float32)
  # Face 2 has zero area (a repeated vertex), face 3 is collinear; vertex 5 is isolated.
  f = np.array([[0, 1, 2], [1, 3, 2], [4, 4, 1], [0, 3, 4]], np.int32)
  return v, f


def test_vertex_normals_degenerate_faces_no_nan():
  v, f = _mesh_with_degenerate_faces()
  vf = mesh.build_vertex_faces(f, len(v))
  fn = np.asarray(mesh.face_normals(v, f))
  np.testing.assert_array_equal(fn[2:], 0.0)
  vn = np.asarray(mesh.vertex_normals(v, f, vf))
  assert np.all(np.isfinite(vn))
  np.testing.assert_array_equal(vn[5], 0.0)
  # Vertex 0 touches faces 0 (normal +z) and 3 (collinear, zero): its normal is +z.
  np.testing.assert_allclose(vn[0], [0, 0, 1], atol=1e-6)
  w = np.random.default_rng(0).normal(size=vn.shape).astype(np.float32)
  g = jax.jit(jax.grad(lambda x: jnp.sum(mesh.vertex_normals(x, f, vf) * w)))(jnp.asarray(v))
  assert np.all(np.isfinite(np.asarray(g)))
  lighting = jnp.asarray(np.random.default_rng(1).normal(size=(1, 27)), jnp.float32)
  albedo = jnp.full((1, 6, 3), 0.5)

  def colours(x, light):
    return jnp.sum(sh.shade(albedo, mesh.vertex_normals(x, f, vf)[None], light))

  gv, gl = jax.jit(jax.grad(colours, argnums=(0, 1)))(jnp.asarray(v), lighting)
  assert np.all(np.isfinite(np.asarray(gv))) and np.all(np.isfinite(np.asarray(gl)))


def test_vertex_normals_gradient_matches_finite_differences():
  v, f = _uv_sphere(5, 7)
  v = v + np.random.default_rng(2).normal(scale=0.05, size=v.shape).astype(np.float32)
  vf = mesh.build_vertex_faces(f, len(v))
  w = np.random.default_rng(3).normal(size=v.shape)

  def loss64(x):
    x = x.astype(np.float64)
    fn = np.cross(x[f[:, 0]] - x[f[:, 1]], x[f[:, 1]] - x[f[:, 2]])
    fn /= np.linalg.norm(fn, axis=1, keepdims=True)
    vn = np.zeros_like(x)
    np.add.at(vn, f.reshape(-1), np.repeat(fn, 3, axis=0))
    vn /= np.linalg.norm(vn, axis=1, keepdims=True)
    return np.sum(vn * w)

  g = np.asarray(jax.jit(jax.grad(lambda x: jnp.sum(mesh.vertex_normals(x, f, vf) * w)))(jnp.asarray(v)))
  np.testing.assert_allclose(float(jnp.sum(mesh.vertex_normals(v, f, vf) * w)), loss64(v), rtol=1e-5)
  eps = 1e-4
  for idx in [(0, 0), (3, 1), (7, 2), (20, 0)]:
    vp, vm = v.astype(np.float64), v.astype(np.float64)
    vp[idx] += eps
    vm[idx] -= eps
    np.testing.assert_allclose(g[idx], (loss64(vp) - loss64(vm)) / (2 * eps), rtol=2e-3, atol=2e-3)


def test_adjacency_tables_match_brute_force():
  v, f = _uv_sphere(4, 6)
  n = len(v)
  vf = mesh.build_vertex_faces(f, n)
  nb = mesh.vertex_neighbours(f, n)
  assert vf.dtype == np.int32 and nb.dtype == np.int32
  for i in range(n):
    faces = sorted(k for k in range(len(f)) if i in f[k])
    assert sorted(x for x in vf[i] if x >= 0) == faces
    neighbours = sorted({int(u) for k in faces for u in f[k] if u != i})
    assert sorted(x for x in nb[i] if x >= 0) == neighbours
  assert vf.shape[1] == max(np.sum(f == i) for i in range(n))


# ---------------------------------------------------------------- SH

def _deng_sh_numpy(n):
  """Deng et al.'s SH basis written out directly in numpy."""
  a0, a1, a2 = np.pi, 2 * np.pi / np.sqrt(3.0), 2 * np.pi / np.sqrt(8.0)
  c0, c1, c2 = 1 / np.sqrt(4 * np.pi), np.sqrt(3.0) / np.sqrt(4 * np.pi), 3 * np.sqrt(5.0) / np.sqrt(12 * np.pi)
  x, y, z = n[..., 0], n[..., 1], n[..., 2]
  return np.stack([a0 * c0 * np.ones_like(x), -a1 * c1 * y, a1 * c1 * z, -a1 * c1 * x, a2 * c2 * x * y,
                   -a2 * c2 * y * z, 0.5 * c2 / np.sqrt(3.0) * a2 * (3 * z ** 2 - 1), -a2 * c2 * x * z,
                   0.5 * a2 * c2 * (x ** 2 - y ** 2)], -1)


def test_sh_basis_matches_deng_formulas():
  n = np.random.default_rng(0).normal(size=(100, 3))
  n /= np.linalg.norm(n, axis=1, keepdims=True)
  np.testing.assert_allclose(sh.sh_basis(n.astype(np.float32)), _deng_sh_numpy(n), rtol=1e-5, atol=1e-6)


def test_sh_basis_is_orthogonal_on_the_sphere():
  # Gauss-Legendre in cos(theta) x uniform phi integrates these degree-2 products exactly.
  t, wt = np.polynomial.legendre.leggauss(12)
  phi = 2 * np.pi * np.arange(24) / 24
  ct, ph = np.meshgrid(t, phi, indexing="ij")
  st = np.sqrt(1 - ct ** 2)
  n = np.stack([st * np.cos(ph), st * np.sin(ph), ct], -1).reshape(-1, 3)
  w = (wt[:, None] * np.full(24, 2 * np.pi / 24)).reshape(-1)
  y = np.asarray(sh.sh_basis(n.astype(np.float32)), np.float64)
  gram = (y * w[:, None]).T @ y
  a = [np.pi] + [2 * np.pi / np.sqrt(3)] * 3 + [2 * np.pi / np.sqrt(8)] * 5
  np.testing.assert_allclose(gram, np.diag(np.square(a)), atol=1e-4)


def test_shade_matches_numpy_and_ambient_default():
  rng = np.random.default_rng(4)
  n = rng.normal(size=(2, 10, 3))
  n /= np.linalg.norm(n, axis=-1, keepdims=True)
  albedo = rng.uniform(size=(2, 10, 3))
  light = rng.normal(scale=0.3, size=(2, 27))
  out = np.asarray(sh.shade(albedo.astype(np.float32), n.astype(np.float32), light.astype(np.float32)))
  y = _deng_sh_numpy(n)
  expected = np.zeros_like(albedo)
  for b in range(2):
    gamma = light[b].reshape(3, 9).copy()
    gamma[:, 0] += 0.8
    for c in range(3):
      expected[b, :, c] = albedo[b, :, c] * (y[b] @ gamma[c])
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
  # Zero lighting: colour = albedo * 0.8 * pi / sqrt(4 pi) whatever the normal.
  flat = np.asarray(sh.shade(albedo.astype(np.float32), n.astype(np.float32), np.zeros((2, 27), np.float32)))
  np.testing.assert_allclose(flat, albedo * 0.8 * np.sqrt(np.pi) / 2, rtol=1e-5)
