"""An embedded, file-free SYNTHETIC morphable model (not a real face model).

It stands in for the BFM 2009 (which users must request from the University of Basel) so that training,
tests and the synthetic dataset run anywhere. It is deterministic in ``(resolution, seed)``:

* topology: a ``resolution x resolution`` vertex grid mapped onto an oval face outline, two triangles per
  cell, listed counter-clockwise as seen from the camera (+z) like the BFM's, so Deng's normals point
  out of the face. ``resolution=189`` gives 35,721 vertices and 70,688 triangles (the BFM front model has
  35,709 and 70,789);
* mean shape: a height field ``z(x, y)`` (a flattened ellipsoid cap plus Gaussian features: forehead, brow
  ridge, eye sockets, nose, cheekbones, lips, chin), in BFM decimetre units (face about 1.5 wide, 1.8
  high), re-centred on its vertex mean like Deng's ParametricFaceModel;
* bases: smooth random fields (low-frequency cosines on the face oval) with decaying standard deviations,
  orthogonal columns, scaled so that coefficients ~ N(0, 1) are the prior (like Deng's scaled BFM
  bases), the shape modes free of rigid motion and scale (like a PCA of aligned scans); 199 shape,
  199 texture, 64 expression modes. Expression modes are localised on the mouth / jaw,
  brows and eyes (the first six are jaw-open, smile, brow-raise, eye-close, pucker and frown);
* albedo: skin tone in [0, 1] with darker brows, reddish lips, eyes and nostrils;
* landmarks: the vertices nearest (in x, y) to a hand-made 68-point iBUG template (jaw 0-16 along the
  lower face outline, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67; point 0 on the subject's right,
  which is the image's left, -x);
* skin mask: the oval without eyes, brows, lips and nostrils;
* dense mesh: all of the above are continuous functions of the (u, v) grid, orthonormalised and scaled
  on the ``resolution`` grid, so ``mesh_resolution`` samples the same model more finely (equal at the
  shared vertices): training uses the coarse mesh, ``reconstruct`` writes the dense one.
"""
import functools

import numpy as np
from scipy import linalg

from facernet_jax.coefficients import COEFFICIENT_SIZES
from facernet_jax.face_model.model import MorphableModel
from facernet_jax.topology import build_vertex_faces

NUM_SHAPE = COEFFICIENT_SIZES['shape']  # basis sizes = the regressed coefficients of Eq 10
NUM_TEXTURE = COEFFICIENT_SIZES['texture']
NUM_EXPRESSION = COEFFICIENT_SIZES['expression']

# Face outline: x = HALF_WIDTH * p * taper(q), y = CENTRE_Y + HALF_HEIGHT * q for (p, q) in the unit disk.
HALF_WIDTH = 0.76
HALF_HEIGHT = 0.90
CENTRE_Y = 0.05
_NUM_COSINES = 10  # per axis: 100 smooth fields span the bases


def _template_68():
  """A hand-made frontal 68-point iBUG template (x right, y up, BFM units, before re-centring)."""
  jaw_angles = np.deg2rad(np.linspace(168.0, 372.0, 17))
  jaw_p, jaw_q = 0.97 * np.cos(jaw_angles), 0.97 * np.sin(jaw_angles)
  jx, jy = _disk_to_face(jaw_p, jaw_q)
  brow_r = [(-0.57, 0.43), (-0.49, 0.49), (-0.38, 0.515), (-0.28, 0.51), (-0.19, 0.485)]
  brow_l = [(-x, y) for x, y in reversed(brow_r)]
  nose = [(0.0, 0.29), (0.0, 0.17), (0.0, 0.05), (0.0, -0.05),
          (-0.12, -0.135), (-0.065, -0.15), (0.0, -0.16), (0.065, -0.15), (0.12, -0.135)]
  eye_r = [(-0.43, 0.29), (-0.365, 0.33), (-0.275, 0.33), (-0.19, 0.29), (-0.275, 0.265),
           (-0.365, 0.265)]
  eye_l = [(0.19, 0.29), (0.275, 0.33), (0.365, 0.33), (0.43, 0.29), (0.365, 0.265), (0.275, 0.265)]
  mouth_outer = [(-0.25, -0.38), (-0.16, -0.32), (-0.06, -0.285), (0.0, -0.295), (0.06, -0.285),
                 (0.16, -0.32), (0.25, -0.38), (0.16, -0.425), (0.08, -0.452), (0.0, -0.458),
                 (-0.08, -0.452), (-0.16, -0.425)]
  mouth_inner = [(-0.23, -0.377), (-0.07, -0.35), (0.0, -0.35), (0.07, -0.35), (0.23, -0.377),
                 (0.07, -0.375), (0.0, -0.377), (-0.07, -0.375)]
  rest = np.array(brow_r + brow_l + nose + eye_r + eye_l + mouth_outer + mouth_inner)
  return np.concatenate([np.stack([jx, jy], 1), rest], 0)


def _disk_to_face(p, q):
  """Unit disk -> oval face outline, narrower towards the chin."""
  taper = 1.0 - 0.12 * np.clip(-q, 0.0, 1.0) ** 2
  return HALF_WIDTH * p * taper, CENTRE_Y + HALF_HEIGHT * q


def _gauss(x, y, cx, cy, sx, sy):
  return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _box(x, y, cx, cy, sx, sy):
  """A soft-edged ellipse window (super-Gaussian): about 1 inside, falling to 0 at the rim."""
  r2 = ((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2
  return np.exp(-r2 * r2)


def _grid(resolution):
  """Grid points on the unit disk (elliptical square-to-disk map) and CCW triangles."""
  u = np.linspace(-1.0, 1.0, resolution)
  uu, vv = np.meshgrid(u, u[::-1])  # row 0 is the top (q = +1), column 0 the left (p = -1).
  p = uu * np.sqrt(1.0 - 0.5 * vv ** 2)
  q = vv * np.sqrt(1.0 - 0.5 * uu ** 2)
  i, j = np.meshgrid(np.arange(resolution - 1), np.arange(resolution - 1), indexing="ij")
  a = (i * resolution + j).ravel()  # top-left of each cell
  b, c = a + 1, a + resolution  # top-right, bottom-left
  d = c + 1  # bottom-right
  # Counter-clockwise seen from +z (x right, y up): bottom-left, bottom-right, top-right / top-left.
  tri = np.concatenate([np.stack([c, d, b], 1), np.stack([c, b, a], 1)], 0)
  return p.ravel(), q.ravel(), tri.astype(np.int32)


def _height(x, y, p, q):
  """The face surface z(x, y): ellipsoid cap plus facial features (BFM units)."""
  z = 1.0 * np.sqrt(np.maximum(1.0 - 0.93 * p ** 2 - 0.35 * q ** 2, 0.0)) - 0.12 * p ** 4
  z += 0.04 * _gauss(x, y, 0.0, 0.72, 0.40, 0.20)  # forehead
  for s in (-1.0, 1.0):
    z += 0.07 * _gauss(x, y, s * 0.31, 0.45, 0.15, 0.05)  # brow ridge
    z -= 0.09 * _gauss(x, y, s * 0.30, 0.29, 0.11, 0.075)  # eye socket
    z += 0.045 * _gauss(x, y, s * 0.30, 0.29, 0.065, 0.035)  # eyeball
    z += 0.05 * _gauss(x, y, s * 0.42, 0.06, 0.12, 0.10)  # cheekbone
    z += 0.08 * _gauss(x, y, s * 0.11, -0.115, 0.045, 0.04)  # nose wing
  z += 0.10 * _gauss(x, y, 0.0, 0.24, 0.055, 0.12)  # nose bridge
  z += 0.20 * _gauss(x, y, 0.0, 0.07, 0.065, 0.10)  # nose ridge
  z += 0.27 * _gauss(x, y, 0.0, -0.06, 0.08, 0.065)  # nose tip
  z -= 0.03 * _gauss(x, y, 0.0, -0.2, 0.05, 0.03)  # philtrum
  z += 0.07 * _gauss(x, y, 0.0, -0.325, 0.14, 0.035)  # upper lip
  z += 0.07 * _gauss(x, y, 0.0, -0.43, 0.12, 0.04)  # lower lip
  z -= 0.03 * _gauss(x, y, 0.0, -0.375, 0.17, 0.012)  # mouth slit
  z -= 0.035 * _gauss(x, y, 0.0, -0.56, 0.12, 0.04)  # chin crease
  z += 0.08 * _gauss(x, y, 0.0, -0.72, 0.15, 0.08)  # chin
  return z


def _albedo(x, y, p, q):
  """Mean albedo in [0, 1]: skin, darker brows, reddish lips, eyes, nostrils."""
  skin = np.array([0.78, 0.58, 0.47])
  col = np.tile(skin, (x.size, 1))
  blend = lambda w, c: col * (1 - w[:, None]) + np.asarray(c) * w[:, None]  # noqa: E731
  cheeks = sum(_gauss(x, y, s * 0.40, -0.05, 0.12, 0.10) for s in (-1, 1))
  col = blend(0.35 * cheeks, [0.82, 0.50, 0.44])
  col = blend(0.5 * np.clip(np.sqrt(p * p + q * q) - 0.8, 0, 1) / 0.2, [0.70, 0.52, 0.42])
  template = _template_68()
  brows = np.zeros_like(x)
  for seg in (template[17:22], template[22:27]):
    for a, b in zip(seg[:-1], seg[1:]):
      t = np.clip(((x - a[0]) * (b[0] - a[0]) + (y - a[1]) * (b[1] - a[1])) / np.sum((b - a) ** 2), 0, 1)
      d2 = (x - a[0] - t * (b[0] - a[0])) ** 2 + (y - a[1] - t * (b[1] - a[1])) ** 2
      brows = np.maximum(brows, np.exp(-0.5 * d2 / 0.022 ** 2))
  col = blend(0.85 * brows, [0.28, 0.20, 0.16])
  lips = np.maximum(_box(x, y, 0.0, -0.315, 0.22, 0.035), _box(x, y, 0.0, -0.42, 0.2, 0.04))
  col = blend(0.8 * lips, [0.70, 0.36, 0.36])
  for s in (-1.0, 1.0):
    col = blend(0.9 * _box(x, y, s * 0.31, 0.297, 0.12, 0.032), [0.86, 0.83, 0.80])  # sclera
    col = blend(0.95 * _box(x, y, s * 0.31, 0.297, 0.035, 0.032), [0.30, 0.20, 0.14])  # iris
    col = blend(0.6 * _box(x, y, s * 0.055, -0.14, 0.03, 0.018), [0.35, 0.22, 0.2])  # nostril
  regions = np.maximum.reduce([brows, lips] + [_box(x, y, s * 0.31, 0.297, 0.14, 0.05) for s in (-1, 1)]
                              + [_box(x, y, s * 0.055, -0.14, 0.04, 0.025) for s in (-1, 1)])
  skin_mask = (np.sqrt(p * p + q * q) < 0.92) & (regions < 0.3)
  return np.clip(col, 0.0, 1.0), skin_mask


def _orthonormal_columns(a):
  """Gram-Schmidt of the columns of ``a`` in order, via Cholesky (QR with a positive R diagonal,
  much cheaper)."""
  return _orthonormalise_like(a, a)


def _orthonormalise_like(reference, values):
  """Applies to ``values`` the column map (a right-multiplication) that orthonormalises ``reference``.

  ``values`` holds the same columns as ``reference`` (continuous functions) sampled at other points, so
  the result is the same functions, orthonormal on the reference grid, at those points.
  """
  chol = np.linalg.cholesky(reference.T @ reference)
  if values is reference:
    return np.linalg.solve(chol, values.T).T
  return linalg.solve_triangular(chol, values.T, lower=True).T  # same map, faster for a dense mesh


class _Samples:
  """The (u, v) grid of one resolution: disk (p, q), face-plane (x, y), height z, triangles."""

  def __init__(self, resolution):
    self.resolution = resolution
    self.p, self.q, self.triangles = _grid(resolution)
    self.x, self.y = _disk_to_face(self.p, self.q)
    self.z = _height(self.x, self.y, self.p, self.q)
    self.vertices = np.stack([self.x, self.y, self.z], 1)
    self.num_vertices = self.p.size


def _cosines(p, q):
  """(N, 100) low-frequency cosines on the disk, ordered by frequency, and their frequencies."""
  m, n = np.meshgrid(np.arange(_NUM_COSINES), np.arange(_NUM_COSINES), indexing="ij")
  order = np.argsort(m.ravel() ** 2 + n.ravel() ** 2, kind="stable")
  m, n = m.ravel()[order], n.ravel()[order]
  phi = np.cos(np.pi * m * (p[:, None] + 1) / 2) * np.cos(np.pi * n * (q[:, None] + 1) / 2)
  return phi, np.sqrt(m ** 2 + n ** 2)


def _random_basis(rng, fields, freq, k, rms, channel_cov, num_reference_vertices=None):
  """(3N, k) orthogonal smooth basis; column j has per-entry RMS ``rms[j]`` (so N(0, 1) is the prior).

  Low frequencies and the principal directions of ``channel_cov`` dominate the first columns. The RMS
  is that over the reference grid of ``num_reference_vertices`` (default: ``fields``' own points).
  """
  num_vertices, nf = fields.shape
  num_reference_vertices = num_reference_vertices or num_vertices
  weight = np.kron(1.0 / (1.0 + freq) ** 1.5, np.ones(3))[:, None] * rng.standard_normal((3 * nf, k))
  chol = np.linalg.cholesky(channel_cov)
  weight = (weight.reshape(nf, 3, k).transpose(0, 2, 1) @ chol.T).transpose(0, 2, 1).reshape(3 * nf, k)
  w = _orthonormal_columns(weight)
  w = w.reshape(nf, 3, k) * (np.asarray(rms) * np.sqrt(3 * num_reference_vertices))
  basis = np.empty((num_vertices, 3, k), np.float32)
  for c in range(3):
    basis[:, c] = fields @ w[:, c]
  return basis.reshape(3 * num_vertices, k)


def _similarity_fields(mean_shape):
  """(3N, 7): the mean shape's infinitesimal translations (3), rotations (3) and scale."""
  n = len(mean_shape)
  translations = [np.tile(axis, n) for axis in np.eye(3)]
  rotations = [np.cross(axis, mean_shape).reshape(-1) for axis in np.eye(3)]
  return np.stack(translations + rotations + [mean_shape.reshape(-1)], 1)


def _without_similarity(basis, mean_shape, mesh_basis=None, mesh_mean_shape=None):
  """``basis`` with the mean shape's similarity motions projected out, re-orthogonalised in order.

  The BFM's shape PCA is computed on Procrustes-aligned scans, so its modes hold (almost) no rigid
  motion or scale; the random smooth fields here would (the constant and linear cosines), letting
  shape coefficients stand in for pose and hiding pose from the landmark loss. Each column keeps its
  per-entry RMS. With ``mesh_basis`` / ``mesh_mean_shape`` (the same functions at other points), the
  maps computed on the reference points are applied to those and the result is at the mesh points.
  """
  basis = basis.astype(np.float64)
  rms = np.sqrt(np.mean(basis ** 2, axis=0))
  q, r = np.linalg.qr(_similarity_fields(mean_shape.astype(np.float64)))
  coefficients = q.T @ basis
  projected = basis - q @ coefficients
  if mesh_basis is None:
    out = projected
  else:  # the same tangent functions, made orthonormal on the reference points: fields @ r^-1
    mesh_q = np.linalg.solve(r.T, _similarity_fields(mesh_mean_shape.astype(np.float64)).T).T
    out = mesh_basis.astype(np.float64) - mesh_q @ coefficients
  return (_orthonormalise_like(projected, out) * (rms * np.sqrt(len(basis)))).astype(np.float32)


def _expression_basis(rng, x, y, fields, mesh=None):
  """(3N, 64) expression modes localised on the mouth / jaw, brows and eyes.

  With ``mesh = (x, y, fields)`` at other points the modes (normalised on the reference points) are
  returned at those points.
  """
  n = x.size
  mx, my, mesh_fields = mesh if mesh is not None else (x, y, fields)
  sign = np.sign(mx)
  ones = np.ones(mx.size)
  mouth = _gauss(mx, my, 0.0, -0.38, 0.16, 0.09)
  jaw = _gauss(mx, my, 0.0, -0.55, 0.32, 0.3) / (1 + np.exp((my + 0.385) / 0.015))
  brows = _gauss(np.abs(mx), my, 0.36, 0.47, 0.13, 0.07)
  brow_r, brow_l = brows * (mx < 0), brows * (mx >= 0)
  eyes = _gauss(np.abs(mx), my, 0.31, 0.3, 0.1, 0.05)
  upper_lids = eyes / (1 + np.exp(-(my - 0.29) / 0.01))
  eye_r, eye_l = eyes * (mx < 0), eyes * (mx >= 0)
  modes = [
      0.08 * jaw[:, None] * np.stack([0 * mx, -ones, -0.3 * ones], 1),  # jaw open
      0.04 * mouth[:, None] * np.stack([0.5 * mx / 0.25, np.abs(mx) / 0.25, -0.2 * ones], 1),  # smile
      0.04 * brows[:, None] * np.stack([0 * mx, ones, 0.1 * ones], 1),  # brow raise
      0.025 * upper_lids[:, None] * np.stack([0 * mx, -ones, 0.2 * ones], 1),  # eyes close
      0.03 * mouth[:, None] * np.stack([-mx / 0.25, 0 * mx, ones], 1),  # pucker
      0.025 * brows[:, None] * np.stack([-0.5 * sign, -ones, 0 * mx], 1),  # frown
  ]
  regions = [mouth, jaw, brow_r, brow_l, eye_r, eye_l, mouth, brows, eyes]
  low = fields[:, :15]
  for k in range(len(modes), NUM_EXPRESSION):
    weights = rng.standard_normal((low.shape[1], 3))
    field = low @ weights * np.sqrt(n)  # O(1) smooth vector field
    rms = np.sqrt(np.mean(field ** 2))  # over the reference points
    field = (field if mesh is None else mesh_fields[:, :15] @ weights * np.sqrt(n)) / rms
    scale = 0.03 / np.sqrt(1.0 + (k - len(modes)) / 4.0)
    modes.append(scale * regions[k % len(regions)][:, None] * field)
  return np.stack([m.reshape(-1) for m in modes], 1)


def dense_resolution(resolution, min_resolution=150):
  """The smallest mesh resolution >= ``min_resolution`` whose grid contains the ``resolution`` grid
  (``(mesh - 1)`` a multiple of ``(resolution - 1)``): every model vertex is a mesh vertex."""
  resolution = int(resolution)
  factor = max(1, -(-(int(min_resolution) - 1) // (resolution - 1)))
  return factor * (resolution - 1) + 1


def coarse_vertex_indices(resolution, mesh_resolution):
  """(resolution ** 2,) indices of the mesh_resolution grid's vertices that coincide with the
  resolution grid's (row-major, like the vertices)."""
  factor = _mesh_factor(resolution, mesh_resolution)
  rows = np.arange(resolution) * factor
  return (rows[:, None] * mesh_resolution + rows[None, :]).ravel().astype(np.int32)


def upsample_vertex_values(values, resolution, mesh_resolution):
  """Bilinear interpolation in (u, v) of per-vertex values (..., resolution ** 2, C) on the denser
  mesh_resolution grid; exact at the coinciding vertices."""
  factor = _mesh_factor(resolution, mesh_resolution)
  values = np.asarray(values)
  grid = values.reshape(values.shape[:-2] + (resolution, resolution, values.shape[-1]))
  t = np.arange(mesh_resolution) / factor
  i0 = np.minimum(np.floor(t).astype(int), resolution - 2)
  w = (t - i0)[:, None]
  rows = grid[..., i0, :, :] * (1 - w)[:, None] + grid[..., i0 + 1, :, :] * w[:, None]
  out = rows[..., :, i0, :] * (1 - w) + rows[..., :, i0 + 1, :] * w
  return out.reshape(values.shape[:-2] + (mesh_resolution ** 2, values.shape[-1]))


def _mesh_factor(resolution, mesh_resolution):
  resolution, mesh_resolution = int(resolution), int(mesh_resolution)
  if mesh_resolution < resolution or (mesh_resolution - 1) % (resolution - 1):
    raise ValueError(f"mesh_resolution {mesh_resolution} must be 1 + a multiple of resolution - 1 = "
                     f"{resolution - 1} (so the resolution-{resolution} grid lies on it), e.g. "
                     f"{dense_resolution(resolution)}")
  return (mesh_resolution - 1) // (resolution - 1)


@functools.lru_cache(maxsize=4)
def build_synthetic_model(resolution=48, seed=0, mesh_resolution=None) -> MorphableModel:
  """Builds the embedded synthetic morphable model (see the module docstring). Cached; read-only.

  ``(resolution, seed)`` define the model: its bases are continuous functions of the (u, v) grid,
  orthonormalised and scaled on the ``resolution`` grid. ``mesh_resolution`` (default ``resolution``)
  samples the same functions on a denser grid that contains the model's (``dense_resolution``): the
  same coefficients then decode to the same surface with more vertices, equal at the shared vertices,
  with the landmarks on the same (shared) vertices. Training uses the coarse mesh for speed;
  reconstruct writes the dense one.
  """
  resolution, seed = int(resolution), int(seed)
  if resolution < 8:
    raise ValueError(f"resolution must be >= 8 for the 68 landmarks, got {resolution}")
  mesh_resolution = resolution if mesh_resolution is None else int(mesh_resolution)
  factor = _mesh_factor(resolution, mesh_resolution)
  ref = _Samples(resolution)
  out = ref if mesh_resolution == resolution else _Samples(mesh_resolution)

  template = _template_68()
  d2 = np.sum((ref.vertices[None, :, :2] - template[:, None, :]) ** 2, -1)
  landmarks = np.argmin(d2, 1)
  row, col = landmarks // resolution, landmarks % resolution
  landmarks = (row * factor * mesh_resolution + col * factor).astype(np.int32)
  # Re-centre on the (reference) vertex mean, as Deng's ParametricFaceModel does with the BFM.
  centre = ref.vertices.mean(0, keepdims=True)
  ref_verts, verts = ref.vertices - centre, out.vertices - centre

  albedo, skin = _albedo(out.x, out.y, out.p, out.q)
  phi_ref, freq = _cosines(ref.p, ref.q)
  fields_ref = _orthonormal_columns(phi_ref)
  fields = fields_ref if out is ref else _orthonormalise_like(phi_ref, _cosines(out.p, out.q)[0])
  k_shape = np.arange(NUM_SHAPE)
  shape_args = (NUM_SHAPE, 0.03 / (1.0 + k_shape) ** 0.7, np.diag([1.0, 1.0, 0.6]))
  shape_ref = _random_basis(np.random.default_rng([seed, 1]), fields_ref, freq, *shape_args)
  if out is ref:
    shape_basis = _without_similarity(shape_ref, ref_verts)
  else:
    shape_mesh = _random_basis(np.random.default_rng([seed, 1]), fields, freq, *shape_args,
                               num_reference_vertices=ref.num_vertices)
    shape_basis = _without_similarity(shape_ref, ref_verts, shape_mesh, verts)
  colour_cov = np.array([[1.0, 0.9, 0.85], [0.9, 1.0, 0.9], [0.85, 0.9, 1.0]])
  texture_basis = _random_basis(np.random.default_rng([seed, 2]), fields, freq, NUM_TEXTURE,
                                0.06 / (1.0 + k_shape) ** 0.6, colour_cov,
                                num_reference_vertices=ref.num_vertices)
  expression_basis = _expression_basis(np.random.default_rng([seed, 3]), ref.x, ref.y, fields_ref,
                                       None if out is ref else (out.x, out.y, fields))

  name = f"synthetic-r{resolution}-s{seed}" + (f"-m{mesh_resolution}" if out is not ref else "")
  model = MorphableModel(
      mean_shape=verts, mean_albedo=albedo, shape_basis=shape_basis, texture_basis=texture_basis,
      expression_basis=expression_basis, triangles=out.triangles, landmark_indices=landmarks,
      vertex_faces=build_vertex_faces(out.triangles, len(verts)), skin_mask=skin, name=name)
  for field in ("mean_shape", "mean_albedo", "shape_basis", "texture_basis", "expression_basis",
                "triangles", "landmark_indices", "vertex_faces", "skin_mask"):
    getattr(model, field).flags.writeable = False
  return model


def decode_on_mesh(mesh_model, resolution, vertices, albedo, shape=None, texture=None, expression=None):
  """One face decoded on the coarse model (``vertices``, ``albedo`` (resolution ** 2, 3), possibly
  through trained FC bases) -> the same face on ``mesh_model``'s denser grid.

  The dense mesh is the mesh model's Eqs 1-2 at the coefficients plus the bilinear upsampling of what
  the coarse decode adds to them (the trained bases' change; zero for the plain model), so it equals
  the coarse decode exactly at the shared vertices (landmarks included). Returns (vertices, albedo).
  """
  mesh_resolution = int(round(np.sqrt(mesh_model.num_vertices)))
  idx = coarse_vertex_indices(resolution, mesh_resolution)
  dense_shape = mesh_model.shape(shape, expression).astype(np.float64)
  dense_albedo = mesh_model.albedo(texture).astype(np.float64)
  residuals = np.stack([np.asarray(vertices, np.float64) - dense_shape[idx],
                        np.asarray(albedo, np.float64) - dense_albedo[idx]])
  up = upsample_vertex_values(residuals, resolution, mesh_resolution)
  return (dense_shape + up[0]).astype(np.float32), (dense_albedo + up[1]).astype(np.float32)
