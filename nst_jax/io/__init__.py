"""Files: images in and out, atomic writes, the one format of saved state."""
