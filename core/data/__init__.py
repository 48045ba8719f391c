"""Data: the grid, species and records, map features, vector and raster aux layers, the stack (its file, its window sources, how it is built), prediction files, maps and the embedded defaults."""
