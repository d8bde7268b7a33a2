//! Image classification datasets and a prefetching batch loader for vct.
