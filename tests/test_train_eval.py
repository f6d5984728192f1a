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


def test_evaluate_set_scores_nme_by_yaw_bin_and_drops_padding(tmp_path):
  """A real AFLW2000-3D builder (4 faces, yaws in bins I, II, III, I), batches of 3 (2 padded rows),
  a stand-in eval step that predicts the ground truth moved 1 px right: NME = 1 / sqrt(w h) of the
  crop's landmark box, by hand, in every bin."""
  import cv2
  import scipy.io
  from facernet_jax import input_pipeline
  from facernet_jax.configs import paper
  from facernet_jax.data import real
  t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
  pts = np.stack([100 + 40 * np.cos(t), 100 + 30 * np.sin(t)], -1)
  folder = tmp_path / 'manual' / 'AFLW2000'
  folder.mkdir(parents=True)
  for i, yaw in enumerate((10.0, 45.0, 75.0, -100.0)):  # beyond 90 counts in (60, 90] (3DDFA)
    assert cv2.imwrite(str(folder / f'image{i:05d}.jpg'), np.full((200, 200, 3), 128, np.uint8))
    scipy.io.savemat(folder / f'image{i:05d}.mat', {
        'pt3d_68': np.concatenate([(pts + 0.5).T, np.zeros((1, 68))]),
        'Pose_Para': [[0.0, np.radians(yaw), 0.0, 0, 0, 0, 1]]})
  s = 32
  builder = real.prepare('aflw2000_3d', tmp_path / 'manual', data_dir=str(tmp_path / 'tfds'),
                         image_size=s)
  side = np.sqrt(2) * 80  # 3DDFA's box: sqrt 2 x the longer side of the landmark box
  crop = (pts - (np.array([100.0, 100.0]) - side / 2)) * s / side
  w, h = crop.max(0) - crop.min(0)
  config = paper.get_config()
  config.image_size, config.batch_size, config.eval_batch_size = s, 8, 8

  class Parallel:  # one device, arrays stay on the host
    eval_args = staticmethod(lambda state: ())
    put_batch = staticmethod(lambda b: b)
    get_output = staticmethod(lambda out: out)

  def eval_step(batch):
    n = batch['image'].reshape((-1, s, s, 3)).shape[0]
    return {'landmarks': np.repeat((crop + [1.0, 0.0])[None], n, 0),
            'render': np.zeros((n, s, s, 3), np.float32), 'alpha': np.zeros((n, s, s), np.float32)}

  m = train_eval.evaluate_set(config, Parallel(), eval_step, None,
                              input_pipeline.EvalSet('aflw2000_3d', [builder], 'test'))
  assert m['num_images'] == 4
  assert (m['count_yaw_0_30'], m['count_yaw_30_60'], m['count_yaw_60_90']) == (1, 1, 2)
  for key in ('nme', 'nme_yaw_0_30', 'nme_yaw_30_60', 'nme_yaw_60_90'):
    np.testing.assert_allclose(m[key], 100 / np.sqrt(w * h), rtol=1e-4, err_msg=key)
  assert m['psnr'] == 0.0 and m['ssim'] == 0.0  # nothing drawn scores the worst values
