"""Named landmark groups of the 468-point face mesh (MediaPipe's canonical topology).

"Right" and "left" are the subject's: the right eye is on the image's left.
"""

from __future__ import annotations

import numpy as np

LIPS_OUTER_UPPER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LIPS_OUTER_LOWER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
LIPS_INNER_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LIPS_INNER_LOWER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]

RIGHT_EYE_UPPER = [33, 246, 161, 160, 159, 158, 157, 173, 133]
RIGHT_EYE_LOWER = [33, 7, 163, 144, 145, 153, 154, 155, 133]
LEFT_EYE_UPPER = [263, 466, 388, 387, 386, 385, 384, 398, 362]
LEFT_EYE_LOWER = [263, 249, 390, 373, 374, 380, 381, 382, 362]

RIGHT_BROW = [46, 53, 52, 65, 55, 70, 63, 105, 66, 107]
LEFT_BROW = [276, 283, 282, 295, 285, 300, 293, 334, 296, 336]

FACE_OVAL = [
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
]  # fmt: skip

NOSE = [168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 48, 278, 64, 294]
CHEEKS = [50, 280, 101, 330, 205, 425, 187, 411, 123, 352, 147, 376, 192, 416, 207, 427]
CHIN = [152, 148, 377, 176, 400, 149, 378, 175, 199, 200, 18, 83, 313, 32, 262, 201, 421, 208, 428]

MOUTH_CORNERS = (61, 291)
INNER_CORNERS = (78, 308)
UPPER_INNER_MID = 13
LOWER_INNER_MID = 14
FOREHEAD = 10
CHIN_TIP = 152
# Landmarks that move with the skull, not with expression: forehead, nose, outer eye corners, temples.
# The head's rigid motion is fitted to these.
SKULL = [
    10,
    338,
    297,
    332,
    109,
    67,
    103,
    151,
    108,
    69,
    337,
    299,
    6,
    197,
    195,
    5,
    4,
    1,
    33,
    263,
    127,
    356,
    234,
    454,
    162,
    389,
    21,
    251,
]
NOSE_TIP = 1
EYE_CENTRE_RIGHT = (33, 133)
EYE_CENTRE_LEFT = (362, 263)


def inner_mouth_polygon(points: np.ndarray) -> np.ndarray:
    """Closed polygon of the mouth opening: the inner upper lip then the inner lower lip backwards."""
    return np.concatenate([points[LIPS_INNER_UPPER], points[LIPS_INNER_LOWER[-2:0:-1]]])


def mouth_opening(points: np.ndarray) -> float:
    """Gap between the inner lips at the middle, relative to the mouth width (0 = closed)."""
    # Mean of three columns across the middle of the mouth steadies the measure.
    pairs = [(82, 87), (13, 14), (312, 317)]
    gap = float(np.mean([np.linalg.norm(points[b, :2] - points[a, :2]) for a, b in pairs]))
    width = float(np.linalg.norm(points[INNER_CORNERS[1], :2] - points[INNER_CORNERS[0], :2]))
    return gap / max(width, 1e-6)


def eye_openness(points: np.ndarray, upper: list[int], lower: list[int]) -> float:
    """Lid gap at the eye's middle relative to the eye's width."""
    gap = float(np.linalg.norm(points[upper[4], :2] - points[lower[4], :2]))
    width = float(np.linalg.norm(points[upper[0], :2] - points[upper[-1], :2]))
    return gap / max(width, 1e-6)
