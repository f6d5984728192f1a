"""The files `python -m facernet_jax.reconstruct` writes for each face, all together or none.

`<prefix>_*`: `mesh.obj` and `mesh.ply` (vertex colours = albedo), `textured.obj` + `.mtl` + `.png`
(UV texture of the albedo), `landmarks.json` (68 points 2D in photo pixels and 3D), `pose.json` (yaw /
pitch / roll in degrees, translation, rotation matrix, camera), `coefficients.npz`, `overlay.png` (shaded
mesh and landmarks over the photo), `depth.png` / `depth.npy`. For the embedded synthetic model the mesh
files hold the same face on its dense mesh (`dense_mesh`). Encoders live in facernet_jax.export.
"""
import io

import cv2
import numpy as np

from facernet_jax import coefficients as coefficients_lib
from facernet_jax import export
from facernet_jax.face_model import synthetic
from facernet_jax.render import camera as camera_lib

OUTPUT_SUFFIXES = ('mesh.obj', 'mesh.ply', 'textured.obj', 'textured.mtl', 'textured.png',
                   'landmarks.json', 'pose.json', 'coefficients.npz', 'overlay.png', 'depth.png', 'depth.npy')


def _paste(photo_shape, image, box):
  """Warps a square render of the crop `box` into photo coordinates (linear)."""
  h, w = photo_shape[:2]
  r = image.shape[0]
  sx = (box[2] - box[0]) / r
  sy = (box[3] - box[1]) / r
  m = np.array([[sx, 0, box[0] + 0.5 * sx - 0.5], [0, sy, box[1] + 0.5 * sy - 0.5]], np.float64)
  return cv2.warpAffine(np.asarray(image, np.float32), m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_FILL_OUTLIERS,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def overlay_image(photo, render, alpha, box, landmarks_photo, opacity=0.6):
  """Photo with the shaded mesh blended in (opacity) and the 68 landmarks drawn (green dots)."""
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
  resolution = int(fm.resolution)
  mesh_model = synthetic.build_synthetic_model(resolution, int(fm.seed), synthetic.dense_resolution(resolution))
  return mesh_model, resolution, export.model_uvs(mesh_model)


def write_face(job, coefficients, dec, model, uvs, texture_size, extra=None, mesh=None):
  """Writes one face's files atomically (all or none). Returns the list of paths.

  With ``mesh`` (from ``dense_mesh``) the mesh files hold the same face on the dense mesh."""
  parts = {k: np.asarray(v) for k, v in coefficients_lib.split_coefficients(np.asarray(coefficients)).items()}
  vertices, albedo = dec['vertices'], np.clip(dec['albedo'], 0, 1)
  mesh_vertices, mesh_albedo, triangles = vertices, albedo, model.triangles
  if mesh is not None:
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
        'camera': camera_json(job.crop.shape[0]),
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


def camera_json(size):
  """The camera of a `size` px crop (docs/architecture.md), as pose.json records it."""
  cam = camera_lib.Camera.for_image_size(size)
  return {'focal': float(cam.focal), 'cx': float(cam.cx), 'cy': float(cam.cy),
          'camera_distance': float(cam.camera_distance)}
