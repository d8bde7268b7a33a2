//! Optimizers over parameter groups for candle: SGD with momentum, AdamW, LAMB.
