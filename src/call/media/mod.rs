//! RTP media: G.711, WAV prompts and recordings, voice detection, DTMF.
