"""The shipped presets: partial `facegan train` config files (see facegan.config.preset_names)."""
