"""What `python -m facernet_jax.evaluate` writes: the paper's tables as text, CED plots, predictions, JSON."""
import io
import os

from matplotlib import figure
import numpy as np

from facernet_jax import export
from facernet_jax import metrics


def plot_ced(curves, path, max_error=0.1, title='CED', xlabel='NME (%)'):
  """Saves CED curves as a PNG. curves: dict name -> per-image errors (fractions; shown in percent)."""
  fig = figure.Figure(figsize=(5, 4), dpi=100)
  ax = fig.add_subplot(1, 1, 1)
  for name, errors in curves.items():
    t, f = metrics.ced_curve(errors, max_error)
    ax.plot(100 * t, 100 * f, label=f'{name} (AUC {100 * metrics.ced_auc(errors, max_error):.1f})')
  ax.set_xlim(0, 100 * max_error)
  ax.set_ylim(0, 100)
  ax.set_xlabel(xlabel)
  ax.set_ylabel('images (%)')
  ax.set_title(title)
  ax.grid(True, alpha=0.3)
  ax.legend(loc='lower right', fontsize=8)
  buf = io.BytesIO()
  fig.savefig(buf, format='png')
  export.atomic_write_bytes(path, buf.getvalue())
  return path


def write_outputs(out_dir, results):
  """Writes tables.txt (Tables 2, 3, 5-7 layouts), ced_<name>.png, <name>_pred.pts68.npy and
  results.json into out_dir; returns the tables' text."""
  os.makedirs(out_dir, exist_ok=True)
  rows = []
  for r in results:
    t = r['_table']
    if r['name'] == 'aflw_lfpa':
      continue
    rows.append((r['name'], t))
    if 'nme_reannotated' in r:
      vals = np.array([x.get('nme_reannotated', np.nan) for x in r['per_image']], np.float64)
      yaw = np.array([x['yaw'] for x in r['per_image']])
      ok = np.isfinite(vals)
      rows.append((r['name'] + ' (re-annotated)', metrics.nme_table(vals[ok], yaw[ok])))
  lfpa = next((r for r in results if r['name'] == 'aflw_lfpa'), None)
  if lfpa is not None:
    rows.append(('aflw_lfpa (34 points)', lfpa['_table'], lfpa['_table'].mean))
  text = [metrics.format_nme_table(rows, title='Table 2 layout: NME (%), 68 points unless said, '
                                               'normalised by sqrt(w*h) of the GT landmark box')]
  t3 = [(r['name'], r) for r in results if 'psnr' in r]
  if t3:
    text.append('\nTable 3 layout: rendered vs input image in the face region (rendered coverage)')
    text.append(f'{"":24s}{"L1":>8s}{"PSNR":>8s}{"SSIM":>8s}')
    text += [f'{n:24.24s}{r["l1"]:8.4f}{r["psnr"]:8.2f}{r["ssim"]:8.3f}' for n, r in t3]
  t5 = [(r['name'], r) for r in results if 'side' in r]
  if t5:
    text.append('\nTables 5-7 layout: depth and normals (Eqs 20-21); dense alignment after ICP')
    text.append(f'{"":24s}{"SIDE(e-2)":>10s}{"MAD(deg)":>10s}{"dense NME(%)":>13s}')
    text += [f'{n:24.24s}{100 * r["side"]:10.4f}{r["mad"]:10.4f}{100 * r.get("dense_nme", np.nan):13.3f}'
             for n, r in t5]
  if not t5:
    text.append('\nTables 5-7 layout (SIDE, MAD; Eqs 20-21): not computed. They need ground-truth depth '
                'maps, which only the synthetic split has (--benchmarks=synthetic with a synthetic-face-'
                'model run); for AFLW2000-3D they would need dense ground-truth meshes from its '
                'Shape_Para / Exp_Para, i.e. 3DDFA\'s 29-component expression basis, which the BFM '
                'download does not include.')
  if t3:
    text.append('(Table 3\'s LightCNN and evolve columns are not computed: they need pretrained face-'
                'recognition networks; docs/evaluation.md)')
  report = '\n'.join(text) + '\n'
  export.atomic_write_bytes(os.path.join(out_dir, 'tables.txt'), report.encode())
  curves = {}
  for r in results:
    curves[r['name']] = [x['nme'] for x in r['per_image']]
    if 'nme_reannotated' in r:
      curves[r['name'] + ' re-annotated'] = [x['nme_reannotated'] for x in r['per_image'] if 'nme_reannotated' in x]
    plot_ced({k: v for k, v in curves.items() if k.startswith(r['name'])},
                     os.path.join(out_dir, f'ced_{r["name"]}.png'), max_error=0.1,
                     title=f'CED: {r["name"]} ({r["count"]} images)')
    if '_pred' in r:
      # 3DDFA layout (n, 2, 68), continuous photo pixels; for 3DDFA's arrays use `nme --pred-shift`.
      buf = io.BytesIO()
      np.save(buf, np.swapaxes(r['_pred'], 1, 2).astype(np.float32))
      export.atomic_write_bytes(os.path.join(out_dir, f'{r["name"]}_pred.pts68.npy'), buf.getvalue())
  clean = [{k: v for k, v in r.items() if not k.startswith('_')} for r in results]
  export.write_json(os.path.join(out_dir, 'results.json'), {'benchmarks': clean})
  return report
