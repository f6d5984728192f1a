"""Writes a PNG contact sheet of synthetic_faces examples with their ground truth overlaid.

For each example (one column) the rows are: the image with the 68 landmarks (jaw red, brows orange,
nose yellow, eyes green, mouth blue; index 0 and 30 larger) and the yaw; the image with the mask
outline; the view depth (near = bright); the camera-space normals as RGB = (n + 1) / 2.

  python experiments/show_synthetic.py --out synthetic.png --count 16 --split train --config default
"""
import argparse

import cv2
import numpy as np

from facernet_jax.data import synthetic_faces

# iBUG 68 groups: (first, last + 1, BGR colour).
_GROUPS = ((0, 17, (0, 0, 255)), (17, 27, (0, 140, 255)), (27, 36, (0, 255, 255)),
           (36, 48, (0, 220, 0)), (48, 68, (255, 80, 0)))


def _upscale(image, scale):
  return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def landmark_panel(image, landmarks, yaw, scale):
  """RGB uint8 image upscaled, with landmarks drawn at their continuous-pixel positions."""
  panel = np.ascontiguousarray(_upscale(image, scale)[..., ::-1])  # BGR for OpenCV
  for first, last, colour in _GROUPS:
    for i in range(first, last):
      x, y = landmarks[i] * scale  # continuous pixels: no half-pixel shift needed when scaling
      radius = 3 if i in (0, 30) else 2
      cv2.circle(panel, (int(round(x)), int(round(y))), radius, colour, -1, cv2.LINE_AA)
  cv2.putText(panel, f'yaw {yaw:+.0f}', (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
              cv2.LINE_AA)
  return panel[..., ::-1]


def mask_panel(image, mask, scale):
  panel = np.ascontiguousarray(_upscale(image, scale))
  big = _upscale(mask, scale)
  contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
  tint = panel.copy()
  tint[big > 0] = (0.5 * tint[big > 0] + 0.5 * np.array([0, 255, 0])).astype(np.uint8)
  cv2.drawContours(tint, contours, -1, (255, 0, 255), 1)
  return tint


def depth_panel(depth, scale):
  valid = depth > 0
  out = np.zeros(depth.shape, np.uint8)
  if valid.any():
    near, far = depth[valid].min(), depth[valid].max()
    out[valid] = (55 + 200 * (far - depth[valid]) / max(far - near, 1e-6)).astype(np.uint8)
  return np.repeat(_upscale(out, scale)[..., None], 3, -1)


def normals_panel(normals, mask, scale):
  rgb = ((normals + 1.0) * 0.5 * 255.0).clip(0, 255).astype(np.uint8) * mask[..., None]
  return _upscale(rgb, scale)


def contact_sheet(examples, scale=4, pad=2):
  """A (4 rows x n columns) uint8 RGB grid of panels."""
  n = len(examples['image'])
  rows = []
  for make in (lambda k: landmark_panel(examples['image'][k], examples['landmarks'][k],
                                        float(examples['yaw'][k]), scale),
               lambda k: mask_panel(examples['image'][k], examples['mask'][k], scale),
               lambda k: depth_panel(examples['depth'][k], scale),
               lambda k: normals_panel(examples['normals'][k], examples['mask'][k], scale)):
    panels = [np.pad(make(k), ((pad, pad), (pad, pad), (0, 0)), constant_values=255) for k in range(n)]
    rows.append(np.concatenate(panels, axis=1))
  return np.concatenate(rows, axis=0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='synthetic_faces.png')
  parser.add_argument('--config', default='default', help="predefined config name ('default', 'tiny')")
  parser.add_argument('--split', default='train')
  parser.add_argument('--start', type=int, default=0)
  parser.add_argument('--count', type=int, default=12)
  parser.add_argument('--sort_by_yaw', action='store_true', help='order the columns by yaw')
  parser.add_argument('--scale', type=int, default=4)
  parser.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                      help='override a config field, e.g. --set shape_std=0.5 (repeatable)')
  args = parser.parse_args()
  overrides = dict(item.split('=', 1) for item in args.set)
  config = synthetic_faces.make_config(name=args.config, **overrides)
  examples = synthetic_faces.generate_examples(config, args.split, args.start, args.count)
  if args.sort_by_yaw:
    order = np.argsort(examples['yaw'])
    examples = {k: v[order] for k, v in examples.items()}
  sheet = contact_sheet(examples, args.scale)
  cv2.imwrite(args.out, sheet[..., ::-1])
  print(f'wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})')


if __name__ == '__main__':
  main()
