//! Sender and receivers over a simulated lossy link with virtual time.
