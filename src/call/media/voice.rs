//! Voice-energy detection on 20 ms frames.
