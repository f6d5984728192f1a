"""Random backgrounds and camera-like degradations for the synthetic faces dataset.

Pure numpy + OpenCV, one example at a time, driven by a caller-supplied
``np.random.Generator`` so that every image is a deterministic function of its seed.
All images are float32 RGB in [0, 1], shape (S, S, 3).
"""
import cv2
import numpy as np

BACKGROUND_KINDS = ('noise', 'gradient', 'shapes')


def _random_colour(rng, low=0.0, high=1.0):
  return rng.uniform(low, high, size=3).astype(np.float32)


def smooth_noise(rng, size):
  """Multi-scale value noise: a random low-resolution grid upsampled bicubically, plus fine grain."""
  image = np.zeros((size, size, 3), np.float32)
  amplitude = 1.0
  total = 0.0
  for cells in (int(rng.integers(2, 5)), int(rng.integers(5, 12)), int(rng.integers(12, 24))):
    grid = rng.uniform(0.0, 1.0, size=(cells, cells, 3)).astype(np.float32)
    image += amplitude * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    total += amplitude
    amplitude *= float(rng.uniform(0.3, 0.7))
  image /= total
  # Random per-channel contrast around a random tint keeps colours from averaging to grey.
  mean = image.mean(axis=(0, 1), keepdims=True)
  image = _random_colour(rng, 0.1, 0.9) + (image - mean) * float(rng.uniform(0.8, 2.5))
  return np.clip(image, 0.0, 1.0)


def linear_gradient(rng, size):
  """A linear ramp between two random colours along a random direction."""
  theta = rng.uniform(0.0, 2.0 * np.pi)
  coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
  xx, yy = np.meshgrid(coords, coords)
  t = np.cos(theta) * xx + np.sin(theta) * yy
  t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
  a, b = _random_colour(rng), _random_colour(rng)
  return (a + (b - a) * t[..., None]).astype(np.float32)


def draw_shapes(rng, image, count):
  """Draws ``count`` random filled/outlined circles, rectangles, ellipses, polygons and lines in place."""
  size = image.shape[0]
  for _ in range(count):
    kind = int(rng.integers(0, 5))
    colour = tuple(float(c) for c in _random_colour(rng))
    thickness = -1 if rng.uniform() < 0.6 else int(rng.integers(1, max(2, size // 16)))
    centre = tuple(int(c) for c in rng.integers(0, size, size=2))
    if kind == 0:
      cv2.circle(image, centre, int(rng.integers(2, size // 2)), colour, thickness, cv2.LINE_AA)
    elif kind == 1:
      p2 = tuple(int(c) for c in rng.integers(0, size, size=2))
      cv2.rectangle(image, centre, p2, colour, thickness, cv2.LINE_AA)
    elif kind == 2:
      axes = tuple(int(a) for a in rng.integers(2, size // 2, size=2))
      cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0.0, 360.0, colour, thickness,
                  cv2.LINE_AA)
    elif kind == 3:
      points = rng.integers(-size // 4, size + size // 4, size=(int(rng.integers(3, 7)), 2))
      points = points.astype(np.int32).reshape(-1, 1, 2)
      if thickness < 0:
        cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
      else:
        cv2.polylines(image, [points], True, colour, thickness, cv2.LINE_AA)
    else:
      p2 = tuple(int(c) for c in rng.integers(0, size, size=2))
      cv2.line(image, centre, p2, colour, max(1, abs(thickness)), cv2.LINE_AA)
  return image


def random_background(rng, size):
  """One background: noise, a gradient, or shapes over a noise/gradient/flat base (uniform choice)."""
  kind = BACKGROUND_KINDS[int(rng.integers(0, len(BACKGROUND_KINDS)))]
  if kind == 'noise':
    return smooth_noise(rng, size)
  if kind == 'gradient':
    image = linear_gradient(rng, size)
    # A little texture so that flat regions are not perfectly smooth.
    return np.clip(image + rng.normal(0.0, 0.02, image.shape).astype(np.float32), 0.0, 1.0)
  base = int(rng.integers(0, 3))
  if base == 0:
    image = smooth_noise(rng, size)
  elif base == 1:
    image = linear_gradient(rng, size)
  else:
    image = np.broadcast_to(_random_colour(rng), (size, size, 3)).copy()
  image = np.ascontiguousarray(image, np.float32)
  return draw_shapes(rng, image, int(rng.integers(2, 9)))


def composite(foreground, alpha, background):
  """Alpha compositing ``a * fg + (1 - a) * bg`` with ``alpha`` (S, S)."""
  a = alpha[..., None]
  return foreground * a + background * (1.0 - a)


def degrade(rng, image, blur_sigma=(0.0, 0.8), noise_std=(0.0, 0.03)):
  """Mild camera-like degradation: optional Gaussian blur, then additive Gaussian noise.

  Keeps the image from being exactly the renderer's output (hard triangle edges, no sensor noise).
  """
  sigma = float(rng.uniform(*blur_sigma))
  if sigma > 0.25:
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma,
                             borderType=cv2.BORDER_REFLECT)
  std = float(rng.uniform(*noise_std))
  image = image + rng.normal(0.0, std, image.shape).astype(np.float32)
  return np.clip(image, 0.0, 1.0)


def to_uint8(image):
  """[0, 1] float -> uint8 with rounding."""
  return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
