"""Drawing faces from a trained generator: seeded faces, grids and walks (generate), GIFs, and
attribute edits applied to faces (directions, render)."""
