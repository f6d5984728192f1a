"""Evaluation metrics of the paper (Sec 4.2): NME (Eq 18), CED, L1/PSNR (Eq 19)/SSIM, SIDE (Eq 20), MAD (Eq 21).

Plain numpy/scipy on host arrays: benchmarks run once per checkpoint, so clarity beats speed here, and
the functions stay independent of the training losses they are used to judge.

Conventions (see docs/evaluation.md):
- Landmarks are (..., K, 2) in pixels (any consistent convention; only differences matter).
- NME normaliser d = sqrt(w * h) of the ground-truth landmark box (Eq 18, 3DDFA protocol).
- Yaw bins on |yaw| in degrees: I [0, 30], II (30, 60], III (60, inf) -- 3DDFA's code puts the few
  AFLW2000-3D faces with |yaw| > 90 in bin III, and so do we (no wrapping), to match published tables.
- Images in [0, 1]; PSNR therefore uses peak 1 (Eq 19's 255^2 is the same for 8-bit images).
"""
import dataclasses

import numpy as np
from scipy import ndimage
from scipy import spatial

YAW_BIN_NAMES = ('[0, 30]', '(30, 60]', '(60, 90]')


# ----------------------------------------------------------------------------- NME (Eq 18)

def landmark_box_size(gt, visible=None):
  """sqrt(w * h) of the axis-aligned box of the ground-truth landmarks (Eq 18's d); gt (..., K, 2)."""
  gt = np.asarray(gt, np.float64)
  if visible is None:
    lo, hi = gt.min(axis=-2), gt.max(axis=-2)
  else:
    vis = np.asarray(visible, bool)[..., None]
    lo = np.where(vis, gt, np.inf).min(axis=-2)
    hi = np.where(vis, gt, -np.inf).max(axis=-2)
  wh = hi - lo
  return np.sqrt(wh[..., 0] * wh[..., 1])


def nme_per_image(pred, gt, visible=None, normaliser=None):
  """Per-image NME (Eq 18): mean over points of ||pred - gt||_2 / d, d = sqrt(w h) of the GT box.

  Args:
    pred, gt: (n, K, 2) (or (K, 2)) landmarks in pixels; only the first two coordinates are used.
    visible: optional (n, K) bool; invisible points are left out of the mean and of the box.
    normaliser: optional (n,) override for d.
  Returns:
    (n,) float64 (a fraction; multiply by 100 for the papers' %).
  """
  pred = np.asarray(pred, np.float64)[..., :2]
  gt = np.asarray(gt, np.float64)[..., :2]
  if pred.shape != gt.shape:
    raise ValueError(f'pred shape {pred.shape} != gt shape {gt.shape}')
  dist = np.linalg.norm(pred - gt, axis=-1)
  if visible is None:
    mean_dist = dist.mean(axis=-1)
  else:
    vis = np.asarray(visible, bool)
    mean_dist = (dist * vis).sum(axis=-1) / np.maximum(vis.sum(axis=-1), 1)
  d = landmark_box_size(gt, visible) if normaliser is None else np.asarray(normaliser, np.float64)
  return mean_dist / d


def yaw_bin_index(yaw_degrees):
  """Bin of |yaw|: 0 for [0, 30], 1 for (30, 60], 2 for > 60 (3DDFA's rule, no upper bound)."""
  a = np.abs(np.asarray(yaw_degrees, np.float64))
  return np.where(a <= 30.0, 0, np.where(a <= 60.0, 1, 2))


@dataclasses.dataclass(frozen=True)
class NMETable:
  """Table 2's row: NME per yaw bin, the mean of the bin means (published convention) and the plain mean."""
  bin_means: tuple  # three floats (nan for an empty bin)
  bin_counts: tuple  # three ints
  mean_of_bins: float  # mean of the three bin means (nan when a bin is empty)
  mean: float  # plain per-image mean
  count: int

  def as_dict(self, scale=100.0):
    """JSON-friendly dict in percent (scale=100)."""
    f = lambda v: None if not np.isfinite(v) else float(v) * scale
    return {
        'bins': [{'yaw': n, 'count': int(c), 'nme': f(m)}
                 for n, c, m in zip(YAW_BIN_NAMES, self.bin_counts, self.bin_means)],
        'mean_of_bins': f(self.mean_of_bins),
        'mean': f(self.mean),
        'count': int(self.count),
        'unit': 'percent' if scale == 100.0 else f'x{scale}',
    }


def nme_table(nme, yaw_degrees=None):
  """NME by yaw bin (Table 2). Without yaw, only the plain mean is defined (bins are nan, counts 0)."""
  nme = np.asarray(nme, np.float64).reshape(-1)
  if yaw_degrees is None:
    return NMETable((np.nan,) * 3, (0, 0, 0), np.nan, float(nme.mean()) if nme.size else np.nan,
                    int(nme.size))
  yaw_degrees = np.asarray(yaw_degrees, np.float64).reshape(-1)
  if yaw_degrees.shape != nme.shape:
    raise ValueError(f'{yaw_degrees.size} yaw values for {nme.size} images')
  idx = yaw_bin_index(yaw_degrees)
  counts = tuple(int((idx == b).sum()) for b in range(3))
  means = tuple(float(nme[idx == b].mean()) if counts[b] else np.nan for b in range(3))
  mean_of_bins = float(np.mean(means)) if all(counts) else np.nan
  return NMETable(means, counts, mean_of_bins, float(nme.mean()) if nme.size else np.nan,
                  int(nme.size))


def format_nme_table(rows, title='NME (%)'):
  """Table 2 layout as text: rows is a list of (name, NMETable) (or (name, NMETable, lfpa_mean))."""
  fmt = lambda v: f'{"-":>8s}' if v is None or not np.isfinite(v) else f'{100 * v:8.2f}'
  lines = [title,
           f'{"":24s}{"I":>8s}{"II":>8s}{"III":>8s}{"Mean":>8s}{"Plain":>8s}{"LFPA":>8s}  n (I/II/III)',
           f'{"":24s}{"[0,30]":>8s}{"(30,60]":>8s}{"(60,90]":>8s}{"of bins":>8s}{"mean":>8s}{"mean":>8s}']
  for row in rows:
    name, t = row[0], row[1]
    lfpa = row[2] if len(row) > 2 else None
    counts = '/'.join(str(c) for c in t.bin_counts)
    lines.append(f'{name:24.24s}{fmt(t.bin_means[0])}{fmt(t.bin_means[1])}{fmt(t.bin_means[2])}'
                 f'{fmt(t.mean_of_bins)}{fmt(t.mean)}{fmt(lfpa)}  {t.count} ({counts})')
  return '\n'.join(lines)


# ----------------------------------------------------------------------------- CED

def ced_curve(errors, max_error=None, num=201):
  """Cumulative error distribution: fraction of images with error <= threshold. Returns (thresholds, fractions)."""
  errors = np.sort(np.asarray(errors, np.float64).reshape(-1))
  if max_error is None:
    max_error = float(errors.max()) if errors.size else 1.0
  thresholds = np.linspace(0.0, max_error, num)
  fractions = np.searchsorted(errors, thresholds, side='right') / max(errors.size, 1)
  return thresholds, fractions


def ced_auc(errors, max_error):
  """Area under the CED curve up to max_error, normalised to [0, 1] (exact, not sampled)."""
  e = np.clip(np.asarray(errors, np.float64).reshape(-1), 0.0, max_error)
  return float(np.mean(1.0 - e / max_error))


# ----------------------------------------------------------------------------- image metrics (Table 3)

def _masked_mean(x, mask):
  x = np.asarray(x, np.float64)
  if mask is None:
    return float(x.mean())
  m = np.broadcast_to(np.asarray(mask, bool), x.shape)
  if not m.any():
    return float('nan')
  return float(x[m].mean())


def l1_error(image, render, mask=None):
  """Mean absolute difference over the face region (mask (H, W)) and colour channels; images in [0, 1]."""
  diff = np.abs(np.asarray(image, np.float64) - np.asarray(render, np.float64))
  return _masked_mean(diff, None if mask is None else np.asarray(mask, bool)[..., None])


def psnr(image, render, mask=None, peak=1.0):
  """PSNR (Eq 19) over the face region: 10 log10(peak^2 / MSE); peak 1 for [0, 1] images (= 255^2 for 8-bit)."""
  sq = (np.asarray(image, np.float64) - np.asarray(render, np.float64)) ** 2
  mse = _masked_mean(sq, None if mask is None else np.asarray(mask, bool)[..., None])
  return float(10.0 * np.log10(peak ** 2 / max(mse, 1e-20)))


def ssim_map(image, render, sigma=1.5, data_range=1.0, k1=0.01, k2=0.03):
  """Per-pixel SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), averaged over channels.

  Local statistics use population (not sample) covariance; borders are reflected.
  """
  x = np.asarray(image, np.float64)
  y = np.asarray(render, np.float64)
  if x.ndim == 2:
    x, y = x[..., None], y[..., None]
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  blur = lambda a: ndimage.gaussian_filter(a, sigma=(sigma, sigma, 0), truncate=3.5, mode='reflect')
  mx, my = blur(x), blur(y)
  vx = blur(x * x) - mx * mx
  vy = blur(y * y) - my * my
  cxy = blur(x * y) - mx * my
  s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
  return s.mean(axis=-1)


def ssim(image, render, mask=None, **kwargs):
  """SSIM averaged over the face region (mask (H, W)); composite the render over the photo first."""
  return _masked_mean(ssim_map(image, render, **kwargs), mask)


def face_region_composite(image, render, alpha):
  """Table 3's face region: (render composited over the photo, clipped to [0, 1]; alpha > 0.5).

  The region is where the reconstruction is drawn, the only region the protocol can mean on photos
  without face masks (docs/evaluation.md).
  """
  a = np.asarray(alpha, np.float64)[..., None]
  return np.clip(render * a + image * (1 - a), 0, 1), np.asarray(alpha) > 0.5


def image_metrics(image, render, mask):
  """Table 3's pixel-level metrics for one image: dict with l1, psnr, ssim (face region = mask)."""
  return {'l1': l1_error(image, render, mask), 'psnr': psnr(image, render, mask),
          'ssim': ssim(image, render, mask)}


def face_region_metrics(image, render, alpha):
  """Table 3's l1, psnr and ssim of one reconstruction in its face region (`face_region_composite`).

  A reconstruction that draws nothing scores the worst values (l1 1, PSNR 0 dB, SSIM 0) rather than
  dropping out of the mean: an empty region is never a free pass.
  """
  composite, region = face_region_composite(image, render, alpha)
  if not region.any():
    return {'l1': 1.0, 'psnr': 0.0, 'ssim': 0.0}
  return image_metrics(image, composite, region)


# ----------------------------------------------------------------------------- depth and normals (Tables 5-7)

def side(pred_depth, gt_depth, mask=None):
  """Scale-invariant depth error (Eq 20): std of Delta = ln d_gt - ln d_pred over valid pixels.

  Valid pixels: both depths > 0 (and mask, if given); Eq 20's W x H is the number of valid pixels.
  """
  p = np.asarray(pred_depth, np.float64)
  g = np.asarray(gt_depth, np.float64)
  valid = (p > 0) & (g > 0)
  if mask is not None:
    valid &= np.asarray(mask, bool)
  if not valid.any():
    return float('nan')
  delta = np.log(g[valid]) - np.log(p[valid])
  var = np.mean(delta ** 2) - np.mean(delta) ** 2
  return float(np.sqrt(max(var, 0.0)))


def depth_to_points(depth, focal, cx, cy, camera_distance=10.0):
  """Back-projects a view-depth map (H, W) to camera-frame points (H, W, 3), +z towards the viewer.

  Inverts the contract's camera: x = f X / d + cx, y = cy - f Y / d, d = camera_distance - Z,
  evaluated at pixel centres (j + 0.5, i + 0.5).
  """
  d = np.asarray(depth, np.float64)
  h, w = d.shape
  u = np.arange(w) + 0.5
  v = np.arange(h) + 0.5
  uu, vv = np.meshgrid(u, v)
  x = (uu - cx) * d / focal
  y = (cy - vv) * d / focal
  z = camera_distance - d
  return np.stack([x, y, z], axis=-1)


def normals_from_depth(depth, focal, cx, cy, camera_distance=10.0):
  """Unit surface normals (H, W, 3) facing the camera, from central differences of back-projected points.

  Returns (normals, valid): a pixel is valid when it and its four neighbours have depth > 0.
  """
  d = np.asarray(depth, np.float64)
  p = depth_to_points(d, focal, cx, cy, camera_distance)
  pos = d > 0
  valid = np.zeros_like(pos)
  valid[1:-1, 1:-1] = (pos[1:-1, 1:-1] & pos[1:-1, 2:] & pos[1:-1, :-2] & pos[2:, 1:-1] & pos[:-2, 1:-1])
  du = np.zeros_like(p)
  dv = np.zeros_like(p)
  du[:, 1:-1] = p[:, 2:] - p[:, :-2]
  dv[1:-1] = p[2:] - p[:-2]
  # Image v runs down, so (du x dv) points away from the viewer; flip to face the camera (+z).
  n = -np.cross(du, dv)
  norm = np.linalg.norm(n, axis=-1, keepdims=True)
  n = np.where(norm > 0, n / np.maximum(norm, 1e-30), 0.0)
  valid &= norm[..., 0] > 0
  return n, valid


def mad(pred_normals, gt_normals, mask=None):
  """Mean angle deviation in degrees (Eq 21) between unit normal maps (H, W, 3) over valid pixels."""
  a = np.asarray(pred_normals, np.float64)
  b = np.asarray(gt_normals, np.float64)
  a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-30)
  b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-30)
  ang = np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))
  return _masked_mean(ang, mask)


def depth_metrics(pred_depth, gt_depth, focal, cx, cy, camera_distance=10.0, mask=None):
  """SIDE (Eq 20) and MAD (Eq 21, normals of both depth maps) for one image, over common valid pixels."""
  n_p, v_p = normals_from_depth(pred_depth, focal, cx, cy, camera_distance)
  n_g, v_g = normals_from_depth(gt_depth, focal, cx, cy, camera_distance)
  valid = v_p & v_g
  if mask is not None:
    valid &= np.asarray(mask, bool)
  return {'side': side(pred_depth, gt_depth, mask), 'mad': mad(n_p, n_g, valid)}


# ----------------------------------------------------------------------------- dense alignment (ICP)

def similarity_transform(src, dst, scale=True):
  """Least-squares s, R, t with dst ~ s R src + t (Umeyama 1991); src, dst (N, 3) corresponding points."""
  src = np.asarray(src, np.float64)
  dst = np.asarray(dst, np.float64)
  mu_s, mu_d = src.mean(0), dst.mean(0)
  a, b = src - mu_s, dst - mu_d
  cov = b.T @ a / len(src)
  u, sv, vt = np.linalg.svd(cov)
  e = np.eye(3)
  if np.linalg.det(u) * np.linalg.det(vt) < 0:
    e[2, 2] = -1.0
  r = u @ e @ vt
  s = float(np.trace(np.diag(sv) @ e) / (a ** 2).sum() * len(src)) if scale else 1.0
  t = mu_d - s * r @ mu_s
  return s, r, t


def icp(source, target, iterations=30, scale=True, init=None, tol=1e-10):
  """Aligns `source` (N, 3) to `target` (M, 3) by ICP with nearest neighbours (scipy cKDTree).

  Returns (aligned source (N, 3), (s, R, t)). `init` is an optional (s, R, t) start, e.g. from landmarks.
  """
  source = np.asarray(source, np.float64)
  target = np.asarray(target, np.float64)
  tree = spatial.cKDTree(target)
  s, r, t = init if init is not None else (1.0, np.eye(3), np.zeros(3))
  prev = np.inf
  for _ in range(iterations):
    moved = s * source @ r.T + t
    dist, idx = tree.query(moved)
    s, r, t = similarity_transform(source, target[idx], scale=scale)
    err = float(np.mean(dist ** 2))
    if abs(prev - err) <= tol * max(err, 1e-30):
      break
    prev = err
  return s * source @ r.T + t, (s, r, t)


def dense_nme(pred_vertices, gt_vertices, iterations=30, scale=True, init=None, normaliser=None):
  """Dense alignment NME after ICP: mean over GT vertices of the distance to the nearest aligned predicted
  vertex, over sqrt(w h) of the GT vertices' (x, y) box (the landmark NME's normaliser, Sec 4.2.2)."""
  aligned, _ = icp(pred_vertices, gt_vertices, iterations, scale, init)
  gt = np.asarray(gt_vertices, np.float64)
  dist, _ = spatial.cKDTree(aligned).query(gt)
  d = landmark_box_size(gt[:, :2]) if normaliser is None else normaliser
  return float(dist.mean() / d)
