"""Morphable-model files: our compact ``.npz`` and Deep3DFaceRecon's ``BFM_model_front.mat``.

Deep3DFaceRecon's file stores 1-based MATLAB indices, the mean texture and texture basis in 0-255, and a
mean shape that its ``ParametricFaceModel`` re-centres on load. We convert to the container's
conventions: 0-based indices, albedo / 255, and the same re-centring (mean shape minus its vertex mean;
the bases are unchanged), so that both files give the same face as Deng et al.'s code.
"""
import os
import zipfile

import numpy as np
import scipy.io

from facernet_jax.face_model.model import NPZ_ARRAY_FIELDS
from facernet_jax.face_model.model import ModelFormatError
from facernet_jax.face_model.model import MorphableModel
from facernet_jax.topology import build_vertex_faces

_OPTIONAL_NPZ = ("vertex_faces", "skin_mask", "name")
DEEP3D_KEYS = ("meanshape", "meantex", "idBase", "exBase", "texBase", "tri", "point_buf", "keypoints")
_NPZ_FIX = ("re-create it with MorphableModel.save_npz or `python -m facernet_jax.face_model.convert`")


def save_npz(model, path):
  """Writes ``model`` as our ``.npz`` (``MorphableModel.save_npz``)."""
  model.save_npz(path)


def load_npz(path):
  """Reads our ``.npz``; malformed files raise ``ModelFormatError`` naming the file and the field."""
  path = os.fspath(path)
  try:
    with np.load(path, allow_pickle=False) as data:
      keys = set(data.files)
      missing = [f for f in NPZ_ARRAY_FIELDS + ("name",) if f not in keys and f not in _OPTIONAL_NPZ]
      if missing:
        raise ModelFormatError(f"{path}: missing field(s) {missing} (has {sorted(keys)}); {_NPZ_FIX}")
      fields = {}
      for key in NPZ_ARRAY_FIELDS + ("skin_mask",):
        if key in keys:
          try:
            fields[key] = data[key]
          except ValueError as e:  # object arrays need pickle
            raise ModelFormatError(f"{path}: field '{key}' is not a plain numeric array ({e}); "
                                   f"{_NPZ_FIX}") from e
      name = str(data["name"]) if "name" in keys else os.path.splitext(os.path.basename(path))[0]
  except ModelFormatError:
    raise
  except (zipfile.BadZipFile, EOFError, OSError) as e:
    raise ModelFormatError(f"{path}: not a readable .npz file ({e}); {_NPZ_FIX}") from e
  except ValueError as e:
    raise ModelFormatError(f"{path}: cannot be read without pickle ({e}); {_NPZ_FIX}") from e
  if "vertex_faces" not in fields:
    tri = np.asarray(fields["triangles"])
    fields["vertex_faces"] = build_vertex_faces(tri, len(fields["mean_shape"]))
  return MorphableModel(**fields, name=name, source=path)


def from_deep3d_arrays(d, source, name=None, recenter=True):
  """Container from the arrays of a ``BFM_model_front.mat`` (as ``scipy.io.loadmat`` returns them)."""
  missing = [k for k in DEEP3D_KEYS if k not in d]
  if missing:
    raise ModelFormatError(
        f"{source}: missing key(s) {missing}; expected Deep3DFaceRecon's BFM_model_front.mat with "
        f"{list(DEEP3D_KEYS)} (made by its util/load_mats.transferBFM09), or convert the BFM with "
        "`python -m facernet_jax.face_model.convert`")

  def arr(key, dtype=np.float64):
    a = np.asarray(d[key])
    if not np.issubdtype(a.dtype, np.number):
      raise ModelFormatError(f"{source}: key '{key}' has non-numeric dtype {a.dtype}")
    return a.astype(dtype)

  mean_shape = arr("meanshape").reshape(-1, 3)
  if recenter:  # Deng's ParametricFaceModel(recenter=True)
    mean_shape = mean_shape - mean_shape.mean(0, keepdims=True)
  num_vertices = len(mean_shape)
  tri = _one_based(arr("tri"), "tri", source)
  point_buf = _one_based(arr("point_buf"), "point_buf", source)
  # point_buf pads with F + 1 (1-based), i.e. F after -1: map padding to our -1.
  point_buf = np.where(point_buf >= len(tri), -1, point_buf)
  skin = None
  if "skinmask" in d:
    skin = arr("skinmask").reshape(-1)
    if skin.size != num_vertices:
      raise ModelFormatError(f"{source}: key 'skinmask' has {skin.size} entries, expected {num_vertices}")
    skin = skin > 0.5
  for key in ("idBase", "exBase", "texBase"):
    if np.asarray(d[key]).ndim != 2:
      raise ModelFormatError(f"{source}: key '{key}' must be 2-D (3N, K), got {np.asarray(d[key]).shape}")
  return MorphableModel(
      mean_shape=mean_shape,
      mean_albedo=np.clip(arr("meantex").reshape(-1, 3) / 255.0, 0.0, 1.0),
      shape_basis=arr("idBase", np.float32),
      texture_basis=arr("texBase", np.float32) / np.float32(255.0),
      expression_basis=arr("exBase", np.float32),
      triangles=tri, landmark_indices=_one_based(arr("keypoints"), "keypoints", source).reshape(-1),
      vertex_faces=point_buf, skin_mask=skin,
      name=name or os.path.splitext(os.path.basename(os.fspath(source)))[0], source=os.fspath(source))


def _one_based(a, key, source):
  """MATLAB 1-based indices -> 0-based int32, checking they are integers >= 1."""
  if a.size and (not np.all(np.isfinite(a)) or np.any(a != np.round(a)) or a.min() < 1):
    raise ModelFormatError(f"{source}: key '{key}' must hold 1-based integer indices (>= 1)")
  return (a - 1).astype(np.int32)


def load_deep3d_mat(path, recenter=True):
  """Reads Deep3DFaceRecon's ``BFM_model_front.mat`` (0-based, albedo / 255, re-centred mean shape)."""
  path = os.fspath(path)
  try:
    d = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises several types for corrupt files
    raise ModelFormatError(f"{path}: not a readable MATLAB .mat file ({e})") from e
  return from_deep3d_arrays(d, path, name="bfm09-front-deep3d", recenter=recenter)


def load_model(path):
  """Reads our ``.npz`` or Deep3DFaceRecon's ``BFM_model_front.mat`` (by extension)."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"face model file not found: {path!r}")
  ext = os.path.splitext(path)[1].lower()
  if ext == ".npz":
    return load_npz(path)
  if ext == ".mat":
    return load_deep3d_mat(path)
  raise ModelFormatError(f"{path}: unknown face model format '{ext}'; expected our .npz (see "
                         "`python -m facernet_jax.face_model.convert`) or Deep3DFaceRecon's BFM_model_front.mat")
