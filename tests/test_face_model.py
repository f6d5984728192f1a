"""Morphable-model container, synthetic model, file formats, converter CLI and 3DMM layer tests."""
import os
import re
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

from facernet_jax import face_model as fm
from facernet_jax.face_model import convert
from facernet_jax.face_model import formats
from facernet_jax.face_model import synthetic

RES = 24

# iBUG 68-point mirror permutation (left <-> right), written out by hand.
FLIP_68 = ([16 - i for i in range(17)] + [26 - i for i in range(5)] + [21 - i for i in range(5)]
           + [27, 28, 29, 30, 35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
           + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65])


@pytest.fixture(scope="module")
def model():
  return fm.build_synthetic_model(RES, 0)


# ---------------------------------------------------------------- synthetic model

def test_synthetic_model_sizes_and_name(model):
  assert model.num_vertices == RES * RES and model.num_triangles == 2 * (RES - 1) ** 2
  assert model.shape_basis.shape == (3 * RES * RES, 199)
  assert model.texture_basis.shape == (3 * RES * RES, 199)
  assert model.expression_basis.shape == (3 * RES * RES, 64)
  assert model.name == "synthetic-r24-s0"
  assert model.landmark_indices.dtype == np.int32 and model.triangles.dtype == np.int32


def test_synthetic_model_is_deterministic_in_seed(model):
  again = synthetic.build_synthetic_model.__wrapped__(RES, 0)
  other = synthetic.build_synthetic_model.__wrapped__(RES, 1)
  np.testing.assert_array_equal(again.shape_basis, model.shape_basis)
  np.testing.assert_array_equal(again.mean_shape, model.mean_shape)
  assert not np.allclose(other.shape_basis, model.shape_basis)


def test_synthetic_geometry_is_face_like(model):
  v = model.mean_shape
  np.testing.assert_allclose(v.mean(0), 0.0, atol=1e-5)  # re-centred
  width, height = np.ptp(v[:, 0]), np.ptp(v[:, 1])
  assert 1.4 < width < 1.8 and 1.6 < height < 2.0
  lm = v[model.landmark_indices]
  assert np.argmax(lm[:, 2]) in (30, 29)  # nose tip is the closest landmark to the camera
  assert lm[8, 1] == lm[:17, 1].min()  # chin is the lowest jaw point
  assert lm[0, 0] < 0 < lm[16, 0]  # point 0 on the image's left (-x)
  assert lm[36:48, 1].mean() > lm[30, 1] > lm[48:68, 1].mean()  # eyes above nose above mouth
  assert lm[17:27, 1].min() > lm[36:48, 1].max()  # brows above eyes
  # Left/right mirror: flipped landmarks mirror in x (grid is symmetric; small slack for ties).
  np.testing.assert_allclose(lm[FLIP_68, 0], -lm[:, 0], atol=0.08)
  np.testing.assert_allclose(lm[FLIP_68, 1], lm[:, 1], atol=0.08)


def test_synthetic_triangles_are_counter_clockwise_and_normals_outward(model):
  v, f = model.mean_shape.astype(np.float64), model.triangles
  a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
  area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
  assert np.all(area2 > 0)  # counter-clockwise seen from +z (the camera)
  n = np.cross(b - a, c - a)  # independent of the library's (v1 - v2) x (v2 - v3)
  assert np.all(n[:, 2] > 0)
  from facernet_jax.render import mesh
  vn = np.asarray(mesh.vertex_normals(v.astype(np.float32), f, model.vertex_faces))
  assert np.all(vn[:, 2] > 0)


def test_synthetic_bases_are_scaled_orthogonal_and_decaying(model):
  n3 = 3 * model.num_vertices
  for basis, first in ((model.shape_basis, 0.03), (model.texture_basis, 0.06)):
    gram = basis.T.astype(np.float64) @ basis
    diag = np.diag(gram)
    assert np.abs(gram - np.diag(diag)).max() < 1e-4 * diag.max()
    rms = np.sqrt(diag / n3)
    np.testing.assert_allclose(rms[0], first, rtol=1e-4)
    assert np.all(np.diff(rms) < 0)


def test_synthetic_expression_modes_are_local(model):
  v = model.mean_shape
  lm = v[model.landmark_indices]
  disp = np.sum(model.expression_basis.reshape(model.num_vertices, 3, -1) ** 2, axis=1)  # (N, 64)
  forehead = v[:, 1] > lm[17:27, 1].max() + 0.15
  far_cheeks = (np.abs(v[:, 0]) > 0.55) & (v[:, 1] > lm[33, 1]) & (v[:, 1] < lm[36, 1])
  for region in (forehead, far_cheeks):
    assert np.all(disp[region].sum(0) < 0.05 * disp.sum(0))
  # The first mode (jaw open) moves the chin down, the third (brow raise) moves the brows up.
  e = model.expression_basis.reshape(model.num_vertices, 3, -1)
  assert e[model.landmark_indices[8], 1, 0] < -0.02
  assert np.all(e[model.landmark_indices[17:27], 1, 2] > 0.01)


def test_synthetic_albedo_and_skin_mask(model):
  alb = model.mean_albedo
  assert alb.min() >= 0.0 and alb.max() <= 1.0
  lm = model.landmark_indices
  cheek = alb[model.skin_mask].mean(0)
  assert np.all(alb[lm[19]] < 0.7 * cheek)  # brows darker
  lips = alb[lm[[51, 57]]].mean(0)
  assert lips[0] / lips[1] > cheek[0] / cheek[1] + 0.1  # lips redder
  assert model.skin_mask.dtype == bool and 0.3 < model.skin_mask.mean() < 0.95
  assert not model.skin_mask[lm[[19, 24, 51, 57]]].any()


# ---------------------------------------------------------------- container validation

def _fields(model):
  return dict(mean_shape=model.mean_shape, mean_albedo=model.mean_albedo, shape_basis=model.shape_basis,
              texture_basis=model.texture_basis, expression_basis=model.expression_basis,
              triangles=model.triangles, landmark_indices=model.landmark_indices,
              vertex_faces=model.vertex_faces, skin_mask=model.skin_mask, name="t")


@pytest.mark.parametrize("field,value,match", [
    ("mean_albedo", np.zeros((5, 3)), "mean_albedo"),
    ("mean_albedo", np.full((RES * RES, 3), 2.0), "255"),
    ("shape_basis", np.zeros((7, 4)), "shape_basis"),
    ("expression_basis", np.full((3 * RES * RES, 2), np.nan), "expression_basis.*NaN"),
    ("triangles", np.array([[0, 1, RES * RES]]), "triangles"),
    ("triangles", np.array([[0.5, 1, 2]]), "triangles"),
    ("landmark_indices", np.arange(67), "landmark_indices"),
    ("landmark_indices", np.full(68, -1), "landmark_indices"),
    ("vertex_faces", np.full((RES * RES, 3), 10 ** 6), "vertex_faces"),
    ("skin_mask", np.ones(3, bool), "skin_mask"),
])
def test_validation_errors_name_the_field(model, field, value, match):
  fields = _fields(model)
  fields[field] = value
  with pytest.raises(fm.ModelFormatError, match=match):
    fm.MorphableModel(**fields)


# ---------------------------------------------------------------- npz format

def test_npz_round_trip(model, tmp_path):
  path = tmp_path / "m.npz"
  model.save_npz(path)
  back = fm.load_model(path)
  for k, v in _fields(model).items():
    if k != "name":
      np.testing.assert_array_equal(getattr(back, k), v)
  assert back.name == model.name
  with np.load(path, allow_pickle=False) as d:  # plain arrays only
    assert "format_version" in d.files


def test_npz_malformed_files_name_file_and_field(model, tmp_path):
  fields = {k: v for k, v in _fields(model).items() if k not in ("expression_basis", "skin_mask")}
  bad = tmp_path / "bad.npz"
  np.savez(bad, **fields)
  with pytest.raises(fm.ModelFormatError, match=r"bad\.npz.*expression_basis.*convert"):
    fm.load_model(bad)
  fields = _fields(model)
  fields["triangles"] = np.array([[0, 1, 10 ** 6]])
  np.savez(tmp_path / "bad2.npz", **fields)
  with pytest.raises(fm.ModelFormatError, match=r"triangles.*bad2\.npz"):
    fm.load_model(tmp_path / "bad2.npz")
  fields = _fields(model)
  fields["name"] = np.array([{"a": 1}], dtype=object)
  np.savez(tmp_path / "obj.npz", **fields)
  with pytest.raises(fm.ModelFormatError, match=r"obj\.npz"):
    fm.load_model(tmp_path / "obj.npz")
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(fm.ModelFormatError, match=r"junk\.npz"):
    fm.load_model(tmp_path / "junk.npz")
  with pytest.raises(FileNotFoundError):
    fm.load_model(tmp_path / "absent.npz")


# ---------------------------------------------------------------- Deep3DFaceRecon .mat

def _tiny_deep3d(rng):
  n, k = 5, 3
  tri = np.array([[1, 2, 3], [2, 4, 3], [3, 4, 5]], np.float64)  # 1-based
  point_buf = np.array([[1, 4, 4], [1, 2, 4], [1, 2, 3], [2, 3, 4], [3, 4, 4]], np.float64)  # pad F+1=4
  return {
      "meanshape": rng.normal(size=(1, 3 * n)), "meantex": rng.uniform(0, 255, (1, 3 * n)),
      "idBase": rng.normal(size=(3 * n, k)), "exBase": rng.normal(size=(3 * n, 2)),
      "texBase": rng.normal(size=(3 * n, k)) * 10, "tri": tri, "point_buf": point_buf,
      "keypoints": (np.arange(68) % n + 1)[None].astype(np.float64),
      "skinmask": np.array([[1, 0, 1, 1, 0]], np.float64), "frontmask2_idx": np.array([[1], [2]]),
      "tri_mask2": tri[:1],
  }


def test_deep3d_mat_loader(tmp_path):
  d = _tiny_deep3d(np.random.default_rng(0))
  path = tmp_path / "BFM_model_front.mat"
  scipy.io.savemat(path, d)
  m = fm.load_model(path)
  mean = d["meanshape"].reshape(5, 3)
  np.testing.assert_allclose(m.mean_shape, mean - mean.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m.mean_albedo, d["meantex"].reshape(5, 3) / 255, rtol=1e-6)
  np.testing.assert_allclose(m.texture_basis, d["texBase"] / 255, rtol=1e-6)
  np.testing.assert_allclose(m.shape_basis, d["idBase"], rtol=1e-6)
  np.testing.assert_array_equal(m.triangles, [[0, 1, 2], [1, 3, 2], [2, 3, 4]])
  np.testing.assert_array_equal(m.vertex_faces, [[0, -1, -1], [0, 1, -1], [0, 1, 2], [1, 2, -1], [2, -1, -1]])
  np.testing.assert_array_equal(m.landmark_indices, np.arange(68) % 5)
  np.testing.assert_array_equal(m.skin_mask, [True, False, True, True, False])
  del d["point_buf"]
  scipy.io.savemat(tmp_path / "broken.mat", d)
  with pytest.raises(fm.ModelFormatError, match=r"broken\.mat.*point_buf"):
    fm.load_model(tmp_path / "broken.mat")


# ---------------------------------------------------------------- converter CLI

N_BFM, N_EXP, N_FRONT, EXP_DIM = 8, 6, 4, 79


def _write_bfm_files(tmp_path, rng, exp_bytes=None):
  bfm = {"shapeMU": rng.normal(size=(3 * N_BFM, 1)) * 1e5, "shapePC": rng.normal(size=(3 * N_BFM, 199)),
         "shapeEV": rng.uniform(1, 10, (199, 1)) * 1e4, "texMU": rng.uniform(0, 255, (3 * N_BFM, 1)),
         "texPC": rng.normal(size=(3 * N_BFM, 199)) * 0.01, "texEV": rng.uniform(1, 10, (199, 1)),
         "tl": np.array([[1, 2, 3]], np.float64)}
  scipy.io.savemat(tmp_path / "01_MorphableModel.mat", bfm)
  exp_mu = rng.normal(size=3 * N_EXP).astype(np.float32)
  exp_pc = rng.normal(size=(EXP_DIM, 3 * N_EXP)).astype(np.float32)  # stored as exp_dim rows
  exp_bin = tmp_path / "Exp_Pca.bin"
  exp_bin.write_bytes(exp_bytes if exp_bytes is not None else
                      struct.pack("<i", EXP_DIM) + exp_mu.astype("<f4").tobytes() + exp_pc.astype("<f4").tobytes())
  idx_dir = tmp_path / "bfm_index"
  idx_dir.mkdir()
  std = rng.uniform(1e3, 5e5, EXP_DIM)
  np.savetxt(idx_dir / "std_exp.txt", std[None], fmt="%.6g")
  trim = np.array([[2], [3], [5], [6], [7], [8]], np.uint16)  # 6 of 8 BFM vertices, 1-based
  front = np.array([[1], [3], [4], [6]], np.float32)  # 4 of 6 expression vertices, 1-based
  scipy.io.savemat(idx_dir / "BFM_exp_idx.mat", {"trimIndex": trim})
  scipy.io.savemat(idx_dir / "BFM_front_idx.mat", {"idx": front})
  info = {"tri": np.array([[1, 2, 3], [2, 4, 3]], np.float32),
          "point_buf": np.array([[1, 3], [1, 2], [1, 2], [2, 3]], np.float32),
          "keypoints": (np.arange(68) % N_FRONT + 1)[None].astype(np.float32),
          "skinmask": np.array([[1, 1, 0, 1]], np.float32), "frontmask2_idx": np.array([[1]], np.float32),
          "tri_mask2": np.array([[1, 2, 3]], np.float32)}
  scipy.io.savemat(idx_dir / "facemodel_info.mat", info)
  return dict(bfm=bfm, exp_pc=exp_pc, std=np.loadtxt(idx_dir / "std_exp.txt"), trim=trim, front=front,
              idx_dir=idx_dir, exp_bin=exp_bin)


def _cli_args(tmp_path, files, out):
  return ["--bfm", str(tmp_path / "01_MorphableModel.mat"), "--expression", str(files["exp_bin"]),
          "--index-dir", str(files["idx_dir"]), "--out", str(out)]


def test_converter_cli_matches_hand_computation(tmp_path):
  files = _write_bfm_files(tmp_path, np.random.default_rng(0))
  out = tmp_path / "model.npz"
  assert convert.main(_cli_args(tmp_path, files, out)) == 0
  m = fm.load_model(out)
  bfm = files["bfm"]
  index_exp = files["front"].astype(int).ravel() - 1
  index_shape = files["trim"].astype(int).ravel()[index_exp] - 1
  np.testing.assert_array_equal(index_shape, [1, 4, 5, 7])  # by hand: trim[[0, 2, 3, 5]] - 1
  rows_shape = (3 * index_shape[:, None] + np.arange(3)).ravel()
  rows_exp = (3 * index_exp[:, None] + np.arange(3)).ravel()
  mean = bfm["shapeMU"].ravel()[rows_shape].reshape(-1, 3) / 1e5
  np.testing.assert_allclose(m.mean_shape, mean - mean.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m.mean_albedo.ravel(), bfm["texMU"].ravel()[rows_shape] / 255, rtol=1e-5)
  np.testing.assert_allclose(m.shape_basis, bfm["shapePC"][rows_shape] * bfm["shapeEV"].ravel() / 1e5,
                             rtol=1e-5)
  np.testing.assert_allclose(m.texture_basis, bfm["texPC"][rows_shape] * bfm["texEV"].ravel() / 255,
                             rtol=1e-5)
  exp_pc = files["exp_pc"].T.astype(np.float64)  # (3N, 79)
  np.testing.assert_allclose(m.expression_basis, (exp_pc * files["std"] / 1e5)[rows_exp, :64], rtol=1e-5)
  assert m.num_shape == 199 and m.num_texture == 199 and m.num_expression == 64
  np.testing.assert_array_equal(m.triangles, [[0, 1, 2], [1, 3, 2]])
  np.testing.assert_array_equal(m.vertex_faces, [[0, -1], [0, 1], [0, 1], [1, -1]])
  np.testing.assert_array_equal(m.skin_mask, [True, True, False, True])


def test_converter_cli_subprocess_and_errors(tmp_path, capsys):
  files = _write_bfm_files(tmp_path, np.random.default_rng(1))
  out = tmp_path / "sub.npz"
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
  r = subprocess.run([sys.executable, "-m", "facernet_jax.face_model.convert"] + _cli_args(tmp_path, files, out),
                     capture_output=True, text=True, env=env, cwd=repo, timeout=120)
  assert r.returncode == 0, r.stderr
  assert out.exists() and "4 vertices" in r.stdout
  size_mib = float(re.search(r"; ([0-9.]+) MiB in [0-9.]+ s", r.stdout).group(1))  # size and time printed
  assert size_mib == pytest.approx(os.path.getsize(out) / 2**20, abs=0.05)
  # A missing std_exp.txt is named, with where it was looked for.
  os.remove(files["idx_dir"] / "std_exp.txt")
  assert convert.main(_cli_args(tmp_path, files, tmp_path / "x.npz")) == 2
  assert "std_exp.txt" in capsys.readouterr().err
  # A missing index file is named.
  os.remove(files["idx_dir"] / "BFM_exp_idx.mat")
  assert convert.main(_cli_args(tmp_path, files, tmp_path / "x.npz")) == 2
  assert "BFM_exp_idx.mat" in capsys.readouterr().err


@pytest.mark.parametrize("mutate,match", [
    (lambda b: b[:-8], "truncated"),
    (lambda b: struct.pack(">i", EXP_DIM) + b[4:], "byte-swapped"),
    (lambda b: b[:2], "too short"),
])
def test_exp_pca_bin_errors(tmp_path, mutate, match):
  rng = np.random.default_rng(2)
  good = (struct.pack("<i", EXP_DIM) + rng.normal(size=3 * N_EXP * (EXP_DIM + 1)).astype("<f4").tobytes())
  path = tmp_path / "Exp_Pca.bin"
  path.write_bytes(mutate(good))
  with pytest.raises(fm.ModelFormatError, match=match):
    convert.read_exp_pca(path, N_EXP)


def test_exp_pca_bin_layout(tmp_path):
  mu = np.arange(3 * N_EXP, dtype=np.float32)
  pc = np.arange(2 * 3 * N_EXP, dtype=np.float32).reshape(2, 3 * N_EXP) + 100
  path = tmp_path / "e.bin"
  path.write_bytes(struct.pack("<i", 2) + mu.tobytes() + pc.tobytes())
  got_mu, got_pc = convert.read_exp_pca(path, N_EXP)
  np.testing.assert_array_equal(got_mu, mu)
  assert got_pc.shape == (3 * N_EXP, 2) and got_pc[0, 1] == 100 + 3 * N_EXP and got_pc[5, 0] == 105


# ---------------------------------------------------------------- real BFM topology (shared data)

def test_real_bfm_topology(shared_data):
  topo = shared_data / "bfm_topology"
  info = scipy.io.loadmat(topo / "facemodel_info.mat")
  front = scipy.io.loadmat(topo / "BFM_front_idx.mat")["idx"].astype(int).ravel() - 1
  mean53k = (np.load(topo / "u_shp.npy") + np.load(topo / "u_exp.npy")).reshape(-1, 3) / 1e5
  n = len(front)
  zeros = np.zeros((3 * n, 1), np.float32)
  arrays = {"meanshape": mean53k[front].reshape(1, -1), "meantex": np.full((1, 3 * n), 128.0),
            "idBase": zeros, "exBase": zeros, "texBase": zeros, "tri": info["tri"],
            "point_buf": info["point_buf"], "keypoints": info["keypoints"], "skinmask": info["skinmask"]}
  m = formats.from_deep3d_arrays(arrays, source=str(topo / "facemodel_info.mat"))
  assert (m.num_vertices, m.num_triangles) == (35709, 70789)
  assert m.landmark_indices.min() >= 0 and m.landmark_indices.max() < n
  from facernet_jax.render import mesh
  built = mesh.build_vertex_faces(m.triangles, n)
  assert built.shape[1] == m.vertex_faces.shape[1] == 8
  np.testing.assert_array_equal(np.sort(built, 1), np.sort(m.vertex_faces, 1))
  # Deng's keypoints are 3DDFA's keypoints_sim (xyz offsets into the 53,215-vertex model).
  kp_sim = shared_data / "aflw2000_3d_protocol" / "keypoints_sim.npy"
  if kp_sim.exists():
    np.testing.assert_array_equal(front[m.landmark_indices], np.load(kp_sim)[::3] // 3)
  # The BFM's triangle order gives outward (+z) normals on the front of the face, like ours.
  fn = np.asarray(mesh.face_normals(m.mean_shape, m.triangles))
  centre = np.abs(m.mean_shape[m.triangles].mean(1)[:, :2]).max(1) < 0.2
  assert fn[centre, 2].mean() > 0.5


# ---------------------------------------------------------------- 3DMM layer and config

def test_layer_matches_numpy_linear_3dmm(model):
  rng = np.random.default_rng(0)
  a, b, d = (rng.normal(size=(2, k)).astype(np.float32) for k in (199, 199, 64))
  ref_s = model.mean_shape.reshape(-1).astype(np.float64) + (model.shape_basis.astype(np.float64) @ a.T.astype(
      np.float64)).T + (model.expression_basis.astype(np.float64) @ d.T.astype(np.float64)).T
  ref_t = model.mean_albedo.reshape(-1).astype(np.float64) + (model.texture_basis.astype(np.float64) @ b.T.astype(
      np.float64)).T
  for trainable in (True, False):
    layer = fm.MorphableModelLayer(model, trainable_bases=trainable)
    variables = layer.init(jax.random.PRNGKey(0), a, b, d)
    verts, albedo = jax.jit(layer.apply)(variables, a, b, d)
    assert verts.shape == (2, model.num_vertices, 3) and albedo.shape == (2, model.num_vertices, 3)
    np.testing.assert_allclose(np.asarray(verts).reshape(2, -1), ref_s, atol=2e-5)
    np.testing.assert_allclose(np.asarray(albedo).reshape(2, -1), ref_t, atol=2e-5)
    if trainable:
      params = variables["params"]
      assert set(params) == {"FC_shape", "FC_texture"}
      assert params["FC_shape"].shape == (199, 3 * model.num_vertices)
      np.testing.assert_array_equal(params["FC_shape"], model.shape_basis.T)
      # d sum(S * g) / d FC_shape = sum_b outer(alpha_b, g_b) (hand-derived).
      g = rng.normal(size=(2, model.num_vertices, 3)).astype(np.float32)
      grads = jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, a, b, d)[0] * g))(params)
      np.testing.assert_allclose(grads["FC_shape"], a.T @ g.reshape(2, -1), rtol=1e-4, atol=1e-4)
      np.testing.assert_array_equal(grads["FC_texture"], 0.0)
    else:
      assert not jax.tree_util.tree_leaves(variables.get("params", {}))


def test_from_config(tmp_path, model):
  import ml_collections
  cfg = ml_collections.ConfigDict({"source": "synthetic", "resolution": RES, "seed": 0})
  assert fm.from_config(cfg) is model
  missing = tmp_path / "nowhere" / "bfm.npz"
  with pytest.raises(FileNotFoundError, match=r"nowhere.*convert"):
    fm.from_config(ml_collections.ConfigDict({"source": str(missing)}))
  model.save_npz(tmp_path / "m.npz")
  assert fm.from_config({"source": str(tmp_path / "m.npz")}).num_vertices == model.num_vertices


def test_synthetic_shape_modes_hold_no_rigid_motion_or_scale(model):
  """A small rotation, translation or scaling of the mean shape is (to first order) orthogonal to
  every shape mode, as in a PCA of Procrustes-aligned scans; so shape cannot stand in for pose."""
  from scipy.spatial.transform import Rotation
  mean = model.mean_shape.astype(np.float64)
  basis = model.shape_basis.astype(np.float64)
  motions = {'translation': mean + np.array([1e-3, -2e-3, 1.5e-3]),
             'scale': mean * (1 + 1e-3)}
  for axis in 'xyz':
    motions[f'rotation {axis}'] = mean @ Rotation.from_euler(axis, 1e-3).as_matrix().T
  for name, moved in motions.items():
    d = (moved - mean).reshape(-1)
    coef, *_ = np.linalg.lstsq(basis, d, rcond=None)
    explained = np.linalg.norm(basis @ coef) / np.linalg.norm(d)
    assert explained < 2e-3, (name, explained)
