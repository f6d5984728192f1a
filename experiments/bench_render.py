"""Benchmark of facernet_jax.render.render_mesh on a BFM-size face mesh (not a timed test).

Renders the synthetic BFM-size mesh (build_synthetic_model(resolution=189): 35,721 vertices, 70,688
triangles) and, when ../shared/data/bfm_topology is present, the real BFM mean front mesh (35,709 vertices,
70,789 triangles), projected with the default Camera of each image size, at 64/128/224 px, batch 4 and 8,
forward and forward+backward (gradient of a scalar loss w.r.t. vertex positions and colours). Each
configuration runs in a fresh subprocess so that its peak memory is its own:

* time: median of --repeats runs after one warm-up (compilation reported separately);
* memory: peak resident set size of the subprocess (resource.getrusage ru_maxrss, includes the Python/JAX
  runtime, reported next to the RSS measured just before the first render) and XLA's own buffer sizes from
  compiled.memory_analysis() (arguments + outputs + temporaries of the compiled program).

A naive all-pairs JAX soft renderer (pixels x triangles tensors, the formula of docs/renderer.md) runs in
the same session on a mesh it can hold (synthetic resolution 24: 1,058 triangles, 64 px) next to ours.

  python experiments/bench_render.py                    # default matrix
  python experiments/bench_render.py --sizes 64 --batches 4 --modes soft --meshes synthetic
"""
import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BFM_DIR = REPO.parent / 'shared' / 'data' / 'bfm_topology'


def _rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_mesh(resolution):
  """Mean shape and triangles of the synthetic face model; a face-like height field if it is missing."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  try:
    from facernet_jax.face_model import build_synthetic_model  # pylint: disable=g-import-not-at-top
    model = build_synthetic_model(resolution=resolution)
    return np.asarray(model.mean_shape, np.float32), np.asarray(model.triangles, np.int32)
  except ImportError:
    u = np.linspace(-1, 1, resolution)
    x, y = np.meshgrid(0.76 * u, 0.9 * u)
    z = 0.5 * np.sqrt(np.clip(1 - (x / 0.76) ** 2 - (y / 0.9) ** 2, 0, 1)) + 0.15 * np.exp(-(x ** 2 + y ** 2) / 0.02)
    verts = np.stack([x, y, z], -1).reshape(-1, 3).astype(np.float32)
    idx = np.arange(resolution * resolution).reshape(resolution, resolution)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tri = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    return verts - verts.mean(0), tri.astype(np.int32)


def bfm_mesh():
  """The BFM 2009 mean face (shape + expression means), front part, in decimetres, re-centred."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from scipy import io  # pylint: disable=g-import-not-at-top
  mean = (np.load(BFM_DIR / 'u_shp.npy') + np.load(BFM_DIR / 'u_exp.npy')).reshape(-1, 3) / 1e5
  front = io.loadmat(BFM_DIR / 'BFM_front_idx.mat')['idx'].astype(np.int64).ravel() - 1
  tri = io.loadmat(BFM_DIR / 'facemodel_info.mat')['tri'].astype(np.int64) - 1
  verts = mean[front]
  return (verts - verts.mean(0)).astype(np.float32), tri.astype(np.int32)


def screen_batch(verts, size, batch):
  """(B, N, 3) screen vertices: the mesh under small random head rotations, default camera."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from facernet_jax.render import camera as cam  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  angles = rng.normal(0.0, 0.15, (batch, 3)).astype(np.float32)
  v_cam = cam.transform(verts[None], cam.euler_to_rotation(angles), np.zeros((batch, 3), np.float32))
  return np.asarray(cam.project(v_cam, cam.Camera.for_image_size(size)))


def naive_all_pairs(screen, tri, colours, s):
  """Baseline: the soft formula with (B, pixels, triangles) tensors and lax.top_k over all triangles."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  size, k = s.image_size, s.faces_per_pixel
  ii, jj = jnp.meshgrid(jnp.arange(size) + 0.5, jnp.arange(size) + 0.5, indexing='ij')
  q = jnp.stack([jj.ravel(), ii.ravel()], -1)[None, :, None, None, :]
  p = screen[:, tri]
  xy, z = p[..., :2][:, None], p[..., 2][:, None]
  e = jnp.roll(xy, -1, axis=-2) - xy
  rel = q - xy
  t = jnp.clip(jnp.sum(rel * e, -1) / jnp.maximum(jnp.sum(e * e, -1), 1e-12), 0, 1)
  d2 = jnp.min(jnp.sum((rel - t[..., None] * e) ** 2, -1), -1)
  cross = e[..., 0] * rel[..., 1] - e[..., 1] * rel[..., 0]
  inside = jnp.all(cross >= 0, -1) | jnp.all(cross <= 0, -1)
  area = e[..., 0, 0] * (-e[..., 2, 1]) - e[..., 0, 1] * (-e[..., 2, 0])
  area = jnp.where(jnp.abs(area) > 1e-9, area, 1.0)
  lam = jnp.maximum(jnp.roll(cross, -1, axis=-1) / area[..., None], 0)
  w = lam / z
  inv_z = jnp.sum(w, -1) / jnp.maximum(jnp.sum(lam, -1), 1e-12)
  signed = jnp.where(inside, -d2, d2)
  key = jnp.where(signed < s.blur_radius_sq, inv_z, -jnp.inf)
  top, idx = jax.lax.top_k(key, k)
  take = lambda a: jnp.take_along_axis(a, idx, axis=-1)
  prob = jnp.where(top > -jnp.inf, jax.nn.sigmoid(-take(signed) / s.sigma), 0.0)
  bary = jnp.take_along_axis(w / jnp.maximum(jnp.sum(w, -1, keepdims=True), 1e-12), idx[..., None], axis=2)
  col = jnp.einsum('bpkv,bpkvc->bpkc', bary, colours[:, tri][jnp.arange(screen.shape[0])[:, None, None], idx])
  zi = (s.zfar - 1.0 / jnp.maximum(top, 1e-12)) / (s.zfar - s.znear)
  zi = jnp.where(top > -jnp.inf, zi, 0.0)
  zmax = jnp.maximum(zi.max(-1, keepdims=True), s.blend_eps)
  wt = prob * jnp.exp((zi - zmax) / s.gamma)
  delta = jnp.maximum(jnp.exp((s.blend_eps - zmax) / s.gamma), s.blend_eps)
  image = jnp.einsum('bpk,bpkc->bpc', wt, col) / (wt.sum(-1, keepdims=True) + delta)
  alpha = 1 - jnp.prod(1 - prob, -1)
  return image.reshape(screen.shape[0], size, size, -1), alpha.reshape(screen.shape[0], size, size)


def worker(cfg):
  """Runs one configuration in this process and prints one JSON line."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from facernet_jax.render import RasterSettings, render_mesh  # pylint: disable=g-import-not-at-top
  verts, tri = bfm_mesh() if cfg['mesh'] == 'bfm' else synthetic_mesh(cfg['resolution'])
  size, batch = cfg['size'], cfg['batch']
  screen = jnp.asarray(screen_batch(verts, size, batch))
  colours = jnp.asarray(np.random.default_rng(1).uniform(size=(batch, verts.shape[0], 3)).astype(np.float32))
  tri = jnp.asarray(tri)
  settings = RasterSettings(image_size=size, mode=cfg['mode'], sigma=cfg['sigma'],
                            faces_per_pixel=cfg['k'], **({'chunk_size': cfg['chunk']} if cfg['chunk'] else {}))
  renderer = naive_all_pairs if cfg['impl'] == 'naive' else (
      lambda v, t, c, s: tuple(render_mesh(v, t, c, s)[:2]))

  def loss(v, c):
    image, alpha = renderer(v, tri, c, settings)[:2]
    return jnp.mean(image) + jnp.mean(alpha)

  fns = {'fwd': jax.jit(lambda v, c: renderer(v, tri, c, settings)),
         'fwd+bwd': jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))}
  base_rss = _rss_mb()
  out = dict(cfg, faces=int(tri.shape[0]), vertices=int(verts.shape[0]), base_rss_mb=round(base_rss))
  for name, fn in fns.items():
    t0 = time.perf_counter()
    compiled = fn.lower(screen, colours).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    xla_mb = None if mem is None else (mem.argument_size_in_bytes + mem.output_size_in_bytes +
                                       mem.temp_size_in_bytes) / 2 ** 20
    jax.block_until_ready(compiled(screen, colours))
    times = []
    for _ in range(cfg['repeats']):
      t0 = time.perf_counter()
      jax.block_until_ready(compiled(screen, colours))
      times.append(time.perf_counter() - t0)
    out[name] = {'median_ms': round(1e3 * float(np.median(times)), 1),
                 'min_ms': round(1e3 * float(np.min(times)), 1), 'compile_s': round(compile_s, 1),
                 'xla_mb': None if xla_mb is None else round(xla_mb, 1), 'peak_rss_mb': round(_rss_mb())}
  if cfg['impl'] == 'ours':
    out['overflow'] = int(np.max(np.asarray(render_mesh(screen, tri, colours, settings).overflow)))
  print(json.dumps(out), flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--sizes', type=int, nargs='+', default=[64, 128, 224])
  parser.add_argument('--batches', type=int, nargs='+', default=[4, 8])
  parser.add_argument('--modes', nargs='+', default=['soft', 'hard'])
  parser.add_argument('--meshes', nargs='+', default=['synthetic', 'bfm'])
  parser.add_argument('--sigma', type=float, default=0.1, help='soft edge sharpness, pixels^2')
  parser.add_argument('--k', type=int, default=8, help='faces per pixel (soft)')
  parser.add_argument('--chunk', type=int, default=0, help='chunk_size (0 = RasterSettings default)')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--no-baseline', action='store_true')
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker(json.loads(args.worker))
    return
  configs = []
  if not args.no_baseline:
    for impl in ('naive', 'ours'):
      configs.append(dict(impl=impl, mesh='synthetic', resolution=24, size=64, batch=4, mode='soft'))
  for mesh in args.meshes:
    if mesh == 'bfm' and not BFM_DIR.is_dir():
      print(f'# skipping the real BFM mesh: {BFM_DIR} not found', flush=True)
      continue
    for mode in args.modes:
      for size in args.sizes:
        for batch in args.batches:
          configs.append(dict(impl='ours', mesh=mesh, resolution=189, size=size, batch=batch, mode=mode))
  env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
  print(f'# jax devices: {__import__("jax").devices()}  (CPU cores: {os.cpu_count()})', flush=True)
  for cfg in configs:
    cfg.update(sigma=args.sigma, k=args.k, chunk=args.chunk, repeats=args.repeats)
    proc = subprocess.run([sys.executable, __file__, '--worker', json.dumps(cfg)], env=env,
                          capture_output=True, text=True, check=False)
    line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ''
    print(line if proc.returncode == 0 else json.dumps(dict(cfg, error=proc.stderr[-800:])), flush=True)


if __name__ == '__main__':
  main()
