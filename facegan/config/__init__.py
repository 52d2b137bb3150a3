"""The run configuration: typed, frozen sections with their defaults (schema, the stabilizers in gan),
how a setting is declared and a built one checked (check), the one-line jsonargparse parser (parser),
and presets, config files, the layering of a run's settings and checkpoint migrations (files). The
presets themselves are data, in facegan/presets/."""
