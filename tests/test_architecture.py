"""The module map of docs/architecture.md, checked on the source with `ast` (nothing is imported).

Every module of the package sits in one layer of LAYERS. A module may import modules of its own layer
or of lower layers, never of a higher one; no module (tests and experiments included) uses another
module's private `_names`; imports stand at the top of a module unless LOCAL_IMPORTS_ALLOWED names them.

A new module: add it to LAYERS below (the layer whose job it shares; a package can be one entry,
`package.*`) and to the module map in docs/architecture.md.
"""
import ast
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = 'facernet_jax'

# Lowest first. An entry is a module (`facernet_jax.x.y`) or a package with everything below it
# (`facernet_jax.x.*`); the longest matching entry decides a module's layer.
LAYERS = [
    ('conventions', [  # shared numbers and rules; import nothing from the package
        'facernet_jax', 'facernet_jax.coefficients', 'facernet_jax.landmarks', 'facernet_jax.topology',
        'facernet_jax.configs.*',
    ]),
    ('primitives', [  # numpy / JAX building blocks, one concern each
        'facernet_jax.face_model.model', 'facernet_jax.render.*', 'facernet_jax.metrics',
        'facernet_jax.data.image_io', 'facernet_jax.data.synthetic_scenes',
    ]),
    ('face model', [
        'facernet_jax.face_model.*',
    ]),
    ('networks and losses', [
        'facernet_jax.models.*', 'facernet_jax.forward', 'facernet_jax.losses',
    ]),
    ('data and files', [  # datasets, face finding, file encoders
        'facernet_jax.data.*', 'facernet_jax.detect', 'facernet_jax.export',
    ]),
    ('input and evaluation loops', [  # issue 16: input and eval modules moved out of train.py
        'facernet_jax.input_pipeline', 'facernet_jax.train_eval',
        'facernet_jax.run_report',  # issue 18: the end-of-run report that train's loop calls
    ]),
    ('training', [  # issue 16: train.py and the modules split from it (step, parallelism, checkpoints, loop)
        'facernet_jax.training.*', 'facernet_jax.train',
    ]),
    ('inference', [  # a trained model on new images; ONNX / LiteRT export (facernet_jax.deploy, issue 17)
        'facernet_jax.inference', 'facernet_jax.refine', 'facernet_jax.demo_checkpoint',
        'facernet_jax.deploy.*',
    ]),
    ('applications', [  # command lines and what they read and write; run reports (issue 18)
        'facernet_jax.photo_inputs', 'facernet_jax.face_outputs', 'facernet_jax.reconstruct',
        'facernet_jax.nme_protocol', 'facernet_jax.benchmarks', 'facernet_jax.benchmark_outputs',
        'facernet_jax.evaluate', 'facernet_jax.report',
    ]),
]

# Imports inside functions: heavy optional dependencies anywhere, and named modules whose owners are
# moving theirs to the top (each with the reason; remove an entry once its module is clean).
# dlib: the [prepare] extra's maker and the HOG detector; mtcnn: imports TensorFlow (seconds), only when
# the MTCNN detector runs. detect falls back to the cascade when either is not installed.
# onnx, onnxruntime, jax2onnx: the [deploy] extra (+ jax2onnx installed with --no-deps), imported only
# when exporting / running ONNX; ai_edge_litert: optional LiteRT runtime (tf.lite is the fallback).
OPTIONAL_DEPENDENCIES = {'dlib', 'mtcnn', 'onnx', 'onnxruntime', 'jax2onnx', 'ai_edge_litert'}
LOCAL_IMPORTS_ALLOWED = {}


def _module_name(path):
  parts = list(path.relative_to(REPO).with_suffix('').parts)
  if parts[-1] == '__init__':
    parts = parts[:-1]
  return '.'.join(parts)


def _package_modules():
  return {_module_name(p): p for p in sorted((REPO / PACKAGE).rglob('*.py'))}


MODULES = _package_modules()


def _layer_of(module):
  """(index, name) of the module's layer, or None when no entry matches."""
  best = None
  for index, (name, entries) in enumerate(LAYERS):
    for entry in entries:
      prefix = entry[:-2] if entry.endswith('.*') else entry
      if module == prefix or (entry.endswith('.*') and module.startswith(prefix + '.')):
        if best is None or len(prefix) > best[0]:
          best = (len(prefix), index, name)
  return None if best is None else best[1:]


def _is_package(module):
  return (REPO / pathlib.Path(*module.split('.')) / '__init__.py').is_file()


def _imports(path):
  """[(line, imported module, names taken from it or None, at module top)] of one file."""
  tree = ast.parse(path.read_text(), str(path))
  module = _module_name(path) if path.is_relative_to(REPO / PACKAGE) else ''
  top = {id(n) for n in tree.body}
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        out.append((node.lineno, a.name, None, id(node) in top))
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative: from the importing module's package
        pkg = module.split('.') if _is_package(module) else module.split('.')[:-1]
        pkg = pkg[:len(pkg) - node.level + 1]
        base = '.'.join(pkg + ([node.module] if node.module else []))
      for a in node.names:
        sub = f'{base}.{a.name}'
        if sub in MODULES:
          out.append((node.lineno, sub, None, id(node) in top))
        else:
          out.append((node.lineno, base, a.name, id(node) in top))
  return out


def _private_uses(path):
  """[(line, text)] where the file uses another module's `_private` name."""
  tree = ast.parse(path.read_text(), str(path))
  found, aliases = [], {}
  for line, mod, name, _ in _imports(path):
    if not mod.startswith(PACKAGE):
      continue
    if name is not None and name.startswith('_') and not name.startswith('__'):
      found.append((line, f'from {mod} import {name}'))
  for node in ast.walk(tree):  # names bound to package modules by `import` / `from ... import module`
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name.startswith(PACKAGE) and a.asname:
          aliases[a.asname] = a.name
    elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith(PACKAGE):
      for a in node.names:
        if f'{node.module}.{a.name}' in MODULES:
          aliases[a.asname or a.name] = f'{node.module}.{a.name}'
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and node.attr.startswith('_') and not node.attr.startswith('__')):
      value = node.value
      if isinstance(value, ast.Name) and value.id in aliases:
        found.append((node.lineno, f'{value.id}.{node.attr} ({aliases[value.id]})'))
      elif isinstance(value, ast.Attribute) and ast.unparse(value).startswith(PACKAGE + '.'):
        found.append((node.lineno, ast.unparse(node)))
  return found


def test_every_module_is_in_the_layer_map():
  missing = [m for m in MODULES if _layer_of(m) is None]
  assert not missing, (f'modules not in the layer map: {missing}; add each to LAYERS in '
                       f'tests/test_architecture.py and to the module map in docs/architecture.md')


def test_layer_map_names_only_existing_modules():
  stale = [e for _, entries in LAYERS for e in entries
           if not e.endswith('.*') and e not in MODULES]
  assert not stale, f'LAYERS names modules that do not exist: {stale}'


def _upward_imports(module, path):
  """Imports of package modules in a higher layer than `module`'s."""
  layer = _layer_of(module)
  upward = []
  for line, imported, _, _ in _imports(path):
    target = _layer_of(imported) if imported.startswith(PACKAGE) else None
    if target is not None and target[0] > layer[0]:
      upward.append(f'line {line}: {imported} (layer {target[0]} {target[1]!r})')
  return upward


@pytest.mark.parametrize('module', sorted(MODULES))
def test_imports_point_down(module):
  layer = _layer_of(module)
  if layer is None:
    pytest.skip('not in the layer map (test_every_module_is_in_the_layer_map fails)')
  upward = _upward_imports(module, MODULES[module])
  assert not upward, (f'{module} (layer {layer[0]} {layer[1]!r}) imports upward: {upward}; move the shared '
                      f'piece down or pass it in (docs/architecture.md, module map)')


def _python_files():
  files = sorted((REPO / PACKAGE).rglob('*.py')) + sorted((REPO / 'tests').glob('*.py'))
  return files + sorted((REPO / 'experiments').glob('*.py'))


@pytest.mark.parametrize('path', _python_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_private_names_of_other_modules(path):
  uses = _private_uses(path)
  assert not uses, (f'{path.relative_to(REPO)} uses private names of other modules: {uses}; make the name '
                    f'public (and document it) or keep the use inside its module')


@pytest.mark.parametrize('module', sorted(MODULES))
def test_imports_at_module_top(module):
  if module in LOCAL_IMPORTS_ALLOWED:
    pytest.skip(LOCAL_IMPORTS_ALLOWED[module])
  local = [f'line {line}: {imported}' for line, imported, _, top in _imports(MODULES[module])
           if not top and imported.split('.')[0] not in OPTIONAL_DEPENDENCIES]
  assert not local, (f'{module} imports inside functions: {local}; move them to the top (or, for a heavy '
                     f'optional dependency, add it to OPTIONAL_DEPENDENCIES with the reason)')


def _documented_map():
  """{module: layer index} from the module-map table of docs/architecture.md."""
  text = (REPO / 'docs' / 'architecture.md').read_text()
  section = text.split('## Module map', 1)[1].split('\n## ', 1)[0]
  out = {}
  for row in section.splitlines():
    cells = [c.strip() for c in row.strip().strip('|').split('|')]
    if len(cells) >= 3 and re.fullmatch(r'\d+', cells[0]):
      for name in re.findall(r'`([^`]+)`', cells[1]):
        out[PACKAGE if name == PACKAGE else f'{PACKAGE}.{name}'] = int(cells[0])
  return out


def test_docs_module_map_matches_the_layers():
  documented = _documented_map()
  expected = {e: i for i, (_, entries) in enumerate(LAYERS) for e in entries}
  assert documented == expected, (
      f'docs/architecture.md module map and LAYERS differ: only in the docs '
      f'{sorted(set(documented) - set(expected))}, only in LAYERS {sorted(set(expected) - set(documented))}, '
      f'other layer {sorted(k for k in set(documented) & set(expected) if documented[k] != expected[k])}')


def test_the_checks_catch_violations(tmp_path):
  """The checkers on a file written to break each rule (guards against checks that cannot fail)."""
  assert _layer_of('facernet_jax.metrics')[0] < _layer_of('facernet_jax.export')[0]
  assert _layer_of('facernet_jax.deploy.onnx')[1] == 'inference'
  assert _layer_of('facernet_jax.face_model.model')[1] == 'primitives'
  assert _layer_of('facernet_jax.face_model.synthetic')[1] == 'face model'
  assert _layer_of('facernet_jax.no_such_module') is None
  f = tmp_path / 'example.py'
  f.write_text('import numpy as np\nfrom facernet_jax import detect\nfrom facernet_jax.evaluate import _read\n'
               'import facernet_jax.train as tr\nfrom facernet_jax.render import camera\n\n'
               'def g():\n  import facernet_jax.export\n  return detect._iou, tr._x, camera.project\n')
  found = [(m, top) for _, m, _, top in _imports(f)]
  assert ('facernet_jax.detect', True) in found and ('facernet_jax.export', False) in found
  assert ('facernet_jax.render.camera', True) in found and ('numpy', True) in found
  assert [u for _, u in _private_uses(f)] == [
      'from facernet_jax.evaluate import _read', 'detect._iou (facernet_jax.detect)', 'tr._x (facernet_jax.train)']
  # As if it were metrics.py (primitives): everything but render.camera is upward.
  upward = _upward_imports('facernet_jax.metrics', f)
  assert [u.split(' ')[2] for u in upward] == [
      'facernet_jax.detect', 'facernet_jax.evaluate', 'facernet_jax.train', 'facernet_jax.export']


@pytest.mark.parametrize('module', sorted(LOCAL_IMPORTS_ALLOWED))
def test_local_import_exemptions_are_still_needed(module):
  local = [i for _, i, _, top in _imports(MODULES[module]) if not top]
  assert local, f'{module} has no local imports left: remove it from LOCAL_IMPORTS_ALLOWED'
