//! WAV prompts in (any rate, channels, bit depth → 8 kHz mono) and recordings out.
