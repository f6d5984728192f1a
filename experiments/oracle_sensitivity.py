"""What NME and PSNR does each coefficient group's error cost? Ground truth with one group perturbed.

Decodes the synthetic test split's true coefficients, then again with one group zeroed or noised, and
prints the NME and the PSNR in the true face mask and in the rendered region. It tells how precise the
regression must be to reach the default run's targets (docs/training.md):

  python experiments/oracle_sensitivity.py --image_size=32 --model_resolution=16
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from facernet_jax import metrics  # noqa: E402
from facernet_jax import render  # noqa: E402
from facernet_jax.data import synthetic_faces  # noqa: E402
from facernet_jax.face_model.synthetic import build_synthetic_model  # noqa: E402
from facernet_jax.forward import FaceDecoder  # noqa: E402
from facernet_jax.models import coefficient_slices  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--image_size', type=int, default=32)
  p.add_argument('--model_resolution', type=int, default=16)
  p.add_argument('--num_images', type=int, default=128)
  a = p.parse_args()
  config = synthetic_faces.make_config(image_size=a.image_size, model_resolution=a.model_resolution,
                                       num_train=4000, num_validation=200, num_test=500)
  data = synthetic_faces.generate_examples(config, 'test', 0, a.num_images)
  images = data['image'].astype(np.float32) / 255.0
  decoder = FaceDecoder(build_synthetic_model(a.model_resolution, 0), a.image_size, trainable_bases=False,
                        raster=render.RasterSettings(image_size=a.image_size, mode='hard'))
  truth = jnp.asarray(data['coefficients'])
  variables = decoder.init(jax.random.PRNGKey(0), truth[:1])
  decode = jax.jit(lambda c: decoder.apply(variables, c))
  slices = coefficient_slices()
  noise = np.random.default_rng(0).standard_normal((a.num_images, 3)).astype(np.float32)

  print(f'{"coefficients":32s} {"NME %":>7s} {"PSNR mask":>10s} {"PSNR drawn":>11s}')

  def report(name, c):
    out = decode(c)
    nme = 100.0 * metrics.nme_per_image(np.asarray(out['landmarks']), data['landmarks']).mean()
    rendered, alpha = np.asarray(out['render'].image), np.asarray(out['render'].alpha)
    in_mask = np.mean([metrics.psnr(images[k], rendered[k], data['mask'][k] > 0)
                       for k in range(a.num_images)])
    composite = rendered * alpha[..., None] + images * (1 - alpha[..., None])
    drawn = np.mean([metrics.psnr(images[k], composite[k], alpha[k] > 0.5)
                     for k in range(a.num_images)])
    print(f'{name:32s} {nme:7.2f} {in_mask:10.2f} {drawn:11.2f}', flush=True)

  report('ground truth', truth)
  for group in ('shape', 'expression', 'texture', 'lighting', 'translation'):
    report(f'{group} zeroed', truth.at[:, slices[group]].set(0.0))
  report('shape + expression zeroed',
         truth.at[:, slices['shape']].set(0.0).at[:, slices['expression']].set(0.0))
  report('texture + lighting zeroed',
         truth.at[:, slices['texture']].set(0.0).at[:, slices['lighting']].set(0.0))
  for std in (0.01, 0.03, 0.05):
    report(f'rotation + N(0, {std}) rad', truth.at[:, slices['rotation']].add(std * noise))
  for std in (0.01, 0.03):
    report(f'translation + N(0, {std})', truth.at[:, slices['translation']].add(std * noise))


if __name__ == '__main__':
  main()
