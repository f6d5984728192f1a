r"""Converts the Basel Face Model 2009 + Guo et al.'s expression basis into our ``.npz``.

    python -m facernet_jax.face_model.convert --bfm 01_MorphableModel.mat --expression Exp_Pca.bin \
        --index-dir DIR --out model.npz

Follows Deep3DFaceRecon's ``util/load_mats.transferBFM09`` exactly, except that it keeps all 199 shape
and 199 texture components (Deng keeps 80; Mobile-FaceRNet uses 199):

* ``idBase = shapePC * shapeEV / 1e5``, ``texBase = texPC * texEV``,
  ``exBase = expPC * expEV / 1e5`` (first 64 of 79), ``meanshape = shapeMU / 1e5`` (decimetres);
* vertices: ``index_exp = BFM_front_idx['idx'] - 1`` (35,709 of the expression model's 53,215) and
  ``index_shape = BFM_exp_idx['trimIndex'][index_exp] - 1`` (into the BFM's 53,490); the expression
  basis is indexed with ``index_exp``, the rest with ``index_shape``; Guo's mean expression is unused;
* topology (``tri``, ``point_buf``, ``keypoints``, ``skinmask``) from ``facemodel_info.mat``.

Then, as when reading ``BFM_model_front.mat``: 0-based indices, texture / 255, mean shape re-centred.
``DIR`` holds ``BFM_front_idx.mat``, ``BFM_exp_idx.mat``, ``facemodel_info.mat`` and ``std_exp.txt``
(all in Deep3DFaceRecon's ``BFM/`` folder; ``std_exp.txt`` is also looked for next to ``Exp_Pca.bin``).
"""
import argparse
import os
import sys
import time

import numpy as np
import scipy.io

from facernet_jax.coefficients import COEFFICIENT_SIZES
from facernet_jax.face_model import formats
from facernet_jax.face_model.model import ModelFormatError

NUM_EXPRESSION = COEFFICIENT_SIZES['expression']  # the first 64 of Guo's 79 components
INDEX_FILES = ("BFM_front_idx.mat", "BFM_exp_idx.mat", "facemodel_info.mat")
BFM_KEYS = ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV")


def read_exp_pca(path, num_vertices):
  """Reads Guo et al.'s ``Exp_Pca.bin`` as Deep3DFaceRecon's ``LoadExpBasis`` does.

  Layout (little-endian): int32 ``exp_dim``; float32 ``expMU`` (3 * num_vertices); float32 ``expPC``
  stored as ``exp_dim`` rows of length 3 * num_vertices. Returns ``(expMU (3N,), expPC (3N, exp_dim))``.
  """
  path = os.fspath(path)
  size = os.path.getsize(path)
  n3 = 3 * int(num_vertices)
  with open(path, "rb") as f:
    head = f.read(4)
    if len(head) < 4:
      raise ModelFormatError(f"{path}: too short ({size} bytes) for Exp_Pca.bin's int32 exp_dim header")
    exp_dim = int(np.frombuffer(head, "<i4")[0])
    expected = 4 + 4 * n3 * (1 + exp_dim) if exp_dim > 0 else -1
    if not 0 < exp_dim <= 10000:
      swapped = int(np.frombuffer(head, ">i4")[0])
      hint = (f" (read big-endian it would be {swapped}: the file looks byte-swapped; Exp_Pca.bin is "
              "little-endian)" if 0 < swapped <= 10000 else "")
      raise ModelFormatError(f"{path}: header exp_dim = {exp_dim} is not a plausible number of "
                             f"expression components{hint}; is this Guo et al.'s Exp_Pca.bin?")
    if size < expected:
      raise ModelFormatError(
          f"{path}: {size} bytes, expected {expected} = 4 + 4 * 3 * {num_vertices} * (1 + {exp_dim}) for "
          f"exp_dim = {exp_dim} components over {num_vertices} vertices (the count of BFM_exp_idx.mat's "
          "trimIndex); the file is truncated or belongs to a different model")
    if size > expected:
      print(f"warning: {path} has {size - expected} trailing bytes after expPC; ignored (as Deep3DFaceRecon "
            "does)", file=sys.stderr)
    exp_mu = np.frombuffer(f.read(4 * n3), "<f4").astype(np.float64)
    exp_pc = np.frombuffer(f.read(4 * n3 * exp_dim), "<f4").reshape(exp_dim, n3).T.astype(np.float64)
  return exp_mu, exp_pc


def _loadmat(path, keys):
  try:
    d = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises several types for corrupt files
    raise ModelFormatError(f"{path}: not a readable MATLAB .mat file ({e})") from e
  missing = [k for k in keys if k not in d]
  if missing:
    found = sorted(k for k in d if not k.startswith("__"))
    raise ModelFormatError(f"{path}: missing key(s) {missing} (found {found})")
  return d


def _require(path, what):
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what} not found: {path}")
  return path


def find_std_exp(index_dir, expression_path):
  """``std_exp.txt`` in ``index_dir``, else next to ``Exp_Pca.bin`` (Deep3DFaceRecon keeps both in BFM/)."""
  candidates = [os.path.join(index_dir, "std_exp.txt"),
                os.path.join(os.path.dirname(os.path.abspath(expression_path)), "std_exp.txt")]
  for c in candidates:
    if os.path.isfile(c):
      return c
  raise FileNotFoundError(
      f"std_exp.txt (the 79 expression standard deviations, from Deep3DFaceRecon's BFM/ folder) not found; "
      f"looked in {candidates[0]} and {candidates[1]}")


def convert_arrays(bfm, exp_pc, exp_ev, front_idx, trim_index, info, num_shape=None, num_texture=None,
                   num_expression=NUM_EXPRESSION):
  """transferBFM09's arithmetic: returns the arrays of a ``BFM_model_front.mat`` (1-based topology)."""
  shape_pc = np.asarray(bfm["shapePC"])  # no float64 copy of the full 160,470-row bases (see rows())
  tex_pc = np.asarray(bfm["texPC"])
  shape_ev = np.asarray(bfm["shapeEV"], np.float64).reshape(1, -1)
  tex_ev = np.asarray(bfm["texEV"], np.float64).reshape(1, -1)
  for key, pc in (("shapePC", shape_pc), ("texPC", tex_pc)):
    if pc.ndim != 2 or pc.shape[0] % 3 or not np.issubdtype(pc.dtype, np.number):
      raise ModelFormatError(f"01_MorphableModel.mat: {key} must be a numeric (3 * vertices, components) "
                             f"matrix, got {pc.dtype} {pc.shape}")
  if shape_ev.shape[1] != shape_pc.shape[1]:
    raise ModelFormatError(f"01_MorphableModel.mat: shapeEV has {shape_ev.shape[1]} values but shapePC "
                           f"{shape_pc.shape[1]} columns")
  if tex_ev.shape[1] != tex_pc.shape[1]:
    raise ModelFormatError(f"01_MorphableModel.mat: texEV has {tex_ev.shape[1]} values but texPC "
                           f"{tex_pc.shape[1]} columns")
  exp_ev = np.asarray(exp_ev, np.float64).reshape(1, -1)
  if exp_ev.shape[1] != exp_pc.shape[1]:
    raise ModelFormatError(f"std_exp.txt has {exp_ev.shape[1]} values but Exp_Pca.bin has "
                           f"{exp_pc.shape[1]} components")
  if exp_pc.shape[1] < num_expression:
    raise ModelFormatError(f"Exp_Pca.bin has {exp_pc.shape[1]} components, need {num_expression}")
  num_shape = num_shape or shape_pc.shape[1]
  num_texture = num_texture or tex_pc.shape[1]

  index_exp = np.asarray(front_idx).astype(np.int64).reshape(-1) - 1  # into the 53,215 vertices
  trim = np.asarray(trim_index).astype(np.int64).reshape(-1)
  if index_exp.min() < 0 or index_exp.max() >= len(trim):
    raise ModelFormatError(f"BFM_front_idx.mat: idx must lie in [1, {len(trim)}] (BFM_exp_idx trimIndex "
                           f"length), got [{index_exp.min() + 1}, {index_exp.max() + 1}]")
  index_shape = trim[index_exp] - 1  # into the 53,490 BFM vertices
  n_bfm = shape_pc.shape[0] // 3
  if index_shape.min() < 0 or index_shape.max() >= n_bfm:
    raise ModelFormatError(f"BFM_exp_idx.mat: trimIndex must lie in [1, {n_bfm}] (the BFM's vertex "
                           f"count), got [{index_shape.min() + 1}, {index_shape.max() + 1}]")

  def rows(basis, index, ev, k, divisor=1.0):
    """(basis * ev / divisor)[vertex rows of index, :k] as float32: picks the kept rows and columns first, so
    only they are converted to float64 (full-size BFM: 107,127 of 160,470 rows; halves the peak memory)."""
    picked = basis.reshape(-1, 3, basis.shape[1])[index, :, :k].reshape(-1, k)
    return (picked.astype(np.float64) * ev[:, :k] / divisor).astype(np.float32)

  return {
      "meanshape": (np.asarray(bfm["shapeMU"], np.float64).reshape(-1, 3) / 1e5)[index_shape].reshape(1, -1),
      "meantex": np.asarray(bfm["texMU"], np.float64).reshape(-1, 3)[index_shape].reshape(1, -1),
      "idBase": rows(shape_pc, index_shape, shape_ev, num_shape, 1e5),  # unify the scale to decimetres
      "exBase": rows(np.asarray(exp_pc), index_exp, exp_ev, num_expression, 1e5),
      "texBase": rows(tex_pc, index_shape, tex_ev, num_texture),
      "tri": info["tri"], "point_buf": info["point_buf"], "keypoints": info["keypoints"],
      "skinmask": info["skinmask"],
  }


def convert(bfm_path, expression_path, index_dir, num_shape=None, num_texture=None):
  """Reads the BFM files and returns our ``MorphableModel``."""
  _require(bfm_path, "BFM 2009 model (01_MorphableModel.mat, from the University of Basel)")
  _require(expression_path, "expression basis (Exp_Pca.bin, Guo et al.'s 3DFace / Deep3DFaceRecon)")
  if not os.path.isdir(index_dir):
    raise FileNotFoundError(f"--index-dir is not a directory: {index_dir} (it should hold "
                            f"{', '.join(INDEX_FILES)} and std_exp.txt from Deep3DFaceRecon's BFM/ folder)")
  for name in INDEX_FILES:
    _require(os.path.join(index_dir, name), f"{name} (from Deep3DFaceRecon's BFM/ folder)")
  std_path = find_std_exp(index_dir, expression_path)

  front = _loadmat(os.path.join(index_dir, "BFM_front_idx.mat"), ["idx"])["idx"]
  trim = _loadmat(os.path.join(index_dir, "BFM_exp_idx.mat"), ["trimIndex"])["trimIndex"]
  info = _loadmat(os.path.join(index_dir, "facemodel_info.mat"), ["tri", "point_buf", "keypoints",
                                                                   "skinmask"])
  _, exp_pc = read_exp_pca(expression_path, num_vertices=np.asarray(trim).size)
  exp_ev = np.loadtxt(std_path, dtype=np.float64).reshape(-1)
  bfm = _loadmat(bfm_path, BFM_KEYS)
  arrays = convert_arrays(bfm, exp_pc, exp_ev, front, trim, info, num_shape, num_texture)
  del bfm, exp_pc  # the full-size inputs (~0.4 GiB) are not needed while the container is built
  return formats.from_deep3d_arrays(arrays, source=bfm_path, name="bfm09-front")


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m facernet_jax.face_model.convert",
      description="BFM 2009 + Exp_Pca.bin -> facernet_jax .npz (Deep3DFaceRecon's transferBFM09, all 199 "
      "shape/texture components).")
  parser.add_argument("--bfm", required=True, help="01_MorphableModel.mat")
  parser.add_argument("--expression", required=True, help="Exp_Pca.bin")
  parser.add_argument("--index-dir", required=True,
                      help="folder with BFM_front_idx.mat, BFM_exp_idx.mat, facemodel_info.mat, std_exp.txt")
  parser.add_argument("--out", required=True, help="output .npz")
  parser.add_argument("--num-shape", type=int, default=None, help="keep this many shape components (all)")
  parser.add_argument("--num-texture", type=int, default=None, help="keep this many texture components (all)")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  try:
    model = convert(args.bfm, args.expression, args.index_dir, args.num_shape, args.num_texture)
  except (FileNotFoundError, ModelFormatError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  model.save_npz(args.out)
  print(f"wrote {args.out}: {model.num_vertices} vertices, {model.num_triangles} triangles, "
        f"{model.num_shape} shape / {model.num_texture} texture / {model.num_expression} expression components; "
        f"{os.path.getsize(args.out) / 2**20:.1f} MiB in {time.perf_counter() - start:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
