"""What each experiment does, without flags: its settings (config fields, by flag name), its
defaults (the one place they are set), the validated plan they make, and the run.

Every recipe module has NAME, SCENES (whether it takes --scene and the families' options),
SETTINGS (the config classes whose settings it takes), DEFAULTS (its own, over the fields'),
FIXED (settings it sets itself: not flags), build(values) -> plan (validation only: nothing
computed or written) and main(plan, files).
`python -m experiments.<name>` is the command line of rectbert.recipes.<name>; from Python,
`common.values(recipe, **settings)` gives the values to build from.
"""
