//! Image decoding and augmentation transforms for vct: resize, crop, flip, normalise, to-tensor.
