"""The synthetic model's dense mesh: the same continuous model sampled on a finer (u, v) grid."""
import numpy as np
import pytest
from scipy import interpolate

from facernet_jax.face_model import synthetic

RES, MESH = 12, 34  # factor 3: every third dense row / column is a coarse one.


@pytest.fixture(scope="module")
def models():
  return synthetic.build_synthetic_model(RES, 0), synthetic.build_synthetic_model(RES, 0, MESH)


def _uv(resolution):
  """The grid written out by hand: u, v in [-1, 1], row 0 at the top, and the elliptical
  square-to-disk map (p, q)."""
  u = -1.0 + 2.0 * np.arange(resolution) / (resolution - 1)
  uu, vv = np.meshgrid(u, -u)
  return uu.ravel(), vv.ravel(), (uu * np.sqrt(1 - vv ** 2 / 2)).ravel(), (vv * np.sqrt(1 - uu ** 2 / 2)).ravel()


def _cosines(p, q):
  """All 100 products cos(pi m (p + 1) / 2) cos(pi n (q + 1) / 2), m, n < 10 (order irrelevant here)."""
  return np.stack([np.cos(np.pi * m * (p + 1) / 2) * np.cos(np.pi * n * (q + 1) / 2)
                   for m in range(10) for n in range(10)], 1)


def _coincident(a, resolution, mesh):
  """Rows of a per-vertex array (N, ...) or a basis (3N, K) at the coarse grid's vertices."""
  f = (mesh - 1) // (resolution - 1)
  idx = np.array([i * f * mesh + j * f for i in range(resolution) for j in range(resolution)])
  if a.shape[0] == 3 * mesh * mesh:
    return a.reshape(mesh * mesh, 3, -1)[idx].reshape(3 * len(idx), -1)
  return a[idx]


def test_dense_resolution_and_name():
  assert synthetic.dense_resolution(16) == 151  # 15 x 10 + 1
  assert synthetic.dense_resolution(12) == 155  # 11 x 14 + 1
  assert synthetic.dense_resolution(12, 23) == 23
  d = synthetic.build_synthetic_model(RES, 0, MESH)
  assert d.num_vertices == MESH ** 2 and d.num_triangles == 2 * (MESH - 1) ** 2
  assert d.name == f"synthetic-r{RES}-s0-m{MESH}"
  assert synthetic.build_synthetic_model(RES, 0, RES).name == f"synthetic-r{RES}-s0"
  with pytest.raises(ValueError, match="1 \\+ a multiple of resolution - 1 = 11"):
    synthetic.build_synthetic_model(RES, 0, 30)


def test_dense_model_equals_coarse_model_at_shared_vertices(models):
  coarse, dense = models
  u, v, _, _ = _uv(MESH)
  cu, cv, _, _ = _uv(RES)
  np.testing.assert_allclose(_coincident(np.stack([u, v], 1), RES, MESH), np.stack([cu, cv], 1), atol=1e-12)
  for field in ("mean_shape", "mean_albedo", "shape_basis", "texture_basis", "expression_basis"):
    np.testing.assert_allclose(_coincident(getattr(dense, field), RES, MESH), getattr(coarse, field),
                               rtol=0, atol=2e-6, err_msg=field)
  np.testing.assert_array_equal(_coincident(dense.skin_mask, RES, MESH), coarse.skin_mask)
  # The landmarks sit on shared vertices: same positions for any coefficients.
  rng = np.random.default_rng(0)
  alpha, delta = rng.normal(0, 0.5, coarse.num_shape), rng.normal(0, 0.7, coarse.num_expression)
  np.testing.assert_allclose(dense.shape(alpha, delta)[dense.landmark_indices],
                             coarse.shape(alpha, delta)[coarse.landmark_indices], atol=2e-6)


def test_dense_bases_are_the_continuous_functions_between_the_coarse_vertices(models):
  """Independent reference: the texture basis is (per channel) a combination of the 100 cosines, the
  shape basis one of the cosines per coordinate plus the mean shape's 7 similarity fields. Fit each
  column on the 144 coarse vertices by least squares and evaluate the fit on the dense grid."""
  coarse, dense = models
  _, _, p, q = _uv(RES)
  _, _, dp, dq = _uv(MESH)
  phi, dphi = _cosines(p, q), _cosines(dp, dq)
  tex = coarse.texture_basis.reshape(RES * RES, 3, -1)
  for c in range(3):
    w, *_ = np.linalg.lstsq(phi, tex[:, c].astype(np.float64), rcond=None)
    np.testing.assert_allclose(phi @ w, tex[:, c], atol=1e-5)  # really in the span
    np.testing.assert_allclose(dense.texture_basis.reshape(MESH * MESH, 3, -1)[:, c], dphi @ w,
                               atol=1e-4, err_msg=f"texture channel {c}")

  def design(cos, mean):
    n = len(mean)
    cols = [np.kron(cos, np.eye(3)[:, [k]]) for k in range(3)]  # the cosines on coordinate k
    sim = [np.tile(e, n) for e in np.eye(3)] + [np.cross(e, mean).ravel() for e in np.eye(3)]
    return np.concatenate(cols + [np.stack(sim + [mean.ravel()], 1)], 1)

  a, da = design(phi, coarse.mean_shape.astype(np.float64)), design(dphi, dense.mean_shape.astype(np.float64))
  w, *_ = np.linalg.lstsq(a, coarse.shape_basis.astype(np.float64), rcond=None)
  np.testing.assert_allclose(a @ w, coarse.shape_basis, atol=1e-5)
  np.testing.assert_allclose(dense.shape_basis, da @ w, atol=1e-4)


def test_dense_mean_surface_is_face_like(models):
  """The dense mean face resolves what the 12 x 12 grid misses: the nose tip is the front-most point
  (at landmark 30), the eye sockets lie behind the brow ridge and the cheeks; normals point outward."""
  _, dense = models
  v, lm = dense.mean_shape, dense.mean_shape[dense.landmark_indices]
  tip = v[np.argmax(v[:, 2])]
  assert np.hypot(*(tip[:2] - lm[30, :2])) < 0.08, (tip, lm[30])
  assert tip[2] - lm[0, 2] > 0.5  # the nose stands out of the face
  z_at = lambda xy: v[np.argmin(np.sum((v[:, :2] - xy) ** 2, 1)), 2]  # noqa: E731
  for eye in (slice(36, 42), slice(42, 48)):
    centre = lm[eye, :2].mean(0)
    assert z_at(centre) < z_at(centre + [0, 0.16]) - 0.02  # brow ridge
    assert z_at(centre) < z_at(centre - [0, 0.3]) - 0.02  # cheek
  tri = dense.triangles
  n = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
  assert np.mean(n[:, 2] > 0) > 0.97


def test_upsample_vertex_values_is_bilinear():
  rng = np.random.default_rng(1)
  values = rng.normal(size=(2, RES * RES, 3))
  out = synthetic.upsample_vertex_values(values, RES, MESH)
  t = np.arange(RES)
  s = np.arange(MESH) / 3.0
  ss, tt = np.meshgrid(s, s, indexing="ij")
  pts = np.stack([ss.ravel(), tt.ravel()], 1)
  for b in range(2):
    ref = interpolate.RegularGridInterpolator((t, t), values[b].reshape(RES, RES, 3))(pts)
    np.testing.assert_allclose(out[b], ref, atol=1e-12)


def test_decode_on_mesh_keeps_trained_bases_changes_at_shared_vertices(models):
  coarse, dense = models
  rng = np.random.default_rng(2)
  alpha, beta = rng.normal(0, 0.5, coarse.num_shape), rng.normal(0, 0.7, coarse.num_texture)
  delta = rng.normal(0, 0.7, coarse.num_expression)
  # Plain bases: the dense model's own Eqs 1-2.
  v, a = synthetic.decode_on_mesh(dense, RES, coarse.shape(alpha, delta), coarse.albedo(beta),
                                  alpha, beta, delta)
  np.testing.assert_allclose(v, dense.shape(alpha, delta), atol=1e-5)
  np.testing.assert_allclose(a, dense.albedo(beta), atol=1e-5)
  # Trained bases moved the coarse vertices: the dense mesh passes through the moved ones.
  moved = coarse.shape(alpha, delta) + rng.normal(0, 0.01, (RES * RES, 3))
  tinted = coarse.albedo(beta) + rng.normal(0, 0.01, (RES * RES, 3))
  v, a = synthetic.decode_on_mesh(dense, RES, moved, tinted, alpha, beta, delta)
  np.testing.assert_allclose(_coincident(v, RES, MESH), moved, atol=1e-5)
  np.testing.assert_allclose(_coincident(a, RES, MESH), tinted, atol=1e-5)
  np.testing.assert_allclose(v[dense.landmark_indices], moved[coarse.landmark_indices], atol=1e-5)
