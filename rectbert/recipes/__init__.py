"""What each experiment does, without flags: its settings (config fields, by flag name), its
defaults (the one place they are set), the validated plan they make, and the run.

Every recipe module has NAME, SETTINGS (the config classes whose settings it takes), DEFAULTS,
build(values) -> plan (validation only: nothing computed or written) and main(plan, files).
`python -m experiments.<name>` is the command line of rectbert.recipes.<name>; from Python,
`common.values(recipe, **settings)` gives the values to build from.
"""
