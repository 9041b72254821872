#!/usr/bin/env python3
"""Convert a CTranslate2 Whisper model (model.bin + vocabulary.txt) to whisper.cpp's ggml file.

Usage: whisper-ct2-to-ggml.py MODEL_DIR OUTPUT

Standard library only, so a fresh machine needs nothing but python3. The layout written is the
one whisper.cpp's loader reads (magic, hyper-parameters, mel filterbank, vocabulary, tensors
named as in OpenAI's checkpoint, dims innermost first); see scripts/fetch-model.

CTranslate2 keeps the attention projections fused (self-attention: Q|K|V rows; cross-attention:
K|V rows) and stores a zero bias for K, which whisper's model has none of: both are split here.
"""
import math
import re
import struct
import sys

GGML_MAGIC = 0x67676D6C
CT2_FLOAT32, CT2_FLOAT16 = 0, 4


class Ct2Model:
    """The variables of a CTranslate2 model.bin (binary version 6), by name."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.b = f.read()
        self.o = 0
        version = self._u("I")
        if version != 6:
            raise SystemExit(f"{path}: CTranslate2 binary version {version}, expected 6")
        spec = self._s()
        if spec != "WhisperSpec":
            raise SystemExit(f"{path}: model spec {spec!r}, expected 'WhisperSpec'")
        self._u("I")  # spec revision
        self.vars = {}
        for _ in range(self._u("I")):
            name = self._s()
            rank = self._u("B")
            dims = struct.unpack_from(f"<{rank}I", self.b, self.o)
            self.o += 4 * rank
            dtype = self._u("B")
            nbytes = self._u("I")
            self.vars[name] = (dims, dtype, self.b[self.o : self.o + nbytes])
            self.o += nbytes
        for _ in range(self._u("I")):
            alias, target = self._s(), self._s()
            self.vars[alias] = self.vars[target]
        if self.o != len(self.b):
            raise SystemExit(f"{path}: {len(self.b) - self.o} trailing bytes: truncated or not a model")

    def _u(self, fmt):
        (v,) = struct.unpack_from("<" + fmt, self.b, self.o)
        self.o += struct.calcsize(fmt)
        return v

    def _s(self):
        n = self._u("H")
        s = self.b[self.o : self.o + n - 1].decode()
        self.o += n
        return s

    def scalar(self, name):
        dims, dtype, data = self.vars[name]
        fmt = {1: "b", 2: "h", 3: "i"}[dtype]
        return struct.unpack("<" + fmt, data)[0]

    def f16(self, name, rows=None):
        """The raw float16 bytes of a variable, optionally rows [a, b) of its first axis."""
        dims, dtype, data = self.vars[name]
        if dtype != CT2_FLOAT16:
            raise SystemExit(f"{name}: dtype {dtype}, expected float16 ({CT2_FLOAT16})")
        if rows is None:
            return dims, data
        a, b = rows
        row = len(data) // dims[0]
        return (b - a,) + tuple(dims[1:]), data[a * row : b * row]


def f16_to_f32(data):
    n = len(data) // 2
    return struct.pack(f"<{n}f", *struct.unpack(f"<{n}e", data))


def mel_filters(sr=16000, n_fft=400, n_mels=80):
    """librosa.filters.mel(sr, n_fft, n_mels): Slaney mel scale and area normalisation, which is
    what OpenAI's mel_filters.npz holds."""
    f_sp, min_log_hz, min_log_mel = 200.0 / 3, 1000.0, 15.0
    logstep = math.log(6.4) / 27.0

    def hz_to_mel(f):
        return f / f_sp if f < min_log_hz else min_log_mel + math.log(f / min_log_hz) / logstep

    def mel_to_hz(m):
        return f_sp * m if m < min_log_mel else min_log_hz * math.exp(logstep * (m - min_log_mel))

    n_bins = 1 + n_fft // 2
    fft = [i * (sr / 2) / (n_bins - 1) for i in range(n_bins)]
    lo, hi = hz_to_mel(0.0), hz_to_mel(sr / 2)
    mel_f = [mel_to_hz(lo + i * (hi - lo) / (n_mels + 1)) for i in range(n_mels + 2)]
    out = []
    for i in range(n_mels):
        enorm = 2.0 / (mel_f[i + 2] - mel_f[i])
        row = []
        for f in fft:
            lower = (f - mel_f[i]) / (mel_f[i + 1] - mel_f[i])
            upper = (mel_f[i + 2] - f) / (mel_f[i + 2] - mel_f[i + 1])
            row.append(max(0.0, min(lower, upper)) * enorm)
        out.append(row)
    return out


def byte_decoder():
    """Inverse of GPT-2's bytes_to_unicode: the vocabulary's printable stand-ins back to bytes."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: whisper-ct2-to-ggml.py MODEL_DIR OUTPUT")
    src, out_path = sys.argv[1], sys.argv[2]
    m = Ct2Model(f"{src}/model.bin")
    with open(f"{src}/vocabulary.txt", encoding="utf-8") as f:
        vocab = f.read().split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()

    n_vocab, n_text_state = m.vars["decoder/embeddings/weight"][0]
    n_audio_ctx, n_audio_state = m.vars["encoder/position_encodings/encodings"][0]
    n_text_ctx = m.vars["decoder/position_encodings/encodings"][0][0]
    n_mels = m.vars["encoder/conv1/weight"][0][1]
    n_audio_layer = len({k.split("/")[1] for k in m.vars if re.match(r"encoder/layer_\d+/", k)})
    n_text_layer = len({k.split("/")[1] for k in m.vars if re.match(r"decoder/layer_\d+/", k)})
    if len(vocab) != n_vocab:
        raise SystemExit(f"vocabulary.txt has {len(vocab)} tokens, the model {n_vocab}")
    # Tokens past the byte-level BPE ones (<|endoftext|> and after) are named by whisper.cpp.
    n_bpe = vocab.index("<|endoftext|>")

    tensors = []  # (name, dims as stored row-major, data bytes, as_f32)

    def put(name, dims, data, as_f32=False):
        tensors.append((name, dims, data, as_f32))

    def linear(dst, src, rows=None, bias=True):
        dims, w = m.f16(f"{src}/weight", rows)
        put(f"{dst}.weight", dims, w)
        if bias:
            bd, b = m.f16(f"{src}/bias", rows)
            put(f"{dst}.bias", bd, b, True)

    def norm(dst, src):
        put(f"{dst}.weight", *m.f16(f"{src}/gamma"), True)
        put(f"{dst}.bias", *m.f16(f"{src}/beta"), True)

    s = n_audio_state
    put("encoder.positional_embedding", *m.f16("encoder/position_encodings/encodings"), True)
    for c in ("conv1", "conv2"):
        put(f"encoder.{c}.weight", *m.f16(f"encoder/{c}/weight"))
        dims, b = m.f16(f"encoder/{c}/bias")
        put(f"encoder.{c}.bias", dims + (1,), b, True)
    for i in range(n_audio_layer):
        e, c = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        norm(f"{e}.attn_ln", f"{c}/self_attention/layer_norm")
        linear(f"{e}.attn.query", f"{c}/self_attention/linear_0", (0, s))
        linear(f"{e}.attn.key", f"{c}/self_attention/linear_0", (s, 2 * s), bias=False)
        linear(f"{e}.attn.value", f"{c}/self_attention/linear_0", (2 * s, 3 * s))
        linear(f"{e}.attn.out", f"{c}/self_attention/linear_1")
        norm(f"{e}.mlp_ln", f"{c}/ffn/layer_norm")
        linear(f"{e}.mlp.0", f"{c}/ffn/linear_0")
        linear(f"{e}.mlp.2", f"{c}/ffn/linear_1")
    norm("encoder.ln_post", "encoder/layer_norm")

    t = n_text_state
    put("decoder.positional_embedding", *m.f16("decoder/position_encodings/encodings"), True)
    put("decoder.token_embedding.weight", *m.f16("decoder/embeddings/weight"))
    for i in range(n_text_layer):
        d, c = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        norm(f"{d}.attn_ln", f"{c}/self_attention/layer_norm")
        linear(f"{d}.attn.query", f"{c}/self_attention/linear_0", (0, t))
        linear(f"{d}.attn.key", f"{c}/self_attention/linear_0", (t, 2 * t), bias=False)
        linear(f"{d}.attn.value", f"{c}/self_attention/linear_0", (2 * t, 3 * t))
        linear(f"{d}.attn.out", f"{c}/self_attention/linear_1")
        norm(f"{d}.cross_attn_ln", f"{c}/attention/layer_norm")
        linear(f"{d}.cross_attn.query", f"{c}/attention/linear_0")
        linear(f"{d}.cross_attn.key", f"{c}/attention/linear_1", (0, t), bias=False)
        linear(f"{d}.cross_attn.value", f"{c}/attention/linear_1", (t, 2 * t))
        linear(f"{d}.cross_attn.out", f"{c}/attention/linear_2")
        norm(f"{d}.mlp_ln", f"{c}/ffn/layer_norm")
        linear(f"{d}.mlp.0", f"{c}/ffn/linear_0")
        linear(f"{d}.mlp.2", f"{c}/ffn/linear_1")
    norm("decoder.ln", "decoder/layer_norm")

    dec = byte_decoder()
    with open(out_path, "wb") as out:
        out.write(
            struct.pack(
                "<12i",
                GGML_MAGIC,
                n_vocab,
                n_audio_ctx,
                n_audio_state,
                m.scalar("encoder/num_heads"),
                n_audio_layer,
                n_text_ctx,
                n_text_state,
                m.scalar("decoder/num_heads"),
                n_text_layer,
                n_mels,
                1,  # ftype: 2-D weights float16, the rest float32
            )
        )
        filters = mel_filters(n_mels=n_mels)
        out.write(struct.pack("<2i", len(filters), len(filters[0])))
        for row in filters:
            out.write(struct.pack(f"<{len(row)}f", *row))
        out.write(struct.pack("<i", n_bpe))
        for tok in vocab[:n_bpe]:
            raw = bytes(dec[ch] for ch in tok)
            out.write(struct.pack("<i", len(raw)) + raw)
        for name, dims, data, as_f32 in tensors:
            if as_f32:
                data = f16_to_f32(data)
            key = name.encode()
            out.write(struct.pack("<3i", len(dims), len(key), 0 if as_f32 else 1))
            out.write(struct.pack(f"<{len(dims)}i", *reversed(dims)))
            out.write(key)
            out.write(data)
    print(f"{out_path}: {len(tensors)} tensors, {n_audio_layer}+{n_text_layer} layers, {n_vocab} tokens")


if __name__ == "__main__":
    main()
