"""Which drawings of a drawn scene (drawn.py) are held out of training, evaluated as unseen: by a
stable hash of the name (unseen_fraction), as a group (icon's categories), or by name (the
families' unseen_* options, checked against the training set by polygon)."""

from __future__ import annotations

import numpy as np

from rectbert import config
from rectbert.geometry import drawings


def rows(scene, whole: drawings.Library) -> np.ndarray:
    """[G] which drawings of the whole set are held out of training: those a family holds
    out as a group, and those whose name's drawings.hashed number is under
    unseen_fraction; less any that is a training drawing turned by an angle the scene
    places it at (then it is one: it trains; again until none is). The same on every
    machine."""
    held = scene._held_rows(whole) | (drawings.hashed(whole.names) < scene.unseen_fraction)
    turns = quarter_turns(scene)
    moved = bool(turns)
    while moved and held.any() and not held.all():
        moved = False
        out = np.flatnonzero(held)
        trained = [whole.shapes[g] for g in np.flatnonzero(~held)]
        for t in turns:
            turned = [drawings.turned(whole.shapes[g], t) for g in out]
            for a, _ in drawings.near_pairs(turned, trained, whole.within):
                moved |= bool(held[out[a]])
                held[out[a]] = False
    return held


def quarter_turns(scene) -> list[float]:
    """The quarter and half turns a placement reaches (a drawing turned by one of them is
    the same drawing placed at another angle)."""
    lo, hi = scene.rotation
    return [t for t in (90.0, -90.0, 180.0) if abs(t) <= hi - lo]


def check_split(scene, whole: drawings.Library) -> None:
    """A split that leaves drawings on both sides."""
    field = "unseen_fraction" if scene.unseen_fraction > 0 else scene._group_field
    held = rows(scene, whole)
    g = len(whole.names)
    if not held.any() or held.all():
        side = "none" if not held.any() else "every one"
        raise config.error(
            scene,
            field,
            f"a split that holds out some of the set's {g} distinct drawings and trains on "
            f"the rest (this one holds out {side})",
        )


def check_named(scene, field: str) -> None:
    """The held-out set made now (a missing drawing, or one too wide, is refused in one
    line naming `field`, before any compute), not mid-run; and refused where it shares a
    drawing with the training set, by polygon (drawings.near_pairs), whatever their names."""
    try:
        held = scene._held_out()
    except config.ConfigError as e:
        raise config.error(scene, field, f"a set the scene can draw: {e.allowed}") from None
    if held is None:
        return
    trained, lib = scene.library, held.library
    same = {}  # held-out row -> (the training drawing it is, the turn)
    for t in [0.0, *quarter_turns(scene)]:
        shapes_ = [drawings.turned(s, t) if t else s for s in lib.shapes]
        for a, b in drawings.near_pairs(shapes_, trained.shapes, trained.within):
            same.setdefault(a, (trained.names[b], t))
    shared = []
    for a, (other, t) in sorted(same.items()):
        name, turned = lib.names[a], f" turned {t:g} degrees" if t else ""
        shared.append(name if other == name and not t else f"{name} is {other}{turned}")
    if shared:
        raise config.error(
            scene,
            field,
            "drawings outside the training set, compared by polygon at the angles the "
            f"scene places them (these are in it: {drawings.listed(shared)})",
        )
