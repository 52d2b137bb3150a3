"""The shipped presets: partial `facegan train` config files (see facegan.config.schema.preset_names)."""
