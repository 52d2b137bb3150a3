"""The run configuration: typed, frozen sections with their defaults, presets, file parsing and schema
migration (schema). The presets themselves are data, in facegan/presets/."""
