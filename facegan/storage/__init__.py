"""Files on disk: written atomically (files), read defensively when someone else may have made them
(untrusted), and the sizes a config implies, bounded before anything is allocated (sizes)."""
