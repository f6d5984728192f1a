"""The coefficient layout of Eq 10, defined in facernet_jax.coefficients (kept importable from here)."""
from facernet_jax.coefficients import COEFFICIENT_SIZES
from facernet_jax.coefficients import NUM_COEFFICIENTS
from facernet_jax.coefficients import coefficient_slices
from facernet_jax.coefficients import join_coefficients
from facernet_jax.coefficients import split_coefficients

__all__ = ['COEFFICIENT_SIZES', 'NUM_COEFFICIENTS', 'coefficient_slices', 'join_coefficients',
           'split_coefficients']
