"""Benchmarks of Sec 4.2 on a trained model (a facernet_jax.inference.Reconstructor).

`run_synthetic` (the synthetic test split: NME by yaw bin, L1 / PSNR / SSIM, SIDE / MAD, dense NME),
`run_aflw2000` (AFLW2000-3D, with 3DDFA's protocol arrays when given) and `run_lfpa` (AFLW-LFPA, 34
visibility-masked points) each return a result dict for facernet_jax.benchmark_outputs to write.
"""
import glob
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from facernet_jax import detect
from facernet_jax import forward
from facernet_jax import metrics
from facernet_jax.data import image_io
from facernet_jax.data import synthetic_faces
from facernet_jax.data.real import aflw2000_protocol
from facernet_jax.data.real import aflw_lfpa
from facernet_jax.data.real import common
from facernet_jax.nme_protocol import InputError
from facernet_jax.render import camera as camera_lib


def progress(msg):
  print(msg, file=sys.stderr, flush=True)


def batch_slices(n, size):
  """Slices of consecutive batches of `size` covering range(n) (the last may be short)."""
  for start in range(0, n, size):
    yield slice(start, min(start + size, n))


_PROTOCOL_BENCHMARK = {'aflw2000_3d': 'aflw2000_3d', 'lfpa': 'aflw_lfpa'}
_FOLDER = {'aflw2000_3d': 'AFLW2000', 'aflw_lfpa': 'AFLW_LFPA'}


def _eval_entries(config):
  return dict(config.get('eval_datasets', None) or {})


def config_benchmarks(config):
  """The benchmarks a training config implies: its eval_datasets' protocols (AFLW2000-3D, AFLW-LFPA),
  and 'synthetic' when it uses the synthetic face model."""
  names = [_PROTOCOL_BENCHMARK[e['protocol']] for e in _eval_entries(config).values()
           if e.get('protocol') in _PROTOCOL_BENCHMARK]
  if config.face_model.get('source', '') == 'synthetic':
    names.insert(0, 'synthetic')
  return list(dict.fromkeys(names))


def config_folder(config, benchmark):
  """Where training read `benchmark`'s data: AFLW2000/ or AFLW_LFPA/ in the eval entry's manual_dir,
  else config.dataset.manual_dir, else TFDS's <data_dir>/downloads/manual (None if not named)."""
  entry = next((e for e in _eval_entries(config).values()
                if _PROTOCOL_BENCHMARK.get(e.get('protocol')) == benchmark), None)
  if entry is None:
    return None
  manual = entry.get('manual_dir', '') or config.dataset.get('manual_dir', '')
  if not manual:
    data_dir = config.dataset.get('data_dir', '') or os.path.join('~', 'tensorflow_datasets')
    manual = os.path.join(data_dir, 'downloads', 'manual')
  manual = os.path.expanduser(manual)
  folder = os.path.join(manual, _FOLDER[benchmark])
  if benchmark == 'aflw2000_3d' and not os.path.isdir(folder) and glob.glob(
      os.path.join(manual, 'image*.mat')):
    return manual  # the flat layout the data builder accepts too
  return folder


def config_vertex_file(config):
  """The AFLW-LFPA eval entry's vertex_file (34 vertex indices), or None."""
  for e in _eval_entries(config).values():
    if e.get('protocol') == 'lfpa' and e.get('vertex_file'):
      return os.path.expanduser(e['vertex_file'])
  return None


def run_synthetic(rec, num_examples=-1):
  """Synthetic test split (ground-truth landmarks, yaw, depth, mesh): NME by yaw bin (Table 2 layout),
  L1 / PSNR / SSIM in the face region (Table 3), SIDE / MAD (Eqs 20-21, Tables 5-7), dense NME after ICP."""
  ds_config = synthetic_faces.config_from_training(rec.config)
  n = ds_config.num_examples('test') if num_examples is None or num_examples < 0 else \
      min(int(num_examples), ds_config.num_examples('test'))
  progress(f'synthetic test split: {n} images ({ds_config.image_size} px)')
  data = synthetic_faces.generate_examples(ds_config, 'test', 0, n)
  if ds_config.image_size != rec.image_size:
    raise InputError(f'synthetic data is {ds_config.image_size} px but the model takes {rec.image_size} px')
  # Ground-truth meshes: the dataset's coefficients through the model's *initial* bases (the trained
  # FC_shape / FC_texture may have moved; the data were made with the originals).
  gt_decoder = forward.FaceDecoder(face_model=rec.face_model, image_size=rec.image_size, raster=None)
  gt_vars = gt_decoder.init(jax.random.PRNGKey(0), jnp.zeros((1, data['coefficients'].shape[1])))
  gt_fn = jax.jit(lambda c: gt_decoder.apply(gt_vars, c)['vertices_cam'])
  cam = camera_lib.Camera.for_image_size(rec.image_size)
  lm_idx = np.asarray(rec.face_model.landmark_indices)  # ICP starts from the 68-landmark alignment
  rows = []
  for sl in batch_slices(n, rec.batch_size):
    images = data['image'][sl].astype(np.float32) / 255.0
    coeffs = rec.regress(images)
    dec = rec.decode(coeffs)
    c_gt, _ = rec.pad(data['coefficients'][sl].astype(np.float32))
    gt_vertices = np.asarray(gt_fn(c_gt))[:len(images)]
    nme = metrics.nme_per_image(dec['landmarks_crop'], data['landmarks'][sl])
    for k in range(len(images)):
      im = metrics.face_region_metrics(images[k], dec['render'][k], dec['alpha'][k])
      dm = metrics.depth_metrics(dec['depth'][k], data['depth'][sl][k], float(cam.focal), float(cam.cx),
                                 float(cam.cy), float(cam.camera_distance))
      init = metrics.similarity_transform(dec['vertices_cam'][k][lm_idx], gt_vertices[k][lm_idx])
      rows.append(dict(nme=float(nme[k]), yaw=float(data['yaw'][sl][k]), **im, **dm,
                       dense_nme=metrics.dense_nme(dec['vertices_cam'][k], gt_vertices[k], init=init)))
  return summarise('synthetic', rows)


def summarise(name, rows):
  """One benchmark's result: NME table by yaw bin, means of the other per-image metrics, the rows."""
  nme = np.array([r['nme'] for r in rows])
  yaw = np.array([r['yaw'] for r in rows])
  have_yaw = np.all(np.isfinite(yaw))
  table = metrics.nme_table(nme, yaw if have_yaw else None)
  out = {'name': name, 'count': len(rows), 'nme': table.as_dict(), 'per_image': rows}
  for key in ('nme_reannotated',):
    vals = np.array([r.get(key, np.nan) for r in rows], np.float64)
    if np.isfinite(vals).any():
      ok = np.isfinite(vals)
      out[key] = metrics.nme_table(vals[ok], yaw[ok] if have_yaw else None).as_dict()
  for key in ('l1', 'psnr', 'ssim', 'side', 'mad', 'dense_nme'):
    vals = np.array([r.get(key, np.nan) for r in rows], np.float64)
    if np.isfinite(vals).any():
      out[key] = float(np.nanmean(vals))
  out['_table'] = table
  return out


def read_aflw2000(folder, protocol_dir=None, limit=-1):
  """Yields dicts (name, image, landmarks (68, 2) continuous px, yaw degrees, box, reannotated or None).

  A direct folder reader (imageXXXXX.jpg + .mat) with the data builder's conventions
  (facernet_jax.data.real.aflw2000_protocol): with 3DDFA's arrays the crop is 3DDFA's roi box,
  otherwise the landmark crop used in training.
  """
  mats = sorted(glob.glob(os.path.join(folder, 'image*.mat')))
  if not mats:
    raise InputError(f'AFLW2000-3D folder {folder!r} has no imageXXXXX.mat files (expected the AFLW2000/ '
                     f'folder with imageXXXXX.jpg + imageXXXXX.mat)')
  rows = aflw2000_protocol.ProtocolRows(aflw2000_protocol.load_protocol(protocol_dir))
  count = 0
  for mat in mats:
    if 0 <= limit <= count:
      break
    jpg = mat[:-4] + '.jpg'
    try:
      image = image_io.read_image(jpg)
      raw, lm, yaw = aflw2000_protocol.read_annotation(mat)
    except (image_io.ImageReadError, KeyError, ValueError, OSError) as e:
      progress(f'warning: skipping {mat}: {e}')
      continue
    row = rows.row(raw)
    box = rows.roi_box(row)
    count += 1
    yield dict(name=os.path.basename(mat[:-4]), image=image, landmarks=lm, yaw=yaw,
               box=detect.crop_box_from_landmarks(lm) if box is None else box,
               reannotated=rows.reannotated(row), protocol_row=row)


def run_aflw2000(rec, folder, protocol_dir=None, limit=-1):
  """AFLW2000-3D: 68-point NME (original and re-annotated GT) by yaw bin, L1 / PSNR / SSIM of the
  render in the face region of the real photos; predictions in photo pixels for the `nme` tool."""
  items = list(read_aflw2000(folder, protocol_dir, limit))
  progress(f'AFLW2000-3D: {len(items)} images from {folder}')
  rows, preds = [], []
  for sl in batch_slices(len(items), rec.batch_size):
    chunk = items[sl]
    crops, maps = zip(*[detect.crop(it['image'], it['box'], rec.image_size) for it in chunk])
    crops = np.stack(crops)
    dec = rec.decode(rec.regress(crops))
    for k, it in enumerate(chunk):
      pred = maps[k](dec['landmarks_crop'][k])
      preds.append(pred)
      row = dict(name=it['name'], protocol_row=it['protocol_row'], yaw=it['yaw'],
                 nme=float(metrics.nme_per_image(pred, it['landmarks'])),
                 **metrics.face_region_metrics(crops[k], dec['render'][k], dec['alpha'][k]))
      if it['reannotated'] is not None:
        row['nme_reannotated'] = float(metrics.nme_per_image(pred, it['reannotated']))
      rows.append(row)
  out = summarise('aflw2000_3d', rows)
  out['_pred'] = np.stack(preds) if preds else np.zeros((0, 68, 2))
  out['_gt'] = np.stack([it['landmarks'] for it in items]) if items else np.zeros((0, 68, 2))
  return out


def run_lfpa(rec, folder, vertex_indices, limit=-1):
  """AFLW-LFPA (34 points, visibility-masked NME): needs the 34 landmark vertices of the face model."""
  idx = np.asarray(vertex_indices).reshape(-1)
  if idx.shape != (34,) or idx.min() < -1 or idx.max() >= rec.face_model.num_vertices or idx.max() < 0:
    raise InputError(f'--lfpa-points must hold 34 vertex indices of the face model '
                     f'(0..{rec.face_model.num_vertices - 1}, -1 = not on the model; see '
                     f'`python -m facernet_jax.data.real.lfpa_points`), got shape {idx.shape}')
  root = os.path.join(folder, 'test') if os.path.isdir(os.path.join(folder, 'test')) else folder
  mats = sorted(glob.glob(os.path.join(root, '*.mat')))[:None if limit < 0 else limit]
  if not mats:
    raise InputError(f'AFLW-LFPA folder {root!r} has no NAME.mat files')
  cam = camera_lib.Camera.for_image_size(rec.render_size)
  rows = []
  for sl in batch_slices(len(mats), rec.batch_size):
    items = []
    for mat in mats[sl]:
      jpg = next((mat[:-4] + e for e in ('.jpg', '.png', '.jpeg') if os.path.exists(mat[:-4] + e)), None)
      try:
        pts, vis, yaw = aflw_lfpa.read_annotation(common.read_mat(mat))  # the builder's reading
        image = image_io.read_image(jpg or mat[:-4] + '.jpg')
      except Exception as e:  # pylint: disable=broad-except
        progress(f'warning: skipping {mat}: {e}')
        continue
      items.append((mat, image, pts, vis, yaw, detect.crop_box_from_landmarks(pts[vis] if vis.any() else pts)))
    if not items:
      continue
    crops, maps = zip(*[detect.crop(it[1], it[5], rec.image_size) for it in items])
    dec = rec.decode(rec.regress(np.stack(crops)))
    screen = np.asarray(camera_lib.project(dec['vertices_cam'][:, np.maximum(idx, 0)], cam))[..., :2]
    screen = screen * (rec.image_size / rec.render_size)
    for k, it in enumerate(items):
      pred = maps[k](screen[k])
      # Points without a model vertex (-1 in --lfpa-points) are not scored; d stays the visible GT box.
      rows.append(dict(name=os.path.basename(it[0]), yaw=it[4],
                       nme=float(metrics.nme_per_image(pred, it[2], visible=it[3] & (idx >= 0),
                                                       normaliser=metrics.landmark_box_size(it[2], it[3])))))
  return summarise('aflw_lfpa', rows)
