"""68-point (iBUG / Multi-PIE) landmark conventions: groups, flip permutation, Eq 12 weights, the crop rule.

Shared by the face model, the losses, the data builders and face detection, so it sits at the bottom
of the package (it imports nothing from it). Indices are 0-based. "Left" / "right" below are the subject's; in a frontal
image the subject's right side is on the image's left. Pure numpy; importing
this module does not import TensorFlow.
"""
import numpy as np

NUM_LANDMARKS = 68
BOX_SCALE = float(np.sqrt(2.0))  # crop side / landmark-box side (3DDFA)
JAW = np.arange(0, 17)            # contour, image-left to image-right
RIGHT_BROW = np.arange(17, 22)
LEFT_BROW = np.arange(22, 27)
NOSE_BRIDGE = np.arange(27, 31)
NOSE_BOTTOM = np.arange(31, 36)
RIGHT_EYE = np.arange(36, 42)
LEFT_EYE = np.arange(42, 48)
OUTER_MOUTH = np.arange(48, 60)
INNER_MOUTH = np.arange(60, 68)

# Eq 12: the boundary ("contour") points get weight 0.5, the fixed inner points
# weight 1. We read the contour as the whole 17-point jaw (the paper's 16 / 52
# does not add up to 68 with the standard 17-point jaw): 17 contour + 51 inner.
CONTOUR_INDICES = JAW
INNER_INDICES = np.arange(17, 68)


def _flip_permutation():
  """Builds the left/right permutation from explicit mirrored pairs."""
  pairs = [(i, 16 - i) for i in range(8)]                       # jaw, 8 = chin
  pairs += [(17 + i, 26 - i) for i in range(5)]                 # brows
  pairs += [(31, 35), (32, 34)]                                 # nose wings
  pairs += [(36, 45), (37, 44), (38, 43), (39, 42),             # eye corners/lids
            (40, 47), (41, 46)]
  pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]   # outer mouth
  pairs += [(60, 64), (61, 63), (65, 67)]                       # inner mouth
  perm = np.arange(NUM_LANDMARKS)
  for a, b in pairs:
    perm[a], perm[b] = b, a
  return perm


# `flipped[k] = mirror(original[FLIP_PERMUTATION[k]])`; self-symmetric points
# (chin 8, nose bridge 27-30, nose tip 33, lips 51, 57, 62, 66) map to themselves.
FLIP_PERMUTATION = _flip_permutation()
FLIP_PERMUTATION.setflags(write=False)


def landmark_weights(contour_weight=0.5, inner_weight=1.0):
  """Per-point weights of Eq 12 as a (68,) float32 array."""
  w = np.full((NUM_LANDMARKS,), inner_weight, np.float32)
  w[CONTOUR_INDICES] = contour_weight
  return w


def flip_landmarks(landmarks, width):
  """Mirrors (..., 68, 2) continuous-pixel landmarks in an image of `width`."""
  landmarks = np.asarray(landmarks)
  x = width - landmarks[..., 0]
  out = np.stack([x, landmarks[..., 1]], axis=-1)
  return out[..., FLIP_PERMUTATION, :]


def landmark_box(landmarks):
  """Tight box (x0, y0, x1, y1) of (..., K, 2) landmarks (NaN points ignored)."""
  landmarks = np.asarray(landmarks, np.float64)
  lo = np.nanmin(landmarks, axis=-2)
  hi = np.nanmax(landmarks, axis=-2)
  return np.concatenate([lo, hi], axis=-1)


def crop_box_from_landmarks(landmarks, box_scale=BOX_SCALE):
  """The square crop of every data builder and of reconstruction: side box_scale * max(w, h) of the
  landmark box, same centre (box_scale sqrt 2 is 3DDFA's parse_roi_box_from_landmark). Returns
  (x0, y0, x1, y1) in continuous pixels."""
  x0, y0, x1, y1 = landmark_box(landmarks)
  cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
  half = box_scale * max(x1 - x0, y1 - y0) / 2
  return np.array([cx - half, cy - half, cx + half, cy + half], np.float64)
