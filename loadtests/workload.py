"""The sales-event workload: its config schema, and the requests a shopper sends.

Pure (no Locust import), so the request mix, images and schedule are unit-tested directly.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field, model_validator

from router.images.decode import data_url

DEFAULT_WORKLOAD = Path(__file__).resolve().parent / "sales_event.yaml"
RequestKind = Literal["text_single", "text_multi_turn", "vision"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Range(_Strict):
    min: float = Field(ge=0)
    max: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Mix(_Strict):
    text_single: float = Field(ge=0)
    text_multi_turn: float = Field(ge=0)
    vision: float = Field(ge=0)

    @model_validator(mode="after")
    def _some(self) -> Mix:
        if self.text_single + self.text_multi_turn + self.vision <= 0:
            raise ValueError("the mix needs at least one positive weight")
        return self


class Images(_Strict):
    kinds: list[Literal["product", "parcel"]] = Field(min_length=1)
    sizes: list[tuple[int, int]] = Field(min_length=1)
    jpeg_quality: int = Field(85, ge=10, le=95)


class Stage(_Strict):
    name: str
    duration_s: float = Field(gt=0)
    users: float = Field(ge=0, description="multiple of shape.baseline_users")


class Shape(_Strict):
    baseline_users: int = Field(ge=1)
    stages: list[Stage] = Field(min_length=1)
    drain_s: float = Field(120, ge=0)


class SLO(_Strict):
    max_error_rate: float = Field(ge=0, le=1)
    p95_ttft_s: float = Field(gt=0)
    p99_e2e_s: float = Field(gt=0)


class WorkloadConfig(_Strict):
    mix: Mix
    output_tokens: Range
    temperature: float = Field(0.7, ge=0, le=2)
    think_time_s: Range
    text_questions: list[str] = Field(min_length=1)
    multi_turn: list[list[str]] = Field(min_length=1)
    vision_questions: list[str] = Field(min_length=1)
    images: Images
    shape: Shape
    slo: SLO

    @model_validator(mode="after")
    def _turns_alternate(self) -> WorkloadConfig:
        for turns in self.multi_turn:
            if len(turns) % 2 == 0:
                raise ValueError("each multi_turn conversation must end with a user turn")
        return self


def load_workload(path: Path | str = DEFAULT_WORKLOAD) -> WorkloadConfig:
    return WorkloadConfig.model_validate(yaml.safe_load(Path(path).read_text()))


def steady_workload(duration_s: float, users: int, drain_s: float,
                    stage: str = "steady") -> dict:
    """The sales workload's requests and mix at a steady `users` shoppers for `duration_s`,
    with its SLO gates wide open: for runs that report or assert figures of their own (the
    soak, the chaos tests) rather than gate on the SLOs. Returned as the YAML's dict, to be
    adjusted and written for `--workload`."""
    workload = yaml.safe_load(DEFAULT_WORKLOAD.read_text())
    workload["shape"] = {"baseline_users": users, "drain_s": drain_s,
                         "stages": [{"name": stage, "duration_s": duration_s, "users": 1}]}
    workload["slo"] = {"max_error_rate": 1.0, "p95_ttft_s": 1000, "p99_e2e_s": 1000}
    return workload


@dataclass(frozen=True)
class ShopperRequest:
    kind: RequestKind
    body: dict

    @property
    def route(self) -> str:
        return "vision" if self.kind == "vision" else "text"


class Workload:
    """Draws shopper requests from the config. Images are generated once per (kind, size)."""

    def __init__(self, config: WorkloadConfig, rng: random.Random | None = None):
        self.config = config
        self._rng = rng or random.Random()
        self._images = {
            (kind, tuple(size)): image_data_url(kind, tuple(size), config.images.jpeg_quality)
            for kind in config.images.kinds for size in config.images.sizes
        }
        mix = config.mix
        self._kinds: list[RequestKind] = ["text_single", "text_multi_turn", "vision"]
        self._weights = [mix.text_single, mix.text_multi_turn, mix.vision]

    def next_request(self) -> ShopperRequest:
        kind = self._rng.choices(self._kinds, self._weights)[0]
        return ShopperRequest(kind, self.body_for(kind))

    def body_for(self, kind: RequestKind) -> dict:
        c, rng = self.config, self._rng
        if kind == "text_single":
            messages = [{"role": "user", "content": rng.choice(c.text_questions)}]
        elif kind == "text_multi_turn":
            turns = rng.choice(c.multi_turn)
            messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": text}
                        for i, text in enumerate(turns)]
        else:
            image = self._images[rng.choice(sorted(self._images))]
            messages = [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image}},
                {"type": "text", "text": rng.choice(c.vision_questions)},
            ]}]
        return {
            "messages": messages,
            "max_tokens": rng.randint(int(c.output_tokens.min), int(c.output_tokens.max)),
            "temperature": c.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def think_time(self) -> float:
        return self._rng.uniform(self.config.think_time_s.min, self.config.think_time_s.max)


def image_data_url(kind: str, size: tuple[int, int], quality: int = 85) -> str:
    """A generated JPEG: a product shot (garment shape on a plain background) or a parcel
    (brown box, tape, shipping label), as a data URL."""
    width, height = size
    image = Image.new("RGB", size, (238, 238, 236) if kind == "product" else (190, 190, 185))
    draw = ImageDraw.Draw(image)
    w, h = width, height
    if kind == "product":
        body = [(w * 0.3, h * 0.25), (w * 0.7, h * 0.25), (w * 0.68, h * 0.85), (w * 0.32, h * 0.85)]
        draw.polygon(body, fill=(120, 124, 130))
        draw.polygon([(w * 0.3, h * 0.25), (w * 0.15, h * 0.5), (w * 0.25, h * 0.55), (w * 0.33, h * 0.38)],
                     fill=(110, 114, 120))
        draw.polygon([(w * 0.7, h * 0.25), (w * 0.85, h * 0.5), (w * 0.75, h * 0.55), (w * 0.67, h * 0.38)],
                     fill=(110, 114, 120))
    else:
        draw.rectangle([w * 0.15, h * 0.2, w * 0.85, h * 0.85], fill=(181, 137, 90))
        draw.rectangle([w * 0.47, h * 0.2, w * 0.53, h * 0.85], fill=(214, 190, 140))
        draw.rectangle([w * 0.2, h * 0.6, w * 0.45, h * 0.8], fill=(250, 250, 250))
        for row in range(4):
            y = h * (0.63 + row * 0.04)
            draw.line([w * 0.22, y, w * 0.42, y], fill=(40, 40, 40), width=1)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return data_url(buffer.getvalue(), "image/jpeg")
