//! Fast CPU convolution, batch-norm and pooling kernels exposed to candle as custom ops.
