"""Reconstruct 3D faces from photos, folders of photos or videos with a trained Mobile-FaceRNet.

  python -m facernet_jax.reconstruct --workdir=runs/default photo.jpg folder/ clip.mp4 --out=out/
  python -m facernet_jax.reconstruct --checkpoint=runs/default/checkpoints/5000 photo.jpg --out=out/ \
      [--faces=faces.json] [--detector=auto|none|file] [--face-detector=auto|mtcnn|hog|cascade]
      [--rotations=0] [--max-pixels=1e8] [--refine=50] [--batch-size=8] [--backend=jax|onnx]

For each face (`<out>/<stem>[_f<frame>]_face<k>_*`): `mesh.obj` and `mesh.ply` (vertex colours = albedo;
for the embedded synthetic model the same face on its dense ~150 x 150 mesh unless --mesh=model),
`textured.obj` + `.mtl` + `.png` (UV texture of the albedo), `landmarks.json` (68 points 2D in photo
pixels and 3D), `pose.json` (yaw / pitch / roll in degrees, translation, rotation matrix, camera),
`coefficients.npz`, `overlay.png` (shaded mesh and landmarks over the photo), `depth.png` / `depth.npy`.
A face's files appear together or not at all. `<out>/summary.json` lists every input and its status.

Faces are found by the detector (facernet_jax.detect: MTCNN and dlib's HOG detector together, from the
pinned mtcnn and dlib-bin packages; --face-detector picks one, or the frontal LBP cascade), or read from
--faces (boxes or 68 landmarks); the crop is the training crop (square, sqrt 2 x the landmark box). Bad
inputs (unreadable files, images above --max-pixels, no face, empty folders) are reported and skipped;
the exit status is 1 when any input failed, 2 when the model or the detector cannot be loaded or the
arguments are wrong.

At the end it reports the time per face split into detection (per photo, shared by its faces), crop,
network, decode and writing the files, and the throughput in faces/s over the processing time (after
loading the model; the one-off compilation of the network and decoder is reported apart); summary.json
holds the same numbers under "timing".

--refine N (beyond the paper) optimises the regressed coefficients for N Adam steps against the given
landmarks (when --faces has landmarks) and the photometric and SSIM losses (Eqs 12, 14, 15, 17) through the
same renderer, and reports the losses before and after (facernet_jax.refine).

This module is the command line only: the model is facernet_jax.inference, the inputs
facernet_jax.photo_inputs, the written files facernet_jax.face_outputs.
"""
import argparse
import os
import sys
import time

import numpy as np

from facernet_jax import detect
from facernet_jax import export
from facernet_jax import photo_inputs
from facernet_jax.demo_checkpoint import make_demo_checkpoint
from facernet_jax.face_outputs import OUTPUT_SUFFIXES
from facernet_jax.face_outputs import dense_mesh
from facernet_jax.face_outputs import depth_visualisation
from facernet_jax.face_outputs import overlay_image
from facernet_jax.face_outputs import write_face
from facernet_jax.inference import ModelError
from facernet_jax.inference import Reconstructor
from facernet_jax.inference import load_model
from facernet_jax.photo_inputs import IMAGE_EXTENSIONS
from facernet_jax.photo_inputs import VIDEO_EXTENSIONS
from facernet_jax.photo_inputs import FaceJob
from facernet_jax.photo_inputs import InputError
from facernet_jax.photo_inputs import find_faces
from facernet_jax.photo_inputs import iterate_frames
from facernet_jax.photo_inputs import list_inputs
from facernet_jax.photo_inputs import make_jobs

# Kept importable from here (they moved to the modules above).
__all__ = ['dense_mesh', 'depth_visualisation', 'FaceJob', 'find_faces', 'IMAGE_EXTENSIONS', 'InputError',
           'iterate_frames', 'list_inputs', 'load_model', 'main', 'make_demo_checkpoint', 'make_jobs',
           'ModelError', 'OUTPUT_SUFFIXES', 'overlay_image', 'parse_args', 'Progress', 'Reconstructor',
           'run', 'VIDEO_EXTENSIONS', 'write_face']


class Progress:
  def __init__(self, quiet=False):
    self.quiet = quiet
    self.start = time.time()

  def __call__(self, msg):
    if not self.quiet:
      print(f'[{time.time() - self.start:6.1f}s] {msg}', file=sys.stderr, flush=True)


TIMED_STAGES = ('read', 'detection', 'crop', 'network', 'refine', 'decode', 'write')


def timing_report(stage_s, compile_s, wall_s, faces):
  """Seconds per stage (totals and per face), compilation apart, and faces/s over the wall time less
  compilation."""
  work_s = max(wall_s - sum(compile_s.values()), 1e-9)
  per_face = {k: (v / faces if faces else 0.0) for k, v in stage_s.items()}
  return {'faces': faces, 'stage_seconds': dict(stage_s), 'per_face_ms': {k: 1e3 * v for k, v in per_face.items()},
          'compile_seconds': dict(compile_s), 'wall_seconds': wall_s, 'processing_seconds': work_s,
          'faces_per_second': faces / work_s}


def format_timing(report):
  ms = report['per_face_ms']
  parts = ', '.join(f'{k} {ms[k]:.1f}' for k in TIMED_STAGES if k != 'refine' or ms[k])
  comp = ', '.join(f'{k} {v:.1f} s' for k, v in report['compile_seconds'].items())
  return (f'time per face (ms): {parts}; {report["faces"]} face(s) in {report["processing_seconds"]:.2f} s = '
          f'{report["faces_per_second"]:.2f} faces/s' + (f' (compilation apart: {comp})' if comp else ''))


def run(args):
  """Processes all inputs; returns the exit status."""
  progress = Progress(args.quiet)
  annotations = None
  if args.faces:
    try:
      annotations = detect.load_annotations(args.faces, args.faces_offset)
    except detect.AnnotationError as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
  model_path = args.checkpoint or args.workdir
  progress(f'loading model from {model_path}')
  try:
    rec = load_model(model_path, args.batch_size, args.render_size, args.backend, args.onnx)
  except ModelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  progress(f'model: {rec.config.model.name}, {rec.image_size} px crops, face model {rec.face_model.name} '
           f'({rec.face_model.num_vertices} vertices)')
  if args.detector != 'none':
    try:  # loads the detector's model here, not inside the first photo's detection time
      detect.detect_faces(np.zeros((64, 64, 3), np.uint8), detector=args.face_detector)
    except detect.DetectorUnavailable as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
  mesh = dense_mesh(rec.config, args.mesh == 'dense')
  if mesh is not None:
    progress(f'mesh files: the dense mesh of the same model ({mesh[0].num_vertices} vertices; --mesh=model '
             f'for the {rec.face_model.num_vertices} the network was trained on)')
  os.makedirs(args.out, exist_ok=True)
  inputs = list_inputs(args.inputs)
  status = {}  # input -> dict
  errors = []
  used = set()
  pending = []
  timing = dict.fromkeys(TIMED_STAGES, 0.0)
  compile_s = {}
  start = time.perf_counter()

  def timed(stage, fn, *a):
    """fn(*a), its seconds added to timing[stage]; a first call is run twice and the first timed apart
    as compilation (JAX compiles per batch shape)."""
    if stage not in compile_s:
      t = time.perf_counter()
      fn(*a)
      compile_s[stage] = time.perf_counter() - t
    t = time.perf_counter()
    out = fn(*a)
    timing[stage] += time.perf_counter() - t
    return out

  def fail(path, msg):
    errors.append(msg)
    status.setdefault(path, {'faces': 0})
    status[path]['error'] = msg
    print(f'error: {msg}', file=sys.stderr, flush=True)

  def flush():
    if not pending:
      return
    jobs = list(pending)
    pending.clear()
    crops = np.stack([j.crop for j in jobs])
    coeffs = timed('network', rec.regress, crops)
    extras = [{} for _ in jobs]
    if args.refine > 0:
      targets = np.stack([j.target_landmarks if j.target_landmarks is not None else np.zeros((68, 2))
                          for j in jobs])
      has = np.array([j.target_landmarks is not None for j in jobs], np.float32)
      t = time.perf_counter()
      coeffs, before, after = rec.refine(coeffs, crops, targets, has, args.refine, args.refine_lr)
      timing['refine'] += time.perf_counter() - t
      mean = lambda ds: {k: float(np.mean([d[k] for d in ds])) for k in ds[0]}
      fmt = lambda d: ', '.join(f'{k} {v:.4g}' for k, v in sorted(d.items()))
      progress(f'refine {args.refine} steps on {len(jobs)} face(s), mean losses: before [{fmt(mean(before))}] '
               f'-> after [{fmt(mean(after))}]')
      extras = [{'refine': {'steps': args.refine, 'learning_rate': args.refine_lr, 'loss_before': b,
                            'loss_after': a}} for b, a in zip(before, after)]
    dec = timed('decode', rec.decode, coeffs)
    for i, job in enumerate(jobs):
      one = {k: v[i] for k, v in dec.items()}
      t = time.perf_counter()
      try:
        paths = write_face(job, coeffs[i], one, rec.face_model, rec.uvs, args.texture_size, extras[i], mesh)
      except (OSError, ValueError) as e:
        fail(job.input_path, f'{job.input_path}: writing outputs failed: {e}')
        continue
      finally:
        timing['write'] += time.perf_counter() - t
      st = status.setdefault(job.input_path, {'faces': 0})
      st['faces'] += 1
      st.setdefault('outputs', []).append(os.path.basename(job.prefix))
      if extras[i]:
        st.setdefault('refine', []).append(extras[i]['refine'])

  def add_jobs(jobs):
    for j in jobs:
      pending.append(j)
      if len(pending) >= rec.batch_size:
        flush()

  for n, (path, kind, err) in enumerate(inputs, 1):
    if err:
      fail(path, err)
      continue
    stem = photo_inputs.unique_stem(path, used)
    try:
      if kind == 'video':
        frames = faces_frames = 0
        for index, frame in iterate_frames(path, args.every, args.max_frames, args.max_pixels):
          frames += 1
          try:
            jobs = make_jobs(frame, path, os.path.join(args.out, f'{stem}_f{index:06d}'), args, annotations,
                             rec.image_size, timing)
          except InputError:
            continue  # a frame without a face is normal in a video
          faces_frames += 1
          add_jobs(jobs)
        progress(f'[{n}/{len(inputs)}] {path}: {frames} frame(s), faces in {faces_frames}')
        if faces_frames == 0:
          raise InputError(f'{path}: no face found in any of {frames} frame(s)')
      else:
        t = time.perf_counter()
        photo = photo_inputs.read_photo(path, args.max_pixels)
        timing['read'] += time.perf_counter() - t
        jobs = make_jobs(photo, path, os.path.join(args.out, stem), args, annotations, rec.image_size, timing)
        progress(f'[{n}/{len(inputs)}] {path}: {len(jobs)} face(s)')
        add_jobs(jobs)
    except InputError as e:
      fail(path, str(e))
  flush()
  total = sum(s.get('faces', 0) for s in status.values())
  report = timing_report(timing, compile_s, time.perf_counter() - start, total)
  export.write_json(os.path.join(args.out, 'summary.json'), {
      'model': os.path.abspath(model_path), 'inputs': status, 'faces': total, 'errors': errors,
      'timing': report})
  if total:
    progress(format_timing(report))
  progress(f'done: {total} face(s) written to {args.out}; {len(errors)} input(s) failed')
  return 1 if errors else 0


def parse_args(argv):
  p = argparse.ArgumentParser(prog='python -m facernet_jax.reconstruct', description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('inputs', nargs='+', help='images, folders of images, or videos')
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument('--workdir', help='training workdir (newest checkpoint)')
  src.add_argument('--checkpoint', help='one checkpoint directory (workdir/checkpoints/STEP)')
  p.add_argument('--out', required=True, help='output folder')
  p.add_argument('--faces', help='JSON/CSV file with face boxes or 68 landmarks per image (facernet_jax.detect)')
  p.add_argument('--faces-offset', type=float, default=0.0,
                 help='added to --faces coordinates (0.5 for 0-based pixel indices, -0.5 for 1-based)')
  p.add_argument('--detector', choices=('auto', 'none', 'file'), default='auto',
                 help='auto: --faces entries, else the bundled detector; none: the centred square of '
                      'the image is the face; file: only --faces entries')
  p.add_argument('--face-detector', choices=detect.DETECTORS, default='auto',
                 help='auto: MTCNN and dlib HOG together (falls back to the cascade when neither package is '
                      'installed); mtcnn; hog; cascade: the frontal LBP cascade of scikit-image')
  p.add_argument('--rotations', default='0',
                 help='detector: also search copies rotated by these degrees, e.g. 0,-30,30,-60,60,90,-90 '
                      '(slower; for faces far from upright)')
  p.add_argument('--min-neighbours', type=int, default=6, help='cascade detector: minimum group size of a face')
  p.add_argument('--max-pixels', type=float, default=photo_inputs.MAX_PIXELS,
                 help='refuse photos / video frames with more pixels than this, before decoding')
  p.add_argument('--max-faces', type=int, default=0, help='at most this many faces per image (0: all)')
  p.add_argument('--box-scale', type=float, default=detect.BOX_SCALE,
                 help='crop side / landmark-box side (default sqrt 2, as the real-data builders)')
  p.add_argument('--batch-size', type=int, default=8)
  p.add_argument('--backend', choices=('jax', 'onnx'), default='jax',
                 help='where the network runs: jax (jit) or onnx (ONNX Runtime; needs the deploy extra, '
                      'docs/deploy.md); the 3DMM decode and outputs stay the same')
  p.add_argument('--onnx', default=None,
                 help='--backend onnx: a file exported from this checkpoint by python -m facernet_jax.deploy '
                      '(default: export the network in memory at start-up)')
  p.add_argument('--render-size', type=int, default=256, help='render / depth map resolution')
  p.add_argument('--texture-size', type=int, default=256, help='UV texture side in pixels')
  p.add_argument('--mesh', choices=('dense', 'model'), default='dense',
                 help='mesh files of the embedded synthetic model: dense (the same model on a ~150 x 150 '
                      'grid, default) or model (the vertices the network was trained on); BFM models are '
                      'always written as they are')
  p.add_argument('--refine', type=int, default=0, help='optimise the coefficients for N steps')
  p.add_argument('--refine-lr', type=float, default=0.01, help='Adam learning rate of --refine')
  p.add_argument('--every', type=int, default=1, help='videos: process every N-th frame')
  p.add_argument('--max-frames', type=int, default=0, help='videos: at most this many frames (0: all)')
  p.add_argument('--quiet', action='store_true')
  args = p.parse_args(argv)
  if args.detector == 'file' and not args.faces:
    p.error('--detector=file needs --faces FILE')
  if args.batch_size < 1 or args.every < 1 or args.refine < 0:
    p.error('--batch-size and --every must be >= 1, --refine >= 0')
  try:
    args.rotations = tuple(float(a) for a in args.rotations.split(','))
  except ValueError:
    p.error(f'--rotations must be comma-separated degrees, got {args.rotations!r}')
  if args.max_pixels <= 0:
    p.error('--max-pixels must be > 0')
  return args


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    args = parse_args(argv)
  except SystemExit as e:
    return int(e.code or 0)
  return run(args)


if __name__ == '__main__':
  sys.exit(main())
