"""Does a trained run over-fit? Face-region PSNR and NME on training images against test images.

  python experiments/split_gap.py --workdir=runs/default [--num_images=128]

On the first `num_images` examples of the synthetic train and test splits (regenerated from the run's
dataset config, so exactly the images it trained and is tested on) it prints the mean face-region
PSNR (Table 3's region, as training's validation reports it) and the 68-point NME of the run's
predictions. docs/training.md quotes it for the appearance branch and the training-set size.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from coefficient_errors import predict  # noqa: E402
from facernet_jax import input_pipeline  # noqa: E402
from facernet_jax import metrics  # noqa: E402
from facernet_jax import train  # noqa: E402
from facernet_jax.data import synthetic_faces  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--num_images', type=int, default=128)
  a = p.parse_args()
  config, variables = train.load_for_inference(a.workdir)
  if config.dataset.name != 'synthetic_faces':
    raise SystemExit(f'{a.workdir} was trained on {config.dataset.name!r}; this needs the '
                     'synthetic faces, whose train split can be regenerated')
  network, decoder = train.create_networks(config)
  data_config = synthetic_faces.config_from_dict(input_pipeline.synthetic_dataset_config(config))
  decode = jax.jit(lambda c: decoder.apply({'params': variables['params']['decoder']}, c))
  print(f'{a.workdir}: first {a.num_images} images of each split')
  for split in ('train', 'test'):
    examples = synthetic_faces.generate_examples(data_config, split, 0, a.num_images)
    coefficients, _ = predict(variables, network, examples['image'])
    out = decode(jnp.asarray(coefficients))
    images = examples['image'].astype(np.float32) / 255.0
    render, alpha = np.asarray(out['render'].image), np.asarray(out['render'].alpha)
    psnr = np.mean([metrics.face_region_metrics(images[k], render[k], alpha[k])['psnr']
                    for k in range(len(images))])
    nme = 100.0 * np.mean(metrics.nme_per_image(np.asarray(out['landmarks']), examples['landmarks']))
    print(f'{split:5s}  face-region PSNR {psnr:.2f} dB  NME {nme:.2f} %')


if __name__ == '__main__':
  main()
