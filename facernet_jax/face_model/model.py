"""The morphable-model container (Eqs 1-2): means, PCA bases, topology and landmarks as numpy arrays.

The bottom of face_model: it imports only the 68-point convention (facernet_jax.landmarks); the file
readers (formats.py), the embedded synthetic model (synthetic.py) and the 3DMM layer (layer.py) build on it.
"""
import dataclasses
import os

import numpy as np

from facernet_jax.landmarks import NUM_LANDMARKS

# Our .npz: these arrays (+ optional skin_mask, name, format_version), plain, loadable without pickle.
NPZ_FORMAT_VERSION = 1
NPZ_ARRAY_FIELDS = ("mean_shape", "mean_albedo", "shape_basis", "texture_basis", "expression_basis",
                    "triangles", "landmark_indices", "vertex_faces")


class ModelFormatError(ValueError):
  """A morphable-model array or file is malformed; the message names the field and the fix."""


def _fail(field, problem, source=None):
  where = f" in {source}" if source else ""
  raise ModelFormatError(f"MorphableModel field '{field}'{where}: {problem}")


@dataclasses.dataclass(frozen=True, eq=False)
class MorphableModel:
  """A 3D morphable face model in BFM decimetre units (+y up, +z towards the camera).

  Bases have rows ordered x0, y0, z0, x1, ... so that ``S = mean_shape.ravel() + shape_basis @ alpha``
  (Eq 1) and ``T = mean_albedo.ravel() + texture_basis @ beta`` (Eq 2), with coefficients whose prior is
  N(0, 1) (the bases are scaled by their standard deviations as in Deng et al.). Albedo is in [0, 1].
  ``eq=False`` keeps hashing by identity, so a model can be a static argument or a Flax field.
  """
  mean_shape: np.ndarray  # (N, 3) float32
  mean_albedo: np.ndarray  # (N, 3) float32 in [0, 1]
  shape_basis: np.ndarray  # (3N, Ks) float32
  texture_basis: np.ndarray  # (3N, Kt) float32
  expression_basis: np.ndarray  # (3N, Ke) float32
  triangles: np.ndarray  # (F, 3) int32, 0-based
  landmark_indices: np.ndarray  # (68,) int32
  vertex_faces: np.ndarray  # (N, K) int32, padded with -1
  skin_mask: np.ndarray | None = None  # (N,) bool
  name: str = "unnamed"
  source: str | None = dataclasses.field(default=None, compare=False)  # file it came from (messages)

  def __post_init__(self):
    src = self.source
    setf = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)

    def floats(field, ndim):
      value = getattr(self, field)
      if value is None:
        _fail(field, "is missing", src)
      arr = np.asarray(value)
      if arr.ndim != ndim or not np.issubdtype(arr.dtype, np.number):
        _fail(field, f"expected a {ndim}-D float array, got dtype {arr.dtype} shape {arr.shape}", src)
      arr = np.ascontiguousarray(arr, np.float32)
      if not np.all(np.isfinite(arr)):
        _fail(field, f"contains {int(np.sum(~np.isfinite(arr)))} NaN/inf values", src)
      setf(field, arr)
      return arr

    def ints(field, ndim):
      value = getattr(self, field)
      if value is None:
        _fail(field, "is missing", src)
      arr = np.asarray(value)
      if arr.ndim != ndim or not np.issubdtype(arr.dtype, np.number):
        _fail(field, f"expected a {ndim}-D integer array, got dtype {arr.dtype} shape {arr.shape}", src)
      if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
          _fail(field, "expected integer indices, found non-integer values", src)
      arr = np.ascontiguousarray(arr, np.int32)
      setf(field, arr)
      return arr

    mean = floats("mean_shape", 2)
    if mean.shape[1] != 3 or mean.shape[0] < 3:
      _fail("mean_shape", f"expected shape (N, 3) with N >= 3, got {mean.shape}", src)
    n = mean.shape[0]
    albedo = floats("mean_albedo", 2)
    if albedo.shape != (n, 3):
      _fail("mean_albedo", f"expected shape ({n}, 3) to match mean_shape, got {albedo.shape}", src)
    if albedo.min() < -1e-3 or albedo.max() > 1.0 + 1e-3:
      _fail("mean_albedo", f"values must lie in [0, 1] (got [{albedo.min():.4g}, {albedo.max():.4g}]); "
            "divide a 0-255 BFM texture by 255", src)
    for field in ("shape_basis", "texture_basis", "expression_basis"):
      basis = floats(field, 2)
      if basis.shape[0] != 3 * n:
        _fail(field, f"expected shape ({3 * n}, K) (rows x0,y0,z0,x1,...), got {basis.shape}", src)
    tri = ints("triangles", 2)
    if tri.shape[1] != 3 or tri.shape[0] < 1:
      _fail("triangles", f"expected shape (F, 3) with F >= 1, got {tri.shape}", src)
    if tri.min() < 0 or tri.max() >= n:
      _fail("triangles", f"0-based vertex indices must lie in [0, {n}), got [{tri.min()}, {tri.max()}] "
            "(1-based MATLAB indices need -1)", src)
    lm = ints("landmark_indices", 1)
    if lm.shape != (NUM_LANDMARKS,):
      _fail("landmark_indices", f"expected shape ({NUM_LANDMARKS},), got {lm.shape}", src)
    if lm.min() < 0 or lm.max() >= n:
      _fail("landmark_indices", f"indices must lie in [0, {n}), got [{lm.min()}, {lm.max()}]", src)
    vf = ints("vertex_faces", 2)
    if vf.shape[0] != n:
      _fail("vertex_faces", f"expected shape ({n}, K), got {vf.shape}", src)
    if vf.min() < -1 or vf.max() >= tri.shape[0]:
      _fail("vertex_faces", f"face indices must lie in [0, {tri.shape[0]}) or be -1 (padding), "
            f"got [{vf.min()}, {vf.max()}]", src)
    if self.skin_mask is not None:
      mask = np.asarray(self.skin_mask)
      if mask.shape != (n,):
        _fail("skin_mask", f"expected shape ({n},), got {mask.shape}", src)
      if mask.dtype != bool:
        if not np.all(np.isin(mask, (0, 1))):
          _fail("skin_mask", "expected booleans or 0/1 values", src)
        mask = mask.astype(bool)
      setf("skin_mask", mask)
    if not isinstance(self.name, str):
      _fail("name", f"expected a string, got {type(self.name).__name__}", src)

  @property
  def num_vertices(self):
    return self.mean_shape.shape[0]

  @property
  def num_triangles(self):
    return self.triangles.shape[0]

  @property
  def num_shape(self):
    return self.shape_basis.shape[1]

  @property
  def num_texture(self):
    return self.texture_basis.shape[1]

  @property
  def num_expression(self):
    return self.expression_basis.shape[1]

  def shape(self, alpha=None, delta=None):
    """Numpy Eq 1 for one face: ``(N, 3)`` vertices from coefficients (missing ones are zero)."""
    s = self.mean_shape.reshape(-1).astype(np.float64)
    if alpha is not None:
      s = s + self.shape_basis @ np.asarray(alpha, np.float64)
    if delta is not None:
      s = s + self.expression_basis @ np.asarray(delta, np.float64)
    return s.reshape(-1, 3).astype(np.float32)

  def albedo(self, beta=None):
    """Numpy Eq 2 for one face: ``(N, 3)`` albedo from texture coefficients."""
    t = self.mean_albedo.reshape(-1).astype(np.float64)
    if beta is not None:
      t = t + self.texture_basis @ np.asarray(beta, np.float64)
    return t.reshape(-1, 3).astype(np.float32)

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  def save_npz(self, path):
    """Writes our compact ``.npz`` of plain arrays (read back by ``formats.load_npz``, allow_pickle=False)."""
    arrays = {f: getattr(self, f) for f in NPZ_ARRAY_FIELDS}
    if self.skin_mask is not None:
      arrays["skin_mask"] = self.skin_mask
    arrays["name"] = np.array(self.name)
    arrays["format_version"] = np.array(NPZ_FORMAT_VERSION, np.int32)
    path = os.fspath(path)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
