"""Tests of facernet_jax.metrics against hand-made cases, brute-force numpy loops and scikit-image."""
import numpy as np
import pytest

from facernet_jax import metrics


def _square_landmarks(k=68, size=10.0, seed=0):
  """k points inside [0, size]^2 with the four box corners included (so the box is exactly size x size)."""
  rng = np.random.default_rng(seed)
  pts = rng.uniform(0, size, (k, 2))
  pts[:4] = [[0, 0], [size, 0], [0, size], [size, size]]
  return pts


# ----------------------------------------------------------------------------- NME

def test_nme_hand_made():
  gt = _square_landmarks(size=10.0)
  pred = gt + np.array([3.0, 4.0])  # every point 5 px off, d = sqrt(10 * 10) = 10
  np.testing.assert_allclose(metrics.nme_per_image(pred[None], gt[None]), [0.5])
  # Rectangular box 8 x 2: d = 4; one point 2 px off out of 4 points -> mean 0.5 px -> 0.125.
  gt2 = np.array([[0, 0], [8, 0], [0, 2], [8, 2]], float)
  pred2 = gt2.copy()
  pred2[1, 1] += 2.0
  np.testing.assert_allclose(metrics.nme_per_image(pred2, gt2), 0.125)
  np.testing.assert_allclose(metrics.landmark_box_size(gt2), 4.0)


def test_nme_visibility_excludes_points_from_mean_and_box():
  gt = np.array([[0, 0], [4, 0], [0, 4], [4, 4], [100, 100]], float)
  pred = gt.copy()
  pred[0] += [1, 0]
  pred[4] += [50, 0]  # invisible: ignored
  vis = np.array([1, 1, 1, 1, 0], bool)
  np.testing.assert_allclose(metrics.nme_per_image(pred, gt, visible=vis), (1 / 4) / 4)


def test_nme_zero_for_perfect_prediction_and_shape_check():
  gt = np.random.default_rng(1).uniform(0, 100, (5, 68, 2))
  np.testing.assert_array_equal(metrics.nme_per_image(gt, gt), np.zeros(5))
  with pytest.raises(ValueError, match='shape'):
    metrics.nme_per_image(gt[:, :60], gt)


def test_yaw_bins_boundaries():
  yaw = np.array([0, 30, 30.001, -45, 60, -60.5, 90, 120, -351])
  np.testing.assert_array_equal(metrics.yaw_bin_index(yaw), [0, 0, 1, 1, 1, 2, 2, 2, 2])


def test_nme_table_mean_of_bins_and_plain_mean():
  nme = np.array([0.01, 0.03, 0.05, 0.10])
  yaw = np.array([10, -20, 45, 80])
  t = metrics.nme_table(nme, yaw)
  assert t.bin_counts == (2, 1, 1) and t.count == 4
  np.testing.assert_allclose(t.bin_means, [0.02, 0.05, 0.10])
  np.testing.assert_allclose(t.mean_of_bins, (0.02 + 0.05 + 0.10) / 3)
  np.testing.assert_allclose(t.mean, 0.0475)
  d = t.as_dict()
  assert d['bins'][2]['count'] == 1 and abs(d['mean'] - 4.75) < 1e-9
  # An empty bin leaves the published mean undefined (nan), not silently averaged over two bins.
  t2 = metrics.nme_table(nme[:2], yaw[:2])
  assert np.isnan(t2.mean_of_bins) and np.isnan(t2.bin_means[1]) and t2.as_dict()['mean_of_bins'] is None
  text = metrics.format_nme_table([('x', t), ('y', t2)])
  assert '4.75' in text and '       -' in text


def _ddfa_calc_nme_loop(pred, gt):
  """Brute-force re-implementation of 3DDFA's benchmark_aflw2000.calc_nme (one image at a time)."""
  out = []
  for i in range(gt.shape[0]):
    g = gt[i]
    minx, maxx = g[0].min(), g[0].max()
    miny, maxy = g[1].min(), g[1].max()
    llength = np.sqrt((maxx - minx) * (maxy - miny))
    dis = pred[i][:2] - g[:2]
    out.append(np.mean(np.sqrt(np.sum(dis ** 2, 0))) / llength)
  return np.array(out)


def test_3ddfa_arrays_original_vs_reannotated(shared_data):
  d = shared_data / 'aflw2000_3d_protocol'
  ori = np.load(d / 'AFLW2000-3D.pts68.npy').astype(np.float64)  # (2000, 3, 68)
  re = np.load(d / 'AFLW2000-3D-Reannotated.pts68.npy').astype(np.float64)  # (2000, 2, 68)
  yaw = np.load(d / 'AFLW2000-3D.pose.npy')
  ori_k, re_k = np.swapaxes(ori, 1, 2), np.swapaxes(re, 1, 2)
  assert np.all(metrics.nme_per_image(re_k, re_k) == 0)
  # Original fitted GT scored against the re-annotated GT, and the reverse.
  nme = metrics.nme_per_image(ori_k, re_k)
  np.testing.assert_allclose(nme, _ddfa_calc_nme_loop(ori, re), rtol=1e-10)
  nme_rev = metrics.nme_per_image(re_k, ori_k)
  np.testing.assert_allclose(nme_rev, _ddfa_calc_nme_loop(re, ori[:, :2]), rtol=1e-10)
  t = metrics.nme_table(nme, yaw)
  assert sum(t.bin_counts) == 2000 and t.bin_counts == (1312, 383, 305)  # 3DDFA's published bin sizes
  # The two annotations differ by a few percent of the box: well above 0, well below a failed fit.
  assert 0.01 < t.mean < 0.06 and 0.01 < t.mean_of_bins < 0.08
  # Bin means by an independent loop.
  a = np.abs(yaw)
  for b, sel in enumerate([a <= 30, (a > 30) & (a <= 60), a > 60]):
    np.testing.assert_allclose(t.bin_means[b], np.mean([nme[i] for i in np.flatnonzero(sel)]), rtol=1e-12)


# ----------------------------------------------------------------------------- CED

def test_ced_curve_and_auc():
  errors = np.array([0.01, 0.02, 0.02, 0.05])
  t, f = metrics.ced_curve(errors, max_error=0.1, num=11)
  np.testing.assert_allclose(t, np.linspace(0, 0.1, 11))
  np.testing.assert_allclose(f, [0, .25, .75, .75, .75, 1, 1, 1, 1, 1, 1])
  # AUC against a fine numerical integral of the step function.
  tt, ff = metrics.ced_curve(errors, max_error=0.1, num=200001)
  np.testing.assert_allclose(metrics.ced_auc(errors, 0.1), np.trapezoid(ff, tt) / 0.1, atol=1e-4)


# ----------------------------------------------------------------------------- image metrics

def _images(seed=0, h=40, w=48):
  rng = np.random.default_rng(seed)
  a = ndimage_smooth(rng.uniform(0, 1, (h, w, 3)))
  b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
  mask = np.zeros((h, w), bool)
  mask[8:30, 10:40] = True
  return a, b, mask


def ndimage_smooth(x):
  from scipy import ndimage
  return ndimage.uniform_filter(x, size=(3, 3, 1))


def test_l1_psnr_hand_and_skimage():
  from skimage import metrics as skm
  a, b, mask = _images()
  np.testing.assert_allclose(metrics.l1_error(a, b, mask), np.abs(a - b)[mask].mean())
  mse = ((a - b) ** 2)[mask].mean()
  np.testing.assert_allclose(metrics.psnr(a, b, mask), 10 * np.log10(1 / mse))
  np.testing.assert_allclose(metrics.psnr(a, b), skm.peak_signal_noise_ratio(a, b, data_range=1.0))
  # Eq 19 with 255^2 on 8-bit images equals peak 1 on [0, 1] images.
  a8, b8 = np.round(a * 255), np.round(b * 255)
  np.testing.assert_allclose(metrics.psnr(a8 / 255, b8 / 255), metrics.psnr(a8, b8, peak=255.0))
  c = np.full((4, 4, 3), 0.5)
  np.testing.assert_allclose(metrics.psnr(c, c + 0.1), 20.0)  # MSE 0.01 -> 20 dB


def test_ssim_matches_skimage_in_face_region():
  from skimage import metrics as skm
  a, b, mask = _images(seed=3)
  _, full = skm.structural_similarity(a, b, data_range=1.0, channel_axis=-1, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False, full=True)
  ref_map = full.mean(axis=-1)
  np.testing.assert_allclose(metrics.ssim_map(a, b), ref_map, atol=1e-6)
  np.testing.assert_allclose(metrics.ssim(a, b, mask), ref_map[mask].mean(), atol=1e-6)
  assert metrics.ssim(a, a, mask) == pytest.approx(1.0)
  m = metrics.image_metrics(a, b, mask)
  assert set(m) == {'l1', 'psnr', 'ssim'} and 0 < m['ssim'] < 1


def test_face_region_metrics_composite_by_hand_and_empty_region():
  a, b, _ = _images(seed=4)
  alpha = np.zeros(a.shape[:2])
  alpha[4:12, 5:14] = 1.0
  alpha[12, 5:14] = 0.3  # drawn faintly: composited, but outside the region
  comp = a.copy()
  comp[4:12, 5:14] = b[4:12, 5:14]
  comp[12, 5:14] = 0.3 * b[12, 5:14] + 0.7 * a[12, 5:14]
  region = alpha > 0.5
  m = metrics.face_region_metrics(a, b, alpha)
  mse = np.mean((a[region] - b[region]) ** 2)
  assert m['psnr'] == pytest.approx(10 * np.log10(1 / mse))
  assert m['l1'] == pytest.approx(np.mean(np.abs(a[region] - b[region])))
  from skimage import metrics as skm
  _, full = skm.structural_similarity(a, comp, data_range=1.0, channel_axis=-1, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False, full=True)
  assert m['ssim'] == pytest.approx(full.mean(axis=-1)[region].mean(), abs=1e-6)
  assert metrics.face_region_metrics(a, b, np.zeros(a.shape[:2])) == {'l1': 1.0, 'psnr': 0.0, 'ssim': 0.0}


# ----------------------------------------------------------------------------- SIDE / MAD

def test_side_hand_made_and_scale_invariance():
  gt = np.array([[2.0, 4.0], [0.0, 8.0]])
  pred = np.array([[2.0, 2.0], [5.0, 0.0]])  # valid pixels: (0,0) delta 0 and (0,1) delta ln 2
  np.testing.assert_allclose(metrics.side(pred, gt), np.log(2) / 2)
  rng = np.random.default_rng(0)
  d = rng.uniform(8, 10, (16, 16))
  assert metrics.side(3.7 * d, d) == pytest.approx(0.0, abs=1e-12)
  mask = np.zeros((16, 16), bool)
  assert np.isnan(metrics.side(d, d, mask))


def _plane_depth(normal, c, size=32, focal=60.0, camera_distance=10.0):
  """View depth of the plane n . P = c seen through the contract's camera, solved per pixel ray."""
  cx = cy = size / 2
  uu, vv = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
  nx, ny, nz = normal
  denom = nx * (uu - cx) / focal + ny * (cy - vv) / focal - nz
  return (c - nz * camera_distance) / denom, dict(focal=focal, cx=cx, cy=cy, camera_distance=camera_distance)


def test_normals_from_depth_recovers_plane_normal():
  n = np.array([0.3, -0.2, 1.0])
  n /= np.linalg.norm(n)
  depth, cam = _plane_depth(n, c=0.5)
  assert depth.min() > 0
  normals, valid = metrics.normals_from_depth(depth, **cam)
  assert valid.sum() == 30 * 30 and not valid[0].any() and not valid[:, -1].any()
  np.testing.assert_allclose(normals[valid], np.broadcast_to(n, (900, 3)), atol=1e-9)
  # Background (depth 0) neighbours invalidate a pixel.
  depth2 = depth.copy()
  depth2[10, 10] = 0
  _, valid2 = metrics.normals_from_depth(depth2, **cam)
  assert not valid2[10, 10] and not valid2[10, 11] and not valid2[11, 10] and valid2[12, 12]


def test_mad_between_tilted_planes():
  theta = np.radians(20.0)
  n1 = np.array([0.0, 0.0, 1.0])
  n2 = np.array([np.sin(theta), 0.0, np.cos(theta)])
  d1, cam = _plane_depth(n1, c=0.0)
  d2, _ = _plane_depth(n2, c=0.0)
  out = metrics.depth_metrics(d2, d1, **cam)
  assert out['mad'] == pytest.approx(20.0, abs=1e-6)
  assert out['side'] > 0
  same = metrics.depth_metrics(d1, d1, **cam)
  assert same['side'] == pytest.approx(0.0, abs=1e-12) and same['mad'] == pytest.approx(0.0, abs=1e-5)
  # Hand case for mad on explicit normal maps, with a mask.
  a = np.zeros((1, 2, 3))
  b = np.zeros((1, 2, 3))
  a[..., 2] = 1
  b[0, 0] = [0, 1, 0]
  b[0, 1] = [0, 0, 5]
  assert metrics.mad(a, b) == pytest.approx(45.0)
  assert metrics.mad(a, b, np.array([[True, False]])) == pytest.approx(90.0)


# ----------------------------------------------------------------------------- ICP and dense NME

def _rotation(axis, angle):
  axis = np.asarray(axis, float) / np.linalg.norm(axis)
  k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _face_like_cloud(n=900, seed=0):
  rng = np.random.default_rng(seed)
  xy = rng.uniform(-1, 1, (n, 2))
  z = 0.6 * np.exp(-2 * (xy ** 2).sum(1)) + 0.2 * xy[:, 0] ** 2 - 0.1 * xy[:, 1] ** 3
  return np.concatenate([xy, z[:, None]], 1)


def test_similarity_transform_exact():
  src = _face_like_cloud(50)
  r = _rotation([1, 2, 3], 0.7)
  dst = 1.7 * src @ r.T + [0.1, -2, 3]
  s, r2, t = metrics.similarity_transform(src, dst)
  np.testing.assert_allclose(s, 1.7)
  np.testing.assert_allclose(r2, r, atol=1e-12)
  np.testing.assert_allclose(t, [0.1, -2, 3], atol=1e-12)


def test_icp_recovers_similarity_and_dense_nme():
  gt = _face_like_cloud()
  r = _rotation([0.2, 1, 0.1], np.radians(8))
  pred = 1.1 * gt @ r.T + [0.05, -0.03, 0.02]  # a slightly moved copy of the same surface
  aligned, (s, _, _) = metrics.icp(pred, gt, iterations=100)
  np.testing.assert_allclose(aligned, gt, atol=1e-5)
  assert s == pytest.approx(1 / 1.1, rel=1e-5)
  assert metrics.dense_nme(pred, gt, iterations=100) < 1e-5
  # Without alignment freedom the error equals a brute-force nearest-neighbour mean over the box size.
  shifted = gt + [0.0, 0.0, 0.01]
  brute = np.mean([np.min(np.linalg.norm(shifted - g, axis=1)) for g in gt])
  d = np.sqrt(np.ptp(gt[:, 0]) * np.ptp(gt[:, 1]))
  np.testing.assert_allclose(metrics.dense_nme(shifted, gt, iterations=0), brute / d, rtol=1e-9)
