"""Data: the grid, species and records, vector and raster layers, the stack (its file, its windows, how it is built) and the embedded defaults."""
