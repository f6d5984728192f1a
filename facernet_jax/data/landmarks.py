"""The 68-point conventions, defined in facernet_jax.landmarks (kept importable from here)."""
from facernet_jax.landmarks import BOX_SCALE
from facernet_jax.landmarks import CONTOUR_INDICES
from facernet_jax.landmarks import FLIP_PERMUTATION
from facernet_jax.landmarks import INNER_INDICES
from facernet_jax.landmarks import INNER_MOUTH
from facernet_jax.landmarks import JAW
from facernet_jax.landmarks import LEFT_BROW
from facernet_jax.landmarks import LEFT_EYE
from facernet_jax.landmarks import NOSE_BOTTOM
from facernet_jax.landmarks import NOSE_BRIDGE
from facernet_jax.landmarks import NUM_LANDMARKS
from facernet_jax.landmarks import OUTER_MOUTH
from facernet_jax.landmarks import RIGHT_BROW
from facernet_jax.landmarks import RIGHT_EYE
from facernet_jax.landmarks import crop_box_from_landmarks
from facernet_jax.landmarks import flip_landmarks
from facernet_jax.landmarks import landmark_box
from facernet_jax.landmarks import landmark_weights

__all__ = ['BOX_SCALE', 'CONTOUR_INDICES', 'FLIP_PERMUTATION', 'INNER_INDICES', 'INNER_MOUTH', 'JAW',
           'LEFT_BROW', 'LEFT_EYE', 'NOSE_BOTTOM', 'NOSE_BRIDGE', 'NUM_LANDMARKS', 'OUTER_MOUTH',
           'RIGHT_BROW', 'RIGHT_EYE', 'crop_box_from_landmarks', 'flip_landmarks', 'landmark_box',
           'landmark_weights']
