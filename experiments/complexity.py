"""Parameters and FLOPs of Mobile-FaceRNet and the Table 4 baselines.

FLOPs come from XLA's cost analysis of the jitted eval-mode forward pass (batch 1). XLA counts
2 FLOPs per multiply-add and skips taps that fall in the zero padding; it also counts the
element-wise work (BatchNorm, activations, sigmoids). Next to it the script prints the dense
multiply-add count of all convolutions and matmuls in the jaxpr (padding taps included), the
convention of PyTorch counters (thop, ptflops) that papers usually report as "GFLOPs".
Parameters exclude the 3DMM layer (it is not part of these networks) and batch statistics.

  python experiments/complexity.py [--sizes 64 120 224] [--breakdown]
"""
import argparse
import collections
import os
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from facernet_jax.models import count_params  # noqa: E402
from facernet_jax.models import create_model  # noqa: E402

# Table 4 of the paper: (params M, GFLOPs).
PAPER = {
    'ours': (2.56, 0.121),
    'ours (no attention)': (2.40, 0.110),
    'MobileNetV2': (2.38, 0.109),
    'ResNet50': (23.11, 1.319),
    'DenseNet-121': (7.02, 0.800),
}
VARIANTS = collections.OrderedDict([
    ('ours', ('facernet', {})),
    ('ours (no attention)', ('facernet', dict(use_attention=False))),
    ('MobileNetV2', ('mobilenetv2', {})),
    ('ResNet50', ('resnet50', {})),
    ('DenseNet-121', ('densenet121', {})),
    # Beyond the paper (not in Table 4; run with --models): the default config's appearance branch.
    ('ours + appearance branch', ('facernet', dict(appearance_branch=True))),
])


def init_variables(model, size):
  return jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))()


def xla_flops(model, variables, size):
  """FLOPs (2 per multiply-add) from XLA's cost analysis of the jitted forward pass."""
  fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
  compiled = fwd.lower(variables, jnp.zeros((1, size, size, 3))).compile()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
    cost = cost[0]
  return float(cost['flops'])


def _jaxpr_macs(jaxpr):
  macs = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'conv_general_dilated':
      lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
      out = eqn.outvars[0].aval
      dn = eqn.params['dimension_numbers']
      k = rhs.shape
      spatial = np.prod([k[i] for i in dn.rhs_spec[2:]])
      cin_per_group = k[dn.rhs_spec[1]]
      macs += int(np.prod(out.shape)) * int(spatial) * int(cin_per_group)
    elif eqn.primitive.name == 'dot_general':
      (lc, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval
      macs += int(np.prod(eqn.outvars[0].aval.shape)) * int(np.prod([lhs.shape[i] for i in lc]))
    for p in eqn.params.values():
      if hasattr(p, 'jaxpr') and hasattr(p.jaxpr, 'eqns'):
        macs += _jaxpr_macs(p.jaxpr)
      elif hasattr(p, 'eqns'):
        macs += _jaxpr_macs(p)
  return macs


def dense_macs(model, variables, size):
  """Multiply-adds of every conv / matmul, padding taps included (thop / ptflops convention)."""
  closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(
      variables, jnp.zeros((1, size, size, 3)))
  return _jaxpr_macs(closed.jaxpr)


def breakdown(params):
  """Parameters per top-level module, merged into the groups the report discusses."""
  groups = collections.OrderedDict()
  for name, sub in params.items():
    if name.startswith('layer'):
      key = name.split('_')[0]
    elif name.startswith('decoder'):
      key = 'decoder (RA)'
    else:
      key = name
    groups[key] = groups.get(key, 0) + count_params(sub)
  return groups


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', type=int, nargs='+', default=[64, 120, 224])
  parser.add_argument('--breakdown', action='store_true', help='parameters per module of ours')
  parser.add_argument('--outputs', type=int, default=495,
                      help='head size (62 reproduces the 3DDFA/DAMDNet heads of the baselines)')
  parser.add_argument('--models', nargs='+', default=list(PAPER), choices=list(VARIANTS))
  args = parser.parse_args(argv)

  rows = []
  for label in args.models:
    name, kw = VARIANTS[label]
    model = create_model(name, num_outputs=args.outputs, **kw)
    p_ref, g_ref = PAPER.get(label, (float('nan'), float('nan')))  # nan: not in Table 4
    for size in args.sizes:
      variables = init_variables(model, size)
      n = count_params(variables['params'])
      head = count_params(variables['params']['head'])
      flops = xla_flops(model, variables, size)
      macs = dense_macs(model, variables, size)
      rows.append((label, size, n / 1e6, head / 1e6, flops / 1e9, macs / 1e9, p_ref, g_ref))
      print(f'{label:22s} {size:4d}px  params {n / 1e6:6.3f} M (head {head / 1e6:.3f})  '
            f'XLA {flops / 1e9:7.3f} GFLOPs  dense {macs / 1e9:7.3f} GMACs   '
            f'paper {p_ref:5.2f} M {g_ref:.3f}', flush=True)
  print('\n| network | px | params (M) | of which head | XLA GFLOPs (2/MAC, no pad) | dense GMACs (pad incl.) '
        '| paper params (M) | paper "GFLOPs" |')
  print('| --- | --- | --- | --- | --- | --- | --- | --- |')
  for r in rows:
    print('| {} | {} | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {:.2f} | {:.3f} |'.format(*r))
  if args.breakdown:
    for label in ('ours', 'ours (no attention)', 'MobileNetV2'):
      name, kw = VARIANTS[label]
      model = create_model(name, num_outputs=args.outputs, **kw)
      shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
      print(f'\n{label}: parameters per module')
      for k, v in breakdown(shapes['params']).items():
        print(f'  {k:14s} {v:9d}')


if __name__ == '__main__':
  main()
