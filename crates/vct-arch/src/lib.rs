//! Image classification architectures on candle: ResNet/ResNeXt, BN-Inception, Inception-v2, heads, weight loading.
