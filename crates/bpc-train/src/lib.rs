//! bpc-train
