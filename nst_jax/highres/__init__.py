"""High-resolution transfer: tile geometry, the tiled loss, the memory model, devices and the pyramid."""
