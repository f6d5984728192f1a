"""The parts of training, one job per module (as google/flax examples/imagenet and big_vision).

  state.py       networks, optimiser and the TrainState pytree (start-up)
  step.py        the maths of one step: Eq 11's terms, train_step, eval_step
  parallel.py    device placement: pmap or jit + NamedSharding, prefetch, multi-host start-up
  checkpoint.py  Orbax manager, save / restore, load_for_inference, the resume config check
  validate.py    every config value checked before anything is written

`facernet_jax/train.py` holds the loop and the CLI on top of them.
"""
