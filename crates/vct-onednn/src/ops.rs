//! candle custom ops over the oneDNN functions (filled in below).
