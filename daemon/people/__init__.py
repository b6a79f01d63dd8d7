"""People: tracks and person-centred actions from per-frame person detections.

Pure logic (no I/O, no model runtime of its own except the user's skeleton classifiers):
`PeopleEngine(camera, people, frame_size).update(persons, t_s)` gives the live tracks and
the action events; every window, dwell, hysteresis and cooldown runs on media time t_s.
"""

from daemon.people.engine import PeopleEngine
from daemon.people.person import (
    END_ACTION_OVER,
    END_STOPPED,
    END_TRACK_LOST,
    KEYPOINTS,
    PHASE_END,
    PHASE_START,
    PeopleUpdate,
    Person,
    PersonEvent,
    Track,
)
from daemon.people.skeleton import (
    SkeletonClassifier,
    SkeletonContract,
    SkeletonModelError,
    load_classifier,
    read_skeleton_contract,
)

__all__ = [
    "END_ACTION_OVER",
    "END_STOPPED",
    "END_TRACK_LOST",
    "KEYPOINTS",
    "PHASE_END",
    "PHASE_START",
    "PeopleEngine",
    "PeopleUpdate",
    "Person",
    "PersonEvent",
    "SkeletonClassifier",
    "SkeletonContract",
    "SkeletonModelError",
    "Track",
    "load_classifier",
    "read_skeleton_contract",
]
