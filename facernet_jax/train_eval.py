"""Evaluation during training and TensorBoard image summaries (Sec 4.2's metrics on an eval split).

`evaluate` runs a compiled eval step over one pass of an evaluation split and returns NME (by yaw
bin when the split has yaw), PSNR and SSIM; `summary_images` draws input, render and landmarks.
"""
from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from facernet_jax import face_model as face_model_lib
from facernet_jax import forward
from facernet_jax import input_pipeline
from facernet_jax import metrics as metrics_lib

def draw_points(image, points, colour, radius=1):
  """Draws small squares at `points` (K,2, continuous pixels) on a copy of `image` (H,W,3)."""
  out = np.array(image, copy=True)
  h, w = out.shape[:2]
  for x, y in np.asarray(points):
    if not (np.isfinite(x) and np.isfinite(y)):
      continue
    i, j = int(np.floor(y)), int(np.floor(x))
    out[max(i - radius, 0):max(min(i + radius + 1, h), 0),
        max(j - radius, 0):max(min(j + radius + 1, w), 0)] = colour
  return out


def summary_images(images, renders, alphas, pred, gt, scale=4):
  """Images for TensorBoard: input, render (over the input) and the landmark overlay (red = predicted,
  green = ground truth), upscaled `scale` times (nearest) so the points are visible."""
  up = lambda x: np.repeat(np.repeat(x, scale, axis=-3), scale, axis=-2)
  images = np.clip(np.asarray(images, np.float32), 0, 1)
  a = np.asarray(alphas, np.float32)[..., None]
  composite = np.clip(np.asarray(renders) * a + images * (1 - a), 0, 1)
  overlay = []
  for k in range(images.shape[0]):
    o = draw_points(up(images[k]), np.asarray(gt[k]) * scale, (0.0, 1.0, 0.0), radius=1)
    o = draw_points(o, np.asarray(pred[k]) * scale, (1.0, 0.0, 0.0), radius=1)
    overlay.append(o)
  return {'input': up(images), 'render': up(composite), 'overlay': np.stack(overlay)}


def write_image_summaries(config, parallel, p_eval_step, state, batch, writer, step):
  """Input, render and landmark overlay of the first images of `batch`."""
  out = parallel.get_output(p_eval_step(*parallel.eval_args(state),
                                        parallel.put_batch(device_batch(batch))))
  n = config.num_summary_images
  host = jax.tree_util.tree_map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), batch)
  images = summary_images(host['image'][:n], out['render'][:n], out['alpha'][:n],
                          out['landmarks'][:n], host['landmarks'][:n])
  writer.write_images(step, {f'images/{k}': v for k, v in images.items()})


def evaluate(config, parallel, p_eval_step, state, builders, split, max_batches=-1):
  """evaluate_set on `split` of the training builders (68 points)."""
  return evaluate_set(config, parallel, p_eval_step, state,
                      input_pipeline.EvalSet(split, builders, split), max_batches)


_BINS = ('nme_yaw_0_30', 'nme_yaw_30_60', 'nme_yaw_60_90')


def evaluate_set(config, parallel, p_eval_step, state, eval_set, max_batches=-1):
  """NME (box-normalised, %; by yaw bin when the set has yaw), PSNR (dB) and SSIM of the render in
  the face region, on one input_pipeline.EvalSet.

  68-point sets score the model's 68 landmarks; AFLW-LFPA ('lfpa', 34 points) scores the projected
  face-model vertices `eval_set.vertex_indices` on the visible points only (Eq 18 with the box of
  the visible ground truth), as `evaluate`'s aflw_lfpa benchmark. Yaw bins are |yaw| in [0, 30],
  (30, 60], (60, 90] (above 90 counts in the last, 3DDFA's protocol), as `evaluate nme`.
  Face region: where the reconstruction is drawn (alpha > 0.5), the render composited over the photo
  elsewhere, as `evaluate.py` and the paper's Table 3 on photos without masks (docs/evaluation.md).
  NME keeps the geometry honest: a face drawn too small or misplaced fails it. When the split has a
  face mask (synthetic data), `psnr_mask` also reports the PSNR inside the true face mask, where
  pixels the render misses count as errors. Means over images, across all processes.
  """
  args = parallel.eval_args(state)
  keys = input_pipeline.keys_of_split(eval_set.builders)
  has_mask = 'mask' in keys
  points_fn = None
  if eval_set.vertex_indices is not None:
    points_fn = vertex_points_fn(config, parallel.get_state(state.params['decoder']),
                                 eval_set.vertex_indices)
  # nme, psnr, ssim, psnr in the true mask, count, then (sum, count) per yaw bin.
  sums = np.zeros(5 + 2 * len(_BINS), np.float64)
  for i, batch in enumerate(input_pipeline.eval_iterator(config, eval_set.builders, eval_set.split)):
    if 0 <= max_batches <= i:
      break
    out = parallel.get_output(p_eval_step(*args, parallel.put_batch(device_batch(batch))))
    host = jax.tree_util.tree_map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), batch)
    valid = host['valid'].astype(bool) if 'valid' in host else np.ones(len(host['image']), bool)
    if not valid.any():
      continue
    images = host['image'].astype(np.float32)
    pred = out['landmarks'] if points_fn is None else points_fn(out['coefficients'])
    gt = _pad_boxes(host['landmarks'], valid)
    visible = host.get('visible', None)
    if visible is not None:
      visible = visible.astype(bool) | ~valid[:, None]  # padding rows: any box will do
    scored, normaliser = visible, None
    if eval_set.vertex_indices is not None:
      # Points without a model vertex (-1) are not scored; d stays the visible ground-truth box.
      scored = (visible if visible is not None else np.ones(gt.shape[:2], bool)) & (
          np.asarray(eval_set.vertex_indices) >= 0)
      normaliser = metrics_lib.landmark_box_size(gt, visible)
    nme = metrics_lib.nme_per_image(pred, gt, visible=scored, normaliser=normaliser)
    yaw = host['yaw'].astype(np.float64) if 'yaw' in host else np.full(len(valid), np.nan)
    for k in np.nonzero(valid)[0]:
      region = metrics_lib.face_region_metrics(images[k], out['render'][k], out['alpha'][k])
      in_mask = (metrics_lib.psnr(images[k], out['render'][k], host['mask'][k] > 0)
                 if has_mask else 0.0)
      sums[:5] += [nme[k], region['psnr'], region['ssim'], in_mask, 1.0]
      if np.isfinite(yaw[k]):
        b = int(metrics_lib.yaw_bin_index(np.asarray([yaw[k]]))[0])
        sums[5 + 2 * b:7 + 2 * b] += [nme[k], 1.0]
  if jax.process_count() > 1:
    sums = np.asarray(multihost_utils.process_allgather(sums)).sum(axis=0)
  sums = np.asarray(sums, np.float64)
  count = max(float(sums[4]), 1.0)
  result = {'nme': 100.0 * float(sums[0]) / count, 'psnr': float(sums[1]) / count,
            'ssim': float(sums[2]) / count, 'num_images': float(sums[4])}
  if has_mask:
    result['psnr_mask'] = float(sums[3]) / count
  if sums[6::2].sum() > 0:
    for b, name in enumerate(_BINS):
      n = float(sums[6 + 2 * b])
      result[name] = 100.0 * float(sums[5 + 2 * b]) / n if n else float('nan')
      result[name.replace('nme_', 'count_')] = n
  return result


def _pad_boxes(gt, valid):
  """Padding rows (all zeros) get a unit box so that their NME is finite (they are dropped)."""
  gt = np.array(gt, np.float64, copy=True)
  gt[~valid] = 0.0
  gt[~valid, 1::2] = 1.0
  return gt


def vertex_points_fn(config, decoder_params, vertex_indices):
  """coefficients (B, 495) -> (B, K, 2) image pixels of the face-model vertices `vertex_indices`,
  through the trained 3DMM layer and the camera (no render)."""
  decoder = forward.FaceDecoder(face_model=face_model_lib.from_config(config.face_model),
                                image_size=config.image_size,
                                trainable_bases=config.trainable_bases, raster=None)
  idx = np.maximum(np.asarray(vertex_indices), 0)  # -1 (not on the model) is not scored
  fn = jax.jit(lambda p, c: decoder.apply({'params': p}, c)['screen'][:, idx, :2])
  return lambda coefficients: np.asarray(fn(decoder_params, coefficients), np.float64)


def run_evaluation(config, parallel, p_eval_step, state, eval_sets, kind, step, writer,
                   max_batches=-1):
  """evaluate_set on each set; writes `kind/<metric>` (one set) or `kind/<label>/<metric>` scalars,
  prints one line per set (process 0) and returns {label: metrics}."""
  results = {}
  for eval_set in eval_sets:
    m = evaluate_set(config, parallel, p_eval_step, state, eval_set, max_batches)
    results[eval_set.label] = m
    prefix = kind if len(eval_sets) == 1 else f'{kind}/{eval_set.label}'
    writer.write_scalars(step, {f'{prefix}/{k}': v for k, v in m.items()})
    if jax.process_index() == 0:
      bins = ''.join(f'  {name[8:]} {m[name]:.2f}%' for name in _BINS if name in m)
      text = (f'{kind} ({eval_set.label}, {int(m["num_images"])} images, {eval_set.points} points) '
              f'step {step}: NME {m["nme"]:.2f}%{bins}  PSNR {m["psnr"]:.2f} dB  SSIM {m["ssim"]:.4f}')
      logging.info(text)
      print(text, flush=True)
  return results


def device_batch(batch):
  """Only the arrays the eval step needs (strings and extras stay on the host)."""
  return {'image': batch['image']}


