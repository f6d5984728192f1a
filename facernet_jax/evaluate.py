"""Benchmarks of Sec 4.2 and the standalone NME protocol tool.

  python -m facernet_jax.evaluate nme --pred PRED.npy --gt GT.npy [--yaw YAW.npy] [--csv F] [--json F] [--ced F.png]
      scores any method's landmarks under one protocol (Eq 18, 3DDFA's yaw bins).
  python -m facernet_jax.evaluate --workdir=DIR [--config=FILE.py] [--out=DIR] [--benchmarks=...]
      runs the benchmarks on a trained model (see docs/evaluation.md).
"""
import argparse
import csv
import io
import os
import sys

import numpy as np

from facernet_jax import metrics


class InputError(ValueError):
  """A user-facing input problem; main() prints it and exits with status 2."""


# ----------------------------------------------------------------------------- the `nme` protocol tool

def _check_npy_magic(path, what):
  with open(path, 'rb') as f:
    head = f.read(6)
  if head != b'\x93NUMPY':
    raise InputError(f'{what} file {path!r} is not a readable .npy array (no NumPy header); '
                     f'save it with np.save')


def _read_npy(path, what, kinds='fiu', expected='a numeric array'):
  """Reads a plain .npy array (never a pickle); errors name the file, what it is for and the fix."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(f'{what} file {path!r} does not exist')
  _check_npy_magic(path, what)
  try:
    a = np.load(path, allow_pickle=False)
  except ValueError as e:
    raise InputError(f'{what} file {path!r} holds Python objects (a pickle); save a plain array with '
                     f'np.save(path, np.asarray(x)) ({e})') from None
  except Exception as e:  # pylint: disable=broad-except
    raise InputError(f'{what} file {path!r} is not a readable .npy array: {e}') from None
  if not isinstance(a, np.ndarray) or a.dtype.kind not in kinds:
    raise InputError(f'{what} file {path!r} has dtype {getattr(a, "dtype", type(a))}; expected {expected}')
  return a


def load_landmark_array(path, what='landmarks'):
  """Loads (n, K, 2|3) or 3DDFA's (n, 2|3, K) (or a single (K, 2)) landmarks from .npy, returns (n, K, 2).

  No pickles (allow_pickle=False). Errors name the file, the shape and the fix.
  """
  path = os.fspath(path)
  a = _read_npy(path, what)
  if a.ndim == 2:
    a = a[None]
  if a.ndim != 3:
    raise InputError(f'{what} file {path!r} has shape {a.shape}; expected (n, 68, 2), (n, 68, 3), '
                     f'or 3DDFA\'s (n, 2, 68) / (n, 3, 68)')
  coord_last = a.shape[2] in (2, 3)
  coord_mid = a.shape[1] in (2, 3)
  if coord_last and coord_mid:
    raise InputError(f'{what} file {path!r} has ambiguous shape {a.shape}: cannot tell points from '
                     f'coordinates; save it as (n, K, 2) with K > 3')
  if coord_mid:
    a = np.swapaxes(a, 1, 2)  # 3DDFA layout (n, 2|3, K) -> (n, K, 2|3)
  elif not coord_last:
    raise InputError(f'{what} file {path!r} has shape {a.shape}; expected (n, 68, 2), (n, 68, 3), '
                     f'or 3DDFA\'s (n, 2, 68) / (n, 3, 68)')
  a = a[..., :2].astype(np.float64)
  if not np.all(np.isfinite(a)):
    bad = int((~np.isfinite(a)).any(axis=(1, 2)).sum())
    raise InputError(f'{what} file {path!r}: {bad} image(s) have NaN/inf coordinates; '
                     f'remove them from both files or fill them in')
  return a


def load_yaw(path, n):
  """Loads n yaw angles in degrees from .npy (any shape with n elements)."""
  path = os.fspath(path)
  y = _read_npy(path, 'yaw', expected='numbers (degrees)')
  y = np.asarray(y, np.float64).reshape(-1)
  if y.size != n:
    raise InputError(f'yaw file {path!r} has {y.size} values (shape {np.shape(y)}) but there are {n} images; '
                     f'give one yaw angle in degrees per image, in the same order')
  if np.all(np.abs(y) <= np.pi + 1e-6) and np.abs(y).max() > 0.1 and y.size > 10:
    print(f'warning: yaw values in {path!r} are all within +-pi; they must be degrees, not radians',
          file=sys.stderr)
  return y


def load_visibility(path, shape):
  """(n, K) visibility flags (bool or 0/1) from .npy."""
  path = os.fspath(path)
  v = _read_npy(path, 'visibility', kinds='biuf', expected='booleans or 0/1')
  if v.shape != tuple(shape):
    raise InputError(f'visibility file {path!r} has shape {v.shape}; expected {tuple(shape)} (images, points)')
  if v.dtype.kind not in 'biuf' or not np.all(np.isin(v, (0, 1))):
    raise InputError(f'visibility file {path!r} must hold booleans or 0/1')
  return v.astype(bool)


def score_landmarks(pred, gt, yaw=None, pred_shift=0.0, visible=None):
  """Per-image NME and the yaw-bin table for arrays already loaded as (n, K, 2)."""
  if pred.shape != gt.shape:
    raise InputError(f'prediction shape {pred.shape} and ground-truth shape {gt.shape} differ '
                     f'(after converting to (n, K, 2)); both need the same images and points, in order')
  if visible is not None and (~visible.any(axis=1)).any():
    raise InputError(f'{int((~visible.any(axis=1)).sum())} image(s) have no visible point')
  degenerate = ~(metrics.landmark_box_size(gt, visible) > 0)
  if degenerate.any():
    raise InputError(f'{int(degenerate.sum())} ground-truth landmark boxes have zero area '
                     f'(first: image {int(np.argmax(degenerate))}); the NME is undefined for them')
  nme = metrics.nme_per_image(pred + pred_shift, gt, visible=visible)
  return nme, metrics.nme_table(nme, yaw)


def per_image_csv(nme, yaw=None):
  """CSV text: index, nme (fraction), nme_percent, yaw, yaw_bin."""
  buf = io.StringIO()
  w = csv.writer(buf)
  w.writerow(['index', 'nme', 'nme_percent', 'yaw_degrees', 'yaw_bin'])
  bins = None if yaw is None else metrics.yaw_bin_index(yaw)
  for i, e in enumerate(nme):
    w.writerow([i, f'{e:.8f}', f'{100 * e:.6f}',
                '' if yaw is None else f'{yaw[i]:.4f}',
                '' if yaw is None else metrics.YAW_BIN_NAMES[int(bins[i])]])
  return buf.getvalue()


def nme_main(argv):
  """`nme` subcommand: returns the exit status."""
  p = argparse.ArgumentParser(
      prog='python -m facernet_jax.evaluate nme',
      description='NME (Eq 18) of landmark predictions, normalised by sqrt(w*h) of the ground-truth '
                  'landmark box, by |yaw| bin [0,30], (30,60], (60,90] (3DDFA protocol: >90 counts as III).')
  p.add_argument('--pred', required=True, help='.npy predictions: (n,68,2), (n,68,3), (n,2,68) or (n,3,68)')
  p.add_argument('--gt', required=True, help='.npy ground truth, same layouts (e.g. 3DDFA AFLW2000-3D.pts68.npy)')
  p.add_argument('--yaw', help='.npy yaw angles in degrees, one per image (e.g. 3DDFA AFLW2000-3D.pose.npy)')
  p.add_argument('--visible', help='.npy (n, K) visibility flags: invisible points are left out (AFLW-LFPA)')
  p.add_argument('--pred-shift', type=float, default=0.0,
                 help='added to predicted x and y before scoring, to reconcile pixel conventions '
                      '(e.g. -0.5 to turn continuous coordinates into 0-based pixel indices)')
  p.add_argument('--name', default='method', help='row name in the table')
  p.add_argument('--csv', help='write per-image NME to this CSV file')
  p.add_argument('--json', help='write the summary table (percent) to this JSON file')
  p.add_argument('--ced', help='write the CED curve to this PNG file')
  p.add_argument('--ced-max', type=float, default=10.0, help='x-axis limit of the CED plot, percent')
  args = p.parse_args(argv)

  pred = load_landmark_array(args.pred, 'prediction')
  gt = load_landmark_array(args.gt, 'ground-truth')
  yaw = load_yaw(args.yaw, len(gt)) if args.yaw else None
  visible = load_visibility(args.visible, gt.shape[:2]) if args.visible else None
  nme, table = score_landmarks(pred, gt, yaw, args.pred_shift, visible)
  print(metrics.format_nme_table([(args.name, table)],
                                 title=f'NME (%) of {len(nme)} images, {pred.shape[1]} points, '
                                       f'normalised by sqrt(w*h) of the GT landmark box'))
  if yaw is None:
    print('(no --yaw: only the plain mean is defined)')
  if args.csv:
    metrics.atomic_write_bytes(args.csv, per_image_csv(nme, yaw).encode())
  if args.json:
    summary = table.as_dict()
    summary.update(pred=os.path.abspath(args.pred), gt=os.path.abspath(args.gt), points=int(pred.shape[1]),
                   pred_shift=args.pred_shift, name=args.name)
    metrics.write_json(args.json, summary)
  if args.ced:
    metrics.plot_ced({args.name: nme}, args.ced, max_error=args.ced_max / 100.0,
                     title=f'CED ({len(nme)} images, {pred.shape[1]} points)')
  return 0


# ----------------------------------------------------------------------------- benchmarks of a trained model

def _progress(msg):
  print(msg, file=sys.stderr, flush=True)


def _batches(n, size):
  for start in range(0, n, size):
    yield slice(start, min(start + size, n))


def load_config_file(path):
  """get_config() of a config .py file (as the training CLI takes it)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise InputError(f'config file {path!r} does not exist')
  spec = importlib.util.spec_from_file_location('facernet_eval_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def run_synthetic(rec, num_examples=-1):
  """Synthetic test split (ground-truth landmarks, yaw, depth, mesh): NME by yaw bin (Table 2 layout),
  L1 / PSNR / SSIM in the face region (Table 3), SIDE / MAD (Eqs 20-21, Tables 5-7), dense NME after ICP."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from facernet_jax import forward  # pylint: disable=g-import-not-at-top
  from facernet_jax.data import synthetic_faces  # pylint: disable=g-import-not-at-top
  from facernet_jax.render import camera as camera_lib  # pylint: disable=g-import-not-at-top
  ds_config = synthetic_faces.config_from_training(rec.config)
  n = ds_config.num_examples('test') if num_examples is None or num_examples < 0 else \
      min(int(num_examples), ds_config.num_examples('test'))
  _progress(f'synthetic test split: {n} images ({ds_config.image_size} px)')
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
  for sl in _batches(n, rec.batch_size):
    images = data['image'][sl].astype(np.float32) / 255.0
    coeffs = rec.regress(images)
    dec = rec.decode(coeffs)
    c_gt, _ = rec._pad(data['coefficients'][sl].astype(np.float32))  # pylint: disable=protected-access
    gt_vertices = np.asarray(gt_fn(c_gt))[:len(images)]
    nme = metrics.nme_per_image(dec['landmarks_crop'], data['landmarks'][sl])
    for k in range(len(images)):
      im = metrics.face_region_metrics(images[k], dec['render'][k], dec['alpha'][k])
      dm = metrics.depth_metrics(dec['depth'][k], data['depth'][sl][k], float(cam.focal), float(cam.cx),
                                 float(cam.cy), float(cam.camera_distance))
      init = metrics.similarity_transform(dec['vertices_cam'][k][lm_idx], gt_vertices[k][lm_idx])
      rows.append(dict(nme=float(nme[k]), yaw=float(data['yaw'][sl][k]), **im, **dm,
                       dense_nme=metrics.dense_nme(dec['vertices_cam'][k], gt_vertices[k], init=init)))
  return _summarise('synthetic', rows)


def _summarise(name, rows):
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


# AFLW2000-3D: a direct folder reader (imageXXXXX.jpg + .mat), with 3DDFA's protocol arrays when given.

def _row_key(pts):
  return tuple(np.round(np.asarray(pts, np.float64)[:2].ravel(), 2))


def read_aflw2000(folder, protocol_dir=None, limit=-1):
  """Yields dicts (name, image, landmarks (68, 2) continuous px, yaw degrees, box, reannotated or None).

  Landmarks follow the data builder (facernet_jax/data/real/aflw2000_3d.py): pt3d_68 is read as
  1-based MATLAB pixels (-0.5), 3DDFA's re-annotation as 0-based (+0.5); with 3DDFA's arrays the crop
  is 3DDFA's roi box (rows matched by pt3d_68), otherwise the landmark crop used in training.
  """
  import glob  # pylint: disable=g-import-not-at-top
  from facernet_jax.data import image_io  # pylint: disable=g-import-not-at-top
  from facernet_jax.data.real import common  # pylint: disable=g-import-not-at-top
  from facernet_jax import detect  # pylint: disable=g-import-not-at-top
  mats = sorted(glob.glob(os.path.join(folder, 'image*.mat')))
  if not mats:
    raise InputError(f'AFLW2000-3D folder {folder!r} has no imageXXXXX.mat files (expected the AFLW2000/ '
                     f'folder with imageXXXXX.jpg + imageXXXXX.mat)')
  proto = {}
  if protocol_dir:
    for key, fname in (('pts68', 'AFLW2000-3D.pts68.npy'), ('roi_box', 'AFLW2000-3D_crop.roi_box.npy'),
                       ('reannotated', 'AFLW2000-3D-Reannotated.pts68.npy')):
      f = os.path.join(protocol_dir, fname)
      if os.path.isfile(f):
        proto[key] = np.load(f, allow_pickle=False)
  rows = {_row_key(p): i for i, p in enumerate(proto['pts68'])} if 'pts68' in proto else {}
  count = 0
  for mat in mats:
    if 0 <= limit <= count:
      break
    jpg = mat[:-4] + '.jpg'
    try:
      image = image_io.read_image(jpg)
      m = common.read_mat(mat)
      raw = np.asarray(m['pt3d_68'], np.float64)
      lm = common.matlab_points(raw, 68)
      yaw = float(np.degrees(np.ravel(m['Pose_Para'])[1]))
    except (image_io.ImageReadError, KeyError, ValueError, OSError) as e:
      _progress(f'warning: skipping {mat}: {e}')
      continue
    row = rows.get(_row_key(raw), -1)
    box = detect.crop_box_from_landmarks(lm)
    if row >= 0 and 'roi_box' in proto:
      box = np.round(proto['roi_box'][row]).astype(np.float64)
    re = None
    if row >= 0 and 'reannotated' in proto:
      re = common.zero_based_points(proto['reannotated'][row], 68)
    count += 1
    yield dict(name=os.path.basename(mat[:-4]), image=image, landmarks=lm, yaw=yaw, box=box,
               reannotated=re, protocol_row=row)


def run_aflw2000(rec, folder, protocol_dir=None, limit=-1):
  """AFLW2000-3D: 68-point NME (original and re-annotated GT) by yaw bin, L1 / PSNR / SSIM of the
  render in the face region of the real photos; predictions in photo pixels for the `nme` tool."""
  from facernet_jax import detect  # pylint: disable=g-import-not-at-top
  items = list(read_aflw2000(folder, protocol_dir, limit))
  _progress(f'AFLW2000-3D: {len(items)} images from {folder}')
  rows, preds = [], []
  for sl in _batches(len(items), rec.batch_size):
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
  out = _summarise('aflw2000_3d', rows)
  out['_pred'] = np.stack(preds) if preds else np.zeros((0, 68, 2))
  out['_gt'] = np.stack([it['landmarks'] for it in items]) if items else np.zeros((0, 68, 2))
  return out


def run_lfpa(rec, folder, vertex_indices, limit=-1):
  """AFLW-LFPA (34 points, visibility-masked NME): needs the 34 landmark vertices of the face model."""
  import glob  # pylint: disable=g-import-not-at-top
  from facernet_jax import detect  # pylint: disable=g-import-not-at-top
  from facernet_jax.data import image_io  # pylint: disable=g-import-not-at-top
  from facernet_jax.data.real import common  # pylint: disable=g-import-not-at-top
  from facernet_jax.render import camera as camera_lib  # pylint: disable=g-import-not-at-top
  idx = np.asarray(vertex_indices).reshape(-1)
  if idx.shape != (34,) or idx.min() < 0 or idx.max() >= rec.face_model.num_vertices:
    raise InputError(f'--lfpa-points must hold 34 vertex indices of the face model '
                     f'(0..{rec.face_model.num_vertices - 1}), got shape {idx.shape}')
  root = os.path.join(folder, 'test') if os.path.isdir(os.path.join(folder, 'test')) else folder
  mats = sorted(glob.glob(os.path.join(root, '*.mat')))[:None if limit < 0 else limit]
  if not mats:
    raise InputError(f'AFLW-LFPA folder {root!r} has no NAME.mat files')
  cam = camera_lib.Camera.for_image_size(rec.render_size)
  rows = []
  for sl in _batches(len(mats), rec.batch_size):
    items = []
    for mat in mats[sl]:
      jpg = next((mat[:-4] + e for e in ('.jpg', '.png', '.jpeg') if os.path.exists(mat[:-4] + e)), None)
      try:
        m = common.read_mat(mat)
        pts = common.matlab_points(m['pt2d'], 34)
        vis = np.ravel(m['visibility']).astype(bool) if 'visibility' in m else np.ones(34, bool)
        image = image_io.read_image(jpg or mat[:-4] + '.jpg')
      except Exception as e:  # pylint: disable=broad-except
        _progress(f'warning: skipping {mat}: {e}')
        continue
      yaw = float(np.ravel(m['yaw'])[0]) if 'yaw' in m else np.nan
      items.append((mat, image, pts, vis, yaw, detect.crop_box_from_landmarks(pts[vis] if vis.any() else pts)))
    if not items:
      continue
    crops, maps = zip(*[detect.crop(it[1], it[5], rec.image_size) for it in items])
    dec = rec.decode(rec.regress(np.stack(crops)))
    screen = np.asarray(camera_lib.project(dec['vertices_cam'][:, idx], cam))[..., :2]
    screen = screen * (rec.image_size / rec.render_size)
    for k, it in enumerate(items):
      pred = maps[k](screen[k])
      rows.append(dict(name=os.path.basename(it[0]), yaw=it[4],
                       nme=float(metrics.nme_per_image(pred, it[2], visible=it[3]))))
  return _summarise('aflw_lfpa', rows)


def _write_outputs(out_dir, results):
  from facernet_jax import export  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  rows = []
  for r in results:
    t = r['_table']
    if r['name'] == 'aflw_lfpa':
      continue
    rows.append((r['name'], t))
    if 'nme_reannotated' in r:
      vals = np.array([x.get('nme_reannotated', np.nan) for x in r['per_image']], np.float64)
      yaw = np.array([x['yaw'] for x in r['per_image']])
      ok = np.isfinite(vals)
      rows.append((r['name'] + ' (re-annotated)', metrics.nme_table(vals[ok], yaw[ok])))
  lfpa = next((r for r in results if r['name'] == 'aflw_lfpa'), None)
  if lfpa is not None:
    rows.append(('aflw_lfpa (34 points)', lfpa['_table'], lfpa['_table'].mean))
  text = [metrics.format_nme_table(rows, title='Table 2 layout: NME (%), 68 points unless said, '
                                               'normalised by sqrt(w*h) of the GT landmark box')]
  t3 = [(r['name'], r) for r in results if 'psnr' in r]
  if t3:
    text.append('\nTable 3 layout: rendered vs input image in the face region (rendered coverage)')
    text.append(f'{"":24s}{"L1":>8s}{"PSNR":>8s}{"SSIM":>8s}')
    text += [f'{n:24.24s}{r["l1"]:8.4f}{r["psnr"]:8.2f}{r["ssim"]:8.3f}' for n, r in t3]
  t5 = [(r['name'], r) for r in results if 'side' in r]
  if t5:
    text.append('\nTables 5-7 layout: depth and normals (Eqs 20-21); dense alignment after ICP')
    text.append(f'{"":24s}{"SIDE(e-2)":>10s}{"MAD(deg)":>10s}{"dense NME(%)":>13s}')
    text += [f'{n:24.24s}{100 * r["side"]:10.4f}{r["mad"]:10.4f}{100 * r.get("dense_nme", np.nan):13.3f}'
             for n, r in t5]
  report = '\n'.join(text) + '\n'
  export.atomic_write_bytes(os.path.join(out_dir, 'tables.txt'), report.encode())
  curves = {}
  for r in results:
    curves[r['name']] = [x['nme'] for x in r['per_image']]
    if 'nme_reannotated' in r:
      curves[r['name'] + ' re-annotated'] = [x['nme_reannotated'] for x in r['per_image'] if 'nme_reannotated' in x]
    metrics.plot_ced({k: v for k, v in curves.items() if k.startswith(r['name'])},
                     os.path.join(out_dir, f'ced_{r["name"]}.png'), max_error=0.1,
                     title=f'CED: {r["name"]} ({r["count"]} images)')
    if '_pred' in r:
      # 3DDFA layout (n, 2, 68), continuous photo pixels; for 3DDFA's arrays use `nme --pred-shift`.
      buf = io.BytesIO()
      np.save(buf, np.swapaxes(r['_pred'], 1, 2).astype(np.float32))
      export.atomic_write_bytes(os.path.join(out_dir, f'{r["name"]}_pred.pts68.npy'), buf.getvalue())
  clean = [{k: v for k, v in r.items() if not k.startswith('_')} for r in results]
  metrics.write_json(os.path.join(out_dir, 'results.json'), {'benchmarks': clean})
  return report


def benchmark_main(argv):
  """Benchmarks of a trained model; returns the exit status."""
  p = argparse.ArgumentParser(
      prog='python -m facernet_jax.evaluate',
      description='Benchmarks of Sec 4.2 on a trained model. Subcommand `nme` scores landmark files.')
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument('--workdir', help='training workdir (newest checkpoint)')
  src.add_argument('--checkpoint', help='one checkpoint directory')
  p.add_argument('--config', help='config .py to use instead of the checkpoint\'s (same architecture)')
  p.add_argument('--out', help='output folder (default: WORKDIR/eval)')
  p.add_argument('--benchmarks', default='synthetic',
                 help='comma-separated: synthetic, aflw2000_3d, aflw_lfpa')
  p.add_argument('--aflw2000', help='folder with AFLW2000-3D imageXXXXX.jpg + .mat')
  p.add_argument('--protocol-dir', help="folder with 3DDFA's AFLW2000-3D arrays (roi boxes, re-annotation)")
  p.add_argument('--lfpa', help='AFLW-LFPA folder (test/NAME.jpg + NAME.mat with pt2d (2, 34))')
  p.add_argument('--lfpa-points', help='.npy with the 34 face-model vertex indices of the LFPA landmarks')
  p.add_argument('--max-examples', type=int, default=-1, help='limit per benchmark (-1: all)')
  p.add_argument('--batch-size', type=int, default=16)
  args = p.parse_args(argv)
  from facernet_jax import reconstruct  # pylint: disable=g-import-not-at-top
  path = args.workdir or args.checkpoint
  try:
    rec = reconstruct.load_model(path, args.batch_size, render_size=None)
  except reconstruct.ModelError as e:
    raise InputError(str(e)) from None
  if args.config:
    rec = reconstruct.Reconstructor(load_config_file(args.config), rec.variables, args.batch_size, None)
  names = [b.strip() for b in args.benchmarks.split(',') if b.strip()]
  unknown = set(names) - {'synthetic', 'aflw2000_3d', 'aflw_lfpa'}
  if unknown:
    raise InputError(f'unknown benchmarks {sorted(unknown)}; choose from synthetic, aflw2000_3d, aflw_lfpa')
  results = []
  for name in names:
    if name == 'synthetic':
      if rec.config.face_model.get('source', '') != 'synthetic' and not args.config:
        _progress('skipping synthetic: the model does not use the synthetic face model')
        continue
      results.append(run_synthetic(rec, args.max_examples))
    elif name == 'aflw2000_3d':
      if not args.aflw2000:
        raise InputError('aflw2000_3d needs --aflw2000=FOLDER (imageXXXXX.jpg + .mat)')
      results.append(run_aflw2000(rec, args.aflw2000, args.protocol_dir, args.max_examples))
    elif name == 'aflw_lfpa':
      if not (args.lfpa and args.lfpa_points):
        raise InputError('aflw_lfpa needs --lfpa=FOLDER and --lfpa-points=FILE.npy (34 vertex indices of the '
                         'face model; see docs/evaluation.md)')
      points = _read_npy(args.lfpa_points, '--lfpa-points', 'iu', 'integer vertex indices')
      results.append(run_lfpa(rec, args.lfpa, points, args.max_examples))
  out_dir = args.out or os.path.join(path, 'eval')
  report = _write_outputs(out_dir, results)
  print(report)
  print(f'written to {out_dir}: tables.txt, results.json, ced_*.png')
  return 0



# ----------------------------------------------------------------------------- entry point

def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    if argv[:1] == ['nme']:
      return nme_main(argv[1:])
    return benchmark_main(argv)
  except InputError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
