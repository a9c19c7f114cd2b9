//! Encode/decode only: byte layouts of the protocols volley speaks.
