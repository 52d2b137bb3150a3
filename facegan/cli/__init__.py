"""The `facegan` command line: the verbs (main), the setting flags generated from the config (flags),
training (train) and attribute edits (edits)."""
