"""Tests of facernet_jax.train_eval: TensorBoard summary drawing (hand-computed pixels)."""
import numpy as np

from facernet_jax import train_eval


def test_draw_points_marks_the_pixel_containing_the_point():
  image = np.zeros((10, 12, 3), np.float32)
  # Continuous coordinates: (x, y) = (3.7, 6.2) lies in row 6, column 3.
  out = draw_single = train_eval.draw_points(image, np.array([[3.7, 6.2]]), (1.0, 0.5, 0.0), radius=0)
  assert np.argwhere(out.any(axis=-1)).tolist() == [[6, 3]]
  np.testing.assert_array_equal(draw_single[6, 3], [1.0, 0.5, 0.0])
  out = train_eval.draw_points(image, np.array([[0.2, 0.2], [np.nan, 1.0]]), (1.0, 1.0, 1.0), radius=1)
  assert np.argwhere(out[..., 0] > 0).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
  assert image.max() == 0  # The input is not modified.


def test_summary_images_shapes_and_composite():
  n, s = 2, 8
  images = np.full((n, s, s, 3), 0.25, np.float32)
  renders = np.full((n, s, s, 3), 0.75, np.float32)
  alphas = np.zeros((n, s, s), np.float32)
  alphas[:, :4] = 1.0
  pts = np.full((n, 68, 2), 4.0, np.float32)
  out = train_eval.summary_images(images, renders, alphas, pts, pts, scale=2)
  assert {k: v.shape for k, v in out.items()} == {k: (n, 2 * s, 2 * s, 3) for k in out}
  np.testing.assert_allclose(out['render'][:, :8], 0.75)  # Rows 0-3 upscaled x2: the render.
  np.testing.assert_allclose(out['render'][:, 8:], 0.25)  # Elsewhere the input shows through.
  np.testing.assert_array_equal(out['overlay'][0, 8, 8], [1.0, 0.0, 0.0])  # Predicted on top.
