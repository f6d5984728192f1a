"""Reconstruct 3D faces from photos, folders of photos or videos with a trained Mobile-FaceRNet.

  python -m facernet_jax.reconstruct --workdir=runs/default photo.jpg folder/ clip.mp4 --out=out/
  python -m facernet_jax.reconstruct --checkpoint=runs/default/checkpoints/5000 photo.jpg --out=out/ \
      [--faces=faces.json] [--detector=auto|none] [--refine=50] [--batch-size=8]

For each face (`<out>/<stem>[_f<frame>]_face<k>_*`): `mesh.obj` and `mesh.ply` (vertex colours = albedo;
for the embedded synthetic model the same face on its dense ~150 x 150 mesh unless --mesh=model),
`textured.obj` + `.mtl` + `.png` (UV texture of the albedo), `landmarks.json` (68 points 2D in photo
pixels and 3D), `pose.json` (yaw / pitch / roll in degrees, translation, rotation matrix, camera),
`coefficients.npz`, `overlay.png` (shaded mesh and landmarks over the photo), `depth.png` / `depth.npy`.
A face's files appear together or not at all. `<out>/summary.json` lists every input and its status.

Faces are found by the bundled detector (facernet_jax.detect), or read from --faces (boxes or 68
landmarks); the crop is the training crop (square, sqrt 2 x the landmark box). Bad inputs (unreadable
files, no face, empty folders) are reported and skipped; the exit status is 1 when any input failed,
2 when the model cannot be loaded or the arguments are wrong.

--refine N (beyond the paper) optimises the regressed coefficients for N Adam steps against the given
landmarks (when --faces has landmarks) and the photometric and SSIM losses (Eqs 12, 14, 15, 17) through the
same renderer, and reports the losses before and after.
"""
import argparse
import dataclasses
import io
import os
import sys
import time

import numpy as np

from facernet_jax import detect
from facernet_jax import export

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.pbm', '.tif', '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv')
OUTPUT_SUFFIXES = ('mesh.obj', 'mesh.ply', 'textured.obj', 'textured.mtl', 'textured.png',
                   'landmarks.json', 'pose.json', 'coefficients.npz', 'overlay.png', 'depth.png', 'depth.npy')


class InputError(Exception):
  """One input failed (message for the user); the others go on."""


class ModelError(Exception):
  """The model cannot be loaded; nothing can be done."""


# ----------------------------------------------------------------------------- the model

class Reconstructor:
  """Jitted, batched regression (+ optional refinement) and rendering for one trained model."""

  def __init__(self, config, variables, batch_size=8, render_size=None):
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from facernet_jax import train  # pylint: disable=g-import-not-at-top
    self.config = config
    self.image_size = int(config.image_size)
    self.batch_size = int(batch_size)
    self.render_size = int(render_size or config.image_size)  # None: the model's input size
    self.variables = variables
    self.network, self.decoder = train.create_networks(config)
    self.face_model = self.decoder.face_model
    self.params = jax.tree_util.tree_map(jnp.asarray, variables['params'])
    self.batch_stats = jax.tree_util.tree_map(jnp.asarray, variables.get('batch_stats', {}) or {})
    self._raster = dict(config.raster.to_dict()) if 'raster' in config else {}
    self._raster.update(image_size=self.render_size, mode='hard')
    self.uvs = export.model_uvs(self.face_model)
    network = self.network

    def predict(params, batch_stats, images):
      variables = {'params': params['network']}
      if batch_stats:
        variables['batch_stats'] = batch_stats
      return network.apply(variables, images, train=False)

    self._predict = jax.jit(predict)
    self._decode = self._build_decode()
    self._refine_fns = {}

  def _build_decode(self):
    """Jitted coefficients -> geometry + hard render at render_size (the camera scales with the image
    size, so the same coefficients render the same view, sharper)."""
    import jax  # pylint: disable=g-import-not-at-top
    from facernet_jax import forward  # pylint: disable=g-import-not-at-top
    from facernet_jax.render import RasterSettings  # pylint: disable=g-import-not-at-top
    hires = forward.FaceDecoder(face_model=self.face_model, image_size=self.render_size,
                                trainable_bases=bool(self.config.get('trainable_bases', True)),
                                raster=RasterSettings(**self._raster))
    scale = self.image_size / self.render_size

    def decode(params, coefficients):
      out = hires.apply({'params': params['decoder']}, coefficients)
      r = out['render']
      keep = ('vertices', 'vertices_cam', 'landmarks', 'albedo', 'colours', 'rotation')
      res = {k: out[k] for k in keep}
      res['landmarks_crop'] = out['landmarks'] * scale  # crop pixels (exact: the camera scales)
      res.update(render=r.image, alpha=r.alpha, depth=r.depth, overflow=r.overflow)
      return res

    return jax.jit(decode)

  def _pad(self, x):
    n = len(x)
    if n == self.batch_size:
      return np.asarray(x), n
    pad = np.zeros((self.batch_size - n,) + np.shape(x)[1:], np.asarray(x).dtype)
    return np.concatenate([np.asarray(x), pad], 0), n

  def regress(self, crops):
    """(B, S, S, 3) float crops -> (B, 495) coefficients (batch padded to batch_size: one compile)."""
    images, n = self._pad(crops)
    return np.asarray(self._predict(self.params, self.batch_stats, images))[:n]

  def decode(self, coefficients):
    """Geometry, landmarks (crop pixels) and the hard render at render_size, as numpy."""
    c, n = self._pad(coefficients)
    out = {k: np.asarray(v)[:n] for k, v in self._decode(self.params, c).items()}
    if np.any(out['overflow'] > 0):
      print(f'warning: the rasteriser dropped triangles for {int(np.sum(out["overflow"] > 0))} face(s); '
            f'renders and depth maps may have holes (lower --render-size)', file=sys.stderr)
    return out

  def _refine_fn(self, steps, learning_rate):
    key = (steps, learning_rate)
    if key in self._refine_fns:
      return self._refine_fns[key]
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    import optax  # pylint: disable=g-import-not-at-top
    from facernet_jax import losses  # pylint: disable=g-import-not-at-top
    decoder, size = self.decoder, self.image_size
    w = losses.LossWeights.from_config(self.config.get('loss_weights', {}))
    ssim_mode = self.config.get('ssim_mode', 'global')

    def one(image, render, mask, landmarks, target, has_target, coefficients):
      """Weighted terms of one face (the loss functions take a batch: give them a batch of one)."""
      t = {'land': has_target * losses.landmark_loss(landmarks[None], target[None], None, size),
           'photo': losses.photometric_loss(image[None], render[None], mask[None]),
           'ssim': losses.ssim_loss(image[None], render[None], mask[None], mode=ssim_mode),
           'reg': losses.regularisation_loss(coefficients[None])}
      return losses.total_loss(t, w)

    def terms(params, coefficients, images, targets, has_targets, valid):
      """Per-face (total (B,), weighted terms {name: (B,)}) and the objective: the sum over real faces
      (padding excluded), so each face's coefficients follow their own loss."""
      out = decoder.apply({'params': params['decoder']}, coefficients)
      mask = jax.lax.stop_gradient(out['render'].alpha)
      total, weighted = jax.vmap(one)(images, out['render'].image, mask, out['landmarks'], targets,
                                      has_targets, coefficients)
      return jnp.sum(total * valid), (total, weighted)

    tx = optax.adam(learning_rate)

    def run(params, coefficients, images, targets, has_targets, valid):
      _, before = terms(params, coefficients, images, targets, has_targets, valid)

      def step(carry, _):
        c, opt_state = carry
        g, _ = jax.grad(lambda c: terms(params, c, images, targets, has_targets, valid), has_aux=True)(c)
        g = jnp.where(jnp.isfinite(g), g, 0.0)
        updates, opt_state = tx.update(g, opt_state, c)
        return (optax.apply_updates(c, updates), opt_state), None

      (c, _), _ = jax.lax.scan(step, (coefficients, tx.init(coefficients)), None, length=steps)
      _, after = terms(params, c, images, targets, has_targets, valid)
      return c, before, after

    fn = jax.jit(run)
    self._refine_fns[key] = fn
    return fn

  def refine(self, coefficients, crops, targets, has_targets, steps, learning_rate=0.01):
    """N Adam steps on the coefficients against Eqs 12, 14, 15, 17 (weighted as in training; the
    landmark term only for faces with given landmarks). Returns (coefficients, losses before, losses
    after), losses being one dict per face: {'total', 'land', 'photo', 'ssim', 'reg'}."""
    n = len(coefficients)
    c, _ = self._pad(np.asarray(coefficients, np.float32))
    images, _ = self._pad(np.asarray(crops, np.float32))
    tg, _ = self._pad(np.asarray(targets, np.float32))
    ht, _ = self._pad(np.asarray(has_targets, np.float32))
    valid = (np.arange(self.batch_size) < n).astype(np.float32)
    fn = self._refine_fn(int(steps), float(learning_rate))
    c2, before, after = fn(self.params, c, images, tg, ht, valid)

    def per_face(t):
      total, weighted = np.asarray(t[0]), {k: np.asarray(v) for k, v in t[1].items()}
      return [dict({k: float(v[i]) for k, v in weighted.items()}, total=float(total[i])) for i in range(n)]

    return np.asarray(c2)[:n], per_face(before), per_face(after)


def make_demo_checkpoint(workdir, config=None, coefficients=None):
  """Saves an UNTRAINED demo model through the training checkpoint path (for tests and the notebook).

  Every network weight is zero (batch-norm variances one), so the network outputs the bias of its last
  layer, `coefficients` (default zeros: the mean face, frontal, centred) for any image. The decoder
  (3DMM layer) keeps its real initial values. Avoids the slow jitted network init on a busy CPU.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from facernet_jax import forward  # pylint: disable=g-import-not-at-top
  from facernet_jax import train  # pylint: disable=g-import-not-at-top
  from facernet_jax.models import NUM_COEFFICIENTS  # pylint: disable=g-import-not-at-top
  if config is None:
    from facernet_jax.configs import test as test_config  # pylint: disable=g-import-not-at-top
    config = test_config.get_config()
  config = config.copy_and_resolve_references()
  config.async_checkpointing = False
  network, decoder = train.create_networks(config)
  x = jnp.zeros((1, config.image_size, config.image_size, 3), jnp.float32)
  shapes = jax.eval_shape(lambda: network.init(jax.random.PRNGKey(0), x, train=False))

  def fill(path, s):
    ones = 'batch_stats' in jax.tree_util.keystr(path) and jax.tree_util.keystr(path).endswith("['var']")
    return (np.ones if ones else np.zeros)(s.shape, s.dtype)

  net_vars = jax.tree_util.tree_map_with_path(fill, shapes)
  if coefficients is not None:
    bias = [v for p, v in jax.tree_util.tree_leaves_with_path(net_vars['params'])
            if v.shape == (NUM_COEFFICIENTS,) and 'bias' in jax.tree_util.keystr(p)]
    if len(bias) != 1:
      raise ValueError(f'expected one ({NUM_COEFFICIENTS},) output bias, found {len(bias)}')
    # The head multiplies its output by the config's fixed output scales; divide them out so the
    # network outputs exactly `coefficients`.
    from facernet_jax.models import facernet  # pylint: disable=g-import-not-at-top
    scales = tuple(sorted(config.model.get('output_scales', {}).items()))
    bias[0][...] = np.asarray(coefficients, np.float32) / np.asarray(facernet.output_scale_vector(scales))
  dec0 = forward.FaceDecoder(face_model=decoder.face_model, image_size=config.image_size,
                             trainable_bases=config.trainable_bases, raster=None)
  dec_vars = dec0.init(jax.random.PRNGKey(1), jnp.zeros((1, NUM_COEFFICIENTS), jnp.float32))
  state = {'params': {'network': net_vars['params'], 'decoder': jax.device_get(dec_vars.get('params', {}))},
           'batch_stats': net_vars.get('batch_stats', {}), 'step': np.int32(0)}
  manager = train.checkpoint_manager(workdir, config)
  train.write_config(workdir, config)
  train.save_checkpoint(manager, state, config, force=True)
  manager.wait_until_finished()
  manager.close()
  return os.fspath(workdir)


_MODEL_CACHE = {}


def _checkpoint_signature(path):
  """Changes when a checkpoint is added or rewritten (keys the in-process model cache)."""
  sig = []
  for root in (path, os.path.join(path, 'checkpoints')):
    if os.path.isdir(root):
      sig += sorted((n, os.stat(os.path.join(root, n)).st_mtime_ns) for n in os.listdir(root))
  return tuple(sig)


def load_model(path, batch_size=8, render_size=256):
  """Reconstructor for a workdir or checkpoint directory; ModelError with a clear message if missing.

  Cached per process (path, checkpoint files, batch size, render size), so repeated calls in a
  notebook or a test session reuse the compiled functions.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise ModelError(f'checkpoint or workdir {path!r} does not exist; train a model first '
                     f'(python -m facernet_jax.train --config=... --workdir=DIR) and pass --workdir=DIR')
  from facernet_jax import train  # pylint: disable=g-import-not-at-top
  key = (os.path.realpath(path), _checkpoint_signature(path), int(batch_size), render_size)
  if key in _MODEL_CACHE:
    return _MODEL_CACHE[key]
  try:
    config, variables = train.load_for_inference(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ModelError(f'cannot load a trained model from {path!r}: {e}') from None
  _MODEL_CACHE.clear()
  _MODEL_CACHE[key] = Reconstructor(config, variables, batch_size, render_size)
  return _MODEL_CACHE[key]


# ----------------------------------------------------------------------------- inputs

@dataclasses.dataclass
class FaceJob:
  """One face to reconstruct: the photo, its crop and where outputs go."""
  input_path: str
  prefix: str  # output path prefix (<out>/<stem>[_f<frame>]_face<k>)
  photo: np.ndarray  # uint8 (H, W, 3)
  face: detect.Face
  crop_box: np.ndarray
  crop: np.ndarray  # float32 (S, S, 3)
  to_photo: object
  target_landmarks: np.ndarray | None  # crop pixels, when given in --faces


def list_inputs(paths):
  """Expands folders (sorted, images and videos directly inside). Returns [(path, kind, error or None)]."""
  out = []
  for p in paths:
    if os.path.isdir(p):
      names = sorted(os.listdir(p))
      files = [os.path.join(p, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
               and os.path.isfile(os.path.join(p, n))]
      if not files:
        out.append((p, 'folder', f'folder {p!r} has no image or video files '
                                 f'({", ".join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)})'))
      for f in files:
        out.append((f, 'video' if f.lower().endswith(VIDEO_EXTENSIONS) else 'image', None))
    elif os.path.isfile(p):
      out.append((p, 'video' if p.lower().endswith(VIDEO_EXTENSIONS) else 'image', None))
    else:
      out.append((p, 'missing', f'input {p!r} does not exist'))
  return out


def _unique_stem(path, used):
  stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or 'input'
  name, k = stem, 1
  while name in used:
    k += 1
    name = f'{stem}-{k}'
  used.add(name)
  return name


def find_faces(photo, path, args, annotations):
  """Faces of one photo: from the annotation file, the detector, or the whole image."""
  given = detect.faces_for_image(annotations, path)
  if given:
    return given
  if annotations is not None and args.detector == 'file':
    raise InputError(f'{path}: no entry in --faces {args.faces!r} (keys are paths or file names)')
  if args.detector == 'none':
    h, w = photo.shape[:2]
    return [detect.Face(box=detect.whole_image_box(h, w), source='image')]
  faces = detect.detect_faces(photo, min_neighbours=args.min_neighbours)
  if not faces:
    raise InputError(f'{path}: no face found (frontal-face detector, min_neighbours={args.min_neighbours}); '
                     f'give a box or 68 landmarks with --faces FILE, lower --min-neighbours, or use '
                     f'--detector=none for a photo that is already a face crop')
  return faces[:args.max_faces] if args.max_faces > 0 else faces


def make_jobs(photo, path, prefix, args, annotations, image_size):
  jobs = []
  for k, face in enumerate(find_faces(photo, path, args, annotations)):
    box = face.crop_box(args.box_scale)
    crop, to_photo = detect.crop(photo, box, image_size)
    target = None
    if face.landmarks is not None:
      s = image_size / (box[2] - box[0])
      target = (np.asarray(face.landmarks) - box[:2]) * s
    jobs.append(FaceJob(path, f'{prefix}_face{k}', photo, face, box, crop, to_photo, target))
  return jobs


# ----------------------------------------------------------------------------- outputs

def _paste(photo_shape, image, box):
  """Warps a square render of the crop `box` into photo coordinates (linear)."""
  import cv2  # pylint: disable=g-import-not-at-top
  h, w = photo_shape[:2]
  r = image.shape[0]
  sx = (box[2] - box[0]) / r
  sy = (box[3] - box[1]) / r
  m = np.array([[sx, 0, box[0] + 0.5 * sx - 0.5], [0, sy, box[1] + 0.5 * sy - 0.5]], np.float64)
  return cv2.warpAffine(np.asarray(image, np.float32), m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_FILL_OUTLIERS,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def overlay_image(photo, render, alpha, box, landmarks_photo, opacity=0.6):
  """Photo with the shaded mesh blended in (opacity) and the 68 landmarks drawn (green dots)."""
  import cv2  # pylint: disable=g-import-not-at-top
  out = photo.astype(np.float32) / 255.0
  rgb = _paste(photo.shape, np.clip(render, 0, 1), box)
  a = _paste(photo.shape, alpha, box)[..., None] * opacity
  out = out * (1 - a) + rgb * a
  out8 = np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)
  radius = max(1, int(round(max(photo.shape[:2]) / 300)))
  for x, y in np.asarray(landmarks_photo):
    if np.isfinite(x) and np.isfinite(y):
      # cv2 draws at integer indices; continuous (x, y) is index (x - 0.5, y - 0.5); 4 bits of subpixel.
      c = (int(round((x - 0.5) * 16)), int(round((y - 0.5) * 16)))
      cv2.circle(out8, c, radius * 16, (0, 255, 0), -1, lineType=cv2.LINE_AA, shift=4)
  return out8


def depth_visualisation(depth):
  """8-bit depth picture: near = bright, far face = dark grey, background = black."""
  d = np.asarray(depth, np.float64)
  valid = d > 0
  out = np.zeros(d.shape, np.uint8)
  if valid.any():
    lo, hi = d[valid].min(), d[valid].max()
    t = (hi - d[valid]) / max(hi - lo, 1e-9)
    out[valid] = np.round(55 + 200 * t).astype(np.uint8)
  return out


def dense_mesh(config, enabled=True):
  """``(mesh model, model resolution, mesh UVs)`` of the embedded synthetic model's dense mesh (the
  same continuous model on a ~150 x 150 grid, face_model.synthetic), or None: a file model (BFM) is
  dense already, and ``enabled=False`` (``--mesh=model``) writes the model's own vertices."""
  fm = config.face_model
  if not enabled or fm.source != 'synthetic':
    return None
  from facernet_jax.face_model import synthetic  # pylint: disable=g-import-not-at-top
  resolution = int(fm.resolution)
  mesh_model = synthetic.build_synthetic_model(resolution, int(fm.seed), synthetic.dense_resolution(resolution))
  return mesh_model, resolution, export.model_uvs(mesh_model)


def write_face(job, coefficients, dec, model, uvs, texture_size, extra=None, mesh=None):
  """Writes one face's files atomically (all or none). Returns the list of paths.

  With ``mesh`` (from ``dense_mesh``) the mesh files hold the same face on the dense mesh."""
  from facernet_jax.models import split_coefficients  # pylint: disable=g-import-not-at-top
  from facernet_jax.render import camera as camera_lib  # pylint: disable=g-import-not-at-top
  parts = {k: np.asarray(v) for k, v in split_coefficients(np.asarray(coefficients)).items()}
  vertices, albedo = dec['vertices'], np.clip(dec['albedo'], 0, 1)
  mesh_vertices, mesh_albedo, triangles = vertices, albedo, model.triangles
  if mesh is not None:
    from facernet_jax.face_model import synthetic  # pylint: disable=g-import-not-at-top
    mesh_model, resolution, uvs = mesh
    mesh_vertices, mesh_albedo = synthetic.decode_on_mesh(
        mesh_model, resolution, dec['vertices'], dec['albedo'], parts['shape'], parts['texture'],
        parts['expression'])
    mesh_albedo, triangles = np.clip(mesh_albedo, 0, 1), mesh_model.triangles
  lm_crop = dec['landmarks_crop']
  lm_photo = job.to_photo(lm_crop)
  idx = np.asarray(model.landmark_indices)
  rotation = dec['rotation']
  pitch, yaw, roll = [float(a) for a in np.asarray(camera_lib.rotation_to_euler_degrees(rotation))]
  s = (job.crop_box[2] - job.crop_box[0])
  p = job.prefix
  with export.StagedFiles() as staged:
    staged.write_text(p + '_mesh.obj', export.obj_text(mesh_vertices, triangles, mesh_albedo,
                                                       comment=f'facernet_jax face from {job.input_path}'))
    staged.write_bytes(p + '_mesh.ply', export.ply_bytes(mesh_vertices, triangles, mesh_albedo))
    export.stage_textured_obj(staged, p + '_textured.obj', mesh_vertices, triangles, uvs,
                              export.bake_texture(uvs, mesh_albedo, texture_size))
    staged.write_text(p + '_landmarks.json', export.json_text({
        'input': job.input_path,
        'convention': 'continuous pixels: the image spans [0, W] x [0, H], pixel (i, j) centre at '
                      '(j + 0.5, i + 0.5); 3D in model units (BFM decimetres, +y up, +z to the camera)',
        'landmarks_2d': lm_photo, 'landmarks_2d_crop': lm_crop,
        'landmarks_3d': vertices[idx], 'landmarks_3d_camera': dec['vertices_cam'][idx],
        'face_source': job.face.source, 'face_score': job.face.score,
        'given_landmarks': job.face.landmarks}))
    staged.write_text(p + '_pose.json', export.json_text({
        'input': job.input_path,
        'yaw_degrees': yaw, 'pitch_degrees': pitch, 'roll_degrees': roll,
        'euler_radians_pitch_yaw_roll': parts['rotation'], 'rotation_matrix': rotation,
        'translation': parts['translation'],
        'convention': 'v_cam = R v + t, R = Rz(roll) Ry(yaw) Rx(pitch); camera at z = camera_distance '
                      'looking down -z (docs/architecture.md)',
        'crop_box': job.crop_box, 'crop_size': int(job.crop.shape[0]),
        'crop_to_photo_scale': s / job.crop.shape[0],
        'camera': dict(zip(('focal', 'cx', 'cy'), _intrinsics(job.crop.shape[0]))) | {'camera_distance': 10.0},
        **(extra or {})}))
    staged.write_bytes(p + '_coefficients.npz', export.npz_bytes(
        coefficients=np.asarray(coefficients, np.float32), crop_box=job.crop_box, **parts))
    staged.write_bytes(p + '_overlay.png', export.png_bytes(
        overlay_image(job.photo, dec['render'], dec['alpha'], job.crop_box, lm_photo)))
    staged.write_bytes(p + '_depth.png', export.png_bytes(depth_visualisation(dec['depth'])))
    buf = io.BytesIO()
    np.save(buf, np.asarray(dec['depth'], np.float32))
    staged.write_bytes(p + '_depth.npy', buf.getvalue())
    return staged.paths


def _intrinsics(size):
  from facernet_jax.render import camera as camera_lib  # pylint: disable=g-import-not-at-top
  cam = camera_lib.Camera.for_image_size(size)
  return float(cam.focal), float(cam.cx), float(cam.cy)


# ----------------------------------------------------------------------------- driver

class Progress:
  def __init__(self, quiet=False):
    self.quiet = quiet
    self.start = time.time()

  def __call__(self, msg):
    if not self.quiet:
      print(f'[{time.time() - self.start:6.1f}s] {msg}', file=sys.stderr, flush=True)


def iterate_frames(path, every=1, max_frames=0):
  """Yields (frame index, RGB uint8) from a video; InputError when it cannot be opened or is empty."""
  import cv2  # pylint: disable=g-import-not-at-top
  cap = cv2.VideoCapture(path)
  if not cap.isOpened():
    raise InputError(f'{path}: cannot open the video (unknown format or codec)')
  try:
    index = got = 0
    while True:
      ok, frame = cap.read()
      if not ok:
        break
      if index % every == 0:
        got += 1
        yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if max_frames and got >= max_frames:
          break
      index += 1
    if index == 0 and got == 0:
      raise InputError(f'{path}: the video has no readable frames')
  finally:
    cap.release()


def run(args):
  """Processes all inputs; returns the exit status."""
  from facernet_jax.data import image_io  # pylint: disable=g-import-not-at-top
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
    rec = load_model(model_path, args.batch_size, args.render_size)
  except ModelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  progress(f'model: {rec.config.model.name}, {rec.image_size} px crops, face model {rec.face_model.name} '
           f'({rec.face_model.num_vertices} vertices)')
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
    coeffs = rec.regress(crops)
    extras = [{} for _ in jobs]
    if args.refine > 0:
      targets = np.stack([j.target_landmarks if j.target_landmarks is not None else np.zeros((68, 2))
                          for j in jobs])
      has = np.array([j.target_landmarks is not None for j in jobs], np.float32)
      coeffs, before, after = rec.refine(coeffs, crops, targets, has, args.refine, args.refine_lr)
      mean = lambda ds: {k: float(np.mean([d[k] for d in ds])) for k in ds[0]}
      fmt = lambda d: ', '.join(f'{k} {v:.4g}' for k, v in sorted(d.items()))
      progress(f'refine {args.refine} steps on {len(jobs)} face(s), mean losses: before [{fmt(mean(before))}] '
               f'-> after [{fmt(mean(after))}]')
      extras = [{'refine': {'steps': args.refine, 'learning_rate': args.refine_lr, 'loss_before': b,
                            'loss_after': a}} for b, a in zip(before, after)]
    dec = rec.decode(coeffs)
    for i, job in enumerate(jobs):
      one = {k: v[i] for k, v in dec.items()}
      try:
        paths = write_face(job, coeffs[i], one, rec.face_model, rec.uvs, args.texture_size, extras[i], mesh)
      except (OSError, ValueError) as e:
        fail(job.input_path, f'{job.input_path}: writing outputs failed: {e}')
        continue
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
    stem = _unique_stem(path, used)
    try:
      if kind == 'video':
        frames = faces_frames = 0
        for index, frame in iterate_frames(path, args.every, args.max_frames):
          frames += 1
          try:
            jobs = make_jobs(frame, path, os.path.join(args.out, f'{stem}_f{index:06d}'), args, annotations,
                             rec.image_size)
          except InputError:
            continue  # a frame without a face is normal in a video
          faces_frames += 1
          add_jobs(jobs)
        progress(f'[{n}/{len(inputs)}] {path}: {frames} frame(s), faces in {faces_frames}')
        if faces_frames == 0:
          raise InputError(f'{path}: no face found in any of {frames} frame(s)')
      else:
        try:
          photo = image_io.read_image(path)
        except image_io.ImageReadError as e:
          raise InputError(str(e)) from None
        jobs = make_jobs(photo, path, os.path.join(args.out, stem), args, annotations, rec.image_size)
        progress(f'[{n}/{len(inputs)}] {path}: {len(jobs)} face(s)')
        add_jobs(jobs)
    except InputError as e:
      fail(path, str(e))
  flush()
  total = sum(s.get('faces', 0) for s in status.values())
  export.write_json(os.path.join(args.out, 'summary.json'), {
      'model': os.path.abspath(model_path), 'inputs': status, 'faces': total, 'errors': errors})
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
  p.add_argument('--min-neighbours', type=int, default=6, help='detector: minimum group size of a face')
  p.add_argument('--max-faces', type=int, default=0, help='at most this many faces per image (0: all)')
  p.add_argument('--box-scale', type=float, default=detect.BOX_SCALE,
                 help='crop side / landmark-box side (default sqrt 2, as the real-data builders)')
  p.add_argument('--batch-size', type=int, default=8)
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
