"""CellBin's network in Keras 3 (the backend, `csrefiner/models/backends/cellbin.py`, trains and runs it).

- `net.py`: BCDU-Net as STOmics builds it, with tf.keras 2's layer names so the official `.hdf5` weights load
  by name; saving and loading such files.
"""
