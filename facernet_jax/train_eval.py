"""Evaluation during training and TensorBoard image summaries (Sec 4.2's metrics on an eval split).

`evaluate` runs a compiled eval step over one pass of an evaluation split and returns NME (by yaw
bin when the split has yaw), PSNR and SSIM; `summary_images` draws input, render and landmarks.
"""
import jax
import numpy as np

from facernet_jax import input_pipeline

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
  """NME (68 points, box-normalised, %), PSNR (dB) and SSIM of the render in the face region.

  Face region: where the reconstruction is drawn (alpha > 0.5), the render composited over the photo
  elsewhere, as `evaluate.py` and the paper's Table 3 on photos without masks (docs/evaluation.md).
  NME keeps the geometry honest: a face drawn too small or misplaced fails it. When the split has a
  face mask (synthetic data), `psnr_mask` also reports the PSNR inside the true face mask, where
  pixels the render misses count as errors. Means over images, across all processes.
  """
  from facernet_jax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  args = parallel.eval_args(state)
  has_mask = 'mask' in input_pipeline.keys_of_split(builders)
  sums = np.zeros(5, np.float64)  # nme, psnr, ssim, psnr in the true mask, count
  nmes, yaws = [], []
  for i, batch in enumerate(input_pipeline.eval_iterator(config, builders, split)):
    if 0 <= max_batches <= i:
      break
    out = parallel.get_output(p_eval_step(*args, parallel.put_batch(device_batch(batch))))
    host = jax.tree_util.tree_map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), batch)
    valid = host['valid'].astype(bool) if 'valid' in host else np.ones(len(host['image']), bool)
    images = host['image'].astype(np.float32)
    nme = metrics_lib.nme_per_image(out['landmarks'], host['landmarks'])
    for k in np.nonzero(valid)[0]:
      region = metrics_lib.face_region_metrics(images[k], out['render'][k], out['alpha'][k])
      in_mask = (metrics_lib.psnr(images[k], out['render'][k], host['mask'][k] > 0)
                 if has_mask else 0.0)
      sums += [nme[k], region['psnr'], region['ssim'], in_mask, 1.0]
      nmes.append(nme[k])
      if 'yaw' in host:
        yaws.append(host['yaw'][k])
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    sums = np.asarray(multihost_utils.process_allgather(sums)).sum(axis=0)
  sums = np.asarray(sums, np.float64)
  count = max(float(sums[4]), 1.0)
  result = {'nme': 100.0 * float(sums[0]) / count, 'psnr': float(sums[1]) / count,
            'ssim': float(sums[2]) / count, 'num_images': float(sums[4])}
  if has_mask:
    result['psnr_mask'] = float(sums[3]) / count
  if jax.process_count() == 1 and yaws:
    table = metrics_lib.nme_table(np.asarray(nmes), np.asarray(yaws))
    for name, value in zip(('nme_yaw_0_30', 'nme_yaw_30_60', 'nme_yaw_60_90'), table.bin_means):
      result[name] = 100.0 * float(value)
  return result


def device_batch(batch):
  """Only the arrays the eval step needs (strings and extras stay on the host)."""
  return {'image': batch['image']}


